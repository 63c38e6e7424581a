//! HTTP client for the Oura API v2: OAuth2 (authorize URL, code exchange, refresh, revoke),
//! single documents from `/v2/usercollection/...`, and webhook subscriptions. Every non-2xx
//! answer is classified into an [`OuraError`] the connector can act on (refresh, retry after,
//! give up).
//!
//! Data requests (`/v2/usercollection/...`) go through Oura's request budget when the client
//! has one ([`OuraClient::with_budget`]; the connector always sets it): one token per request,
//! taken at the client's [`Priority`] (a clone per priority: [`OuraClient::with_priority`]), and
//! a 429 pauses every process sharing the store until `Retry-After` has passed. While the budget
//! is paused, or a token would take longer than the client's `max_wait`, the request is not
//! sent and the caller gets [`OuraError::RateLimited`] as if Oura had answered 429.

use std::time::Duration;

use bytes::Bytes;
use manifold_core::config::OuraConfig;
use manifold_core::store::Store;
use manifold_core::store::rate_budget::{Acquired, Priority, RateBudget, RateLimits};
use serde::{Deserialize, Serialize};

use crate::types::canonical_data_type;

/// What went wrong talking to Oura.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OuraError {
    #[error("Oura answered 401: the access token is missing, expired or revoked")]
    Unauthorized,
    #[error("Oura answered 403: scope not granted or membership lapsed ({0})")]
    Forbidden(String),
    #[error("Oura answered 404: not found")]
    NotFound,
    #[error("Oura refused the grant: {0}")]
    InvalidGrant(String),
    #[error("Oura rate limit hit (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Oura answered {status}: {body}")]
    Server { status: u16, body: String },
    #[error("Oura answered {status}: {body}")]
    Client { status: u16, body: String },
    #[error("cannot reach Oura: {0}")]
    Transport(String),
    #[error("unexpected answer from Oura: {0}")]
    Decode(String),
}

impl OuraError {
    /// Worth trying again later (transport, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OuraError::Transport(_) | OuraError::Server { .. } | OuraError::RateLimited { .. }
        )
    }
}

/// The token endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A webhook subscription (`WebhookSubscriptionModel`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Subscription {
    pub id: String,
    pub callback_url: String,
    pub event_type: String,
    pub data_type: String,
    #[serde(default)]
    pub expiration_time: Option<String>,
}

/// The Oura API client. Cheap to clone.
#[derive(Clone)]
pub struct OuraClient {
    http: reqwest::Client,
    api_base: String,
    auth_base: String,
    token_url: String,
    revoke_url: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    limits: RateLimits,
    budget: Option<RateBudget>,
    priority: Priority,
    max_wait: Option<Duration>,
}

impl std::fmt::Debug for OuraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OuraClient")
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

fn short(body: &str) -> String {
    let b: String = body.chars().take(300).collect();
    if b.is_empty() {
        "(empty body)".into()
    } else {
        b
    }
}

async fn classify(res: reqwest::Response) -> Result<Bytes, OuraError> {
    let status = res.status().as_u16();
    if (200..300).contains(&status) {
        return res
            .bytes()
            .await
            .map_err(|e| OuraError::Transport(e.to_string()));
    }
    let ra = retry_after(res.headers());
    let body = res.text().await.unwrap_or_default();
    Err(match status {
        401 => OuraError::Unauthorized,
        403 => OuraError::Forbidden(short(&body)),
        404 => OuraError::NotFound,
        429 => OuraError::RateLimited { retry_after: ra },
        s if s >= 500 => OuraError::Server {
            status: s,
            body: short(&body),
        },
        s => OuraError::Client {
            status: s,
            body: short(&body),
        },
    })
}

fn transport(e: reqwest::Error) -> OuraError {
    OuraError::Transport(e.without_url().to_string())
}

impl OuraClient {
    /// Build from config; `redirect_uri` is the resolved callback URL.
    pub fn new(config: &OuraConfig, redirect_uri: String) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the Oura HTTP client: {e}"))?;
        Ok(OuraClient {
            http,
            api_base: config.api_base(),
            auth_base: config.auth_base(),
            token_url: config.token_url(),
            revoke_url: config.revoke_url(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.expose().to_string(),
            redirect_uri,
            limits: RateLimits {
                requests: config.rate_limit,
                window: config.rate_window,
                reserve: config.live_reserve,
            },
            budget: None,
            priority: Priority::Live,
            max_wait: None,
        })
    }

