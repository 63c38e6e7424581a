//! The S3 client, deliveries, `check()`, the blob store and error classification.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use manifold_core::blob::BlobStore;
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use tokio::sync::OnceCell;

use crate::layout::{self, PlannedObject};
use crate::{MAX_BATCH, Settings};
use manifold_core::newest::{self, CONFLICT_ATTEMPTS, KeyLocks, Stored, VERSION_META};

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A `type = "s3"` destination (also a [`BlobStore`] for claim checks).
pub struct S3Destination {
    name: String,
    settings: Settings,
    client: OnceCell<Client>,
    /// Writers of one record object, one at a time (see [`newest`]).
    locks: KeyLocks,
    /// Whether the "cannot read objects" warning was logged.
    unreadable_warned: AtomicBool,
}

/// A condition on a PutObject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Only if no object exists (`If-None-Match: *`).
    Absent,
    /// Only if the object still has this ETag (`If-Match`).
    Etag(String),
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Build an S3 client for `s` (reads the default credential chain when no keys are configured).
pub(crate) async fn make_client(s: &Settings) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(s.region.clone()))
        // The engine owns retries and backoff; one attempt per delivery here.
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(k) = &s.keys {
        loader = loader.credentials_provider(Credentials::new(
            k.access_key_id.expose(),
            k.secret_access_key.expose(),
            None,
            None,
            "manifold-config",
        ));
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared).force_path_style(s.force_path_style);
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
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

fn gzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

impl S3Destination {
    pub fn new(name: &str, settings: Settings) -> Self {
        Self {
            name: name.to_string(),
            settings,
            client: OnceCell::new(),
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

    /// The client, created on first use.
    pub async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| make_client(&self.settings))
            .await
    }

    /// Every object `d` becomes, with its final key (prefix and `.gz` applied).
    pub fn plan(&self, d: &Delivery) -> Result<Vec<PlannedObject>, String> {
        let mut objs = layout::plan(&self.settings.prefix, d)?;
        for o in &mut objs {
            o.key = layout::with_gzip(std::mem::take(&mut o.key), self.settings.gzip);
        }
        Ok(objs)
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        meta: &[(&str, Option<&str>)],
        compress: bool,
        precondition: &Precondition,
    ) -> Result<(), Outcome> {
        let s = &self.settings;
        let (body, encoding) = if compress {
            let z = gzip(&body)
                .map_err(|e| Outcome::internal(format!("cannot gzip the payload: {e}")))?;
            (Bytes::from(z), Some("gzip"))
        } else {
            (body, None)
        };
        let mut req = self
            .client()
            .await
            .put_object()
            .bucket(&s.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        if let Some(e) = encoding {
            req = req.content_encoding(e);
        }
        match precondition {
            Precondition::None => {}
            Precondition::Absent => req = req.if_none_match("*"),
            Precondition::Etag(tag) => req = req.if_match(tag),
        }
        for (k, v) in meta {
            if let Some(v) = v {
                req = req.metadata(*k, header_safe(v));
            }
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify(&e, "PutObject", Some(key)))
    }

    /// The stored object's record version and ETag (HeadObject).
    pub async fn stored(&self, key: &str) -> Result<Stored, Outcome> {
        let res = self
            .client()
            .await
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await;
        match res {
            Ok(o) => Ok(Stored::Present {
                version: o
                    .metadata()
                    .and_then(|m| m.get(VERSION_META))
                    .and_then(|v| v.trim().parse().ok()),
                tag: o.e_tag().unwrap_or_default().to_string(),
            }),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                Ok(Stored::Absent)
            }
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 403 => {
                Ok(Stored::Unreadable)
            }
            Err(e) => Err(self.classify(&e, "HeadObject", Some(key))),
        }
    }

