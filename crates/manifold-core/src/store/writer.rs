//! SQLite group commit: one OS thread owns the write connection and gathers concurrent
//! commits, attempt records, Oura notifications and claims into one transaction, so one fsync
//! covers many of them.
//!
//! The thread talks to SQLite directly (rusqlite over the same bundled library sqlx uses), so a
//! group's dozen statements run back to back instead of each taking a round trip to sqlx's
//! SQLite worker thread: on a busy machine every such hand-off waits for the scheduler, and
//! those waits, not SQLite, bounded the writer. PostgreSQL keeps the sqlx statements in
//! `mod.rs` / `oura.rs`; the SQL here is the SQLite dialect of the same statements.
//!
//! The connection runs with `synchronous=FULL`: a publish is acknowledged only after its
//! group's commit reached the disk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::oura::{
    NOTIFICATION_CHUNK, NotificationRecorded, decide_statuses, recorded, users_to_check,
    users_to_stamp,
};
use super::{
    AttemptRecord, Backend, CommitKeys, Committed, Disposition, INSERT_CHUNK, LOOKUP_CHUNK,
    NewOuraNotification, NewPayload, RESPONSE_LIMIT, Result, StoreError, Wakers,
    delivered_by_token, now_ms, placeholders, plan_versions, truncate, value_rows,
};
use crate::destination::Delivery;

pub(super) enum Request {
    Commit {
        payload: NewPayload,
        respond: oneshot::Sender<Result<Committed>>,
    },
    Record {
        token: String,
        node: String,
        records: Vec<AttemptRecord>,
        respond: oneshot::Sender<Result<()>>,
    },
    Notification {
        notification: NewOuraNotification,
        respond: oneshot::Sender<Result<NotificationRecorded>>,
    },
    Claim {
        destination: String,
        limit: usize,
        lease: Duration,
        respond: oneshot::Sender<Result<(String, Vec<Delivery>)>>,
    },
}

const MAX_GROUP: usize = 512;

/// What the writer thread shares with the [`super::Store`] (not the store itself: the thread
/// ends when the last store handle, and with it the last sender, is dropped).
pub(super) struct Shared {
    pub gate: Arc<tokio::sync::Mutex<()>>,
    pub wakers: Arc<Wakers>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Other(format!("sqlite: {e}"))
    }
}

/// Open the writer's connection to the database file at `path` and start its thread.
pub(super) fn spawn(path: &Path, shared: Shared) -> Result<mpsc::Sender<Request>> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // temp_store: multi-row statements inside a transaction keep a statement journal, by
    // default a temporary file created and deleted per statement. cache_size: the indexes
    // the writer touches stay in its own page cache instead of being re-read with pread.
    // wal_autocheckpoint (see WAL_AUTOCHECKPOINT): a page rewritten by many groups is copied
    // back to the database file once per checkpoint, not once per 1,000 WAL pages.
    // Measured (manifold-bench oura intake, 2 cores): 14,940/s before these three, 24,641/s
    // after.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=15000; \
         PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768; \
         PRAGMA wal_autocheckpoint={};",
        super::WAL_AUTOCHECKPOINT
    ))?;
    conn.set_prepared_statement_cache_capacity(256);
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    std::thread::Builder::new()
        .name("manifold-writer".into())
        .spawn(move || {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = rx.blocking_recv() {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let jobs: Vec<Request> = std::mem::take(&mut group);
                let started = std::time::Instant::now();
                metrics::counter!("manifold_store_group_commits_total").increment(1);
                metrics::counter!("manifold_store_group_commit_jobs_total")
                    .increment(jobs.len() as u64);
                if let Err((e, jobs)) = run_group(&shared, &mut conn, jobs) {
                    // One bad job must not fail the others: run them one by one.
                    tracing::warn!(error = %e, "group commit failed; committing one by one");
                    for job in jobs {
                        if let Err((e, mut back)) = run_group(&shared, &mut conn, vec![job])
                            && let Some(job) = back.pop()
                        {
                            respond_err(job, &e.to_string());
                        }
                    }
                }
                metrics::histogram!("manifold_store_group_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
        })
        .map_err(|e| StoreError::Other(format!("cannot start the store writer: {e}")))?;
    Ok(tx)
}

/// Run jobs in one transaction. On a database error nothing is answered and the jobs come back.
fn run_group(
    shared: &Shared,
    conn: &mut Connection,
    jobs: Vec<Request>,
) -> std::result::Result<(), (StoreError, Vec<Request>)> {
    let mut woken: Vec<String> = Vec::new();
    // Each job's own result, answered once the group commits.
    let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
    let result: Result<()> = (|| {
        let _gate = shared.gate.blocking_lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Commits first, all in one batched call; then outcomes (so released rows are claimable);
        // then notifications; then claims. Results are answered in job order after the commit.
        let payloads: Vec<&NewPayload> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Commit { payload, .. } => Some(payload),
                _ => None,
            })
            .collect();
        let mut committed = commit_payloads(&tx, &payloads, &mut woken)?.into_iter();
        let records: Vec<(&str, &str, &[AttemptRecord])> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Record {
                    token,
                    node,
                    records,
                    ..
                } => Some((token.as_str(), node.as_str(), records.as_slice())),
                _ => None,
            })
            .collect();
        record_attempts(&tx, &records)?;
        let notifications: Vec<&NewOuraNotification> = jobs
            .iter()
            .filter_map(|j| match j {
                Request::Notification { notification, .. } => Some(notification),
                _ => None,
            })
            .collect();
        let mut recorded = record_notifications(&tx, &notifications)?.into_iter();
        for job in &jobs {
            done.push(match job {
                Request::Commit { .. } => Done::Commit(
                    committed
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Other("no result".into()))),
                ),
                Request::Record { .. } => Done::Record,
                Request::Notification { .. } => Done::Notification(recorded.next()),
                Request::Claim {
                    destination,
                    limit,
                    lease,
                    ..
                } => Done::Claim(claim(&tx, destination, *limit, *lease)?),
            });
        }
        tx.commit()?;
        Ok(())
    })();
    if let Err(e) = result {
        return Err((e, jobs));
    }
    // Committed: answer every job with its own result.
    for (job, d) in jobs.into_iter().zip(done) {
        match (job, d) {
            (Request::Commit { respond, .. }, Done::Commit(r)) => {
                let _ = respond.send(r);
            }
            (Request::Record { respond, .. }, _) => {
                let _ = respond.send(Ok(()));
            }
            (Request::Claim { respond, .. }, Done::Claim(c)) => {
                let _ = respond.send(Ok(c));
            }
            (Request::Notification { respond, .. }, Done::Notification(Some(r))) => {
                let _ = respond.send(Ok(r));
            }
            (job, _) => respond_err(job, "internal: job and result out of step"),
        }
    }
    for d in &woken {
        shared.wakers.wake(d);
    }
    Ok(())
}

