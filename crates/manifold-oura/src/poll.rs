//! Scheduled work per connected user, for what Oura sends no (or no reliable) webhook for:
//!
//! * **Heart-rate polling** (`oura.heartrate_poll`, default 15 min, `"0s"` = off): Oura has no
//!   webhook for `heartrate`. Every interval each connected, active user's
//!   `GET /v2/usercollection/heartrate?start_datetime=…&end_datetime=…` is read (all pages,
//!   `next_token`) from where the previous poll got to — the newest sample seen, persisted in
//!   `oura_poll_state.cursor_ms`, so a restart neither refetches nor misses (the first poll of
//!   a user reads the last 24 h; a cursor older than 7 days is moved up to 7 days ago). Each
//!   row is stored in `oura_documents` (`data_type` `heartrate`, `object_id` = the sample's Unix
//!   ms, `day` = its local date in the user's latest known UTC offset) and every day that got a
//!   new or changed row is rebuilt like any other day document: a Terra `body` payload for
//!   that day with `heart_data.heart_rate_data.detailed.hr_samples` and the avg/min/max summary,
//!   under the same natural key as the day's other body data (so destinations upsert).
//! * **Reconcile** (`oura.reconcile_every`, default 1 h, `"0s"` = off; `oura.reconcile_days`,
//!   default 2): see [`crate::reconcile`].
//!
//! Scheduling: one row per (user, task) in `oura_poll_state`. A user is first due one interval
//! after the scheduler first sees it connected, then one interval after each run. A run is
//! claimed under a lease (10 min), so several nodes sharing a PostgreSQL store never poll the
//! same user at once, and a crashed node's claim is picked up when its lease expires. Paused,
//! revoked and inactive users are not polled.
//!
//! Priority and rate budget: both tasks run one request at a time per node and, before every
//! request, give way (up to 30 s) while this node fetches notifications or any notification is
//! due in the store — live notification fetches go first. Their requests take tokens of the
//! shared Oura budget at [`Priority::Background`] (which leaves a reserve to live fetches and
//! stops every process during a 429 pause); a 429 is waited out for its `Retry-After` (three
//! times, then the run ends and the user is due again after `Retry-After`). 401 → one token
//! refresh; a refused refresh pauses the user (`access_revoked`) as for fetches. 403 (scope not
//! granted) skips that collection quietly until the next run.
//!
//! `ring_battery_level` (also webhook-less) is not polled: Terra's schema has no field for a
//! ring's battery level.
//!
//! [`OuraClient`]: crate::client::OuraClient

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use manifold_core::store::rate_budget::Priority;
use manifold_core::store::{OuraUserRow, now_ms};
use serde_json::Value;
use tokio::sync::watch;

use crate::client::OuraError;
use crate::connector::{Connector, Failure};
use crate::types::{OuraDocument, parse_value};

/// `oura_poll_state.task` of heart-rate polling.
pub const TASK_HEARTRATE: &str = "heartrate";
/// `oura_poll_state.task` of the reconcile.
pub const TASK_RECONCILE: &str = "reconcile";

/// How far back the first heart-rate poll of a user reads.
pub const FIRST_POLL_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The oldest point a heart-rate poll reads from, however old its cursor.
pub const MAX_POLL_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Lease of one claimed run.
const LEASE: Duration = Duration::from_secs(600);
/// Longest a request waits for live notification fetches to finish.
const MAX_YIELD: Duration = Duration::from_secs(30);
/// 429s waited out within one run before giving up until `Retry-After`.
const MAX_429_WAITS: u32 = 3;

/// Why a scheduled run ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollError {
    /// 403: the user did not grant the scope (or the membership lapsed).
    Forbidden { collection: String, detail: String },
    /// Still rate limited after waiting: due again after this long.
    RateLimited(Duration),
    /// No usable token (revoked users are paused by the refresh itself).
    Token(String),
    /// Transport, 5xx, unexpected answers.
    Oura(String),
    /// The store failed.
    Store(String),
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Forbidden { collection, detail } => {
                write!(f, "Oura refused `{collection}` (403): {detail}")
            }
            PollError::RateLimited(d) => {
                write!(f, "Oura rate limit (429); retry after {}s", d.as_secs())
            }
            PollError::Token(e) => write!(f, "no usable Oura token: {e}"),
            PollError::Oura(e) => write!(f, "Oura: {e}"),
            PollError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> PollError {
    PollError::Store(e.to_string())
}

impl From<Failure> for PollError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Permanent(status, reason) => PollError::Oura(format!("{status}: {reason}")),
            Failure::Transient(e) => PollError::Store(e),
        }
    }
}

