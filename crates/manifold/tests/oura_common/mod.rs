//! Shared pieces of the Oura polling, reconcile and kill -9 tests: the Oura simulator
//! (`oura-sim`, an outside system sharing no code with Manifold's client), a webhook receiver
//! recording every payload, an in-process Manifold node, the connect flow through the real
//! HTTP redirects, and an independent client for the simulator's API.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use manifold_core::{Config, Engine, Registry};
use manifold_oura::connector::Connector;
use manifold_server::{AppState, router};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub const API_KEY: &str = "test-api-key";
pub const SECRET: &str = "sim-client-secret";
pub const VERIFY: &str = "verify-me-token";
// base64 of 32 bytes 0x01..0x20
pub const TOKEN_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------ receiver

/// Every JSON body the webhook destination delivered, in arrival order.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.all().into_iter().rev().find(|v| f(v)) {
                return v;
            }
            if Instant::now() > deadline {
                let types: Vec<String> = self
                    .all()
                    .iter()
                    .map(|v| v["type"].as_str().unwrap_or("?").to_string())
                    .collect();
                panic!("timed out waiting for {what}; received types: {types:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn count(&self, f: impl Fn(&Value) -> bool) -> usize {
        self.all().iter().filter(|v| f(v)).count()
    }
}

async fn hook(State(r): State<Received>, body: Bytes) -> &'static str {
    match serde_json::from_slice(&body) {
        Ok(v) => r.0.lock().unwrap().push(v),
        Err(e) => eprintln!("receiver: unparsable body ({e})"),
    }
    "ok"
}

pub async fn start_receiver() -> (String, Received) {
    let r = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

pub fn is_type(v: &Value, t: &str) -> bool {
    v["type"] == t
}

// ---------------------------------------------------------------------- node

/// A config with `[oura]` pointing at the simulator, one webhook destination, and
/// `extra_oura` lines appended to the `[oura]` section.
pub fn config_text(
    listen: &str,
    store_url: &str,
    public: &str,
    sim: &str,
    receiver: &str,
    extra_oura: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public}"
api_keys = ["{API_KEY}"]

[store]
url = "{store_url}"
poll_interval = "100ms"
lease = "10s"

[oura]
client_id = "sim-client-id"
client_secret = "{SECRET}"
verification_token = "{VERIFY}"
api_base = "{sim}"
auth_base = "{sim}"
token_keys = ["{TOKEN_KEY}"]
sync_subscriptions = false
{extra_oura}

[[destinations]]
name = "app"
type = "webhook"
url = "{receiver}"
signing_secret = "whsec-test"
allow_private_network = true
retry = {{ max_attempts = 5, initial_backoff = "1s", max_backoff = "2s" }}
"#
    )
}

/// Manifold in-process: engine, connector (fetch worker + scheduler) and HTTP router.
pub struct Node {
    pub base: String,
    pub engine: Engine,
    pub connector: Arc<Connector>,
    pub stop: watch::Sender<bool>,
    pub workers: JoinSet<()>,
    pub server: tokio::task::JoinHandle<()>,
}

pub async fn start_node(store_url: &str, sim: &str, receiver: &str, extra_oura: &str) -> Node {
    serve("oura-test.toml", true, |base| {
        config_text("127.0.0.1:0", store_url, base, sim, receiver, extra_oura)
    })
    .await
}

/// An in-process node: binds a port, builds the engine and the Oura connector from the config
/// text `text` makes for the node's public base URL (named `file` in errors), starts the
/// delivery workers (and the connector's workers when `run_worker`) and serves the HTTP API.
pub async fn serve(file: &str, run_worker: bool, text: impl FnOnce(&str) -> String) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut registry = Registry::new();
    registry.register(manifold_webhook::WebhookFactory);
    let text = text(&base);
    let config = Config::from_str(&text, file, &registry, &|_| None)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let engine = Engine::from_config(&config).await.unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut workers = engine.start(stop_rx.clone());
    let connector = Connector::new(engine.clone(), &config).unwrap();
    if run_worker {
        workers.spawn(connector.clone().run(stop_rx.clone()));
    }
    let state = AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
        oura: Some(connector.clone()),
    };
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|v| *v).await;
            })
            .await;
    });
    Node {
        base,
        engine,
        connector,
        stop,
        workers,
        server,
    }
}

impl Node {
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.workers.join_next().await.is_some() {}
        let _ = self.server.await;
        self.engine.store().close().await;
    }
}

// ------------------------------------------------------------------- connect

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {} answer", res.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Connect simulator user `index` through the real redirects: Manifold authenticateUser →
/// sim /oauth/authorize → Manifold /oura/callback → success URL. Returns Manifold's user id.
pub async fn connect_at(base: &str, index: usize, reference: &str) -> String {
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
    let user_id = body["user_id"].as_str().unwrap().to_string();
    let auth_url = body["auth_url"].as_str().unwrap().to_string();
    let res = c
        .get(format!("{auth_url}&user={index}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "sim authorize");
    let res = c.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), 302, "callback: {}", res.text().await.unwrap());
    assert!(location(&res).starts_with("https://app.example.com/connected?"));
    user_id
}

// ---------------------------------------------------------- simulator client

/// An access token for sim user `index` issued directly by the simulator (not Manifold's).
pub fn sim_token(sim: &oura_sim::RunningSim, index: usize) -> String {
    sim.sim.issue_token(index, &[]).unwrap().access_token
}

/// Every item of a list route, read straight from the simulator (all pages).
pub async fn sim_list(
    sim: &oura_sim::RunningSim,
    token: &str,
    collection: &str,
    params: &[(&str, String)],
) -> Vec<Value> {
    let c = http();
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut q: Vec<(&str, String)> = params.to_vec();
        if let Some(n) = &next {
            q.push(("next_token", n.clone()));
        }
        let v: Value = c
            .get(sim.url(&format!("/v2/usercollection/{collection}")))
            .bearer_auth(token)
            .query(&q)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_token"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => return out,
        }
    }
}

/// One document, read straight from the simulator.
pub async fn sim_doc(sim: &oura_sim::RunningSim, token: &str, collection: &str, id: &str) -> Value {
    http()
        .get(sim.url(&format!("/v2/usercollection/{collection}/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Wait until `f` returns `Some`, polling every 100 ms.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