/// A job's result inside a group, answered after the commit.
enum Done {
    Commit(Result<Committed>),
    Record,
    Notification(Option<NotificationRecorded>),
    Claim((String, Vec<Delivery>)),
}

fn respond_err(job: Request, msg: &str) {
    let err = || StoreError::Other(msg.to_string());
    match job {
        Request::Claim { respond, .. } => {
            let _ = respond.send(Err(err()));
        }
        Request::Commit { respond, .. } => {
            let _ = respond.send(Err(err()));
        }
        Request::Record { respond, .. } => {
            let _ = respond.send(Err(err()));
        }
        Request::Notification { respond, .. } => {
            let _ = respond.send(Err(err()));
        }
    }
}

/// `?, ?, …` for SQLite (anonymous, bound in order of appearance).
fn marks(n: usize) -> String {
    placeholders(Backend::Sqlite, 1, n)
}

/// The SQLite statements of `Store::commit_in`: one query reads the latest stored version of
/// every natural key in the group; multi-row INSERTs write the payloads and their deliveries.
fn commit_payloads(
    tx: &Connection,
    payloads: &[&NewPayload],
    woken: &mut Vec<String>,
) -> Result<Vec<Result<Committed>>> {
    if payloads.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let CommitKeys { ids, keys, lookup } = CommitKeys::new(payloads);
    // The latest stored (id, version, body) of every key in the group.
    let mut latest: HashMap<String, (String, i64, String)> = HashMap::new();
    for chunk in lookup.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT p.natural_key, p.id, p.version, p.body FROM payloads p WHERE p.natural_key IN ({}) \
             AND p.version = (SELECT MAX(q.version) FROM payloads q WHERE q.natural_key = p.natural_key)",
            marks(chunk.len())
        );
        let mut st = tx.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(chunk.iter()))?;
        while let Some(r) = rows.next()? {
            latest.insert(r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?));
        }
    }
    let (out, inserts) = plan_versions(payloads, &ids, &keys, &mut latest);
    for chunk in inserts.chunks(INSERT_CHUNK) {
        // `now` is an integer from our clock, written as a literal.
        let sql = format!(
            "INSERT INTO payloads (id, natural_key, version, event_type, user_id, reference_id, \
             terra_reference, body, created_at) VALUES {}",
            value_rows(Backend::Sqlite, 1, chunk.len(), 8, &format!(", {now}"))
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 8);
        for (i, version) in chunk {
            let p = payloads[*i];
            args.extend_from_slice(&[
                &ids[*i],
                &keys[*i],
                version,
                &p.envelope.event_type,
                &p.envelope.user_id,
                &p.envelope.reference_id,
                &p.terra_reference,
                &p.body,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(&*args)?;
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
                Backend::Sqlite,
                1,
                chunk.len(),
                3,
                &format!(", 'pending', 0, {now}, {now}, {now}")
            )
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 3);
        for (id, i, dest) in chunk {
            args.extend_from_slice(&[id, &ids[*i], dest]);
            if !woken.iter().any(|w| w == dest) {
                woken.push(dest.to_string());
            }
        }
        tx.prepare_cached(&sql)?.execute(&*args)?;
    }
    Ok(out)
}

