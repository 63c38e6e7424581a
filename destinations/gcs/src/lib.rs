//! Google Cloud Storage destination: every Terra payload as an object in your bucket, in Terra's
//! layout (the same as the `s3` destination), through the GCS JSON API with plain HTTPS.
//!
//! ```toml
//! [[destinations]]
//! name = "gcs"
//! type = "gcs"
//! bucket = "my-health-data"                          # required
//! prefix = "terra"                                   # optional folder in front of every name
//! credentials_file = "/etc/manifold/gcs-key.json"    # service-account JSON key
//! # endpoint = "http://127.0.0.1:4443"               # an emulator instead (anonymous unless a key is set)
//! presign_expiry = "10m"                             # claim-check links, at most 7 days
//! ```
//!
//! Object names are described in [`layout`]. Each object is uploaded with
//! `uploadType=multipart`: the delivery's `Content-Type` and the custom metadata `trace-id`,
//! `user-id` and `event-type`; an updated record overwrites its object.
//!
//! Authentication: the service-account key signs an RS256 JWT that is exchanged for an access
//! token (OAuth 2.0 JWT bearer grant, scope `devstorage.read_write`), cached until a minute
//! before it expires. Claim-check links are V4 signed URLs (`GOOG4-RSA-SHA256`) signed locally
//! with the same key. With `endpoint` and no key (an emulator), requests are anonymous and links
//! are the emulator's direct media URLs.
//!
//! # How failures are classified
//! Connection refused/reset, timeouts, 429 and 5xx → retry (honouring `Retry-After`). 401/403 →
//! permanent, naming the role to grant (`roles/storage.objectCreator`); 404 → permanent (the
//! bucket does not exist); 413 and other 4xx → permanent. A key file that cannot be read or
//! parsed, or a key the token endpoint refuses, → permanent.

pub mod auth;
pub mod layout;
mod store;

pub use store::GcsDestination;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `presign_expiry`.
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(600);
/// Longest V4 signed URL GCS accepts (7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Objects written concurrently per batch.
pub const MAX_BATCH: usize = 16;
/// The JSON API and signed-URL origin of the real service.
pub const GOOGLE_ORIGIN: &str = "https://storage.googleapis.com";

/// The destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub credentials_file: Option<String>,
    pub endpoint: Option<String>,
    pub presign_expiry: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bucket: String,
    /// Without leading/trailing `/`; may be empty.
    pub prefix: String,
    /// Service-account key; `None` only with `endpoint` (anonymous, for emulators).
    pub credentials_file: Option<PathBuf>,
    /// Origin of the JSON API without a trailing `/` (`https://storage.googleapis.com` unless set).
    pub origin: String,
    /// Whether `endpoint` was set.
    pub custom_endpoint: bool,
    pub presign_expiry: Duration,
}

/// GCS bucket naming rules (names without dots).
pub fn bucket_problem(b: &str) -> Option<&'static str> {
    if b.len() < 3 || b.len() > 222 {
        return Some("must be 3 to 63 characters long (up to 222 with dots)");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Some(
            "may only hold lowercase letters, digits, `-`, `_` and `.` (the bucket's name, not a gs:// URL)",
        );
    }
    let first = b.chars().next().unwrap_or('-');
    let last = b.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Some("must start and end with a letter or digit");
    }
    if !b.contains('.') && b.len() > 63 {
        return Some("must be 3 to 63 characters long");
    }
    None
}

impl Config {
    /// Check every setting; all problems are reported at once. No I/O (the key file is read on
    /// first use).
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
            Some(b) => {
                let b = b.strip_prefix("gs://").unwrap_or(b).trim_end_matches('/');
                match bucket_problem(b) {
                    Some(p) => {
                        issues.push(SettingIssue::new("bucket", format!("`{b}` {p}")));
                        None
                    }
                    None => Some(b.to_string()),
                }
            }
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
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            match url::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    if u.path() != "/" && !u.path().is_empty() {
                        issues.push(SettingIssue::new(
                            "endpoint",
                            "must not have a path: write only scheme, host and port, e.g. \"http://127.0.0.1:4443\"",
                        ));
                    }
                }
                _ => issues.push(SettingIssue::new(
                    "endpoint",
                    format!(
                        "`{e}` is not an absolute http(s) URL: write e.g. \"http://127.0.0.1:4443\""
                    ),
                )),
            }
        }
        let credentials_file = match self.credentials_file.as_deref().map(str::trim) {
            Some("") => {
                issues.push(SettingIssue::new(
                    "credentials_file",
                    "is empty (is the ${ENV} variable set?): set it to the path of a service-account JSON key",
                ));
                None
            }
            Some(p) => Some(PathBuf::from(p)),
            None if endpoint.is_none() => {
                issues.push(SettingIssue::new(
                    "credentials_file",
                    "missing: set `credentials_file` to the path of a service-account JSON key with \
                     roles/storage.objectCreator on the bucket (IAM → Service accounts → Keys → Add key → JSON)",
                ));
                None
            }
            None => None,
        };
        let presign_expiry = match self.presign_expiry.as_deref() {
            None => DEFAULT_PRESIGN_EXPIRY,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d < Duration::from_secs(1) || d > MAX_PRESIGN_EXPIRY => {
                    issues.push(SettingIssue::new(
                        "presign_expiry",
                        "must be between 1s and 7 days (GCS's limit for signed URLs), e.g. \"10m\"",
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
        match bucket {
            Some(bucket) if issues.is_empty() => Ok(Settings {
                bucket,
                prefix,
                credentials_file,
                custom_endpoint: endpoint.is_some(),
                origin: endpoint.unwrap_or_else(|| GOOGLE_ORIGIN.to_string()),
                presign_expiry,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "gcs"` destinations (and registers each as a blob store under its name).
#[derive(Debug, Default, Clone, Copy)]
pub struct GcsFactory;

impl DestinationFactory for GcsFactory {
    fn kind(&self) -> &'static str {
        "gcs"
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
        let dest = Arc::new(GcsDestination::new(name, settings));
        ctx.blob_stores.register(name, dest.clone());
        Ok(dest)
    }
}
