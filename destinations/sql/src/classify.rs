//! What a database error means for the delivery: retry, permanent, or a missing grant.

use std::borrow::Cow;

use manifold_core::destination::Outcome;

use crate::sql::Dialect;

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Transient: connection, timeout, deadlock, serialization, too many connections.
    Retry(String),
    /// The server refused the credentials or a privilege is missing: nothing in the batch can
    /// succeed until an operator acts.
    Access(String),
    /// Something about the data or the schema; may be specific to one item.
    Permanent(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retry(r) | Failure::Access(r) | Failure::Permanent(r) => r,
        }
    }

    /// Whether the failure may belong to one item of the batch (worth retrying items alone).
    pub fn item_specific(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Failure::Retry(r) => Outcome::retry(r.clone()),
            Failure::Access(r) | Failure::Permanent(r) => Outcome::permanent(r.clone()),
        }
    }
}

/// Who to grant to and on what, for missing-privilege hints.
#[derive(Debug, Clone)]
pub struct GrantTarget {
    pub dialect: Dialect,
    /// Role / user name from the URL.
    pub user: String,
    /// PostgreSQL schema or MySQL database.
    pub scope: String,
}

impl GrantTarget {
    /// The statements an owner runs so the destination can write.
    pub fn write_grant(&self) -> String {
        let GrantTarget { user, scope, .. } = self;
        match self.dialect {
            Dialect::Postgres => format!(
                "GRANT USAGE ON SCHEMA {scope} TO {user}; GRANT SELECT, INSERT, UPDATE, DELETE ON {scope}.terra_users, {scope}.terra_data_payloads, {scope}.terra_misc_payloads TO {user};"
            ),
            Dialect::MySql => {
                format!("GRANT SELECT, INSERT, UPDATE, DELETE ON `{scope}`.* TO '{user}'@'%';")
            }
            Dialect::Sqlite => {
                "make the database file and its directory writable by the manifold process"
                    .to_string()
            }
        }
    }

    /// The statements an owner runs so the destination can create its tables.
    pub fn create_grant(&self) -> String {
        let GrantTarget { user, scope, .. } = self;
        match self.dialect {
            Dialect::Postgres => format!(
                "CREATE SCHEMA IF NOT EXISTS {scope}; GRANT USAGE, CREATE ON SCHEMA {scope} TO {user}; (or create the tables yourself and set create_tables = false)"
            ),
            Dialect::MySql => format!(
                "GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `{scope}`.* TO '{user}'@'%'; (or create the tables yourself and set create_tables = false)"
            ),
            Dialect::Sqlite => {
                "make the database file and its directory writable by the manifold process"
                    .to_string()
            }
        }
    }
}

/// What was being done when the error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Create,
    Write,
}

/// Classify a sqlx error. `grants` names the GRANT for missing privileges.
pub fn classify(err: &sqlx::Error, stage: Stage, grants: &GrantTarget) -> Failure {
    use sqlx::Error as E;
    let ctx = match stage {
        Stage::Connect => "connecting to the database",
        Stage::Create => "creating the tables",
        Stage::Write => "writing",
    };
    match err {
        E::Io(e) => Failure::Retry(format!("{ctx}: connection failed: {e}")),
        E::PoolTimedOut => Failure::Retry(format!(
            "{ctx}: no database connection within the connect timeout (server down, unreachable or out of connections)"
        )),
        E::PoolClosed | E::WorkerCrashed => {
            Failure::Retry(format!("{ctx}: the connection pool is closed"))
        }
        E::Tls(e) => Failure::Retry(format!("{ctx}: TLS failed: {e}")),
        E::Protocol(e) => Failure::Retry(format!("{ctx}: protocol error: {e}")),
        E::Configuration(e) => Failure::Access(format!(
            "{ctx}: the database URL is not usable: {e}; fix `url`"
        )),
        E::Database(db) => classify_db(db.as_ref(), ctx, stage, grants),
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) | E::TypeNotFound { .. } => {
            Failure::Permanent(format!(
                "{ctx}: the tables do not have the expected columns ({err}); compare them with the DDL in the manifold-sql docs"
            ))
        }
        other => Failure::Retry(format!("{ctx}: {other}")),
    }
}

