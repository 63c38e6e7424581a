//! Shared pieces of the database proofs (`tests/db_proofs.rs`, issue #6): a receiver for the
//! demo's `--forward-to` that checks every `terra-signature` with its own HMAC code and keeps
//! each body; the expected contents derived from those bodies (one record per natural key, the
//! latest version winning); readers that use each database's OWN client (psql, mariadb,
//! sqlite3, pymongo) and compare; private server instances a test may stop and restart; and a
//! `manifold serve` child to deliver through the outbox while a server is down.
//!
//! Included with `#[path = "common/proof.rs"] mod proof;` so `common/mod.rs` stays untouched.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use manifold_core::destination::{Delivery, Destination, Outcome};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Signing secret of the demo's `--forward-to`.
pub const SECRET: &str = "proof-forward-secret";
/// API key of the `manifold serve` children.
pub const API_KEY: &str = "proof-key";
/// A retry policy short enough that an outage of a few seconds is retried several times.
pub const FAST_RETRY: &str =
    "retry = { max_attempts = 1000, initial_backoff = \"200ms\", max_backoff = \"1s\" }";

/// Data types whose items are stored one row/document per natural key (Terra §6).
const DATA_TYPES: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "sleep",
    "planned_workout",
];

/// A unique, lowercase SQL/Mongo-safe name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

pub fn services_dir() -> PathBuf {
    std::env::var_os("MANIFOLD_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/manifold-services")
        })
}

pub fn env_or_panic(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: {what}. Start the test services with `scripts/services --env` and \
             export what it prints (or `source ~/.cache/manifold-services/env`)"
        )
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a command to completion; panic with its output unless it succeeds.
pub async fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// Poll `cond` until it is true; panic with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

// ------------------------------------------------------------------ the forward receiver

/// One body the demo forwarded, with its signature checked.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub trace_id: String,
    pub ordering_ms: i64,
    pub body: Vec<u8>,
    pub json: Value,
}

#[derive(Default)]
struct ReceiverLog {
    bodies: Vec<Forwarded>,
    bad_signatures: usize,
}

/// The receiver behind `manifold demo --forward-to`.
#[derive(Clone)]
pub struct ForwardReceiver {
    pub url: String,
    log: Arc<Mutex<ReceiverLog>>,
}

/// Terra's scheme, written here independently of manifold-webhook: `t=<unix>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature_ok(header: &str, body: &[u8], secret: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    v1.iter().any(|v| v.eq_ignore_ascii_case(&expected))
}

