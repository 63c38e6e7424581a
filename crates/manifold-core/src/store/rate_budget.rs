//! Oura's request budget, shared by every process on one store (`manifold serve` nodes and a
//! separate `manifold backfill`): one row of `oura_rate_budget` per Oura application
//! (`client_id`).
//!
//! **A token bucket** of `burst` tokens refilled at `(limit − burst) / window`: in any interval
//! of one window at most `burst + (limit − burst) = limit` requests are granted, whatever the
//! alignment of Oura's own window. `burst` is a tenth of the limit (at least 2), so the sustained
//! rate is 90% of Oura's (4,500 requests per 5 minutes for Oura's 5,000).
//!
//! **Priority**: [`Priority::Live`] (fetches of webhook notifications) may take the bucket's
//! last token; [`Priority::Background`] (history, backfills, polling, reconcile) only takes one
//! while more than `reserve × burst` tokens remain, so while live fetches keep the bucket below
//! the reserve every refilled token goes to them and background work waits.
//!
//! **429**: [`RateBudget::pause`] stops every caller of every process until Oura's
//! `Retry-After` has passed (Oura's own window has then restarted; the bucket keeps refilling
//! meanwhile, so background work is not held back further after the pause).
//!
//! One statement per grant, atomic on both backends: PostgreSQL runs a single
//! `UPDATE … RETURNING` on the database clock (nodes' clocks may differ), committed without
//! waiting for the WAL flush; SQLite serialises writers, and every process on one SQLite file
//! shares the machine's clock.

use std::time::Duration;

use sqlx::Row;

use super::{Backend, Result, Store, now_ms};

/// Who is asking for an Oura request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Fetching a webhook notification's document: may use the whole budget.
    Live,
    /// History, backfills, polling, reconcile: only while more than the reserve remains.
    Background,
}

/// The budget of one Oura application.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Requests Oura allows per `window` (Oura: 5,000 per 5 minutes per application).
    pub requests: u32,
    pub window: Duration,
    /// Share (0..1) of the burst kept for live fetches.
    pub reserve: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests: 5000,
            window: Duration::from_secs(300),
            reserve: 0.2,
        }
    }
}

impl RateLimits {
    /// Bucket size: a tenth of the limit, at least 2 (and below the limit).
    pub fn burst(&self) -> f64 {
        let l = f64::from(self.requests.max(3));
        (l / 10.0).max(2.0).min(l - 1.0)
    }

    /// Tokens added per millisecond: `(limit − burst) / window`.
    pub fn refill_per_ms(&self) -> f64 {
        let l = f64::from(self.requests.max(3));
        (l - self.burst()) / (self.window.as_millis().max(1) as f64)
    }

    /// Tokens that must remain *after* a grant for this priority.
    pub fn floor(&self, p: Priority) -> f64 {
        match p {
            Priority::Live => 0.0,
            Priority::Background => self.reserve.clamp(0.0, 0.95) * self.burst(),
        }
    }
}

/// The answer to one request for a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Go ahead; `tokens_left` remain in the bucket.
    Granted { tokens_left: f64 },
    /// Not enough tokens for this priority: ask again after this long.
    Wait(Duration),
    /// Oura answered 429 (here or on another node): nobody may call it for this long.
    Paused {
        retry_after: Duration,
        reason: Option<String>,
    },
}

/// The outcome of [`RateBudget::acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum Acquired {
    Granted,
    /// Oura's 429 pause is on for this long (longer than the caller's `max_wait`, or the
    /// caller gave none: it decides itself how to wait, e.g. to tell someone first).
    Paused(Duration),
    /// A token would take longer than the caller's `max_wait`.
    TooLong(Duration),
}

/// The bucket as it is now (for operators and tests).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetState {
    pub app: String,
    /// Tokens available now (refill included).
    pub tokens: f64,
    pub burst: f64,
    /// Milliseconds until the 429 pause ends (0 = not paused).
    pub paused_for_ms: i64,
    pub pause_reason: Option<String>,
}

/// The shared budget of one Oura application. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateBudget {
    store: Store,
    app: String,
    limits: RateLimits,
}

/// What the row says, read on the database clock.
struct BucketRow {
    tokens: f64,
    updated_at: i64,
    paused_until: i64,
    reason: Option<String>,
    now: i64,
}

const PG_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