/// The SQLite statements of `Store::record_many`: one multi-row INSERT into the attempt log,
/// one UPDATE per claim token for the delivered rows, retries and dead letters row by row.
fn record_attempts(tx: &Connection, jobs: &[(&str, &str, &[AttemptRecord])]) -> Result<()> {
    let now = now_ms();
    let all: Vec<(&str, &str, &AttemptRecord)> = jobs
        .iter()
        .flat_map(|(token, node, records)| records.iter().map(move |r| (*token, *node, r)))
        .collect();
    for chunk in all.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO attempts (delivery_id, destination, node, attempt, started_at_us, finished_at_us, \
             status_code, class, error, response) VALUES {}",
            value_rows(Backend::Sqlite, 1, chunk.len(), 10, "")
        );
        // (attempt, status code, error, response) of each record, owned for the binds.
        type Cols = (i64, Option<i64>, Option<String>, Option<String>);
        let cols: Vec<Cols> = chunk
            .iter()
            .map(|(_, _, r)| {
                (
                    r.attempt as i64,
                    r.status_code.map(i64::from),
                    r.error.as_deref().map(|e| truncate(e, RESPONSE_LIMIT)),
                    r.response.as_deref().map(|e| truncate(e, RESPONSE_LIMIT)),
                )
            })
            .collect();
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 10);
        for ((_, node, r), (attempt, status, error, response)) in chunk.iter().zip(&cols) {
            args.extend_from_slice(&[
                &r.delivery_id,
                &r.destination,
                node,
                attempt,
                &r.started_at_us,
                &r.finished_at_us,
                status,
                &r.class,
                error,
                response,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(&*args)?;
    }
    // Delivered rows, one UPDATE per claim token.
    for (token, ids) in &delivered_by_token(&all) {
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "UPDATE deliveries SET status = 'delivered', lease_owner = NULL, lease_expires_at = NULL, \
                 last_error = NULL, updated_at = {now} WHERE lease_owner = ? AND id IN ({})",
                marks(chunk.len())
            );
            let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() + 1);
            args.push(token);
            args.extend(chunk.iter().map(|id| id as &dyn ToSql));
            let changed = tx.prepare_cached(&sql)?.execute(&*args)?;
            if changed < chunk.len() {
                tracing::warn!(
                    lost = chunk.len() - changed,
                    "lease lost before the outcome was recorded; another node owns the row"
                );
            }
        }
    }
    for (token, _, r) in &all {
        let changed = match &r.disposition {
            Disposition::Delivered => continue,
            Disposition::RetryAt { at_ms, error } => tx
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = ?1, lease_owner = NULL, lease_expires_at = NULL, \
                     last_error = ?2, updated_at = ?3 WHERE id = ?4 AND lease_owner = ?5",
                )?
                .execute(rusqlite::params![
                    at_ms,
                    truncate(error, RESPONSE_LIMIT),
                    now,
                    r.delivery_id,
                    token
                ])?,
            Disposition::Release { error } => tx
                .prepare_cached(
                    "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = attempts - 1, \
                     last_error = ?1, updated_at = ?2 WHERE id = ?3 AND lease_owner = ?4",
                )?
                .execute(rusqlite::params![
                    truncate(error, RESPONSE_LIMIT),
                    now,
                    r.delivery_id,
                    token
                ])?,
            Disposition::Dead { reason } => {
                let reason = truncate(reason, RESPONSE_LIMIT);
                let n = tx
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_expires_at = NULL, \
                         last_error = ?1, updated_at = ?2 WHERE id = ?3 AND lease_owner = ?4",
                    )?
                    .execute(rusqlite::params![reason, now, r.delivery_id, token])?;
                if n > 0 {
                    tx.prepare_cached(
                        "INSERT INTO dead_letters (delivery_id, destination, reason, created_at) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (delivery_id) DO UPDATE SET \
                         reason = excluded.reason, created_at = excluded.created_at",
                    )?
                    .execute(rusqlite::params![r.delivery_id, r.destination, reason, now])?;
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

/// The SQLite statements of `Store::oura_record_notifications_in`: which Oura users exist,
/// one multi-row INSERT … ON CONFLICT DO NOTHING RETURNING id (new rows vs. duplicates), one
/// UPDATE stamping the users' `last_webhook_at`.
fn record_notifications(
    tx: &Connection,
    ns: &[&NewOuraNotification],
) -> Result<Vec<NotificationRecorded>> {
    if ns.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let asked = users_to_check(ns);
    let mut known: HashSet<String> = HashSet::new();
    for chunk in asked.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT oura_user_id FROM oura_users WHERE oura_user_id IN ({})",
            marks(chunk.len())
        );
        let mut st = tx.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(chunk.iter()))?;
        while let Some(r) = rows.next()? {
            known.insert(r.get(0)?);
        }
    }
    let decided = decide_statuses(ns, &known);
    let ids: Vec<String> = ns
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut inserted = HashSet::new();
    for (chunk_no, chunk) in ns.chunks(NOTIFICATION_CHUNK).enumerate() {
        let first = chunk_no * NOTIFICATION_CHUNK;
        // `now` is an integer from our clock, written as a literal.
        let sql = format!(
            "INSERT INTO oura_notifications (id, oura_user_id, data_type, object_id, event_type, event_time, \
             status, last_error, attempts, next_attempt_at, received_at, updated_at) VALUES {} \
             ON CONFLICT (oura_user_id, data_type, object_id, event_type, event_time) DO NOTHING \
             RETURNING id",
            value_rows(
                Backend::Sqlite,
                1,
                chunk.len(),
                8,
                &format!(", 0, {now}, {now}, {now}")
            )
        );
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 8);
        for (i, n) in chunk.iter().enumerate() {
            let (status, error) = &decided[first + i];
            args.extend_from_slice(&[
                &ids[first + i],
                &n.oura_user_id,
                &n.data_type,
                &n.object_id,
                &n.event_type,
                &n.event_time,
                status,
                error,
            ]);
        }
        let mut st = tx.prepare_cached(&sql)?;
        let mut rows = st.query(&*args)?;
        while let Some(r) = rows.next()? {
            inserted.insert(r.get::<_, String>(0)?);
        }
    }
    let users = users_to_stamp(ns, &decided);
    for chunk in users.chunks(NOTIFICATION_CHUNK) {
        let sql = format!(
            "UPDATE oura_users SET last_webhook_at = {now} WHERE oura_user_id IN ({})",
            marks(chunk.len())
        );
        tx.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(chunk.iter()))?;
    }
    Ok(recorded(&ids, decided, &inserted))
}