impl ForwardReceiver {
    pub async fn start() -> ForwardReceiver {
        let log = Arc::new(Mutex::new(ReceiverLog::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/forward", post(receive))
            .with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ForwardReceiver {
            url: format!("http://{addr}/forward"),
            log,
        }
    }

    pub fn bodies(&self) -> Vec<Forwarded> {
        self.log.lock().unwrap().bodies.clone()
    }

    pub fn bad_signatures(&self) -> usize {
        self.log.lock().unwrap().bad_signatures
    }
}

async fn receive(
    State(log): State<Arc<Mutex<ReceiverLog>>>,
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
    let mut log = log.lock().unwrap();
    if !signature_ok(&h("terra-signature"), &body, SECRET.as_bytes()) {
        log.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let trace_id = h("x-terra-trace-id");
    // A retried delivery carries the same trace id: keep one copy.
    if !log.bodies.iter().any(|b| b.trace_id == trace_id) {
        log.bodies.push(Forwarded {
            trace_id,
            ordering_ms: h("x-terra-ordering-timestamp").parse().unwrap_or(0),
            body: body.to_vec(),
            json,
        });
    }
    StatusCode::OK
}

/// Run the real binary: `manifold demo --users 3 --days 7 --quiet --config <file with
/// `destination`> --forward-to <receiver> --secret S`. Returns the receiver's bodies once the
/// demo has exited (it exits when every destination has nothing pending).
pub async fn run_demo(dir: &Path, destination: &str, rx: &ForwardReceiver) -> Vec<Forwarded> {
    let config = dir.join("proof-demo.toml");
    std::fs::write(&config, format!("[[destinations]]\n{destination}\n")).unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["demo", "--users", "3", "--days", "7", "--quiet"])
        .args(["--duration", "150s", "--config"])
        .arg(&config)
        .args(["--forward-to", &rx.url, "--secret", SECRET])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn manifold demo");
    let out = tokio::time::timeout(Duration::from_secs(200), child.wait_with_output())
        .await
        .expect("manifold demo did not exit within 200 s")
        .unwrap();
    eprintln!(
        "proof: manifold demo delivered and exited after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}\n{stderr}"));
    assert!(summary.contains(" 0 bad signatures"), "{summary}");
    assert_eq!(
        rx.bad_signatures(),
        0,
        "forwarded bodies with a bad signature"
    );
    let bodies = rx.bodies();
    assert!(
        !bodies.is_empty(),
        "nothing was forwarded:\n{stdout}\n{stderr}"
    );
    if let Some(path) = std::env::var_os("MANIFOLD_PROOF_DUMP") {
        let lines: Vec<String> = bodies
            .iter()
            .map(|b| {
                json!({"trace_id": b.trace_id, "ordering_ms": b.ordering_ms, "body": b.json})
                    .to_string()
            })
            .collect();
        std::fs::write(path, lines.join("\n")).unwrap();
    }
    bodies
}

// ------------------------------------------------------------------ what must be stored

/// One version of a record: the payload a row/document must hold if this version is the latest.
#[derive(Debug, Clone)]
pub struct Version {
    pub trace_id: String,
    pub ordering_ms: i64,
    /// The event with `data` holding just this item (athlete: the whole event).
    pub payload: Value,
}

/// One natural key and every version forwarded for it, oldest first.
#[derive(Debug, Clone)]
pub struct Record {
    pub user_id: String,
    pub data_type: String,
    pub key: String,
    pub summary_id: Option<String>,
    pub versions: Vec<Version>,
}

impl Record {
    /// The versions with the newest ordering timestamp (more than one only on a tie).
    pub fn latest(&self) -> Vec<&Version> {
        let max = self.versions.iter().map(|v| v.ordering_ms).max().unwrap();
        self.versions
            .iter()
            .filter(|v| v.ordering_ms == max)
            .collect()
    }
}

/// What the forwarded bodies say a database must hold.
#[derive(Debug, Clone)]
pub struct Expected {
    pub bodies: Vec<Forwarded>,
    /// (user_id, data_type, natural key) → record.
    pub records: BTreeMap<(String, String, String), Record>,
    /// Informational events (auth, …), one row/document each.
    pub info: Vec<Forwarded>,
    /// user_id → reference_id, from every body that names the user.
    pub users: BTreeMap<String, Option<String>>,
    /// Tombstone entries (`deleted`) among the bodies.
    pub tombstones: usize,
}

/// The natural key of one item, by Terra's rules (written here, not taken from the code under
/// test): the summary id for sleep/activity/planned workouts, the local day for day-based types.
pub fn natural_key(data_type: &str, item: &Value) -> String {
    let meta = &item["metadata"];
    match data_type {
        "sleep" | "activity" | "planned_workout" => meta["summary_id"]
            .as_str()
            .or(meta["start_time"].as_str())
            .unwrap_or_else(|| panic!("a {data_type} item without summary_id: {item}"))
            .to_string(),
        _ => meta["start_time"]
            .as_str()
            .map(|s| s[..10].to_string())
            .unwrap_or_else(|| panic!("a {data_type} item without start_time: {item}")),
    }
}

/// JSON text with every object's keys sorted, to compare documents as sorted lists (databases
/// may reorder keys: JSONB does).
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl Expected {
    pub fn from(bodies: &[Forwarded]) -> Expected {
        let mut sorted = bodies.to_vec();
        sorted.sort_by_key(|b| b.ordering_ms);
        let mut records: BTreeMap<(String, String, String), Record> = BTreeMap::new();
        let mut info = Vec::new();
        let mut users = BTreeMap::new();
        let mut tombstones = Vec::new();
        for b in &sorted {
            let v = &b.json;
            let t = v["type"]
                .as_str()
                .expect("every body has a type")
                .to_string();
            if let Some(u) = str_of(&v["user"]["user_id"]) {
                let r = str_of(&v["user"]["reference_id"]);
                let slot = users.entry(u).or_insert(None);
                if r.is_some() {
                    *slot = r;
                }
            }
            if !DATA_TYPES.contains(&t.as_str()) {
                info.push(b.clone());
                continue;
            }
            let user_id = str_of(&v["user"]["user_id"]).expect("data events name their user");
            if let Some(deleted) = v.get("deleted") {
                // A tombstone: `{"type", "user", "deleted": [{"summary_id"} | {"date"}]}`.
                for d in deleted.as_array().expect("deleted is an array") {
                    let key = str_of(&d["summary_id"])
                        .or_else(|| str_of(&d["date"]))
                        .unwrap_or_else(|| panic!("a tombstone entry without a key: {d}"));
                    tombstones.push((user_id.clone(), t.clone(), key, b.ordering_ms));
                }
                continue;
            }
            let items: Vec<(String, Option<String>, Value)> = if t == "athlete" {
                vec![("athlete".into(), None, v.clone())]
            } else {
                v["data"]
                    .as_array()
                    .expect("data events carry a data array")
                    .iter()
                    .map(|item| {
                        let mut single: Map<String, Value> = v.as_object().unwrap().clone();
                        single.insert("data".into(), json!([item]));
                        (
                            natural_key(&t, item),
                            str_of(&item["metadata"]["summary_id"]),
                            Value::Object(single),
                        )
                    })
                    .collect()
            };
            for (key, summary_id, payload) in items {
                records
                    .entry((user_id.clone(), t.clone(), key.clone()))
                    .or_insert_with(|| Record {
                        user_id: user_id.clone(),
                        data_type: t.clone(),
                        key,
                        summary_id,
                        versions: Vec::new(),
                    })
                    .versions
                    .push(Version {
                        trace_id: b.trace_id.clone(),
                        ordering_ms: b.ordering_ms,
                        payload,
                    });
            }
        }
        // A tombstone newer than a record's latest version deletes it (by natural key or by
        // summary id); a version newer than the tombstone brings it back.
        records.retain(|_, r| {
            let latest = r.versions.iter().map(|v| v.ordering_ms).max().unwrap();
            !tombstones.iter().any(|(u, t, key, at)| {
                *u == r.user_id
                    && *t == r.data_type
                    && (*key == r.key || Some(key) == r.summary_id.as_ref())
                    && *at > latest
            })
        });
        Expected {
            bodies: sorted,
            records,
            info,
            users,
            tombstones: tombstones.len(),
        }
    }

    /// Records per data type.
    pub fn per_type(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.records.values() {
            *m.entry(r.data_type.clone()).or_default() += 1;
        }
        m
    }

    /// Deliveries carrying the forwarded bodies again, as the engine built them: the same trace
    /// ids, the same commit times, and each body's version under its natural key (1, 2, … in
    /// commit order; see [`Expected::deliveries_ordered`] for versions committed in the same
    /// millisecond).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries_ordered(&BTreeSet::new())
    }

