//! Issue #7's proofs for the object-storage and queue destinations (s3, gcs, azure-blob, sqs,
//! kafka), end to end through the real binary and read back with the vendors' own SDKs:
//!
//! 1. `manifold demo --users 3 --days 7` delivers to each destination; every object / message is
//!    compared byte for byte with the JSON the demo forwarded (signed) to this test's receiver.
//! 2. A payload over 256 KiB goes through the SQS and Kafka claim check, and `curl` on the link
//!    downloads exactly the delivered bytes.
//! 3. The server behind each destination goes down while `manifold serve` is delivering, and
//!    comes back: nothing is lost (private Azurite / fake-gcs-server / tansu processes killed
//!    with SIGKILL and started again on their data; moto keeps its state only in memory, so S3
//!    and SQS get a `FaultProxy` outage in front of the shared moto instead).
//!
//! Servers: `scripts/services` (moto, fake-gcs-server, Azurite, tansu, the Python SDKs).

#[path = "common/objproof.rs"]
mod objproof;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use manifold_core::testkit::FaultProxy;
use objproof::*;
use serde_json::Value;

const USERS: u32 = 3;
const DAYS: u32 = 7;

/// Run the demo with `destination` (one `[[destinations]]` table) in its `--config`; the
/// delivered payloads, once each, by trace id.
async fn demo_with(destination: &str) -> BTreeMap<String, Forwarded> {
    let receiver = ForwardReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("destinations.toml");
    std::fs::write(&config, destination).unwrap();
    let stdout = run_demo(&config, &receiver.url, USERS, DAYS).await;
    let payloads = receiver.payloads();
    let types: BTreeSet<String> = payloads.values().map(Forwarded::event_type).collect();
    for t in ["auth", "sleep", "daily", "activity"] {
        assert!(types.contains(t), "no {t} payload was delivered: {stdout}");
    }
    let users: BTreeSet<String> = payloads.values().map(Forwarded::user_id).collect();
    assert_eq!(users.len(), USERS as usize, "users: {users:?}");
    // Every user-day has its `daily` record: the demo ran to the end rather than stopping in a
    // quiet moment while the simulated rings were still syncing.
    let days: BTreeSet<(String, String)> = payloads
        .values()
        .filter(|f| f.event_type() == "daily")
        .map(|f| {
            let start = f.json()["data"][0]["metadata"]["start_time"].clone();
            (
                f.user_id(),
                start
                    .as_str()
                    .and_then(|s| s.get(..10))
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        days.len(),
        (USERS * DAYS) as usize,
        "the demo stopped before every user-day's `daily` arrived (it exits after 1.5 s without \
         new payloads): {stdout}"
    );
    eprintln!(
        "demo delivered {} payloads ({types:?}): {}",
        payloads.len(),
        stdout.lines().last().unwrap_or_default()
    );
    payloads
}

fn s3_table(name: &str, endpoint: &str, bucket: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "{name}"
type = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
access_key_id = "test"
secret_access_key = "test"
prefix = "{prefix}"
{extra}
"#
    )
}

fn gcs_table(endpoint: &str, bucket: &str, prefix: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "proof-gcs"
type = "gcs"
bucket = "{bucket}"
endpoint = "{endpoint}"
prefix = "{prefix}"
{FAST_RETRY}
"#
    )
}

fn azure_table(endpoint: &str, container: &str, prefix: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "proof-azure"
type = "azure-blob"
container = "{container}"
connection_string = "DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint={endpoint};"
prefix = "{prefix}"
{FAST_RETRY}
"#
    )
}

fn sqs_table(queue_url: &str, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "proof-sqs"
type = "sqs"
queue_url = "{queue_url}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
{extra}
{FAST_RETRY}
"#
    )
}