impl RateBudget {
    pub fn new(store: Store, app: impl Into<String>, limits: RateLimits) -> RateBudget {
        RateBudget {
            store,
            app: app.into(),
            limits,
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    async fn ensure_row(&self) -> Result<()> {
        let q = match self.store.backend {
            Backend::Postgres => format!(
                "INSERT INTO oura_rate_budget (app, tokens, updated_at, paused_until) \
                 VALUES ($1, $2, {PG_NOW}, 0) ON CONFLICT (app) DO NOTHING"
            ),
            Backend::Sqlite => {
                "INSERT INTO oura_rate_budget (app, tokens, updated_at, paused_until) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT (app) DO NOTHING"
                    .to_string()
            }
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(&self.app)
            .bind(self.limits.burst());
        if self.store.backend == Backend::Sqlite {
            query = query.bind(now_ms());
        }
        query.execute(&self.store.pool).await?;
        Ok(())
    }

    /// Take one token if this priority may; `Some(tokens left)` when granted.
    async fn take(&self, p: Priority) -> Result<Option<f64>> {
        let (burst, rate, floor) = (
            self.limits.burst(),
            self.limits.refill_per_ms(),
            self.limits.floor(p),
        );
        let row = match self.store.backend {
            Backend::Postgres => {
                let q = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "WITH c AS (SELECT {PG_NOW} AS now) \
                     UPDATE oura_rate_budget b SET \
                       tokens = LEAST($2::float8, b.tokens + GREATEST(0, c.now - b.updated_at) * $3::float8) - 1, \
                       updated_at = GREATEST(b.updated_at, c.now) \
                     FROM c WHERE b.app = $1 AND b.paused_until <= c.now \
                       AND LEAST($2::float8, b.tokens + GREATEST(0, c.now - b.updated_at) * $3::float8) >= $4::float8 + 1 \
                     RETURNING b.tokens"
                )))
                .bind(&self.app)
                .bind(burst)
                .bind(rate)
                .bind(floor);
                // A grant lost in a database crash only lets a few requests too many through
                // (Oura's 429 pause covers them): do not wait for the WAL flush, which would
                // hold the row lock and cap grants at the disk's fsync rate.
                let mut tx = self.store.pool.begin().await?;
                sqlx::Executor::execute(&mut *tx, "SET LOCAL synchronous_commit = off").await?;
                let row = q.fetch_optional(&mut *tx).await?;
                tx.commit().await?;
                row
            }
            Backend::Sqlite => {
                let _gate = self.store.write_gate().await;
                sqlx::query(
                    "UPDATE oura_rate_budget SET \
                       tokens = min($2, tokens + max(0, $5 - updated_at) * $3) - 1, \
                       updated_at = max(updated_at, $5) \
                     WHERE app = $1 AND paused_until <= $5 \
                       AND min($2, tokens + max(0, $5 - updated_at) * $3) >= $4 + 1 \
                     RETURNING tokens",
                )
                .bind(&self.app)
                .bind(burst)
                .bind(rate)
                .bind(floor)
                .bind(now_ms())
                .fetch_optional(&self.store.pool)
                .await?
            }
        };
        Ok(row.map(|r| r.get::<f64, _>(0)))
    }

