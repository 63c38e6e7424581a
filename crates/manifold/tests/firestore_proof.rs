//! Issue #6's proof for the Firestore destination, against the local emulator
//! (@firestore-emulator/server at $MANIFOLD_TEST_FIRESTORE; Google's own emulator cannot be
//! installed here). One test:
//! 1. runs the real binary, `manifold demo --users 3 --days 7 --quiet --config <a firestore
//!    destination> --forward-to <a receiver here> --secret S`, and keeps every forwarded body
//!    (its `terra-signature` checked with `proof.rs`'s own HMAC code);
//! 2. reads every document back with Google's Python client (google-cloud-firestore in
//!    $MANIFOLD_TEST_PYTHON) and compares with the forwarded JSON: one document per natural key,
//!    named `<user_id>-<start_time>.json` in its type's collection under `terra/2022-03-16`,
//!    holding the latest version's payload (trace id and version included); one `user_events`
//!    document per informational event;
//! 3. redelivers every body through the destination built in this process (newest first, so old
//!    versions arrive late) and finds the same documents — no count changed, nothing older;
//! 4. has the engine (`manifold serve`, retry from 200 ms) deliver the same bodies into a fresh
//!    project through a `FaultProxy` in front of the emulator (which keeps data only in memory,
//!    so it is not restarted): the proxy goes down after the first deliveries (every connection
//!    reset, new ones refused) and comes back once the engine's attempts fail; nothing is missing.
#![cfg(feature = "firestore")]

mod common;
#[path = "common/proof.rs"]
mod proof;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use manifold_core::destination::Destination;
use manifold_core::testkit::FaultProxy;
use manifold_core::{Config, Registry};
use proof::*;
use serde_json::{Map, Value};
use tokio::process::Command;

const ROOT: &str = "terra/2022-03-16";
/// Every collection the destination writes (the emulator cannot list collections).
const COLLECTIONS: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "planned_workout",
    "sleep",
    "user_events",
];

fn emulator() -> String {
    env_or_panic(
        "MANIFOLD_TEST_FIRESTORE",
        "the Firestore proof needs the local Firestore emulator (@firestore-emulator/server)",
    )
}

fn project() -> String {
    format!("manifold-proof-{:016x}", rand::random::<u64>())
}

/// `[[destinations]]` body: name `db`, a firestore destination on `host`, a short retry policy.
fn destination(host: &str, project: &str) -> String {
    format!(
        "name = \"db\"\ntype = \"firestore\"\nproject_id = \"{project}\"\nemulator_host = \"{host}\"\n{FAST_RETRY}\n"
    )
}

/// The destination built in this process from the same config text the engine was given.
fn build(host: &str, project: &str) -> Arc<dyn Destination> {
    let mut registry = Registry::new();
    registry.register(manifold_firestore::FirestoreFactory);
    let text = format!("[[destinations]]\n{}", destination(host, project));
    let config = Config::from_str(&text, "<proof>", &registry, &|_| None)
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    config.destinations[0].destination.clone()
}

/// Every document of the project, read by Google's Python client: `"<collection>/<id>" → fields`.
async fn read_python(host: &str, project: &str) -> Map<String, Value> {
    let python = env_or_panic(
        "MANIFOLD_TEST_PYTHON",
        "the proof reads Firestore back with google-cloud-firestore from the clients venv",
    );
    let script = include_str!("../../../destinations/firestore/tests/common/read_firestore.py");
    let out = run(
        Command::new(&python)
            .args(["-c", script, project, ROOT])
            .args(COLLECTIONS)
            .env("FIRESTORE_EMULATOR_HOST", host)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "google-cloud-firestore reader",
    )
    .await;
    match serde_json::from_str(&out) {
        Ok(Value::Object(m)) => m,
        other => panic!("the Python reader printed no JSON object: {other:?}"),
    }
}

