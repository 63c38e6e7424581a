//! S3 destination: every Terra payload as an object in your bucket, in Terra's layout.
//!
//! ```toml
//! [[destinations]]
//! name = "bucket"
//! type = "s3"
//! bucket = "my-health-data"                 # required
//! region = "eu-west-2"                      # required (use "us-east-1" for most S3-compatible servers)
//! prefix = "terra"                          # optional folder in front of every key
//! endpoint = "http://127.0.0.1:4566"        # optional: an S3-compatible server instead of AWS
//! force_path_style = true                   # default: true when `endpoint` is set, else false
//! access_key_id = "${AWS_ACCESS_KEY_ID}"    # optional, with secret_access_key; otherwise the
//! secret_access_key = "${AWS_SECRET_ACCESS_KEY}" # AWS default chain (env, profile, web identity, IMDS/ECS)
//! gzip = false                              # true: gzip bodies (`Content-Encoding: gzip`, key + ".gz")
//! presign_expiry = "10m"                    # lifetime of claim-check URLs signed for queue destinations
//! ```
//!
//! Object names are described in [`layout`]: `<prefix>/2022-03-16/<type>/<user_id>-<start_time>.json`
//! for each data item, `<prefix>/2022-03-16/<event_type>/<user_id>-<timestamp>-<trace_id>.json` for
//! informational events, `.fit` for FIT files. Each object carries the delivery's
//! `Content-Type` and the user metadata `trace-id`, `user-id` and `event-type`
//! (`x-amz-meta-…`). A redelivered or updated record overwrites its object.
//!
//! The destination also registers itself as a [`manifold_core::blob::BlobStore`] under its name,
//! so a queue destination with `claim_check = "<name>"` can park oversized payloads here and send
//! a pre-signed GET URL instead (keys `<prefix>/2022-03-16/claim-check/…`).
//!
//! # How failures are classified
//! Connection refused/reset, timeouts, 5xx, `SlowDown`/throttling (HTTP 503/429) → retry.
//! Missing bucket, refused credentials, missing permissions, wrong region (301), too large,
//! other 4xx → permanent, with a reason that names the fix.

pub mod layout;
mod store;

pub use store::S3Destination;

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `presign_expiry` (Terra's links live about 10 minutes).
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(600);
/// Longest pre-signed URL S3 accepts (SigV4: 7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Objects written concurrently per batch.
pub const MAX_BATCH: usize = 16;

/// The S3 destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub gzip: bool,
    pub presign_expiry: Option<String>,
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
    pub bucket: String,
    pub region: String,
    /// Without leading/trailing `/`; may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    /// `None`: the AWS default credential chain.
    pub keys: Option<StaticKeys>,
    pub gzip: bool,
    pub presign_expiry: Duration,
}

/// S3 bucket naming rules (general purpose buckets).
fn bucket_problem(b: &str) -> Option<&'static str> {
    if b.len() < 3 || b.len() > 63 {
        return Some("must be 3 to 63 characters long");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some(
            "may only hold lowercase letters, digits, `-` and `.` (the bucket name, not a URL or ARN)",
        );
    }
    let first = b.chars().next().unwrap_or('-');
    let last = b.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Check an endpoint override: an absolute http(s) URL with a host and no path.
pub fn endpoint_problem(e: &str) -> Option<String> {
    match url::Url::parse(e) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if u.path() != "/" && !u.path().is_empty() {
                Some("must not have a path: write only scheme, host and port, e.g. \"http://127.0.0.1:4566\"".into())
            } else {
                None
            }
        }
        _ => Some(format!(
            "`{e}` is not an absolute http(s) URL: write e.g. \"https://s3.eu-central-1.example.com\" or \"http://127.0.0.1:4566\""
        )),
    }
}

/// Check a region name like `eu-west-2`.
pub fn region_problem(r: &str) -> Option<String> {
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| {
        format!("`{r}` is not a region name: write it like \"eu-west-2\" (S3-compatible servers usually accept \"us-east-1\")")
    })
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let bucket = match self.bucket.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "bucket",
                    "missing: set `bucket` to the bucket's name, e.g. \"my-health-data\"",
                ));
                None
            }
            Some(b) => match bucket_problem(b) {
                Some(p) => {
                    issues.push(SettingIssue::new("bucket", format!("`{b}` {p}")));
                    None
                }
                None => Some(b.to_string()),
            },
        };
        let region = match self.region.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "region",
                    "missing: set `region` to the bucket's AWS region, e.g. \"eu-west-2\" (\"us-east-1\" for most S3-compatible servers)",
                ));
                None
            }
            Some(r) => match region_problem(r) {
                Some(p) => {
                    issues.push(SettingIssue::new("region", p));
                    None
                }
                None => Some(r.to_string()),
            },
        };
        let prefix = self
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim()
            .trim_matches('/')
            .to_string();
        if prefix.split('/').any(|s| s == ".." || s == ".")
            || prefix.contains("//")
            || prefix.chars().any(char::is_control)
        {
            issues.push(SettingIssue::new(
                "prefix",
                "must be a plain folder path like \"terra\" or \"exports/terra\" (no `.`/`..` segments, no empty segments)",
            ));
        }
        let endpoint = self
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(p) = endpoint.and_then(endpoint_problem) {
            issues.push(SettingIssue::new("endpoint", p));
        }
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
                    "missing: `access_key_id` is set, so set `secret_access_key` too (e.g. \"${AWS_SECRET_ACCESS_KEY}\"), or remove both to use the AWS default credential chain",
                ));
                None
            }
            (None, Some(_)) => {
                issues.push(SettingIssue::new(
                    "access_key_id",
                    "missing: `secret_access_key` is set, so set `access_key_id` too (e.g. \"${AWS_ACCESS_KEY_ID}\"), or remove both to use the AWS default credential chain",
                ));
                None
            }
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
        match (bucket, region) {
            (Some(bucket), Some(region)) if issues.is_empty() => Ok(Settings {
                bucket,
                region,
                prefix,
                force_path_style: self.force_path_style.unwrap_or(endpoint.is_some()),
                endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
                keys,
                gzip: self.gzip,
                presign_expiry,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "s3"` destinations (and registers each as a blob store under its name).
#[derive(Debug, Default, Clone, Copy)]
pub struct S3Factory;

impl DestinationFactory for S3Factory {
    fn kind(&self) -> &'static str {
        "s3"
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
        let dest = Arc::new(S3Destination::new(name, settings));
        ctx.blob_stores.register(name, dest.clone());
        Ok(dest)
    }
}