    /// [`Expected::deliveries`], where two versions committed in the same millisecond (which
    /// their timestamps cannot order) are ordered by what the database holds: the one whose
    /// trace id is in `stored` is taken as the later.
    pub fn deliveries_ordered(&self, stored: &BTreeSet<String>) -> Vec<Delivery> {
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        let mut bodies: Vec<&Forwarded> = self.bodies.iter().collect();
        bodies.sort_by_key(|b| (b.ordering_ms, stored.contains(&b.trace_id)));
        bodies
            .into_iter()
            .map(|b| {
                let v = &b.json;
                let t = v["type"].as_str().unwrap().to_string();
                let user_id = str_of(&v["user"]["user_id"]);
                let natural_key = if DATA_TYPES.contains(&t.as_str())
                    && t != "athlete"
                    && v.get("data").is_some()
                {
                    format!(
                        "{}:{t}:{}",
                        user_id.clone().unwrap_or_default(),
                        natural_key(&t, &v["data"][0])
                    )
                } else {
                    format!("{}:{t}:{}", user_id.clone().unwrap_or_default(), b.trace_id)
                };
                let version = seen.entry(natural_key.clone()).or_default();
                *version += 1;
                Delivery {
                    id: format!("redeliver-{}", b.trace_id),
                    payload_id: b.trace_id.clone(),
                    event_type: t,
                    user_id,
                    reference_id: str_of(&v["user"]["reference_id"]),
                    natural_key,
                    version: *version,
                    terra_reference: None,
                    attempt: 1,
                    created_at: Utc.timestamp_millis_opt(b.ordering_ms).unwrap(),
                    body: b.body.clone().into(),
                    content_type: "application/json",
                }
            })
            .collect()
    }
}

/// Deliver every body again, in commit order, through the destination built in this process,
/// in batches of the destination's size; all must be Delivered.
pub async fn redeliver(dest: &dyn Destination, deliveries: Vec<Delivery>) {
    for chunk in deliveries.chunks(dest.max_batch().max(1)) {
        let outcomes = dest.deliver(chunk).await;
        assert_eq!(outcomes.len(), chunk.len());
        for (d, o) in chunk.iter().zip(&outcomes) {
            assert!(
                matches!(o, Outcome::Delivered { .. }),
                "redelivery of {} ({}) was not delivered: {o:?}",
                d.payload_id,
                d.event_type
            );
        }
    }
}

// ------------------------------------------------------------------ what a database holds

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    pub reference_id: Option<String>,
    pub provider: Option<String>,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataRow {
    pub user_id: String,
    pub data_type: String,
    pub record_key: String,
    pub summary_id: Option<String>,
    pub day: Option<String>,
    pub payload_id: String,
    pub version: i64,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MiscRow {
    pub payload_id: String,
    pub user_id: Option<String>,
    pub payload_type: String,
    pub payload: Value,
}

/// The three Terra tables as read by a database's own client, sorted by key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tables {
    pub users: Vec<UserRow>,
    pub data: Vec<DataRow>,
    pub misc: Vec<MiscRow>,
}

/// Marker a reader query prints for SQL NULL.
pub const NULL: &str = "<null>";

/// The queries a reader runs: tab-separated text, NULL printed as [`NULL`]. `q` quotes a table
/// name as the dialect needs; `text` casts the payload column to text.
pub fn reader_queries(table: impl Fn(&str) -> String, payload_text: &str) -> [String; 3] {
    let c = |col: &str| format!("COALESCE({col}, '{NULL}')");
    [
        format!(
            "SELECT user_id, {}, {}, state FROM {} ORDER BY user_id",
            c("reference_id"),
            c("provider"),
            table("terra_users")
        ),
        format!(
            "SELECT user_id, data_type, record_key, {}, {}, payload_id, version, {} FROM {} \
             ORDER BY user_id, data_type, record_key",
            c("summary_id"),
            c("day"),
            payload_text.replace("{}", "payload"),
            table("terra_data_payloads")
        ),
        format!(
            "SELECT payload_id, {}, payload_type, {} FROM {} ORDER BY payload_id",
            c("user_id"),
            payload_text.replace("{}", "payload"),
            table("terra_misc_payloads")
        ),
    ]
}

fn opt(s: &str) -> Option<String> {
    (s != NULL).then(|| s.to_string())
}

fn lines(out: &str, cols: usize, what: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(str::to_string).collect();
            assert_eq!(f.len(), cols, "{what}: unexpected line {l:?}");
            f
        })
        .collect()
}

fn json_of(s: &str, what: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{what}: payload is not JSON ({e}): {s}"))
}