    async fn read(&self) -> Result<Option<BucketRow>> {
        let q = match self.store.backend {
            Backend::Postgres => format!(
                "SELECT tokens, updated_at, paused_until, pause_reason, {PG_NOW} FROM oura_rate_budget WHERE app = $1"
            ),
            Backend::Sqlite => "SELECT tokens, updated_at, paused_until, pause_reason, $2 FROM oura_rate_budget WHERE app = $1".to_string(),
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q)).bind(&self.app);
        if self.store.backend == Backend::Sqlite {
            query = query.bind(now_ms());
        }
        Ok(query
            .fetch_optional(&self.store.pool)
            .await?
            .map(|r| BucketRow {
                tokens: r.get(0),
                updated_at: r.get(1),
                paused_until: r.get(2),
                reason: r.get(3),
                now: r.get(4),
            }))
    }

    fn tokens_now(&self, r: &BucketRow) -> f64 {
        (r.tokens + (r.now - r.updated_at).max(0) as f64 * self.limits.refill_per_ms())
            .min(self.limits.burst())
    }

    /// One attempt: take a token, or say how long to wait.
    pub async fn try_acquire(&self, p: Priority) -> Result<Grant> {
        for _ in 0..3 {
            if let Some(left) = self.take(p).await? {
                return Ok(Grant::Granted { tokens_left: left });
            }
            let Some(r) = self.read().await? else {
                self.ensure_row().await?;
                continue;
            };
            if r.paused_until > r.now {
                return Ok(Grant::Paused {
                    retry_after: Duration::from_millis((r.paused_until - r.now) as u64),
                    reason: r.reason,
                });
            }
            let missing = self.limits.floor(p) + 1.0 - self.tokens_now(&r);
            if missing > 0.0 {
                let ms = (missing / self.limits.refill_per_ms()).ceil().max(1.0);
                return Ok(Grant::Wait(Duration::from_millis(ms.min(3.6e6) as u64)));
            }
            // Refilled between the two statements: try again.
        }
        Ok(Grant::Wait(Duration::from_millis(1)))
    }

    /// Wait for a token. Token waits are silent; with `max_wait`, a wait that would go beyond it
    /// ends with [`Acquired::TooLong`]. Oura's 429 pause is waited out only when it ends within
    /// `max_wait`; otherwise (or without `max_wait`) [`Acquired::Paused`] comes back at once.
    pub async fn acquire(&self, p: Priority, max_wait: Option<Duration>) -> Result<Acquired> {
        let mut waited = Duration::ZERO;
        loop {
            match self.try_acquire(p).await? {
                Grant::Granted { .. } => return Ok(Acquired::Granted),
                Grant::Paused { retry_after, .. } => match max_wait {
                    Some(m) if waited + retry_after <= m => {
                        tokio::time::sleep(retry_after).await;
                        waited += retry_after;
                    }
                    _ => return Ok(Acquired::Paused(retry_after)),
                },
                Grant::Wait(d) => {
                    if let Some(m) = max_wait
                        && waited + d > m
                    {
                        return Ok(Acquired::TooLong(d));
                    }
                    // Waiters that computed the same instant do not all wake at once; never
                    // sleep long so a pause or a config change is seen.
                    let jitter = rand::random::<f64>() * 0.1 + 1.0;
                    let d = d.mul_f64(jitter).min(Duration::from_secs(5));
                    tokio::time::sleep(d).await;
                    waited += d;
                }
            }
        }
    }

    /// Oura answered 429: nobody calls it before `retry_after` has passed.
    pub async fn pause(&self, retry_after: Duration, reason: &str) -> Result<()> {
        let ms = retry_after.as_millis().min(86_400_000) as i64;
        for _ in 0..2 {
            let done = match self.store.backend {
                Backend::Postgres => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "WITH c AS (SELECT {PG_NOW} AS now) UPDATE oura_rate_budget b SET \
                         paused_until = GREATEST(b.paused_until, c.now + $2), pause_reason = $3 \
                         FROM c WHERE b.app = $1"
                )))
                .bind(&self.app)
                .bind(ms)
                .bind(reason)
                .execute(&self.store.pool)
                .await?
                .rows_affected(),
                Backend::Sqlite => {
                    let until = now_ms() + ms;
                    sqlx::query(
                        "UPDATE oura_rate_budget SET paused_until = max(paused_until, $2), \
                         pause_reason = $3 WHERE app = $1",
                    )
                    .bind(&self.app)
                    .bind(until)
                    .bind(reason)
                    .execute(&self.store.pool)
                    .await?
                    .rows_affected()
                }
            };
            if done > 0 {
                return Ok(());
            }
            self.ensure_row().await?;
        }
        Ok(())
    }

    /// The bucket now.
    pub async fn state(&self) -> Result<BudgetState> {
        let r = match self.read().await? {
            Some(r) => r,
            None => {
                self.ensure_row().await?;
                self.read().await?.ok_or_else(|| {
                    super::StoreError::Other("the rate budget row vanished".into())
                })?
            }
        };
        Ok(BudgetState {
            app: self.app.clone(),
            tokens: self.tokens_now(&r),
            burst: self.limits.burst(),
            paused_for_ms: (r.paused_until - r.now).max(0),
            pause_reason: r.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_window_holds_at_most_the_limit() {
        let l = RateLimits::default();
        assert_eq!(l.burst(), 500.0);
        let window_ms = l.window.as_millis() as f64;
        // a full bucket plus one window of refill is exactly the limit
        assert!((l.burst() + l.refill_per_ms() * window_ms - 5000.0).abs() < 1e-6);
        assert_eq!(l.floor(Priority::Live), 0.0);
        assert_eq!(l.floor(Priority::Background), 100.0);
        let tiny = RateLimits {
            requests: 10,
            window: Duration::from_secs(10),
            reserve: 0.2,
        };
        assert_eq!(tiny.burst(), 2.0);
        assert!((tiny.burst() + tiny.refill_per_ms() * 10_000.0 - 10.0).abs() < 1e-9);
    }
}
