//! Webhook destination: one signed `POST` per delivery, Terra-compatible.
//!
//! ```toml
//! [[destinations]]
//! name = "app"
//! type = "webhook"
//! url = "https://app.example.com/terra"      # absolute http(s) URL, required
//! signing_secret = "${WEBHOOK_SECRET}"         # required
//! signature = "terra"                          # "terra" (default) | "standard" | "both"
//! request_timeout = "8s"                       # default 8s
//! allow_private_network = false                # default false (see below)
//! headers = { Authorization = "Bearer ${TOKEN}" }  # optional extra static headers
//! ```
//!
//! # What is sent
//! Each delivery is one `POST url` whose body is the payload bytes exactly, with
//! `Content-Type: application/json`, `User-Agent: manifold/<version>` and:
//!
//! * `terra-signature: t=<unix seconds>,v1=<hex>` — lowercase hex HMAC-SHA256 of
//!   `"<t>.<raw body>"` keyed with the secret's UTF-8 bytes (Terra's scheme; Terra's SDK
//!   verifiers accept it). Sent for `signature = "terra"` and `"both"`.
//! * `webhook-id` (= the delivery id, stable across retries), `webhook-timestamp`,
//!   `webhook-signature: v1,<base64>` — [Standard Webhooks](https://www.standardwebhooks.com),
//!   for `"standard"` and `"both"`. The key is the base64-decoded part after `whsec_`; a secret
//!   **without** the `whsec_` prefix is used as its raw UTF-8 bytes.
//! * `terra-reference` when the delivery has one; `X-Terra-Trace-Id` (the payload id: the same
//!   for every attempt and every destination, use it to deduplicate);
//!   `X-Terra-Ordering-Timestamp` (milliseconds since the epoch at which the payload was emitted,
//!   i.e. committed; stable across retries, use it to order updates of the same record).
//!
//! # Verifying on the receiver
//! Use [`signature::verify_terra_signature`] (or any Terra SDK verifier): split the header on
//! `,` into `t=` and `v1=`, compute `HMAC-SHA256(secret, "{t}.{raw body}")` as lowercase hex,
//! compare in constant time, and reject timestamps older than a few minutes. Verify over the raw
//! body bytes, before any JSON parsing. The tests in `tests/signature.rs` do exactly this with
//! an independent Python implementation.
//!
//! ```
//! use manifold_webhook::signature::{terra_signature, verify_terra_signature};
//! let body = br#"{"type":"sleep"}"#;
//! let header = terra_signature(b"my-secret", chrono::Utc::now().timestamp(), body);
//! assert!(verify_terra_signature(&header, body, b"my-secret", std::time::Duration::from_secs(300)));
//! ```
//!
//! # How answers are classified (all in [`classify`])
//! 2xx → delivered. 408, 425, 429, 5xx, timeouts and connection errors → retry (a `Retry-After`
//! in seconds or as an HTTP date becomes the retry hint). 410 → gone (the engine disables the
//! destination). Other 4xx → permanent, with the status and the start of the body in the reason.
//! 3xx → permanent: redirects are not followed.
//!
//! # Outbound address guard
//! Unless `allow_private_network = true`, the host is resolved and the request is refused
//! (permanent outcome) when any resolved address is loopback, private, link-local, unspecified,
//! carrier-grade NAT or multicast; the checked answer is the one connected to (see [`ssrf`]).
//! Proxies from the environment are ignored for the same reason.

pub mod signature;
pub mod ssrf;

mod destination;