/// Parse the three outputs of [`reader_queries`].
pub fn parse_tables(out: [String; 3]) -> Tables {
    let [users, data, misc] = out;
    Tables {
        users: lines(&users, 4, "terra_users")
            .into_iter()
            .map(|f| UserRow {
                user_id: f[0].clone(),
                reference_id: opt(&f[1]),
                provider: opt(&f[2]),
                state: f[3].clone(),
            })
            .collect(),
        data: lines(&data, 8, "terra_data_payloads")
            .into_iter()
            .map(|f| DataRow {
                user_id: f[0].clone(),
                data_type: f[1].clone(),
                record_key: f[2].clone(),
                summary_id: opt(&f[3]),
                day: opt(&f[4]),
                payload_id: f[5].clone(),
                version: f[6].parse().expect("version is a number"),
                payload: json_of(&f[7], "terra_data_payloads"),
            })
            .collect(),
        misc: lines(&misc, 4, "terra_misc_payloads")
            .into_iter()
            .map(|f| MiscRow {
                payload_id: f[0].clone(),
                user_id: opt(&f[1]),
                payload_type: f[2].clone(),
                payload: json_of(&f[3], "terra_misc_payloads"),
            })
            .collect(),
    }
}

/// `psql` (the PostgreSQL client) reading the tables of `schema`.
pub async fn read_psql(url: &str, schema: &str) -> Tables {
    let queries = reader_queries(|t| format!("\"{schema}\".{t}"), "{}::text");
    let mut out: [String; 3] = Default::default();
    for (i, q) in queries.iter().enumerate() {
        out[i] = run(
            Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
                .arg(url)
                .args(["-c", q])
                .env("PGCONNECT_TIMEOUT", "10"),
            "psql",
        )
        .await;
    }
    parse_tables(out)
}

/// The `mariadb` client reading the tables of database `db`.
pub async fn read_mariadb(port: u16, db: &str) -> Tables {
    let queries = reader_queries(|t| format!("`{db}`.{t}"), "{}");
    let mut out: [String; 3] = Default::default();
    for (i, q) in queries.iter().enumerate() {
        out[i] = run(
            Command::new("mariadb")
                .args(["--protocol=tcp", "-h127.0.0.1", &format!("-P{port}")])
                .args([
                    "-uroot",
                    "-N",
                    "-B",
                    "-r",
                    "--default-character-set=utf8mb4",
                ])
                .args(["-e", q]),
            "mariadb",
        )
        .await;
    }
    parse_tables(out)
}

/// The `sqlite3` command-line shell reading the tables of a database file.
pub async fn read_sqlite3(file: &Path) -> Tables {
    let queries = reader_queries(|t| t.to_string(), "{}");
    let mut out: [String; 3] = Default::default();
    for (i, q) in queries.iter().enumerate() {
        out[i] = run(
            Command::new("sqlite3")
                .args(["-batch", "-noheader", "-readonly", "-cmd", ".timeout 10000"])
                .args(["-separator", "\t"])
                .arg(file)
                .arg(q),
            "sqlite3",
        )
        .await;
    }
    parse_tables(out)
}

/// Panic with the rows that differ (not the whole tables) unless `after == before`.
pub fn assert_same_tables(after: &Tables, before: &Tables, what: &str) {
    if after == before {
        return;
    }
    let mut diffs = Vec::new();
    if after.users != before.users {
        diffs.push(format!(
            "terra_users: {:?}\n  was {:?}",
            after.users, before.users
        ));
    }
    let key = |r: &DataRow| (r.user_id.clone(), r.data_type.clone(), r.record_key.clone());
    let old: BTreeMap<_, &DataRow> = before.data.iter().map(|r| (key(r), r)).collect();
    let new: BTreeMap<_, &DataRow> = after.data.iter().map(|r| (key(r), r)).collect();
    for k in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => diffs.push(format!(
                "{k:?}: payload_id {} → {}, version {} → {}, payload {}",
                a.payload_id,
                b.payload_id,
                a.version,
                b.version,
                if a.payload == b.payload {
                    "same"
                } else {
                    "changed"
                }
            )),
            (a, b) => diffs.push(format!(
                "{k:?}: present before {}, after {}",
                a.is_some(),
                b.is_some()
            )),
        }
    }
    if after.misc != before.misc {
        let ids = |m: &[MiscRow]| m.iter().map(|r| r.payload_id.clone()).collect::<Vec<_>>();
        diffs.push(format!(
            "terra_misc_payloads: {:?}\n  was {:?}",
            ids(&after.misc),
            ids(&before.misc)
        ));
    }
    panic!("{what}:\n{}", diffs.join("\n"));
}

/// Users every body names, active (their `auth` events were delivered).
fn check_users(t: &Tables, exp: &Expected) {
    let ids: Vec<&String> = t.users.iter().map(|u| &u.user_id).collect();
    let want: Vec<&String> = exp.users.keys().collect();
    assert_eq!(ids, want, "terra_users holds exactly the demo's users");
    for u in &t.users {
        assert_eq!(u.state, "active", "{u:?}");
        assert_eq!(&u.reference_id, &exp.users[&u.user_id], "{u:?}");
        assert_eq!(u.provider.as_deref(), Some("OURA"), "{u:?}");
    }
}

/// Whether rows must carry the very trace ids and versions of the forwarded bodies (the demo's
/// engine delivered both) or only the same contents (another engine published the bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    Same,
    Any,
}

