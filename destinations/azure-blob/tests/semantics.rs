//! What lands in the container (against Azurite): names, content type, metadata, overwrite on
//! update, claim-check links fetched with a plain GET, classification of a missing container and
//! of a SAS without write permission, and the crate's SAS signing checked against `azsas.py`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use common::{ACCOUNT, Container, KEY, azsas, build};
use manifold_azure_blob::sas::{SasRequest, service_sas};
use manifold_core::destination::{BuildContext, Destination, Outcome};
use manifold_core::testkit::sample_delivery;
use serde_json::{Value, json};

#[test]
fn sas_signing_matches_the_independent_implementation() {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    let expiry = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    for (blob, perms) in [(None, "cw"), (Some("terra/a b/ü+x.json"), "r")] {
        let ours = service_sas(
            &SasRequest {
                account: ACCOUNT,
                container: "health-data",
                blob,
                permissions: perms,
                expiry,
            },
            &key,
        );
        let theirs = match blob {
            None => azsas(&[
                "container",
                ACCOUNT,
                KEY,
                "health-data",
                perms,
                "2026-01-02T03:04:05Z",
            ]),
            Some(b) => azsas(&[
                "blob",
                ACCOUNT,
                KEY,
                "health-data",
                b,
                perms,
                "2026-01-02T03:04:05Z",
            ]),
        };
        assert_eq!(ours, theirs, "{blob:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_carry_content_type_and_metadata_and_updates_overwrite() {
    let c = Container::new().await;
    let dest = build(
        &c.toml_cs("prefix = \"/exports/terra/\""),
        &BuildContext::default(),
        "az",
    );
    let mut d = sample_delivery("sleep", "user-1", 1);
    d.reference_id = Some("ref".into());
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Delivered { .. }
    ));
    let start = d.json().unwrap()["data"][0]["metadata"]["start_time"]
        .as_str()
        .unwrap()
        .to_string();
    let name = format!("exports/terra/2022-03-16/sleep/user-1-{start}.json");
    assert_eq!(c.names("").await, vec![name.clone()]);
    let blob = c.get(&name).await.expect("the blob exists");
    assert_eq!(
        blob.body,
        d.body.to_vec(),
        "a one-item event is stored byte for byte"
    );
    assert_eq!(blob.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        blob.metadata.get("traceid").map(String::as_str),
        Some(d.trace_id())
    );
    assert_eq!(
        blob.metadata.get("userid").map(String::as_str),
        Some("user-1")
    );
    assert_eq!(
        blob.metadata.get("eventtype").map(String::as_str),
        Some("sleep")
    );

    // An updated record (same start time, new body) overwrites its blob.
    let mut v2 = d.json().unwrap();
    v2["data"][0]["scores"]["sleep"] = json!(91);
    let mut d2 = sample_delivery("sleep", "user-1", 1);
    d2.body = Bytes::from(serde_json::to_vec(&v2).unwrap());
    d2.version = 2;
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d2)).await[0],
        Outcome::Delivered { .. }
    ));
    assert_eq!(c.names("").await.len(), 1);
    let back: Value = serde_json::from_slice(&c.get(&name).await.unwrap().body).unwrap();
    assert_eq!(back["data"][0]["scores"]["sleep"], 91);
    assert_eq!(
        c.get(&name).await.unwrap().metadata["traceid"],
        d2.trace_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_items_become_several_blobs() {
    let c = Container::new().await;
    let dest = build(&c.toml_sas("cw", ""), &BuildContext::default(), "az");
    let mut d = sample_delivery("daily", "multi", 1);
    let mut body = d.json().unwrap();
    let mut second = body["data"][0].clone();
    second["metadata"]["start_time"] = json!("2026-07-09T00:00:00+00:00");
    body["data"].as_array_mut().unwrap().push(second.clone());
    d.body = Bytes::from(serde_json::to_vec(&body).unwrap());
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Delivered { .. }
    ));
    let names = c.names("2022-03-16/daily/").await;
    assert_eq!(names.len(), 2, "{names:?}");
    let b: Value = serde_json::from_slice(
        &c.get("2022-03-16/daily/multi-2026-07-09T00:00:00+00:00.json")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(b["data"], json!([second]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_check_links_fetch_the_payload() {
    let c = Container::new().await;
    for (label, settings) in [
        ("connection string", c.toml_cs("prefix = \"cc\"")),
        ("SAS URL with r", c.toml_sas("rcw", "prefix = \"cc\"")),
    ] {
        let ctx = BuildContext::default();
        build(&settings, &ctx, "store");
        let store = ctx
            .blob_stores
            .get("store")
            .expect("registered as a blob store");
        let d = sample_delivery("activity", "cc-user", 1);
        let msg =
            manifold_core::blob::claim_check(store.as_ref(), "", &d, Duration::from_secs(120))
                .await
                .unwrap_or_else(|o| panic!("{label}: {o:?}"));
        assert_eq!(msg["type"], "s3_payload");
        let url = msg["url"].as_str().unwrap();
        assert!(
            url.contains("/cc/2022-03-16/claim-check/activity/"),
            "{url}"
        );
        let resp = reqwest::get(url).await.unwrap();
        assert!(
            resp.status().is_success(),
            "{label}: GET {url}: {}",
            resp.status()
        );
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            d.body.as_ref(),
            "{label}"
        );
        if label == "connection string" {
            assert!(
                url.contains("sr=b") && url.contains("sp=r&"),
                "a read-only blob SAS: {url}"
            );
            // The read SAS cannot write.
            let put = reqwest::Client::new()
                .put(url)
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-version", "2022-11-02")
                .body("overwritten")
                .send()
                .await
                .unwrap();
            assert_eq!(put.status().as_u16(), 403);
        }
    }
    // A SAS without `r` cannot make links: the claim check is retried with the reason.
    let ctx = BuildContext::default();
    build(&c.toml_sas("cw", ""), &ctx, "store");
    let store = ctx.blob_stores.get("store").unwrap();
    let err = store
        .presign_get("x.json", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.contains("add `r`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_container_and_read_only_sas_are_permanent() {
    let c = Container::new().await;
    let d = sample_delivery("body", "perm", 1);
    let missing = c
        .toml_cs("")
        .replace(&format!("\"{}\"", c.name), "\"no-such-container\"");
    let dest = build(&missing, &BuildContext::default(), "az");
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, response } => {
            assert!(
                reason.contains("no-such-container") && reason.contains("create it"),
                "{reason}"
            );
            assert_eq!(response.status, Some(404));
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    let e = dest.check().await.unwrap_err();
    assert!(e.contains("does not exist"), "{e}");

    // A SAS with `c` (create) but not `w` cannot overwrite: the update is refused for good.
    // Validation refuses such a SAS (`sas_url` without `w`); build the destination around it
    // directly to see what the service says.
    let table: toml::Table = toml::from_str(&c.toml_sas("c", "")).unwrap();
    let raw = table["sas_url"].as_str().unwrap();
    let (service_url, query) = manifold_azure_blob::parse_sas_url(raw, &c.name).unwrap();
    let dest = manifold_azure_blob::AzureBlobDestination::new(
        "az",
        manifold_azure_blob::Settings {
            service_url,
            container: c.name.clone(),
            prefix: String::new(),
            auth: manifold_azure_blob::Auth::Sas {
                query: manifold_core::config::Secret::new(query),
                permissions: Some("c".into()),
            },
            presign_expiry: Duration::from_secs(60),
        },
    );
    let d = sample_delivery("body", "create-only", 1);
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&d)).await[0],
        Outcome::Delivered { .. }
    ));
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, response } => {
            assert!(reason.contains("`cw`"), "{reason}");
            assert_eq!(response.status, Some(403));
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    assert_eq!(c.names("").await.len(), 1, "only the created blob");
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
    let c = Container::new().await;
    let dest = build(&c.toml_cs(""), &BuildContext::default(), "az");
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
    let names = c.names("").await;
    assert_eq!(names.len(), 1, "{names:?}");
    let obj = c.get(&names[0]).await.unwrap();
    assert!(
        obj.body == all[4].body.to_vec(),
        "the object holds an older version"
    );
    assert_eq!(
        obj.metadata.get("traceid").map(String::as_str),
        Some(all[4].trace_id())
    );
    assert_eq!(obj.metadata.get("version").map(String::as_str), Some("5"));
}
