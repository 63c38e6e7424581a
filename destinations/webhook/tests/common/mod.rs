//! A real HTTP receiver on 127.0.0.1 (axum) that records what it gets and answers as told.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use manifold_core::destination::{BuildContext, Destination, DestinationFactory, SettingIssue};
use manifold_webhook::WebhookFactory;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &str) -> Self {
        self.body = b.into();
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;
type Running = Arc<Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>>;

struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<Script>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    running: Running,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Received {
        path: uri.path().to_string(),
        headers,
        body,
    };
    let script = shared.script.lock().unwrap().clone();
    let reply = script(&rec);
    shared.received.lock().unwrap().push(rec);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let app = Router::new().fallback(handle).with_state(shared);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

impl Receiver {
    /// Start on a free port; answers 200 to everything until told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(Arc::new(|_: &Received| Reply::status(200).body("ok"))),
        });
        let running = serve(listener, shared.clone()).await;
        Receiver {
            addr,
            shared,
            running: Arc::new(Mutex::new(Some(running))),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every request with `f(request)`.
    pub fn answer(&self, f: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.shared.script.lock().unwrap() = Arc::new(f);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Stop serving (listener dropped, idle connections closed).
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((tx, task)) = running {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Stop now and bind the same port again after `down`.
    pub async fn restart_after(&self, down: Duration) {
        self.stop().await;
        let (addr, shared, running) = (self.addr, self.shared.clone(), self.running.clone());
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            let listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let r = serve(listener, shared).await;
            *running.lock().unwrap() = Some(r);
        });
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Build through the factory, as the engine does, from a TOML snippet.
pub fn try_build(settings: &str) -> Result<Arc<dyn Destination>, Vec<SettingIssue>> {
    let table: toml::Table = settings.parse().expect("test TOML parses");
    WebhookFactory.build("test", table, &BuildContext::default())
}

pub fn build(settings: &str) -> Arc<dyn Destination> {
    match try_build(settings) {
        Ok(d) => d,
        Err(issues) => panic!("build failed: {issues:?}"),
    }
}