/// The tables hold one row per natural key with the latest version's payload, one misc row per
/// informational event and one user row per user.
pub fn check_tables(t: &Tables, exp: &Expected, ids: Ids) {
    assert_eq!(
        t.data.len(),
        exp.records.len(),
        "terra_data_payloads: one row per natural key (expected per type: {:?})",
        exp.per_type()
    );
    let keys: BTreeSet<(String, String, String)> = t
        .data
        .iter()
        .map(|r| (r.user_id.clone(), r.data_type.clone(), r.record_key.clone()))
        .collect();
    assert_eq!(keys.len(), t.data.len(), "no natural key is stored twice");
    for row in &t.data {
        let key = (
            row.user_id.clone(),
            row.data_type.clone(),
            row.record_key.clone(),
        );
        let rec = exp
            .records
            .get(&key)
            .unwrap_or_else(|| panic!("a row no forwarded body explains: {key:?}"));
        let latest = rec.latest();
        assert!(
            latest.iter().any(|v| v.payload == row.payload),
            "{key:?}: the row's payload is not the latest version's ({} versions forwarded)\nrow: {}\nlatest: {}",
            rec.versions.len(),
            row.payload,
            latest[0].payload
        );
        assert_eq!(row.summary_id, rec.summary_id, "{key:?}: summary_id");
        if ["daily", "body", "menstruation", "nutrition"].contains(&rec.data_type.as_str()) {
            assert_eq!(row.day.as_deref(), Some(rec.key.as_str()), "{key:?}: day");
        }
        if ids == Ids::Same {
            assert!(
                latest.iter().any(|v| v.trace_id == row.payload_id),
                "{key:?}: payload_id {} is not the latest version's trace id",
                row.payload_id
            );
            assert_eq!(
                row.version,
                rec.versions.len() as i64,
                "{key:?}: the version of the latest of {} forwarded versions",
                rec.versions.len()
            );
        }
    }
    assert_eq!(
        t.misc.len(),
        exp.info.len(),
        "terra_misc_payloads: one row per informational event"
    );
    match ids {
        Ids::Same => {
            for row in &t.misc {
                let b = exp
                    .info
                    .iter()
                    .find(|b| b.trace_id == row.payload_id)
                    .unwrap_or_else(|| panic!("a misc row no body explains: {row:?}"));
                assert_eq!(row.payload, b.json, "misc {}", row.payload_id);
                assert_eq!(row.payload_type, b.json["type"].as_str().unwrap());
                assert_eq!(row.user_id, str_of(&b.json["user"]["user_id"]));
            }
        }
        Ids::Any => {
            let mut got: Vec<String> = t.misc.iter().map(|r| canonical(&r.payload)).collect();
            let mut want: Vec<String> = exp.info.iter().map(|b| canonical(&b.json)).collect();
            got.sort();
            want.sort();
            assert_eq!(
                got, want,
                "terra_misc_payloads holds every informational event"
            );
        }
    }
    check_users(t, exp);
}

// ------------------------------------------------------------------ MongoDB (pymongo)

/// Every collection of `db` with its documents (relaxed extended JSON) and index keys, read by
/// pymongo (the venv at $MANIFOLD_TEST_PYTHON).
pub async fn read_pymongo(uri: &str, db: &str) -> Value {
    let python = env_or_panic(
        "MANIFOLD_TEST_PYTHON",
        "the proofs read MongoDB back with pymongo from the clients venv",
    );
    let script = r#"
import json, sys
from bson import json_util
from pymongo import MongoClient
c = MongoClient(sys.argv[1], serverSelectionTimeoutMS=10000)
db = c[sys.argv[2]]
out = {"collections": {}, "indexes": {}}
for name in sorted(db.list_collection_names()):
    out["collections"][name] = json.loads(json_util.dumps(list(db[name].find()), json_options=json_util.RELAXED_JSON_OPTIONS))
    out["indexes"][name] = [list(ix["key"].keys()) for ix in db[name].list_indexes()]
print(json.dumps(out))
"#;
    let out = run(
        Command::new(&python)
            .args(["-c", script, uri, db])
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "pymongo reader",
    )
    .await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("pymongo output is not JSON: {e}"))
}