/// Run the heart-rate poller and the reconcile until `shutdown` (no-op when both are off).
pub async fn run(conn: Arc<Connector>, mut shutdown: watch::Receiver<bool>) {
    let cfg = conn.config();
    let tasks: Vec<(&'static str, Duration)> = [
        (TASK_HEARTRATE, cfg.heartrate_poll),
        (TASK_RECONCILE, cfg.reconcile_every),
    ]
    .into_iter()
    .filter(|(_, every)| !every.is_zero())
    .collect();
    let Some(shortest) = tasks.iter().map(|t| t.1).min() else {
        return;
    };
    let tick = (shortest / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    tracing::info!(
        heartrate_poll = ?cfg.heartrate_poll,
        reconcile_every = ?cfg.reconcile_every,
        reconcile_days = cfg.reconcile_days,
        "Oura scheduler started"
    );
    let mut last_prune: Option<Instant> = None;
    'outer: loop {
        if *shutdown.borrow() {
            break;
        }
        for &(task, every) in &tasks {
            let store = conn.store();
            if let Err(e) = store
                .oura_poll_ensure(task, now_ms() + every.as_millis() as i64)
                .await
            {
                tracing::warn!(error = %e, task, "Oura scheduler: store error");
                continue;
            }
            let due = match store.oura_poll_due(task, 100).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, task, "Oura scheduler: store error");
                    continue;
                }
            };
            for user_id in due {
                if *shutdown.borrow() {
                    break 'outer;
                }
                let stop = shutdown.clone();
                run_claimed(&conn, &user_id, task, every, stop).await;
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
            last_prune = Some(Instant::now());
            if let Err(e) = conn.store().oura_poll_prune().await {
                tracing::warn!(error = %e, "Oura scheduler: cannot prune old state");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("Oura scheduler stopped");
}

/// Claim one user's `task`, run it, record the outcome.
async fn run_claimed(
    conn: &Connector,
    user_id: &str,
    task: &'static str,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = conn.store();
    let claim = match store.oura_poll_claim(user_id, task, LEASE).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, task, "Oura scheduler: cannot claim");
            return;
        }
    };
    let user = match store.oura_user(user_id).await {
        Ok(Some(u)) if u.status == "connected" && u.active => u,
        Ok(_) => {
            let _ = store
                .oura_poll_finish(
                    &claim,
                    None,
                    now_ms() + every.as_millis() as i64,
                    Some("user not connected or inactive"),
                )
                .await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, task, "Oura scheduler: store error");
            let _ = store.oura_poll_release(&claim).await;
            return;
        }
    };
    let work = async {
        match task {
            TASK_HEARTRATE => poll_heartrate(conn, &user, claim.cursor_ms).await,
            _ => crate::reconcile::reconcile_user(conn, &user)
                .await
                .map(|_| None),
        }
    };
    let outcome = tokio::select! {
        r = work => r,
        _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
            let _ = store.oura_poll_release(&claim).await;
            return;
        }
    };
    let now = now_ms();
    let (cursor, next_due, error) = match outcome {
        Ok(cursor) => {
            metrics::counter!("manifold_oura_scheduled_runs_total", "task" => task, "outcome" => "ok")
                .increment(1);
            (cursor, now + every.as_millis() as i64, None)
        }
        Err(e) => {
            metrics::counter!("manifold_oura_scheduled_runs_total", "task" => task, "outcome" => "error")
                .increment(1);
            let again = match &e {
                PollError::RateLimited(d) => *d,
                PollError::Forbidden { .. } => every,
                _ => every.min(Duration::from_secs(60)),
            };
            match &e {
                PollError::Forbidden { .. } => {
                    tracing::info!(user_id, task, error = %e, "Oura scheduled run skipped")
                }
                _ => tracing::warn!(user_id, task, error = %e, "Oura scheduled run failed"),
            }
            (None, now + again.as_millis() as i64, Some(e.to_string()))
        }
    };
    match store
        .oura_poll_finish(&claim, cursor, next_due, error.as_deref())
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(user_id, task, "lease lost before the outcome was recorded"),
        Err(e) => tracing::error!(user_id, task, error = %e, "cannot record a scheduled run"),
    }
}

