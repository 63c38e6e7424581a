//! The durable outbox. One schema, two backends: an SQLite file (default, single node, group
//! commit) and PostgreSQL (many nodes: `FOR UPDATE SKIP LOCKED` claims under leases,
//! `LISTEN/NOTIFY` wake-ups).
//!
//! Rows: `payloads` (written once per natural key + version), `deliveries` (one per payload ×
//! destination), `attempts` (the log of every try), `dead_letters`, `destination_state`.

mod backfill;
pub mod history_requests;
mod oura;
pub mod rate_budget;
mod schema;
mod writer;

pub use backfill::HistoryDocRow;
pub use oura::{
    NewOuraNotification, NotificationRecorded, OuraDocumentRow, OuraNotification,
    OuraNotificationInfo, OuraSubscriptionRow, OuraTokens, OuraUserRow,
};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::redact_url;
use crate::destination::Delivery;
use crate::event::Envelope;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// A payload to commit with its delivery rows.
#[derive(Debug, Clone)]
pub struct NewPayload {
    pub envelope: Envelope,
    pub terra_reference: Option<String>,
    pub body: String,
    /// Names of the destinations that get a delivery row.
    pub destinations: Vec<String>,
    /// Store a new version (and deliver it) even when the body equals the latest stored
    /// version, e.g. history explicitly requested with `to_webhook=true`.
    pub force: bool,
}

/// Result of committing a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub payload_id: String,
    pub version: i64,
    /// Delivery rows created (0 when the payload was identical to the stored latest version).
    pub deliveries: usize,
    /// The same body was already stored as the latest version of this natural key.
    pub duplicate: bool,
}

/// What happens to a claimed delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Delivered,
    RetryAt {
        at_ms: i64,
        error: String,
    },
    Dead {
        reason: String,
    },
    /// Put back without using up the attempt (the destination was disabled meanwhile).
    Release {
        error: String,
    },
}

/// One finished attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub destination: String,
    pub attempt: u32,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub status_code: Option<u16>,
    pub class: &'static str,
    pub error: Option<String>,
    pub response: Option<String>,
    pub disposition: Disposition,
}

/// A delivery row as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryInfo {
    pub id: String,
    pub payload_id: String,
    pub destination: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub dead_reason: Option<String>,
    pub event_type: String,
    pub user_id: Option<String>,
    pub natural_key: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One attempt-log row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptInfo {
    pub delivery_id: String,
    pub destination: String,
    pub node: String,
    pub attempt: i64,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub status_code: Option<i64>,
    pub class: String,
    pub error: Option<String>,
    pub response: Option<String>,
}

/// Queue figures for one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub pending: i64,
    pub due: i64,
    pub oldest_due_ms: Option<i64>,
    pub dead: i64,
    pub delivered: i64,
}

/// Filter for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub destination: Option<String>,
    pub payload_id: Option<String>,
    pub limit: i64,
}

/// Wakes the workers of a destination when rows for it were committed.
#[derive(Default)]
pub struct Wakers {
    map: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    pub fn get(&self, destination: &str) -> Arc<Notify> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(destination.to_string()).or_default().clone()
    }
    pub fn wake(&self, destination: &str) {
        self.get(destination).notify_one();
    }
}

const NOTIFY_CHANNEL: &str = "manifold_deliveries";

/// SQLite: WAL pages between automatic checkpoints (SQLite's default is 1,000, i.e. 4 MB). At
/// full load the outbox rewrites the same index pages in every group commit; a longer interval
/// copies each such page back to the database file once instead of many times. The WAL file
/// stays around 16 MB at most under sustained load.
const WAL_AUTOCHECKPOINT: u32 = 4000;
const RESPONSE_LIMIT: usize = 2048;

/// Natural keys per latest-version lookup, rows per multi-row INSERT: well under SQLite's
/// 32,766 bound parameters and PostgreSQL's 65,535.
const LOOKUP_CHUNK: usize = 500;
const INSERT_CHUNK: usize = 200;

