//! Supabase destination: Terra's three tables in a Supabase project, written through its REST API
//! (PostgREST) with the service-role key.
//!
//! ```toml
//! [[destinations]]
//! name = "supabase"
//! type = "supabase"
//! url = "https://abcdefghijklmnop.supabase.co"   # required: the project URL
//! service_role_key = "${SUPABASE_SERVICE_ROLE_KEY}"  # required (Project Settings → API)
//! schema = "public"            # default "public"; another schema must be in "Exposed schemas"
//! rest_path = "/rest/v1"       # default "/rest/v1" (Supabase); "" for a bare PostgREST
//! batch_size = 100             # default 100 deliveries per request (1..=1000)
//! timeout = "30s"              # default 30s per request
//! ```
//!
//! # Tables (created once by the user: `manifold supabase init` prints [`init_sql`])
//! The same tables, columns, keys and merge rules as the SQL destination: the rows are planned by
//! [`manifold_sql::plan`], the one place those rules live.
//! * `terra_users(user_id PK, reference_id, provider, granted_scopes, state, state_changed_at,
//!   created_at, updated_at)`: upserted by every event that names a user; `auth`/`user_reauth` →
//!   `active`, `deauth` → `deauthenticated`, `access_revoked` → `revoked`, and a state change only
//!   applies when its event is not older than the one that set the current state.
//! * `terra_data_payloads(user_id, data_type, record_key, summary_id, day, start_time, end_time,
//!   payload_id, version, created_at, updated_at, payload jsonb)`, `PRIMARY KEY (user_id,
//!   data_type, record_key)`: one row per data item, `payload` = the event with just that item.
//! * `terra_misc_payloads(payload_id PK, user_id, payload_type, data_type, created_at, payload)`:
//!   informational events, one row per event.
//!
//! PostgREST can only upsert with `ON CONFLICT DO UPDATE SET <every column sent>`, so the rules the
//! SQL destination writes into its statements live in two `BEFORE UPDATE` triggers created by
//! [`init_sql`]: a data row is only replaced by the same or a newer `version` (an older one
//! arriving late changes nothing), and a user keeps its known reference id/provider/scopes and its
//! newer state. The tables have row-level security enabled with no policies: only the
//! `service_role` (which bypasses RLS) reads and writes them.
//!
//! # Requests
//! Per batch: `POST {url}{rest_path}/terra_users?on_conflict=user_id` (`Prefer:
//! resolution=merge-duplicates`), `DELETE …/terra_data_payloads?user_id=eq.…&data_type=eq.…&
//! record_key=eq.…` (and `summary_id=eq.…`) per tombstone entry, `POST …/terra_data_payloads?
//! on_conflict=user_id,data_type,record_key` (merge-duplicates) and `POST …/terra_misc_payloads?
//! on_conflict=payload_id` (`resolution=ignore-duplicates`), each a JSON array. Headers: `apikey`,
//! `Authorization: Bearer <key>` (only when the key is a JWT; new `sb_secret_…` keys go in
//! `apikey` alone), `Content-Profile`/`Accept-Profile: <schema>`.
//!
//! # Failures
//! Connection refused/reset, timeouts, 408, 425, 429 and 5xx → retry (honouring `Retry-After`).
//! 401/403 → permanent, naming the key and the grant; 404 (table missing) → permanent, run
//! [`init_sql`]; 406 (schema not exposed) → permanent; other 4xx (400/409/413/422: schema or data
//! errors) → permanent. When a batch fails with a 4xx that may belong to one item, each item is
//! written alone so one bad item fails only itself.

mod classify;
mod destination;

pub use classify::Failure;
pub use destination::SupabaseDestination;

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use serde::Deserialize;

/// Default `batch_size`.
pub const DEFAULT_BATCH: usize = 100;
/// Default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `schema`.
pub const DEFAULT_SCHEMA: &str = "public";
/// Default `rest_path` (Supabase's).
pub const DEFAULT_REST_PATH: &str = "/rest/v1";

/// The table names, columns and row rules are the SQL destination's ([`manifold_sql::plan`]).
pub use manifold_sql::plan::{DATA, MISC, USERS};

