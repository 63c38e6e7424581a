//! SQS destination: every Terra payload as a message on your queue, or an `s3_payload` claim
//! check when it does not fit.
//!
//! ```toml
//! [[destinations]]
//! name = "queue"
//! type = "sqs"
//! queue_url = "https://sqs.eu-west-2.amazonaws.com/123456789012/health-events"   # required
//! region = "eu-west-2"                    # default: read from an AWS queue URL's host
//! endpoint = "http://127.0.0.1:4566"      # default: AWS; or the queue URL's origin when its
//!                                         # host is not amazonaws.com (ElasticMQ, moto, …)
//! access_key_id = "${AWS_ACCESS_KEY_ID}"  # optional, with secret_access_key; otherwise the
//! secret_access_key = "${AWS_SECRET_ACCESS_KEY}"  # AWS default credential chain
//! claim_check = "bucket"                  # optional: name of an `s3` destination for payloads that do not fit
//! presign_expiry = "10m"                  # lifetime of the claim-check link (default 10m, max 7 days)
//! max_message_size = "256KiB"             # default 256 KiB; at most 1 MiB (the queue's MaximumMessageSize)
//! ```
//!
//! # Messages
//! * Body: the payload exactly (the Terra event JSON, or its FHIR bundle) when body plus
//!   attributes fit in `max_message_size`. Otherwise, with `claim_check` set, the payload is
//!   written to that S3 destination (key `<its prefix>/2022-03-16/claim-check/<type>/<user>-<trace id>.json`)
//!   and the body is Terra's `s3_payload` message:
//!   `{"type":"s3_payload","status":"success","url":"<pre-signed GET>","expires_in":600,
//!   "payload_reference":"2022-03-16/claim-check/…","payload_type":"sleep","user_id":…,
//!   "reference_id":…,"trace_id":…,"version":"2022-03-16"}`. Without `claim_check` an oversized
//!   payload fails permanently with a reason saying to configure one. Binary payloads (FIT files)
//!   are never valid message bodies: they always go through the claim check.
//! * Message attributes (String): `type` (the event type, also for `s3_payload` bodies),
//!   `user_id` (when the payload has a user), `trace_id` (the payload id: the same for every
//!   retry; deduplicate on it).
//! * FIFO queues (URL ending in `.fifo`): `MessageGroupId` = the user id (`unknown` without
//!   one), so a user's events stay ordered, and `MessageDeduplicationId` = the delivery id
//!   (SHA-256 hex of it if it is longer than 128 characters or has characters SQS refuses), so
//!   a retry within SQS's 5-minute window is dropped by SQS.
//! * Up to 10 deliveries go out in one `SendMessageBatch` (split further so a request stays within
//!   `max_message_size`); each entry gets its own outcome: a failed entry with `SenderFault`
//!   is permanent, otherwise retried. If SQS refuses a whole batch for a reason that may belong
//!   to one entry (invalid parameter, message too long), each entry is sent alone with
//!   `SendMessage` so one bad entry only fails itself.
//!
//! # How failures are classified
//! Connection refused/reset, timeouts, 5xx, throttling (`RequestThrottled`, `KmsThrottled`, 429)
//! → retry. Missing queue, refused credentials, missing `sqs:SendMessage` permission, KMS
//! refusals, invalid or oversized messages, other 4xx → permanent, with the fix in the reason.

mod send;

pub use send::{SqsDestination, dedup_id, entry_outcomes, is_valid_body};

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `presign_expiry` (Terra's SQS links: 600 s).
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(600);
/// Longest pre-signed URL S3 accepts (SigV4: 7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default `max_message_size`: SQS's classic limit, 256 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024;
/// SQS's hard limit for one message and for one batch request: 1 MiB.
pub const SQS_HARD_LIMIT: usize = 1024 * 1024;
/// SQS batches hold at most 10 entries.
pub const MAX_BATCH: usize = 10;

/// The SQS destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub queue_url: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub claim_check: Option<String>,
    pub presign_expiry: Option<String>,
    pub max_message_size: Option<toml::Value>,
}

/// Static credentials from the config file.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_url: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub keys: Option<StaticKeys>,
    pub claim_check: Option<String>,
    pub presign_expiry: Duration,
    pub max_message_size: usize,
    /// The queue URL ends in `.fifo`.
    pub fifo: bool,
}

const EXAMPLE_URL: &str = "https://sqs.eu-west-2.amazonaws.com/123456789012/health-events";

/// Region from an AWS queue URL host (`sqs.<region>.amazonaws.com`, `<region>.queue.amazonaws.com`).
pub fn region_from_host(host: &str) -> Option<String> {
    let parts: Vec<&str> = host.split('.').collect();
    let aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    if !aws || parts.len() < 4 {
        return None;
    }
    if parts[0] == "sqs" {
        Some(parts[1].to_string())
    } else if parts[1] == "queue" {
        Some(parts[0].to_string())
    } else {
        None
    }
}

