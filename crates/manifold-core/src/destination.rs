//! The one small trait every destination implements, and what it is given and returns.
//!
//! The engine owns retries, leases, rate limits, batching and dead letters; a destination only
//! knows how to talk to its service and how to classify what the service answered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// One payload on its way to one destination. The same `id` and `trace_id` are used for every
/// attempt, so receivers can deduplicate.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Stable id of this payload × destination pair (same across retries and replays).
    pub id: String,
    /// Id of the stored payload; also sent as `X-Terra-Trace-Id`. The same for every destination.
    pub payload_id: String,
    /// Terra event type (`sleep`, `daily`, `auth`, …).
    pub event_type: String,
    pub user_id: Option<String>,
    pub reference_id: Option<String>,
    /// Natural key of the record (`user:type:summary_id` or `user:type:day`); database-like
    /// destinations upsert on it.
    pub natural_key: String,
    /// Version of the record under its natural key (1, 2, …).
    pub version: i64,
    /// `terra-reference` correlation header (history requests), if any.
    pub terra_reference: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the payload was committed.
    pub created_at: DateTime<Utc>,
    /// The payload exactly as it will be sent: the event JSON, or its FHIR bundle / FIT file when
    /// the destination's `format` asks for one.
    pub body: Bytes,
    /// MIME type of `body`: `application/json`, `application/fhir+json` or `application/vnd.ant.fit`.
    pub content_type: &'static str,
}

impl Delivery {
    pub fn trace_id(&self) -> &str {
        &self.payload_id
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// What the remote side said, for the attempt log. Truncated before storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: Option<u16>,
    pub body: Option<String>,
}

impl Response {
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            body: None,
        }
    }
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// Outcome of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored / accepted by the destination.
    Delivered { response: Response },
    /// Transient failure (timeout, connection refused, 5xx, throttling). `after` is a hint from
    /// the server (Retry-After) that the engine honours within the retry policy's bounds.
    Retry {
        after: Option<Duration>,
        reason: String,
        response: Response,
    },
    /// The destination refused this item for good (4xx, auth, schema, too large): dead letter.
    Permanent { reason: String, response: Response },
    /// The destination itself is gone (HTTP 410): the engine disables it until re-enabled.
    Gone { reason: String, response: Response },
    /// A bug or an unexpected state on our side; retried like `Retry` but reported separately.
    Internal { reason: String },
}

impl Outcome {
    pub fn delivered() -> Self {
        Outcome::Delivered {
            response: Response::default(),
        }
    }
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
            response: Response::default(),
        }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        Outcome::Permanent {
            reason: reason.into(),
            response: Response::default(),
        }
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        Outcome::Internal {
            reason: reason.into(),
        }
    }

    /// The error class recorded in the attempt log and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retryable",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Gone { .. } => "gone",
            Outcome::Internal { .. } => "internal",
        }
    }

    pub fn response(&self) -> Option<&Response> {
        match self {
            Outcome::Delivered { response }
            | Outcome::Retry { response, .. }
            | Outcome::Permanent { response, .. }
            | Outcome::Gone { response, .. } => Some(response),
            Outcome::Internal { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { reason, .. }
            | Outcome::Permanent { reason, .. }
            | Outcome::Gone { reason, .. }
            | Outcome::Internal { reason } => Some(reason),
        }
    }
}

/// A place payloads are delivered to.
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    /// Deliver a batch (`batch.len() <= self.max_batch()`); return one outcome per item, in the
    /// same order. Must not panic; every failure is an outcome.
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome>;

    /// Largest batch this destination wants (a hint; the engine may send fewer).
    fn max_batch(&self) -> usize {
        1
    }

    /// Keep each user's deliveries in order (e.g. Kafka: one partition per user key). The
    /// engine then sends one user's deliveries one batch at a time, in commit order, spreading
    /// users over `concurrency` lanes. A retried delivery still arrives after later ones.
    fn ordered_by_user(&self) -> bool {
        false
    }

    /// Prove connectivity and permissions (`manifold check --connect`).
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a destination factory needs besides its own settings.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Whether outbound requests may target private, loopback and link-local addresses by default.
    pub allow_private_network_default: bool,
    /// Object stores other destinations can use for claim checks (by destination name).
    pub blob_stores: crate::blob::BlobStores,
}

/// Problem found while validating a destination's own settings. `key` is relative to the
/// destination's table (e.g. `url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingIssue {
    pub key: String,
    pub message: String,
}

impl SettingIssue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Builds one `type = "…"` of destination from its settings table (the keys the engine does not
/// own). Concrete destinations live in their own crates; the binary registers them.
pub trait DestinationFactory: Send + Sync + 'static {
    /// The `type` value in the config file.
    fn kind(&self) -> &'static str;
    /// Validate and build. Must not perform I/O.
    fn build(
        &self,
        name: &str,
        settings: toml::Table,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Destination>, Vec<SettingIssue>>;
}

/// Turn a serde error from deserializing a destination's settings into a setting issue that names
/// the key when serde mentions one.
pub fn serde_issue(err: &dyn std::fmt::Display) -> SettingIssue {
    let msg = err.to_string();
    let msg = msg
        .trim()
        .trim_start_matches("TOML parse error")
        .trim()
        .to_string();
    let key = msg
        .split('`')
        .nth(1)
        .filter(|k| !k.contains(' '))
        .unwrap_or("")
        .to_string();
    let key = if msg.starts_with("missing field") || msg.starts_with("unknown field") {
        key
    } else {
        String::new()
    };
    SettingIssue { key, message: msg }
}