    /// Write a record object unless the bucket holds a newer version of the record
    /// ([`newest`]); `Ok(false)` when skipped for that reason.
    async fn put_record(
        &self,
        d: &Delivery,
        o: &PlannedObject,
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
                            "HeadObject is refused (403): updated records are written without                              checking the stored version, so only this process keeps the newest                              one; grant s3:GetObject on the prefix"
                        );
                    }
                    Precondition::None
                }
            };
            match self
                .put(
                    &o.key,
                    o.body.clone(),
                    o.content_type,
                    meta,
                    self.settings.gzip,
                    &pre,
                )
                .await
            {
                Ok(()) => return Ok(true),
                // Another writer changed the object between our read and write: read again.
                Err(out) if lost_race(&out) => continue,
                Err(out) => return Err(out),
            }
        }
        Err(Outcome::retry(format!(
            "PutObject s3://{}/{}: the object kept changing under concurrent writers; will retry",
            self.settings.bucket, o.key
        )))
    }

    async fn deliver_one(&self, d: &Delivery) -> Outcome {
        let objects = match self.plan(d) {
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
                self.put(
                    &o.key,
                    o.body.clone(),
                    o.content_type,
                    &meta,
                    self.settings.gzip,
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

    /// Classify an SDK error for operation `op` (on `key`, if any).
    pub fn classify<E>(
        &self,
        err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        op: &str,
        key: Option<&str>,
    ) -> Outcome
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let s = &self.settings;
        let target = match key {
            Some(k) => format!("s3://{}/{k}", s.bucket),
            None => format!("s3://{}", s.bucket),
        };
        let detail = DisplayErrorContext(err).to_string();
        match err {
            SdkError::TimeoutError(_) => {
                Outcome::retry(format!("{op} {target}: timed out ({detail})"))
            }
            SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => Outcome::retry(format!(
                "{op} {target}: cannot reach {}: {detail}",
                self.endpoint_name()
            )),
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                if detail.to_ascii_lowercase().contains("credential") =>
            {
                Outcome::permanent(format!(
                    "{op} {target}: no usable AWS credentials ({detail}); set `access_key_id` and \
                     `secret_access_key`, or provide credentials through the AWS default chain \
                     (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, web identity or an instance role)"
                ))
            }
            SdkError::ConstructionFailure(_) => {
                Outcome::internal(format!("{op} {target}: cannot build the request: {detail}"))
            }
            SdkError::ServiceError(se) => {
                let raw = se.raw();
                let status = raw.status().as_u16();
                let code = se.err().code().unwrap_or("");
                let message = se.err().message().unwrap_or("");
                let response = Response::status(status).with_body(if code.is_empty() {
                    message.to_string()
                } else {
                    format!("{code}: {message}")
                });
                let after = raw
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let what = if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status} {code}")
                };
                let permanent = |reason: String| Outcome::Permanent {
                    reason,
                    response: response.clone(),
                };
                match (status, code) {
                    (
                        _,
                        "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "InternalError"
                        | "ServiceUnavailable"
                        | "OperationAborted"
                        | "RequestTimeTooSkewed",
                    )
                    | (429 | 500..=599, _) => Outcome::Retry {
                        after,
                        reason: format!("{op} {target}: {what} {message} (transient; will retry)"),
                        response,
                    },
                    (_, "NoSuchBucket") | (404, "" | "NotFound")
                        if key.is_none() || code == "NoSuchBucket" =>
                    {
                        permanent(format!(
                            "{op} {target}: {what}: bucket `{}` does not exist{}; create it or fix `bucket`",
                            s.bucket,
                            if s.endpoint.is_none() {
                                format!(" in region {}", s.region)
                            } else {
                                String::new()
                            }
                        ))
                    }
                    (
                        _,
                        "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                        | "ExpiredToken"
                        | "InvalidToken"
                        | "TokenRefreshRequired"
                        | "InvalidSecurity",
                    ) => permanent(format!(
                        "{op} {target}: {what}: the credentials were refused ({message}); fix \
                         `access_key_id`/`secret_access_key` (or the AWS credential chain)"
                    )),
                    (_, c) if c.starts_with("KMS") => permanent(format!(
                        "{op} {target}: {what} {message}: the bucket's KMS key refused the write; grant \
                         kms:GenerateDataKey and kms:Decrypt on the key to these credentials"
                    )),
                    (301 | 307, _)
                    | (
                        _,
                        "PermanentRedirect"
                        | "AuthorizationHeaderMalformed"
                        | "IllegalLocationConstraintException",
                    ) => {
                        let real = raw
                            .headers()
                            .get("x-amz-bucket-region")
                            .map(|r| format!(" (it is in {r})"))
                            .unwrap_or_default();
                        permanent(format!(
                            "{op} {target}: {what}: the bucket is not in region {}{real}; set `region` to the bucket's region",
                            s.region
                        ))
                    }
                    (403, _) | (_, "AccessDenied" | "AllAccessDisabled") => permanent(format!(
                        "{op} {target}: {what} {message}: access denied; grant s3:PutObject (and \
                         s3:GetObject for claim-check links) on arn:aws:s3:::{}/{}* to these credentials",
                        s.bucket,
                        if s.prefix.is_empty() {
                            String::new()
                        } else {
                            format!("{}/", s.prefix)
                        }
                    )),
                    (_, "EntityTooLarge") | (413, _) => permanent(format!(
                        "{op} {target}: {what}: the object is larger than the server accepts"
                    )),
                    (400..=499, _) => permanent(format!(
                        "{op} {target}: {what} {message}: the server refused the request"
                    )),
                    _ => Outcome::Retry {
                        after,
                        reason: format!("{op} {target}: unexpected {what} {message}"),
                        response,
                    },
                }
            }
            // Dispatch failures that are not I/O, malformed responses, future variants.
            _ => Outcome::retry(format!("{op} {target}: {detail}")),
        }
    }

    fn endpoint_name(&self) -> String {
        self.settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("S3 in {}", self.settings.region))
    }
}