fn kafka_table(brokers: &str, topic: &str, extra: &str, producer: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "proof-kafka"
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
timeout = "10s"
{extra}
{FAST_RETRY}

[destinations.producer]
{TANSU_PRODUCER}
{producer}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// 1. The demo's data, 3 users × 7 days, read back with the vendors' SDKs.

async fn demo_object_store(store: ObjectStore, endpoint: &str, table: impl Fn(&str) -> String) {
    let bucket = unique("demo");
    store.create(endpoint, &bucket).await;
    let payloads = demo_with(&table(&bucket)).await;
    let objects = store.dump(endpoint, &bucket).await;
    let multi = assert_objects_match(store, "proof", &payloads, &objects);
    eprintln!(
        "{store:?}: {} objects equal the latest delivered version ({} payloads; {multi} keys were updated)",
        objects.len(),
        payloads.len()
    );
    assert!(
        multi > 0,
        "the demo's daily records are updated: some key must have several versions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_in_s3_equals_the_delivered_json() {
    let endpoint = aws_endpoint();
    demo_object_store(ObjectStore::S3, &endpoint, |b| {
        s3_table("proof-s3", &endpoint, b, "proof", FAST_RETRY)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_in_gcs_equals_the_delivered_json() {
    let endpoint = gcs_endpoint();
    demo_object_store(ObjectStore::Gcs, &endpoint, |b| {
        gcs_table(&endpoint, b, "proof")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_in_azure_blob_equals_the_delivered_json() {
    let endpoint = azurite_endpoint();
    demo_object_store(ObjectStore::Azure, &endpoint, |c| {
        azure_table(&endpoint, c, "proof")
    })
    .await;
}

/// Every delivered payload is exactly one message with its bytes and attributes, and there is
/// no other message.
fn assert_one_message_per_payload(
    payloads: &BTreeMap<String, Forwarded>,
    messages: &[(String, Vec<u8>, BTreeMap<String, String>)],
    what: &str,
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (trace, body, attrs) in messages {
        let f = payloads.get(trace).unwrap_or_else(|| {
            panic!(
                "{what}: a message with trace id {trace:?} was never delivered: {}",
                String::from_utf8_lossy(body)
            )
        });
        assert!(
            *body == f.body,
            "{what}: trace id {trace}: the message's bytes differ from the delivered JSON\n message:   {}\n delivered: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&f.body)
        );
        assert_eq!(
            attrs.get("type").map(String::as_str),
            Some(f.event_type().as_str()),
            "{what}: type of {trace}"
        );
        *seen.entry(trace).or_default() += 1;
    }
    let missing: Vec<&String> = payloads
        .keys()
        .filter(|t| !seen.contains_key(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} payloads never arrived: {missing:?}",
        missing.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: duplicates in a run without faults: {twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_on_sqs_equals_the_delivered_json() {
    let endpoint = aws_endpoint();
    let url = sqs_create(&endpoint, &unique("demo")).await;
    let payloads = demo_with(&sqs_table(&url, "")).await;
    let messages = sqs_drain(&endpoint, &url, payloads.len(), 40).await;
    let triples: Vec<_> = messages
        .iter()
        .map(|m| {
            let trace = m.attributes.get("trace_id").cloned().unwrap_or_default();
            let f = payloads.get(&trace);
            if let Some(f) = f {
                assert_eq!(
                    m.attributes.get("user_id"),
                    Some(&f.user_id()),
                    "user_id attribute"
                );
            }
            (trace, m.body.clone(), m.attributes.clone())
        })
        .collect();
    assert_one_message_per_payload(&payloads, &triples, "SQS");
    eprintln!(
        "SQS: {} messages equal the {} delivered payloads",
        messages.len(),
        payloads.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_on_kafka_equals_the_delivered_json_in_each_users_order() {
    let brokers = kafka_brokers();
    let topic = unique("demo");
    // Several batches in flight (`concurrency = 8`): the engine keeps each user on one lane, so
    // a user's events still reach the partition in emission order (README "Ordering").
    let payloads = demo_with(&kafka_table(&brokers, &topic, "concurrency = 8", "")).await;
    let records = kafka_read(&brokers, &topic, payloads.len(), 45).await;
    let triples: Vec<_> = records
        .iter()
        .map(|r| {
            let trace = r.headers.get("trace_id").cloned().unwrap_or_default();
            if let Some(f) = payloads.get(&trace) {
                assert_eq!(r.key, f.user_id(), "record key = user id ({trace})");
            }
            (trace, r.value.clone(), r.headers.clone())
        })
        .collect();
    assert_one_message_per_payload(&payloads, &triples, "Kafka");

    // One partition per user, and within it the order in which the payloads were emitted.
    let mut by_user: BTreeMap<String, Vec<&KafkaRecord>> = BTreeMap::new();
    for r in &records {
        by_user.entry(r.key.clone()).or_default().push(r);
    }
    assert_eq!(by_user.len(), USERS as usize);
    for (user, mut recs) in by_user {
        let partitions: BTreeSet<i64> = recs.iter().map(|r| r.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "user {user}: records on partitions {partitions:?}"
        );
        recs.sort_by_key(|r| r.offset);
        let emitted: Vec<i64> = recs
            .iter()
            .map(|r| payloads[&r.headers["trace_id"]].ordering_ms)
            .collect();
        assert!(
            emitted.windows(2).all(|w| w[0] <= w[1]),
            "user {user}: offsets are not in emission order (x-terra-ordering-timestamp by offset: {emitted:?})"
        );
        eprintln!(
            "Kafka: user {user}: {} records on partition {partitions:?}, in emission order",
            recs.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Over 256 KiB: the claim check, and the link works with plain curl.

/// Find the record with `trace`, check it is an `s3_payload` pointing into `bucket`, fetch its
/// link with curl; the downloaded bytes.
async fn follow_claim_check(body: &[u8], trace: &str, user: &str) -> Vec<u8> {
    let msg: Value = serde_json::from_slice(body).expect("the claim-check message is JSON");
    assert_eq!(msg["type"], "s3_payload", "{msg}");
    assert_eq!(msg["status"], "success", "{msg}");
    assert_eq!(msg["trace_id"], trace, "{msg}");
    assert_eq!(msg["user_id"], user, "{msg}");
    assert_eq!(msg["payload_type"], "sleep", "{msg}");
    assert_eq!(msg["expires_in"], 600, "{msg}");
    let url = msg["url"].as_str().expect("url");
    assert!(url.contains("X-Amz-Signature="), "a pre-signed URL: {url}");
    curl(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_claim_check_link_downloads_the_payload_with_curl() {
    let endpoint = aws_endpoint();
    let bucket = unique("claims");
    ObjectStore::S3.create(&endpoint, &bucket).await;
    let url = sqs_create(&endpoint, &unique("claims")).await;
    let serve = Serve::start(&format!(
        "{}\n{}",
        s3_table("archive", &endpoint, &bucket, "claims", "enabled = false"),
        sqs_table(&url, "claim_check = \"archive\"")
    ))
    .await;
    let run = unique("run");
    let big = big_sleep_event(&run, 0, 300);
    let small = sleep_event(&run, 1, 1);
    serve.publish(&big).await;
    serve.publish(&small).await;
    serve
        .wait_delivered("proof-sqs", 2, Duration::from_secs(30))
        .await;
    serve
        .receiver
        .wait_distinct(2, Duration::from_secs(20))
        .await;
    let payloads = serve.receiver.payloads();
    let big_sent = payloads
        .values()
        .find(|f| f.body.len() > 256 * 1024)
        .expect("the big payload");
    let small_sent = payloads
        .values()
        .find(|f| f.body.len() < 4096)
        .expect("the small payload");

    let messages = sqs_drain(&endpoint, &url, 2, 30).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let by_trace: BTreeMap<&str, &SqsMessage> = messages
        .iter()
        .map(|m| (m.attributes["trace_id"].as_str(), m))
        .collect();
    let m = by_trace[big_sent.trace_id.as_str()];
    assert!(m.body.len() < 4096, "the big payload is not inline");
    assert_eq!(m.attributes.get("type").map(String::as_str), Some("sleep"));
    let downloaded = follow_claim_check(&m.body, &big_sent.trace_id, &big_sent.user_id()).await;
    assert!(
        downloaded == big_sent.body,
        "curl on the claim-check link: {} bytes, the delivered payload has {}",
        downloaded.len(),
        big_sent.body.len()
    );
    // The object itself, read with boto3, and the small payload inline.
    let objects = ObjectStore::S3.dump(&endpoint, &bucket).await;
    assert_eq!(objects.len(), 1, "{:?}", objects.keys());
    assert!(objects.values().next().unwrap().body == big_sent.body);
    assert!(by_trace[small_sent.trace_id.as_str()].body == small_sent.body);
    eprintln!(
        "SQS claim check: {} bytes via curl equal the delivered payload",
        downloaded.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_claim_check_link_downloads_the_payload_with_curl() {
    let endpoint = aws_endpoint();
    let brokers = kafka_brokers();
    let bucket = unique("claims");
    ObjectStore::S3.create(&endpoint, &bucket).await;
    let topic = unique("claims");
    let serve = Serve::start(&format!(
        "{}\n{}",
        s3_table("archive", &endpoint, &bucket, "claims", "enabled = false"),
        kafka_table(
            &brokers,
            &topic,
            "max_message_bytes = 262144\nclaim_check = \"archive\"",
            ""
        )
    ))
    .await;
    let run = unique("run");
    serve.publish(&big_sleep_event(&run, 0, 300)).await;
    serve.publish(&sleep_event(&run, 1, 1)).await;
    serve
        .wait_delivered("proof-kafka", 2, Duration::from_secs(30))
        .await;
    serve
        .receiver
        .wait_distinct(2, Duration::from_secs(20))
        .await;
    let payloads = serve.receiver.payloads();
    let big_sent = payloads
        .values()
        .find(|f| f.body.len() > 256 * 1024)
        .expect("the big payload");
    let small_sent = payloads
        .values()
        .find(|f| f.body.len() < 4096)
        .expect("the small payload");

    let records = kafka_read(&brokers, &topic, 2, 45).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let by_trace: BTreeMap<&str, &KafkaRecord> = records
        .iter()
        .map(|r| (r.headers["trace_id"].as_str(), r))
        .collect();
    let r = by_trace[big_sent.trace_id.as_str()];
    assert!(r.value.len() < 4096, "the big payload is not inline");
    assert_eq!(r.headers.get("type").map(String::as_str), Some("sleep"));
    assert_eq!(r.key, big_sent.user_id());
    let downloaded = follow_claim_check(&r.value, &big_sent.trace_id, &big_sent.user_id()).await;
    assert!(
        downloaded == big_sent.body,
        "curl on the claim-check link: {} bytes, the delivered payload has {}",
        downloaded.len(),
        big_sent.body.len()
    );
    assert!(by_trace[small_sent.trace_id.as_str()].value == small_sent.body);
    eprintln!(
        "Kafka claim check: {} bytes via curl equal the delivered payload",
        downloaded.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The server goes down while the engine is delivering, and comes back: nothing is lost.

const OUTAGE_EVENTS: usize = 60;
const OUTAGE_USERS: usize = 3;

/// Every payload is one object under its key with its bytes (each event has its own key).
async fn assert_outage_objects(
    store: ObjectStore,
    endpoint: &str,
    bucket: &str,
    payloads: &BTreeMap<String, Forwarded>,
) {
    assert_eq!(payloads.len(), OUTAGE_EVENTS);
    let objects = store.dump(endpoint, bucket).await;
    let multi = assert_objects_match(store, "proof", payloads, &objects);
    assert_eq!(multi, 0);
    assert_eq!(objects.len(), OUTAGE_EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_mid_run_loses_nothing() {
    let endpoint = aws_endpoint();
    let bucket = unique("outage");
    ObjectStore::S3.create(&endpoint, &bucket).await;
    let proxy = FaultProxy::start(endpoint.trim_start_matches("http://")).await;
    let serve = Serve::start(&s3_table(
        "proof-s3",
        &proxy.url("http"),
        &bucket,
        "proof",
        FAST_RETRY,
    ))
    .await;
    let run = unique("run");
    let payloads = publish_through_outage(
        &serve,
        "proof-s3",
        &run,
        OUTAGE_EVENTS,
        OUTAGE_USERS,
        async || proxy.down().await,
        async || proxy.up().await,
    )
    .await;
    assert_outage_objects(ObjectStore::S3, &endpoint, &bucket, &payloads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_outage_mid_run_loses_nothing() {
    let endpoint = aws_endpoint();
    let name = unique("outage");
    let url = sqs_create(&endpoint, &name).await;
    let proxy = FaultProxy::start(endpoint.trim_start_matches("http://")).await;
    let via_proxy = url.replace(endpoint.trim_end_matches('/'), &proxy.url("http"));
    assert_ne!(via_proxy, url);
    let serve = Serve::start(&sqs_table(&via_proxy, "")).await;
    let run = unique("run");
    let payloads = publish_through_outage(
        &serve,
        "proof-sqs",
        &run,
        OUTAGE_EVENTS,
        OUTAGE_USERS,
        async || proxy.down().await,
        async || proxy.up().await,
    )
    .await;
    // At least once: a send whose answer was cut off may be stored twice; every copy has the
    // payload's bytes and nothing is missing.
    let messages = sqs_drain(&endpoint, &url, OUTAGE_EVENTS, 40).await;
    let mut seen = BTreeSet::new();
    for m in &messages {
        let trace = &m.attributes["trace_id"];
        let f = payloads
            .get(trace)
            .unwrap_or_else(|| panic!("unknown trace id {trace}"));
        assert!(m.body == f.body, "{trace}: bytes differ");
        seen.insert(trace.clone());
    }
    assert_eq!(seen.len(), OUTAGE_EVENTS, "payloads missing from the queue");
    eprintln!(
        "SQS outage: {} messages for {} payloads",
        messages.len(),
        payloads.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_restart_mid_run_loses_nothing() {
    let server = PrivateServer::fake_gcs();
    let endpoint = server.url();
    let bucket = unique("restart");
    ObjectStore::Gcs.create(&endpoint, &bucket).await;
    let serve = Serve::start(&gcs_table(&endpoint, &bucket, "proof")).await;
    let run = unique("run");
    let payloads = publish_through_outage(
        &serve,
        "proof-gcs",
        &run,
        OUTAGE_EVENTS,
        OUTAGE_USERS,
        async || server.kill(),
        async || server.start_again(),
    )
    .await;
    assert_outage_objects(ObjectStore::Gcs, &endpoint, &bucket, &payloads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_restart_mid_run_loses_nothing() {
    let server = PrivateServer::azurite();
    let endpoint = format!("{}/{AZ_ACCOUNT}", server.url());
    let container = unique("restart");
    ObjectStore::Azure.create(&endpoint, &container).await;
    let serve = Serve::start(&azure_table(&endpoint, &container, "proof")).await;
    let run = unique("run");
    let payloads = publish_through_outage(
        &serve,
        "proof-azure",
        &run,
        OUTAGE_EVENTS,
        OUTAGE_USERS,
        // SIGTERM: Azurite keeps its metadata in LokiJS files it saves on shutdown and every few
        // seconds, so a SIGKILL loses the container itself (seen: ContainerNotFound after the
        // restart) — an emulator limit, not the destination's.
        async || server.terminate(),
        async || server.start_again(),
    )
    .await;
    assert_outage_objects(ObjectStore::Azure, &endpoint, &container, &payloads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart_mid_run_loses_nothing() {
    let storage = unique("tansu");
    ObjectStore::S3.create(&aws_endpoint(), &storage).await;
    let broker = PrivateServer::tansu_on_s3(&storage);
    let brokers = format!("127.0.0.1:{}", broker.port);
    let topic = unique("restart");
    let serve = Serve::start(&kafka_table(
        &brokers,
        &topic,
        "",
        "\"message.timeout.ms\" = \"3000\"",
    ))
    .await;
    let run = unique("run");
    let payloads = publish_through_outage(
        &serve,
        "proof-kafka",
        &run,
        OUTAGE_EVENTS,
        OUTAGE_USERS,
        async || broker.kill(),
        async || broker.start_again(),
    )
    .await;
    let records = kafka_read(&brokers, &topic, OUTAGE_EVENTS, 45).await;
    let mut seen = BTreeSet::new();
    let mut partitions: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for r in &records {
        let trace = &r.headers["trace_id"];
        let f = payloads
            .get(trace)
            .unwrap_or_else(|| panic!("unknown trace id {trace}"));
        assert!(r.value == f.body, "{trace}: bytes differ");
        assert_eq!(r.key, f.user_id());
        partitions
            .entry(r.key.clone())
            .or_default()
            .insert(r.partition);
        seen.insert(trace.clone());
    }
    assert_eq!(seen.len(), OUTAGE_EVENTS, "payloads missing from the topic");
    for (user, p) in &partitions {
        assert_eq!(p.len(), 1, "user {user} on partitions {p:?}");
    }
    eprintln!(
        "Kafka restart: {} records for {} payloads",
        records.len(),
        payloads.len()
    );
}
