//! The HTTP client, access tokens, deliveries, `check()`, the blob store and classification.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use manifold_core::blob::BlobStore;
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use crate::auth::{self, ServiceAccount};
use crate::{MAX_BATCH, Settings, layout};
use manifold_core::newest::{self, CONFLICT_ATTEMPTS, KeyLocks, Stored, VERSION_META};

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Refresh a token this long before it expires.
const TOKEN_SLACK: Duration = Duration::from_secs(60);
/// The role that lets a service account create objects.
const ROLE: &str = "roles/storage.objectCreator";
/// The role that also lets it overwrite (and read) objects.
const OVERWRITE_ROLE: &str = "roles/storage.objectUser";

/// A `type = "gcs"` destination (also a [`BlobStore`] for claim checks).
pub struct GcsDestination {
    name: String,
    settings: Settings,
    client: OnceLock<Result<reqwest::Client, String>>,
    account: OnceCell<Result<Option<Arc<ServiceAccount>>, String>>,
    token: Mutex<Option<(String, Instant)>>,
    /// Writers of one record object, one at a time (see [`newest`]).
    locks: KeyLocks,
    /// Whether the "cannot read objects" warning was logged.
    unreadable_warned: AtomicBool,
}

impl std::fmt::Debug for GcsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsDestination")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

/// A `Retry-After` header: seconds, or an HTTP date.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// `error.message` of a Google JSON error body (or the body, shortened).
fn error_message(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error_description"))
                .or_else(|| v.get("error"))
        })
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.lines().next().unwrap_or("").to_string());
    msg.chars().take(300).collect()
}

fn multipart_boundary() -> String {
    format!("manifold-{}", uuid::Uuid::new_v4().simple())
}

impl GcsDestination {
    pub fn new(name: &str, settings: Settings) -> Self {
        Self {
            name: name.to_string(),
            settings,
            client: OnceLock::new(),
            account: OnceCell::new(),
            token: Mutex::new(None),
            locks: KeyLocks::default(),
            unreadable_warned: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn client(&self) -> Result<&reqwest::Client, Outcome> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Outcome::internal(format!("cannot build the HTTP client: {e}")))
    }

    /// The service account (loaded on first use), or `None` for anonymous emulator access.
    async fn account(&self) -> Result<Option<Arc<ServiceAccount>>, Outcome> {
        self.account
            .get_or_init(|| async {
                match &self.settings.credentials_file {
                    None => Ok(None),
                    Some(path) => {
                        let path = path.clone();
                        tokio::task::spawn_blocking(move || ServiceAccount::load(&path))
                            .await
                            .map_err(|e| e.to_string())?
                            .map(|a| Some(Arc::new(a)))
                    }
                }
            })
            .await
            .clone()
            .map_err(Outcome::permanent)
    }

    /// A bearer token (cached until shortly before it expires), or `None` when anonymous.
    async fn bearer(&self) -> Result<Option<String>, Outcome> {
        let Some(account) = self.account().await? else {
            return Ok(None);
        };
        let mut cached = self.token.lock().await;
        if let Some((tok, until)) = cached.as_ref()
            && Instant::now() + TOKEN_SLACK < *until
        {
            return Ok(Some(tok.clone()));
        }
        let (tok, lifetime) = self.exchange(&account).await?;
        *cached = Some((tok.clone(), Instant::now() + lifetime));
        Ok(Some(tok))
    }

