//! The Oura connector: the connect flow (consent link, callback, deauth), token custody
//! (encrypted at rest, refreshed before expiry and on 401, one refresh at a time per user), the
//! intake of verified webhook notifications, and the fetch workers that turn notifications into
//! Terra events.
//!
//! Fetch worker, per claimed notification (leased like deliveries, so a crashed node's rows are
//! re-claimed):
//! 1. find the user by Oura user id (unknown → status `unknown_user`; paused or inactive →
//!    `skipped`);
//! 2. `delete` → drop the stored document and publish a tombstone (sleep/workout/session) or
//!    rebuild the day (day documents; a day tombstone per Terra type when nothing is left);
//! 3. otherwise `GET /v2/usercollection/{type}/{id}` (refresh and retry once on 401; 429 →
//!    rescheduled at `Retry-After` without using up an attempt; 5xx/transport → exponential
//!    backoff; 404 → `gone`; 403 → `connection_error` event + `forbidden`), store the raw
//!    document, map it and publish through [`Engine::publish_value`]: sleep → `sleep` (with the
//!    day's `daily_sleep`); day documents → the whole day rebuilt from every stored document of
//!    that user and day → `daily` (+ `body`, `menstruation` when they map); workout/session →
//!    `activity`; personal_info → `athlete`.
//! 4. The notification is marked `done` only after every publish committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use manifold_core::Engine;
use manifold_core::config::{Config, OuraConfig};
use manifold_core::store::{
    NewOuraNotification, OuraDocumentRow, OuraNotification, OuraTokens, OuraUserRow, Store,
    StoreError, now_ms,
};
use manifold_model::{Event, TerraUser, Timestamp};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::DayDocuments;
use crate::client::{OuraClient, OuraError, TokenResponse};
use crate::normalize::{self, DeleteTarget};
use crate::tokens::{StateError, StateSigner, TokenCipher};
use crate::types::{OuraDocument, canonical_data_type, parse_document};

/// Webhook `data_type`s we subscribe to and can fetch.
pub const WEBHOOK_DATA_TYPES: &[&str] = &[
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "daily_stress",
    "daily_resilience",
    "daily_cardiovascular_age",
    "vo2_max",
    "workout",
    "session",
    "enhanced_tag",
];

/// Webhook `event_type`s.
pub const WEBHOOK_EVENT_TYPES: &[&str] = &["create", "update", "delete"];

/// A verified notification body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct WebhookNotification {
    pub event_type: String,
    pub data_type: String,
    pub object_id: String,
    pub event_time: String,
    pub user_id: String,
}

/// What the intake did with a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// False when it was a duplicate of one already recorded.
    pub new: bool,
    /// `pending`, `unknown_user`, `unsupported`.
    pub status: String,
}

/// Where the callback sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// 302 to this URL.
    Redirect(String),
    /// Connected, but no success URL was given: show a plain confirmation.
    Connected { user_id: String },
    /// Failed and no failure URL was given.
    Failed { reason: String },
    /// The state is missing, forged or expired: 400.
    InvalidState(String),
}

/// Errors of the connect flow the HTTP layer reports.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The outcome of processing one notification.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Done,
    Retry {
        after: Duration,
        count: bool,
        error: String,
    },
    Final {
        status: &'static str,
        reason: String,
    },
}

/// Why a token could not be had.
#[derive(Debug)]
enum TokenFailure {
    /// Refresh refused: the user was paused and `access_revoked` emitted.
    Revoked,
    /// The user has no tokens (never connected / deleted).
    NoTokens,
    /// Try again later.
    Transient(String),
}

/// Terra's `user` object for a stored Oura user.
pub fn terra_user(row: &OuraUserRow) -> TerraUser {
    let ts = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|d| Timestamp(d.fixed_offset()))
    };
    TerraUser {
        user_id: row.user_id.clone(),
        provider: "OURA".into(),
        created_at: ts(row.created_at),
        last_webhook_update: row.last_webhook_at.and_then(ts),
        scopes: row.scopes.clone(),
        reference_id: row.reference_id.clone(),
        active: Some(row.active),
        extra: Default::default(),
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => base.to_string(),
    }
}

