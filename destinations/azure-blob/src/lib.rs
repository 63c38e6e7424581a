//! Azure Blob Storage destination: every Terra payload as a block blob in your container, in
//! Terra's layout (the same as the `s3` destination).
//!
//! ```toml
//! [[destinations]]
//! name = "azure"
//! type = "azure-blob"
//! container = "health-data"                     # required
//! sas_url = "${AZURE_BLOB_SAS_URL}"             # a container (or account) SAS URL with at least `cw`
//! # connection_string = "${AZURE_STORAGE_CONNECTION_STRING}"  # …or the account key (exactly one)
//! prefix = "terra"                              # optional folder in front of every blob name
//! presign_expiry = "10m"                        # claim-check links (connection_string only)
//! ```
//!
//! Blob names are described in [`layout`]. Each blob is written with `PUT` as a `BlockBlob`
//! carrying the delivery's `Content-Type` and the metadata `x-ms-meta-traceid`,
//! `x-ms-meta-userid` and `x-ms-meta-eventtype`; an updated record overwrites its blob.
//!
//! With `connection_string` the account key signs a short-lived container SAS (`sp=cwd`) for the
//! writes and a read-only blob SAS for claim-check links; the key itself is never sent.
//! With `sas_url` the given SAS is used as is; claim-check links reuse it when it grants `r`.
//!
//! # How failures are classified
//! Connection refused/reset, timeouts, 429, 500, 503 (`ServerBusy`, `OperationTimedOut`) → retry,
//! honouring `Retry-After`. 403 (`AuthenticationFailed`, `AuthorizationFailure`,
//! `AuthorizationPermissionMismatch`, expired SAS) → permanent (check the SAS/key and its `cw`
//! permissions); 404 `ContainerNotFound` → permanent; 413 and other 4xx → permanent.

pub mod layout;
pub mod sas;
mod store;

pub use store::AzureBlobDestination;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `presign_expiry`.
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(600);
/// Longest claim-check link signed here.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Blobs written concurrently per batch.
pub const MAX_BATCH: usize = 16;
/// Azurite's published development account (for `UseDevelopmentStorage=true`).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development account key (public, not a secret).
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub container: Option<String>,
    pub sas_url: Option<Secret>,
    pub connection_string: Option<Secret>,
    pub prefix: Option<String>,
    pub presign_expiry: Option<String>,
}

/// An account key (decoded). Debug never prints it.
#[derive(Clone)]
pub struct AccountKey(pub Vec<u8>);

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How requests are authorized.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Sign SAS tokens with the account key.
    Key { account: String, key: AccountKey },
    /// A SAS query string (without `?`) given by the user.
    Sas {
        query: Secret,
        /// The SAS `sp` value, if it has one.
        permissions: Option<String>,
    },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Blob service URL of the account, without a trailing `/`
    /// (`https://acct.blob.core.windows.net`, `http://127.0.0.1:10000/devstoreaccount1`).
    pub service_url: String,
    pub container: String,
    /// Without leading/trailing `/`; may be empty.
    pub prefix: String,
    pub auth: Auth,
    pub presign_expiry: Duration,
}

impl Settings {
    /// `{service_url}/{container}`.
    pub fn container_url(&self) -> String {
        format!("{}/{}", self.service_url, self.container)
    }
}

/// Azure container naming rules.
pub fn container_problem(c: &str) -> Option<&'static str> {
    if c.len() < 3 || c.len() > 63 {
        return Some("must be 3 to 63 characters long");
    }
    if !c
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
    {
        return Some(
            "may only hold lowercase letters, digits and `-` (the container's name, not its URL)",
        );
    }
    if c.starts_with('-') || c.ends_with('-') || c.contains("--") {
        return Some("must start and end with a letter or digit and have no `--`");
    }
    None
}

/// A parsed connection string: the blob service URL and the account key or SAS.
pub fn parse_connection_string(cs: &str) -> Result<(String, Auth), String> {
    let mut kv = std::collections::HashMap::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(
                "has a part that is not `Key=Value`; copy the connection string from the portal (Storage account → Access keys)"
                    .to_string(),
            );
        };
        kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if kv
        .get("usedevelopmentstorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let key = B64.decode(DEV_KEY).expect("the dev key is base64");
        return Ok((
            format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"),
            Auth::Key {
                account: DEV_ACCOUNT.into(),
                key: AccountKey(key),
            },
        ));
    }
    let account = kv.get("accountname").cloned();
    let endpoint = match (kv.get("blobendpoint"), &account) {
        (Some(e), _) => e.trim_end_matches('/').to_string(),
        (None, Some(a)) => {
            let proto = kv
                .get("defaultendpointsprotocol")
                .map(String::as_str)
                .unwrap_or("https");
            let suffix = kv
                .get("endpointsuffix")
                .map(String::as_str)
                .unwrap_or("core.windows.net");
            format!("{proto}://{a}.blob.{suffix}")
        }
        (None, None) => {
            return Err(
                "has neither `AccountName` nor `BlobEndpoint`; copy the whole connection string from the portal (Storage account → Access keys)"
                    .into(),
            );
        }
    };
    if let Err(p) = http_url(&endpoint) {
        return Err(format!("`BlobEndpoint` {p}"));
    }
    if let Some(sas) = kv.get("sharedaccesssignature") {
        let sas = sas.trim_start_matches('?').to_string();
        return Ok((
            endpoint,
            Auth::Sas {
                permissions: query_param(&sas, "sp"),
                query: Secret::new(sas),
            },
        ));
    }
    let Some(account) = account else {
        return Err("has no `AccountName`; add `AccountName=<storage account>`".into());
    };
    let Some(key) = kv.get("accountkey") else {
        return Err("has no `AccountKey` (nor `SharedAccessSignature`); copy the connection string with its key from the portal (Storage account → Access keys)".into());
    };
    let key = B64.decode(key).map_err(|_| {
        "`AccountKey` is not base64; copy the key exactly as the portal shows it".to_string()
    })?;
    Ok((
        endpoint,
        Auth::Key {
            account,
            key: AccountKey(key),
        },
    ))
}

