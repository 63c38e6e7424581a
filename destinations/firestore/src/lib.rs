//! Firestore destination: one document per Terra record, in Terra's layout.
//!
//! ```toml
//! [[destinations]]
//! name = "firestore"
//! type = "firestore"
//! project_id = "my-gcp-project"                     # required
//! credentials_file = "/etc/manifold/firestore.json" # service-account JSON key, or:
//! # emulator_host = "127.0.0.1:8086"                # a Firestore emulator (no credentials)
//! database = "(default)"                            # default "(default)"
//! root = "terra/2022-03-16"                         # default: Terra's base path
//! connect_timeout = "10s"                           # default 10s
//! ```
//!
//! Without `credentials_file` and `emulator_host`, the `FIRESTORE_EMULATOR_HOST` environment
//! variable (as Google's client libraries read it) selects an emulator. Set in the file, a
//! `credentials_file` or `emulator_host` always wins over the variable.
//!
//! # Layout
//! Documents live in collections under `root` (a document path: an even number of segments):
//! * data records: `<root>/<type>/<user_id>-<start_time>.json` (Terra's document name;
//!   `start_time` is the item's `metadata.start_time` verbatim), one per item of the event's
//!   `data` array. The document holds the item's own fields (`metadata`, `sleep_durations_data`,
//!   …) beside the event's (`user`, `type`, `version`), as Terra describes its Firestore
//!   documents, so `where("user.user_id", "==", …).orderBy("metadata.start_time")` works.
//! * informational events (auth, deauth, …): `<root>/user_events/<user_id>-<timestamp>-<trace_id>.json`,
//!   the event as it is (`timestamp` = when it was committed, as in the object-store layout).
//! * athlete: `<root>/athlete/<user_id>.json`.
//! * Manifold's fields, on every document: `_manifold_key` (the record's natural key),
//!   `_manifold_version`, `_manifold_trace_id`, `_manifold_updated_at` (a timestamp), and on data
//!   documents `_manifold_envelope` (the names of the event's own fields, so
//!   [`event_from_document`] rebuilds the delivered event exactly).
//!
//! Values: JSON integers → integers, other numbers → doubles, strings (timestamps too) →
//! strings, objects → maps, arrays → arrays (an array directly inside an array, which Firestore
//! forbids, becomes `{"_manifold_array": [...]}`).
//!
//! # Writes
//! A batch is one `RunQuery` per collection and 30 keys (`_manifold_key IN [...]`) to find what
//! is stored, then `Commit` calls of at most 500 writes. A record whose stored version is newer
//! is left alone (delivered: a newer version is stored); otherwise its document is replaced whole
//! (with an `update_time` precondition when it exists, so a concurrent writer makes the commit
//! fail and the batch retry), and documents of the same record under another name (its
//! `start_time` changed) are deleted in the same commit. Tombstones delete every document of the
//! record. The local emulator lacks `CreateDocument`/`BatchWrite`/`GetDocument`, so nothing here
//! uses them.
//!
//! # Failures
//! `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `INTERNAL`, `UNKNOWN`,
//! failed preconditions and connection errors → retry. `PERMISSION_DENIED`, `UNAUTHENTICATED`,
//! `INVALID_ARGUMENT`, `NOT_FOUND` (no such database), unusable credentials, documents over
//! 1 MiB and payloads Firestore cannot hold → permanent, for that item only.

mod client;
mod destination;
pub mod plan;
pub mod value;

pub use destination::FirestoreDestination;
pub use plan::{Delete, Op, Upsert, event_from_document, parse};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Largest batch one `deliver` call takes (a batch may need several commits).
pub const MAX_BATCH: usize = 100;
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `database`.
pub const DEFAULT_DATABASE: &str = "(default)";
/// Default `root`: Terra's base path.
pub const DEFAULT_ROOT: &str = "terra/2022-03-16";
/// Where Google's client libraries look for an emulator.
pub const EMULATOR_ENV: &str = "FIRESTORE_EMULATOR_HOST";
/// Firestore's production endpoint.
pub const GOOGLE_ENDPOINT: &str = "https://firestore.googleapis.com";

