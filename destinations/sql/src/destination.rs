//! The destination: a lazily connected pool, table setup, and batched transactional writes.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use async_trait::async_trait;
use manifold_core::destination::{Delivery, Destination, Outcome};
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor, Row};
use tokio::sync::OnceCell;

use crate::classify::{Failure, GrantTarget, Stage, classify};
use crate::plan::{Item, Plan, parse, ts};
use crate::sql::{DATA_COLS, Dialect, MISC_COLS, Sql, TABLES, USER_COLS};
use crate::{MAX_BATCH, Settings};

/// Writes Terra payloads into `terra_users`, `terra_data_payloads` and `terra_misc_payloads`.
pub struct SqlDestination {
    name: String,
    settings: Settings,
    sql: Sql,
    connect_options: AnyConnectOptions,
    /// Created on first use: building a pool needs a Tokio runtime, `build` may run without one.
    pool: OnceLock<AnyPool>,
    grants: GrantTarget,
    tables_ready: OnceCell<()>,
}

impl fmt::Debug for SqlDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlDestination")
            .field("name", &self.name)
            .field("driver", &self.settings.dialect.name())
            .field("schema", &self.settings.schema)
            .finish_non_exhaustive()
    }
}

/// One bind value.
enum Val {
    S(Option<String>),
    I(i64),
}

fn s(v: &Option<String>) -> Val {
    Val::S(v.clone())
}
fn st(v: &str) -> Val {
    Val::S(Some(v.to_string()))
}

fn query(sql: String, vals: Vec<Val>) -> Query<'static, Any, AnyArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in vals {
        q = match v {
            Val::S(s) => q.bind(s),
            Val::I(i) => q.bind(i),
        };
    }
    q
}

fn sqlite_url(raw: &str, create: bool) -> String {
    if !create || raw.contains("mode=") || raw.contains(":memory:") {
        return raw.to_string();
    }
    let sep = if raw.contains('?') { '&' } else { '?' };
    format!("{raw}{sep}mode=rwc")
}

impl SqlDestination {
    /// Build without I/O: the pool connects on first use.
    pub fn new(name: &str, settings: Settings) -> Result<SqlDestination, String> {
        sqlx::any::install_default_drivers();
        let dialect = settings.dialect;
        let raw = settings.url.expose().trim().to_string();
        let conn_url = match dialect {
            Dialect::Sqlite => sqlite_url(&raw, settings.create_tables),
            _ => raw.clone(),
        };
        // Never include the URL itself in the message: it may hold a password.
        let connect_options = AnyConnectOptions::from_str(&conn_url).map_err(|e| {
            format!(
                "the {} URL cannot be used: {}",
                dialect.name(),
                redact(&e.to_string(), settings.url.expose())
            )
        })?;
        let parsed = url::Url::parse(&raw).ok();
        let user = parsed
            .as_ref()
            .map(|u| u.username().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "<manifold user>".to_string());
        let scope = match dialect {
            Dialect::Postgres => settings.schema.clone().unwrap_or_default(),
            _ => parsed
                .as_ref()
                .map(|u| u.path().trim_start_matches('/').to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "<database>".to_string()),
        };
        Ok(SqlDestination {
            name: name.to_string(),
            sql: Sql {
                dialect,
                schema: settings.schema.clone(),
            },
            grants: GrantTarget {
                dialect,
                user,
                scope,
            },
            settings,
            connect_options,
            pool: OnceLock::new(),
            tables_ready: OnceCell::new(),
        })
    }

