//! SQL destination: Terra's three tables in PostgreSQL, MySQL/MariaDB or SQLite.
//!
//! ```toml
//! [[destinations]]
//! name = "warehouse"
//! type = "sql"
//! driver = "postgres"                   # "postgres" | "mysql" | "sqlite", required
//! url = "${WAREHOUSE_DATABASE_URL}"     # required; scheme must match the driver
//! schema = "terra"                      # PostgreSQL only; default "terra" (Terra's fixed name)
//! create_tables = true                  # default true: create the schema and tables if missing
//! max_connections = 4                   # default 4 (1 for SQLite)
//! connect_timeout = "10s"               # default 10s: how long to wait for a connection
//! ```
//!
//! # Tables (Terra §6.2 column names, plus `payload` and key columns)
//! * `terra_users(user_id PK, reference_id, provider, granted_scopes, state, state_changed_at,
//!   created_at, updated_at)`. `state` is `active`, `deauthenticated` or `revoked`: `auth`
//!   (status other than `error`) and `user_reauth` → `active`, `deauth` → `deauthenticated`,
//!   `access_revoked` → `revoked`. A state change only applies when its event was committed no
//!   earlier than the one that set the current state (`state_changed_at`), so a late retry of an
//!   old `auth` cannot re-activate a deauthenticated user. Every data event upserts its user
//!   (reference id, provider, scopes), inserting it as `active` if unknown.
//! * `terra_data_payloads(user_id, data_type, record_key, summary_id, day, start_time, end_time,
//!   payload_id, version, created_at, updated_at, payload)` with `PRIMARY KEY(user_id, data_type,
//!   record_key)`. `record_key` is the natural key of the item ([`manifold_core::event::item_key`]):
//!   `summary_id` for sleep/activity/planned_workout, the local day `YYYY-MM-DD` for
//!   daily/body/menstruation/nutrition, and `athlete` for athlete events. `summary_id` and
//!   `day` are filled when the item has them (nullable). `payload_id` is the trace id
//!   (`X-Terra-Trace-Id`). `version` is the delivery's version under its natural key.
//! * `terra_misc_payloads(payload_id PK, user_id, payload_type, data_type, created_at, payload)`
//!   for informational events (`auth`, `deauth`, `large_request_processing`, …): `payload_type`
//!   is the event type, `data_type` the event's own `data_type` field if it has one. One row per
//!   event; redelivery of the same event (same trace id) keeps one row.
//!
//! `payload` is `JSONB` on PostgreSQL, `JSON` on MySQL and `TEXT` on SQLite. Timestamps are
//! ISO-8601 `TEXT` like Terra's DDL (`created_at`/`updated_at` in UTC, so they sort;
//! `start_time`/`end_time` verbatim with the user's offset).
//!
//! # One row per data item
//! A Terra event's `data` array may hold several records (e.g. a week of dailies). Each record is
//! its own row, and its `payload` is the event with `data` holding just that record, so every row
//! is a self-contained Terra payload: `SELECT payload FROM terra.terra_data_payloads WHERE …`
//! gives exactly what a Terra webhook for that one record would carry, and
//! `payload->'data'->0` is the record. Athlete events are one row per user with
//! `data_type = 'athlete'`, `record_key = 'athlete'` and the whole event as `payload` (they also
//! upsert `terra_users`).
//!
//! # Upserts, versions, tombstones
//! Rows are upserted by natural key (`ON CONFLICT … DO UPDATE` on PostgreSQL/SQLite,
//! `ON DUPLICATE KEY UPDATE` on MySQL), and the update only applies when the incoming `version`
//! is at least the stored one: redelivery rewrites the same row, an older version delivered late
//! changes nothing. A tombstone (`{"type":…,"deleted":[{"summary_id":…}|{"date":…}]}`) deletes
//! the rows whose `record_key` or `summary_id` matches.
//!
//! # Batches
//! Up to [`MAX_BATCH`] deliveries are written in one transaction with multi-row statements. If
//! that transaction fails for a reason that may belong to one item (data too long, invalid JSON,
//! …) each item is retried alone in its own transaction, so one bad item fails only itself.
//!
//! # Row planning, shared with `supabase`
//! [`plan`] turns deliveries into these rows (natural keys, days, user states, tombstones, the
//! merge of a batch) without I/O. It is public because `manifold-supabase` writes the very same
//! rows through PostgREST: the table and key rules live in this one module.
//!
//! # How failures are classified
//! Connection refused/reset, timeouts, deadlocks, serialization failures, lock timeouts,
//! "too many connections", server shutting down → retry. Authentication failures (`28P01`,
//! `28000`, MySQL 1045) → permanent. Missing privileges (`42501`, MySQL 1142/1044) → permanent,
//! and the reason names the `GRANT` to run. Malformed bodies, data too long, schema errors →
//! permanent.
//!
//! # Verified end to end
//! `crates/manifold/tests/db_proofs.rs` (`sql_postgres_proof`, `sql_mariadb_proof`,
//! `sql_sqlite_proof`) runs the real `manifold demo --users 3 --days 7` with this destination and
//! a signed `--forward-to`, then reads the tables back with the databases' own clients (`psql`,
//! `mariadb`, `sqlite3`) and compares with the forwarded JSON: one row per natural key holding
//! the latest version's payload, trace id and version (59 records from about 120 payloads,
//! including repeated versions and 4 tombstones), one `terra_misc_payloads` row per `auth`, the
//! three users `active`. Redelivering every payload through the destination changes no row. With
//! `manifold serve` delivering, the server is stopped after the first deliveries — a private
//! PostgreSQL with `pg_ctl stop -m immediate`, a private MariaDB with SIGKILL, and for SQLite
//! another connection holding `BEGIN EXCLUSIVE` — the outbox retries (200 ms backoff) while it
//! is down, and after the restart nothing is missing. Servers: PostgreSQL 15.20, MariaDB
//! 10.11.19, SQLite (sqlx's bundled library; the `sqlite3` 3.40 CLI reads).

