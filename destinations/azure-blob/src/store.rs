//! The HTTP client, deliveries, `check()`, the blob store and error classification.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use manifold_core::blob::BlobStore;
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use reqwest::{Method, StatusCode};

use crate::sas::{self, API_VERSION, SasRequest};
use crate::{Auth, MAX_BATCH, Settings, layout};
use manifold_core::newest::{self, CONFLICT_ATTEMPTS, KeyLocks, Stored, VERSION_META};

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of the SAS the destination signs for its own requests.
const WRITE_SAS_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// A `type = "azure-blob"` destination (also a [`BlobStore`] for claim checks).
pub struct AzureBlobDestination {
    name: String,
    settings: Settings,
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Writers of one record blob, one at a time (see [`newest`]).
    locks: KeyLocks,
    /// Whether the "cannot read blobs" warning was logged.
    unreadable_warned: AtomicBool,
}

/// A condition on a Put Blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Only if no blob exists (`If-None-Match: *`).
    Absent,
    /// Only if the blob still has this ETag (`If-Match`).
    Etag(String),
}

/// A blob upload: body, content type, metadata and condition.
type Upload<'a> = (
    Bytes,
    &'a str,
    &'a [(&'a str, Option<&'a str>)],
    &'a Precondition,
);

impl std::fmt::Debug for AzureBlobDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobDestination")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

/// HTTP header values must be visible ASCII: percent-encode anything else.
fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of `<Message>` in an Azure XML error body (or the body, shortened).
fn error_message(body: &str) -> String {
    let msg = body
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(m, _)| m)
        .unwrap_or(body);
    let first = msg.lines().next().unwrap_or("").trim();
    first.chars().take(300).collect()
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