    /// The pool, created (without connecting) on first use.
    pub fn pool(&self) -> &AnyPool {
        self.pool.get_or_init(|| {
            let mut opts = AnyPoolOptions::new()
                .max_connections(self.settings.max_connections)
                .acquire_timeout(self.settings.connect_timeout);
            if self.settings.dialect == Dialect::Sqlite {
                opts = opts.after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                });
            }
            opts.connect_lazy_with(self.connect_options.clone())
        })
    }

    async fn missing_tables(&self) -> Result<Vec<&'static str>, sqlx::Error> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.existing_tables()));
        if let Some(schema) = &self.sql.schema {
            q = q.bind(schema.clone());
        }
        let rows = q.fetch_all(self.pool()).await?;
        let existing: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("name").ok())
            .collect();
        Ok(TABLES
            .into_iter()
            .filter(|t| !existing.iter().any(|e| e == t))
            .collect())
    }

    /// Make sure the three tables exist (creating them when `create_tables`). Runs once per
    /// destination until it succeeds.
    async fn ensure_tables(&self) -> Result<(), Failure> {
        self.tables_ready
            .get_or_try_init(|| async {
                let missing = self
                    .missing_tables()
                    .await
                    .map_err(|e| classify(&e, Stage::Connect, &self.grants))?;
                if missing.is_empty() {
                    return Ok(());
                }
                let names = missing
                    .iter()
                    .map(|t| self.sql.display_table(t))
                    .collect::<Vec<_>>()
                    .join(", ");
                if !self.settings.create_tables {
                    return Err(Failure::Access(format!(
                        "table(s) {names} do not exist: create them (DDL in the manifold-sql docs) or set create_tables = true"
                    )));
                }
                if let Err(e) = self.create_tables(&missing).await {
                    // Another node may have created them meanwhile.
                    if self.missing_tables().await.is_ok_and(|m| m.is_empty()) {
                        return Ok(());
                    }
                    let f = classify(&e, Stage::Create, &self.grants);
                    return Err(match f {
                        Failure::Permanent(r) => {
                            Failure::Access(format!("cannot create {names}: {r}"))
                        }
                        other => other,
                    });
                }
                tracing::info!(destination = %self.name, tables = %names, "created the Terra tables");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn create_tables(&self, missing: &[&'static str]) -> Result<(), sqlx::Error> {
        if let Some(schema) = &self.sql.schema {
            let exists =
                sqlx::query("SELECT 1 AS one FROM pg_catalog.pg_namespace WHERE nspname = $1")
                    .bind(schema.clone())
                    .fetch_optional(self.pool())
                    .await?
                    .is_some();
            if !exists {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .execute(self.pool())
                .await?;
            }
        }
        for t in missing {
            sqlx::query(sqlx::AssertSqlSafe(self.sql.create_table(t)))
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Write items in one transaction.
    async fn write(&self, items: &[&Item]) -> Result<(), Failure> {
        let plan = Plan::merge(items.iter().copied());
        let now = ts(chrono::Utc::now());
        let g = &self.grants;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| classify(&e, Stage::Connect, g))?;
        let max = self.settings.dialect.max_params();

        for chunk in plan.users.chunks(max / USER_COLS.len()) {
            let mut vals = Vec::with_capacity(chunk.len() * USER_COLS.len());
            for u in chunk {
                vals.extend([
                    st(&u.user_id),
                    s(&u.reference_id),
                    s(&u.provider),
                    s(&u.granted_scopes),
                    st(u.state.as_ref().map(|(s, _)| *s).unwrap_or("active")),
                    Val::S(u.state.as_ref().map(|(_, at)| at.clone())),
                    st(&now),
                    st(&now),
                ]);
            }
            query(self.sql.upsert_users(chunk.len()), vals)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&e, Stage::Write, g))?;
        }
        for d in &plan.deletes {
            let vals = vec![st(&d.user_id), st(&d.data_type), st(&d.key), st(&d.key)];
            query(self.sql.delete_data(), vals)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&e, Stage::Write, g))?;
        }
        for chunk in plan.data.chunks(max / DATA_COLS.len()) {
            let mut vals = Vec::with_capacity(chunk.len() * DATA_COLS.len());
            for r in chunk {
                vals.extend([
                    st(&r.user_id),
                    st(&r.data_type),
                    st(&r.record_key),
                    s(&r.summary_id),
                    s(&r.day),
                    s(&r.start_time),
                    s(&r.end_time),
                    st(&r.payload_id),
                    Val::I(r.version),
                    st(&now),
                    st(&now),
                    Val::S(Some(r.payload.to_string())),
                ]);
            }
            query(self.sql.upsert_data(chunk.len()), vals)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&e, Stage::Write, g))?;
        }
        for chunk in plan.misc.chunks(max / MISC_COLS.len()) {
            let mut vals = Vec::with_capacity(chunk.len() * MISC_COLS.len());
            for m in chunk {
                vals.extend([
                    st(&m.payload_id),
                    s(&m.user_id),
                    st(&m.payload_type),
                    s(&m.data_type),
                    st(&now),
                    Val::S(Some(m.payload.to_string())),
                ]);
            }
            query(self.sql.insert_misc(chunk.len()), vals)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&e, Stage::Write, g))?;
        }
        tx.commit()
            .await
            .map_err(|e| classify(&e, Stage::Write, g))?;
        Ok(())
    }

    /// Prove that every statement the destination uses is allowed, then roll back.
    async fn probe(&self) -> Result<(), Failure> {
        let g = &self.grants;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| classify(&e, Stage::Connect, g))?;
        let now = ts(chrono::Utc::now());
        let id = "manifold-check-probe";
        let mut users = vec![
            st(id),
            Val::S(None),
            Val::S(None),
            Val::S(None),
            st("active"),
        ];
        users.extend([Val::S(None), st(&now), st(&now)]);
        let data = vec![
            st(id),
            st("sleep"),
            st(id),
            Val::S(None),
            Val::S(None),
            Val::S(None),
            Val::S(None),
            st(id),
            Val::I(0),
            st(&now),
            st(&now),
            st("{}"),
        ];
        let misc = vec![
            st(id),
            st(id),
            st("healthcheck"),
            Val::S(None),
            st(&now),
            st("{}"),
        ];
        let del = vec![st(id), st("sleep"), st(id), st(id)];
        for (sql, vals) in [
            (self.sql.upsert_users(1), users),
            (self.sql.upsert_data(1), data),
            (self.sql.insert_misc(1), misc),
            (self.sql.delete_data(), del),
        ] {
            query(sql, vals)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&e, Stage::Write, g))?;
        }
        tx.rollback()
            .await
            .map_err(|e| classify(&e, Stage::Write, g))?;
        Ok(())
    }
}