mod classify;
mod destination;
pub mod plan;
mod sql;

pub use classify::Failure;
pub use destination::SqlDestination;
pub use sql::Dialect;

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 100;
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default PostgreSQL schema (Terra's fixed name).
pub const DEFAULT_SCHEMA: &str = "terra";

/// The SQL destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub driver: Option<String>,
    pub url: Option<Secret>,
    pub schema: Option<String>,
    pub create_tables: Option<bool>,
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dialect: Dialect,
    pub url: Secret,
    /// PostgreSQL schema (`None` on MySQL/SQLite).
    pub schema: Option<String>,
    pub create_tables: bool,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

fn example_url(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "postgres://manifold:${DB_PASSWORD}@db.example.com:5432/health",
        Dialect::MySql => "mysql://manifold:${DB_PASSWORD}@db.example.com:3306/health",
        Dialect::Sqlite => "sqlite:///var/lib/manifold/terra.db",
    }
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let dialect = match self.driver.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "driver",
                    "missing: set `driver` to \"postgres\", \"mysql\" or \"sqlite\"",
                ));
                None
            }
            Some("postgres" | "postgresql") => Some(Dialect::Postgres),
            Some("mysql" | "mariadb") => Some(Dialect::MySql),
            Some("sqlite") => Some(Dialect::Sqlite),
            Some(other) => {
                issues.push(SettingIssue::new(
                    "driver",
                    format!("`{other}` is not a supported driver: use \"postgres\", \"mysql\" or \"sqlite\""),
                ));
                None
            }
        };

        let url = match &self.url {
            Some(u) if !u.expose().trim().is_empty() => Some(u.clone()),
            _ => {
                issues.push(SettingIssue::new(
                    "url",
                    format!(
                        "missing or empty: set `url` to the database URL, e.g. \"{}\"",
                        example_url(dialect.unwrap_or(Dialect::Postgres))
                    ),
                ));
                None
            }
        };
        if let (Some(d), Some(u)) = (dialect, &url) {
            let raw = u.expose().trim();
            let scheme = raw.split_once(':').map(|(s, _)| s).unwrap_or("");
            let ok = match d {
                Dialect::Postgres => matches!(scheme, "postgres" | "postgresql"),
                Dialect::MySql => matches!(scheme, "mysql" | "mariadb"),
                Dialect::Sqlite => scheme == "sqlite",
            };
            if !ok {
                // Never echo the URL: it may hold a password.
                issues.push(SettingIssue::new(
                    "url",
                    format!(
                        "the URL scheme `{scheme}:` does not match driver \"{}\": write it like \"{}\" (or change `driver`)",
                        d.name(),
                        example_url(d)
                    ),
                ));
            } else if d != Dialect::Sqlite && url::Url::parse(raw).is_err() {
                issues.push(SettingIssue::new(
                    "url",
                    format!(
                        "not a valid URL: write it like \"{}\" (percent-encode special characters in the password)",
                        example_url(d)
                    ),
                ));
            }
        }

        let schema = match (dialect, self.schema) {
            (Some(Dialect::Postgres), None) => Some(DEFAULT_SCHEMA.to_string()),
            (Some(Dialect::Postgres), Some(s)) if valid_ident(&s) => Some(s),
            (Some(Dialect::Postgres), Some(s)) => {
                issues.push(SettingIssue::new(
                    "schema",
                    format!("`{s}` is not a plain SQL identifier: use letters, digits and `_` (Terra uses \"terra\")"),
                ));
                None
            }
            (Some(d), Some(_)) => {
                issues.push(SettingIssue::new(
                    "schema",
                    format!(
                        "`schema` is only used with driver \"postgres\"; remove it (on {} the tables live in the database named in `url`)",
                        d.name()
                    ),
                ));
                None
            }
            (_, _) => None,
        };

        let max_connections = match self.max_connections {
            Some(0) => {
                issues.push(SettingIssue::new(
                    "max_connections",
                    "must be at least 1, e.g. 4",
                ));
                1
            }
            Some(n) => n,
            None if dialect == Some(Dialect::Sqlite) => 1,
            None => 4,
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

        match (dialect, url) {
            (Some(dialect), Some(url)) if issues.is_empty() => Ok(Settings {
                dialect,
                url,
                schema,
                create_tables: self.create_tables.unwrap_or(true),
                max_connections,
                connect_timeout,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "sql"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqlFactory;

impl DestinationFactory for SqlFactory {
    fn kind(&self) -> &'static str {
        "sql"
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
        let dest =
            SqlDestination::new(name, settings).map_err(|e| vec![SettingIssue::new("url", e)])?;
        Ok(Arc::new(dest))
    }
}
