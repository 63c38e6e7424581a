//! The SQL text for each dialect: DDL and the multi-row upserts.

/// Which database the destination writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

pub use crate::plan::{DATA, DATA_COLS, MISC, MISC_COLS, TABLES, USER_COLS, USERS};

/// Columns updated when a newer version arrives (everything but the key and `created_at`).
const DATA_UPDATED: [&str; 8] = [
    "summary_id",
    "day",
    "start_time",
    "end_time",
    "payload_id",
    "updated_at",
    "payload",
    "version",
];

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Most bind parameters in one statement (SQLite's is the smallest).
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            _ => 65_000,
        }
    }

    fn json_type(self) -> &'static str {
        match self {
            Dialect::Postgres => "JSONB",
            Dialect::MySql => "JSON",
            Dialect::Sqlite => "TEXT",
        }
    }
}

/// Table names and statements for one destination.
#[derive(Debug, Clone)]
pub struct Sql {
    pub dialect: Dialect,
    pub schema: Option<String>,
}

impl Sql {
    /// The (schema-qualified) table name as written in statements.
    pub fn table(&self, t: &str) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".{t}"),
            None => t.to_string(),
        }
    }

    /// The table name as a user would write it (for messages and GRANT hints).
    pub fn display_table(&self, t: &str) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{t}"),
            None => t.to_string(),
        }
    }

    fn values(&self, rows: usize, cols: usize, json_col: Option<usize>) -> String {
        let mut out = String::new();
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                out.push_str(", ");
            }
            out.push('(');
            for c in 0..cols {
                if c > 0 {
                    out.push_str(", ");
                }
                n += 1;
                match self.dialect {
                    Dialect::Postgres if Some(c) == json_col => {
                        out.push_str(&format!("${n}::jsonb"))
                    }
                    Dialect::Postgres => out.push_str(&format!("${n}")),
                    _ => out.push('?'),
                }
            }
            out.push(')');
        }
        out
    }

    fn ph(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for one table.
    pub fn create_table(&self, t: &str) -> String {
        let json = self.dialect.json_type();
        let suffix = match self.dialect {
            Dialect::MySql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            _ => "",
        };
        let body = match t {
            USERS => "user_id VARCHAR(255) NOT NULL PRIMARY KEY,\n  \
                 reference_id TEXT,\n  provider TEXT,\n  granted_scopes TEXT,\n  \
                 state VARCHAR(32) NOT NULL,\n  state_changed_at VARCHAR(40),\n  \
                 created_at VARCHAR(40) NOT NULL,\n  updated_at VARCHAR(40) NOT NULL"
                .to_string(),
            DATA => format!(
                "user_id VARCHAR(255) NOT NULL,\n  data_type VARCHAR(64) NOT NULL,\n  \
                 record_key VARCHAR(255) NOT NULL,\n  summary_id TEXT,\n  day VARCHAR(10),\n  \
                 start_time TEXT,\n  end_time TEXT,\n  payload_id VARCHAR(128) NOT NULL,\n  \
                 version BIGINT NOT NULL,\n  created_at VARCHAR(40) NOT NULL,\n  \
                 updated_at VARCHAR(40) NOT NULL,\n  payload {json} NOT NULL,\n  \
                 PRIMARY KEY (user_id, data_type, record_key)"
            ),
            _ => format!(
                "payload_id VARCHAR(128) NOT NULL PRIMARY KEY,\n  user_id VARCHAR(255),\n  \
                 payload_type VARCHAR(64) NOT NULL,\n  data_type VARCHAR(64),\n  \
                 created_at VARCHAR(40) NOT NULL,\n  payload {json} NOT NULL"
            ),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n  {body}\n){suffix}",
            self.table(t)
        )
    }

    /// Which of the three tables exist (one text column `name`); binds the schema on PostgreSQL.
    pub fn existing_tables(&self) -> String {
        let list = TABLES.map(|t| format!("'{t}'")).join(", ");
        match self.dialect {
            Dialect::Postgres => format!(
                "SELECT c.relname::text AS name FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname IN ({list})"
            ),
            Dialect::MySql => format!(
                "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name IN ({list})"
            ),
            Dialect::Sqlite => {
                format!("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({list})")
            }
        }
    }

    /// Multi-row upsert into `terra_data_payloads`; newer-or-equal versions win.
    pub fn upsert_data(&self, rows: usize) -> String {
        let cols = DATA_COLS.join(", ");
        let values = self.values(rows, DATA_COLS.len(), Some(DATA_COLS.len() - 1));
        match self.dialect {
            Dialect::MySql => {
                let sets = DATA_UPDATED
                    .iter()
                    .map(|c| {
                        if *c == "version" {
                            "version = GREATEST(version, VALUES(version))".to_string()
                        } else {
                            format!("{c} = IF(VALUES(version) >= version, VALUES({c}), {c})")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "INSERT INTO {} ({cols}) VALUES {values} ON DUPLICATE KEY UPDATE {sets}",
                    self.table(DATA)
                )
            }
            _ => {
                let sets = DATA_UPDATED
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "INSERT INTO {} AS t ({cols}) VALUES {values} \
                     ON CONFLICT (user_id, data_type, record_key) DO UPDATE SET {sets} \
                     WHERE t.version <= excluded.version",
                    self.table(DATA)
                )
            }
        }
    }

    /// Multi-row upsert into `terra_users`: identity columns are refreshed when given, the state
    /// only changes when the change is not older than the current one.
    pub fn upsert_users(&self, rows: usize) -> String {
        let cols = USER_COLS.join(", ");
        let values = self.values(rows, USER_COLS.len(), None);
        match self.dialect {
            Dialect::MySql => {
                let newer = "(VALUES(state_changed_at) IS NOT NULL AND (state_changed_at IS NULL \
                             OR VALUES(state_changed_at) >= state_changed_at))";
                format!(
                    "INSERT INTO {} ({cols}) VALUES {values} ON DUPLICATE KEY UPDATE \
                     reference_id = COALESCE(VALUES(reference_id), reference_id), \
                     provider = COALESCE(VALUES(provider), provider), \
                     granted_scopes = COALESCE(VALUES(granted_scopes), granted_scopes), \
                     state = IF({newer}, VALUES(state), state), \
                     state_changed_at = IF({newer}, VALUES(state_changed_at), state_changed_at), \
                     updated_at = VALUES(updated_at)",
                    self.table(USERS)
                )
            }
            _ => {
                let newer = "(excluded.state_changed_at IS NOT NULL AND (t.state_changed_at IS NULL \
                             OR excluded.state_changed_at >= t.state_changed_at))";
                format!(
                    "INSERT INTO {} AS t ({cols}) VALUES {values} ON CONFLICT (user_id) DO UPDATE SET \
                     reference_id = COALESCE(excluded.reference_id, t.reference_id), \
                     provider = COALESCE(excluded.provider, t.provider), \
                     granted_scopes = COALESCE(excluded.granted_scopes, t.granted_scopes), \
                     state = CASE WHEN {newer} THEN excluded.state ELSE t.state END, \
                     state_changed_at = CASE WHEN {newer} THEN excluded.state_changed_at \
                     ELSE t.state_changed_at END, \
                     updated_at = excluded.updated_at",
                    self.table(USERS)
                )
            }
        }
    }

    /// Multi-row insert into `terra_misc_payloads`; a redelivered event (same trace id) is kept
    /// once.
    pub fn insert_misc(&self, rows: usize) -> String {
        let cols = MISC_COLS.join(", ");
        let values = self.values(rows, MISC_COLS.len(), Some(MISC_COLS.len() - 1));
        match self.dialect {
            Dialect::MySql => format!(
                "INSERT INTO {} ({cols}) VALUES {values} ON DUPLICATE KEY UPDATE payload_id = payload_id",
                self.table(MISC)
            ),
            _ => format!(
                "INSERT INTO {} ({cols}) VALUES {values} ON CONFLICT (payload_id) DO NOTHING",
                self.table(MISC)
            ),
        }
    }

    /// Delete the rows a tombstone names: binds user_id, data_type, key, key.
    pub fn delete_data(&self) -> String {
        format!(
            "DELETE FROM {} WHERE user_id = {} AND data_type = {} AND (record_key = {} OR summary_id = {})",
            self.table(DATA),
            self.ph(1),
            self.ph(2),
            self.ph(3),
            self.ph(4)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_and_json_cast() {
        let s = Sql {
            dialect: Dialect::Postgres,
            schema: Some("terra".into()),
        };
        let q = s.upsert_data(2);
        assert!(q.starts_with("INSERT INTO \"terra\".terra_data_payloads AS t"));
        assert!(q.contains("$12::jsonb), ($13,"));
        assert!(q.contains("$24::jsonb)"));
        assert!(q.contains("WHERE t.version <= excluded.version"));
    }

    #[test]
    fn mysql_updates_version_last() {
        let s = Sql {
            dialect: Dialect::MySql,
            schema: None,
        };
        let q = s.upsert_data(1);
        assert!(q.ends_with("version = GREATEST(version, VALUES(version))"));
        assert!(!q.contains('$'));
    }
}
