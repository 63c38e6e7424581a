//! Shared pieces of the end-to-end tests: a real HTTP receiver whose behaviour the test steers,
//! and helpers to run `manifold serve` as a child process.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::process::{Child, Command};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub trace_id: String,
    pub signature: String,
    pub event_key: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// What the receiver answers.
#[derive(Clone)]
pub enum Behaviour {
    Ok,
    /// Fail this share of requests with 500, at random.
    FailRandomly(f64),
    /// Answer each status in turn, then 200 forever.
    Script(Vec<(u16, Option<&'static str>)>),
    /// Answer 200 after a delay.
    Slow(Duration),
    Always(u16),
}

pub struct ReceiverState {
    pub behaviour: Behaviour,
    pub log: Vec<Received>,
    script_pos: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            behaviour,
            log: Vec::new(),
            script_pos: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", post(handle))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn set(&self, b: Behaviour) {
        let mut s = self.state.lock().unwrap();
        s.behaviour = b;
        s.script_pos = 0;
    }

    pub fn log(&self) -> Vec<Received> {
        self.state.lock().unwrap().log.clone()
    }

    /// Distinct event keys that were answered 2xx.
    pub fn delivered_keys(&self) -> HashMap<String, Vec<Received>> {
        let mut m: HashMap<String, Vec<Received>> = HashMap::new();
        for r in self.log() {
            if (200..300).contains(&r.status) {
                m.entry(r.event_key.clone()).or_default().push(r);
            }
        }
        m
    }

    pub async fn wait_for_delivered(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.delivered_keys().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

async fn handle(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, retry_after, delay) = {
        let mut s = state.lock().unwrap();
        let pos = s.script_pos;
        let (status, ra, delay) = match &s.behaviour {
            Behaviour::Ok => (200, None, None),
            Behaviour::FailRandomly(p) => (
                if rand::random::<f64>() < *p { 500 } else { 200 },
                None,
                None,
            ),
            Behaviour::Script(list) => match list.get(pos) {
                Some((st, ra)) => (*st, *ra, None),
                None => (200, None, None),
            },
            Behaviour::Slow(d) => (200, None, Some(*d)),
            Behaviour::Always(st) => (*st, None, None),
        };
        s.script_pos += 1;
        (status, ra, delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let event_key = v["data"][0]["metadata"]["summary_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    state.lock().unwrap().log.push(Received {
        at: Instant::now(),
        trace_id: h("x-terra-trace-id"),
        signature: h("terra-signature"),
        event_key,
        status,
        body: body.to_vec(),
    });
    let mut res = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(ra) = retry_after {
        res.headers_mut()
            .insert("retry-after", HeaderValue::from_static(ra));
    }
    res
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file for `manifold serve` with one webhook destination.
pub fn write_config(
    dir: &Path,
    store_url: &str,
    port: u16,
    receiver: &str,
    extra_dest: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("manifold-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
api_keys = ["test-key"]

[store]
url = "{store_url}"
lease = "4s"
poll_interval = "200ms"

[[destinations]]
name = "app"
type = "webhook"
url = "{receiver}"
signing_secret = "test-secret"
allow_private_network = true
timeout = "2s"
concurrency = 16
{extra_dest}
"#
        ),
    )
    .unwrap();
    path
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("store/manifold.db").display())
}

/// `manifold serve` as a child process, ready when this returns.
pub async fn spawn_serve(config: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn manifold serve");
    let client = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("manifold serve did not become ready on port {port}");
}

pub fn sleep_event(key: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "sleep",
        "user": {"user_id": "user-1", "reference_id": "ref-1", "provider": "OURA"},
        "version": "2022-03-16",
        "data": [{"metadata": {"summary_id": key, "start_time": "2026-07-01T23:00:00.000000+01:00",
                  "end_time": "2026-07-02T07:00:00.000000+01:00", "upload_type": 1, "is_nap": false}}]
    })
}

/// POST an event until the server answers (the server may be down between a kill and a restart).
pub async fn publish_until_accepted(
    client: &reqwest::Client,
    ports: &[u16],
    event: &serde_json::Value,
) {
    let mut i = 0usize;
    loop {
        let port = ports[i % ports.len()];
        i += 1;
        match client
            .post(format!("http://127.0.0.1:{port}/v2/events"))
            .header("x-api-key", "test-key")
            .json(event)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 202 => return,
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => panic!(
                "publish refused: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sigterm(child: &Child) {
    let pid = child.id().expect("child pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn sigkill(child: &Child) {
    let pid = child.id().expect("child pid");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