/// The Firestore destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub project_id: Option<String>,
    pub credentials_file: Option<String>,
    pub emulator_host: Option<String>,
    pub database: Option<String>,
    pub root: Option<String>,
    pub connect_timeout: Option<String>,
}

/// Where requests go and how they authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Google's Firestore with a service-account key.
    Google { credentials_file: PathBuf },
    /// An emulator (`http://host:port`), unauthenticated (`Bearer owner`).
    Emulator { url: String },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub project_id: String,
    pub database: String,
    /// Document path the collections live under, without leading/trailing `/` (may be empty).
    pub root: String,
    pub target: Target,
    pub connect_timeout: Duration,
}

impl Settings {
    /// `projects/<project>/databases/<database>`.
    pub fn database_path(&self) -> String {
        format!("projects/{}/databases/{}", self.project_id, self.database)
    }

    /// The full name of a document.
    pub fn document_name(&self, collection: &str, id: &str) -> String {
        format!(
            "{}/documents/{}",
            self.database_path(),
            self.relative_path(collection, id)
        )
    }

    /// A document's path below `…/documents/`.
    pub fn relative_path(&self, collection: &str, id: &str) -> String {
        if self.root.is_empty() {
            format!("{collection}/{id}")
        } else {
            format!("{}/{collection}/{id}", self.root)
        }
    }

    /// The parent of the collections (for queries).
    pub fn parent(&self) -> String {
        if self.root.is_empty() {
            format!("{}/documents", self.database_path())
        } else {
            format!("{}/documents/{}", self.database_path(), self.root)
        }
    }
}

fn valid_project(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
}

/// `(default)` or 4–63 characters of lowercase letters, digits and `-`, starting with a letter.
fn valid_database(s: &str) -> bool {
    s == DEFAULT_DATABASE
        || (s.len() >= 4
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
}

fn root_problem(root: &str) -> Option<String> {
    if root.is_empty() {
        return None;
    }
    let segments: Vec<&str> = root.split('/').collect();
    if let Some(s) = segments.iter().find(|s| {
        s.is_empty() || **s == "." || **s == ".." || (s.starts_with("__") && s.ends_with("__"))
    }) {
        return Some(format!(
            "`{root}` has an invalid segment `{s}` (empty, `.`, `..` or `__name__`): write collection/document pairs like \"{DEFAULT_ROOT}\""
        ));
    }
    if !segments.len().is_multiple_of(2) {
        return Some(format!(
            "`{root}` names a collection, not a document: the type collections (sleep, daily, …) are created under a document, so use an even number of segments like \"{DEFAULT_ROOT}\", or \"\" for top-level collections"
        ));
    }
    None
}

fn emulator_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    let hostport = raw.strip_prefix("http://").unwrap_or(raw);
    if hostport.starts_with("https://") || hostport.contains("://") {
        return Err(format!(
            "`{raw}`: an emulator is plain http; write host and port, e.g. \"127.0.0.1:8086\""
        ));
    }
    let ok = match hostport.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    };
    if !ok {
        return Err(format!(
            "`{raw}` is not host:port: write e.g. \"127.0.0.1:8086\" (as FIRESTORE_EMULATOR_HOST is written)"
        ));
    }
    Ok(format!("http://{hostport}"))
}