/// Wait (at most [`MAX_YIELD`]) while live notification fetches are running or due.
pub(crate) async fn yield_to_live(conn: &Connector) {
    let start = Instant::now();
    while start.elapsed() < MAX_YIELD {
        let busy = conn.live_busy()
            || conn
                .store()
                .oura_notifications_due()
                .await
                .is_ok_and(|n| n > 0);
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every item of a list route (all pages), at low priority: yields to live fetches before
/// each request, refreshes the token once on 401, waits out 429s.
pub(crate) async fn list_all(
    conn: &Connector,
    user: &OuraUserRow,
    collection: &str,
    params: &[(&str, String)],
) -> Result<Vec<Value>, PollError> {
    let mut token = conn
        .api_token(&user.user_id, false)
        .await
        .map_err(PollError::Token)?;
    // Background priority: the shared budget keeps a reserve for live fetches.
    let client = conn.client().with_priority(Priority::Background);
    let mut refreshed = false;
    let mut waits = 0;
    let mut next: Option<String> = None;
    let mut out = Vec::new();
    loop {
        yield_to_live(conn).await;
        let mut p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(n) = &next {
            p.push(("next_token", n));
        }
        match client.list_page(&token, collection, &p).await {
            Ok((items, next_token)) => {
                out.extend(items);
                match next_token {
                    Some(t) => next = Some(t),
                    None => return Ok(out),
                }
            }
            Err(OuraError::Unauthorized) if !refreshed => {
                refreshed = true;
                token = conn
                    .api_token(&user.user_id, true)
                    .await
                    .map_err(PollError::Token)?;
            }
            Err(OuraError::Forbidden(detail)) => {
                return Err(PollError::Forbidden {
                    collection: collection.to_string(),
                    detail,
                });
            }
            Err(OuraError::RateLimited { retry_after }) => {
                let d = retry_after
                    .unwrap_or(Duration::from_secs(60))
                    .clamp(Duration::from_millis(200), Duration::from_secs(3600));
                if waits >= MAX_429_WAITS {
                    return Err(PollError::RateLimited(d));
                }
                waits += 1;
                tracing::info!(
                    wait_ms = d.as_millis() as u64,
                    collection,
                    "Oura 429 during a scheduled run: waiting Retry-After"
                );
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(PollError::Oura(e.to_string())),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Poll one user's heart rate from `cursor_ms` (or the last 24 h) to now. Returns the new
/// cursor: the newest sample's Unix ms (unchanged when nothing came back).
pub async fn poll_heartrate(
    conn: &Connector,
    user: &OuraUserRow,
    cursor_ms: Option<i64>,
) -> Result<Option<i64>, PollError> {
    let now = Utc::now();
    let floor = now - chrono::Duration::from_std(MAX_POLL_WINDOW).unwrap_or_default();
    let start = cursor_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or(now - chrono::Duration::from_std(FIRST_POLL_WINDOW).unwrap_or_default())
        .max(floor);
    let (_, newest) = heartrate_window(conn, user, start, now).await?;
    Ok(newest.or(cursor_ms).or(Some(start.timestamp_millis())))
}

/// Read `heartrate` rows for `[start, end)`, store them and rebuild the `body` of every day
/// that got a new or changed row. Returns (rows written, newest sample's Unix ms).
pub(crate) async fn heartrate_window(
    conn: &Connector,
    user: &OuraUserRow,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(usize, Option<i64>), PollError> {
    let items = list_all(
        conn,
        user,
        "heartrate",
        &[
            ("start_datetime", rfc3339(start)),
            ("end_datetime", rfc3339(end)),
        ],
    )
    .await?;
    let offset = conn
        .user_utc_offset(&user.user_id)
        .await
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    let mut newest: Option<i64> = None;
    let mut docs = Vec::with_capacity(items.len());
    for item in items {
        let row = match parse_value("heartrate", item.clone()) {
            Ok(OuraDocument::HeartRate(r)) => r,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable Oura heartrate row skipped");
                continue;
            }
        };
        let ms = row.timestamp.0.timestamp_millis();
        newest = Some(newest.map_or(ms, |n| n.max(ms)));
        let day = row.timestamp.0.with_timezone(&offset).date_naive();
        docs.push((
            "heartrate".to_string(),
            ms.to_string(),
            Some(day.to_string()),
            item.to_string(),
        ));
    }
    let written = conn
        .store()
        .oura_upsert_documents_changed(&user.user_id, &docs)
        .await
        .map_err(store_err)?;
    let days: BTreeSet<NaiveDate> = docs
        .iter()
        .zip(&written)
        .filter(|(_, w)| **w)
        .filter_map(|(d, _)| d.2.as_deref()?.parse().ok())
        .collect();
    for day in &days {
        conn.rebuild_day(user, *day, &["body"]).await?;
    }
    let n = written.iter().filter(|w| **w).count();
    if n > 0 {
        metrics::counter!("manifold_oura_heartrate_rows_total").increment(n as u64);
        tracing::debug!(user_id = %user.user_id, rows = n, days = days.len(), "Oura heart rate stored");
    }
    Ok((n, newest))
}