    /// OAuth 2.0 JWT bearer grant at the key's `token_uri`.
    async fn exchange(&self, account: &ServiceAccount) -> Result<(String, Duration), Outcome> {
        let client = self.client()?;
        let assertion = account.jwt(Utc::now());
        let uri = &account.token_uri;
        let resp = client
            .post(uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!(
                "grant_type={}&assertion={assertion}",
                auth::encode_component("urn:ietf:params:oauth:grant-type:jwt-bearer")
            ))
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Outcome::retry(format!("token exchange at {uri}: timed out ({e})"))
                } else {
                    Outcome::retry(format!("token exchange at {uri}: cannot reach it: {e}"))
                }
            })?;
        let status = resp.status();
        let after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Outcome::retry(format!(
                    "token exchange at {uri}: the answer is not JSON ({e})"
                ))
            })?;
            let tok = v
                .get("access_token")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Outcome::retry(format!(
                        "token exchange at {uri}: the answer has no access_token"
                    ))
                })?;
            let secs = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
            return Ok((tok.to_string(), Duration::from_secs(secs)));
        }
        let message = error_message(&text);
        let response = Response::status(status.as_u16()).with_body(message.clone());
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Outcome::Retry {
                after,
                reason: format!(
                    "token exchange at {uri}: HTTP {} {message} (transient; will retry)",
                    status.as_u16()
                ),
                response,
            });
        }
        Err(Outcome::Permanent {
            reason: format!(
                "token exchange at {uri}: HTTP {} {message}: the service-account key of {} was refused \
                 (deleted or disabled key, or a wrong clock); create a new JSON key and update `credentials_file`",
                status.as_u16(),
                account.client_email
            ),
            response,
        })
    }

    /// `gs://bucket/name` for messages.
    fn target(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.settings.bucket)
    }

    /// Classify a failed request.
    pub fn classify_error(&self, e: &reqwest::Error, op: &str, name: &str) -> Outcome {
        let target = self.target(name);
        if e.is_timeout() {
            Outcome::retry(format!("{op} {target}: timed out ({e})"))
        } else if e.is_connect() {
            Outcome::retry(format!(
                "{op} {target}: cannot reach {}: {e}",
                self.settings.origin
            ))
        } else {
            Outcome::retry(format!("{op} {target}: {e}"))
        }
    }

    /// Classify an HTTP answer that is not a success.
    pub fn classify_status(
        &self,
        status: StatusCode,
        message: &str,
        after: Option<Duration>,
        op: &str,
        name: &str,
    ) -> Outcome {
        let s = &self.settings;
        let target = self.target(name);
        let code = status.as_u16();
        let response = Response::status(code).with_body(message.to_string());
        let permanent = |reason: String| Outcome::Permanent {
            reason,
            response: response.clone(),
        };
        match code {
            408 | 429 | 500..=599 => Outcome::Retry {
                after,
                reason: format!("{op} {target}: HTTP {code} {message} (transient; will retry)"),
                response,
            },
            401 | 403 => permanent(format!(
                "{op} {target}: HTTP {code} {message}: access denied; grant {ROLE} on bucket `{}` \
                 to the service account in `credentials_file` — or {OVERWRITE_ROLE}, since an \
                 updated record overwrites its object, which also needs storage.objects.delete \
                 (add roles/storage.objectViewer for claim-check links) — or fix `credentials_file`",
                s.bucket
            )),
            404 => permanent(format!(
                "{op} {target}: HTTP 404 {message}: bucket `{}` does not exist{}; create it or fix `bucket`",
                s.bucket,
                if s.custom_endpoint {
                    format!(" at {}", s.origin)
                } else {
                    String::new()
                }
            )),
            413 => permanent(format!(
                "{op} {target}: HTTP 413: the object is larger than the service accepts"
            )),
            400..=499 => permanent(format!(
                "{op} {target}: HTTP {code} {message}: the service refused the request"
            )),
            _ => Outcome::Retry {
                after,
                reason: format!("{op} {target}: unexpected HTTP {code} {message}"),
                response,
            },
        }
    }

    /// Upload (or overwrite) one object with its metadata (`uploadType=multipart`). With
    /// `if_generation`, only if the object's generation is that (`0`: only if it does not exist).
    pub async fn put_object(
        &self,
        name: &str,
        body: &[u8],
        content_type: &str,
        meta: &[(&str, Option<&str>)],
        if_generation: Option<i64>,
    ) -> Result<(), Outcome> {
        let client = self.client()?;
        let bearer = self.bearer().await?;
        let metadata: serde_json::Map<String, Value> = meta
            .iter()
            .filter_map(|(k, v)| v.map(|v| ((*k).to_string(), json!(v))))
            .collect();
        let mut resource = json!({"name": name, "contentType": content_type});
        if !metadata.is_empty() {
            resource["metadata"] = Value::Object(metadata);
        }
        let boundary = multipart_boundary();
        let mut data = Vec::with_capacity(body.len() + 512);
        data.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        data.extend_from_slice(body);
        data.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.settings.origin,
            auth::encode_component(&self.settings.bucket)
        );
        if let Some(g) = if_generation {
            url.push_str(&format!("&ifGenerationMatch={g}"));
        }
        let mut req = client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(Bytes::from(data));
        if let Some(t) = &bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify_error(&e, "upload", name))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(self.classify_status(status, &error_message(&text), after, "upload", name))
    }

    /// Delete one object (used by `check()`).
    async fn delete_object(&self, name: &str) -> Result<(), Outcome> {
        let client = self.client()?;
        let bearer = self.bearer().await?;
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.settings.origin,
            auth::encode_component(&self.settings.bucket),
            auth::encode_component(name)
        );
        let mut req = client.delete(&url);
        if let Some(t) = &bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify_error(&e, "delete", name))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(self.classify_status(status, &error_message(&text), after, "delete", name))
    }

    /// The stored object's record version and generation (objects.get metadata).
    pub async fn stored(&self, name: &str) -> Result<Stored, Outcome> {
        let client = self.client()?;
        let bearer = self.bearer().await?;
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.settings.origin,
            auth::encode_component(&self.settings.bucket),
            auth::encode_component(name)
        );
        let mut req = client.get(&url);
        if let Some(t) = &bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify_error(&e, "get metadata", name))?;
        let status = resp.status();
        match status.as_u16() {
            404 => return Ok(Stored::Absent),
            403 => return Ok(Stored::Unreadable),
            _ => {}
        }
        let after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(self.classify_status(
                status,
                &error_message(&text),
                after,
                "get metadata",
                name,
            ));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            Outcome::retry(format!(
                "get metadata {}: the answer is not JSON ({e})",
                self.target(name)
            ))
        })?;
        let number = |x: Option<&Value>| match x {
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        Ok(Stored::Present {
            version: number(v.pointer(&format!("/metadata/{VERSION_META}"))),
            tag: number(v.get("generation"))
                .map(|g| g.to_string())
                .unwrap_or_default(),
        })
    }

    /// Write a record object unless the bucket holds a newer version of the record
    /// ([`newest`]); `Ok(false)` when skipped for that reason.
    async fn put_record(
        &self,
        d: &Delivery,
        o: &layout::PlannedObject,
        meta: &[(&str, Option<&str>)],
    ) -> Result<bool, Outcome> {
        let _writer = self.locks.lock(&o.key).await;
        for _ in 0..CONFLICT_ATTEMPTS {
            let stored = self.stored(&o.key).await?;
            if stored.is_newer_than(d.version) {
                return Ok(false);
            }
            let if_generation = match stored {
                Stored::Absent => Some(0),
                Stored::Present { tag, .. } => tag.parse::<i64>().ok(),
                Stored::Unreadable => {
                    if !self.unreadable_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            destination = %self.name,
                            "reading object metadata is refused (403): updated records are \
                             written without checking the stored version, so only this process \
                             keeps the newest one; grant {OVERWRITE_ROLE}"
                        );
                    }
                    None
                }
            };
            match self
                .put_object(&o.key, &o.body, o.content_type, meta, if_generation)
                .await
            {
                Ok(()) => return Ok(true),
                // Another writer changed the object between our read and write: read again.
                Err(out) if lost_race(&out) => continue,
                Err(out) => return Err(out),
            }
        }
        Err(Outcome::retry(format!(
            "upload {}: the object kept changing under concurrent writers; will retry",
            self.target(&o.key)
        )))
    }

    async fn deliver_one(&self, d: &Delivery) -> Outcome {
        let objects = match layout::plan(&self.settings.prefix, d) {
            Ok(o) => o,
            Err(reason) => return Outcome::permanent(reason),
        };
        let version = d.version.to_string();
        let meta = [
            ("trace-id", Some(d.trace_id())),
            ("user-id", d.user_id.as_deref()),
            ("event-type", Some(d.event_type.as_str())),
            (VERSION_META, Some(version.as_str())),
        ];
        let mut superseded = Vec::new();
        for o in &objects {
            let res = if newest::is_record_object(d, &o.key) {
                self.put_record(d, o, &meta).await
            } else {
                self.put_object(&o.key, &o.body, o.content_type, &meta, None)
                    .await
                    .map(|()| true)
            };
            match res {
                Ok(true) => {}
                Ok(false) => superseded.push(o.key.as_str()),
                Err(out) => return out,
            }
        }
        newest::delivered_unless_superseded(&superseded)
    }

    /// A GET link for object `name`: V4-signed with the key, or the emulator's media URL.
    pub async fn read_url(&self, name: &str, expires: Duration) -> Result<String, String> {
        let account = self
            .account()
            .await
            .map_err(|o| o.reason().unwrap_or("no credentials").to_string())?;
        let s = &self.settings;
        match account {
            Some(a) => Ok(a.signed_url(&s.origin, &s.bucket, name, Utc::now(), expires.as_secs())),
            None => Ok(format!(
                "{}/storage/v1/b/{}/o/{}?alt=media",
                s.origin,
                auth::encode_component(&s.bucket),
                auth::encode_component(name)
            )),
        }
    }
}

