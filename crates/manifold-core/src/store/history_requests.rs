//! `history_requests`: every asynchronous history request (`GET /v2/{type}?to_webhook=true`)
//! and every backfill (after connect, `manifold backfill`), with its status, so one that fails
//! is visible (`GET /v2/requests/{reference}`), not only logged.
//!
//! Status: `processing` → (`rate_limited` ⇄ `processing`) → `completed` or `failed`
//! (`error_status` is the HTTP status the same failure gets on a synchronous request: 403
//! missing scope, 404 user not connected, 502 Oura, 500 mapping, 503 store).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, now_ms, truncate};

/// One row of `history_requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequestRow {
    pub reference: String,
    /// `request` (to_webhook=true), `connect_backfill`, `backfill` (the CLI).
    pub origin: String,
    pub user_id: String,
    /// Terra type(s), comma-separated.
    pub data_type: String,
    pub start_date: String,
    pub end_date: String,
    pub status: String,
    pub error_status: Option<i64>,
    pub error: Option<String>,
    pub records: i64,
    pub expected_payloads: Option<i64>,
    pub payloads_sent: i64,
    pub rate_limit_hits: i64,
    pub retrying_at: Option<i64>,
    pub node: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A new request (status `processing`).
#[derive(Debug, Clone)]
pub struct NewHistoryRequest<'a> {
    pub reference: &'a str,
    pub origin: &'a str,
    pub user_id: &'a str,
    pub data_type: &'a str,
    pub start_date: &'a str,
    pub end_date: &'a str,
    pub node: &'a str,
}

const COLS: &str = "reference, origin, user_id, data_type, start_date, end_date, status, error_status, \
     error, records, expected_payloads, payloads_sent, rate_limit_hits, retrying_at, node, created_at, \
     updated_at, finished_at";

fn from_row(r: &AnyRow) -> HistoryRequestRow {
    HistoryRequestRow {
        reference: r.get(0),
        origin: r.get(1),
        user_id: r.get(2),
        data_type: r.get(3),
        start_date: r.get(4),
        end_date: r.get(5),
        status: r.get(6),
        error_status: r.get(7),
        error: r.get(8),
        records: r.get(9),
        expected_payloads: r.get(10),
        payloads_sent: r.get(11),
        rate_limit_hits: r.get(12),
        retrying_at: r.get(13),
        node: r.get(14),
        created_at: r.get(15),
        updated_at: r.get(16),
        finished_at: r.get(17),
    }
}

impl Store {
    pub async fn history_request_create(&self, r: &NewHistoryRequest<'_>) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO history_requests (reference, origin, user_id, data_type, start_date, end_date, \
             status, records, payloads_sent, rate_limit_hits, node, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'processing', 0, 0, 0, $7, $8, $8)",
        )
        .bind(r.reference)
        .bind(r.origin)
        .bind(r.user_id)
        .bind(r.data_type)
        .bind(r.start_date)
        .bind(r.end_date)
        .bind(r.node)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Oura's rate limit stopped the request until `retrying_at_ms`.
    pub async fn history_request_rate_limited(
        &self,
        reference: &str,
        retrying_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE history_requests SET status = 'rate_limited', retrying_at = $2, \
             rate_limit_hits = rate_limit_hits + 1, updated_at = $3 WHERE reference = $1 AND finished_at IS NULL",
        )
        .bind(reference)
        .bind(retrying_at_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Back at work after a rate-limit pause.
    pub async fn history_request_resumed(&self, reference: &str) -> Result<()> {
        sqlx::query(
            "UPDATE history_requests SET status = 'processing', updated_at = $2 \
             WHERE reference = $1 AND status = 'rate_limited'",
        )
        .bind(reference)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Progress: records mapped so far, payloads expected (when known) and sent.
    pub async fn history_request_progress(
        &self,
        reference: &str,
        records: i64,
        expected_payloads: Option<i64>,
        payloads_sent: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE history_requests SET records = $2, expected_payloads = COALESCE($3, expected_payloads), \
             payloads_sent = $4, updated_at = $5 WHERE reference = $1",
        )
        .bind(reference)
        .bind(records)
        .bind(expected_payloads)
        .bind(payloads_sent)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The request ended: `completed`, or `failed` with the HTTP status and reason.
    pub async fn history_request_finish(
        &self,
        reference: &str,
        failure: Option<(u16, &str)>,
    ) -> Result<()> {
        let now = now_ms();
        let (status, code, error) = match failure {
            None => ("completed", None, None),
            Some((code, e)) => ("failed", Some(i64::from(code)), Some(truncate(e, 2000))),
        };
        sqlx::query(
            "UPDATE history_requests SET status = $2, error_status = $3, error = $4, retrying_at = NULL, \
             updated_at = $5, finished_at = $5 WHERE reference = $1",
        )
        .bind(reference)
        .bind(status)
        .bind(code)
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn history_request(&self, reference: &str) -> Result<Option<HistoryRequestRow>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM history_requests WHERE reference = $1"
        )))
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(from_row))
    }

    /// Newest first, optionally of one user and/or one status.
    pub async fn history_requests(
        &self,
        user_id: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HistoryRequestRow>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM history_requests WHERE ($1 = '' OR user_id = $1) \
             AND ($2 = '' OR status = $2) ORDER BY created_at DESC, reference LIMIT $3"
        )))
        .bind(user_id.unwrap_or(""))
        .bind(status.unwrap_or(""))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect())
    }

    /// Delivery rows of the payloads carrying `terra-reference: reference`, counted by
    /// (destination, status).
    pub async fn deliveries_by_reference(
        &self,
        reference: &str,
    ) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query(
            "SELECT d.destination, d.status, COUNT(*) FROM deliveries d JOIN payloads p ON p.id = d.payload_id \
             WHERE p.terra_reference = $1 GROUP BY d.destination, d.status ORDER BY d.destination, d.status",
        )
        .bind(reference)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    }
}
