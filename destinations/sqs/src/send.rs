//! The SQS client, message building, batching, `check()` and error classification.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use manifold_core::blob::{BlobStores, claim_check};
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::{MAX_BATCH, Settings};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A `type = "sqs"` destination.
pub struct SqsDestination {
    name: String,
    settings: Settings,
    stores: BlobStores,
    client: OnceCell<Client>,
}

impl std::fmt::Debug for SqsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsDestination")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

/// One message ready to send.
#[derive(Debug, Clone)]
struct Msg {
    body: String,
    attrs: Vec<(&'static str, String)>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

impl Msg {
    /// Size as SQS counts it: body plus each attribute's name, type and value.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attrs
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }

    fn attribute_map(&self) -> std::collections::HashMap<String, MessageAttributeValue> {
        self.attrs
            .iter()
            .filter_map(|(k, v)| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .ok()
                    .map(|a| (k.to_string(), a))
            })
            .collect()
    }
}

/// Whether SQS accepts `s` as a message body (XML 1.0 characters: #x9, #xA, #xD, #x20–#xD7FF,
/// #xE000–#xFFFD, #x10000–#x10FFFF).
pub fn is_valid_body(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// A FIFO `MessageDeduplicationId`/`MessageGroupId`: `s` when it is 1–128 characters of
/// alphanumerics and ASCII punctuation, else the lowercase hex SHA-256 of `s`.
pub fn dedup_id(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
    {
        s.to_string()
    } else {
        hex::encode(Sha256::digest(s.as_bytes()))
    }
}

/// One outcome per entry id (`ids[i]` is entry `i`) from a `SendMessageBatch` answer: successful
/// → delivered; failed with `SenderFault` → permanent; failed otherwise → retry; missing from
/// both lists → retry.
pub fn entry_outcomes(ids: &[String], out: &SendMessageBatchOutput, queue: &str) -> Vec<Outcome> {
    ids.iter()
        .map(|id| {
            if out.successful().iter().any(|s| s.id() == id) {
                return Outcome::delivered();
            }
            match out.failed().iter().find(|f| f.id() == id) {
                Some(f) => {
                    let msg = f.message().unwrap_or("");
                    let response = Response::default().with_body(format!("{}: {msg}", f.code()));
                    if f.sender_fault() {
                        Outcome::Permanent {
                            reason: format!(
                                "SendMessageBatch {queue}: SQS refused this message ({} {msg}); it will not be accepted as is",
                                f.code()
                            ),
                            response,
                        }
                    } else {
                        Outcome::Retry {
                            after: None,
                            reason: format!(
                                "SendMessageBatch {queue}: SQS failed this message on its side ({} {msg}); will retry",
                                f.code()
                            ),
                            response,
                        }
                    }
                }
                None => Outcome::retry(format!(
                    "SendMessageBatch {queue}: SQS reported neither success nor failure for this message; will retry"
                )),
            }
        })
        .collect()
}

async fn make_client(s: &Settings) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(s.region.clone()))
        // The engine owns retries and backoff.
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
    let mut b = aws_sdk_sqs::config::Builder::from(&shared);
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

/// Error codes that may belong to one entry of a refused batch (worth sending each alone).
fn splittable(code: &str) -> bool {
    matches!(
        code,
        "InvalidParameterValue"
            | "InvalidMessageContents"
            | "MissingParameter"
            | "InvalidAttributeValue"
            | "InvalidAttributeName"
            | "BatchRequestTooLong"
            | "AWS.SimpleQueueService.BatchRequestTooLong"
            | "InvalidParameterValueException"
            | "MessageTooLong"
            | "ValidationError"
    )
}