/// The Oura connector. Share it as `Arc<Connector>`.
pub struct Connector {
    engine: Engine,
    client: OuraClient,
    cipher: TokenCipher,
    states: StateSigner,
    cfg: OuraConfig,
    public_url: Option<String>,
    lease: Duration,
    poll: Duration,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    wake: Notify,
    /// Itself, to spawn background work (the backfill after connect) from `&self`.
    me: std::sync::Weak<Connector>,
    /// Notifications being fetched right now by this process (backfills wait while > 0).
    live_inflight: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Build from a validated config with an `[oura]` section.
    pub fn new(engine: Engine, config: &Config) -> Result<Arc<Connector>, String> {
        let cfg = config
            .oura
            .clone()
            .ok_or("the config has no [oura] section")?;
        let redirect = cfg
            .redirect_uri(config.server.public_url.as_ref())
            .ok_or("server.public_url (or oura.redirect_uri) is required for Oura")?;
        let keys = cfg.decoded_token_keys()?;
        let cipher = TokenCipher::new(&keys).map_err(|e| e.to_string())?;
        let client = OuraClient::new(&cfg, redirect)?.with_budget(engine.store().clone());
        Ok(Arc::new_cyclic(|me| Connector {
            engine,
            states: StateSigner::from_client_secret(cfg.client_secret.expose()),
            client,
            cipher,
            public_url: config
                .server
                .public_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string()),
            lease: config.store.lease,
            poll: config.store.poll_interval,
            cfg,
            locks: Default::default(),
            wake: Notify::new(),
            me: me.clone(),
            live_inflight: Default::default(),
        }))
    }

    pub fn config(&self) -> &OuraConfig {
        &self.cfg
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True while this process fetches live notifications: history backfills give way.
    pub fn live_busy(&self) -> bool {
        self.live_inflight
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// A usable access token for a connected user (refreshed when it expires soon, or
    /// unconditionally with `after_401` when Oura refused the current one).
    pub async fn api_token(&self, user_id: &str, after_401: bool) -> Result<String, String> {
        let user = self
            .store()
            .oura_user(user_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("user not found")?;
        let res = if after_401 {
            let rt = user
                .refresh_token
                .clone()
                .ok_or("the user has no Oura tokens")?;
            self.refresh(user_id, &rt).await
        } else {
            self.access_token(&user).await
        };
        res.map_err(|f| match f {
            TokenFailure::Revoked => "the user's Oura access was revoked: reconnect".to_string(),
            TokenFailure::NoTokens => "the user has no Oura tokens: connect first".to_string(),
            TokenFailure::Transient(e) => e,
        })
    }

    pub fn client(&self) -> &OuraClient {
        &self.client
    }

    pub fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }

    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// The webhook URL Oura should call.
    pub fn webhook_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|p| format!("{p}/oura/webhook"))
    }

    async fn publish(&self, event: &Event) -> Result<(), String> {
        let value = event
            .to_value()
            .map_err(|e| format!("serialise event: {e}"))?;
        self.engine
            .publish_value(&value, None)
            .await
            .map(|_| ())
            .map_err(|e| format!("publish {}: {e}", event.event_type()))
    }

    /// Publish an informational event; failures are logged (the caller's flow goes on).
    async fn publish_info(&self, event: Event) {
        if let Err(e) = self.publish(&event).await {
            tracing::error!(error = %e, "cannot publish an Oura account event");
        }
    }

    // ------------------------------------------------------------ intake

    /// Record a verified notification durably (duplicates coalesced). Returns after commit.
    pub async fn record_notification(
        &self,
        n: &WebhookNotification,
    ) -> Result<Recorded, StoreError> {
        let supported = WEBHOOK_DATA_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&n.data_type))
            && WEBHOOK_EVENT_TYPES.contains(&n.event_type.as_str());
        // Whether the user is connected is decided in the insert's own transaction.
        let (status, error) = if supported {
            ("pending", None)
        } else {
            (
                "unsupported",
                Some(format!(
                    "unsupported data_type `{}` / event_type `{}`",
                    n.data_type, n.event_type
                )),
            )
        };
        let recorded = self
            .store()
            .oura_record_notification(&NewOuraNotification {
                oura_user_id: n.user_id.clone(),
                data_type: n.data_type.clone(),
                object_id: n.object_id.clone(),
                event_type: n.event_type.clone(),
                event_time: n.event_time.clone(),
                status: status.into(),
                last_error: error,
                require_user: true,
            })
            .await?;
        let (new, status) = (recorded.new, recorded.status);
        metrics::counter!("manifold_oura_notifications_total", "status" => status.clone(), "duplicate" => if new { "false" } else { "true" }).increment(1);
        if status != "pending" {
            tracing::warn!(data_type = %n.data_type, event_type = %n.event_type, status, "Oura notification recorded but not fetchable");
        }
        // A pending notification stamped its user's last_webhook_at in the same write.
        if new && status == "pending" {
            self.wake.notify_one();
        }
        Ok(Recorded { new, status })
    }

    // ------------------------------------------------------- connect flow

    /// `authenticateUser`: mint a user id and a signed, expiring consent link.
    pub async fn authenticate_user(
        &self,
        reference_id: Option<&str>,
        success_redirect: Option<&str>,
        failure_redirect: Option<&str>,
    ) -> Result<(String, String), ConnectError> {
        for (key, u) in [
            ("auth_success_redirect_url", success_redirect),
            ("auth_failure_redirect_url", failure_redirect),
        ] {
            if let Some(u) = u
                && !url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"))
            {
                return Err(ConnectError::Invalid(format!(
                    "`{key}` must be an absolute http(s) URL"
                )));
            }
        }
        let user_id = uuid::Uuid::new_v4().to_string();
        self.store()
            .oura_create_pending_user(&user_id, reference_id, success_redirect, failure_redirect)
            .await?;
        let exp = Utc::now().timestamp() + self.cfg.state_ttl.as_secs() as i64;
        let state = self.states.sign(&user_id, exp);
        Ok((
            user_id.clone(),
            self.client.authorize_url(&state, &self.cfg.scopes),
        ))
    }

    /// `GET /oura/callback`.
    pub async fn callback(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
    ) -> CallbackOutcome {
        let Some(state) = state else {
            return CallbackOutcome::InvalidState(
                "the `state` parameter is missing: start again from authenticateUser".into(),
            );
        };
        let st = match self.states.verify(state, Utc::now().timestamp()) {
            Ok(s) => s,
            Err(e @ (StateError::Malformed | StateError::BadSignature | StateError::Expired)) => {
                return CallbackOutcome::InvalidState(format!(
                    "{e}: start again from authenticateUser"
                ));
            }
        };
        let user = match self.store().oura_user(&st.u).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                return CallbackOutcome::InvalidState(
                    "the user of this consent link no longer exists: start again from authenticateUser"
                        .into(),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "callback: store unavailable");
                return CallbackOutcome::Failed {
                    reason: "store_unavailable".into(),
                };
            }
        };
        if let Some(err) = error {
            return self.fail(&user, err.chars().take(100).collect()).await;
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return self.fail(&user, "missing_code".into()).await;
        };
        let tokens = match self.client.exchange_code(code).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "Oura code exchange failed");
                return self.fail(&user, "token_exchange_failed".into()).await;
            }
        };
        let Some(refresh) = tokens.refresh_token.clone() else {
            return self.fail(&user, "no_refresh_token".into()).await;
        };
        let oura_id = match self.client.personal_info(&tokens.access_token).await {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string)),
            Err(e) => {
                tracing::warn!(error = %e, "Oura personal_info failed after consent");
                None
            }
        };
        let Some(oura_id) = oura_id else {
            return self.fail(&user, "personal_info_unavailable".into()).await;
        };
        let stored = self.encrypt_tokens(&tokens, &refresh);
        let replaced = match self
            .store()
            .oura_connect_user(&user.user_id, &oura_id, &stored)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot store Oura tokens");
                return self.fail(&user, "store_unavailable".into()).await;
            }
        };
        let row = match self.store().oura_user(&user.user_id).await {
            Ok(Some(r)) => r,
            _ => user.clone(),
        };
        let new_user = terra_user(&row);
        for old in &replaced {
            self.publish_info(Event::user_reauth(new_user.clone(), Some(terra_user(old))))
                .await;
        }
        self.publish_info(Event::auth_success(new_user, None)).await;
        metrics::counter!("manifold_oura_connections_total").increment(1);
        if let Some(me) = self.me.upgrade() {
            crate::history::spawn_connect_backfill(me, row.user_id.clone());
        }
        match &row.success_redirect {
            Some(s) => CallbackOutcome::Redirect(with_query(
                s,
                &[
                    ("user_id", &row.user_id),
                    ("reference_id", row.reference_id.as_deref().unwrap_or("")),
                    ("resource", "OURA"),
                ],
            )),
            None => CallbackOutcome::Connected {
                user_id: row.user_id,
            },
        }
    }

    async fn fail(&self, user: &OuraUserRow, reason: String) -> CallbackOutcome {
        self.publish_info(Event::auth_cancelled(
            user.reference_id.clone(),
            reason.clone(),
            Some(user.user_id.clone()),
        ))
        .await;
        if user.status == "pending" {
            let _ = self.store().oura_delete_user(&user.user_id).await;
        }
        match &user.failure_redirect {
            Some(f) => CallbackOutcome::Redirect(with_query(
                f,
                &[
                    ("user_id", &user.user_id),
                    ("reference_id", user.reference_id.as_deref().unwrap_or("")),
                    ("reason", &reason),
                ],
            )),
            None => CallbackOutcome::Failed { reason },
        }
    }

    fn encrypt_tokens(&self, t: &TokenResponse, refresh: &str) -> OuraTokens {
        OuraTokens {
            access_token: self.cipher.encrypt(&t.access_token),
            refresh_token: self.cipher.encrypt(refresh),
            expires_at: now_ms() + t.expires_in.unwrap_or(86_400).max(0) * 1000,
            scopes: t.scope.clone(),
        }
    }

    /// Revoke at Oura, forget tokens and documents, emit `deauth`. False if unknown.
    pub async fn deauthenticate(&self, user_id: &str) -> Result<bool, StoreError> {
        let Some(row) = self.store().oura_user(user_id).await? else {
            return Ok(false);
        };
        if let Some(at) = row.access_token.as_deref()
            && let Ok(token) = self.cipher.decrypt(at)
            && let Err(e) = self.client.revoke(&token).await
        {
            tracing::warn!(error = %e, user_id, "revoking the Oura token failed; deleting locally anyway");
        }
        self.store().oura_delete_user(user_id).await?;
        self.publish_info(Event::deauth(terra_user(&row))).await;
        Ok(true)
    }

    // -------------------------------------------------------------- tokens

    fn lock_for(&self, user_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(user_id.to_string()).or_default().clone()
    }

    /// A usable access token for `user`, refreshing first when it expires within the margin.
    async fn access_token(&self, user: &OuraUserRow) -> Result<String, TokenFailure> {
        let (Some(at), Some(rt)) = (&user.access_token, &user.refresh_token) else {
            return Err(TokenFailure::NoTokens);
        };
        let margin = self.cfg.refresh_margin.as_millis() as i64;
        if user.expires_at.is_some_and(|e| e - margin <= now_ms()) {
            return self.refresh(&user.user_id, rt).await;
        }
        self.cipher
            .decrypt(at)
            .map_err(|e| TokenFailure::Transient(e.to_string()))
    }

    /// Refresh `user_id`'s tokens, unless someone already replaced the refresh token `seen`.
    /// Serialised per user in-process; across nodes the guarded UPDATE decides who won.
    async fn refresh(&self, user_id: &str, seen: &str) -> Result<String, TokenFailure> {
        let lock = self.lock_for(user_id);
        let _guard = lock.lock().await;
        let row = self
            .store()
            .oura_user(user_id)
            .await
            .map_err(|e| TokenFailure::Transient(e.to_string()))?
            .ok_or(TokenFailure::NoTokens)?;
        let (Some(at), Some(rt)) = (row.access_token.clone(), row.refresh_token.clone()) else {
            return Err(TokenFailure::NoTokens);
        };
        let margin = self.cfg.refresh_margin.as_millis() as i64;
        if rt != seen && row.expires_at.is_none_or(|e| e - margin > now_ms()) {
            // Another task refreshed while we waited.
            return self
                .cipher
                .decrypt(&at)
                .map_err(|e| TokenFailure::Transient(e.to_string()));
        }
        let plain = self
            .cipher
            .decrypt(&rt)
            .map_err(|e| TokenFailure::Transient(e.to_string()))?;
        match self.client.refresh(&plain).await {
            Ok(t) => {
                let new_rt = t.refresh_token.clone().unwrap_or(plain);
                let stored = self.encrypt_tokens(&t, &new_rt);
                let swapped = self
                    .store()
                    .oura_swap_tokens(user_id, &rt, &stored)
                    .await
                    .map_err(|e| TokenFailure::Transient(e.to_string()))?;
                metrics::counter!("manifold_oura_token_refreshes_total").increment(1);
                if !swapped {
                    // Another node refreshed first: its pair is the valid one.
                    return self.current_access(user_id).await;
                }
                tracing::info!(user_id, "Oura token refreshed");
                Ok(t.access_token)
            }
            Err(OuraError::InvalidGrant(reason)) => {
                // Did another node use the token first? Then its pair is stored.
                if let Ok(Some(now)) = self.store().oura_user(user_id).await
                    && now.refresh_token.as_deref() != Some(rt.as_str())
                {
                    return self.current_access(user_id).await;
                }
                tracing::warn!(user_id, %reason, "Oura refused the refresh token: access revoked, user paused");
                let _ = self
                    .store()
                    .oura_set_paused(user_id, Some("access revoked: the user must reconnect"))
                    .await;
                let row = self
                    .store()
                    .oura_user(user_id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(row);
                self.publish_info(Event::access_revoked(terra_user(&row)))
                    .await;
                Err(TokenFailure::Revoked)
            }
            Err(OuraError::Unauthorized | OuraError::Forbidden(_)) => {
                self.publish_info(Event::connection_error(terra_user(&row)))
                    .await;
                Err(TokenFailure::Transient(
                    "token refresh answered 401/403".into(),
                ))
            }
            Err(e) => Err(TokenFailure::Transient(e.to_string())),
        }
    }

    async fn current_access(&self, user_id: &str) -> Result<String, TokenFailure> {
        let row = self
            .store()
            .oura_user(user_id)
            .await
            .map_err(|e| TokenFailure::Transient(e.to_string()))?
            .ok_or(TokenFailure::NoTokens)?;
        let at = row.access_token.ok_or(TokenFailure::NoTokens)?;
        self.cipher
            .decrypt(&at)
            .map_err(|e| TokenFailure::Transient(e.to_string()))
    }

    // -------------------------------------------------------------- worker

    /// Run the fetch workers until `shutdown` becomes true, and with them the heart-rate
    /// poller and the reconcile ([`crate::poll`]) when they are enabled.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            concurrency = self.cfg.fetch_concurrency,
            "Oura fetch worker started"
        );
        let scheduler = tokio::spawn(crate::poll::run(self.clone(), shutdown.clone()));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let n = match self.process_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "Oura fetch worker: store error");
                    0
                }
            };
            if n == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        let _ = scheduler.await;
        tracing::info!("Oura fetch worker stopped");
    }

    /// Claim one batch of due notifications and process it. Returns how many were claimed.
    pub async fn process_due(self: &Arc<Self>) -> Result<usize, StoreError> {
        let (token, batch) = self
            .store()
            .oura_claim_notifications(self.cfg.fetch_concurrency.max(1), self.lease)
            .await?;
        let count = batch.len();
        self.live_inflight
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        let mut set = JoinSet::new();
        for n in batch {
            let this = self.clone();
            let token = token.clone();
            set.spawn(async move { this.handle(&token, n).await });
        }
        while set.join_next().await.is_some() {}
        self.live_inflight
            .fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
        Ok(count)
    }

    async fn handle(&self, token: &str, n: OuraNotification) {
        let step = self.process(&n).await;
        let store = self.store();
        let res = match &step {
            Step::Done => {
                metrics::counter!("manifold_oura_fetches_total", "outcome" => "done").increment(1);
                store
                    .oura_finish_notification(&n.id, token, "done", None)
                    .await
            }
            Step::Final { status, reason } => {
                metrics::counter!("manifold_oura_fetches_total", "outcome" => *status).increment(1);
                tracing::warn!(id = %n.id, data_type = %n.data_type, status, %reason, "Oura notification ended without data");
                store
                    .oura_finish_notification(&n.id, token, status, Some(reason))
                    .await
            }
            Step::Retry {
                count: true, error, ..
            } if n.attempts >= i64::from(self.cfg.max_fetch_attempts) => {
                metrics::counter!("manifold_oura_fetches_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(id = %n.id, %error, "Oura notification failed for good");
                store
                    .oura_finish_notification(
                        &n.id,
                        token,
                        "failed",
                        Some(&format!("gave up after {} attempts: {error}", n.attempts)),
                    )
                    .await
            }
            Step::Retry {
                after,
                count,
                error,
            } => {
                metrics::counter!("manifold_oura_fetches_total", "outcome" => "retry").increment(1);
                tracing::info!(id = %n.id, %error, after_ms = after.as_millis() as u64, "Oura fetch rescheduled");
                store
                    .oura_retry_notification(
                        &n.id,
                        token,
                        now_ms() + after.as_millis() as i64,
                        error,
                        *count,
                    )
                    .await
            }
        };
        match res {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(id = %n.id, "lease lost before the Oura outcome was recorded")
            }
            Err(e) => tracing::error!(id = %n.id, error = %e, "cannot record the Oura outcome"),
        }
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exp = attempts.clamp(1, 12) as u32 - 1;
        let base = Duration::from_secs(2).saturating_mul(1u32 << exp.min(11));
        let base = base.min(Duration::from_secs(3600));
        let jitter = rand::random::<f64>() * 0.2 + 0.9;
        base.mul_f64(jitter)
    }

    fn retry(&self, n: &OuraNotification, error: impl Into<String>) -> Step {
        Step::Retry {
            after: self.backoff(n.attempts),
            count: true,
            error: error.into(),
        }
    }

    async fn process(&self, n: &OuraNotification) -> Step {
        let user = match self.store().oura_user_by_oura_id(&n.oura_user_id).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Step::Final {
                    status: "unknown_user",
                    reason: "no connected user has this Oura user id".into(),
                };
            }
            Err(e) => return self.retry(n, e.to_string()),
        };
        if user.status != "connected" {
            return Step::Final {
                status: "skipped",
                reason: format!(
                    "user is {}: {}",
                    user.status,
                    user.paused_reason.as_deref().unwrap_or("not connected")
                ),
            };
        }
        if !user.active {
            return Step::Final {
                status: "skipped",
                reason: "user is inactive (PATCH /v2/users active=false)".into(),
            };
        }
        let Some(data_type) = canonical_data_type(&n.data_type) else {
            return Step::Final {
                status: "unsupported",
                reason: format!("unsupported data_type `{}`", n.data_type),
            };
        };
        let result = if n.event_type == "delete" {
            self.apply_delete(&user, data_type, &n.object_id).await
        } else {
            match self.fetch(n, &user, data_type).await {
                Ok(body) => {
                    self.apply_document(&user, data_type, &n.object_id, &body)
                        .await
                }
                Err(step) => return step,
            }
        };
        match result {
            Ok(()) => Step::Done,
            Err(Failure::Permanent(status, reason)) => Step::Final { status, reason },
            Err(Failure::Transient(e)) => self.retry(n, e),
        }
    }

    /// Fetch the document, refreshing once on 401.
    async fn fetch(
        &self,
        n: &OuraNotification,
        user: &OuraUserRow,
        data_type: &str,
    ) -> Result<bytes::Bytes, Step> {
        let token_step = |f: TokenFailure| match f {
            TokenFailure::Revoked => Step::Final {
                status: "revoked",
                reason: "the user's Oura access was revoked".into(),
            },
            TokenFailure::NoTokens => Step::Final {
                status: "skipped",
                reason: "the user has no Oura tokens".into(),
            },
            TokenFailure::Transient(e) => self.retry(n, format!("token: {e}")),
        };
        let mut token = self.access_token(user).await.map_err(token_step)?;
        let mut refreshed = false;
        loop {
            match self.client.document(&token, data_type, &n.object_id).await {
                Ok(b) => return Ok(b),
                Err(OuraError::Unauthorized) if !refreshed => {
                    refreshed = true;
                    let seen = user.refresh_token.clone().unwrap_or_default();
                    // The stored token may already be newer than `user` (refreshed meanwhile).
                    let current = match self.store().oura_user(&user.user_id).await {
                        Ok(Some(r)) => r.refresh_token.unwrap_or(seen),
                        _ => seen,
                    };
                    token = self
                        .refresh(&user.user_id, &current)
                        .await
                        .map_err(token_step)?;
                }
                Err(OuraError::Unauthorized) => {
                    self.publish_info(Event::connection_error(terra_user(user)))
                        .await;
                    return Err(self.retry(n, "Oura answered 401 after a token refresh"));
                }
                Err(OuraError::Forbidden(body)) => {
                    self.publish_info(Event::connection_error(terra_user(user)))
                        .await;
                    return Err(Step::Final {
                        status: "forbidden",
                        reason: format!(
                            "Oura answered 403 (scope not granted or membership lapsed): {body}"
                        ),
                    });
                }
                Err(OuraError::NotFound) => {
                    return Err(Step::Final {
                        status: "gone",
                        reason: "Oura answered 404: the document no longer exists".into(),
                    });
                }
                Err(OuraError::RateLimited { retry_after }) => {
                    return Err(Step::Retry {
                        after: retry_after
                            .unwrap_or(Duration::from_secs(60))
                            .clamp(Duration::from_millis(200), Duration::from_secs(3600)),
                        count: false,
                        error: "Oura rate limit (429)".into(),
                    });
                }
                Err(e @ OuraError::Client { .. }) => {
                    return Err(Step::Final {
                        status: "failed",
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(self.retry(n, e.to_string())),
            }
        }
    }

    /// Store a fetched document and publish what it maps to.
    pub(crate) async fn apply_document(
        &self,
        user: &OuraUserRow,
        data_type: &str,
        object_id: &str,
        body: &[u8],
    ) -> Result<(), Failure> {
        let doc = parse_document(data_type, body)
            .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?;
        let id = doc.id().unwrap_or(object_id).to_string();
        let day = doc.day().map(|d| d.to_string());
        let text = String::from_utf8_lossy(body).into_owned();
        self.store()
            .oura_upsert_document(&user.user_id, data_type, &id, day.as_deref(), &text)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let tuser = terra_user(user);
        match &doc {
            OuraDocument::Sleep(s) => self.publish_sleep(&tuser, s).await,
            OuraDocument::Workout(w) => {
                let a = normalize::workout(w)
                    .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?;
                self.publish_t(&Event::activity(tuser, vec![a])).await
            }
            OuraDocument::Session(s) => {
                let a = normalize::session(s)
                    .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?;
                self.publish_t(&Event::activity(tuser, vec![a])).await
            }
            OuraDocument::PersonalInfo(p) => {
                self.publish_t(&Event::athlete(tuser, normalize::athlete(p)))
                    .await
            }
            other => {
                let Some(day) = other.day() else {
                    return Ok(());
                };
                self.rebuild_day(user, day, normalize::terra_types_for(data_type))
                    .await
            }
        }
    }

    async fn publish_t(&self, e: &Event) -> Result<(), Failure> {
        self.publish(e).await.map_err(Failure::Transient)
    }

    async fn publish_sleep(
        &self,
        tuser: &TerraUser,
        s: &crate::types::OuraSleep,
    ) -> Result<(), Failure> {
        if s.is_deleted_or_rejected() {
            let e = Event::tombstone(
                "sleep",
                tuser.clone(),
                vec![manifold_model::DeletedRef::SummaryId {
                    summary_id: s.id.clone(),
                }],
            );
            return self.publish_t(&e).await;
        }
        let daily_sleep = self
            .day_docs_raw(&tuser.user_id, &s.day.to_string())
            .await?
            .into_iter()
            .find(|d| d.data_type == "daily_sleep")
            .and_then(|d| match parse_document("daily_sleep", d.body.as_bytes()) {
                Ok(OuraDocument::DailySleep(ds)) => Some(ds),
                _ => None,
            })
            .filter(|ds| ds.day == s.day);
        let mapped = normalize::sleep(s, daily_sleep.as_ref())
            .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?;
        self.publish_t(&Event::sleep(tuser.clone(), vec![mapped]))
            .await
    }

    async fn day_docs_raw(
        &self,
        user_id: &str,
        day: &str,
    ) -> Result<Vec<OuraDocumentRow>, Failure> {
        self.store()
            .oura_day_documents(user_id, day)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))
    }

    /// Rebuild a user's day from every stored document of it and publish `types`
    /// (`daily`, `body`, `menstruation`, `sleep`). A type that maps to nothing any more gets a
    /// day tombstone when `tombstone_empty`.
    async fn rebuild_day_inner(
        &self,
        user: &OuraUserRow,
        day: NaiveDate,
        types: &[&str],
        tombstone_empty: bool,
    ) -> Result<(), Failure> {
        let tuser = terra_user(user);
        let rows = self.day_docs_raw(&user.user_id, &day.to_string()).await?;
        let mut docs = DayDocuments::new(day);
        let mut has_daily = false;
        let mut sleeps = Vec::new();
        for r in &rows {
            match parse_document(&r.data_type, r.body.as_bytes()) {
                Ok(OuraDocument::Sleep(s)) => sleeps.push(s),
                Ok(OuraDocument::Workout(_) | OuraDocument::Session(_)) => {}
                Ok(d) => {
                    has_daily |= normalize::terra_types_for(d.data_type()).contains(&"daily");
                    if let Err(e) = docs.add(d) {
                        tracing::warn!(error = %e, "stored Oura document skipped in the day rebuild");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "stored Oura document unreadable; skipped"),
            }
        }
        // Polled heart-rate rows are filed under the user's local day; a day with no document
        // of its own carrying an offset (e.g. today, before daily_activity exists) still gets
        // local bounds, from the user's latest known offset.
        if !docs.heartrate.is_empty() && !has_own_offset(&docs) {
            docs.utc_offset = self.user_utc_offset(&user.user_id).await;
        }
        for t in types {
            let event = match *t {
                "daily" if has_daily => Some(Event::daily(
                    tuser.clone(),
                    vec![
                        normalize::daily(&docs)
                            .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?,
                    ],
                )),
                "body" => normalize::body(&docs)
                    .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?
                    .map(|b| Event::body(tuser.clone(), vec![b])),
                "menstruation" => normalize::menstruation(&docs)
                    .map_err(|e| Failure::Permanent("invalid_document", e.to_string()))?
                    .map(|m| Event::menstruation(tuser.clone(), vec![m])),
                "sleep" => {
                    // daily_sleep changed: re-publish the day's sleep periods with its score.
                    for s in &sleeps {
                        self.publish_sleep(&tuser, s).await?;
                    }
                    continue;
                }
                _ => None,
            };
            match event {
                Some(e) => self.publish_t(&e).await?,
                None if tombstone_empty => {
                    self.publish_t(&normalize::day_tombstone(&tuser, t, day))
                        .await?
                }
                None => {}
            }
        }
        Ok(())
    }

    pub(crate) async fn rebuild_day(
        &self,
        user: &OuraUserRow,
        day: NaiveDate,
        types: &[&str],
    ) -> Result<(), Failure> {
        self.rebuild_day_inner(user, day, types, false).await
    }

    /// An Oura `delete`: forget the stored document, then tombstone or rebuild.
    pub(crate) async fn apply_delete(
        &self,
        user: &OuraUserRow,
        data_type: &str,
        object_id: &str,
    ) -> Result<(), Failure> {
        let removed = self
            .store()
            .oura_delete_document(&user.user_id, data_type, object_id)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let tuser = terra_user(user);
        match normalize::delete_target(data_type, object_id)
            .map_err(|e| Failure::Permanent("unsupported", e.to_string()))?
        {
            DeleteTarget::Item {
                event_type,
                deleted,
            } => {
                self.publish_t(&Event::tombstone(event_type, tuser, vec![deleted]))
                    .await
            }
            DeleteTarget::RebuildDay { event_types } => {
                let Some(day) = removed
                    .and_then(|r| r.day)
                    .and_then(|d| d.parse::<NaiveDate>().ok())
                else {
                    // Never stored here: nothing was published for it.
                    return Ok(());
                };
                self.rebuild_day_inner(user, day, event_types, true).await
            }
        }
    }

    /// The user's UTC offset as Oura last reported it: the offset of the newest stored
    /// `daily_activity`, `daily_readiness`, `daily_sleep` or `sleep` document, if any.
    pub async fn user_utc_offset(&self, user_id: &str) -> Option<FixedOffset> {
        for t in ["daily_activity", "daily_readiness", "daily_sleep", "sleep"] {
            let Ok(Some(row)) = self.store().oura_latest_document(user_id, t).await else {
                continue;
            };
            let offset = match parse_document(t, row.body.as_bytes()) {
                Ok(OuraDocument::DailyActivity(d)) => Some(d.timestamp.offset()),
                Ok(OuraDocument::DailyReadiness(d)) => d.timestamp.map(Timestamp::offset),
                Ok(OuraDocument::DailySleep(d)) => d.timestamp.map(Timestamp::offset),
                Ok(OuraDocument::Sleep(d)) => Some(d.bedtime_start.offset()),
                _ => None,
            };
            if offset.is_some() {
                return offset;
            }
        }
        None
    }

    // ------------------------------------------------------- subscriptions

    /// Make sure one subscription per (event_type, data_type) points at our webhook URL,
    /// renewing those that expire within `renew_within` and recreating missing ones.
    /// Returns the subscriptions as they are now.
    pub async fn sync_subscriptions(
        &self,
        renew_within: Duration,
    ) -> Result<Vec<crate::client::Subscription>, String> {
        let callback = self
            .webhook_url()
            .ok_or("server.public_url is required to subscribe to Oura webhooks")?;
        let token = self
            .cfg
            .verification_token
            .as_ref()
            .map(|t| t.expose().to_string())
            .ok_or("oura.verification_token is required to subscribe to Oura webhooks")?;
        let existing = self
            .client
            .list_subscriptions()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for dt in WEBHOOK_DATA_TYPES {
            for et in WEBHOOK_EVENT_TYPES {
                let found = existing.iter().find(|s| {
                    s.callback_url == callback
                        && s.event_type == *et
                        && s.data_type.eq_ignore_ascii_case(dt)
                });
                let sub = match found {
                    Some(s) if !expires_within(s.expiration_time.as_deref(), renew_within) => {
                        s.clone()
                    }
                    Some(s) => match self.client.renew_subscription(&s.id).await {
                        Ok(r) => r,
                        Err(OuraError::NotFound) => self
                            .client
                            .create_subscription(&callback, &token, et, dt)
                            .await
                            .map_err(|e| format!("create {et}/{dt}: {e}"))?,
                        Err(e) => return Err(format!("renew {et}/{dt}: {e}")),
                    },
                    None => self
                        .client
                        .create_subscription(&callback, &token, et, dt)
                        .await
                        .map_err(|e| format!("create {et}/{dt}: {e}"))?,
                };
                out.push(sub);
            }
        }
        let rows: Vec<_> = out
            .iter()
            .map(|s| manifold_core::store::OuraSubscriptionRow {
                id: s.id.clone(),
                event_type: s.event_type.clone(),
                data_type: s.data_type.clone(),
                callback_url: s.callback_url.clone(),
                expiration_time: s.expiration_time.clone(),
            })
            .collect();
        self.store()
            .oura_save_subscriptions(&rows)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Does the day hold a document whose timestamp gives the day's UTC offset (the ones
/// `DayDocuments` takes its offset from)?
fn has_own_offset(d: &DayDocuments) -> bool {
    d.utc_offset.is_some()
        || d.daily_activity.is_some()
        || d.daily_readiness
            .as_ref()
            .is_some_and(|x| x.timestamp.is_some())
        || d.daily_sleep
            .as_ref()
            .is_some_and(|x| x.timestamp.is_some())
        || d.vo2_max.as_ref().is_some_and(|x| x.timestamp.is_some())
}

/// Does an Oura `expiration_time` (often without an offset: UTC) fall within `within`?
pub fn expires_within(expiration: Option<&str>, within: Duration) -> bool {
    let Some(s) = expiration else { return true };
    let at = chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        });
    match at {
        Ok(at) => at - Utc::now() <= chrono::Duration::from_std(within).unwrap_or_default(),
        Err(_) => true,
    }
}

#[derive(Debug)]
pub(crate) enum Failure {
    Permanent(&'static str, String),
    Transient(String),
}
