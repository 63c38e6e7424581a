//! The Oura connector end to end, over real HTTP: the Oura simulator (`oura-sim`, an outside
//! system sharing no code with our client) ↔ Manifold's router, engine and fetch worker
//! (in-process, SQLite file) ↔ a webhook receiver that records what the webhook destination
//! delivers.

mod oura_common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use manifold_core::store::DeliveryFilter;
use oura_common::{Node, http, serve};
use oura_sim::{FaultUpdate, RunningSim, SimConfig, SyncRequest};
use serde_json::{Value, json};

const API_KEY: &str = "test-api-key";
const SECRET: &str = "sim-client-secret";
const VERIFY: &str = "verify-me-token";
// base64 of 32 bytes 0x01..0x20
const TOKEN_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

// ------------------------------------------------------------------ receiver

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
    async fn wait_for(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.all().into_iter().find(|v| f(v)) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; received: {}",
                    serde_json::to_string_pretty(&self.all()).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    fn count(&self, f: impl Fn(&Value) -> bool) -> usize {
        self.all().iter().filter(|v| f(v)).count()
    }
}

async fn hook(State(r): State<Received>, body: Bytes) -> &'static str {
    match serde_json::from_slice(&body) {
        Ok(v) => r.0.lock().unwrap().push(v),
        Err(e) => eprintln!(
            "receiver: unparsable body ({e}): {}",
            String::from_utf8_lossy(&body)
        ),
    }
    "ok"
}

async fn start_receiver() -> (String, Received) {
    let r = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

// ---------------------------------------------------------------------- node

fn config_text(db: &Path, public: &str, sim: &str, receiver: &str) -> String {
    config_text_url(&format!("sqlite://{}", db.display()), public, sim, receiver)
}

fn config_text_url(store_url: &str, public: &str, sim: &str, receiver: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public}"
api_keys = ["{API_KEY}"]

[store]
url = "{store_url}"
poll_interval = "100ms"
lease = "30s"

[oura]
client_id = "sim-client-id"
client_secret = "{SECRET}"
verification_token = "{VERIFY}"
api_base = "{sim}"
auth_base = "{sim}"
token_keys = ["{TOKEN_KEY}"]
sync_subscriptions = false
backfill_days = 0

[[destinations]]
name = "app"
type = "webhook"
url = "{receiver}"
signing_secret = "whsec-test"
allow_private_network = true
retry = {{ max_attempts = 3, initial_backoff = "1s", max_backoff = "2s" }}
"#
    )
}

async fn start_node(db: &Path, sim: &str, receiver: &str, run_worker: bool) -> Node {
    start_node_url(
        &format!("sqlite://{}", db.display()),
        sim,
        receiver,
        run_worker,
    )
    .await
}

async fn start_node_url(store_url: &str, sim: &str, receiver: &str, run_worker: bool) -> Node {
    serve("oura-test.toml", run_worker, |base| {
        config_text_url(store_url, base, sim, receiver)
    })
    .await
}

struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    sim: RunningSim,
    receiver_url: String,
    received: Received,
    node: Node,
}

async fn world_with(run_worker: bool) -> World {
    world_on(None, run_worker).await
}