fn http_url(s: &str) -> Result<url::Url, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(format!("`{s}` is not an absolute http(s) URL")),
    }
}

/// One query parameter's (decoded) value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Split a SAS URL into the blob service URL (no trailing `/`) and its query. A container SAS
/// URL ends with `/<container>`; an account SAS URL has no container in its path.
pub fn parse_sas_url(raw: &str, container: &str) -> Result<(String, String), String> {
    let u = http_url(raw).map_err(|e| {
        format!("{e}; paste the full SAS URL, e.g. \"https://acct.blob.core.windows.net/health-data?sv=…&sig=…\"")
    })?;
    let query = u.query().unwrap_or("").to_string();
    if query_param(&query, "sig").is_none() {
        return Err(
            "has no `sig=` query parameter: it is not a SAS URL; generate one (portal: container → Shared access tokens, permissions Create + Write)"
                .into(),
        );
    }
    let mut base = u.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = base.path().trim_end_matches('/').to_string();
    let last = path.rsplit('/').next().unwrap_or("");
    let service_path = if last == container {
        path[..path.len() - last.len()]
            .trim_end_matches('/')
            .to_string()
    } else {
        if query_param(&query, "sr").as_deref() == Some("c") {
            return Err(format!(
                "is a container SAS for `{}`, but `container` is `{container}`; use a SAS for `{container}` or fix `container`",
                if last.is_empty() { "(none)" } else { last }
            ));
        }
        path
    };
    base.set_path(&service_path);
    Ok((base.as_str().trim_end_matches('/').to_string(), query))
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let container = match self.container.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "container",
                    "missing: set `container` to the blob container's name, e.g. \"health-data\"",
                ));
                None
            }
            Some(c) => match container_problem(c) {
                Some(p) => {
                    issues.push(SettingIssue::new("container", format!("`{c}` {p}")));
                    None
                }
                None => Some(c.to_string()),
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
        let presign_expiry = match self.presign_expiry.as_deref() {
            None => DEFAULT_PRESIGN_EXPIRY,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d < Duration::from_secs(1) || d > MAX_PRESIGN_EXPIRY => {
                    issues.push(SettingIssue::new(
                        "presign_expiry",
                        "must be between 1s and 7 days, e.g. \"10m\"",
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
        let sas = self
            .sas_url
            .as_ref()
            .map(|s| s.expose().trim())
            .filter(|s| !s.is_empty());
        let cs = self
            .connection_string
            .as_ref()
            .map(|s| s.expose().trim())
            .filter(|s| !s.is_empty());
        let target = match (sas, cs) {
            (Some(_), Some(_)) => {
                issues.push(SettingIssue::new(
                    "sas_url",
                    "set either `sas_url` or `connection_string`, not both",
                ));
                None
            }
            (None, None) => {
                let empty = self.sas_url.is_some() || self.connection_string.is_some();
                issues.push(SettingIssue::new(
                    "sas_url",
                    if empty {
                        "is empty (is the ${ENV} variable set?): set `sas_url` to a container SAS URL with at least `cw` permissions, or `connection_string`"
                    } else {
                        "missing: set `sas_url` to a container SAS URL with at least `cw` (create, write) permissions, e.g. \"${AZURE_BLOB_SAS_URL}\", or `connection_string` (\"${AZURE_STORAGE_CONNECTION_STRING}\")"
                    },
                ));
                None
            }
            (Some(raw), None) => match container.as_deref().map(|c| parse_sas_url(raw, c)) {
                None => None,
                Some(Err(p)) => {
                    issues.push(SettingIssue::new("sas_url", format!("the SAS URL {p}")));
                    None
                }
                Some(Ok((service, query))) => {
                    let permissions = query_param(&query, "sp");
                    if let Some(p) = &permissions
                        && !p.contains('w')
                    {
                        issues.push(SettingIssue::new(
                            "sas_url",
                            format!(
                                "the SAS grants `sp={p}` without `w` (write), so it cannot overwrite the blob of an updated record; generate one with at least `cw` (create, write), plus `r` for claim-check links"
                            ),
                        ));
                    }
                    if let Some(se) = query_param(&query, "se")
                        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(&se)
                        && t < chrono::Utc::now()
                    {
                        issues.push(SettingIssue::new(
                            "sas_url",
                            format!("the SAS expired at {se} (`se`); generate a new one"),
                        ));
                    }
                    Some((
                        service,
                        Auth::Sas {
                            query: Secret::new(query),
                            permissions,
                        },
                    ))
                }
            },
            (None, Some(raw)) => match parse_connection_string(raw) {
                Ok(t) => Some(t),
                Err(p) => {
                    issues.push(SettingIssue::new(
                        "connection_string",
                        format!("the connection string {p}"),
                    ));
                    None
                }
            },
        };
        match (container, target) {
            (Some(container), Some((service_url, auth))) if issues.is_empty() => Ok(Settings {
                service_url,
                container,
                prefix,
                auth,
                presign_expiry,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "azure-blob"` destinations (and registers each as a blob store under its name).
#[derive(Debug, Default, Clone, Copy)]
pub struct AzureBlobFactory;

impl DestinationFactory for AzureBlobFactory {
    fn kind(&self) -> &'static str {
        "azure-blob"
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
        let dest = Arc::new(AzureBlobDestination::new(name, settings));
        ctx.blob_stores.register(name, dest.clone());
        Ok(dest)
    }
}