/// The SQLite statements of `Store::claim_in`: lease up to `limit` due rows of `destination`
/// (none while it is disabled), then read them with their payloads.
fn claim(
    tx: &Connection,
    destination: &str,
    limit: usize,
    lease: Duration,
) -> Result<(String, Vec<Delivery>)> {
    let token = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let expires = now + lease.as_millis() as i64;
    let claimed = tx
        .prepare_cached(
            "UPDATE deliveries SET lease_owner = ?4, lease_expires_at = ?5, attempts = attempts + 1, \
             updated_at = ?2 WHERE id IN (SELECT id FROM deliveries WHERE destination = ?1 \
             AND status = 'pending' AND next_attempt_at <= ?2 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= ?2) \
             AND NOT EXISTS (SELECT 1 FROM destination_state s WHERE s.name = ?1 AND s.disabled <> 0) \
             ORDER BY next_attempt_at LIMIT ?3)",
        )?
        .execute(rusqlite::params![
            destination,
            now,
            limit as i64,
            token,
            expires
        ])?;
    if claimed == 0 {
        return Ok((token, Vec::new()));
    }
    let mut st = tx.prepare_cached(
        "SELECT d.id, d.payload_id, d.attempts, p.event_type, p.user_id, p.reference_id, p.natural_key, \
         p.version, p.terra_reference, p.created_at, p.body FROM deliveries d \
         JOIN payloads p ON p.id = d.payload_id WHERE d.lease_owner = ?1 ORDER BY d.next_attempt_at, d.id",
    )?;
    let mut rows = st.query([&token])?;
    let mut deliveries = Vec::with_capacity(claimed);
    while let Some(r) = rows.next()? {
        let created: i64 = r.get(9)?;
        let body: String = r.get(10)?;
        deliveries.push(Delivery {
            id: r.get(0)?,
            payload_id: r.get(1)?,
            attempt: r.get::<_, i64>(2)?.max(1) as u32,
            event_type: r.get(3)?,
            user_id: r.get(4)?,
            reference_id: r.get(5)?,
            natural_key: r.get(6)?,
            version: r.get(7)?,
            terra_reference: r.get(8)?,
            created_at: Utc
                .timestamp_millis_opt(created)
                .single()
                .unwrap_or_else(Utc::now),
            body: Bytes::from(body),
            content_type: "application/json",
        });
    }
    drop(rows);
    drop(st);
    Ok((token, deliveries))
}
