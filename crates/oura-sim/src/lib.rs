//! `oura-sim`: an Oura API v2 simulator (OAuth2, `/v2/usercollection/*`, webhook subscriptions
//! with signed deliveries, rate limits, error injection) for tests, demos and benchmarks.
//!
//! It is an *outside system*: it shares no code with Manifold's Oura client.
//!
//! ```no_run
//! # async fn demo() {
//! let sim = oura_sim::start(oura_sim::SimConfig::default()).await;
//! println!("{}", sim.base_url);
//! # }
//! ```

mod api;
pub mod data;
mod oauth;
pub mod rng;
mod state;
pub mod types;
mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use data::UserProfile;
use state::{DataStore, Shared};
pub use state::{Event, FaultUpdate, Faults, Operation, TokenResponse};
pub use types::DocType;

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Number of simulated users generated at start.
    pub users: usize,
    /// Days of history per user, ending at `end_day`.
    pub days: u32,
    /// Seed: documents are a pure function of `(seed, user, type, day, index, revision)`.
    pub seed: u64,
    /// Last day with data (default: yesterday, UTC).
    pub end_day: Option<NaiveDate>,
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs; empty accepts any.
    pub redirect_uris: Vec<String>,
    /// Access-token lifetime (`expires_in`).
    pub access_token_ttl: Duration,
    /// Page size of document lists.
    pub page_size: usize,
    /// Page size of time series (heartrate, ring_battery_level).
    pub timeseries_page_size: usize,
    /// Requests per user per window before 429.
    pub rate_limit: u32,
    pub rate_limit_window: Duration,
    /// Webhook subscription lifetime (`expiration_time` = now + this).
    pub subscription_ttl: Duration,
    /// Delivery attempts per notification (first try + retries).
    pub delivery_attempts: u32,
    /// First retry delay; doubles per retry, capped at 30 s.
    pub delivery_backoff: Duration,
    /// Per-attempt timeout for deliveries and the verification GET.
    pub delivery_timeout: Duration,
    /// Background ticker: one random sync per interval.
    pub sync_interval: Option<Duration>,
    /// Initial fault knobs.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            port: 0,
            users: 3,
            days: 30,
            seed: 42,
            end_day: None,
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            redirect_uris: Vec::new(),
            access_token_ttl: Duration::from_secs(86_400),
            page_size: 50,
            timeseries_page_size: 1000,
            rate_limit: 5000,
            rate_limit_window: Duration::from_secs(300),
            subscription_ttl: Duration::from_secs(90 * 86_400),
            delivery_attempts: 11,
            delivery_backoff: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(10),
            sync_interval: None,
            faults: Faults::default(),
        }
    }
}

/// Handle to the simulator state (cheap to clone).
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

/// A started simulator. Dropping it does not stop the server; call [`RunningSim::shutdown`].
pub struct RunningSim {
    /// e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base_url: String,
    pub addr: SocketAddr,
    pub sim: Sim,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
}

impl RunningSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        let _ = (&mut self.server).await;
    }
}

/// Start the simulator on 127.0.0.1:`config.port`. Panics if the port cannot be bound.
pub async fn start(config: SimConfig) -> RunningSim {
    try_start(config).await.expect("bind oura-sim")
}

pub async fn try_start(config: SimConfig) -> std::io::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config);
    let router = sim.router();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    let ticker = sim.shared.config.sync_interval.map(|every| {
        let sim = sim.clone();
        tokio::spawn(async move { sim.run_ticker(every).await })
    });
    Ok(RunningSim {
        base_url: format!("http://{addr}"),
        addr,
        sim,
        shutdown: Some(tx),
        server,
        ticker,
    })
}

/// Body of `POST /_sim/sync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    /// User index (`0`) or Oura user id.
    pub user: Value,
    /// Webhook data type (`sleep`, `vo2_max`, …; the path spelling `vO2_max` is accepted too).
    pub data_type: String,
    #[serde(default)]
    pub day: Option<NaiveDate>,
    /// `create` (default), `update`, `delete`.
    #[serde(default)]
    pub operation: Option<String>,
    /// Target a specific document for update/delete.
    #[serde(default)]
    pub object_id: Option<String>,
}

/// Result of a simulated sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncOutcome {
    pub event: Event,
    /// Number of subscriptions a notification was queued for.
    pub notified_subscriptions: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimError {
    pub status: u16,
    pub detail: String,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}
impl std::error::Error for SimError {}