/// A conditional upload refused because the object's generation changed (412).
fn lost_race(o: &Outcome) -> bool {
    o.response().and_then(|r| r.status) == Some(412)
}

fn reason_of(o: &Outcome) -> String {
    o.reason().unwrap_or("failed").to_string()
}

#[async_trait]
impl Destination for GcsDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        futures::future::join_all(batch.iter().map(|d| self.deliver_one(d))).await
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Gets a token, writes a small test object under the prefix, then tries to delete it
    /// (roles/storage.objectCreator cannot delete: the object then stays, reported in the log).
    async fn check(&self) -> Result<(), String> {
        let name = layout::join(
            &self.settings.prefix,
            &format!(".manifold-check/{}.txt", uuid::Uuid::new_v4()),
        );
        self.put_object(
            &name,
            b"manifold check --connect: safe to delete\n",
            "text/plain",
            &[],
            None,
        )
        .await
        .map_err(|o| reason_of(&o))?;
        if let Err(o) = self.delete_object(&name).await {
            tracing::warn!(
                destination = %self.name,
                object = %name,
                "check --connect: the test object was written but cannot be deleted ({}); remove it by hand or grant storage.objects.delete",
                reason_of(&o)
            );
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for GcsDestination {
    /// Writes under this destination's `prefix`.
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), Outcome> {
        let name = layout::join(&self.settings.prefix, key);
        self.put_object(&name, body, content_type, &[], None).await
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, String> {
        self.read_url(&layout::join(&self.settings.prefix, key), expires)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn dest() -> GcsDestination {
        let c: Config =
            toml::from_str("bucket = \"my-bucket\"\ncredentials_file = \"/k.json\"").unwrap();
        GcsDestination::new("gcs", c.validate().unwrap())
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "12".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        let later = (Utc::now() + chrono::TimeDelta::seconds(90)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(80) && d <= Duration::from_secs(90),
            "{d:?}"
        );
    }

    #[test]
    fn throttling_and_server_errors_retry_with_the_hint() {
        let d = dest();
        for code in [408, 429, 500, 502, 503] {
            let o = d.classify_status(
                StatusCode::from_u16(code).unwrap(),
                "slow down",
                Some(Duration::from_secs(7)),
                "upload",
                "a.json",
            );
            match o {
                Outcome::Retry {
                    after, response, ..
                } => {
                    assert_eq!(after, Some(Duration::from_secs(7)));
                    assert_eq!(response.status, Some(code));
                }
                o => panic!("{code}: {o:?}"),
            }
        }
    }

    #[test]
    fn auth_and_missing_bucket_are_permanent_with_the_fix() {
        let d = dest();
        for code in [401, 403] {
            let o = d.classify_status(
                StatusCode::from_u16(code).unwrap(),
                "denied",
                None,
                "upload",
                "a",
            );
            assert!(
                matches!(&o, Outcome::Permanent { reason, .. }
                if reason.contains("roles/storage.objectCreator") && reason.contains("my-bucket")),
                "{o:?}"
            );
        }
        let o = d.classify_status(StatusCode::NOT_FOUND, "Not Found", None, "upload", "a");
        assert!(
            matches!(&o, Outcome::Permanent { reason, .. } if reason.contains("bucket `my-bucket` does not exist")),
            "{o:?}"
        );
        let o = d.classify_status(StatusCode::PAYLOAD_TOO_LARGE, "", None, "upload", "a");
        assert!(
            matches!(&o, Outcome::Permanent { reason, .. } if reason.contains("larger")),
            "{o:?}"
        );
    }

    #[test]
    fn google_error_bodies_are_summarised() {
        assert_eq!(
            error_message(
                r#"{"error":{"code":403,"message":"x@y does not have storage.objects.create access"}}"#
            ),
            "x@y does not have storage.objects.create access"
        );
        assert_eq!(
            error_message(r#"{"error":"invalid_grant","error_description":"Invalid JWT"}"#),
            "Invalid JWT"
        );
        assert_eq!(error_message("plain\nmore"), "plain");
    }
}
