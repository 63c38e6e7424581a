//! Messages as they arrive on the local SQS server (moto), claim checks through the local S3.

mod common;

use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use common::{Queue, build_sqs, s3_store};
use manifold_core::destination::{BuildContext, Outcome};
use manifold_core::testkit::sample_delivery;
use serde_json::{Value, json};

fn user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

/// A sleep delivery padded with heart-rate samples to just over `kib` KiB.
fn big_delivery(user: &str, kib: usize) -> manifold_core::destination::Delivery {
    let mut d = sample_delivery("sleep", user, 1);
    let mut v: Value = serde_json::from_slice(&d.body).unwrap();
    let base = d.body.len();
    // Each sample serializes to about 55 bytes.
    let n = (kib * 1024).saturating_sub(base) / 50 + 1;
    let samples: Vec<Value> = (0..n)
        .map(|i| json!({"timestamp": format!("2026-07-01T{:02}:{:02}:{:02}+00:00", i / 3600 % 24, i / 60 % 60, i % 60), "bpm": 50 + i % 40}))
        .collect();
    v["data"][0]["heart_rate_data"]["detailed"]["hr_samples"] = Value::Array(samples);
    d.body = Bytes::from(serde_json::to_vec(&v).unwrap());
    assert!(d.body.len() > kib * 1024, "{} bytes", d.body.len());
    d
}

#[tokio::test]
async fn attributes_and_body_of_an_inline_message() {
    let q = Queue::new(false, &[]).await;
    let dest = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    let d = sample_delivery("activity", &user(), 1);
    let out = dest.deliver(std::slice::from_ref(&d)).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    let got = q.for_trace(d.trace_id()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body.as_bytes(),
        &d.body[..],
        "the body is the payload exactly"
    );
    assert_eq!(
        got[0].attributes.get("type").map(String::as_str),
        Some("activity")
    );
    assert_eq!(got[0].attributes.get("user_id"), d.user_id.as_ref());
    assert_eq!(
        got[0].attributes.get("trace_id").map(String::as_str),
        Some(d.trace_id())
    );
    assert!(got[0].group_id.is_none());
}

#[tokio::test]
async fn an_oversized_payload_goes_through_the_claim_check_and_the_link_serves_it() {
    let ctx = BuildContext::default();
    let bucket = s3_store(&ctx, "archive", "terra").await;
    let q = Queue::new(false, &[]).await;
    let dest = build_sqs(
        &q.toml("claim_check = \"archive\"\npresign_expiry = \"15m\""),
        &ctx,
        "queue",
    );
    assert!(ctx.blob_stores.missing().is_empty());
    let u = user();
    let d = big_delivery(&u, 300);
    assert!(d.body.len() > 300 * 1024, "{}", d.body.len());
    let small = sample_delivery("daily", &u, 2);
    let out = dest.deliver(&[d.clone(), small.clone()]).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );

    let got = q.for_trace(d.trace_id()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].attributes.get("type").map(String::as_str),
        Some("sleep")
    );
    let msg: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(msg["type"], "s3_payload");
    assert_eq!(msg["status"], "success");
    assert_eq!(msg["expires_in"], 900);
    assert_eq!(msg["payload_type"], "sleep");
    assert_eq!(msg["user_id"], json!(u));
    assert_eq!(msg["trace_id"], json!(d.trace_id()));
    let reference = msg["payload_reference"].as_str().unwrap();
    assert_eq!(
        reference,
        format!("2022-03-16/claim-check/sleep/{u}-{}.json", d.trace_id())
    );
    let url = msg["url"].as_str().unwrap();
    assert!(
        url.contains(&bucket) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    // What a consumer does: a plain GET of the link.
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(resp.bytes().await.unwrap(), d.body);

    // The small one in the same batch stayed inline.
    let inline = q.for_trace(small.trace_id()).await;
    assert_eq!(inline[0].body.as_bytes(), &small.body[..]);
}

#[tokio::test]
async fn an_oversized_payload_without_claim_check_is_permanent_and_says_how_to_fix() {
    let q = Queue::new(false, &[]).await;
    let dest = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    let d = big_delivery(&user(), 300);
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(reason.contains("claim_check"), "{reason}")
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(q.for_trace(d.trace_id()).await.is_empty());
}