impl Config {
    /// Check every setting, reading `FIRESTORE_EMULATOR_HOST` from the environment; all
    /// problems are reported at once. No I/O.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        self.validate_with(|k| std::env::var(k).ok())
    }

    /// [`validate`](Self::validate) with the environment given.
    pub fn validate_with(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let project_id = match self.project_id.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "project_id",
                    "missing: set `project_id` to the Google Cloud project that holds the Firestore database, e.g. \"my-gcp-project\"",
                ));
                None
            }
            Some(p) if valid_project(p) => Some(p.to_string()),
            Some(p) => {
                issues.push(SettingIssue::new(
                    "project_id",
                    format!("`{p}` is not a Google Cloud project id: use the id (lowercase letters, digits and `-`) shown in the console's project picker, e.g. \"my-gcp-project\""),
                ));
                None
            }
        };
        let database = match self.database.as_deref().map(str::trim) {
            None => DEFAULT_DATABASE.to_string(),
            Some(d) if valid_database(d) => d.to_string(),
            Some(d) => {
                issues.push(SettingIssue::new(
                    "database",
                    format!("`{d}` is not a Firestore database id: use \"(default)\" or the id of a named database (4–63 lowercase letters, digits and `-`, starting with a letter)"),
                ));
                DEFAULT_DATABASE.to_string()
            }
        };
        let root = self
            .root
            .as_deref()
            .unwrap_or(DEFAULT_ROOT)
            .trim()
            .trim_matches('/')
            .to_string();
        if let Some(p) = root_problem(&root) {
            issues.push(SettingIssue::new("root", p));
        }
        let credentials_file = match self.credentials_file.as_deref().map(str::trim) {
            Some("") => {
                issues.push(SettingIssue::new(
                    "credentials_file",
                    "is empty (is the ${ENV} variable set?): set it to the path of a service-account JSON key",
                ));
                None
            }
            other => other.map(PathBuf::from),
        };
        let emulator = match self.emulator_host.as_deref() {
            Some(h) => match emulator_url(h) {
                Ok(u) => Some(u),
                Err(e) => {
                    issues.push(SettingIssue::new("emulator_host", e));
                    None
                }
            },
            None => None,
        };
        let credentials_given = self.credentials_file.is_some();
        let target = match (credentials_file, emulator, self.emulator_host.is_some()) {
            (Some(_), _, true) => {
                issues.push(SettingIssue::new(
                    "emulator_host",
                    "set together with `credentials_file`: keep `credentials_file` for Google's Firestore or `emulator_host` for an emulator, not both",
                ));
                None
            }
            (Some(f), _, false) => Some(Target::Google {
                credentials_file: f,
            }),
            (None, Some(url), _) => Some(Target::Emulator { url }),
            (None, None, true) => None,
            // `credentials_file = ""`: reported above.
            (None, None, false) if credentials_given => None,
            (None, None, false) => match env(EMULATOR_ENV).filter(|v| !v.trim().is_empty()) {
                Some(h) => match emulator_url(&h) {
                    Ok(url) => Some(Target::Emulator { url }),
                    Err(e) => {
                        issues.push(SettingIssue::new(
                            "emulator_host",
                            format!("from {EMULATOR_ENV}: {e}"),
                        ));
                        None
                    }
                },
                None => {
                    issues.push(SettingIssue::new(
                        "credentials_file",
                        "missing: set `credentials_file` to the path of a service-account JSON key with the Cloud Datastore User role (IAM → Service accounts → Keys → Add key → JSON), or `emulator_host` (or FIRESTORE_EMULATOR_HOST) for an emulator",
                    ));
                    None
                }
            },
        };
        let connect_timeout = match self.connect_timeout.as_deref() {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d.is_zero() => {
                    issues.push(SettingIssue::new(
                        "connect_timeout",
                        "must be more than zero, e.g. \"10s\"",
                    ));
                    DEFAULT_CONNECT_TIMEOUT
                }
                Ok(d) => d,
                Err(e) => {
                    issues.push(SettingIssue::new("connect_timeout", e));
                    DEFAULT_CONNECT_TIMEOUT
                }
            },
        };
        match (project_id, target) {
            (Some(project_id), Some(target)) if issues.is_empty() => Ok(Settings {
                project_id,
                database,
                root,
                target,
                connect_timeout,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "firestore"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirestoreFactory;

impl DestinationFactory for FirestoreFactory {
    fn kind(&self) -> &'static str {
        "firestore"
    }

    fn build(
        &self,
        name: &str,
        settings: toml::Table,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Destination>, Vec<SettingIssue>> {
        let config: Config = toml::Value::Table(settings)
            .try_into()
            .map_err(|e| vec![serde_issue(&e)])?;
        let settings = config.validate()?;
        Ok(Arc::new(FirestoreDestination::new(name, settings)))
    }
}
