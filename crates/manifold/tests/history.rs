//! History endpoints, the backfill after connect and `manifold backfill`, over real HTTP against
//! the Oura simulator (an outside system), with a webhook receiver recording what the webhook
//! destination delivers (bodies and headers).

mod oura_common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{NaiveDate, Utc};
use manifold_core::store::{DeliveryFilter, OuraTokens};
use manifold_core::{Engine, Store};
use manifold_oura::connector::Connector;
use oura_common::{Node, serve};
use oura_sim::{FaultUpdate, RunningSim, SimConfig};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

const API_KEY: &str = "test-api-key";
const SECRET: &str = "sim-client-secret";
const TOKEN_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const VERIFY: &str = "history-verify";

// ------------------------------------------------------------------ receiver

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivered>>>);

/// (`terra-reference` header, body) of one delivery.
type Delivered = (Option<String>, Value);

impl Received {
    fn all(&self) -> Vec<Delivered> {
        self.0.lock().unwrap().clone()
    }
    fn with_reference(&self, r: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|(h, _)| h.as_deref() == Some(r))
            .map(|(_, v)| v)
            .collect()
    }
    async fn wait_until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f(self) {
            if Instant::now() > deadline {
                let types: Vec<_> = self.all().iter().map(|(_, v)| v["type"].clone()).collect();
                panic!("timed out waiting for {what}; received types: {types:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn hook(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let reference = headers
        .get("terra-reference")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(v) = serde_json::from_slice(&body) {
        r.0.lock().unwrap().push((reference, v));
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

fn config_text(db: &Path, public: &str, sim: &str, receiver: &str, backfill_days: u32) -> String {
    config_text_url(
        &format!("sqlite://{}", db.display()),
        public,
        sim,
        receiver,
        backfill_days,
        "",
    )
}

/// `oura_extra`: more `[oura]` lines (e.g. the rate budget).
fn config_text_url(
    store_url: &str,
    public: &str,
    sim: &str,
    receiver: &str,
    backfill_days: u32,
    oura_extra: &str,
) -> String {
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
api_base = "{sim}"
auth_base = "{sim}"
token_keys = ["{TOKEN_KEY}"]
sync_subscriptions = false
backfill_days = {backfill_days}
verification_token = "{VERIFY}"
{oura_extra}

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

struct World {
    dir: tempfile::TempDir,
    sim: RunningSim,
    receiver_url: String,
    received: Received,
    base: String,
    engine: Engine,
    connector: Arc<Connector>,
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn world(days: u32, backfill_days: u32) -> World {
    world_on(None, days, backfill_days).await
}

async fn world_on(store_url: Option<&str>, days: u32, backfill_days: u32) -> World {
    world_with(store_url, days, backfill_days, "").await
}

/// `store_url` None = a SQLite file in the temp dir; `oura_extra`: more `[oura]` lines.
async fn world_with(
    store_url: Option<&str>,
    days: u32,
    backfill_days: u32,
    oura_extra: &str,
) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let sim = oura_sim::start(SimConfig {
        users: 3,
        days,
        client_secret: SECRET.into(),
        page_size: 7,
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    let url = store_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("manifold.db").display()));
    let Node {
        base,
        engine,
        connector,
        stop,
        workers,
        server,
    } = serve("history-test.toml", true, |base| {
        config_text_url(
            &url,
            base,
            &sim.base_url,
            &receiver_url,
            backfill_days,
            oura_extra,
        )
    })
    .await;
    World {
        dir,
        sim,
        receiver_url,
        received,
        base,
        engine,
        connector,
        stop,
        workers,
        server,
    }
}

impl World {
    async fn stop_node(&mut self) {
        let _ = self.stop.send(true);
        while self.workers.join_next().await.is_some() {}
        (&mut self.server).await.ok();
        self.engine.store().close().await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn loc(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// Connect sim user `index` through the real redirects; returns the Manifold user id.
async fn connect(w: &World, index: usize, reference: &str) -> String {
    let c = http();
    let body: Value = c
        .post(format!("{}/v2/auth/authenticateUser?resource=OURA", w.base))
        .header("x-api-key", API_KEY)
        .json(&json!({"reference_id": reference, "auth_success_redirect_url": "https://app.example.com/ok"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = body["user_id"].as_str().unwrap().to_string();
    let auth_url = body["auth_url"].as_str().unwrap();
    let res = c
        .get(format!("{auth_url}&user={index}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let res = c.get(loc(&res)).send().await.unwrap();
    assert_eq!(res.status(), 302, "callback");
    assert!(loc(&res).starts_with("https://app.example.com/ok"));
    user_id
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(n: i64) -> NaiveDate {
    today() - chrono::Duration::days(n)
}

/// Every document the simulator serves for a collection over `from..=to`, read with a token
/// of its own (all pages).
async fn sim_list(
    w: &World,
    index: usize,
    collection: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<Value> {
    let t = w.sim.sim.issue_token(index, &[]).unwrap();
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut q = vec![
            ("start_date".to_string(), from.to_string()),
            (
                "end_date".to_string(),
                (to + chrono::Duration::days(1)).to_string(),
            ),
        ];
        if let Some(n) = &next {
            q.push(("next_token".into(), n.clone()));
        }
        let page: Value = http()
            .get(format!("{}/v2/usercollection/{collection}", w.sim.base_url))
            .query(&q)
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_token"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => return out,
        }
    }
}

fn real_sleep_ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter(|d| !matches!(d["type"].as_str(), Some("rest" | "deleted")))
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn get(w: &World, path: &str, params: &[(&str, String)]) -> reqwest::Response {
    http()
        .get(format!("{}{path}", w.base))
        .header("x-api-key", API_KEY)
        .query(params)
        .send()
        .await
        .unwrap()
}

fn has_samples(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| manifold_oura::history::is_sample_key(k) || has_samples(x)),
        Value::Array(a) => a.iter().any(has_samples),
        _ => false,
    }
}

fn day_of(item: &Value) -> String {
    item["metadata"]["start_time"].as_str().unwrap()[..10].to_string()
}

// ---------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_sleep_and_daily_match_the_simulator() {
    let mut w = world(12, 0).await;
    let user = connect(&w, 0, "sync-user").await;
    let (from, to) = (days_ago(10), today());
    let p = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = vec![
            ("user_id", user.clone()),
            ("start_date", from.to_string()),
            ("end_date", to.to_string()),
            ("to_webhook", "false".to_string()),
        ];
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };

    // sleep: same periods as the simulator serves (rest/deleted periods are not sleep)
    let res = get(&w, "/v2/sleep", &p(&[])).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "sleep");
    assert_eq!(body["user"]["user_id"], user.as_str());
    let sim_sleep = sim_list(&w, 0, "sleep", from, to).await;
    let expected = real_sleep_ids(&sim_sleep);
    assert!(!expected.is_empty());
    let got: BTreeSet<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["summary_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
    // a value: lowest heart rate → resting_hr_bpm
    let first = &body["data"][0];
    let src = sim_sleep
        .iter()
        .find(|d| d["id"] == first["metadata"]["summary_id"])
        .unwrap();
    if let Some(lhr) = src["lowest_heart_rate"].as_f64() {
        assert_eq!(
            first["heart_rate_data"]["summary"]["resting_hr_bpm"].as_f64(),
            Some(lhr)
        );
    }
    // with_samples=false (default) strips every sample array
    assert!(!has_samples(&body["data"]), "samples not stripped");
    let with: Value = get(&w, "/v2/sleep", &p(&[("with_samples", "true")]))
        .await
        .json()
        .await
        .unwrap();
    assert!(with["data"][0].get("sleep_durations_data").is_some());
    assert!(
        has_samples(&with["data"]),
        "with_samples=true keeps samples"
    );

    // daily: one per day the simulator has daily_activity for, scores match
    let res = get(&w, "/v2/daily", &p(&[])).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "daily");
    let acts = sim_list(&w, 0, "daily_activity", from, to).await;
    assert!(!acts.is_empty());
    let items = body["data"].as_array().unwrap();
    let days: BTreeSet<String> = items.iter().map(day_of).collect();
    for a in &acts {
        let day = a["day"].as_str().unwrap();
        assert!(days.contains(day), "daily for {day} missing");
        let item = items.iter().find(|i| day_of(i) == day).unwrap();
        if let Some(score) = a["score"].as_f64() {
            assert_eq!(item["scores"]["activity"].as_f64(), Some(score), "{day}");
        }
    }
    assert!(!has_samples(&body["data"]));

    // fresh: the stored documents answer; Oura is not called (it would answer 429 now)
    w.sim
        .sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(5),
            retry_after_secs: Some(3),
            ..Default::default()
        })
        .unwrap();
    let again = get(&w, "/v2/sleep", &p(&[])).await;
    assert_eq!(again.status(), 200, "served from the store while fresh");
    w.sim
        .sim
        .update_faults(FaultUpdate {
            clear: true,
            ..Default::default()
        })
        .unwrap();

    // athlete
    let res = get(
        &w,
        "/v2/athlete",
        &[("user_id", user.clone()), ("to_webhook", "false".into())],
    )
    .await;
    assert_eq!(res.status(), 200);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["type"], "athlete");
    assert!(a["athlete"].is_object());
    w.stop_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_requests_are_delivered_with_the_reference() {
    let mut w = world(12, 0).await;
    let user = connect(&w, 1, "async-user").await;
    let (from, to) = (days_ago(10), today());
    let mut refs = HashMap::new();
    for kind in ["sleep", "daily"] {
        let res = get(
            &w,
            &format!("/v2/{kind}"),
            &[
                ("user_id", user.clone()),
                ("start_date", from.to_string()),
                ("end_date", to.to_string()),
            ],
        )
        .await;
        assert_eq!(res.status(), 200);
        let header = res
            .headers()
            .get("terra-reference")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "success");
        assert_eq!(body["type"], kind);
        assert_eq!(body["reference"], header.as_str());
        assert_eq!(
            body["message"],
            "Request is being processed and will be sent to your destination"
        );
        assert_eq!(body["user"]["user_id"], user.as_str());
        refs.insert(kind, header);
    }
    let expected_sleep = real_sleep_ids(&sim_list(&w, 1, "sleep", from, to).await);
    let expected_days: BTreeSet<String> = sim_list(&w, 1, "daily_activity", from, to)
        .await
        .iter()
        .map(|d| d["day"].as_str().unwrap().to_string())
        .collect();
    let count = |r: &Received, reference: &str| -> usize {
        r.with_reference(reference)
            .iter()
            .map(|v| v["data"].as_array().map_or(0, Vec::len))
            .sum()
    };
    let (rs, rd) = (refs["sleep"].clone(), refs["daily"].clone());
    let n_sleep = expected_sleep.len();
    w.received
        .wait_until("the sleep history", |r| count(r, &rs) >= n_sleep)
        .await;
    let sleep_events = w.received.with_reference(&rs);
    let got: BTreeSet<String> = sleep_events
        .iter()
        .flat_map(|v| v["data"].as_array().unwrap().clone())
        .map(|s| s["metadata"]["summary_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected_sleep);
    for e in &sleep_events {
        assert_eq!(e["type"], "sleep");
        assert!(e["data"].as_array().unwrap().len() <= 10);
        assert!(!has_samples(&e["data"]));
    }
    w.received
        .wait_until("the daily history", |r| {
            count(r, &rd) >= expected_days.len()
        })
        .await;
    let got: BTreeSet<String> = w
        .received
        .with_reference(&rd)
        .iter()
        .flat_map(|v| v["data"].as_array().unwrap().clone())
        .map(|d| day_of(&d))
        .collect();
    for d in &expected_days {
        assert!(got.contains(d), "daily {d} not delivered");
    }

    // the same request again is delivered again (an explicit request), with a new reference
    let res = get(
        &w,
        "/v2/sleep",
        &[
            ("user_id", user.clone()),
            ("start_date", from.to_string()),
            ("end_date", to.to_string()),
            ("to_webhook", "true".into()),
        ],
    )
    .await;
    let r2 = res.headers()["terra-reference"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(r2, rs);
    w.received
        .wait_until("the repeated sleep history", |r| count(r, &r2) >= n_sleep)
        .await;
    w.stop_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_day_request_is_chunked_behind_large_request_events() {
    let mut w = world(70, 0).await;
    let user = connect(&w, 0, "large-user").await;
    let (from, to) = (days_ago(60), days_ago(1));
    let res = get(
        &w,
        "/v2/daily",
        &[
            ("user_id", user.clone()),
            ("start_date", from.to_string()),
            ("end_date", to.to_string()),
            ("to_webhook", "true".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let reference = res.headers()["terra-reference"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "large_request_processing");
    assert_eq!(body["status"], "processing");
    assert_eq!(body["reference"], reference.as_str());

    let expected_days: BTreeSet<String> = sim_list(&w, 0, "daily_activity", from, to)
        .await
        .iter()
        .map(|d| d["day"].as_str().unwrap().to_string())
        .collect();
    assert!(expected_days.len() >= 55, "{}", expected_days.len());
    let rf = reference.clone();
    w.received
        .wait_until("large_request_sending and every chunk", |r| {
            let evs = r.with_reference(&rf);
            let Some(sending) = evs.iter().find(|v| v["type"] == "large_request_sending") else {
                return false;
            };
            let expected = sending["expected_payloads"].as_u64().unwrap() as usize;
            evs.iter().filter(|v| v["type"] == "daily").count() >= expected
        })
        .await;
    let evs = w.received.with_reference(&reference);
    assert!(evs.iter().any(|v| v["type"] == "large_request_processing"));
    let sending = evs
        .iter()
        .find(|v| v["type"] == "large_request_sending")
        .unwrap();
    let chunks: Vec<&Value> = evs.iter().filter(|v| v["type"] == "daily").collect();
    let records: usize = chunks
        .iter()
        .map(|c| c["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        sending["expected_payloads"].as_u64().unwrap() as usize,
        chunks.len()
    );
    assert_eq!(chunks.len(), records.div_ceil(10));
    assert!(chunks.iter().all(|c| {
        let n = c["data"].as_array().unwrap().len();
        (1..=10).contains(&n)
    }));
    let days: BTreeSet<String> = chunks
        .iter()
        .flat_map(|c| c["data"].as_array().unwrap().clone())
        .map(|d| day_of(&d))
        .collect();
    for d in &expected_days {
        assert!(days.contains(d), "daily {d} not delivered");
    }
    // every delivery of this request carried the same terra-reference
    let all_daily_with_other_ref = w
        .received
        .all()
        .iter()
        .filter(|(h, v)| v["type"] == "daily" && h.as_deref() != Some(reference.as_str()))
        .count();
    assert_eq!(all_daily_with_other_ref, 0);
    w.stop_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problem_json() {
    let mut w = world(10, 0).await;
    let user = connect(&w, 0, "err-user").await;
    let check = |res: reqwest::Response, status: u16| async move {
        assert_eq!(res.status(), status);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let v: Value = res.json().await.unwrap();
        (v["detail"].as_str().unwrap().to_string(), retry)
    };
    let q = |u: &str, s: &str, e: &str, sync: bool| {
        vec![
            ("user_id", u.to_string()),
            ("start_date", s.to_string()),
            ("end_date", e.to_string()),
            ("to_webhook", (!sync).to_string()),
        ]
    };
    let (d5, d1) = (days_ago(5).to_string(), days_ago(1).to_string());
    // no key
    let res = http()
        .get(format!("{}/v2/sleep", w.base))
        .query(&q(&user, &d5, &d1, true))
        .send()
        .await
        .unwrap();
    check(res, 401).await;
    // unknown user
    let (d, _) = check(
        get(&w, "/v2/sleep", &q("nobody", &d5, &d1, true)).await,
        404,
    )
    .await;
    assert!(d.contains("user not found"), "{d}");
    // start after end
    let (d, _) = check(get(&w, "/v2/sleep", &q(&user, &d1, &d5, true)).await, 400).await;
    assert!(d.contains("after"), "{d}");
    // unparsable: the accepted formats are named
    let (d, _) = check(
        get(&w, "/v2/daily", &q(&user, "yesterday", &d1, true)).await,
        400,
    )
    .await;
    assert!(
        d.contains("YYYY-MM-DD") && d.contains("Unix seconds"),
        "{d}"
    );
    // over 5 years
    let (d, _) = check(
        get(&w, "/v2/daily", &q(&user, "2015-01-01", &d1, false)).await,
        400,
    )
    .await;
    assert!(d.contains("5 years"), "{d}");
    // synchronous over 28 days
    let (d, _) = check(
        get(
            &w,
            "/v2/daily",
            &q(&user, &days_ago(40).to_string(), &d1, true),
        )
        .await,
        400,
    )
    .await;
    assert!(d.contains("to_webhook=true"), "{d}");
    // unix seconds are accepted
    let s = (Utc::now() - chrono::Duration::days(3))
        .timestamp()
        .to_string();
    assert_eq!(
        get(&w, "/v2/sleep", &q(&user, &s, &d1, true))
            .await
            .status(),
        200
    );

    // 429 from Oura → 429 with Retry-After
    w.sim
        .sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(1),
            retry_after_secs: Some(7),
            ..Default::default()
        })
        .unwrap();
    let (d, retry) = check(
        get(&w, "/v2/activity", &q(&user, &d5, &d1, true)).await,
        429,
    )
    .await;
    assert_eq!(retry.as_deref(), Some("7"), "{d}");

    // 403: a user whose token lacks the workout scope
    let t = w
        .sim
        .sim
        .issue_token(2, &["extapi:daily", "extapi:personal"])
        .unwrap();
    let info: Value = http()
        .get(format!(
            "{}/v2/usercollection/personal_info",
            w.sim.base_url
        ))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store = w.connector.store();
    let scoped = "scoped-user-1";
    store
        .oura_create_pending_user(scoped, Some("scoped"), None, None)
        .await
        .unwrap();
    let cipher = w.connector.cipher();
    store
        .oura_connect_user(
            scoped,
            info["id"].as_str().unwrap(),
            &OuraTokens {
                access_token: cipher.encrypt(&t.access_token),
                refresh_token: cipher.encrypt(&t.refresh_token),
                expires_at: manifold_core::store::now_ms() + 3_600_000,
                scopes: Some(t.scope.clone()),
            },
        )
        .await
        .unwrap();
    let (d, _) = check(
        get(&w, "/v2/activity", &q(scoped, &d5, &d1, true)).await,
        403,
    )
    .await;
    assert!(d.contains("extapi:workout"), "{d}");
    // the granted scope works for the same user
    assert_eq!(
        get(&w, "/v2/sleep", &q(scoped, &d5, &d1, true))
            .await
            .status(),
        200
    );
    w.stop_node().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_backfills_the_last_backfill_days() {
    let mut w = world(40, 28).await;
    let user = connect(&w, 0, "bf-user").await;
    let (from, to) = (days_ago(27), today());
    let expected_sleep = real_sleep_ids(&sim_list(&w, 0, "sleep", from, to).await);
    let expected_days: BTreeSet<String> = sim_list(&w, 0, "daily_activity", from, to)
        .await
        .iter()
        .map(|d| d["day"].as_str().unwrap().to_string())
        .collect();
    let older = real_sleep_ids(&sim_list(&w, 0, "sleep", days_ago(39), days_ago(28)).await);
    let sleep_ids = |r: &Received| -> BTreeSet<String> {
        r.all()
            .iter()
            .filter(|(h, v)| {
                h.is_none() && v["type"] == "sleep" && v["user"]["user_id"] == user.as_str()
            })
            .filter_map(|(_, v)| {
                v["data"][0]["metadata"]["summary_id"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    let daily_days = |r: &Received| -> BTreeSet<String> {
        r.all()
            .iter()
            .filter(|(_, v)| v["type"] == "daily")
            .map(|(_, v)| day_of(&v["data"][0]))
            .collect()
    };
    w.received
        .wait_until("the backfilled sleep and daily", |r| {
            sleep_ids(r).len() >= expected_sleep.len() && daily_days(r).len() >= expected_days.len()
        })
        .await;
    assert_eq!(sleep_ids(&w.received), expected_sleep);
    assert_eq!(daily_days(&w.received), expected_days);
    // nothing older than backfill_days
    assert!(older.is_disjoint(&sleep_ids(&w.received)));
    // other types came too: activity and the athlete
    w.received
        .wait_until("athlete", |r| {
            r.all().iter().any(|(_, v)| v["type"] == "athlete")
        })
        .await;
    w.stop_node().await;
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_manifold")
}

fn parse_summary(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .find(|l| l.starts_with("backfill finished:"))
        .unwrap_or_else(|| panic!("no summary in {stdout:?}"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn done_days(store: &Store, user: &str, from: NaiveDate, to: NaiveDate) -> usize {
    let mut n = 0;
    for t in ["sleep", "daily"] {
        n += store
            .backfill_done_days(user, t, &from.to_string(), &to.to_string())
            .await
            .unwrap()
            .len();
    }
    n
}

async fn deliveries(store: &Store) -> usize {
    store
        .list_deliveries(&DeliveryFilter {
            status: None,
            destination: None,
            payload_id: None,
            limit: 1_000_000,
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_cli_resumes_after_a_kill_and_is_idempotent() {
    let mut w = world(45, 0).await;
    let user = connect(&w, 0, "cli-user").await;
    w.stop_node().await;
    let db = w.dir.path().join("manifold.db");
    let cfg = w.dir.path().join("manifold.toml");
    std::fs::write(
        &cfg,
        config_text(&db, &w.base, &w.sim.base_url, &w.receiver_url, 0),
    )
    .unwrap();
    let (from, to) = (days_ago(42), days_ago(1));
    let total = 2 * ((to - from).num_days() as usize + 1);
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "backfill".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--user".into(),
            "cli-user".into(), // the reference id works too
            "--from".into(),
            from.to_string(),
            "--to".into(),
            to.to_string(),
            "--types".into(),
            "sleep,daily".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // 1. slow Oura, kill the run once some days are finished
    w.sim
        .sim
        .update_faults(FaultUpdate {
            latency_ms: Some(250),
            ..Default::default()
        })
        .unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args(args(&[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = Store::open(&format!("sqlite://{}", db.display()), 2)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = done_days(&store, &user, from, to).await;
        if n >= 7 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {n} days done");
        assert!(child.try_wait().unwrap().is_none(), "finished too early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let before = done_days(&store, &user, from, to).await;
    assert!(before < total, "killed after everything was done");
    w.sim
        .sim
        .update_faults(FaultUpdate {
            clear: true,
            ..Default::default()
        })
        .unwrap();

    // 2. rerun: finished days are skipped, the rest is done
    let out = tokio::process::Command::new(bin())
        .args(args(&[]))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("payloads queued") && stderr.contains("ETA"),
        "{stderr}"
    );
    let s = parse_summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(s["days_skipped"].parse::<usize>().unwrap(), before);
    assert_eq!(s["days_done"].parse::<usize>().unwrap(), total - before);
    assert_eq!(done_days(&store, &user, from, to).await, total);
    let expected_sleep = real_sleep_ids(&sim_list(&w, 0, "sleep", from, to).await);
    assert!(!expected_sleep.is_empty());

    // 3. the same range again from scratch: identical records, no new payload versions
    let rows_before = deliveries(&store).await;
    let out = tokio::process::Command::new(bin())
        .args(args(&["--restart"]))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = parse_summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(s["days_done"].parse::<usize>().unwrap(), total);
    assert!(s["records"].parse::<usize>().unwrap() >= expected_sleep.len());
    assert_eq!(s["new_versions"], "0");
    assert_eq!(deliveries(&store).await, rows_before);
    store.close().await;
}

/// The same flows on PostgreSQL (the multi-node store): backfill after connect, progress rows,
/// a synchronous request, and a repeated backfill that commits nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_backfill_on_postgres() {
    use manifold_oura::history::{self, DayRange, Kind};
    let db = manifold_core::testdb::TempDatabase::create().await;
    let mut w = world_on(Some(&db.url), 20, 28).await;
    let user = connect(&w, 0, "pg-user").await;
    let (from, to) = (days_ago(27), today());
    let expected_sleep = real_sleep_ids(&sim_list(&w, 0, "sleep", from, to).await);
    w.received
        .wait_until("the backfilled sleep", |r| {
            r.all().iter().filter(|(_, v)| v["type"] == "sleep").count() >= expected_sleep.len()
        })
        .await;
    let res = get(
        &w,
        "/v2/sleep",
        &[
            ("user_id", user.clone()),
            ("start_date", days_ago(10).to_string()),
            ("end_date", today().to_string()),
            ("to_webhook", "false".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        real_sleep_ids(&sim_list(&w, 0, "sleep", days_ago(10), today()).await).len()
    );
    let row = w.connector.store().oura_user(&user).await.unwrap().unwrap();
    let range = DayRange {
        start: days_ago(15),
        end: days_ago(1),
    };
    let kinds = [Kind::Sleep, Kind::Daily, Kind::Activity];
    // (the backfill after connect may still run: it publishes the same records)
    let first = history::backfill(&w.connector, &row, &kinds, range, false, None, &NoObs)
        .await
        .unwrap();
    assert_eq!(first.days_done, 45);
    let done = w
        .connector
        .store()
        .backfill_done_days(
            &user,
            "daily",
            &range.start.to_string(),
            &range.end.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 15);
    let again = history::backfill(&w.connector, &row, &kinds, range, false, None, &NoObs)
        .await
        .unwrap();
    assert_eq!(again.records, first.records);
    assert_eq!(again.new_versions, 0);
    let resumed = history::backfill(&w.connector, &row, &kinds, range, true, None, &NoObs)
        .await
        .unwrap();
    assert_eq!((resumed.days_done, resumed.days_skipped), (0, 45));
    w.stop_node().await;
}

struct NoObs;
impl manifold_oura::history::FetchObserver for NoObs {}
impl manifold_oura::history::BackfillObserver for NoObs {}

// ------------------------------------------------------------ rate budget, 429, failures

/// (arrival, path, status) of every request through the [`start_proxy`] proxy.
type ProxyLog = Arc<Mutex<Vec<(Instant, String, u16)>>>;

/// A recording HTTP proxy in front of the simulator: what Oura would see, when.
async fn start_proxy(target: &str) -> (String, ProxyLog) {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let log: ProxyLog = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (target, l) = (target.to_string(), log.clone());
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (target, log, client) = (target.clone(), l.clone(), client.clone());
        async move {
            let at = Instant::now();
            let path = req.uri().path().to_string();
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let method = req.method().clone();
            let headers = req.headers().clone();
            let body = axum::body::to_bytes(req.into_body(), 1 << 24)
                .await
                .unwrap();
            let mut out = client.request(method, format!("{target}{pq}")).body(body);
            for (k, v) in headers.iter() {
                if k != "host" && k != "content-length" {
                    out = out.header(k, v);
                }
            }
            let res = out.send().await.unwrap();
            let status = res.status();
            log.lock().unwrap().push((at, path, status.as_u16()));
            let mut h = HeaderMap::new();
            for (k, v) in res.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    h.insert(k, v.clone());
                }
            }
            let body = res.bytes().await.unwrap();
            (status, h, body).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

/// Most requests in any interval of `span` (arrival times sorted).
fn max_in_span(times: &[Instant], span: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= span {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Two `manifold backfill` processes for two users on one store, in front of a recording proxy,
/// with a budget of 40 requests per 4 s: together they stay within it. (Each with a budget of
/// its own would send up to twice as much.)
async fn two_backfill_processes_share_the_budget(store_url: Option<String>) {
    let mut w = world_on(store_url.as_deref(), 45, 0).await;
    let a = connect(&w, 0, "budget-a").await;
    let b = connect(&w, 1, "budget-b").await;
    w.stop_node().await;
    let (proxy, log) = start_proxy(&w.sim.base_url).await;
    let url = store_url
        .unwrap_or_else(|| format!("sqlite://{}", w.dir.path().join("manifold.db").display()));
    let cfg = w.dir.path().join("budget.toml");
    std::fs::write(
        &cfg,
        config_text_url(
            &url,
            &w.base,
            &proxy,
            &w.receiver_url,
            0,
            "rate_limit = 40\nrate_window = \"4s\"",
        ),
    )
    .unwrap();
    let (from, to) = (days_ago(42), days_ago(1));
    let run = |user: &str| {
        tokio::process::Command::new(bin())
            .args([
                "backfill",
                "--config",
                &cfg.display().to_string(),
                "--user",
                user,
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
                "--types",
                "sleep,daily",
            ])
            .output()
    };
    let (ra, rb) = tokio::join!(run("budget-a"), run("budget-b"));
    for r in [ra.unwrap(), rb.unwrap()] {
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let store = Store::open(&url, 2).await.unwrap();
    for u in [&a, &b] {
        assert_eq!(done_days(&store, u, from, to).await, 2 * 42, "{u}");
    }
    store.close().await;
    let log = log.lock().unwrap().clone();
    let mut times: Vec<Instant> = log
        .iter()
        .filter(|(_, p, _)| p.starts_with("/v2/usercollection/"))
        .map(|(t, _, _)| *t)
        .collect();
    times.sort();
    assert!(log.iter().all(|(_, _, s)| *s != 429), "Oura answered 429");
    // The budget was what limited them: they needed several windows.
    assert!(times.len() > 2 * 40, "only {} requests", times.len());
    // At most 40 grants in any 4 s; counted over 3 s at the proxy, which leaves 1 s for the
    // time between a grant and the request's arrival.
    let in_3s = max_in_span(&times, Duration::from_secs(3));
    let in_4s = max_in_span(&times, Duration::from_secs(4));
    eprintln!(
        "two processes: {} data requests in {:.1}s; at most {in_3s} in any 3s, {in_4s} in any 4s",
        times.len(),
        (*times.last().unwrap() - times[0]).as_secs_f64()
    );
    assert!(
        in_3s <= 40,
        "{in_3s} requests within 3s: the budget is 40 per 4s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backfill_processes_share_the_budget_on_sqlite() {
    two_backfill_processes_share_the_budget(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backfill_processes_share_the_budget_on_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    two_backfill_processes_share_the_budget(Some(db.url.clone())).await;
}

/// A backfill held back by the live reserve (the bucket refills one token per 400 s) does not
/// stop a live notification: its document is fetched and delivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_fetches_proceed_while_a_backfill_waits_on_the_reserve() {
    use manifold_core::store::rate_budget::{Grant, Priority};
    use manifold_oura::history::{self, DayRange, Kind};
    let mut w = world_with(
        None,
        20,
        0,
        "rate_limit = 100\nrate_window = \"10h\"\nlive_reserve = 0.2",
    )
    .await;
    let user = connect(&w, 0, "reserve-user").await;
    w.connector
        .sync_subscriptions(Duration::from_secs(86_400))
        .await
        .unwrap();
    // Background work uses the bucket down to the reserve (2 of 10 tokens).
    let budget = w.connector.client().budget().unwrap().clone();
    while let Grant::Granted { .. } = budget.try_acquire(Priority::Background).await.unwrap() {}
    let left = budget.state().await.unwrap().tokens;
    assert!((2.0..3.0).contains(&left), "{left}");
    // A backfill now waits for background tokens.
    let row = w.connector.store().oura_user(&user).await.unwrap().unwrap();
    let range = DayRange {
        start: days_ago(13),
        end: today(),
    };
    let conn = w.connector.clone();
    let task = tokio::spawn(async move {
        history::backfill(&conn, &row, &[Kind::Sleep], range, false, None, &NoObs).await
    });
    // A live notification arrives: it is fetched from the reserve and delivered.
    let object = w
        .sim
        .sim
        .sync(oura_sim::SyncRequest {
            user: json!(0),
            data_type: "sleep".into(),
            day: None,
            operation: Some("create".into()),
            object_id: None,
        })
        .await
        .unwrap()
        .event
        .object_id;
    w.received
        .wait_until("the live sleep", |r| {
            r.all().iter().any(|(h, v)| {
                h.is_none()
                    && v["type"] == "sleep"
                    && (v["data"][0]["metadata"]["summary_id"] == object.as_str()
                        || v["deleted"][0]["summary_id"] == object.as_str())
            })
        })
        .await;
    // ... while the backfill has not fetched a single day.
    assert!(!task.is_finished(), "the backfill got past the reserve");
    let done = w
        .connector
        .store()
        .backfill_done_days(
            &user,
            "sleep",
            &range.start.to_string(),
            &range.end.to_string(),
        )
        .await
        .unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert!(
        budget.state().await.unwrap().tokens < left - 0.5,
        "the live fetch took a token"
    );
    task.abort();
    w.stop_node().await;
}

async fn request_status(w: &World, reference: &str) -> Value {
    let res = get(w, &format!("/v2/requests/{reference}"), &[]).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn wait_status(w: &World, reference: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = request_status(w, reference).await;
        if v["status"] == status {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "request {reference} never became {status}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Oura's 429 during an asynchronous request: `rate_limit_hit` (Terra's shape, the request's
/// `terra-reference`) comes first, then the data with the same reference; the request row
/// shows the hit and ends `completed`. A backfill that hits it says so too (no reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_hit_then_the_data_with_the_same_reference() {
    use manifold_oura::history::{self, DayRange, Kind};
    let mut w = world(12, 0).await;
    let user = connect(&w, 0, "rl-user").await;
    let (from, to) = (days_ago(6), days_ago(1));
    let expected = real_sleep_ids(&sim_list(&w, 0, "sleep", from, to).await);
    assert!(!expected.is_empty());
    w.sim
        .sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(1),
            retry_after_secs: Some(2),
            ..Default::default()
        })
        .unwrap();
    let asked = Utc::now();
    let res = get(
        &w,
        "/v2/sleep",
        &[
            ("user_id", user.clone()),
            ("start_date", from.to_string()),
            ("end_date", to.to_string()),
            ("to_webhook", "true".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let reference = body["reference"].as_str().unwrap().to_string();
    let ids = |r: &Received| -> BTreeSet<String> {
        r.with_reference(&reference)
            .iter()
            .filter(|v| v["type"] == "sleep")
            .flat_map(|v| v["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|i| i["metadata"]["summary_id"].as_str().map(str::to_string))
            .collect()
    };
    w.received
        .wait_until("the sleep data after the 429", |r| ids(r) == expected)
        .await;
    let got = w.received.with_reference(&reference);
    assert_eq!(got[0]["type"], "rate_limit_hit", "first: {}", got[0]);
    let hit = &got[0];
    let keys: BTreeSet<&str> = hit
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "type",
            "user",
            "start_date",
            "end_date",
            "retrying_at",
            "message"
        ])
    );
    assert_eq!(
        hit["message"],
        "Rate limit reached whilst processing async query"
    );
    assert_eq!(hit["user"]["user_id"], user.as_str());
    assert_eq!(hit["user"]["provider"], "OURA");
    let ts = |k: &str| chrono::DateTime::parse_from_rfc3339(hit[k].as_str().unwrap()).unwrap();
    assert_eq!(ts("start_date").date_naive(), from);
    assert_eq!(ts("end_date").date_naive(), to);
    assert!(
        ts("retrying_at") > asked,
        "retrying_at is after the request"
    );
    assert_eq!(
        got.iter().filter(|v| v["type"] == "rate_limit_hit").count(),
        1
    );
    assert!(got[1..].iter().all(|v| v["type"] == "sleep"));
    let st = wait_status(&w, &reference, "completed").await;
    assert_eq!(st["rate_limit_hits"], 1);
    assert_eq!(st["records"].as_u64().unwrap() as usize, expected.len());
    let sent = got.len() as u64 - 1;
    assert_eq!(st["payloads_sent"].as_u64(), Some(sent));
    assert_eq!(st["expected_payloads"].as_u64(), Some(sent));
    assert!(st["error"].is_null());
    assert_eq!(st["user"]["user_id"], user.as_str());
    // every payload with the reference (the rate_limit_hit too) was delivered to `app`
    assert_eq!(
        st["deliveries"]["app"]["delivered"].as_u64(),
        Some(sent + 1)
    );

    // a backfill hitting the limit says so (for its whole range), then finishes
    w.sim
        .sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(1),
            retry_after_secs: Some(1),
            ..Default::default()
        })
        .unwrap();
    let row = w.connector.store().oura_user(&user).await.unwrap().unwrap();
    let range = DayRange {
        start: days_ago(10),
        end: days_ago(8),
    };
    let stats = history::backfill(
        &w.connector,
        &row,
        &[Kind::Daily],
        range,
        false,
        None,
        &NoObs,
    )
    .await
    .unwrap();
    assert_eq!(stats.days_done, 3);
    w.received
        .wait_until("the backfill's rate_limit_hit", |r| {
            r.all()
                .iter()
                .any(|(h, v)| h.is_none() && v["type"] == "rate_limit_hit")
        })
        .await;
    let (_, hit) = w
        .received
        .all()
        .into_iter()
        .find(|(h, v)| h.is_none() && v["type"] == "rate_limit_hit")
        .unwrap();
    assert_eq!(
        &hit["start_date"].as_str().unwrap()[..10],
        range.start.to_string()
    );
    assert_eq!(
        &hit["end_date"].as_str().unwrap()[..10],
        range.end.to_string()
    );
    w.stop_node().await;
}

/// An asynchronous request that fails for good (the user did not grant the scope) is not only
/// logged: `GET /v2/requests/{reference}` says `failed` with the 403 and the missing scope, and
/// the failed requests of the user are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_asynchronous_request_shows_its_reason() {
    let mut w = world(10, 0).await;
    connect(&w, 0, "ok-user").await;
    let t = w
        .sim
        .sim
        .issue_token(2, &["extapi:daily", "extapi:personal"])
        .unwrap();
    let info: Value = http()
        .get(format!(
            "{}/v2/usercollection/personal_info",
            w.sim.base_url
        ))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store = w.connector.store();
    let scoped = "scoped-async-user";
    store
        .oura_create_pending_user(scoped, Some("scoped"), None, None)
        .await
        .unwrap();
    let cipher = w.connector.cipher();
    store
        .oura_connect_user(
            scoped,
            info["id"].as_str().unwrap(),
            &OuraTokens {
                access_token: cipher.encrypt(&t.access_token),
                refresh_token: cipher.encrypt(&t.refresh_token),
                expires_at: manifold_core::store::now_ms() + 3_600_000,
                scopes: Some(t.scope.clone()),
            },
        )
        .await
        .unwrap();
    let res = get(
        &w,
        "/v2/activity",
        &[
            ("user_id", scoped.to_string()),
            ("start_date", days_ago(5).to_string()),
            ("end_date", days_ago(1).to_string()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200, "accepted: the failure comes later");
    let body: Value = res.json().await.unwrap();
    let reference = body["reference"].as_str().unwrap().to_string();
    let st = wait_status(&w, &reference, "failed").await;
    assert_eq!(st["error"]["status"], 403);
    assert_eq!(st["error"]["title"], "Forbidden");
    let detail = st["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("extapi:workout"), "{detail}");
    assert_eq!(st["type"], "activity");
    assert_eq!(st["user"]["user_id"], scoped);
    assert!(st["finished_at"].is_string());
    assert_eq!(st["payloads_sent"], 0);
    assert_eq!(st["deliveries"], json!({}));
    assert!(w.received.with_reference(&reference).is_empty());
    // listed among the user's failed requests
    let res = get(
        &w,
        "/v2/requests",
        &[("user_id", scoped.to_string()), ("status", "failed".into())],
    )
    .await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    let refs: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, vec![reference.as_str()]);
    // unknown references and statuses are problems; the key is required
    let res = get(&w, "/v2/requests/nope", &[]).await;
    assert_eq!(res.status(), 404);
    let res = get(&w, "/v2/requests", &[("status", "lost".into())]).await;
    assert_eq!(res.status(), 400);
    let res = http()
        .get(format!("{}/v2/requests/{reference}", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    w.stop_node().await;
}
