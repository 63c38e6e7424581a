//! What lands in the bucket, read back from the local S3 server (moto).

mod common;

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use common::{Bucket, build, dead_port};
use manifold_core::destination::{BuildContext, Outcome};
use manifold_core::testkit::sample_delivery;
use serde_json::{Value, json};

fn user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn objects_carry_content_type_and_metadata_and_one_object_per_item() {
    let b = Bucket::new().await;
    let dest = build(
        &b.toml("prefix = \"/exports/\""),
        &BuildContext::default(),
        "s3",
    );
    let u = user();
    let mut d = sample_delivery("daily", &u, 1);
    let mut event: Value = serde_json::from_slice(&d.body).unwrap();
    let mut second = event["data"][0].clone();
    second["metadata"]["start_time"] = json!("2026-07-03T00:00:00.000000+02:00");
    event["data"].as_array_mut().unwrap().push(second);
    d.body = Bytes::from(serde_json::to_vec(&event).unwrap());

    let out = dest.deliver(std::slice::from_ref(&d)).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");

    let mut keys = b.keys("exports/").await;
    keys.sort();
    let start0 = event["data"][0]["metadata"]["start_time"].as_str().unwrap();
    assert_eq!(
        keys,
        vec![
            format!("exports/2022-03-16/daily/{u}-{start0}.json"),
            format!("exports/2022-03-16/daily/{u}-2026-07-03T00:00:00.000000+02:00.json"),
        ]
    );
    for (i, key) in keys.iter().enumerate() {
        let obj = b.get(key).await.unwrap();
        assert_eq!(obj.content_type.as_deref(), Some("application/json"));
        assert_eq!(obj.metadata.get("trace-id"), Some(&d.payload_id));
        assert_eq!(obj.metadata.get("user-id"), Some(&u));
        assert_eq!(
            obj.metadata.get("event-type").map(String::as_str),
            Some("daily")
        );
        let v: Value = serde_json::from_slice(&obj.body).unwrap();
        assert_eq!(v["data"], json!([event["data"][i]]));
        assert_eq!(v["user"], event["user"]);
        assert_eq!(v["type"], "daily");
    }
}

#[tokio::test]
async fn an_update_overwrites_its_object() {
    let b = Bucket::new().await;
    let dest = build(&b.toml(""), &BuildContext::default(), "s3");
    let u = user();
    let d1 = sample_delivery("sleep", &u, 1);
    let mut d2 = sample_delivery("sleep", &u, 1);
    let mut v: Value = serde_json::from_slice(&d2.body).unwrap();
    v["data"][0]["scores"]["sleep"] = json!(91);
    d2.body = Bytes::from(serde_json::to_vec(&v).unwrap());
    d2.version = 2;
    for d in [&d1, &d2] {
        let out = dest.deliver(std::slice::from_ref(d)).await;
        assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    }
    let keys = b.keys("").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let obj = b.get(&keys[0]).await.unwrap();
    assert_eq!(obj.body, d2.body.to_vec());
    assert_eq!(obj.metadata.get("trace-id"), Some(&d2.payload_id));
}

#[tokio::test]
async fn informational_events_and_fit_files() {
    let b = Bucket::new().await;
    let dest = build(&b.toml(""), &BuildContext::default(), "s3");
    let u = user();
    let auth = sample_delivery("auth", &u, 1);
    let mut fit = sample_delivery("activity", &u, 1);
    fit.body = Bytes::from_static(b"\x0e\x10\x43\x08\x00\x00\x00\x00.FIT\xff\x00binary");
    fit.content_type = "application/vnd.ant.fit";
    let out = dest.deliver(&[auth.clone(), fit.clone()]).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );

    let ts = auth
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let auth_obj = b
        .get(&format!(
            "2022-03-16/auth/{u}-{ts}-{}.json",
            auth.trace_id()
        ))
        .await
        .expect("auth object");
    assert_eq!(auth_obj.body, auth.body.to_vec());

    let fit_key = format!("2022-03-16/activity/{u}-{u}-activity-1.fit");
    let fit_obj = b.get(&fit_key).await.expect("fit object");
    assert_eq!(fit_obj.body, fit.body.to_vec());
    assert_eq!(
        fit_obj.content_type.as_deref(),
        Some("application/vnd.ant.fit")
    );
}

#[tokio::test]
async fn gzip_objects_decompress_to_the_payload() {
    let b = Bucket::new().await;
    let dest = build(&b.toml("gzip = true"), &BuildContext::default(), "s3");
    let d = sample_delivery("body", &user(), 1);
    let out = dest.deliver(std::slice::from_ref(&d)).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    let keys = b.keys("").await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].ends_with(".json.gz"), "{keys:?}");
    let obj = b.get(&keys[0]).await.unwrap();
    assert_eq!(obj.content_encoding.as_deref(), Some("gzip"));
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&obj.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, d.body.to_vec());
}

#[tokio::test]
async fn registers_a_blob_store_whose_presigned_url_works_with_a_plain_get() {
    let b = Bucket::new().await;
    let ctx = BuildContext::default();
    let _dest = build(&b.toml("prefix = \"pfx\""), &ctx, "archive");
    let store = ctx
        .blob_stores
        .get("archive")
        .expect("the s3 destination registers itself as a blob store");
    let payload: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    store
        .put(
            "2022-03-16/claim-check/x.bin",
            &payload,
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert!(b.get("pfx/2022-03-16/claim-check/x.bin").await.is_some());
    let url = store
        .presign_get("2022-03-16/claim-check/x.bin", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Expires=600"), "{url}");
    // No AWS client, no credentials: just the URL.
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), payload);
    // And with the curl binary, when the machine has one.
    if let Ok(out) = std::process::Command::new("curl")
        .args(["-fsS", &url])
        .output()
    {
        assert!(out.status.success(), "curl failed: {out:?}");
        assert_eq!(out.stdout, payload);
    }
}

#[tokio::test]
async fn a_missing_bucket_is_permanent_and_check_says_so() {
    let b = Bucket::new().await;
    let toml = b.toml("").replace(&b.name, &format!("{}-missing", b.name));
    let dest = build(&toml, &BuildContext::default(), "s3");
    let d = sample_delivery("sleep", &user(), 1);
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(reason.contains("does not exist"), "{reason}")
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    let err = dest.check().await.unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    // And check() passes on the real bucket, leaving nothing behind.
    build(&b.toml("prefix = \"p\""), &BuildContext::default(), "s3")
        .check()
        .await
        .unwrap();
    assert!(b.keys("").await.is_empty(), "check() must clean up");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retry_and_check_fails() {
    let b = Bucket::new().await;
    let port = dead_port().await;
    let toml = b
        .toml("")
        .replace(&b.endpoint, &format!("http://127.0.0.1:{port}"));
    let dest = build(&toml, &BuildContext::default(), "s3");
    let d = sample_delivery("sleep", &user(), 1);
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Retry { reason, .. } => assert!(reason.contains("cannot reach"), "{reason}"),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert!(dest.check().await.is_err());
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
    let dest = build(&b.toml(""), &BuildContext::default(), "s3");
    let u = user();
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
    let names = b.keys("").await;
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