impl AzureBlobDestination {
    pub fn new(name: &str, settings: Settings) -> Self {
        Self {
            name: name.to_string(),
            settings,
            client: OnceLock::new(),
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

    /// Blob name → full blob URL without a query.
    pub fn blob_url(&self, name: &str) -> String {
        format!(
            "{}/{}",
            self.settings.container_url(),
            sas::encode_path(name)
        )
    }

    /// The SAS query for a request on `blob` (container-wide when signing with the key).
    fn request_sas(&self, permissions: &str) -> String {
        match &self.settings.auth {
            Auth::Sas { query, .. } => query.expose().to_string(),
            Auth::Key { account, key } => sas::service_sas(
                &SasRequest {
                    account,
                    container: &self.settings.container,
                    blob: None,
                    permissions,
                    expiry: Utc::now() + WRITE_SAS_LIFETIME,
                },
                &key.0,
            ),
        }
    }

    /// A read-only link to blob `name` valid for `expires`.
    pub fn read_url(&self, name: &str, expires: Duration) -> Result<String, String> {
        let query = match &self.settings.auth {
            Auth::Sas { query, permissions } => {
                if !permissions.as_deref().unwrap_or("").contains('r') {
                    return Err(format!(
                        "the configured SAS grants `sp={}`, which cannot read blobs; add `r` to it (or use `connection_string`) so claim-check links work",
                        permissions.as_deref().unwrap_or("")
                    ));
                }
                query.expose().to_string()
            }
            Auth::Key { account, key } => sas::service_sas(
                &SasRequest {
                    account,
                    container: &self.settings.container,
                    blob: Some(name),
                    permissions: "r",
                    expiry: Utc::now()
                        + chrono::TimeDelta::from_std(expires)
                            .map_err(|e| format!("expiry out of range: {e}"))?,
                },
                &key.0,
            ),
        };
        Ok(format!("{}?{query}", self.blob_url(name)))
    }

    /// Classify a failed request (`op` on blob `name`).
    pub fn classify_error(&self, e: &reqwest::Error, op: &str, name: &str) -> Outcome {
        let target = self.blob_url(name);
        if e.is_timeout() {
            Outcome::retry(format!("{op} {target}: timed out ({e})"))
        } else if e.is_connect() {
            Outcome::retry(format!(
                "{op} {target}: cannot reach {}: {e}",
                self.settings.service_url
            ))
        } else {
            Outcome::retry(format!("{op} {target}: {e}"))
        }
    }

    /// Classify an HTTP answer that is not a success.
    pub fn classify_status(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        after: Option<Duration>,
        op: &str,
        name: &str,
    ) -> Outcome {
        let s = &self.settings;
        let target = format!("{}/{}", s.container, name);
        let what = if code.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {} {code}", status.as_u16())
        };
        let response = Response::status(status.as_u16()).with_body(if code.is_empty() {
            message.to_string()
        } else {
            format!("{code}: {message}")
        });
        let permanent = |reason: String| Outcome::Permanent {
            reason,
            response: response.clone(),
        };
        let credential = match s.auth {
            Auth::Sas { .. } => "`sas_url`",
            Auth::Key { .. } => "`connection_string`",
        };
        match (status.as_u16(), code) {
            (429 | 500..=599, _) | (_, "ServerBusy" | "OperationTimedOut" | "InternalError") => {
                Outcome::Retry {
                    after,
                    reason: format!("{op} {target}: {what} {message} (transient; will retry)"),
                    response,
                }
            }
            (404, _) | (_, "ContainerNotFound") => permanent(format!(
                "{op} {target}: {what}: container `{}` does not exist at {}; create it or fix `container`",
                s.container, s.service_url
            )),
            (401 | 403, _) => permanent(format!(
                "{op} {target}: {what} {message}: the credentials were refused; check {credential}: \
                 the SAS must be unexpired (`se`), signed for container `{}` (or the account) and grant \
                 at least `cw` (create, write) — or the account key must be current",
                s.container
            )),
            (413, _) | (_, "RequestBodyTooLarge") => permanent(format!(
                "{op} {target}: {what}: the blob is larger than the service accepts in one request"
            )),
            (400..=499, _) => permanent(format!(
                "{op} {target}: {what} {message}: the service refused the request"
            )),
            _ => Outcome::Retry {
                after,
                reason: format!("{op} {target}: unexpected {what} {message}"),
                response,
            },
        }
    }

    /// Send one request on blob `name`; `Ok(status)` for 2xx.
    async fn send(
        &self,
        method: Method,
        op: &str,
        name: &str,
        permissions: &str,
        body: Option<Upload<'_>>,
    ) -> Result<StatusCode, Outcome> {
        let client = self.client()?;
        let url = format!("{}?{}", self.blob_url(name), self.request_sas(permissions));
        let mut req = client
            .request(method, &url)
            .header("x-ms-version", API_VERSION)
            .header(
                "x-ms-date",
                Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            );
        if let Some((bytes, content_type, meta, precondition)) = body {
            req = req
                .header("x-ms-blob-type", "BlockBlob")
                .header(reqwest::header::CONTENT_TYPE, content_type);
            match precondition {
                Precondition::None => {}
                Precondition::Absent => req = req.header(reqwest::header::IF_NONE_MATCH, "*"),
                Precondition::Etag(tag) => req = req.header(reqwest::header::IF_MATCH, tag),
            }
            for (k, v) in meta {
                if let Some(v) = v {
                    req = req.header(format!("x-ms-meta-{k}"), header_safe(v));
                }
            }
            req = req.body(bytes);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify_error(&e, op, name))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status);
        }
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(self.classify_status(status, &code, &error_message(&text), after, op, name))
    }

    /// Write (or overwrite) one block blob, if `precondition` holds.
    pub async fn put_blob(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        meta: &[(&str, Option<&str>)],
        precondition: &Precondition,
    ) -> Result<(), Outcome> {
        self.send(
            Method::PUT,
            "Put Blob",
            name,
            "cw",
            Some((body, content_type, meta, precondition)),
        )
        .await
        .map(|_| ())
    }

    /// The stored blob's record version and ETag (Get Blob Properties).
    pub async fn stored(&self, name: &str) -> Result<Stored, Outcome> {
        let op = "Get Blob Properties";
        let client = self.client()?;
        let url = format!("{}?{}", self.blob_url(name), self.request_sas("r"));
        let resp = client
            .head(&url)
            .header("x-ms-version", API_VERSION)
            .header(
                "x-ms-date",
                Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            )
            .send()
            .await
            .map_err(|e| self.classify_error(&e, op, name))?;
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match status.as_u16() {
            200..=299 => Ok(Stored::Present {
                version: header(&format!("x-ms-meta-{VERSION_META}"))
                    .and_then(|v| v.trim().parse().ok()),
                tag: header("etag").unwrap_or_default(),
            }),
            404 => Ok(Stored::Absent),
            403 => Ok(Stored::Unreadable),
            _ => {
                let code = header("x-ms-error-code").unwrap_or_default();
                let after = retry_after(resp.headers());
                Err(self.classify_status(status, &code, "", after, op, name))
            }
        }
    }

    /// Write a record blob unless the container holds a newer version of the record
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
            let pre = match stored {
                Stored::Absent => Precondition::Absent,
                Stored::Present { tag, .. } if !tag.is_empty() => Precondition::Etag(tag),
                Stored::Present { .. } => Precondition::None,
                Stored::Unreadable => {
                    if !self.unreadable_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            destination = %self.name,
                            "reading blob properties is refused (403): updated records are \
                             written without checking the stored version, so only this process \
                             keeps the newest one; add `r` to the SAS"
                        );
                    }
                    Precondition::None
                }
            };
            match self
                .put_blob(&o.key, o.body.clone(), o.content_type, meta, &pre)
                .await
            {
                Ok(()) => return Ok(true),
                // Another writer changed the blob between our read and write: read again.
                Err(out) if lost_race(&out) => continue,
                Err(out) => return Err(out),
            }
        }
        Err(Outcome::retry(format!(
            "Put Blob {}/{}: the blob kept changing under concurrent writers; will retry",
            self.settings.container, o.key
        )))
    }

    async fn deliver_one(&self, d: &Delivery) -> Outcome {
        let objects = match layout::plan(&self.settings.prefix, d) {
            Ok(o) => o,
            Err(reason) => return Outcome::permanent(reason),
        };
        let version = d.version.to_string();
        let meta = [
            ("traceid", Some(d.trace_id())),
            ("userid", d.user_id.as_deref()),
            ("eventtype", Some(d.event_type.as_str())),
            (VERSION_META, Some(version.as_str())),
        ];
        let mut superseded = Vec::new();
        for o in &objects {
            let res = if newest::is_record_object(d, &o.key) {
                self.put_record(d, o, &meta).await
            } else {
                self.put_blob(
                    &o.key,
                    o.body.clone(),
                    o.content_type,
                    &meta,
                    &Precondition::None,
                )
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
}

/// A conditional Put Blob refused because the blob changed (412 `ConditionNotMet`) or appeared
/// (409 `BlobAlreadyExists`).
fn lost_race(o: &Outcome) -> bool {
    matches!(o.response().and_then(|r| r.status), Some(412 | 409))
}

fn reason_of(o: &Outcome) -> String {
    o.reason().unwrap_or("failed").to_string()
}

#[async_trait]
impl Destination for AzureBlobDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        futures::future::join_all(batch.iter().map(|d| self.deliver_one(d))).await
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Writes a small test blob under the prefix, then tries to delete it (a SAS with only `cw`
    /// cannot delete: the blob then stays, which is reported in the log, not as a failure).
    async fn check(&self) -> Result<(), String> {
        let name = layout::join(
            &self.settings.prefix,
            &format!(".manifold-check/{}.txt", uuid::Uuid::new_v4()),
        );
        self.put_blob(
            &name,
            Bytes::from_static(b"manifold check --connect: safe to delete\n"),
            "text/plain",
            &[],
            &Precondition::None,
        )
        .await
        .map_err(|o| reason_of(&o))?;
        if let Err(o) = self
            .send(Method::DELETE, "Delete Blob", &name, "d", None)
            .await
        {
            tracing::warn!(
                destination = %self.name,
                blob = %name,
                "check --connect: the test blob was written but cannot be deleted ({}); remove it by hand or grant `d`",
                reason_of(&o)
            );
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for AzureBlobDestination {
    /// Writes under this destination's `prefix`.
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), Outcome> {
        let name = layout::join(&self.settings.prefix, key);
        self.put_blob(
            &name,
            Bytes::copy_from_slice(body),
            content_type,
            &[],
            &Precondition::None,
        )
        .await
    }

    /// A read SAS signed with the account key, or the configured SAS URL if it grants `r` (its
    /// own expiry then applies, not `expires`).
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, String> {
        self.read_url(&layout::join(&self.settings.prefix, key), expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn dest() -> AzureBlobDestination {
        let c: Config = toml::from_str(
            "container = \"health\"\nconnection_string = \"AccountName=acct;AccountKey=a2V5\"",
        )
        .unwrap();
        AzureBlobDestination::new("az", c.validate().unwrap())
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
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn busy_and_server_errors_retry_with_the_hint() {
        let d = dest();
        for (code, err) in [
            (503, "ServerBusy"),
            (500, "InternalError"),
            (500, "OperationTimedOut"),
            (429, ""),
        ] {
            match d.classify_status(
                StatusCode::from_u16(code).unwrap(),
                err,
                "busy",
                Some(Duration::from_secs(3)),
                "Put Blob",
                "a.json",
            ) {
                Outcome::Retry {
                    after, response, ..
                } => {
                    assert_eq!(after, Some(Duration::from_secs(3)));
                    assert_eq!(response.status, Some(code));
                }
                o => panic!("{code} {err}: {o:?}"),
            }
        }
    }

    #[test]
    fn auth_and_missing_container_are_permanent_with_the_fix() {
        let d = dest();
        let o = d.classify_status(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            "sig",
            None,
            "Put Blob",
            "a",
        );
        assert!(
            matches!(&o, Outcome::Permanent { reason, .. }
            if reason.contains("`cw`") && reason.contains("`connection_string`")),
            "{o:?}"
        );
        let o = d.classify_status(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "",
            None,
            "Put Blob",
            "a",
        );
        assert!(
            matches!(&o, Outcome::Permanent { reason, .. } if reason.contains("container `health` does not exist")),
            "{o:?}"
        );
        let o = d.classify_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "",
            None,
            "Put Blob",
            "a",
        );
        assert!(
            matches!(&o, Outcome::Permanent { reason, .. } if reason.contains("larger")),
            "{o:?}"
        );
    }

    #[test]
    fn xml_error_messages_are_summarised() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>";
        assert_eq!(
            error_message(body),
            "Server failed to authenticate the request."
        );
    }
}