fn err(status: u16, detail: impl Into<String>) -> SimError {
    SimError {
        status,
        detail: detail.into(),
    }
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let end_day = config
            .end_day
            .unwrap_or_else(|| Utc::now().date_naive() - chrono::Duration::days(1));
        let data = DataStore::new(config.seed, config.users, config.days, end_day);
        let http = reqwest::Client::builder()
            .timeout(config.delivery_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Sim {
            shared: Arc::new(Shared {
                faults: Mutex::new(config.faults.clone()),
                config,
                data: RwLock::new(data),
                auth: Mutex::new(Default::default()),
                subs: Mutex::new(Vec::new()),
                deliveries: Mutex::new(Default::default()),
                delivery_seq: Default::default(),
                requests: Default::default(),
                request_log: Default::default(),
                http,
            }),
        }
    }

    /// The axum router (to embed the simulator in another server).
    pub fn router(&self) -> Router {
        Router::new()
            .merge(oauth::routes())
            .merge(api::routes())
            .merge(webhook::routes())
            .merge(api::control_routes())
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                api::log_request,
            ))
            .with_state(self.shared.clone())
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn users(&self) -> Vec<UserProfile> {
        let d = self.shared.data.read().expect("lock");
        d.users.iter().map(|u| u.profile.clone()).collect()
    }

    pub fn add_users(&self, n: usize) -> Vec<UserProfile> {
        self.shared.data.write().expect("lock").add_users(n)
    }

    /// Issue tokens directly (as if the user completed OAuth consent). `scopes` may use legacy
    /// or `extapi:` names; empty = all scopes.
    pub fn issue_token(&self, user: usize, scopes: &[&str]) -> Result<TokenResponse, SimError> {
        if user >= self.shared.data.read().expect("lock").users.len() {
            return Err(err(404, "unknown user"));
        }
        let scopes = oauth::parse_scopes(&scopes.join(" ")).map_err(|s| err(400, s))?;
        let mut auth = self.shared.auth.lock().expect("lock");
        let g = auth.new_grant(user, &self.shared.config.client_id, scopes);
        Ok(auth.issue(g, self.shared.config.access_token_ttl.as_secs() as i64))
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().expect("lock").clone()
    }

    pub fn update_faults(&self, u: FaultUpdate) -> Result<Faults, SimError> {
        api::apply_fault_update(&self.shared, u).map_err(|(s, d)| err(s, d))
    }

    /// Apply a simulated sync and queue signed notifications to matching subscriptions.
    pub async fn sync(&self, req: SyncRequest) -> Result<SyncOutcome, SimError> {
        sync_impl(&self.shared, req, true)
    }

    /// Apply a simulated sync WITHOUT notifying anyone, as when Oura gave up delivering the
    /// notification (it stops after about an hour of failures): only polling or a reconcile
    /// can find the change. Also `POST /_sim/sync?notify=false`.
    pub async fn sync_silently(&self, req: SyncRequest) -> Result<SyncOutcome, SimError> {
        sync_impl(&self.shared, req, false)
    }

    /// `METHOD /path?query` of recent `/v2/*` requests, oldest first (also
    /// `GET /_sim/requests`).
    pub fn request_log(&self) -> Vec<String> {
        self.shared
            .request_log
            .lock()
            .expect("lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Snapshot of users, grants, subscriptions, faults and recent deliveries.
    pub fn state(&self) -> Value {
        api::state_json(&self.shared)
    }

    /// Recent webhook delivery records (newest last).
    pub fn deliveries(&self) -> Vec<Value> {
        let d = self.shared.deliveries.lock().expect("lock");
        d.iter()
            .map(|r| serde_json::to_value(r).expect("json"))
            .collect()
    }

    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    async fn run_ticker(&self, every: Duration) {
        let mut n: u64 = 0;
        let mut iv = tokio::time::interval(every);
        iv.tick().await;
        loop {
            iv.tick().await;
            n += 1;
            let (users, seed) = {
                let d = self.shared.data.read().expect("lock");
                (d.users.len(), d.seed)
            };
            if users == 0 {
                continue;
            }
            let mut r = rng::Rng::from_key(&format!("{seed}/tick/{n}"));
            let user = r.range(0, users as i64 - 1);
            let t = *r.pick(&DocType::ALL);
            let x = r.f64();
            let op = if x < 0.6 {
                "update"
            } else if x < 0.9 {
                "create"
            } else {
                "delete"
            };
            let req = SyncRequest {
                user: json!(user),
                data_type: t.webhook_name().to_string(),
                day: None,
                operation: Some(op.to_string()),
                object_id: None,
            };
            if let Err(e) = sync_impl(&self.shared, req, true) {
                tracing::debug!(error = %e, "ticker sync skipped");
            }
        }
    }
}

pub(crate) fn sync_impl(
    shared: &Arc<Shared>,
    req: SyncRequest,
    notify: bool,
) -> Result<SyncOutcome, SimError> {
    let t = DocType::from_webhook_name(&req.data_type)
        .ok_or_else(|| err(422, format!("unknown data_type {}", req.data_type)))?;
    let op = match req.operation.as_deref() {
        None => Operation::Create,
        Some(s) => Operation::parse(s).ok_or_else(|| err(422, format!("unknown operation {s}")))?,
    };
    let user_ref = match &req.user {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(err(422, "user must be an index or an Oura user id")),
    };
    let (user, object_id, user_id) = {
        let mut d = shared.data.write().expect("lock");
        let user = d
            .resolve_user(&user_ref)
            .ok_or_else(|| err(404, format!("unknown user {user_ref}")))?;
        let oid = d
            .apply_sync(user, t, op, req.day, req.object_id.as_deref())
            .map_err(|(s, m)| err(s, m))?;
        (user, oid, d.users[user].profile.id.clone())
    };
    let event = Event {
        event_type: op.as_str().to_string(),
        data_type: t.webhook_name().to_string(),
        object_id,
        event_time: data::fmt_utc(Utc::now()),
        user_id,
    };
    let n = if notify {
        webhook::dispatch(shared, &event, user, t)
    } else {
        0
    };
    Ok(SyncOutcome {
        event,
        notified_subscriptions: n,
    })
}