/// The documents hold one document per natural key (`_id` = `<user>:<type>:<key>`) with the
/// latest version's payload, one `user_events` document per informational event (`_id` = trace
/// id), and the four indexes.
pub fn check_mongo(read: &Value, exp: &Expected, ids: Ids) {
    let cols = read["collections"].as_object().expect("collections");
    let mut seen = 0usize;
    for (name, docs) in cols {
        if name == "user_events" {
            continue;
        }
        for doc in docs.as_array().unwrap() {
            seen += 1;
            let id = doc["_id"].as_str().expect("string _id");
            let (user, rest) = id.split_once(':').expect("_id is user:type:key");
            let (t, key) = rest.split_once(':').unwrap_or((rest, "athlete"));
            assert_eq!(t, name, "{id} lives in its type's collection");
            let rec = exp
                .records
                .get(&(user.to_string(), t.to_string(), key.to_string()))
                .unwrap_or_else(|| panic!("a document no forwarded body explains: {id}"));
            let mut payload = doc.clone();
            let o = payload.as_object_mut().unwrap();
            o.remove("_id");
            let meta = o.remove("_meta").expect("_meta");
            let latest = rec.latest();
            assert!(
                latest.iter().any(|v| v.payload == payload),
                "{id}: not the latest version's payload\ndoc: {payload}\nlatest: {}",
                latest[0].payload
            );
            if ids == Ids::Same {
                let trace = meta["trace_id"].as_str().unwrap_or("");
                assert!(
                    latest.iter().any(|v| v.trace_id == trace),
                    "{id}: _meta.trace_id {trace} is not the latest version's"
                );
                assert_eq!(
                    meta["version"].as_i64(),
                    Some(rec.versions.len() as i64),
                    "{id}: _meta.version"
                );
            }
        }
        let idx = &read["indexes"][name];
        for want in [
            "user.user_id",
            "user.reference_id",
            "data.metadata.start_time",
            "data.metadata.end_time",
        ] {
            assert!(
                idx.as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k.as_array().is_some_and(|k| k.len() == 1 && k[0] == want)),
                "collection {name} lacks an index on {want}: {idx}"
            );
        }
    }
    assert_eq!(
        seen,
        exp.records.len(),
        "one document per natural key (expected per type: {:?})",
        exp.per_type()
    );
    let events = cols
        .get("user_events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        events.len(),
        exp.info.len(),
        "user_events: one document per informational event"
    );
    let strip = |d: &Value| {
        let mut d = d.clone();
        let o = d.as_object_mut().unwrap();
        o.remove("_id");
        o.remove("_meta");
        d
    };
    match ids {
        Ids::Same => {
            for b in &exp.info {
                let doc = events
                    .iter()
                    .find(|d| d["_id"] == b.trace_id.as_str())
                    .unwrap_or_else(|| panic!("no user_events document for {}", b.trace_id));
                assert_eq!(strip(doc), b.json, "user_events {}", b.trace_id);
            }
        }
        Ids::Any => {
            let mut got: Vec<String> = events.iter().map(|d| canonical(&strip(d))).collect();
            let mut want: Vec<String> = exp.info.iter().map(|b| canonical(&b.json)).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "user_events holds every informational event");
        }
    }
}

/// Documents per collection, for "redelivery changed no count".
pub fn mongo_counts(read: &Value) -> BTreeMap<String, usize> {
    read["collections"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().unwrap().len()))
        .collect()
}

/// The documents by collection and `_id`, without `_meta.updated_at` (which a redelivery
/// rewrites), for "redelivery changed nothing".
pub fn mongo_without_write_times(read: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    read["collections"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, docs)| {
            let docs = docs
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    if let Some(m) = d.get_mut("_meta").and_then(Value::as_object_mut) {
                        m.remove("updated_at");
                    }
                    (d["_id"].as_str().unwrap_or_default().to_string(), d)
                })
                .collect();
            (name.clone(), docs)
        })
        .collect()
}

/// Trace ids of what a Mongo database holds (`_meta.trace_id` of every document).
pub fn mongo_trace_ids(read: &Value) -> BTreeSet<String> {
    read["collections"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|docs| docs.as_array().unwrap().iter())
        .filter_map(|d| str_of(&d["_meta"]["trace_id"]))
        .collect()
}

/// Trace ids of what the Terra tables hold (`payload_id` of every row).
pub fn table_trace_ids(t: &Tables) -> BTreeSet<String> {
    t.data
        .iter()
        .map(|r| r.payload_id.clone())
        .chain(t.misc.iter().map(|r| r.payload_id.clone()))
        .collect()
}

// ------------------------------------------------------------------ private servers