#[tokio::test]
async fn fifo_messages_carry_group_and_deduplication_ids() {
    let q = Queue::new(true, &[]).await;
    let dest = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    let u = user();
    let a = sample_delivery("sleep", &u, 1);
    let b = sample_delivery("daily", &u, 2);
    let out = dest.deliver(&[a.clone(), b.clone()]).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );
    // Redelivering `a` (same delivery id) within SQS's window is dropped by SQS itself.
    let out = dest.deliver(std::slice::from_ref(&a)).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    for d in [&a, &b] {
        let got = q.for_trace(d.trace_id()).await;
        assert_eq!(got.len(), 1, "FIFO deduplication keeps one copy");
        assert_eq!(got[0].group_id.as_deref(), Some(u.as_str()));
        assert_eq!(got[0].dedup_id.as_deref(), Some(d.id.as_str()));
        assert_eq!(got[0].body.as_bytes(), &d.body[..]);
    }
    dest.check().await.unwrap();
}

#[tokio::test]
async fn one_bad_entry_fails_only_itself() {
    // The queue refuses bodies over 1 KiB, a limit the destination does not know about: SQS
    // rejects the batch, and each entry is then sent alone.
    let q = Queue::new(false, &[(QueueAttributeName::MaximumMessageSize, "1024")]).await;
    let dest = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    let u = user();
    let ok1 = sample_delivery("auth", &u, 1);
    let bad = big_delivery(&u, 4);
    let ok2 = sample_delivery("auth", &u, 2);
    assert!(ok1.body.len() < 1024 && ok2.body.len() < 1024);
    let out = dest.deliver(&[ok1.clone(), bad.clone(), ok2.clone()]).await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    assert!(matches!(out[1], Outcome::Permanent { .. }), "{out:?}");
    assert!(matches!(out[2], Outcome::Delivered { .. }), "{out:?}");
    assert_eq!(q.for_trace(ok1.trace_id()).await.len(), 1);
    assert_eq!(q.for_trace(ok2.trace_id()).await.len(), 1);
    assert!(q.for_trace(bad.trace_id()).await.is_empty());
}

#[tokio::test]
async fn a_full_batch_is_split_to_stay_under_the_request_limit() {
    let q = Queue::new(false, &[]).await;
    let dest = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    let u = user();
    // Ten payloads of ~60 KiB: 600 KiB in all, over the 256 KiB per request.
    let batch: Vec<_> = (0..10).map(|_| big_delivery(&u, 60)).collect();
    let out = dest.deliver(&batch).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Delivered { .. })),
        "{out:?}"
    );
    for d in &batch {
        let got = q.for_trace(d.trace_id()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body.as_bytes(), &d.body[..]);
    }
}

#[tokio::test]
async fn a_missing_queue_is_permanent_and_check_says_so() {
    let q = Queue::new(false, &[]).await;
    let toml = q.toml("").replace(&q.url, &format!("{}-missing", q.url));
    let dest = build_sqs(&toml, &BuildContext::default(), "queue");
    let u = user();
    let batch = [
        sample_delivery("sleep", &u, 1),
        sample_delivery("sleep", &u, 2),
    ];
    for o in dest.deliver(&batch).await {
        match o {
            Outcome::Permanent { reason, .. } => {
                assert!(reason.contains("does not exist"), "{reason}")
            }
            other => panic!("expected Permanent, got {other:?}"),
        }
    }
    let err = dest.check().await.unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test]
async fn check_sends_a_healthcheck_and_verifies_the_claim_check_store() {
    let q = Queue::new(false, &[]).await;
    let ok = build_sqs(&q.toml(""), &BuildContext::default(), "queue");
    ok.check().await.unwrap();
    q.drain().await;
    let seen = q.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].attributes.get("type").map(String::as_str),
        Some("healthcheck")
    );

    let ctx = BuildContext::default();
    let dangling = build_sqs(&q.toml("claim_check = \"nowhere\""), &ctx, "queue");
    assert_eq!(ctx.blob_stores.missing().len(), 1);
    let err = dangling.check().await.unwrap_err();
    assert!(err.contains("nowhere"), "{err}");
}
