//! Kafka-specific behaviour against the real broker (tansu): keys and ordering, headers, topic
//! templates, claim checks, size limits, unreachable brokers, check().

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{bootstrap, build, build_with, dead_port, fresh_topic, read_topic, records_for};
use manifold_core::blob::BlobStore;
use manifold_core::destination::{BuildContext, Delivery, Outcome};
use manifold_core::testkit::sample_delivery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_delivered(out: &[Outcome]) {
    for (i, o) in out.iter().enumerate() {
        assert!(matches!(o, Outcome::Delivered { .. }), "item {i}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_events_stay_in_order_on_one_partition() {
    let b = bootstrap();
    let topic = fresh_topic("ordering");
    let dest = build(&b, &format!("topic = \"{topic}\""), "");
    let (alice, bob) = (
        format!("alice-{}", uuid::Uuid::new_v4()),
        format!("bob-{}", uuid::Uuid::new_v4()),
    );
    // 20 events per user, interleaved in one batch.
    let batch: Vec<Delivery> = (0..20u32)
        .flat_map(|i| {
            [
                sample_delivery("sleep", &alice, i + 1),
                sample_delivery("daily", &bob, i + 1),
            ]
        })
        .collect();
    let out = dest.deliver(&batch).await;
    assert_delivered(&out);

    let records = read_topic(&b, &topic).await;
    assert_eq!(
        records.len(),
        40,
        "every acknowledged message is on the topic"
    );
    for user in [&alice, &bob] {
        let sent: Vec<&str> = batch
            .iter()
            .filter(|d| d.user_id.as_deref() == Some(user.as_str()))
            .map(|d| d.trace_id())
            .collect();
        let mut got: Vec<_> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(user.as_str()))
            .collect();
        assert_eq!(got.len(), 20);
        let partition = got[0].partition;
        assert!(
            got.iter().all(|r| r.partition == partition),
            "one user's messages share one partition"
        );
        got.sort_by_key(|r| r.offset);
        let order: Vec<&str> = got.iter().map(|r| r.trace_id().unwrap()).collect();
        assert_eq!(order, sent, "offsets follow the order the events were sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_carries_key_headers_and_the_exact_body() {
    let b = bootstrap();
    let topic = fresh_topic("headers");
    let dest = build(&b, &format!("topic = \"{topic}\""), "");
    let mut d = sample_delivery("sleep", &format!("u-{}", uuid::Uuid::new_v4()), 1);
    d.terra_reference = Some("ref-7f3a".into());
    let plain = sample_delivery("daily", &format!("u-{}", uuid::Uuid::new_v4()), 1);
    assert_delivered(&dest.deliver(&[d.clone(), plain.clone()]).await);

    let r = records_for(&b, &topic, d.trace_id()).await;
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.value, d.body.to_vec(), "value = the body, byte for byte");
    assert_eq!(r.key.as_deref(), d.user_id.as_deref(), "key = user id");
    assert_eq!(r.headers["type"], "sleep");
    assert_eq!(r.headers["trace_id"], d.trace_id());
    assert_eq!(r.headers["delivery_id"], d.id);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["terra-reference"], "ref-7f3a");

    let p = &records_for(&b, &topic, plain.trace_id()).await[0];
    assert!(
        !p.headers.contains_key("terra-reference"),
        "no terra-reference header without a reference"
    );
    assert_eq!(p.headers["type"], "daily");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_template_routes_each_type_to_its_topic() {
    let b = bootstrap();
    let prefix = fresh_topic("tmpl");
    let dest = build(&b, &format!("topic_template = \"{prefix}.{{type}}\""), "");
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let sleep = sample_delivery("sleep", &user, 1);
    let daily = sample_delivery("daily", &user, 1);
    assert_delivered(&dest.deliver(&[sleep.clone(), daily.clone()]).await);

    for (d, topic) in [
        (&sleep, format!("{prefix}.sleep")),
        (&daily, format!("{prefix}.daily")),
    ] {
        let all = read_topic(&b, &topic).await;
        assert_eq!(all.len(), 1, "{topic} holds exactly its own event");
        assert_eq!(all[0].trace_id(), Some(d.trace_id()));
        assert_eq!(all[0].json(), d.json().unwrap());
    }
    assert!(dest.check().await.is_ok(), "check() with a template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_retry_and_says_why() {
    let port = dead_port();
    let dest = build(
        &format!("127.0.0.1:{port}"),
        "topic = \"t\"",
        "\"message.timeout.ms\" = \"2000\"",
    );
    let d = sample_delivery("sleep", "u", 1);
    let started = std::time::Instant::now();
    let out = dest.deliver(std::slice::from_ref(&d)).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    match &out[0] {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("timed out"), "{reason}");
            assert!(
                reason.contains(&port.to_string()) || reason.contains("refused"),
                "{reason}"
            );
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    let err = dest.check().await.unwrap_err();
    assert!(err.contains("brokers"), "{err}");
}

fn big_delivery(user: &str, bytes: usize) -> Delivery {
    let mut d = sample_delivery("activity", user, 1);
    let mut v = d.json().unwrap();
    v["data"][0]["padding"] = serde_json::Value::String("x".repeat(bytes));
    d.body = Bytes::from(serde_json::to_vec(&v).unwrap());
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_without_claim_check_is_permanent_and_not_sent() {
    let b = bootstrap();
    let topic = fresh_topic("oversized");
    let dest = build(
        &b,
        &format!("topic = \"{topic}\"\nmax_message_bytes = \"4KiB\""),
        "",
    );
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let big = big_delivery(&user, 8_000);
    let small = sample_delivery("sleep", &user, 2);
    let out = dest.deliver(&[big.clone(), small.clone()]).await;
    match &out[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(reason.contains("claim_check"), "{reason}");
            assert!(reason.contains("max_message_bytes"), "{reason}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(matches!(out[1], Outcome::Delivered { .. }), "{:?}", out[1]);
    assert!(records_for(&b, &topic, big.trace_id()).await.is_empty());
    assert_eq!(records_for(&b, &topic, small.trace_id()).await.len(), 1);
}

/// Object key → (body, content type).
type Objects = Arc<Mutex<HashMap<String, (Vec<u8>, String)>>>;

/// An object store for the claim check that serves its objects over HTTP on 127.0.0.1 (the
/// "pre-signed URL" is a plain GET), so the test can follow the link like a consumer.
struct HttpBlobs {
    objects: Objects,
    base: String,
}

impl HttpBlobs {
    async fn start() -> Arc<HttpBlobs> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let objects: Objects = Arc::default();
        let served = objects.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let key = path
                        .trim_start_matches('/')
                        .split('?')
                        .next()
                        .unwrap()
                        .to_string();
                    let found = served.lock().unwrap().get(&key).cloned();
                    let resp = match found {
                        Some((body, ct)) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = sock.write_all(&resp).await;
                });
            }
        });
        Arc::new(HttpBlobs { objects, base })
    }
}

#[async_trait]
impl BlobStore for HttpBlobs {
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), Outcome> {
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), (body.to_vec(), content_type.to_string()));
        Ok(())
    }
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, String> {
        Ok(format!("{}/{key}?expires={}", self.base, expires.as_secs()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_with_claim_check_sends_an_s3_payload_link() {
    let b = bootstrap();
    let topic = fresh_topic("claimcheck");
    let blobs = HttpBlobs::start().await;
    let ctx = BuildContext::default();
    ctx.blob_stores.register("archive", blobs.clone());
    let dest = build_with(
        &b,
        &format!(
            "topic = \"{topic}\"\nmax_message_bytes = \"4KiB\"\nclaim_check = \"archive\"\nclaim_check_prefix = \"kafka\"\npresign_expiry = \"15m\""
        ),
        "",
        &ctx,
    );
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let big = big_delivery(&user, 8_000);
    assert_delivered(&dest.deliver(std::slice::from_ref(&big)).await);

    let r = records_for(&b, &topic, big.trace_id()).await;
    assert_eq!(r.len(), 1);
    let msg = r[0].json();
    assert_eq!(r[0].key.as_deref(), Some(user.as_str()));
    assert_eq!(r[0].headers["type"], "activity");
    assert_eq!(r[0].headers["content-type"], "application/json");
    assert_eq!(msg["type"], "s3_payload");
    assert_eq!(msg["payload_type"], "activity");
    assert_eq!(msg["user_id"], user.as_str());
    assert_eq!(msg["trace_id"], big.trace_id());
    assert_eq!(msg["expires_in"], 900);
    assert!(
        msg["payload_reference"]
            .as_str()
            .unwrap()
            .starts_with("kafka/")
    );
    // Follow the link like a consumer does.
    let url = msg["url"].as_str().unwrap();
    let fetched = reqwest::get(url).await.unwrap();
    assert!(fetched.status().is_success());
    assert_eq!(
        fetched.bytes().await.unwrap(),
        big.body,
        "the link returns the payload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_the_broker() {
    let b = bootstrap();
    let topic = fresh_topic("check");
    let dest = build(&b, &format!("topic = \"{topic}\""), "");
    dest.check().await.unwrap();
}
