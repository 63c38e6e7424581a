//! Sending one delivery and classifying the answer. Every way a delivery can fail ends in
//! [`WebhookDestination::deliver_one`] or [`classify`].

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manifold_core::config::Secret;
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

use crate::signature;
use crate::ssrf::{self, Blocked, GuardedResolver};
use crate::{Settings, SignatureMode};

/// How much of a response body is kept in [`Response::body`].
const KEEP_BODY: usize = 1024;
/// How much of a body is put in a reason.
const REASON_BODY: usize = 200;
/// Bodies up to this size are read to the end so the connection can be reused.
const DRAIN_BODY: usize = 64 * 1024;

/// A webhook endpoint. Built by [`crate::WebhookFactory`].
pub struct WebhookDestination {
    name: String,
    url: url::Url,
    client: reqwest::Client,
    secret: Secret,
    standard_key: Option<Vec<u8>>,
    mode: SignatureMode,
    timeout: Duration,
    allow_private_network: bool,
    headers: HeaderMap,
}

impl std::fmt::Debug for WebhookDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDestination")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("allow_private_network", &self.allow_private_network)
            .finish_non_exhaustive()
    }
}

impl WebhookDestination {
    pub(crate) fn new(name: &str, s: Settings) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            // No cap on idle connections: in-flight requests never exceed the destination's
            // `concurrency`, and a cap below it closed and reopened connections at full load.
            .pool_max_idle_per_host(usize::MAX)
            .http1_only()
            .no_proxy();
        if !s.allow_private_network {
            builder = builder.dns_resolver(GuardedResolver);
        }
        Ok(Self {
            name: name.to_string(),
            url: s.url,
            client: builder.build()?,
            secret: s.secret,
            standard_key: s.standard_key,
            mode: s.mode,
            timeout: s.timeout,
            allow_private_network: s.allow_private_network,
            headers: s.headers,
        })
    }

    /// The literal IP of the URL, if it is one (these never go through the resolver).
    fn literal_ip(&self) -> Option<IpAddr> {
        match self.url.host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }

    /// All headers of one attempt (body signing happens here).
    fn headers_for(&self, d: &Delivery, now: i64) -> Result<HeaderMap, String> {
        fn value(s: &str) -> Result<HeaderValue, String> {
            HeaderValue::from_str(s).map_err(|_| format!("`{s}` is not a valid header value"))
        }
        let mut h = self.headers.clone();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(d.content_type));
        h.insert(
            HeaderName::from_static("x-terra-trace-id"),
            value(d.trace_id())?,
        );
        h.insert(
            HeaderName::from_static("x-terra-ordering-timestamp"),
            HeaderValue::from(d.created_at.timestamp_millis()),
        );
        if let Some(r) = &d.terra_reference {
            h.insert(HeaderName::from_static("terra-reference"), value(r)?);
        }
        if self.mode.terra() {
            let sig = signature::terra_signature(self.secret.expose().as_bytes(), now, &d.body);
            h.insert(HeaderName::from_static("terra-signature"), value(&sig)?);
        }
        if self.mode.standard() {
            let key = self
                .standard_key
                .as_deref()
                .unwrap_or(self.secret.expose().as_bytes());
            let sig = signature::standard_signature(key, &d.id, now, &d.body);
            h.insert(HeaderName::from_static("webhook-id"), value(&d.id)?);
            h.insert(
                HeaderName::from_static("webhook-timestamp"),
                HeaderValue::from(now),
            );
            h.insert(HeaderName::from_static("webhook-signature"), value(&sig)?);
        }
        Ok(h)
    }

    /// One attempt of one delivery.
    pub async fn deliver_one(&self, d: &Delivery) -> Outcome {
        if !self.allow_private_network
            && let Some(ip) = self.literal_ip()
            && let Err(blocked) = ssrf::check_ip(&ip.to_string(), ip)
        {
            return Outcome::permanent(blocked.to_string());
        }
        let headers = match self.headers_for(d, Utc::now().timestamp()) {
            Ok(h) => h,
            Err(e) => return Outcome::permanent(format!("cannot build the request headers: {e}")),
        };
        let sent = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(d.body.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return self.request_error(e),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_prefix(&mut resp).await;
        let outcome = classify(status, retry_after, location.as_deref(), body);
        tracing::debug!(destination = %self.name, delivery = %d.id, attempt = d.attempt,
            status = status.as_u16(), class = outcome.class(), "webhook attempt");
        outcome
    }

    fn request_error(&self, e: reqwest::Error) -> Outcome {
        let e = e.without_url();
        if let Some(blocked) = find_blocked(&e) {
            return Outcome::permanent(blocked.to_string());
        }
        if e.is_builder() {
            return Outcome::internal(format!("cannot build the request: {}", chain(&e)));
        }
        let reason = if e.is_timeout() {
            format!("no response within {:?} (request_timeout)", self.timeout)
        } else if e.is_connect() {
            format!("cannot connect to {}: {}", host_port(&self.url), chain(&e))
        } else {
            format!("request to {} failed: {}", host_port(&self.url), chain(&e))
        };
        Outcome::retry(reason)
    }
}

