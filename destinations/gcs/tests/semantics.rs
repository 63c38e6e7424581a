//! What lands in the bucket (against fake-gcs-server): names, content type, metadata, overwrite
//! on update, several items, claim-check links fetched with a plain GET, a missing bucket.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Bucket, build};
use manifold_core::destination::{BuildContext, Outcome};
use manifold_core::testkit::sample_delivery;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_carry_content_type_and_metadata_and_updates_overwrite() {
    let b = Bucket::new().await;
    let dest = build(
        &b.toml("prefix = \"/exports/terra/\""),
        &BuildContext::default(),
        "gcs",
    );
    let d = sample_delivery("sleep", "user-1", 1);
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Delivered { .. }
    ));
    let start = d.json().unwrap()["data"][0]["metadata"]["start_time"]
        .as_str()
        .unwrap()
        .to_string();
    let name = format!("exports/terra/2022-03-16/sleep/user-1-{start}.json");
    assert_eq!(b.names("").await, vec![name.clone()]);
    let obj = b.get(&name).await.expect("the object exists");
    assert_eq!(
        obj.body,
        d.body.to_vec(),
        "a one-item event is stored byte for byte"
    );
    assert_eq!(obj.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        obj.metadata.get("trace-id").map(String::as_str),
        Some(d.trace_id())
    );
    assert_eq!(
        obj.metadata.get("user-id").map(String::as_str),
        Some("user-1")
    );
    assert_eq!(
        obj.metadata.get("event-type").map(String::as_str),
        Some("sleep")
    );

    let mut v2 = d.json().unwrap();
    v2["data"][0]["scores"]["sleep"] = json!(91);
    let mut d2 = sample_delivery("sleep", "user-1", 1);
    d2.body = Bytes::from(serde_json::to_vec(&v2).unwrap());
    d2.version = 2;
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d2)).await[0],
        Outcome::Delivered { .. }
    ));
    assert_eq!(b.names("").await.len(), 1);
    let back = b.get(&name).await.unwrap();
    let v: Value = serde_json::from_slice(&back.body).unwrap();
    assert_eq!(v["data"][0]["scores"]["sleep"], 91);
    assert_eq!(back.metadata["trace-id"], d2.trace_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_items_and_other_content_types() {
    let b = Bucket::new().await;
    let dest = build(&b.toml(""), &BuildContext::default(), "gcs");
    let mut d = sample_delivery("daily", "multi", 1);
    let mut body = d.json().unwrap();
    let mut second = body["data"][0].clone();
    second["metadata"]["start_time"] = json!("2026-07-09T00:00:00+00:00");
    body["data"].as_array_mut().unwrap().push(second.clone());
    d.body = Bytes::from(serde_json::to_vec(&body).unwrap());
    let mut fhir = sample_delivery("activity", "multi", 1);
    fhir.content_type = "application/fhir+json";
    fhir.body = Bytes::from_static(br#"{"resourceType":"Bundle","type":"collection"}"#);
    let out = dest.deliver(&[d, fhir.clone()]).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );
    assert_eq!(b.names("2022-03-16/daily/").await.len(), 2);
    let o = b
        .get("2022-03-16/daily/multi-2026-07-09T00:00:00+00:00.json")
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&o.body).unwrap();
    assert_eq!(v["data"], json!([second]));
    let f = b
        .get("2022-03-16/activity/multi-multi-activity-1.fhir.json")
        .await
        .unwrap();
    assert_eq!(f.content_type.as_deref(), Some("application/fhir+json"));
    assert_eq!(f.body, fhir.body.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_check_links_fetch_the_payload() {
    let b = Bucket::new().await;
    let ctx = BuildContext::default();
    build(&b.toml("prefix = \"cc\""), &ctx, "store");
    let store = ctx
        .blob_stores
        .get("store")
        .expect("registered as a blob store");
    let d = sample_delivery("activity", "cc-user", 1);
    let msg = manifold_core::blob::claim_check(store.as_ref(), "", &d, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(msg["type"], "s3_payload");
    let url = msg["url"].as_str().unwrap();
    assert!(
        url.ends_with("?alt=media") && url.contains("cc%2F2022-03-16%2Fclaim-check%2Factivity%2F"),
        "{url}"
    );
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), d.body.as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_permanent() {
    let b = Bucket::new().await;
    let dest = build(
        &b.toml("").replace(&b.name, "no-such-bucket-here"),
        &BuildContext::default(),
        "gcs",
    );
    let d = sample_delivery("body", "perm", 1);
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, response } => {
            assert!(
                reason.contains("no-such-bucket-here") && reason.contains("create it"),
                "{reason}"
            );
            assert_eq!(response.status, Some(404));
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    let e = dest.check().await.unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
}

/// Versions 1–5 of one record, each with its own score.
fn versions(user: &str) -> Vec<manifold_core::destination::Delivery> {
    (1..=5)
        .map(|v| {
            let mut d = sample_delivery("sleep", user, 1);
            let mut body: Value = serde_json::from_slice(&d.body).unwrap();
            body["data"][0]["scores"]["sleep"] = json!(80 + v);
            d.body = Bytes::from(serde_json::to_vec(&body).unwrap());
            d.version = v;
            d
        })
        .collect()
}

/// The engine may hand versions of one record to concurrent deliveries, or retry an old one
/// after a newer one was stored: the object keeps the newest version (issue #7 proof, where a
/// `daily` object ended up with version 2 of 3 before this guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_replaces_a_newer_one() {
    let b = Bucket::new().await;
    let dest = build(&b.toml(""), &BuildContext::default(), "gcs");
    let u = format!("u-{}", uuid::Uuid::new_v4().simple());
    let all = versions(&u);
    // All five at once, newest first, so without the guard the oldest would be written last.
    let batch: Vec<_> = all.iter().rev().cloned().collect();
    let out = dest.deliver(&batch).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );
    // A late retry of version 2.
    let out = dest.deliver(std::slice::from_ref(&all[1])).await;
    match &out[0] {
        Outcome::Delivered { response } => assert!(
            response
                .body
                .as_deref()
                .unwrap_or("")
                .contains("newer version"),
            "{response:?}"
        ),
        other => panic!("{other:?}"),
    }
    let names = b.names("").await;
    assert_eq!(names.len(), 1, "{names:?}");
    let obj = b.get(&names[0]).await.unwrap();
    assert!(
        obj.body == all[4].body.to_vec(),
        "the object holds an older version"
    );
    assert_eq!(
        obj.metadata.get("trace-id").map(String::as_str),
        Some(all[4].trace_id())
    );
    assert_eq!(obj.metadata.get("version").map(String::as_str), Some("5"));
}