/// The Supabase destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: Option<String>,
    pub service_role_key: Option<Secret>,
    pub schema: Option<String>,
    pub rest_path: Option<String>,
    pub batch_size: Option<i64>,
    pub timeout: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Project URL without a trailing slash.
    pub url: String,
    pub service_role_key: Secret,
    pub schema: String,
    /// Empty or `/…` without a trailing slash.
    pub rest_path: String,
    pub batch_size: usize,
    pub timeout: Duration,
}

impl Settings {
    /// `{url}{rest_path}/{table}`.
    pub fn table_url(&self, table: &str) -> String {
        format!("{}{}/{table}", self.url, self.rest_path)
    }
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

impl Config {
    /// Check every setting; all problems are reported at once. No I/O.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();
        let url = match self.url.as_deref().map(str::trim) {
            None | Some("") => {
                issues.push(SettingIssue::new(
                    "url",
                    "missing: set `url` to the project URL, e.g. \"https://abcdefghijklmnop.supabase.co\" (Project Settings → API)",
                ));
                None
            }
            Some(raw) => match url::Url::parse(raw) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                        && u.username().is_empty()
                        && u.password().is_none() =>
                {
                    Some(raw.trim_end_matches('/').to_string())
                }
                _ => {
                    issues.push(SettingIssue::new(
                        "url",
                        "not an http(s) URL without credentials or query: write the project URL like \"https://abcdefghijklmnop.supabase.co\"",
                    ));
                    None
                }
            },
        };
        let key = match &self.service_role_key {
            Some(k) if !k.expose().trim().is_empty() => Some(Secret::new(k.expose().trim())),
            _ => {
                issues.push(SettingIssue::new(
                    "service_role_key",
                    "missing or empty: set it to the project's service_role key (Project Settings → API), e.g. \"${SUPABASE_SERVICE_ROLE_KEY}\"",
                ));
                None
            }
        };
        if let Some(k) = &key
            && (k
                .expose()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control()))
        {
            issues.push(SettingIssue::new(
                "service_role_key",
                "contains whitespace: paste the key exactly as Supabase shows it",
            ));
        }
        let schema = self.schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        if !valid_ident(&schema) {
            issues.push(SettingIssue::new(
                "schema",
                format!("`{schema}` is not a plain SQL identifier: use letters, digits and `_` (default \"public\")"),
            ));
        }
        let rest_path = match self.rest_path {
            None => DEFAULT_REST_PATH.to_string(),
            Some(p) => {
                let p = p.trim().trim_end_matches('/').to_string();
                if !p.is_empty()
                    && (!p.starts_with('/') || p.contains(['?', '#', ' ']) || p.contains("//"))
                {
                    issues.push(SettingIssue::new(
                        "rest_path",
                        "must be a path like \"/rest/v1\" (Supabase) or \"\" (PostgREST at the root)",
                    ));
                }
                p
            }
        };
        let batch_size = match self.batch_size {
            None => DEFAULT_BATCH,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(n) => {
                issues.push(SettingIssue::new(
                    "batch_size",
                    format!("{n} is out of range: use 1 to 1000 (default 100)"),
                ));
                DEFAULT_BATCH
            }
        };
        let timeout = match self.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d.is_zero() => {
                    issues.push(SettingIssue::new(
                        "timeout",
                        "must be more than zero, e.g. \"30s\"",
                    ));
                    DEFAULT_TIMEOUT
                }
                Ok(d) => d,
                Err(e) => {
                    issues.push(SettingIssue::new("timeout", e));
                    DEFAULT_TIMEOUT
                }
            },
        };
        match (url, key) {
            (Some(url), Some(service_role_key)) if issues.is_empty() => Ok(Settings {
                url,
                service_role_key,
                schema,
                rest_path,
                batch_size,
                timeout,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "supabase"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct SupabaseFactory;

impl DestinationFactory for SupabaseFactory {
    fn kind(&self) -> &'static str {
        "supabase"
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
        let dest = SupabaseDestination::new(name, settings)
            .map_err(|e| vec![SettingIssue::new("url", e)])?;
        Ok(Arc::new(dest))
    }
}

/// Quote an SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The SQL a user runs once in the project (Supabase SQL editor, or `psql`) before the first
/// delivery: the schema, the three tables, the merge triggers, row-level security, the grants to
/// `service_role`, and a schema-cache reload. Idempotent: safe to run again.
pub fn init_sql(schema: &str) -> String {
    let s = ident(schema);
    let exposed = if schema == "public" {
        String::new()
    } else {
        format!(
            "-- The schema `{schema}` must also be exposed: Project Settings → API → Exposed schemas.\n"
        )
    };
    format!(
        r#"-- Manifold: Terra tables for the Supabase destination (schema {schema}).
-- Run once as the project owner (SQL editor or psql); running it again is harmless.
{exposed}
CREATE SCHEMA IF NOT EXISTS {s};

CREATE TABLE IF NOT EXISTS {s}.terra_users (
  user_id TEXT NOT NULL PRIMARY KEY,
  reference_id TEXT,
  provider TEXT,
  granted_scopes TEXT,
  state TEXT NOT NULL DEFAULT 'active',
  state_changed_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS {s}.terra_data_payloads (
  user_id TEXT NOT NULL,
  data_type TEXT NOT NULL,
  record_key TEXT NOT NULL,
  summary_id TEXT,
  day TEXT,
  start_time TEXT,
  end_time TEXT,
  payload_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  payload JSONB NOT NULL,
  PRIMARY KEY (user_id, data_type, record_key)
);

CREATE TABLE IF NOT EXISTS {s}.terra_misc_payloads (
  payload_id TEXT NOT NULL PRIMARY KEY,
  user_id TEXT,
  payload_type TEXT NOT NULL,
  data_type TEXT,
  created_at TEXT NOT NULL,
  payload JSONB NOT NULL
);

CREATE INDEX IF NOT EXISTS terra_data_payloads_user_day ON {s}.terra_data_payloads (user_id, data_type, day);
CREATE INDEX IF NOT EXISTS terra_misc_payloads_user ON {s}.terra_misc_payloads (user_id, payload_type);

-- Upserts through the REST API update every column sent; these triggers keep the rules:
-- a user keeps known identity fields and its newer state, and a data row is only replaced
-- by the same or a newer version (a late older version changes nothing).
CREATE OR REPLACE FUNCTION {s}.terra_users_merge() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.reference_id := COALESCE(NEW.reference_id, OLD.reference_id);
  NEW.provider := COALESCE(NEW.provider, OLD.provider);
  NEW.granted_scopes := COALESCE(NEW.granted_scopes, OLD.granted_scopes);
  IF NEW.state_changed_at IS NULL
     OR (OLD.state_changed_at IS NOT NULL AND NEW.state_changed_at < OLD.state_changed_at) THEN
    NEW.state := OLD.state;
    NEW.state_changed_at := OLD.state_changed_at;
  END IF;
  NEW.created_at := OLD.created_at;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS terra_users_merge ON {s}.terra_users;
CREATE TRIGGER terra_users_merge BEFORE UPDATE ON {s}.terra_users
  FOR EACH ROW EXECUTE FUNCTION {s}.terra_users_merge();

CREATE OR REPLACE FUNCTION {s}.terra_data_payloads_keep_newest() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF NEW.version < OLD.version THEN
    RETURN NULL;
  END IF;
  NEW.created_at := OLD.created_at;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS terra_data_payloads_keep_newest ON {s}.terra_data_payloads;
CREATE TRIGGER terra_data_payloads_keep_newest BEFORE UPDATE ON {s}.terra_data_payloads
  FOR EACH ROW EXECUTE FUNCTION {s}.terra_data_payloads_keep_newest();

-- Only the service role (which bypasses row-level security) reads and writes these tables.
ALTER TABLE {s}.terra_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.terra_data_payloads ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.terra_misc_payloads ENABLE ROW LEVEL SECURITY;
GRANT USAGE ON SCHEMA {s} TO service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.terra_users, {s}.terra_data_payloads, {s}.terra_misc_payloads TO service_role;

-- Let the REST API see the new tables now.
NOTIFY pgrst, 'reload schema';
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_sql_quotes_the_schema_and_mentions_exposure() {
        let sql = init_sql("api");
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"api\".terra_data_payloads"));
        assert!(sql.contains("Exposed schemas"));
        assert!(!init_sql("public").contains("Exposed schemas"));
        assert!(sql.contains("TO service_role"));
    }
}