fn classify_db(
    db: &dyn sqlx::error::DatabaseError,
    ctx: &str,
    stage: Stage,
    grants: &GrantTarget,
) -> Failure {
    let msg = db.message().to_string();
    let code: Cow<'_, str> = db.code().unwrap_or(Cow::Borrowed(""));
    let grant = || match stage {
        Stage::Create => grants.create_grant(),
        _ => grants.write_grant(),
    };
    match grants.dialect {
        Dialect::Postgres => {
            let c = code.as_ref();
            match c {
                "28P01" | "28000" => Failure::Access(format!(
                    "{ctx}: authentication failed ({c}: {msg}); fix the user or password in `url`"
                )),
                "42501" => Failure::Access(format!(
                    "{ctx}: permission denied ({msg}); as the owner run: {}",
                    grant()
                )),
                "3D000" => Failure::Access(format!(
                    "{ctx}: {msg}; create the database or fix its name in `url`"
                )),
                "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03" | "25006"
                | "57014" => Failure::Retry(format!("{ctx}: {msg} ({c})")),
                _ if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
                    Failure::Retry(format!("{ctx}: {msg} ({c})"))
                }
                _ if c.starts_with("42") && matches!(c, "42P01" | "42703" | "3F000") => {
                    Failure::Permanent(format!(
                        "{ctx}: {msg} ({c}); the tables do not match: set create_tables = true or create them with the documented DDL"
                    ))
                }
                _ if c.starts_with("22")
                    || c.starts_with("23")
                    || c.starts_with("42")
                    || c.starts_with("2") =>
                {
                    Failure::Permanent(format!("{ctx}: {msg} ({c})"))
                }
                _ => Failure::Retry(format!("{ctx}: {msg} ({c})")),
            }
        }
        Dialect::MySql => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number())
                .unwrap_or(0);
            match number {
                1045 | 1698 | 1251 => Failure::Access(format!(
                    "{ctx}: authentication failed ({number}: {msg}); fix the user or password in `url`"
                )),
                1044 | 1142 | 1143 | 1227 | 1370 => Failure::Access(format!(
                    "{ctx}: permission denied ({number}: {msg}); as an admin run: {}",
                    grant()
                )),
                1049 => Failure::Access(format!(
                    "{ctx}: {msg}; create the database or fix its name in `url`"
                )),
                1205 | 1213 | 1040 | 1203 | 1053 | 1927 | 1290 | 1836 | 2002 | 2003 | 2006
                | 2013 | 1152 | 1158 | 1159 | 1160 | 1161 | 1969 | 3024 => {
                    Failure::Retry(format!("{ctx}: {msg} ({number})"))
                }
                1146 | 1054 => Failure::Permanent(format!(
                    "{ctx}: {msg} ({number}); the tables do not match: set create_tables = true or create them with the documented DDL"
                )),
                _ => {
                    let c = code.as_ref();
                    if c.starts_with("08") || c.starts_with("40") || c == "HY000" && number == 0 {
                        Failure::Retry(format!("{ctx}: {msg} ({number})"))
                    } else {
                        Failure::Permanent(format!("{ctx}: {msg} ({number})"))
                    }
                }
            }
        }
        Dialect::Sqlite => {
            let full: i64 = code.parse().unwrap_or(0);
            match full & 0xff {
                5 | 6 | 10 | 13 | 15 => Failure::Retry(format!("{ctx}: {msg} (sqlite {full})")),
                // The file's directory may be a volume that is not mounted yet.
                14 => Failure::Retry(format!(
                    "{ctx}: {msg} (sqlite {full}); check that the directory in `url` exists and is writable"
                )),
                8 | 23 => Failure::Access(format!(
                    "{ctx}: {msg} (sqlite {full}); {}",
                    grants.write_grant()
                )),
                _ => Failure::Permanent(format!("{ctx}: {msg} (sqlite {full})")),
            }
        }
    }
}
