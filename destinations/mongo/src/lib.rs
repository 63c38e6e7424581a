//! MongoDB destination: one document per Terra data item, keyed by its natural key.
//!
//! ```toml
//! [[destinations]]
//! name = "mongo"
//! type = "mongo"
//! uri = "${MONGO_URI}"            # required: mongodb://… or mongodb+srv://… (user/password inside)
//! database = "terra"              # required
//! collection_prefix = "terra_"    # optional: prepended to every collection name
//! connect_timeout = "10s"         # default 10s: server selection / connect timeout
//! ```
//!
//! # Layout
//! * Data events go to one collection per type (`sleep`, `daily`, `activity`, `body`,
//!   `menstruation`, `nutrition`, `planned_workout`, `athlete`), one document per item of the
//!   event's `data` array. The document is the event with `data` holding just that item (so every
//!   document is a self-contained Terra payload), plus `_id` and `_meta`.
//!   `_id` is the natural key `<user_id>:<type>:<key>` where `<key>` is
//!   [`manifold_core::event::item_key`] (the `summary_id` for sleep/activity, the local day
//!   `YYYY-MM-DD` for daily/body/menstruation/nutrition); athlete documents use `<user_id>:athlete`.
//! * Informational events (`auth`, `deauth`, `user_reauth`, `access_revoked`,
//!   `large_request_processing`, …) go to `user_events`, one document per event, `_id` = the trace
//!   id (so a redelivered event stays one document).
//! * `_meta = { trace_id, version, updated_at }`: the payload id (`X-Terra-Trace-Id`), the
//!   record's version under its natural key, and when it was written (BSON date).
//! * Indexes, created once per collection: `user.user_id`, `user.reference_id` (ascending),
//!   `data.metadata.start_time`, `data.metadata.end_time` (descending).
//!
//! # Writes
//! Each batch is one unordered `update` command per collection whose statements are replacements
//! `{q: {_id, "_meta.version": {$lte: incoming}}, u: <document with _id>, upsert: true}`: a new
//! key is inserted, the same or a newer version replaces the document (fields that disappeared
//! disappear), and an older version arriving late matches nothing, so its upsert collides with
//! the existing `_id` (`E11000`): that means "a newer version is stored" and counts as delivered.
//! Tombstones (`{"type":…, "user":…, "deleted":[{"summary_id":…}|{"date":…}]}`) delete the
//! documents whose `_id` or `data.metadata.summary_id` matches, before the batch's upserts.
//!
//! # Failures
//! Server selection timeouts, I/O errors, pool clears, `RetryableWriteError` labels and the
//! transient server codes (not primary, shutting down, write conflicts, time limits) → retry.
//! Authentication failures and missing privileges (`Unauthorized`, code 13) → permanent, naming
//! the role to grant. Documents over 16 MiB, invalid documents and validation failures →
//! permanent, for that item only.

mod classify;
mod destination;
mod plan;

pub use destination::MongoDestination;
pub use plan::{Delete, Item, Upsert, parse};

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Largest batch written with one command per collection.
pub const MAX_BATCH: usize = 100;
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Collection of informational events.
pub const USER_EVENTS: &str = "user_events";

/// The MongoDB destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub uri: Option<Secret>,
    pub database: Option<String>,
    pub collection_prefix: Option<String>,
    pub connect_timeout: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub uri: Secret,
    pub database: String,
    pub collection_prefix: String,
    pub connect_timeout: Duration,
}

const EXAMPLE_URI: &str =
    "mongodb+srv://manifold:${MONGO_PASSWORD}@cluster0.example.mongodb.net/?retryWrites=true";

/// MongoDB database names: no `/\. "$*<>:|?` and under 64 bytes.
fn valid_database(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && !s
            .chars()
            .any(|c| "/\\. \"$*<>:|?".contains(c) || c.is_control())
}

fn valid_prefix(s: &str) -> bool {
    s.len() <= 64
        && !s.starts_with("system.")
        && !s.contains('$')
        && !s.chars().any(|c| c.is_control())
}

impl Config {
    /// Check every setting; all problems are reported at once. No I/O.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let uri = match &self.uri {
            Some(u) if !u.expose().trim().is_empty() => {
                let raw = u.expose().trim();
                if !(raw.starts_with("mongodb://") || raw.starts_with("mongodb+srv://")) {
                    issues.push(SettingIssue::new(
                        "uri",
                        format!("must start with `mongodb://` or `mongodb+srv://`, e.g. \"{EXAMPLE_URI}\""),
                    ));
                    None
                } else if let Err(e) = mongodb::options::ConnectionString::parse(raw) {
                    // Never echo the URI: it may hold a password.
                    let msg = e.to_string().replace(raw, "<uri>");
                    issues.push(SettingIssue::new(
                        "uri",
                        format!("not a valid MongoDB connection string ({msg}); write it like \"{EXAMPLE_URI}\" (percent-encode special characters in the password)"),
                    ));
                    None
                } else {
                    Some(Secret::new(raw))
                }
            }
            _ => {
                issues.push(SettingIssue::new(
                    "uri",
                    format!("missing or empty: set `uri` to the MongoDB connection string, e.g. \"{EXAMPLE_URI}\""),
                ));
                None
            }
        };
        let database = match self.database.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "database",
                    "missing: set `database` to the database the collections live in, e.g. \"terra\"",
                ));
                None
            }
            Some(d) if valid_database(d) => Some(d.to_string()),
            Some(d) => {
                issues.push(SettingIssue::new(
                    "database",
                    format!("`{d}` is not a valid MongoDB database name: use letters, digits, `_` and `-` (no `/\\. \"$*<>:|?`), under 64 characters"),
                ));
                None
            }
        };
        let collection_prefix = self.collection_prefix.unwrap_or_default();
        if !valid_prefix(&collection_prefix) {
            issues.push(SettingIssue::new(
                "collection_prefix",
                "must not contain `$`, must not start with `system.` and must be at most 64 characters, e.g. \"terra_\"",
            ));
        }
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
        match (uri, database) {
            (Some(uri), Some(database)) if issues.is_empty() => Ok(Settings {
                uri,
                database,
                collection_prefix,
                connect_timeout,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "mongo"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct MongoFactory;

impl DestinationFactory for MongoFactory {
    fn kind(&self) -> &'static str {
        "mongo"
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
        Ok(Arc::new(MongoDestination::new(name, settings)))
    }
}