/// Undo the `{"_manifold_array": [...]}` wrapper of arrays inside arrays.
fn unwrap_arrays(v: Value) -> Value {
    match v {
        Value::Object(mut o) => {
            if o.len() == 1 && o.get("_manifold_array").is_some_and(Value::is_array) {
                return unwrap_arrays(o.remove("_manifold_array").unwrap());
            }
            Value::Object(o.into_iter().map(|(k, v)| (k, unwrap_arrays(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(unwrap_arrays).collect()),
        other => other,
    }
}

/// The event a document holds, rebuilt here by the documented rule: drop `_manifold_*`; on data
/// documents the fields `_manifold_envelope` names are the event's, the rest is `data[0]`.
fn rebuild(fields: &Value) -> Value {
    let Value::Object(mut doc) = unwrap_arrays(fields.clone()) else {
        panic!("a document is a map: {fields}")
    };
    let envelope = doc.remove("_manifold_envelope");
    doc.retain(|k, _| !k.starts_with("_manifold_"));
    match envelope {
        Some(Value::Array(keys)) => {
            let mut event = Map::new();
            for k in keys {
                let k = k.as_str().unwrap().to_string();
                if let Some(v) = doc.remove(&k) {
                    event.insert(k, v);
                }
            }
            event.insert("data".into(), Value::Array(vec![Value::Object(doc)]));
            Value::Object(event)
        }
        _ => Value::Object(doc),
    }
}

/// One document per natural key with the latest version's payload under Terra's name, and one
/// `user_events` document per informational event.
fn check_firestore(what: &str, read: &Map<String, Value>, exp: &Expected, ids: Ids) {
    let mut data_docs = 0;
    let mut events: Vec<(String, Value)> = Vec::new();
    for (path, fields) in read {
        let (collection, id) = path.split_once('/').expect("collection/id");
        let event = rebuild(fields);
        if collection == "user_events" {
            events.push((id.to_string(), event));
            continue;
        }
        data_docs += 1;
        assert_eq!(
            event["type"], collection,
            "{path} lives in its type's collection"
        );
        let user = event["user"]["user_id"]
            .as_str()
            .expect("user.user_id")
            .to_string();
        let (key, want_id) = if collection == "athlete" {
            ("athlete".to_string(), format!("{user}.json"))
        } else {
            let item = &event["data"][0];
            (
                natural_key(collection, item),
                format!(
                    "{user}-{}.json",
                    item["metadata"]["start_time"].as_str().unwrap()
                ),
            )
        };
        assert_eq!(id, want_id, "Terra's document name");
        let rec = exp
            .records
            .get(&(user.clone(), collection.to_string(), key.clone()))
            .unwrap_or_else(|| panic!("a document no forwarded body explains: {path}"));
        let latest = rec.latest();
        assert!(
            latest.iter().any(|v| v.payload == event),
            "{what}: {path}: not the latest version's payload: {}\n stored: version {} trace {}\n forwarded versions (trace, ordering ms): {:?}",
            first_difference("", &event, &latest[0].payload),
            fields["_manifold_version"],
            fields["_manifold_trace_id"],
            rec.versions
                .iter()
                .map(|v| (v.trace_id.as_str(), v.ordering_ms))
                .collect::<Vec<_>>()
        );
        if ids == Ids::Same {
            let trace = fields["_manifold_trace_id"].as_str().unwrap_or("");
            assert!(
                latest.iter().any(|v| v.trace_id == trace),
                "{path}: _manifold_trace_id {trace} is not the latest version's"
            );
            assert_eq!(
                fields["_manifold_version"].as_i64(),
                Some(rec.versions.len() as i64),
                "{path}: _manifold_version"
            );
        }
    }
    assert_eq!(
        data_docs,
        exp.records.len(),
        "one document per natural key (expected per type: {:?})",
        exp.per_type()
    );
    assert_eq!(
        events.len(),
        exp.info.len(),
        "user_events: one document per informational event"
    );
    // As multisets (JSON object key order is not significant).
    let mut left: Vec<&Value> = events.iter().map(|(_, e)| e).collect();
    for b in &exp.info {
        let at = left.iter().position(|e| **e == b.json).unwrap_or_else(|| {
            panic!("{what}: no user_events document holds the event {}", b.json)
        });
        left.remove(at);
    }
    if ids == Ids::Same {
        for b in &exp.info {
            let user = b.json["user"]["user_id"].as_str().unwrap_or("unknown");
            assert!(
                events.iter().any(|(id, e)| {
                    *e == b.json
                        && id.starts_with(&format!("{user}-"))
                        && id.ends_with(&format!("-{}.json", b.trace_id))
                }),
                "no user_events/<user>-<time>-{}.json",
                b.trace_id
            );
        }
    }
}

/// Where two JSON values first differ (for readable failures with large documents).
fn first_difference(at: &str, got: &Value, want: &Value) -> String {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for k in g.keys().chain(w.keys()) {
                let (a, b) = (
                    g.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                );
                if a != b || g.contains_key(k) != w.contains_key(k) {
                    return first_difference(&format!("{at}.{k}"), a, b);
                }
            }
            format!("{at}: equal?")
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                if a != b {
                    return first_difference(&format!("{at}[{i}]"), a, b);
                }
            }
            format!("{at}: equal?")
        }
        _ => format!("at `{at}` the document has {got} where the delivered JSON has {want}"),
    }
}

fn counts(read: &Map<String, Value>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for path in read.keys() {
        *m.entry(path.split('/').next().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

/// The documents without what a redelivery legitimately rewrites: the write time, and the
/// natural key of informational events (the engine's is its own outbox id).
fn comparable(read: &Map<String, Value>) -> BTreeMap<String, Value> {
    read.iter()
        .map(|(path, fields)| {
            let mut f = fields.clone();
            let o = f.as_object_mut().unwrap();
            o.remove("_manifold_updated_at");
            if path.starts_with("user_events/") {
                o.remove("_manifold_key");
            }
            (path.clone(), f)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_proof() {
    let t0 = Instant::now();
    let host = emulator();
    let dir = tempfile::tempdir().unwrap();

    // 1–2: the demo's data, read back with Google's Python client.
    let demo_project = project();
    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination(&host, &demo_project), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_python(&host, &demo_project).await;
    check_firestore("demo", &stored, &exp, Ids::Same);
    let types: BTreeSet<&str> = exp.records.keys().map(|k| k.1.as_str()).collect();
    for t in ["sleep", "daily", "activity"] {
        assert!(
            types.contains(t),
            "the demo delivered no {t} record: {types:?}"
        );
    }

    // 3: everything again, newest first: no count changes, nothing goes back to an older version.
    let dest = build(&host, &demo_project);
    redeliver(&*dest, exp.deliveries()).await;
    let again = read_python(&host, &demo_project).await;
    assert_eq!(
        counts(&again),
        counts(&stored),
        "redelivery changed a count"
    );
    check_firestore("redelivery", &again, &exp, Ids::Same);
    // Unchanged, except where two versions of a record were committed in the same millisecond:
    // the forwarded bodies cannot tell which of them the engine numbered last, so the redelivery
    // (which numbers them in receipt order) may store the other one — still a latest version.
    let tied: BTreeSet<String> = exp
        .records
        .values()
        .filter(|r| r.latest().len() > 1)
        .map(|r| format!("{}:{}:{}", r.user_id, r.data_type, r.key))
        .collect();
    let (before, after) = (comparable(&stored), comparable(&again));
    for (path, doc) in &before {
        if doc["_manifold_key"]
            .as_str()
            .is_some_and(|k| tied.contains(k))
        {
            continue;
        }
        let now = after.get(path).unwrap_or(&Value::Null);
        assert!(
            now == doc,
            "redelivery changed {path}: {}",
            first_difference("", now, doc)
        );
    }

    // 4: the engine delivers through a proxy that goes down mid-delivery and comes back.
    let outage_project = project();
    let proxy = FaultProxy::start(&host).await;
    let serve = Serve::start(&destination(&proxy.addr().to_string(), &outage_project)).await;
    let out = outage(
        &serve,
        &exp,
        || async { proxy.down().await },
        || async { proxy.up().await },
    )
    .await;
    assert!(proxy.connections() > 0, "the engine went through the proxy");
    check_firestore(
        "outage",
        &read_python(&host, &outage_project).await,
        &exp,
        Ids::Any,
    );

    eprintln!(
        "firestore: {} bodies forwarded, {} documents ({:?}), {} user_events; outage: {} deliveries, \
         up to {} attempts; {:.1} s",
        exp.bodies.len(),
        exp.records.len(),
        counts(&stored),
        exp.info.len(),
        out.0,
        out.1,
        t0.elapsed().as_secs_f64()
    );
}

/// `manifold check --connect` proves the emulator answers (a query, a write and a delete), and
/// fails naming the destination when nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_firestore() {
    let host = emulator();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    for (target, ok) in [(host.as_str(), true), (dead.as_str(), false)] {
        let config = dir.path().join("check.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"{}\"\n\n[[destinations]]\n{}",
                common::sqlite_url(dir.path()),
                destination(target, &project())
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_manifold"))
            .args(["check", "--connect", "--config"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if ok {
            assert!(out.status.success(), "check --connect failed: {text}");
            assert!(text.contains("destination db: ok"), "{text}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{text}");
            assert!(
                text.contains("firestore destination `db`") && text.contains("Unavailable"),
                "{text}"
            );
        }
    }
}