/// Remove the URL (and its password) from a message.
fn redact(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, "<url>");
    if let Ok(u) = url::Url::parse(url)
        && let Some(p) = u.password()
        && !p.is_empty()
    {
        out = out.replace(p, "***");
    }
    out
}

#[async_trait]
impl Destination for SqlDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let parsed: Vec<Result<Item, String>> = batch.iter().map(parse).collect();
        let mut out: Vec<Option<Outcome>> = parsed
            .iter()
            .map(|p| p.as_ref().err().map(|e| Outcome::permanent(e.clone())))
            .collect();
        let ok: Vec<(usize, &Item)> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().ok().map(|it| (i, it)))
            .collect();
        if !ok.is_empty() {
            let result = match self.ensure_tables().await {
                Err(f) => Err(f),
                Ok(()) => {
                    let items: Vec<&Item> = ok.iter().map(|(_, it)| *it).collect();
                    self.write(&items).await
                }
            };
            match result {
                Ok(()) => ok
                    .iter()
                    .for_each(|(i, _)| out[*i] = Some(Outcome::delivered())),
                Err(f) if f.item_specific() && ok.len() > 1 => {
                    tracing::debug!(destination = %self.name, reason = f.reason(), "batch failed; writing items one by one");
                    for (i, it) in &ok {
                        out[*i] = Some(match self.write(&[*it]).await {
                            Ok(()) => Outcome::delivered(),
                            Err(f) => f.outcome(),
                        });
                    }
                }
                Err(f) => ok.iter().for_each(|(i, _)| out[*i] = Some(f.outcome())),
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::internal("no outcome computed")))
            .collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn check(&self) -> Result<(), String> {
        let what = format!(
            "{} destination `{}`",
            self.settings.dialect.name(),
            self.name
        );
        self.pool().acquire().await.map_err(|e| {
            format!(
                "{what}: {}",
                classify(&e, Stage::Connect, &self.grants).reason()
            )
        })?;
        self.ensure_tables()
            .await
            .map_err(|f| format!("{what}: {}", f.reason()))?;
        self.probe()
            .await
            .map_err(|f| format!("{what}: cannot write: {}", f.reason()))
    }
}