/// A conditional write refused because the object changed (412) or a concurrent conditional
/// write was in progress (409 `ConditionalRequestConflict`).
fn lost_race(o: &Outcome) -> bool {
    matches!(o.response().and_then(|r| r.status), Some(412 | 409))
}

fn reason_of(o: &Outcome) -> String {
    o.reason().unwrap_or("failed").to_string()
}

#[async_trait]
impl Destination for S3Destination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        futures::future::join_all(batch.iter().map(|d| self.deliver_one(d))).await
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// HeadBucket, then a test PutObject and DeleteObject under the prefix.
    async fn check(&self) -> Result<(), String> {
        let s = &self.settings;
        let client = self.client().await;
        client
            .head_bucket()
            .bucket(&s.bucket)
            .send()
            .await
            .map_err(|e| reason_of(&self.classify(&e, "HeadBucket", None)))?;
        let key = layout::join(
            &s.prefix,
            &format!(".manifold-check/{}.txt", uuid::Uuid::new_v4()),
        );
        self.put(
            &key,
            Bytes::from_static(b"manifold check --connect: safe to delete\n"),
            "text/plain",
            &[],
            false,
            &Precondition::None,
        )
        .await
        .map_err(|o| reason_of(&o))?;
        client
            .delete_object()
            .bucket(&s.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "{} (the test object {key} was written but cannot be deleted; grant s3:DeleteObject or remove it by hand)",
                    reason_of(&self.classify(&e, "DeleteObject", Some(&key)))
                )
            })?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Destination {
    /// Writes under this destination's `prefix` (never gzip-compressed, so the link serves the
    /// payload as is).
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), Outcome> {
        let key = layout::join(&self.settings.prefix, key);
        S3Destination::put(
            self,
            &key,
            Bytes::copy_from_slice(body),
            content_type,
            &[],
            false,
            &Precondition::None,
        )
        .await
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, String> {
        let key = layout::join(&self.settings.prefix, key);
        let cfg = PresigningConfig::expires_in(expires).map_err(|e| e.to_string())?;
        let req = self
            .client()
            .await
            .get_object()
            .bucket(&self.settings.bucket)
            .key(&key)
            .presigned(cfg)
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        Ok(req.uri().to_string())
    }
}