/// `store_url` None = a SQLite file in the temp dir.
async fn world_on(store_url: Option<&str>, run_worker: bool) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("manifold.db");
    let sim = oura_sim::start(SimConfig {
        users: 3,
        days: 5,
        client_secret: SECRET.into(),
        delivery_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    let url = store_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", db.display()));
    let node = start_node_url(&url, &sim.base_url, &receiver_url, run_worker).await;
    World {
        _dir: dir,
        db,
        sim,
        receiver_url,
        received,
        node,
    }
}

async fn world() -> World {
    world_with(true).await
}

fn loc(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {} answer", res.status()))
        .to_str()
        .unwrap()
        .to_string()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Connect sim user `index` by following every redirect by hand:
/// Manifold authenticateUser → sim /oauth/authorize → Manifold /oura/callback → success URL.
async fn connect(w: &World, index: usize, reference: &str) -> String {
    connect_at(&w.node.base, &w.sim.base_url, index, reference).await
}

async fn connect_at(base: &str, sim_base: &str, index: usize, reference: &str) -> String {
    let c = http();
    let res = c
        .post(format!("{base}/v2/auth/authenticateUser?resource=OURA"))
        .header("x-api-key", API_KEY)
        .json(&json!({
            "reference_id": reference,
            "auth_success_redirect_url": "https://app.example.com/connected",
            "auth_failure_redirect_url": "https://app.example.com/failed",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "success");
    let user_id = body["user_id"].as_str().unwrap().to_string();
    let auth_url = body["auth_url"].as_str().unwrap().to_string();
    assert!(auth_url.starts_with(&format!("{sim_base}/oauth/authorize?")));
    let q = query(&auth_url);
    assert_eq!(q["client_id"], "sim-client-id");
    assert_eq!(q["redirect_uri"], format!("{base}/oura/callback"));
    // the simulator's own parameter picks who logs in
    let res = c
        .get(format!("{auth_url}&user={index}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "sim authorize");
    let callback = loc(&res);
    assert!(callback.starts_with(&format!("{base}/oura/callback?")));
    let res = c.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302, "callback: {}", res.text().await.unwrap());
    let done = loc(&res);
    assert!(
        done.starts_with("https://app.example.com/connected?"),
        "{done}"
    );
    let q = query(&done);
    assert_eq!(q["user_id"], user_id);
    assert_eq!(q["reference_id"], reference);
    user_id
}

async fn subscribe(w: &World) {
    let subs = w
        .node
        .connector
        .sync_subscriptions(Duration::from_secs(86_400))
        .await
        .unwrap_or_else(|e| panic!("subscription sync: {e}"));
    assert!(subs.len() >= 3);
}

async fn sim_sync(
    w: &World,
    index: usize,
    data_type: &str,
    op: &str,
    object: Option<&str>,
) -> String {
    let out = w
        .sim
        .sim
        .sync(SyncRequest {
            user: json!(index),
            data_type: data_type.into(),
            day: None,
            operation: Some(op.into()),
            object_id: object.map(str::to_string),
        })
        .await
        .unwrap_or_else(|e| panic!("sim sync: {e}"));
    assert!(out.notified_subscriptions >= 1, "no subscription matched");
    out.event.object_id
}

fn is_type(v: &Value, t: &str) -> bool {
    v["type"] == t
}

fn sleep_id(v: &Value) -> Option<&str> {
    v["data"][0]["metadata"]["summary_id"].as_str()
}

/// A sleep payload or a sleep tombstone about `object` (the simulator also generates periods
/// of type `rest`/`deleted`, which Manifold tombstones).
fn about_sleep(v: &Value, object: &str) -> bool {
    is_type(v, "sleep") && (sleep_id(v) == Some(object) || v["deleted"][0]["summary_id"] == object)
}

/// The simulator's current document, read directly with a token of its own.
async fn sim_doc(w: &World, index: usize, data_type: &str, object: &str) -> Value {
    let t = w.sim.sim.issue_token(index, &[]).unwrap();
    http()
        .get(format!(
            "{}/v2/usercollection/{data_type}/{object}",
            w.sim.base_url
        ))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Create sleep periods at the simulator until one is a real sleep (not `rest`/`deleted`).
async fn create_real_sleep(w: &World, index: usize) -> String {
    for _ in 0..20 {
        let object = sim_sync(w, index, "sleep", "create", None).await;
        let doc = sim_doc(w, index, "sleep", &object).await;
        if !matches!(doc["type"].as_str(), Some("rest" | "deleted")) {
            return object;
        }
    }
    panic!("the simulator made no real sleep period in 20 tries");
}

fn sign(ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(ts.as_bytes());
    m.update(body);
    hex::encode_upper(m.finalize().into_bytes())
}

async fn post_notification(w: &World, body: &[u8], ts: &str, sig: &str) -> reqwest::Response {
    http()
        .post(format!("{}/oura/webhook", w.node.base))
        .header("content-type", "application/json")
        .header("x-oura-timestamp", ts)
        .header("x-oura-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

fn now_s() -> String {
    chrono::Utc::now().timestamp().to_string()
}

// ---------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_refuses_bad_input_and_coalesces_duplicates() {
    let w = world().await;
    let c = http();
    // handshake
    let url = format!("{}/oura/webhook", w.node.base);
    let res = c
        .get(&url)
        .query(&[("verification_token", "wrong"), ("challenge", "abc")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = c
        .get(&url)
        .query(&[("verification_token", VERIFY), ("challenge", "abc")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"challenge": "abc"})
    );

    let user_id = connect(&w, 0, "ref-intake").await;
    let oura_id = w.sim.sim.users()[0].id.clone();
    // a real sleep document id, so the one fetch succeeds
    let object = sim_sync_no_subscription(&w, 0).await;
    let body = serde_json::to_vec(&json!({
        "event_type": "create", "data_type": "sleep", "object_id": object,
        "event_time": "2026-07-01T08:00:00+00:00", "user_id": oura_id,
    }))
    .unwrap();
    let store = w.node.engine.store();

    // bad signature → 401, nothing stored
    let ts = now_s();
    let res = post_notification(&w, &body, &ts, &sign(&ts, b"other body")).await;
    assert_eq!(res.status(), 401);
    let res = post_notification(&w, &body, &ts, "").await;
    assert_eq!(res.status(), 401);
    // stale timestamp (10 minutes old, correctly signed) → 401
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    let res = post_notification(&w, &body, &old, &sign(&old, &body)).await;
    assert_eq!(res.status(), 401);
    assert!(store.oura_notifications(100).await.unwrap().is_empty());
    // 1 MiB + 1 of garbage → 413
    let big = vec![b'x'; 1024 * 1024 + 1];
    let res = post_notification(&w, &big, &ts, &sign(&ts, &big)).await;
    assert_eq!(res.status(), 413);
    // signed but malformed → 400 naming the position
    let bad = b"{\"event_type\": 1";
    let res = post_notification(&w, bad, &ts, &sign(&ts, bad)).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("line 1"));
    assert!(store.oura_notifications(100).await.unwrap().is_empty());

    // the same notification three times → one row, one fetch, one payload
    let requests_before = w.sim.sim.request_count();
    for _ in 0..3 {
        let ts = now_s();
        let res = post_notification(&w, &body, &ts, &sign(&ts, &body)).await;
        assert_eq!(res.status(), 200);
    }
    w.received
        .wait_for("the sleep payload", |v| about_sleep(v, &object))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rows = store.oura_notifications(100).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, "done");
    assert_eq!(
        w.sim.sim.request_count() - requests_before,
        1,
        "exactly one document fetch"
    );
    assert_eq!(w.received.count(|v| about_sleep(v, &object)), 1);

    // unknown user and unknown data type are recorded with a status, not fetched
    for (uid, dt) in [("someone-else", "sleep"), (oura_id.as_str(), "meal")] {
        let b = serde_json::to_vec(&json!({
            "event_type": "create", "data_type": dt, "object_id": "x",
            "event_time": "2026-07-01T08:00:00+00:00", "user_id": uid,
        }))
        .unwrap();
        let ts = now_s();
        assert_eq!(
            post_notification(&w, &b, &ts, &sign(&ts, &b))
                .await
                .status(),
            200
        );
    }
    let rows = store.oura_notifications(100).await.unwrap();
    let mut statuses: Vec<_> = rows.iter().map(|r| r.status.clone()).collect();
    statuses.sort();
    assert_eq!(statuses, ["done", "unknown_user", "unsupported"]);
    let _ = user_id;
    w.node.shutdown().await;
}

/// Create a sleep document at the simulator without any subscription (nothing is notified),
/// returning its id.
async fn sim_sync_no_subscription(w: &World, index: usize) -> String {
    w.sim
        .sim
        .sync(SyncRequest {
            user: json!(index),
            data_type: "sleep".into(),
            day: None,
            operation: Some("create".into()),
            object_id: None,
        })
        .await
        .unwrap()
        .event
        .object_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sync_update_delete_deauth() {
    let w = world().await;
    let user_id = connect(&w, 1, "ref-flow").await;
    let auth = w
        .received
        .wait_for("the auth event", |v| is_type(v, "auth"))
        .await;
    assert_eq!(auth["status"], "success");
    assert_eq!(auth["user"]["user_id"], user_id.as_str());
    assert_eq!(auth["user"]["provider"], "OURA");
    assert_eq!(auth["user"]["reference_id"], "ref-flow");

    // userInfo, Terra's shape
    let c = http();
    let info: Value = c
        .get(format!("{}/v2/userInfo?user_id={user_id}", w.node.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"], "success");
    assert_eq!(info["is_authenticated"], true);
    assert_eq!(info["user"]["user_id"], user_id.as_str());
    assert_eq!(info["user"]["active"], true);
    // tokens are encrypted at rest
    let row = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.access_token.as_deref().unwrap().starts_with("v1."));

    // subscriptions through the sim's verification handshake
    subscribe(&w).await;

    // create → sleep payload
    let object = create_real_sleep(&w, 1).await;
    let v1 = w
        .received
        .wait_for("sleep v1", |v| {
            is_type(v, "sleep") && sleep_id(v) == Some(object.as_str())
        })
        .await;
    assert_eq!(v1["version"], "2022-03-16");
    assert_eq!(v1["user"]["user_id"], user_id.as_str());
    assert!(v1["data"][0]["sleep_durations_data"].is_object(), "{v1}");

    // update → a second payload for the same sleep, stored as version 2, a superset of v1
    sim_sync(&w, 1, "sleep", "update", Some(&object)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while w
        .received
        .count(|v| is_type(v, "sleep") && sleep_id(v) == Some(object.as_str()))
        < 2
    {
        assert!(Instant::now() < deadline, "no second sleep payload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sleeps: Vec<Value> = w
        .received
        .all()
        .into_iter()
        .filter(|v| is_type(v, "sleep") && sleep_id(v) == Some(object.as_str()))
        .collect();
    let (a, b) = (&sleeps[0]["data"][0], &sleeps[1]["data"][0]);
    assert_ne!(a, b, "the update changed the document");
    for k in a.as_object().unwrap().keys() {
        assert!(b.get(k).is_some(), "v2 lacks `{k}` that v1 had");
    }
    let rows = w
        .node
        .engine
        .store()
        .list_deliveries(&DeliveryFilter {
            destination: Some("app".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let key = format!("{user_id}:sleep:{object}");
    let mut versions: Vec<i64> = rows
        .iter()
        .filter(|r| r.natural_key == key)
        .map(|r| r.version)
        .collect();
    versions.sort();
    assert_eq!(versions, [1, 2]);

    // delete → tombstone
    sim_sync(&w, 1, "sleep", "delete", Some(&object)).await;
    let t = w
        .received
        .wait_for("the sleep tombstone", |v| {
            is_type(v, "sleep") && v["deleted"][0]["summary_id"] == object.as_str()
        })
        .await;
    assert_eq!(t["user"]["user_id"], user_id.as_str());
    assert!(
        w.node
            .engine
            .store()
            .oura_document(&user_id, "sleep", &object)
            .await
            .unwrap()
            .is_none()
    );

    // a day document → daily payload rebuilt from the stored day
    let daily = sim_sync(&w, 1, "daily_activity", "create", None).await;
    let d = w
        .received
        .wait_for("a daily payload", |v| {
            is_type(v, "daily") && v["data"].is_array()
        })
        .await;
    assert_eq!(d["user"]["user_id"], user_id.as_str());
    let day = d["data"][0]["metadata"]["start_time"].as_str().unwrap()[..10].to_string();
    // deleting the day's only day document → a day tombstone
    sim_sync(&w, 1, "daily_activity", "delete", Some(&daily)).await;
    w.received
        .wait_for("the daily tombstone", |v| {
            is_type(v, "daily") && v["deleted"][0]["date"] == day.as_str()
        })
        .await;

    // deauth: revoked at Oura, data forgotten, `deauth` emitted
    let res = c
        .delete(format!(
            "{}/v2/auth/deauthenticateUser?user_id={user_id}",
            w.node.base
        ))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    w.received
        .wait_for("deauth", |v| {
            is_type(v, "deauth") && v["user"]["user_id"] == user_id.as_str()
        })
        .await;
    let res = c
        .get(format!("{}/v2/userInfo?user_id={user_id}", w.node.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        w.node
            .engine
            .store()
            .oura_count_documents(&user_id)
            .await
            .unwrap(),
        0
    );
    w.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_refreshes_and_revocation_pauses() {
    let w = world().await;
    let user_id = connect(&w, 0, "ref-tokens").await;
    subscribe(&w).await;
    let before = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();

    // every access token expires at Oura: the worker gets a 401, refreshes, and carries on
    w.sim
        .sim
        .update_faults(FaultUpdate {
            expire_access_tokens: true,
            ..Default::default()
        })
        .unwrap();
    let object = sim_sync(&w, 0, "sleep", "create", None).await;
    w.received
        .wait_for("sleep after refresh", |v| about_sleep(v, &object))
        .await;
    let after = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        before.refresh_token, after.refresh_token,
        "the pair was rotated"
    );
    assert_eq!(after.status, "connected");

    // the user revokes the app: refresh is refused → access_revoked, user paused
    let oura_id = w.sim.sim.users()[0].id.clone();
    w.sim
        .sim
        .update_faults(FaultUpdate {
            revoke_user: Some(oura_id.clone()),
            ..Default::default()
        })
        .unwrap();
    // the simulator notifies no revoked grant, so the (late) notification is sent by hand
    let object2 = sim_sync_no_subscription(&w, 0).await;
    let body = serde_json::to_vec(&json!({
        "event_type": "create", "data_type": "sleep", "object_id": object2,
        "event_time": "2026-07-02T08:00:00+00:00", "user_id": oura_id,
    }))
    .unwrap();
    let ts = now_s();
    assert_eq!(
        post_notification(&w, &body, &ts, &sign(&ts, &body))
            .await
            .status(),
        200
    );
    let ev = w
        .received
        .wait_for("access_revoked", |v| is_type(v, "access_revoked"))
        .await;
    assert_eq!(ev["user"]["user_id"], user_id.as_str());
    let row = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "paused");
    let info: Value = http()
        .get(format!("{}/v2/userInfo?user_id={user_id}", w.node.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["is_authenticated"], false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = w.node.engine.store().oura_notifications(100).await.unwrap();
        if rows
            .iter()
            .any(|r| r.object_id == object2 && r.status == "revoked")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.received.count(|v| about_sleep(v, &object2)), 0);
    w.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_denied_and_forged_state() {
    let w = world().await;
    let c = http();
    w.sim
        .sim
        .update_faults(FaultUpdate {
            deny_authorize: Some(true),
            ..Default::default()
        })
        .unwrap();
    let body: Value = c
        .post(format!(
            "{}/v2/auth/authenticateUser?resource=OURA",
            w.node.base
        ))
        .header("x-api-key", API_KEY)
        .json(&json!({
            "reference_id": "ref-deny",
            "auth_success_redirect_url": "https://app.example.com/connected",
            "auth_failure_redirect_url": "https://app.example.com/failed",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = c
        .get(body["auth_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let callback = loc(&res);
    assert!(callback.contains("error=access_denied"));
    let res = c.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let failed = loc(&res);
    assert!(
        failed.starts_with("https://app.example.com/failed?"),
        "{failed}"
    );
    assert_eq!(query(&failed)["reason"], "access_denied");
    let ev = w
        .received
        .wait_for("auth_cancelled", |v| is_type(v, "auth_cancelled"))
        .await;
    assert_eq!(ev["reference_id"], "ref-deny");
    assert_eq!(ev["reason"], "access_denied");

    // a forged or missing state → problem+json 400, no redirect
    for q in ["code=abc&state=forged.state", "code=abc"] {
        let res = c
            .get(format!("{}/oura/callback?{q}", w.node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    // wrong resource, missing key
    let res = c
        .post(format!(
            "{}/v2/auth/authenticateUser?resource=FITBIT",
            w.node.base
        ))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .post(format!(
            "{}/v2/auth/authenticateUser?resource=OURA",
            w.node.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    w.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_acked_before_a_restart_is_fetched_after_it() {
    // first life: intake only, no fetch worker
    let w = world_with(false).await;
    let user_id = connect(&w, 2, "ref-restart").await;
    subscribe(&w).await;
    let object = sim_sync(&w, 2, "sleep", "create", None).await;
    // wait until the sim's delivery was acknowledged (the row is durable)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = w.node.engine.store().oura_notifications(10).await.unwrap();
        if rows.iter().any(|r| r.object_id == object) {
            assert!(rows.iter().all(|r| r.status == "pending"));
            break;
        }
        assert!(Instant::now() < deadline, "the notification never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let World {
        _dir,
        db,
        sim,
        receiver_url,
        received,
        node,
    } = w;
    node.shutdown().await;
    assert_eq!(received.count(|v| is_type(v, "sleep")), 0);

    // second life: same SQLite file, new engine and connector, worker running
    let node = start_node(&db, &sim.base_url, &receiver_url, true).await;
    let v = received
        .wait_for("the sleep after restart", |v| about_sleep(v, &object))
        .await;
    assert_eq!(v["user"]["user_id"], user_id.as_str());
    node.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let w = world().await;
    connect(&w, 0, "ref-faults").await;
    subscribe(&w).await;
    // two 429s (Retry-After 1s), then a 5xx (backoff), then the document is served
    w.sim
        .sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(2),
            retry_after_secs: Some(1),
            ..Default::default()
        })
        .unwrap();
    let started = Instant::now();
    let object = sim_sync(&w, 0, "sleep", "create", None).await;
    w.received
        .wait_for("sleep after 429s", |v| about_sleep(v, &object))
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
    let rows = w.node.engine.store().oura_notifications(10).await.unwrap();
    let row = rows.iter().find(|r| r.object_id == object).unwrap();
    assert_eq!(row.status, "done");
    assert_eq!(row.attempts, 1, "429s do not use up attempts");
    w.sim
        .sim
        .update_faults(FaultUpdate {
            server_error_next: Some(1),
            ..Default::default()
        })
        .unwrap();
    let object = sim_sync(&w, 0, "sleep", "create", None).await;
    w.received
        .wait_for("sleep after a 5xx", |v| about_sleep(v, &object))
        .await;
    let rows = w.node.engine.store().oura_notifications(10).await.unwrap();
    let row = rows.iter().find(|r| r.object_id == object).unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("done", 2));
    w.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_patch_and_reference_lookup() {
    let w = world().await;
    let user_id = connect(&w, 0, "ref-patch").await;
    let c = http();
    let res = c
        .patch(format!("{}/v2/users/{user_id}", w.node.base))
        .header("x-api-key", API_KEY)
        .json(&json!({"active": false, "reference_id": "ref-new"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["user"]["active"], false);
    assert_eq!(v["user"]["reference_id"], "ref-new");
    let list: Value = c
        .get(format!("{}/v2/userInfo?reference_id=ref-new", w.node.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["user_id"], user_id.as_str());
    // reconnecting the same Oura account replaces the old user: user_reauth + auth
    let new_id = connect(&w, 0, "ref-new").await;
    let ev = w
        .received
        .wait_for("user_reauth", |v| is_type(v, "user_reauth"))
        .await;
    assert_eq!(ev["old_user"]["user_id"], user_id.as_str());
    assert_eq!(ev["new_user"]["user_id"], new_id.as_str());
    let res = c
        .patch(format!("{}/v2/users/unknown", w.node.base))
        .header("x-api-key", API_KEY)
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    w.node.shutdown().await;
}

/// `manifold serve` as a child process with `[oura]`: it syncs the webhook subscriptions at
/// start (answering the simulator's verification handshake), runs the fetch worker, and a
/// connected user's sleep reaches the webhook destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifold_serve_runs_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let sim = oura_sim::start(SimConfig {
        users: 2,
        days: 3,
        client_secret: SECRET.into(),
        delivery_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let text = config_text(
        &dir.path().join("m.db"),
        &base,
        &sim.base_url,
        &receiver_url,
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
    .replace("sync_subscriptions = false", "sync_subscriptions = true");
    let cfg = dir.path().join("manifold.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let c = http();
    // subscriptions appear at the simulator (each verified against our GET handler)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let subs: Value = match c
            .get(format!("{}/v2/webhook/subscription", sim.base_url))
            .header("x-client-id", "sim-client-id")
            .header("x-client-secret", SECRET)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let n = subs.as_array().map(|a| {
            a.iter()
                .filter(|s| s["callback_url"] == format!("{base}/oura/webhook"))
                .count()
        });
        if n.unwrap_or(0) >= manifold_oura::connector::WEBHOOK_DATA_TYPES.len() * 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscriptions never appeared: {subs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let user_id = connect_at(&base, &sim.base_url, 1, "ref-serve").await;
    let object = sim
        .sim
        .sync(SyncRequest {
            user: json!(1),
            data_type: "sleep".into(),
            day: None,
            operation: Some("create".into()),
            object_id: None,
        })
        .await
        .unwrap()
        .event
        .object_id;
    let v = received
        .wait_for("the sleep via manifold serve", |v| about_sleep(v, &object))
        .await;
    assert_eq!(v["user"]["user_id"], user_id.as_str());
    let _ = child.start_kill();
    let _ = child.wait().await;
    sim.shutdown().await;
}

async fn sim_subs(sim: &RunningSim) -> Vec<Value> {
    http()
        .get(format!("{}/v2/webhook/subscription", sim.base_url))
        .header("x-client-id", "sim-client-id")
        .header("x-client-secret", SECRET)
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

async fn cli(cfg: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["oura", "--config"])
        .arg(cfg)
        .args(["subscriptions"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `manifold oura subscriptions sync|list|renew|delete` against the simulator; the running
/// node answers the verification handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_subscriptions_cli() {
    let w = world().await;
    let cfg = w._dir.path().join("manifold.toml");
    std::fs::write(
        &cfg,
        config_text(&w.db, &w.node.base, &w.sim.base_url, &w.receiver_url),
    )
    .unwrap();
    let want = manifold_oura::connector::WEBHOOK_DATA_TYPES.len() * 3;
    let (ok, out) = cli(&cfg, &["sync"]).await;
    assert!(ok, "{out}");
    assert_eq!(sim_subs(&w.sim).await.len(), want);
    let (ok, out) = cli(&cfg, &["list"]).await;
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), want + 1, "{out}");
    // a missing subscription is recreated by the next sync
    let first = sim_subs(&w.sim).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = cli(&cfg, &["delete", &first]).await;
    assert!(ok, "{out}");
    assert_eq!(sim_subs(&w.sim).await.len(), want - 1);
    let (ok, out) = cli(&cfg, &["sync"]).await;
    assert!(ok, "{out}");
    assert_eq!(sim_subs(&w.sim).await.len(), want);
    // expired subscriptions are renewed by sync
    w.sim
        .sim
        .update_faults(FaultUpdate {
            expire_subscriptions: true,
            ..Default::default()
        })
        .unwrap();
    let (ok, out) = cli(&cfg, &["sync"]).await;
    assert!(ok, "{out}");
    for s in sim_subs(&w.sim).await {
        assert!(
            !manifold_oura::connector::expires_within(
                s["expiration_time"].as_str(),
                Duration::from_secs(3600)
            ),
            "{s}"
        );
    }
    let (ok, out) = cli(&cfg, &["renew"]).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(&cfg, &["delete", "--all"]).await;
    assert!(ok, "{out}");
    assert!(sim_subs(&w.sim).await.is_empty());
    w.node.shutdown().await;
}

/// Many notifications of one user at once while every access token has expired: the refresh
/// is single-flight (Oura refresh tokens are single-use), so nothing is refused and every
/// document arrives. Runs on PostgreSQL, the multi-node store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_share_one_refresh_on_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    let w = world_on(Some(&db.url), true).await;
    let user_id = connect(&w, 0, "ref-pg").await;
    subscribe(&w).await;
    let before = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    w.sim
        .sim
        .update_faults(FaultUpdate {
            expire_access_tokens: true,
            ..Default::default()
        })
        .unwrap();
    let mut objects = Vec::new();
    for _ in 0..6 {
        objects.push(sim_sync(&w, 0, "sleep", "create", None).await);
    }
    for o in &objects {
        w.received
            .wait_for("every sleep", |v| about_sleep(v, o))
            .await;
    }
    assert_eq!(w.received.count(|v| is_type(v, "access_revoked")), 0);
    let after = w
        .node
        .engine
        .store()
        .oura_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, "connected");
    assert_ne!(before.refresh_token, after.refresh_token);
    let rows = w.node.engine.store().oura_notifications(100).await.unwrap();
    assert!(rows.iter().all(|r| r.status == "done"), "{rows:?}");
    w.node.shutdown().await;
}
