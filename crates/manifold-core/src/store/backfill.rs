//! History and backfill bookkeeping: which (user, Oura collection, day) was fetched when
//! (`oura_history_fetches`, the freshness check of synchronous history requests), which
//! (user, Terra type, day) a backfill finished (`backfill_progress`, so an interrupted
//! `manifold backfill` resumes where it stopped), and range reads of `oura_documents`.
//!
//! Days are `YYYY-MM-DD` strings (they compare in date order). Like the rest of the Oura
//! tables these queries never interpret documents.

use std::collections::HashSet;

use sqlx::Row;

use super::{Result, Store, now_ms};

/// A stored Oura document with its collection, for range reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryDocRow {
    pub data_type: String,
    pub object_id: String,
    pub day: Option<String>,
    pub body: String,
}

impl Store {
    /// Insert or replace many raw documents of one user in one transaction:
    /// `(data_type, object_id, day, body)`.
    pub async fn oura_upsert_documents(
        &self,
        user_id: &str,
        docs: &[(String, String, Option<String>, String)],
    ) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for (data_type, object_id, day, body) in docs {
            sqlx::query(
                "INSERT INTO oura_documents (user_id, data_type, object_id, day, body, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, data_type, object_id) DO UPDATE SET \
                 day = excluded.day, body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(user_id)
            .bind(data_type)
            .bind(object_id)
            .bind(day.clone())
            .bind(body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stored documents of `data_types` whose day is within `from..=to`, ordered by day, data
    /// type, update time and id (the order of a day rebuild).
    pub async fn oura_documents_between(
        &self,
        user_id: &str,
        data_types: &[&str],
        from: &str,
        to: &str,
    ) -> Result<Vec<HistoryDocRow>> {
        let rows = sqlx::query(
            "SELECT data_type, object_id, day, body FROM oura_documents \
             WHERE user_id = $1 AND day >= $2 AND day <= $3 \
             ORDER BY day, data_type, updated_at, object_id",
        )
        .bind(user_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| HistoryDocRow {
                data_type: r.get(0),
                object_id: r.get(1),
                day: r.get(2),
                body: r.get(3),
            })
            .filter(|d| data_types.is_empty() || data_types.contains(&d.data_type.as_str()))
            .collect())
    }

    /// Remember that `data_type` was fetched from Oura for every day of `days`.
    pub async fn oura_mark_fetched(
        &self,
        user_id: &str,
        data_type: &str,
        days: &[String],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for day in days {
            sqlx::query(
                "INSERT INTO oura_history_fetches (user_id, data_type, day, fetched_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, data_type, day) DO UPDATE SET fetched_at = excluded.fetched_at",
            )
            .bind(user_id)
            .bind(data_type)
            .bind(day)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many days of `from..=to` had `data_type` fetched at or after `since_ms`.
    pub async fn oura_fetched_days_since(
        &self,
        user_id: &str,
        data_type: &str,
        from: &str,
        to: &str,
        since_ms: i64,
    ) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM oura_history_fetches WHERE user_id = $1 AND data_type = $2 \
             AND day >= $3 AND day <= $4 AND fetched_at >= $5",
        )
        .bind(user_id)
        .bind(data_type)
        .bind(from)
        .bind(to)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }

    /// Days of `from..=to` a backfill already finished for (user, Terra event type).
    pub async fn backfill_done_days(
        &self,
        user_id: &str,
        event_type: &str,
        from: &str,
        to: &str,
    ) -> Result<HashSet<String>> {
        Ok(sqlx::query(
            "SELECT day FROM backfill_progress WHERE user_id = $1 AND event_type = $2 \
             AND day >= $3 AND day <= $4",
        )
        .bind(user_id)
        .bind(event_type)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect())
    }

    /// Record that a backfill published every record of (user, event type, day).
    pub async fn backfill_mark_done(
        &self,
        user_id: &str,
        event_type: &str,
        day: &str,
        records: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO backfill_progress (user_id, event_type, day, records, finished_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, event_type, day) DO UPDATE SET \
             records = excluded.records, finished_at = excluded.finished_at",
        )
        .bind(user_id)
        .bind(event_type)
        .bind(day)
        .bind(records)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