    /// Count data requests against the budget of this application shared through `store`
    /// (limits from the config: `oura.rate_limit`, `rate_window`, `live_reserve`).
    pub fn with_budget(mut self, store: Store) -> Self {
        self.budget = Some(RateBudget::new(store, &self.client_id, self.limits));
        self
    }

    /// The shared budget, if any (e.g. to show its state).
    pub fn budget(&self) -> Option<&RateBudget> {
        self.budget.as_ref()
    }

    /// A clone whose data requests take budget tokens at `priority` (the default is
    /// [`Priority::Live`]; history, backfills and polling use [`Priority::Background`]).
    pub fn with_priority(&self, priority: Priority) -> Self {
        let mut c = self.clone();
        c.priority = priority;
        c
    }

    /// A clone that gives up (with [`OuraError::RateLimited`]) instead of waiting longer than
    /// `max_wait` for a token or for the end of a 429 pause (synchronous requests).
    pub fn with_max_wait(&self, max_wait: Duration) -> Self {
        let mut c = self.clone();
        c.max_wait = Some(max_wait);
        c
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Take a budget token for one data request (no-op without a budget).
    async fn take_token(&self) -> Result<(), OuraError> {
        let Some(b) = &self.budget else {
            return Ok(());
        };
        match b.acquire(self.priority, self.max_wait).await {
            Ok(Acquired::Granted) => Ok(()),
            Ok(Acquired::Paused(d) | Acquired::TooLong(d)) => Err(OuraError::RateLimited {
                retry_after: Some(d),
            }),
            Err(e) => Err(OuraError::Transport(format!(
                "the shared Oura rate budget is unavailable: {e}"
            ))),
        }
    }

    /// Classify a data answer; a 429 pauses the shared budget.
    async fn finish(&self, res: reqwest::Response) -> Result<Bytes, OuraError> {
        let out = classify(res).await;
        if let (Err(OuraError::RateLimited { retry_after }), Some(b)) = (&out, &self.budget) {
            let d = retry_after.unwrap_or(Duration::from_secs(60));
            if let Err(e) = b.pause(d, "Oura answered 429").await {
                tracing::warn!(error = %e, "cannot record Oura's 429 in the shared rate budget");
            }
        }
        out
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The consent URL a user is sent to.
    pub fn authorize_url(&self, state: &str, scopes: &[String]) -> String {
        let mut u =
            url::Url::parse(&format!("{}/oauth/authorize", self.auth_base)).unwrap_or_else(|_| {
                url::Url::parse("https://cloud.ouraring.com/oauth/authorize").expect("static")
            });
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state);
        u.to_string()
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, OuraError> {
        let res = self
            .http
            .post(&self.token_url)
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = res.status().as_u16();
        if status == 400 || status == 401 {
            // RFC 6749 error body: invalid_grant = the code/refresh token is dead.
            let body = res.text().await.unwrap_or_default();
            let err = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_default();
            return Err(
                if err == "invalid_grant" || status == 400 && err.is_empty() {
                    OuraError::InvalidGrant(short(&body))
                } else {
                    OuraError::Client {
                        status,
                        body: short(&body),
                    }
                },
            );
        }
        let bytes = classify(res).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OuraError::Decode(format!("token response: {e}")))
    }

    /// Exchange an authorization code for tokens.
    pub async fn exchange_code(&self, code: &str) -> Result<TokenResponse, OuraError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("redirect_uri", &self.redirect_uri),
        ])
        .await
    }

    /// Use a (single-use) refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, OuraError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ])
        .await
    }

    /// Revoke an access token (200 = revoked; 401 = already invalid, also fine).
    pub async fn revoke(&self, access_token: &str) -> Result<(), OuraError> {
        let res = self
            .http
            .post(&self.revoke_url)
            .query(&[("access_token", access_token)])
            .send()
            .await
            .map_err(transport)?;
        match classify(res).await {
            Ok(_) | Err(OuraError::Unauthorized) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_user(&self, access_token: &str, path: &str) -> Result<Bytes, OuraError> {
        self.take_token().await?;
        let res = self
            .http
            .get(format!("{}{}", self.api_base, path))
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(transport)?;
        self.finish(res).await
    }

    /// `GET /v2/usercollection/personal_info` (bare object).
    pub async fn personal_info(&self, access_token: &str) -> Result<Bytes, OuraError> {
        self.get_user(access_token, "/v2/usercollection/personal_info")
            .await
    }

    /// One page of a list route: `GET /v2/usercollection/{collection}?{params}` →
    /// (`data` items, `next_token`). Paginate by passing `next_token` back in `params`.
    pub async fn list_page(
        &self,
        access_token: &str,
        collection: &str,
        params: &[(&str, &str)],
    ) -> Result<(Vec<serde_json::Value>, Option<String>), OuraError> {
        self.take_token().await?;
        let res = self
            .http
            .get(format!("{}/v2/usercollection/{collection}", self.api_base))
            .query(params)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(transport)?;
        let b = self.finish(res).await?;
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<serde_json::Value>,
            #[serde(default)]
            next_token: Option<String>,
        }
        let p: Page = serde_json::from_slice(&b)
            .map_err(|e| OuraError::Decode(format!("{collection} list: {e}")))?;
        Ok((p.data, p.next_token.filter(|t| !t.is_empty())))
    }

    /// `GET /v2/usercollection/{path}/{object_id}` for a webhook `data_type`.
    pub async fn document(
        &self,
        access_token: &str,
        data_type: &str,
        object_id: &str,
    ) -> Result<Bytes, OuraError> {
        let path = canonical_data_type(data_type).unwrap_or(data_type);
        if path == "personal_info" {
            return self.personal_info(access_token).await;
        }
        let id: String = url::form_urlencoded::byte_serialize(object_id.as_bytes()).collect();
        self.get_user(access_token, &format!("/v2/usercollection/{path}/{id}"))
            .await
    }

    fn app(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("x-client-id", &self.client_id)
            .header("x-client-secret", &self.client_secret)
    }

    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, OuraError> {
        let res = self
            .app(
                self.http
                    .get(format!("{}/v2/webhook/subscription", self.api_base)),
            )
            .send()
            .await
            .map_err(transport)?;
        let b = classify(res).await?;
        serde_json::from_slice(&b).map_err(|e| OuraError::Decode(format!("subscription list: {e}")))
    }

    pub async fn create_subscription(
        &self,
        callback_url: &str,
        verification_token: &str,
        event_type: &str,
        data_type: &str,
    ) -> Result<Subscription, OuraError> {
        let res = self
            .app(
                self.http
                    .post(format!("{}/v2/webhook/subscription", self.api_base)),
            )
            .json(&serde_json::json!({
                "callback_url": callback_url,
                "verification_token": verification_token,
                "event_type": event_type,
                "data_type": data_type,
            }))
            .send()
            .await
            .map_err(transport)?;
        let b = classify(res).await?;
        serde_json::from_slice(&b).map_err(|e| OuraError::Decode(format!("subscription: {e}")))
    }

    /// Renew; 403/404 mean the subscription no longer exists ([`OuraError::NotFound`]).
    pub async fn renew_subscription(&self, id: &str) -> Result<Subscription, OuraError> {
        let res = self
            .app(self.http.put(format!(
                "{}/v2/webhook/subscription/renew/{id}",
                self.api_base
            )))
            .send()
            .await
            .map_err(transport)?;
        match classify(res).await {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| OuraError::Decode(format!("subscription: {e}"))),
            Err(OuraError::Forbidden(_)) => Err(OuraError::NotFound),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), OuraError> {
        let res = self
            .app(
                self.http
                    .delete(format!("{}/v2/webhook/subscription/{id}", self.api_base)),
            )
            .send()
            .await
            .map_err(transport)?;
        match classify(res).await {
            Ok(_) => Ok(()),
            Err(OuraError::Forbidden(_)) => Err(OuraError::NotFound),
            Err(e) => Err(e),
        }
    }
}
