//! The real broker for the tests: tansu (Kafka protocol) from `scripts/services`, found through
//! MANIFOLD_TEST_KAFKA. A missing variable or an unreachable broker fails the test with how to
//! start it; nothing is skipped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifold_core::destination::{BuildContext, Destination, DestinationFactory};
use manifold_kafka::KafkaFactory;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Bootstrap servers of the test broker.
pub fn bootstrap() -> String {
    let b = std::env::var("MANIFOLD_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_KAFKA is not set: the kafka tests need the local Kafka-protocol broker (tansu); \
             run `scripts/services` and source its env file (or run `scripts/test`)"
        )
    });
    if std::net::TcpStream::connect_timeout(
        &b.split(',')
            .next()
            .unwrap()
            .parse()
            .expect("MANIFOLD_TEST_KAFKA is host:port"),
        Duration::from_secs(3),
    )
    .is_err()
    {
        panic!(
            "the Kafka broker (tansu) at {b} (MANIFOLD_TEST_KAFKA) is not reachable: start it with `scripts/services`"
        );
    }
    b
}

/// A topic no other test uses.
pub fn fresh_topic(what: &str) -> String {
    format!("manifold-test-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A port where nothing listens.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// librdkafka options every test destination gets. tansu 0.6.0 (memory storage) acknowledges a
/// multi-record batch with consecutive offsets but keeps only its first record (high watermark
/// +1, the rest never fetched): one record per batch makes every acknowledged message readable,
/// so the tests can demand that each one is. See README "tansu".
pub const TANSU_PRODUCER: &str = "\"batch.num.messages\" = \"1\"";

/// Build a destination through the factory, like the engine does. `extra` holds top-level keys;
/// `producer` extra librdkafka options (`"key" = "value"` lines).
pub fn build_with(
    brokers: &str,
    extra: &str,
    producer: &str,
    ctx: &BuildContext,
) -> Arc<dyn Destination> {
    let src =
        format!("brokers = \"{brokers}\"\n{extra}\n[producer]\n{TANSU_PRODUCER}\n{producer}\n");
    let table: toml::Table = toml::from_str(&src).unwrap();
    KafkaFactory
        .build("test", table, ctx)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

pub fn build(brokers: &str, extra: &str, producer: &str) -> Arc<dyn Destination> {
    build_with(brokers, extra, producer, &BuildContext::default())
}

/// One record read back from the broker.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("message value is JSON")
    }
    pub fn trace_id(&self) -> Option<&str> {
        self.headers.get("trace_id").map(String::as_str)
    }
}

/// Every record of `topic`: a consumer with a fresh group id reads each partition from the
/// beginning up to its high watermark. Panics (naming what is missing) if the broker reports
/// records it then does not return.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .unwrap()
}

fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("manifold-test-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Vec::new();
    };
    if t.error().is_some() {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    let mut high: BTreeMap<i32, i64> = BTreeMap::new();
    for p in t.partitions() {
        let (_, hi) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if hi > 0 {
            high.insert(p.id(), hi);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    if high.is_empty() {
        return Vec::new();
    }
    consumer.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = high.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while next.iter().any(|(p, n)| *n < high[p]) {
        if Instant::now() > deadline {
            panic!(
                "reading topic {topic}: the broker reported high watermarks {high:?} but returned records only up to {next:?} (next offset per partition) within 30 s"
            );
        }
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("consume");
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                headers.insert(
                    hd.key.to_string(),
                    String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        next.insert(m.partition(), m.offset() + 1);
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

/// The records of `topic` that carry `trace_id`.
pub async fn records_for(brokers: &str, topic: &str, trace_id: &str) -> Vec<Record> {
    read_topic(brokers, topic)
        .await
        .into_iter()
        .filter(|r| r.trace_id() == Some(trace_id))
        .collect()
}

/// A tansu broker of the test's own (MANIFOLD_TEST_TANSU_BIN from `scripts/services`) on a free
/// port, so a test may stop and restart it without disturbing the shared one. Killed on drop.
pub struct PrivateBroker {
    bin: String,
    pub port: u16,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        let bin = std::env::var("MANIFOLD_TEST_TANSU_BIN").unwrap_or_else(|_| {
            panic!(
                "MANIFOLD_TEST_TANSU_BIN is not set: this test runs its own tansu broker; \
                 run `scripts/services` and source its env file (or run `scripts/test`)"
            )
        });
        let b = PrivateBroker {
            bin,
            port: dead_port(),
            child: std::sync::Mutex::new(None),
        };
        b.spawn();
        b.wait_ready();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({}): {e}", self.bin));
        *self.child.lock().unwrap() = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop, then start again on the same port (memory storage: the new broker starts empty).
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