fn is_aws_host(host: &str) -> bool {
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

fn region_ok(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let mut derived_region = None;
        let mut derived_endpoint = None;
        let queue_url = match self.queue_url.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "queue_url",
                    format!("missing: set `queue_url` to the queue's URL, e.g. \"{EXAMPLE_URL}\""),
                ));
                None
            }
            Some(raw) => {
                match url::Url::parse(raw) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                        let segs: Vec<&str> = u
                            .path_segments()
                            .map(|s| s.filter(|x| !x.is_empty()).collect())
                            .unwrap_or_default();
                        let name = segs.last().copied().unwrap_or("");
                        let base = name.strip_suffix(".fifo").unwrap_or(name);
                        if segs.len() != 2
                            || base.is_empty()
                            || name.len() > 80
                            || !base
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                        {
                            issues.push(SettingIssue::new(
                            "queue_url",
                            format!(
                                "`{raw}` is not a queue URL: it must end in /<account id>/<queue name> \
                                 (letters, digits, `-`, `_`, optional `.fifo`), e.g. \"{EXAMPLE_URL}\" — \
                                 copy it from the SQS console"
                            ),
                        ));
                            None
                        } else {
                            let host = u.host_str().unwrap_or("");
                            derived_region = region_from_host(host);
                            if !is_aws_host(host) {
                                derived_endpoint = Some(u.origin().ascii_serialization());
                            }
                            Some(raw.to_string())
                        }
                    }
                    _ => {
                        issues.push(SettingIssue::new(
                        "queue_url",
                        format!("`{raw}` is not an absolute http(s) URL: write e.g. \"{EXAMPLE_URL}\""),
                    ));
                        None
                    }
                }
            }
        };
        let region = match self.region.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => {
                if !region_ok(r) {
                    issues.push(SettingIssue::new(
                        "region",
                        format!("`{r}` is not a region name: write it like \"eu-west-2\""),
                    ));
                }
                Some(r.to_string())
            }
            _ => match derived_region {
                Some(r) => Some(r),
                None => {
                    if queue_url.is_some() {
                        issues.push(SettingIssue::new(
                            "region",
                            "missing: the queue URL does not name a region, so set `region`, e.g. \"eu-west-2\" (\"us-east-1\" for local servers)",
                        ));
                    }
                    None
                }
            },
        };
        let endpoint = match self
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            Some(e) => match url::Url::parse(e) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && matches!(u.path(), "" | "/") =>
                {
                    Some(e.trim_end_matches('/').to_string())
                }
                _ => {
                    issues.push(SettingIssue::new(
                        "endpoint",
                        format!("`{e}` is not an http(s) origin: write only scheme, host and port, e.g. \"http://127.0.0.1:4566\""),
                    ));
                    None
                }
            },
            None => derived_endpoint,
        };
        let keys = match (self.access_key_id, self.secret_access_key) {
            (None, None) => None,
            (Some(id), Some(secret))
                if !id.expose().trim().is_empty() && !secret.expose().trim().is_empty() =>
            {
                Some(StaticKeys {
                    access_key_id: Secret::new(id.expose().trim()),
                    secret_access_key: Secret::new(secret.expose().trim()),
                })
            }
            (Some(_), Some(_)) => {
                issues.push(SettingIssue::new(
                    "access_key_id",
                    "`access_key_id` and `secret_access_key` must not be empty (is the ${ENV} variable set?); remove both to use the AWS default credential chain",
                ));
                None
            }
            (Some(_), None) => {
                issues.push(SettingIssue::new(
                    "secret_access_key",
                    "missing: `access_key_id` is set, so set `secret_access_key` too, or remove both to use the AWS default credential chain",
                ));
                None
            }
            (None, Some(_)) => {
                issues.push(SettingIssue::new(
                    "access_key_id",
                    "missing: `secret_access_key` is set, so set `access_key_id` too, or remove both to use the AWS default credential chain",
                ));
                None
            }
        };
        let claim_check = match self.claim_check.as_deref().map(str::trim) {
            Some("") => {
                issues.push(SettingIssue::new(
                    "claim_check",
                    "empty: set it to the name of an `s3` destination in this file, or remove it",
                ));
                None
            }
            other => other.map(str::to_string),
        };
        let presign_expiry = match self.presign_expiry.as_deref() {
            None => DEFAULT_PRESIGN_EXPIRY,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d < Duration::from_secs(1) || d > MAX_PRESIGN_EXPIRY => {
                    issues.push(SettingIssue::new(
                        "presign_expiry",
                        "must be between 1s and 7 days (S3's limit for pre-signed URLs), e.g. \"10m\"",
                    ));
                    DEFAULT_PRESIGN_EXPIRY
                }
                Ok(d) => d,
                Err(e) => {
                    issues.push(SettingIssue::new("presign_expiry", e));
                    DEFAULT_PRESIGN_EXPIRY
                }
            },
        };
        let max_message_size = match &self.max_message_size {
            None => DEFAULT_MAX_MESSAGE_SIZE,
            Some(v) => {
                let parsed = match v {
                    toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
                    toml::Value::String(s) => manifold_core::config::bytesize::parse(s),
                    _ => Err("must be a size like \"256KiB\" or a number of bytes".to_string()),
                };
                match parsed {
                    Ok(n) if (1024..=SQS_HARD_LIMIT as u64).contains(&n) => n as usize,
                    Ok(_) => {
                        issues.push(SettingIssue::new(
                            "max_message_size",
                            "must be between 1KiB and 1MiB (SQS's limit); match the queue's MaximumMessageSize, e.g. \"256KiB\"",
                        ));
                        DEFAULT_MAX_MESSAGE_SIZE
                    }
                    Err(e) => {
                        issues.push(SettingIssue::new("max_message_size", e));
                        DEFAULT_MAX_MESSAGE_SIZE
                    }
                }
            }
        };
        match (queue_url, region) {
            (Some(queue_url), Some(region)) if issues.is_empty() => Ok(Settings {
                fifo: queue_url.trim_end_matches('/').ends_with(".fifo"),
                queue_url,
                region,
                endpoint,
                keys,
                claim_check,
                presign_expiry,
                max_message_size,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "sqs"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqsFactory;

impl DestinationFactory for SqsFactory {
    fn kind(&self) -> &'static str {
        "sqs"
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
        let settings = config.validate()?;
        if let Some(target) = &settings.claim_check {
            ctx.blob_stores.require(name, "claim_check", target);
        }
        Ok(Arc::new(SqsDestination::new(
            name,
            settings,
            ctx.blob_stores.clone(),
        )))
    }
}