/// A PostgreSQL cluster of this test only (initdb in a temp dir, its own port), stopped on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("pg_ctl").exists());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = dirs.pop() {
        return d;
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are required for the proof and were not \
             found under /usr/lib/postgresql/*/bin nor by pg_config; install postgresql"
        ),
    }
}

impl PrivatePostgres {
    pub async fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        if root {
            // initdb refuses to run as root: the cluster belongs to `postgres`.
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown the private PostgreSQL directory",
            )
            .await;
        }
        let pg = PrivatePostgres {
            port: crate::common::free_port(),
            dir,
            bin: pg_bin(),
            root,
        };
        let data = pg.dir.path().join("data");
        pg.as_owner(&format!(
            "{} -D {} -U postgres --auth=trust -E UTF8 --no-sync",
            pg.bin.join("initdb").display(),
            data.display()
        ))
        .await;
        pg.start_server().await;
        pg
    }

    async fn as_owner(&self, cmd: &str) -> String {
        let mut c = if self.root {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", cmd]);
            c
        };
        run(&mut c, cmd).await
    }

    async fn start_server(&self) {
        let d = self.dir.path();
        self.as_owner(&format!(
            "{} -D {} -l {} -w -t 60 -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' start",
            self.bin.join("pg_ctl").display(),
            d.join("data").display(),
            d.join("pg.log").display(),
            self.port,
            d.display()
        ))
        .await;
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stop it the hard way (`pg_ctl stop -m immediate`: every backend killed, no checkpoint,
    /// crash recovery on the next start).
    pub async fn stop(&self) {
        self.as_owner(&format!(
            "{} -D {} -m immediate -w stop",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display()
        ))
        .await;
        assert!(!port_open(self.port).await, "PostgreSQL still listens");
    }

    pub async fn restart(&self) {
        self.start_server().await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let cmd = format!(
            "{} -D {} -m immediate -w stop",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display()
        );
        let mut c = if self.root {
            let mut c = std::process::Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", &cmd]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &cmd]);
            c
        };
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// A MariaDB server of this test only (mariadb-install-db in a temp dir, its own port), killed on
/// drop.
pub struct PrivateMariadb {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl PrivateMariadb {
    pub async fn start() -> PrivateMariadb {
        let dir = tempfile::tempdir().unwrap();
        let user = format!("--user={}", whoami());
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", dir.path().join("data").display()))
                .arg(&user)
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"]),
            "mariadb-install-db (is mariadb-server installed? scripts/services installs it)",
        )
        .await;
        let m = PrivateMariadb {
            port: crate::common::free_port(),
            dir,
            child: Mutex::new(None),
        };
        m.start_server().await;
        m
    }

    async fn start_server(&self) {
        let d = self.dir.path();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--user={}", whoami()))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=32M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("mariadbd.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start mariadbd (is mariadb-server installed?): {e}")
            });
        *self.child.lock().unwrap() = Some(child);
        let port = self.port;
        let log = d.join("mariadbd.log");
        wait_until(
            Duration::from_secs(60),
            "the private MariaDB to answer",
            || async {
                Command::new("mariadb-admin")
                    .args([
                        "--protocol=tcp",
                        "-h127.0.0.1",
                        &format!("-P{port}"),
                        "-uroot",
                    ])
                    .arg("ping")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success())
            },
        )
        .await;
        let _ = log;
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    pub async fn sql(&self, sql: &str) -> String {
        run(
            Command::new("mariadb")
                .args(["--protocol=tcp", "-h127.0.0.1", &format!("-P{}", self.port)])
                .args(["-uroot", "-N", "-B", "-e", sql]),
            "mariadb",
        )
        .await
    }

    /// SIGKILL: the server dies mid-transaction; InnoDB recovers on the next start.
    pub async fn stop(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            c.kill().await.unwrap();
        }
        assert!(!port_open(self.port).await, "MariaDB still listens");
    }

    pub async fn restart(&self) {
        self.start_server().await;
    }
}

fn whoami() -> String {
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "root".into())
}

/// A MongoDB-protocol server of this test only: nx-27017 (the same server `scripts/services`
/// runs) with its data in a temp dir, so it keeps its data across a restart.
pub struct PrivateMongo {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
}

impl PrivateMongo {
    pub async fn start() -> PrivateMongo {
        let bin = services_dir().join("venv-mongo/bin/nx-27017");
        assert!(
            bin.exists(),
            "nx-27017 is required for the mongo proof and is not at {}: run `scripts/services` \
             (it installs nx-27017 into its mongo venv)",
            bin.display()
        );
        let m = PrivateMongo {
            port: crate::common::free_port(),
            dir: tempfile::tempdir().unwrap(),
            bin,
            child: Mutex::new(None),
        };
        m.start_server().await;
        m
    }

    async fn start_server(&self) {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(d.join("data"))
            .args(["--host", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--log-file")
            .arg(d.join("nx.log"))
            .arg("--pid-file")
            .arg(d.join("nx.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start nx-27017");
        *self.child.lock().unwrap() = Some(child);
        let port = self.port;
        wait_until(
            Duration::from_secs(60),
            "the private nx-27017 to listen",
            || port_open(port),
        )
        .await;
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// SIGKILL the server process.
    pub async fn stop(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            c.kill().await.unwrap();
        }
        assert!(!port_open(self.port).await, "nx-27017 still listens");
    }

    pub async fn restart(&self) {
        self.start_server().await;
    }
}

/// A postrust (PostgREST-compatible) process of this test only, in front of the shared
/// PostgreSQL database `scripts/services` prepared (roles web_anon, service_role,
/// authenticator), serving `schemas`.
pub struct PrivatePostrust {
    pub port: u16,
    schemas: String,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl PrivatePostrust {
    pub async fn start(schemas: &[&str]) -> PrivatePostrust {
        let p = PrivatePostrust {
            port: crate::common::free_port(),
            schemas: schemas.join(","),
            dir: tempfile::tempdir().unwrap(),
            child: Mutex::new(None),
        };
        p.start_server().await;
        p
    }

    async fn start_server(&self) {
        let bin = services_dir().join("postrust/bin/postrust");
        assert!(
            bin.exists(),
            "postrust is required for the supabase proof and is not at {}: run `scripts/services`",
            bin.display()
        );
        let db = env_or_panic(
            "MANIFOLD_TEST_POSTGREST_DB",
            "the supabase proof needs the database behind postrust",
        );
        let secret = env_or_panic(
            "MANIFOLD_TEST_POSTGREST_JWT_SECRET",
            "the supabase proof runs its own postrust with the same JWT secret",
        );
        let mut u = url::Url::parse(&db).expect("MANIFOLD_TEST_POSTGREST_DB is a URL");
        u.set_username("authenticator").unwrap();
        u.set_password(Some("authpass")).unwrap();
        let child = Command::new(bin)
            .env("PGRST_DB_URI", u.as_str())
            .env("PGRST_DB_SCHEMAS", &self.schemas)
            .env("PGRST_DB_ANON_ROLE", "web_anon")
            .env("PGRST_JWT_SECRET", secret)
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", self.port.to_string())
            .env("PGRST_DB_CHANNEL_ENABLED", "true")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join("postrust.log")).unwrap())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start postrust");
        *self.child.lock().unwrap() = Some(child);
        let base = self.base();
        let http = reqwest::Client::new();
        wait_until(
            Duration::from_secs(60),
            "the private postrust to answer",
            || {
                let r = http.get(format!("{base}/")).send();
                async move { r.await.is_ok_and(|r| r.status().as_u16() < 500) }
            },
        )
        .await;
    }

    /// Project URL as the destination takes it (the REST API is under `/api`).
    pub fn project_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn base(&self) -> String {
        format!("{}/api", self.project_url())
    }

    pub async fn stop(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            c.kill().await.unwrap();
        }
        assert!(!port_open(self.port).await, "postrust still listens");
    }

    pub async fn restart(&self) {
        self.start_server().await;
    }
}

// ------------------------------------------------------------------ SQLite lock holder

/// A `sqlite3` shell holding `BEGIN EXCLUSIVE` on a database file: every other connection's
/// write waits, then fails with SQLITE_BUSY, until [`SqliteLock::release`].
pub struct SqliteLock {
    child: Child,
}

impl SqliteLock {
    pub async fn hold(file: &Path) -> SqliteLock {
        let mut child = Command::new("sqlite3")
            .args(["-batch", "-noheader"])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("sqlite3");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b".timeout 30000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(40), out.next_line())
            .await
            .expect("sqlite3 took the exclusive lock")
            .unwrap();
        assert_eq!(line.as_deref(), Some("locked"));
        SqliteLock { child }
    }

    pub async fn release(mut self) {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"COMMIT;\n.quit\n").await.unwrap();
        drop(stdin);
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "sqlite3 COMMIT failed");
    }
}

// ------------------------------------------------------------------ the engine (`manifold serve`)

/// `manifold serve` with one destination `db` and a SQLite store in a temp dir.
pub struct Serve {
    pub port: u16,
    _child: Child,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub async fn start(destination: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::common::free_port();
        let config = dir.path().join("serve.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\napi_keys = [\"{API_KEY}\"]\nmax_body = \"4MiB\"\n\n\
                 [store]\nurl = \"{}\"\nlease = \"30s\"\npoll_interval = \"100ms\"\n\n\
                 [[destinations]]\n{destination}\n",
                crate::common::sqlite_url(dir.path())
            ),
        )
        .unwrap();
        let child = crate::common::spawn_serve(&config, port).await;
        Serve {
            port,
            _child: child,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Publish one body (`POST /v2/events`); the number of deliveries it created.
    pub async fn publish(&self, body: &[u8]) -> i64 {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/v2/events", self.port))
            .header("x-api-key", API_KEY)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 202, "publish refused: {v}");
        v["deliveries"].as_i64().unwrap_or(0)
    }

    /// Deliveries of destination `db` with `status`.
    pub async fn deliveries(&self, status: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/admin/deliveries?destination=db&status={status}&limit=10000",
                self.port
            ))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }
}

/// The outage proof, the same for every database: the engine (`manifold serve`) delivers the
/// forwarded bodies to destination `db`; once the first ones are stored the server is stopped
/// (`stop`), the rest is published while it is down and the engine's failed attempts are seen in
/// its outbox; then the server comes back (`start`) and every delivery ends delivered — none
/// dead. Returns (deliveries, the most attempts one delivery needed).
pub async fn outage<S, SF, R, RF>(
    serve: &Serve,
    exp: &Expected,
    stop: S,
    restart: R,
) -> (usize, i64)
where
    S: FnOnce() -> SF,
    SF: std::future::Future<Output = ()>,
    R: FnOnce() -> RF,
    RF: std::future::Future<Output = ()>,
{
    let half = exp.bodies.len() / 2;
    let mut total = 0i64;
    // In commit order, one at a time: each body's version under its key is the same as the
    // demo gave it.
    for b in &exp.bodies[..half] {
        total += serve.publish(&b.body).await;
    }
    wait_until(
        Duration::from_secs(60),
        "the first deliveries to be stored",
        || async { !serve.deliveries("delivered").await.is_empty() },
    )
    .await;
    let down = Instant::now();
    stop().await;
    for b in &exp.bodies[half..] {
        total += serve.publish(&b.body).await;
    }
    // The engine keeps trying while the server is down: deliveries fail and stay pending.
    wait_until(
        Duration::from_secs(60),
        "a failed attempt while the server is down",
        || async {
            serve
                .deliveries("pending")
                .await
                .iter()
                .any(|d| d["attempts"].as_i64().unwrap_or(0) >= 1 && !d["last_error"].is_null())
        },
    )
    .await;
    let pending = serve.deliveries("pending").await.len();
    assert!(
        pending > 0,
        "deliveries are pending while the server is down"
    );
    let down_for = down.elapsed();
    let up = Instant::now();
    restart().await;
    let restarted_in = up.elapsed();
    wait_until(
        Duration::from_secs(90),
        "every delivery to be delivered after the restart",
        || async { serve.deliveries("pending").await.is_empty() },
    )
    .await;
    eprintln!(
        "proof: outage: {pending} deliveries pending while down for {:.1} s; restart took {:.1} s; \
         all delivered {:.1} s after the restart began",
        down_for.as_secs_f64(),
        restarted_in.as_secs_f64(),
        up.elapsed().as_secs_f64()
    );
    let dead = serve.deliveries("dead").await;
    assert!(dead.is_empty(), "dead deliveries: {dead:?}");
    let delivered = serve.deliveries("delivered").await;
    assert_eq!(delivered.len() as i64, total, "every delivery is delivered");
    let max_attempts = delivered
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(
        max_attempts >= 2,
        "some delivery needed a retry after the outage (max attempts {max_attempts})"
    );
    (delivered.len(), max_attempts)
}