fn host_port(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// An error and its causes on one line.
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn find_blocked<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Blocked> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(b) = c.downcast_ref::<Blocked>() {
            return Some(b);
        }
        cur = c.source();
    }
    None
}

/// Read the start of the body (and drain small bodies so the connection can be reused).
async fn read_prefix(resp: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while total < DRAIN_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                total += chunk.len();
                if buf.len() < KEEP_BODY {
                    buf.extend_from_slice(&chunk[..chunk.len().min(KEEP_BODY - buf.len())]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `Retry-After` as delay-seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Turn an HTTP answer into an outcome.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    location: Option<&str>,
    body: String,
) -> Outcome {
    let code = status.as_u16();
    let snippet = truncate(body.trim(), REASON_BODY).to_string();
    let response = Response {
        status: Some(code),
        body: (!body.is_empty()).then(|| truncate(&body, KEEP_BODY).to_string()),
    };
    let label = match status.canonical_reason() {
        Some(r) => format!("HTTP {code} {r}"),
        None => format!("HTTP {code}"),
    };
    let with_body = |s: String| {
        if snippet.is_empty() {
            s
        } else {
            format!("{s}: {snippet}")
        }
    };
    match code {
        200..=299 => Outcome::Delivered { response },
        300..=399 => Outcome::Permanent {
            reason: format!(
                "{label}{}: redirects are not followed; point url at the final address",
                location
                    .map(|l| format!(" to {}", truncate(l, REASON_BODY)))
                    .unwrap_or_default()
            ),
            response,
        },
        410 => Outcome::Gone {
            reason: with_body(format!(
                "{label}: the receiver says this endpoint is gone; the destination is disabled until it is re-enabled"
            )),
            response,
        },
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: with_body(label),
            response,
        },
        401 | 403 => Outcome::Permanent {
            reason: with_body(format!(
                "{label} (the receiver refused our credentials: check signing_secret and headers)"
            )),
            response,
        },
        400..=499 => Outcome::Permanent {
            reason: with_body(label),
            response,
        },
        _ => Outcome::Retry {
            after: retry_after,
            reason: with_body(format!("unexpected {label}")),
            response,
        },
    }
}

#[async_trait]
impl Destination for WebhookDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        futures::future::join_all(batch.iter().map(|d| self.deliver_one(d))).await
    }

    fn max_batch(&self) -> usize {
        1
    }

    /// Resolve the host (through the address guard) and open a TCP connection.
    async fn check(&self) -> Result<(), String> {
        let host = self
            .url
            .host_str()
            .ok_or("url has no host")?
            .trim_matches(['[', ']']);
        let port = self.url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match self.literal_ip() {
            Some(ip) => {
                if !self.allow_private_network {
                    ssrf::check_ip(host, ip).map_err(|e| e.to_string())?;
                }
                vec![SocketAddr::new(ip, port)]
            }
            None if self.allow_private_network => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect(),
            None => ssrf::resolve_checked(host)
                .await
                .map_err(|e| format!("cannot use {host}: {e}"))?
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect(),
        };
        let mut last = format!("{host} has no addresses");
        for addr in addrs {
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
                Err(_) => last = format!("no connection to {addr} within {:?}", self.timeout),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn classification() {
        let c = |code: u16, body: &str| {
            classify(StatusCode::from_u16(code).unwrap(), None, None, body.into())
        };
        assert_eq!(c(200, "").class(), "delivered");
        assert_eq!(c(204, "").class(), "delivered");
        for code in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(c(code, "").class(), "retryable", "{code}");
        }
        assert_eq!(c(410, "").class(), "gone");
        assert_eq!(c(301, "").class(), "permanent");
        let p = c(422, &"x".repeat(2000));
        assert_eq!(p.class(), "permanent");
        let reason = p.reason().unwrap();
        assert!(
            reason.starts_with("HTTP 422 Unprocessable Entity: xxx"),
            "{reason}"
        );
        assert!(reason.len() < 300);
        assert_eq!(
            p.response().unwrap().body.as_ref().unwrap().len(),
            KEEP_BODY
        );
        assert_eq!(truncate("éé", 3), "é");
    }
}