/// `n` bind placeholders numbered from `first`, comma-separated: `$first, $first+1, …` on
/// PostgreSQL; anonymous `?` on SQLite, because SQLite looks a *named* parameter (`$3`) up in a
/// linear list, so binding a 1,000-parameter multi-row statement by name costs a million string
/// compares. Statements built with this number their parameters in order of appearance.
fn placeholders(backend: Backend, first: usize, n: usize) -> String {
    match backend {
        Backend::Postgres => (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
        Backend::Sqlite => vec!["?"; n].join(", "),
    }
}

/// `rows` parenthesised groups of `per_row` placeholders numbered from `first`, each group
/// followed by the literal SQL `tail` (constant columns): `($1, $2, 0), ($3, $4, 0)`.
fn value_rows(backend: Backend, first: usize, rows: usize, per_row: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            format!(
                "({}{tail})",
                placeholders(backend, first + r * per_row, per_row)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids and natural keys of a group of payloads to commit, and the keys whose latest stored
/// version must be read (shared by the SQLite writer and the sqlx statements).
struct CommitKeys<'a> {
    ids: Vec<String>,
    keys: Vec<String>,
    /// Sorted, so PostgreSQL transactions with overlapping keys lock in the same order.
    lookup: Vec<&'a str>,
}

impl<'a> CommitKeys<'a> {
    fn new(payloads: &[&'a NewPayload]) -> CommitKeys<'a> {
        let ids: Vec<String> = payloads
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let keys: Vec<String> = payloads
            .iter()
            .zip(&ids)
            .map(|(p, id)| {
                p.envelope
                    .natural_key
                    .clone()
                    .unwrap_or_else(|| format!("event:{id}"))
            })
            .collect();
        let mut lookup: Vec<&'a str> = payloads
            .iter()
            .filter_map(|p| p.envelope.natural_key.as_deref())
            .collect();
        lookup.sort_unstable();
        lookup.dedup();
        CommitKeys { ids, keys, lookup }
    }
}

/// Decide every payload of a group against `latest` (natural key → stored id, version, body):
/// identical to the latest version (and not forced) → a duplicate, nothing written; otherwise
/// the next version. Returns each payload's result and the `(index, version)` rows to insert;
/// `latest` is updated so a later payload of the same key in the group builds on an earlier one.
fn plan_versions(
    payloads: &[&NewPayload],
    ids: &[String],
    keys: &[String],
    latest: &mut HashMap<String, (String, i64, String)>,
) -> (Vec<Result<Committed>>, Vec<(usize, i64)>) {
    let mut out = Vec::with_capacity(payloads.len());
    let mut inserts: Vec<(usize, i64)> = Vec::with_capacity(payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        if let Some((id, version, body)) = latest.get(&keys[i])
            && *body == p.body
            && !p.force
        {
            out.push(Ok(Committed {
                payload_id: id.clone(),
                version: *version,
                deliveries: 0,
                duplicate: true,
            }));
            continue;
        }
        let version = latest.get(&keys[i]).map(|l| l.1 + 1).unwrap_or(1);
        latest.insert(keys[i].clone(), (ids[i].clone(), version, p.body.clone()));
        inserts.push((i, version));
        out.push(Ok(Committed {
            payload_id: ids[i].clone(),
            version,
            deliveries: p.destinations.len(),
            duplicate: false,
        }));
    }
    (out, inserts)
}

/// The delivered records of `(token, node, record)` grouped by claim token.
fn delivered_by_token<'a>(
    all: &[(&'a str, &str, &'a AttemptRecord)],
) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut delivered: Vec<(&str, Vec<&str>)> = Vec::new();
    for (token, _, r) in all {
        if r.disposition != Disposition::Delivered {
            continue;
        }
        match delivered.iter_mut().find(|(t, _)| t == token) {
            Some((_, ids)) => ids.push(r.delivery_id.as_str()),
            None => delivered.push((token, vec![r.delivery_id.as_str()])),
        }
    }
    delivered
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    writer: Option<mpsc::Sender<writer::Request>>,
    wakers: Arc<Wakers>,
    /// SQLite allows one writer at a time. Write transactions on pool connections and the
    /// group-commit writer take this gate first, so they queue here (woken at once) instead of
    /// in SQLite's busy handler, which sleeps 1-25 ms per retry.
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction on a pool connection; holds the SQLite write gate until it ends.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl Store {
    /// Connect, apply migrations, start the group-commit writer (SQLite).
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Other(format!(
                "unsupported store URL `{}`",
                redact_url(url)
            )));
        };
        let pool = match backend {
            Backend::Sqlite => {
                let conn_url = sqlite_url(url)?;
                AnyPoolOptions::new()
                    .max_connections(max_connections.clamp(2, 8))
                    .min_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Pool connections (claims, admin writes) only need to survive a
                            // process crash; the writer's own connection syncs every commit
                            // (see writer.rs), which is what acknowledgements rely on.
                            let pragmas = format!(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=15000; PRAGMA foreign_keys=ON; \
                                 PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT};"
                            );
                            conn.execute(sqlx::AssertSqlSafe(pragmas)).await?;
                            Ok(())
                        })
                    })
                    .connect(&conn_url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?
            }
        };
        let mut store = Store {
            pool,
            backend,
            url: url.to_string(),
            writer: None,
            wakers: Arc::new(Wakers::default()),
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
        };
        store.migrate().await?;
        if backend == Backend::Sqlite {
            let shared = writer::Shared {
                gate: store.write_gate.clone(),
                wakers: store.wakers.clone(),
            };
            store.writer = Some(writer::spawn(&sqlite_path(url), shared)?);
        }
        Ok(store)
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// a transaction that first reads never fails to upgrade under concurrent writers.
    async fn write_tx(&self) -> Result<WriteTx> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let gate = self.write_gate().await;
                WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _gate: gate,
                }
            }
            Backend::Postgres => WriteTx {
                tx: self.pool.begin().await?,
                _gate: None,
            },
        })
    }

    /// Take the SQLite write gate (see the field); `None` on PostgreSQL. Hold it across a
    /// single autocommit write on a pool connection. Never hold it while waiting for another
    /// write of this store.
    pub(crate) async fn write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_gate.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn wakers(&self) -> &Arc<Wakers> {
        &self.wakers
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several nodes may start at once: one migrates, the others wait.
            conn.execute("SELECT pg_advisory_lock(7261001)").await?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS manifold_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM manifold_migrations")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.get::<i64, _>(0))
                .collect();
            let list = match self.backend {
                Backend::Sqlite => schema::SQLITE,
                Backend::Postgres => schema::POSTGRES,
            };
            for (version, description, sql) in list {
                if applied.contains(version) {
                    continue;
                }
                let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
                tx.execute(*sql).await?;
                sqlx::query("INSERT INTO manifold_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
                    .bind(*version)
                    .bind(*description)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version, description, "store migration applied");
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7261001)").await?;
        }
        result?;
        Ok(())
    }

    /// Commit payloads and their delivery rows; each payload's rows in one transaction with it.
    /// Returns only after the commit is durable.
    pub async fn commit(&self, payload: NewPayload) -> Result<Committed> {
        match &self.writer {
            Some(w) => {
                let (tx, rx) = oneshot::channel();
                w.send(writer::Request::Commit {
                    payload,
                    respond: tx,
                })
                .await
                .map_err(|_| StoreError::Other("the store writer has stopped".into()))?;
                rx.await
                    .map_err(|_| StoreError::Other("the store writer has stopped".into()))?
            }
            None => {
                let mut results = self.commit_batch(vec![payload]).await?;
                results
                    .pop()
                    .ok_or_else(|| StoreError::Other("no result".into()))?
            }
        }
    }

    /// Commit several payloads in one transaction (group commit). Each gets its own result.
    pub(crate) async fn commit_batch(
        &self,
        payloads: Vec<NewPayload>,
    ) -> Result<Vec<Result<Committed>>> {
        let mut tx = self.write_tx().await?;
        let mut woken: Vec<String> = Vec::new();
        let out = self.commit_in(&mut tx, payloads, &mut woken).await?;
        if self.backend == Backend::Postgres {
            for d in &woken {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(d)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        for d in &woken {
            self.wakers.wake(d);
        }
        Ok(out)
    }

    /// The statements of a commit, inside the caller's transaction. Destinations that got rows
    /// are added to `woken`.
    ///
    /// Batched: one query reads the latest stored version of every natural key in the group,
    /// and multi-row INSERTs write the payloads and their delivery rows, so a group of a few
    /// hundred publishes costs a handful of statements, not five per event.
    pub(crate) async fn commit_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        payloads: Vec<NewPayload>,
        woken: &mut Vec<String>,
    ) -> Result<Vec<Result<Committed>>> {
        let now = now_ms();
        let refs: Vec<&NewPayload> = payloads.iter().collect();
        let CommitKeys { ids, keys, lookup } = CommitKeys::new(&refs);
        if self.backend == Backend::Postgres {
            // Sorted, so two transactions with overlapping keys lock in the same order.
            for k in &lookup {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(*k)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // The latest stored (id, version, body) of every key in the group.
        let mut latest: HashMap<String, (String, i64, String)> = HashMap::new();
        for chunk in lookup.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT p.natural_key, p.id, p.version, p.body FROM payloads p WHERE p.natural_key IN ({}) \
                 AND p.version = (SELECT MAX(q.version) FROM payloads q WHERE q.natural_key = p.natural_key)",
                placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for k in chunk {
                q = q.bind(*k);
            }
            for row in q.fetch_all(&mut *tx).await? {
                latest.insert(row.get(0), (row.get(1), row.get(2), row.get(3)));
            }
        }
        let (out, inserts) = plan_versions(&refs, &ids, &keys, &mut latest);
        for chunk in inserts.chunks(INSERT_CHUNK) {
            // `now` is an integer from our clock, written as a literal.
            let sql = format!(
                "INSERT INTO payloads (id, natural_key, version, event_type, user_id, reference_id, \
                 terra_reference, body, created_at) VALUES {}",
                value_rows(self.backend, 1, chunk.len(), 8, &format!(", {now}"))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &(i, version) in chunk {
                let p = &payloads[i];
                q = q
                    .bind(ids[i].as_str())
                    .bind(keys[i].as_str())
                    .bind(version)
                    .bind(p.envelope.event_type.as_str())
                    .bind(p.envelope.user_id.as_deref())
                    .bind(p.envelope.reference_id.as_deref())
                    .bind(p.terra_reference.as_deref())
                    .bind(p.body.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        let rows: Vec<(String, usize, &str)> = inserts
            .iter()
            .flat_map(|&(i, _)| {
                payloads[i]
                    .destinations
                    .iter()
                    .map(move |d| (uuid::Uuid::now_v7().to_string(), i, d.as_str()))
            })
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO deliveries (id, payload_id, destination, status, attempts, next_attempt_at, \
                 created_at, updated_at) VALUES {}",
                value_rows(
                    self.backend,
                    1,
                    chunk.len(),
                    3,
                    &format!(", 'pending', 0, {now}, {now}, {now}")
                )
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, i, dest) in chunk {
                q = q.bind(id.as_str()).bind(ids[*i].as_str()).bind(*dest);
                if !woken.iter().any(|w| w == dest) {
                    woken.push(dest.to_string());
                }
            }
            q.execute(&mut *tx).await?;
        }
        Ok(out)
    }

    /// Claim up to `limit` due deliveries of `destination` for `lease`. The returned token owns
    /// them until the lease expires; outcomes are recorded with it. A disabled destination
    /// (410, admin) yields nothing, whatever any node's cached state says.
    pub async fn claim(
        &self,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<(String, Vec<Delivery>)> {
        if let Some(w) = &self.writer {
            // SQLite: every write goes through the writer's connection, so claims never wait on
            // the database lock (SQLite's busy handler sleeps in coarse steps).
            let (tx, rx) = oneshot::channel();
            w.send(writer::Request::Claim {
                destination: destination.to_string(),
                limit,
                lease,
                respond: tx,
            })
            .await
            .map_err(|_| StoreError::Other("the store writer has stopped".into()))?;
            return rx
                .await
                .map_err(|_| StoreError::Other("the store writer has stopped".into()))?;
        }
        let mut conn = self.pool.acquire().await?;
        self.claim_in(&mut conn, destination, limit, lease).await
    }

    /// The statements of `claim` on the caller's connection (or transaction).
    pub(crate) async fn claim_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<(String, Vec<Delivery>)> {
        let token = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let expires = now + lease.as_millis() as i64;
        let sql = match self.backend {
            Backend::Postgres => {
                "WITH due AS (SELECT id FROM deliveries WHERE destination = $1 AND status = 'pending' \
                 AND next_attempt_at <= $2 AND (lease_expires_at IS NULL OR lease_expires_at <= $2) \
                 AND NOT EXISTS (SELECT 1 FROM destination_state s WHERE s.name = $1 AND s.disabled <> 0) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries d SET lease_owner = $4, lease_expires_at = $5, attempts = d.attempts + 1, \
                 updated_at = $2 FROM due WHERE d.id = due.id"
            }
            Backend::Sqlite => {
                "UPDATE deliveries SET lease_owner = $4, lease_expires_at = $5, attempts = attempts + 1, \
                 updated_at = $2 WHERE id IN (SELECT id FROM deliveries WHERE destination = $1 \
                 AND status = 'pending' AND next_attempt_at <= $2 \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= $2) \
                 AND NOT EXISTS (SELECT 1 FROM destination_state s WHERE s.name = $1 AND s.disabled <> 0) \
                 ORDER BY next_attempt_at LIMIT $3)"
            }
        };
        let claimed = sqlx::query(sql)
            .bind(destination)
            .bind(now)
            .bind(limit as i64)
            .bind(&token)
            .bind(expires)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if claimed == 0 {
            return Ok((token, Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT d.id, d.payload_id, d.attempts, p.event_type, p.user_id, p.reference_id, p.natural_key, \
             p.version, p.terra_reference, p.created_at, p.body FROM deliveries d \
             JOIN payloads p ON p.id = d.payload_id WHERE d.lease_owner = $1 ORDER BY d.next_attempt_at, d.id",
        )
        .bind(&token)
        .fetch_all(&mut *conn)
        .await?;
        let deliveries = rows.iter().map(delivery_from_row).collect();
        Ok((token, deliveries))
    }

    /// Record finished attempts and their consequences in one transaction. Rows whose lease was
    /// lost (another node re-claimed them) are logged but not changed.
    pub async fn record(&self, token: &str, node: &str, records: &[AttemptRecord]) -> Result<()> {
        if let Some(w) = &self.writer {
            let (tx, rx) = oneshot::channel();
            w.send(writer::Request::Record {
                token: token.to_string(),
                node: node.to_string(),
                records: records.to_vec(),
                respond: tx,
            })
            .await
            .map_err(|_| StoreError::Other("the store writer has stopped".into()))?;
            return rx
                .await
                .map_err(|_| StoreError::Other("the store writer has stopped".into()))?;
        }
        let mut tx = self.write_tx().await?;
        self.record_in(&mut tx, token, node, records).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The statements of `record`, inside the caller's transaction.
    pub(crate) async fn record_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        token: &str,
        node: &str,
        records: &[AttemptRecord],
    ) -> Result<()> {
        self.record_many(tx, &[(token, node, records)]).await
    }

    /// Record the outcomes of several claims (`(token, node, records)`) in the caller's
    /// transaction: one multi-row INSERT for the attempt log and one UPDATE per claim token for
    /// the deliveries that succeeded (the common case); retries and dead letters row by row.
    pub(crate) async fn record_many(
        &self,
        tx: &mut sqlx::AnyConnection,
        jobs: &[(&str, &str, &[AttemptRecord])],
    ) -> Result<()> {
        let now = now_ms();
        let all: Vec<(&str, &str, &AttemptRecord)> = jobs
            .iter()
            .flat_map(|(token, node, records)| records.iter().map(move |r| (*token, *node, r)))
            .collect();
        for chunk in all.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO attempts (delivery_id, destination, node, attempt, started_at_us, finished_at_us, \
                 status_code, class, error, response) VALUES {}",
                value_rows(self.backend, 1, chunk.len(), 10, "")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (_, node, r) in chunk {
                q = q
                    .bind(r.delivery_id.as_str())
                    .bind(r.destination.as_str())
                    .bind(*node)
                    .bind(r.attempt as i64)
                    .bind(r.started_at_us)
                    .bind(r.finished_at_us)
                    .bind(r.status_code.map(i64::from))
                    .bind(r.class)
                    .bind(r.error.as_deref().map(|e| truncate(e, RESPONSE_LIMIT)))
                    .bind(r.response.as_deref().map(|e| truncate(e, RESPONSE_LIMIT)));
            }
            q.execute(&mut *tx).await?;
        }
        // Delivered rows, one UPDATE per claim token.
        for (token, ids) in &delivered_by_token(&all) {
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let sql = format!(
                    "UPDATE deliveries SET status = 'delivered', lease_owner = NULL, lease_expires_at = NULL, \
                     last_error = NULL, updated_at = {now} WHERE lease_owner = {} AND id IN ({})",
                    placeholders(self.backend, 1, 1),
                    placeholders(self.backend, 2, chunk.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(*token);
                for id in chunk {
                    q = q.bind(*id);
                }
                let changed = q.execute(&mut *tx).await?.rows_affected();
                if changed < chunk.len() as u64 {
                    tracing::warn!(
                        lost = chunk.len() as u64 - changed,
                        "lease lost before the outcome was recorded; another node owns the row"
                    );
                }
            }
        }
        for (token, _, r) in &all {
            let changed = match &r.disposition {
                Disposition::Delivered => continue,
                Disposition::RetryAt { at_ms, error } => sqlx::query(
                    "UPDATE deliveries SET next_attempt_at = $1, lease_owner = NULL, lease_expires_at = NULL, \
                     last_error = $2, updated_at = $3 WHERE id = $4 AND lease_owner = $5",
                )
                .bind(*at_ms)
                .bind(truncate(error, RESPONSE_LIMIT))
                .bind(now)
                .bind(&r.delivery_id)
                .bind(*token)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Disposition::Release { error } => sqlx::query(
                    "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = attempts - 1, \
                     last_error = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4",
                )
                .bind(truncate(error, RESPONSE_LIMIT))
                .bind(now)
                .bind(&r.delivery_id)
                .bind(*token)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Disposition::Dead { reason } => {
                    let n = sqlx::query(
                        "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL, \
                         last_error = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4",
                    )
                    .bind(truncate(reason, RESPONSE_LIMIT))
                    .bind(now)
                    .bind(&r.delivery_id)
                    .bind(*token)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n > 0 {
                        sqlx::query(
                            "INSERT INTO dead_letters (delivery_id, destination, reason, created_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (delivery_id) DO UPDATE SET \
                             reason = excluded.reason, created_at = excluded.created_at",
                        )
                        .bind(&r.delivery_id)
                        .bind(&r.destination)
                        .bind(truncate(reason, RESPONSE_LIMIT))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    n
                }
            };
            if changed == 0 {
                tracing::warn!(delivery = %r.delivery_id, "lease lost before the outcome was recorded; another node owns the row");
            }
        }
        Ok(())
    }

    /// Give back every row still leased under `token` (shutdown before an attempt started).
    pub async fn release(&self, token: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = attempts - 1 \
             WHERE lease_owner = $1 AND status = 'pending'",
        )
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Make a delivery due again now, with a fresh attempt budget. Returns false if unknown.
    pub async fn replay(&self, delivery_id: &str) -> Result<Option<String>> {
        let mut tx = self.write_tx().await?;
        let dest: Option<String> = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $1 WHERE id = $2 RETURNING destination",
        )
        .bind(now_ms())
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
        sqlx::query("DELETE FROM dead_letters WHERE delivery_id = $1")
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Some(d) = &dest {
            self.wakers.wake(d);
        }
        Ok(dest)
    }

    /// Replay every delivery of a destination with `status` created at or after `since_ms`.
    pub async fn replay_destination(
        &self,
        destination: &str,
        status: &str,
        since_ms: i64,
    ) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM dead_letters WHERE delivery_id IN (SELECT id FROM deliveries WHERE destination = $1 \
             AND status = $2 AND created_at >= $3)",
        )
        .bind(destination)
        .bind(status)
        .bind(since_ms)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $4, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $4 WHERE destination = $1 AND status = $2 AND created_at >= $3",
        )
        .bind(destination)
        .bind(status)
        .bind(since_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        self.wakers.wake(destination);
        Ok(n)
    }

    pub async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT d.id, d.payload_id, d.destination, d.status, d.attempts, d.next_attempt_at, d.last_error, \
             dl.reason, p.event_type, p.user_id, p.natural_key, p.version, d.created_at, d.updated_at \
             FROM deliveries d JOIN payloads p ON p.id = d.payload_id \
             LEFT JOIN dead_letters dl ON dl.delivery_id = d.id \
             WHERE ($1 IS NULL OR d.status = $1) AND ($2 IS NULL OR d.destination = $2) \
             AND ($3 IS NULL OR d.payload_id = $3) ORDER BY d.created_at DESC, d.id DESC LIMIT $4",
        )
        .bind(f.status.clone())
        .bind(f.destination.clone())
        .bind(f.payload_id.clone())
        .bind(if f.limit <= 0 { 100 } else { f.limit.min(10_000) })
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryInfo {
                id: r.get(0),
                payload_id: r.get(1),
                destination: r.get(2),
                status: r.get(3),
                attempts: r.get(4),
                next_attempt_at: iso(r.get(5)),
                last_error: r.get(6),
                dead_reason: r.get(7),
                event_type: r.get(8),
                user_id: r.get(9),
                natural_key: r.get(10),
                version: r.get(11),
                created_at: iso(r.get(12)),
                updated_at: iso(r.get(13)),
            })
            .collect())
    }

    pub async fn attempts(&self, delivery_id: Option<&str>) -> Result<Vec<AttemptInfo>> {
        let rows = sqlx::query(
            "SELECT delivery_id, destination, node, attempt, started_at_us, finished_at_us, status_code, class, \
             error, response FROM attempts WHERE ($1 IS NULL OR delivery_id = $1) ORDER BY id",
        )
        .bind(delivery_id.map(str::to_string))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AttemptInfo {
                delivery_id: r.get(0),
                destination: r.get(1),
                node: r.get(2),
                attempt: r.get(3),
                started_at_us: r.get(4),
                finished_at_us: r.get(5),
                status_code: r.get(6),
                class: r.get(7),
                error: r.get(8),
                response: r.get(9),
            })
            .collect())
    }

    pub async fn queue_stats(&self) -> Result<HashMap<String, QueueStats>> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT destination, status, COUNT(*), \
             SUM(CASE WHEN next_attempt_at <= $1 THEN 1 ELSE 0 END), MIN(next_attempt_at) \
             FROM deliveries GROUP BY destination, status",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, QueueStats> = HashMap::new();
        for r in rows {
            let dest: String = r.get(0);
            let status: String = r.get(1);
            let count: i64 = r.get(2);
            let s = out.entry(dest).or_default();
            match status.as_str() {
                "pending" => {
                    s.pending = count;
                    s.due = r.try_get::<i64, _>(3).unwrap_or(0);
                    let min: Option<i64> = r.try_get(4).ok();
                    s.oldest_due_ms = min.filter(|m| *m <= now).map(|m| now - m);
                }
                "dead" => s.dead = count,
                "delivered" => s.delivered = count,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Disable (410) or re-enable a destination. Shared by every node.
    pub async fn set_disabled(
        &self,
        destination: &str,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO destination_state (name, disabled, reason, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled, reason = excluded.reason, \
             updated_at = excluded.updated_at",
        )
        .bind(destination)
        .bind(if disabled { 1i64 } else { 0i64 })
        .bind(reason.map(str::to_string))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if !disabled {
            self.wakers.wake(destination);
        }
        Ok(())
    }

    /// The reason a destination is disabled, if it is.
    pub async fn disabled(&self, destination: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT disabled, reason FROM destination_state WHERE name = $1")
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| {
            (r.get::<i64, _>(0) != 0).then(|| {
                r.get::<Option<String>, _>(1)
                    .unwrap_or_else(|| "disabled".into())
            })
        }))
    }

    /// Fetch a stored payload body by id.
    pub async fn payload(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT body FROM payloads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0)))
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// PostgreSQL: forward `NOTIFY manifold_deliveries` to the local wakers, so any node's commit
    /// wakes this node's workers. Reconnects on error. No-op on SQLite.
    pub fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = self.url.clone();
        let wakers = self.wakers.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut l) => {
                        if let Err(e) = l.listen(NOTIFY_CHANNEL).await {
                            tracing::warn!(error = %e, "LISTEN failed; polling only");
                        } else {
                            while let Ok(n) = l.recv().await {
                                wakers.wake(n.payload());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the LISTEN connection; polling only")
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn delivery_from_row(r: &AnyRow) -> Delivery {
    let created: i64 = r.get(9);
    let body: String = r.get(10);
    Delivery {
        id: r.get(0),
        payload_id: r.get(1),
        attempt: r.get::<i64, _>(2).max(1) as u32,
        event_type: r.get(3),
        user_id: r.get(4),
        reference_id: r.get(5),
        natural_key: r.get(6),
        version: r.get(7),
        terra_reference: r.get(8),
        created_at: Utc
            .timestamp_millis_opt(created)
            .single()
            .unwrap_or_else(Utc::now),
        body: Bytes::from(body),
        content_type: "application/json",
    }
}

/// The database file of a `sqlite://path?options` URL.
fn sqlite_path(url: &str) -> std::path::PathBuf {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split_once('?').map_or(rest, |(p, _)| p).into()
}

/// `sqlite://path` → a URL that creates the file, after creating its folder.
fn sqlite_url(url: &str) -> Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Other(
            "an in-memory SQLite store would lose every payload on restart: give a file path"
                .into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", parent.display())))?;
    }
    let q = if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        query.to_string()
    };
    Ok(format!("sqlite://{path}?{q}"))
}