impl SqsDestination {
    pub fn new(name: &str, settings: Settings, stores: BlobStores) -> Self {
        Self {
            name: name.to_string(),
            settings,
            stores,
            client: OnceCell::new(),
        }
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

    fn attrs(d: &Delivery, event_type: &str) -> Vec<(&'static str, String)> {
        let mut a = vec![
            ("type", event_type.to_string()),
            ("trace_id", d.trace_id().to_string()),
        ];
        if let Some(u) = d.user_id.as_deref().filter(|u| !u.is_empty()) {
            a.push(("user_id", u.to_string()));
        }
        a
    }

    /// The message for `d`: inline when it fits, else a claim check.
    async fn prepare(&self, d: &Delivery) -> Result<Msg, Outcome> {
        let s = &self.settings;
        let (group_id, dedup) = if s.fifo {
            (
                Some(dedup_id(d.user_id.as_deref().unwrap_or("unknown"))),
                Some(dedup_id(&d.id)),
            )
        } else {
            (None, None)
        };
        let attrs = Self::attrs(d, &d.event_type);
        let text = std::str::from_utf8(&d.body)
            .ok()
            .filter(|t| is_valid_body(t));
        if let Some(text) = text {
            let msg = Msg {
                body: text.to_string(),
                attrs: attrs.clone(),
                group_id: group_id.clone(),
                dedup_id: dedup.clone(),
            };
            if msg.size() <= s.max_message_size {
                return Ok(msg);
            }
        }
        let why = match text {
            Some(_) => format!(
                "the payload is {} bytes with its attributes, over this queue's limit of {} bytes (`max_message_size`)",
                d.body.len(),
                s.max_message_size
            ),
            None => format!(
                "the payload ({}) is not text SQS accepts as a message body",
                d.content_type
            ),
        };
        let Some(target) = &s.claim_check else {
            return Err(Outcome::permanent(format!(
                "{why}; set `claim_check = \"<name of an s3 destination>\"` on destination `{}` so large payloads are stored there and sent as an s3_payload link",
                self.name
            )));
        };
        let Some(store) = self.stores.get(target) else {
            return Err(Outcome::internal(format!(
                "{why}, and the claim-check store `{target}` is not registered: `claim_check` must name an `s3` destination in the same config"
            )));
        };
        let message = claim_check(store.as_ref(), "", d, s.presign_expiry).await?;
        let body = message.to_string();
        let msg = Msg {
            body,
            attrs,
            group_id,
            dedup_id: dedup,
        };
        if msg.size() > s.max_message_size {
            return Err(Outcome::permanent(format!(
                "even the s3_payload message is {} bytes, over `max_message_size` = {}; raise `max_message_size`",
                msg.size(),
                s.max_message_size
            )));
        }
        Ok(msg)
    }

    async fn send_one(&self, m: &Msg) -> Outcome {
        let s = &self.settings;
        let mut req = self
            .client()
            .await
            .send_message()
            .queue_url(&s.queue_url)
            .message_body(&m.body)
            .set_message_attributes(Some(m.attribute_map()));
        if let Some(g) = &m.group_id {
            req = req.message_group_id(g);
        }
        if let Some(dd) = &m.dedup_id {
            req = req.message_deduplication_id(dd);
        }
        match req.send().await {
            Ok(_) => Outcome::delivered(),
            Err(e) => self.classify(&e, "SendMessage").0,
        }
    }

    async fn send_chunk(&self, chunk: &[Msg]) -> Vec<Outcome> {
        if chunk.len() == 1 {
            return vec![self.send_one(&chunk[0]).await];
        }
        let s = &self.settings;
        let ids: Vec<String> = (0..chunk.len()).map(|i| format!("m{i}")).collect();
        let mut entries = Vec::with_capacity(chunk.len());
        for (id, m) in ids.iter().zip(chunk) {
            let built = SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(&m.body)
                .set_message_attributes(Some(m.attribute_map()))
                .set_message_group_id(m.group_id.clone())
                .set_message_deduplication_id(m.dedup_id.clone())
                .build();
            match built {
                Ok(e) => entries.push(e),
                Err(e) => {
                    return vec![
                        Outcome::internal(format!("cannot build a batch entry: {e}"));
                        chunk.len()
                    ];
                }
            }
        }
        let res = self
            .client()
            .await
            .send_message_batch()
            .queue_url(&s.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match res {
            Ok(out) => entry_outcomes(&ids, &out, &s.queue_url),
            Err(e) => {
                let (outcome, split) = self.classify(&e, "SendMessageBatch");
                if split {
                    // One entry may be the culprit: send each alone so it only fails itself.
                    let mut outs = Vec::with_capacity(chunk.len());
                    for m in chunk {
                        outs.push(self.send_one(m).await);
                    }
                    outs
                } else {
                    vec![outcome; chunk.len()]
                }
            }
        }
    }

    /// Classify an SDK error; the flag says whether the refusal may belong to one batch entry.
    pub fn classify<E>(
        &self,
        err: &SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
        op: &str,
    ) -> (Outcome, bool)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let s = &self.settings;
        let q = &s.queue_url;
        let detail = DisplayErrorContext(err).to_string();
        let out = match err {
            SdkError::TimeoutError(_) => Outcome::retry(format!("{op} {q}: timed out ({detail})")),
            SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => Outcome::retry(format!(
                "{op} {q}: cannot reach {}: {detail}",
                s.endpoint
                    .clone()
                    .unwrap_or_else(|| format!("SQS in {}", s.region))
            )),
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                if detail.to_ascii_lowercase().contains("credential") =>
            {
                Outcome::permanent(format!(
                    "{op} {q}: no usable AWS credentials ({detail}); set `access_key_id` and \
                     `secret_access_key`, or provide credentials through the AWS default chain"
                ))
            }
            SdkError::ConstructionFailure(_) => {
                Outcome::internal(format!("{op} {q}: cannot build the request: {detail}"))
            }
            SdkError::ServiceError(se) => {
                let raw = se.raw();
                let status = raw.status().as_u16();
                let code = se.err().code().unwrap_or("");
                let message = se.err().message().unwrap_or("");
                let response = Response::status(status).with_body(format!("{code}: {message}"));
                let what = format!("HTTP {status} {code}");
                let permanent = |reason: String| Outcome::Permanent {
                    reason,
                    response: response.clone(),
                };
                let out = match (status, code) {
                    (
                        _,
                        "RequestThrottled"
                        | "ThrottlingException"
                        | "KmsThrottled"
                        | "KMS.ThrottlingException"
                        | "ServiceUnavailable"
                        | "InternalError"
                        | "InternalFailure"
                        | "RequestTimeout"
                        | "OverLimit",
                    )
                    | (429 | 500..=599, _) => Outcome::Retry {
                        after: None,
                        reason: format!("{op} {q}: {what} {message} (transient; will retry)"),
                        response,
                    },
                    (
                        _,
                        "AWS.SimpleQueueService.NonExistentQueue"
                        | "QueueDoesNotExist"
                        | "NonExistentQueue",
                    ) => permanent(format!(
                        "{op} {q}: {what}: the queue does not exist (or is in another region than {}); create it or fix `queue_url`/`region`",
                        s.region
                    )),
                    (
                        _,
                        "InvalidClientTokenId"
                        | "SignatureDoesNotMatch"
                        | "UnrecognizedClientException"
                        | "ExpiredToken"
                        | "InvalidSecurity"
                        | "IncompleteSignature"
                        | "MissingAuthenticationToken",
                    ) => permanent(format!(
                        "{op} {q}: {what}: the credentials were refused ({message}); fix \
                             `access_key_id`/`secret_access_key` (or the AWS credential chain)"
                    )),
                    (_, c) if c.starts_with("Kms") || c.starts_with("KMS") => permanent(format!(
                        "{op} {q}: {what} {message}: the queue's KMS key refused; grant \
                         kms:GenerateDataKey and kms:Decrypt on it to these credentials"
                    )),
                    (403, _) | (_, "AccessDenied" | "AccessDeniedException") => permanent(format!(
                        "{op} {q}: {what} {message}: access denied; grant sqs:SendMessage on the queue to these credentials"
                    )),
                    (_, c) if splittable(c) => permanent(format!(
                        "{op} {q}: {what} {message}: SQS refused the message"
                    )),
                    (400..=499, _) => permanent(format!(
                        "{op} {q}: {what} {message}: SQS refused the request"
                    )),
                    _ => Outcome::Retry {
                        after: None,
                        reason: format!("{op} {q}: unexpected {what} {message}"),
                        response,
                    },
                };
                return (out, splittable(code));
            }
            _ => Outcome::retry(format!("{op} {q}: {detail}")),
        };
        (out, false)
    }
}

#[async_trait]
impl Destination for SqsDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let prepared = futures::future::join_all(batch.iter().map(|d| self.prepare(d))).await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        // Greedy chunks: at most 10 entries and at most `max_message_size` bytes per request.
        let mut chunks: Vec<Vec<(usize, Msg)>> = Vec::new();
        let mut current: Vec<(usize, Msg)> = Vec::new();
        let mut total = 0;
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Err(o) => outcomes[i] = Some(o),
                Ok(m) => {
                    let size = m.size();
                    if !current.is_empty()
                        && (current.len() == MAX_BATCH
                            || total + size > self.settings.max_message_size)
                    {
                        chunks.push(std::mem::take(&mut current));
                        total = 0;
                    }
                    total += size;
                    current.push((i, m));
                }
            }
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        for chunk in chunks {
            let msgs: Vec<Msg> = chunk.iter().map(|(_, m)| m.clone()).collect();
            let outs = self.send_chunk(&msgs).await;
            for ((i, _), o) in chunk.iter().zip(outs) {
                outcomes[*i] = Some(o);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::internal("no outcome computed for this item")))
            .collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// FIFO queues order messages per `MessageGroupId` (the user id) in the order they are
    /// sent, so the engine sends one user's messages one batch at a time.
    fn ordered_by_user(&self) -> bool {
        self.settings.fifo
    }

    /// Sends a Terra-style `healthcheck` message (proves reachability, credentials and
    /// sqs:SendMessage), and checks that the claim-check store exists.
    async fn check(&self) -> Result<(), String> {
        if let Some(t) = &self.settings.claim_check
            && self.stores.get(t).is_none()
        {
            return Err(format!(
                "`claim_check = \"{t}\"` names no `s3` destination in this config"
            ));
        }
        let trace = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "type": "healthcheck",
            "status": "success",
            "creation_timestamp": chrono::Utc::now().to_rfc3339(),
            "trace_id": trace,
            "message": "manifold check --connect",
        });
        let m = Msg {
            body: body.to_string(),
            attrs: vec![("type", "healthcheck".into()), ("trace_id", trace.clone())],
            group_id: self
                .settings
                .fifo
                .then(|| "manifold-healthcheck".to_string()),
            dedup_id: self.settings.fifo.then(|| trace.clone()),
        };
        match self.send_one(&m).await {
            Outcome::Delivered { .. } => Ok(()),
            other => Err(other.reason().unwrap_or("failed").to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};

    use super::*;

    #[test]
    fn entry_outcomes_follow_each_entry() {
        let ok = |id: &str| {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id("x")
                .md5_of_message_body("y")
                .build()
                .unwrap()
        };
        let failed = |id: &str, sender: bool| {
            BatchResultErrorEntry::builder()
                .id(id)
                .sender_fault(sender)
                .code(if sender {
                    "InvalidParameterValue"
                } else {
                    "InternalError"
                })
                .message("m")
                .build()
                .unwrap()
        };
        let out = SendMessageBatchOutput::builder()
            .successful(ok("m0"))
            .successful(ok("m3"))
            .failed(failed("m1", true))
            .failed(failed("m2", false))
            .build()
            .unwrap();
        let ids: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        let o = entry_outcomes(&ids, &out, "q");
        assert!(matches!(o[0], Outcome::Delivered { .. }));
        assert!(
            matches!(&o[1], Outcome::Permanent { reason, .. } if reason.contains("InvalidParameterValue"))
        );
        assert!(matches!(&o[2], Outcome::Retry { reason, .. } if reason.contains("InternalError")));
        assert!(matches!(o[3], Outcome::Delivered { .. }));
        assert!(matches!(&o[4], Outcome::Retry { reason, .. } if reason.contains("neither")));
    }

    #[test]
    fn dedup_ids_are_valid_for_fifo() {
        assert_eq!(dedup_id("0190-ab:sqs"), "0190-ab:sqs");
        let long = "x".repeat(129);
        assert_eq!(dedup_id(&long).len(), 64);
        assert_eq!(dedup_id("été").len(), 64);
        assert_eq!(dedup_id("a b").len(), 64, "spaces are not allowed");
        assert_eq!(dedup_id("").len(), 64);
    }

    #[test]
    fn bodies_must_be_xml_characters() {
        assert!(is_valid_body("{\"a\":\"é\\n\"}\n\t"));
        assert!(!is_valid_body("a\u{0}b"));
        assert!(!is_valid_body("\u{FFFE}"));
    }

    #[test]
    fn message_size_counts_attributes() {
        let m = Msg {
            body: "1234".into(),
            attrs: vec![("type", "sleep".into())],
            group_id: None,
            dedup_id: None,
        };
        assert_eq!(m.size(), 4 + 4 + 6 + 5);
    }
}