pub use destination::{WebhookDestination, classify, parse_retry_after};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `request_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);

/// Which signature headers are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMode {
    /// `terra-signature` only (the default).
    Terra,
    /// Standard Webhooks headers only.
    Standard,
    /// Both.
    Both,
}

impl SignatureMode {
    pub fn terra(self) -> bool {
        matches!(self, SignatureMode::Terra | SignatureMode::Both)
    }
    pub fn standard(self) -> bool {
        matches!(self, SignatureMode::Standard | SignatureMode::Both)
    }
}

/// The webhook's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: Option<String>,
    pub signing_secret: Option<Secret>,
    pub signature: Option<String>,
    pub request_timeout: Option<String>,
    pub allow_private_network: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

/// Headers Manifold sets itself; `headers` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "user-agent",
    "terra-signature",
    "terra-reference",
    "x-terra-trace-id",
    "x-terra-ordering-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Validated settings.
pub(crate) struct Settings {
    pub url: url::Url,
    pub secret: Secret,
    pub standard_key: Option<Vec<u8>>,
    pub mode: SignatureMode,
    pub timeout: Duration,
    pub allow_private_network: bool,
    pub headers: reqwest::header::HeaderMap,
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub(crate) fn validate(self, ctx: &BuildContext) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();

        let url = match self.url.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "url",
                    "missing: set `url` to the absolute http(s) address that receives the webhooks, e.g. \"https://app.example.com/terra\"",
                ));
                None
            }
            Some(raw) => match url::Url::parse(raw) {
                Err(e) => {
                    issues.push(SettingIssue::new(
                        "url",
                        format!("`{raw}` is not an absolute URL ({e}): write it with scheme and host, e.g. \"https://app.example.com/terra\""),
                    ));
                    None
                }
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    issues.push(SettingIssue::new(
                        "url",
                        format!(
                            "scheme `{}` is not supported: use an http:// or https:// URL",
                            u.scheme()
                        ),
                    ));
                    None
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    issues.push(SettingIssue::new(
                        "url",
                        "the URL has no host: write it like \"https://app.example.com/terra\"",
                    ));
                    None
                }
                Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                    issues.push(SettingIssue::new(
                        "url",
                        "credentials in the URL are not allowed (they would show up in logs): remove `user:password@` and put them in `headers`, e.g. headers = { Authorization = \"Basic …\" }",
                    ));
                    None
                }
                Ok(u) => Some(u),
            },
        };

        let mode = match self.signature.as_deref() {
            None | Some("terra") => SignatureMode::Terra,
            Some("standard") => SignatureMode::Standard,
            Some("both") => SignatureMode::Both,
            Some(other) => {
                issues.push(SettingIssue::new(
                    "signature",
                    format!("`{other}` is not a signature mode: use \"terra\" (default), \"standard\" (Standard Webhooks) or \"both\""),
                ));
                SignatureMode::Terra
            }
        };

        let secret = match self.signing_secret {
            Some(s) if !s.expose().is_empty() => Some(s),
            _ => {
                issues.push(SettingIssue::new(
                    "signing_secret",
                    "missing or empty: set `signing_secret` (e.g. \"${WEBHOOK_SECRET}\") to the secret the receiver uses to verify signatures",
                ));
                None
            }
        };

        let mut standard_key = None;
        if let (Some(s), true) = (&secret, mode.standard()) {
            match signature::standard_key(s.expose()) {
                Ok(k) => standard_key = Some(k),
                Err(e) => issues.push(SettingIssue::new(
                    "signing_secret",
                    format!("{e}: a Standard Webhooks secret is `whsec_` followed by base64; fix the secret or drop the `whsec_` prefix to use it as raw bytes"),
                )),
            }
        }

        let timeout = match self.request_timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d.is_zero() => {
                    issues.push(SettingIssue::new(
                        "request_timeout",
                        "must be more than zero, e.g. \"8s\"",
                    ));
                    DEFAULT_TIMEOUT
                }
                Ok(d) => d,
                Err(e) => {
                    issues.push(SettingIssue::new("request_timeout", e));
                    DEFAULT_TIMEOUT
                }
            },
        };

        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            let key = format!("headers.{k}");
            let name = match reqwest::header::HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    issues.push(SettingIssue::new(
                        key,
                        format!(
                            "`{k}` is not a valid HTTP header name: use letters, digits and `-`"
                        ),
                    ));
                    continue;
                }
            };
            if RESERVED_HEADERS.contains(&name.as_str()) {
                issues.push(SettingIssue::new(
                    key,
                    format!("`{k}` is set by Manifold itself and cannot be overridden: remove it from `headers`"),
                ));
                continue;
            }
            match reqwest::header::HeaderValue::from_str(v.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                Err(_) => issues.push(SettingIssue::new(
                    key,
                    "the value is not a valid HTTP header value: remove control characters and line breaks",
                )),
            }
        }

        match (url, secret) {
            (Some(url), Some(secret)) if issues.is_empty() => Ok(Settings {
                url,
                secret,
                standard_key,
                mode,
                timeout,
                allow_private_network: self
                    .allow_private_network
                    .unwrap_or(ctx.allow_private_network_default),
                headers,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "webhook"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebhookFactory;

impl DestinationFactory for WebhookFactory {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn build(
        &self,
        name: &str,
        settings: toml::Table,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Destination>, Vec<SettingIssue>> {
        let config: Config = toml::Value::Table(settings)
            .try_into()
            .map_err(|e| vec![serde_issue(&e)])?;
        let settings = config.validate(ctx)?;
        let dest = WebhookDestination::new(name, settings).map_err(|e| {
            vec![SettingIssue::new(
                "",
                format!("cannot create the HTTP client: {e}"),
            )]
        })?;
        Ok(Arc::new(dest))
    }
}
