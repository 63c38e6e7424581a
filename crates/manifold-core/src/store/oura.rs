//! The Oura connector's tables: `oura_users` (connections and encrypted tokens),
//! `oura_notifications` (the durable intake queue, claimed under leases like deliveries),
//! `oura_documents` (raw Oura documents, the input of day rebuilds) and `oura_subscriptions`.
//!
//! The engine knows no provider: these queries store opaque strings (tokens arrive already
//! encrypted) and never interpret Oura documents.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Result, Store, now_ms, truncate};

/// Notifications per multi-row INSERT (8 parameters each).
pub(super) const NOTIFICATION_CHUNK: usize = 200;

/// `last_error` of a notification whose Oura user id no connected user has.
pub(super) const UNKNOWN_USER_ERROR: &str = "no connected user has this Oura user id";

/// One row of `oura_users`. Tokens are ciphertext (the connector encrypts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraUserRow {
    pub user_id: String,
    pub oura_user_id: Option<String>,
    pub reference_id: Option<String>,
    pub scopes: Option<String>,
    /// `pending` (consent link issued), `connected`, `paused` (re-auth needed).
    pub status: String,
    pub active: bool,
    pub paused_reason: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
    pub success_redirect: Option<String>,
    pub failure_redirect: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub connected_at: Option<i64>,
    pub last_webhook_at: Option<i64>,
}

const USER_COLS: &str = "user_id, oura_user_id, reference_id, scopes, status, active, paused_reason, \
     access_token, refresh_token, expires_at, success_redirect, failure_redirect, created_at, updated_at, \
     connected_at, last_webhook_at";

fn user_from_row(r: &AnyRow) -> OuraUserRow {
    OuraUserRow {
        user_id: r.get(0),
        oura_user_id: r.get(1),
        reference_id: r.get(2),
        scopes: r.get(3),
        status: r.get(4),
        active: r.get::<i64, _>(5) != 0,
        paused_reason: r.get(6),
        access_token: r.get(7),
        refresh_token: r.get(8),
        expires_at: r.get(9),
        success_redirect: r.get(10),
        failure_redirect: r.get(11),
        created_at: r.get(12),
        updated_at: r.get(13),
        connected_at: r.get(14),
        last_webhook_at: r.get(15),
    }
}

/// The Oura user ids whose existence decides a group's statuses (`require_user`, `pending`).
pub(super) fn users_to_check<'a>(ns: &[&'a NewOuraNotification]) -> Vec<&'a str> {
    let mut asked: Vec<&str> = ns
        .iter()
        .filter(|n| n.require_user && n.status == "pending")
        .map(|n| n.oura_user_id.as_str())
        .collect();
    asked.sort_unstable();
    asked.dedup();
    asked
}

/// Each notification's (status, last_error): `unknown_user` when it requires a user that is
/// not among `known`, else what it came with.
pub(super) fn decide_statuses<'a>(
    ns: &[&'a NewOuraNotification],
    known: &std::collections::HashSet<String>,
) -> Vec<(&'a str, Option<String>)> {
    ns.iter()
        .map(|n| {
            if n.require_user && n.status == "pending" && !known.contains(&n.oura_user_id) {
                ("unknown_user", Some(UNKNOWN_USER_ERROR.to_string()))
            } else {
                (
                    n.status.as_str(),
                    n.last_error.as_deref().map(|e| truncate(e, 1024)),
                )
            }
        })
        .collect()
}

/// The users whose `last_webhook_at` a group stamps: those with a `pending` notification.
pub(super) fn users_to_stamp<'a>(
    ns: &[&'a NewOuraNotification],
    decided: &[(&str, Option<String>)],
) -> Vec<&'a str> {
    let mut users: Vec<&str> = ns
        .iter()
        .zip(decided)
        .filter(|(_, (status, _))| *status == "pending")
        .map(|(n, _)| n.oura_user_id.as_str())
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// The result per notification: new unless its id was not inserted (a duplicate).
pub(super) fn recorded(
    ids: &[String],
    decided: Vec<(&str, Option<String>)>,
    inserted: &std::collections::HashSet<String>,
) -> Vec<NotificationRecorded> {
    ids.iter()
        .zip(decided)
        .map(|(id, (status, _))| NotificationRecorded {
            new: inserted.contains(id),
            status: status.to_string(),
        })
        .collect()
}

/// Tokens and grant details written when a user connects or refreshes.
#[derive(Debug, Clone)]
pub struct OuraTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
    pub scopes: Option<String>,
}

/// A notification as Oura sent it (already verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOuraNotification {
    pub oura_user_id: String,
    pub data_type: String,
    pub object_id: String,
    pub event_type: String,
    pub event_time: String,
    /// `pending` (to fetch), or a final status such as `unknown_user` / `unsupported`.
    pub status: String,
    pub last_error: Option<String>,
    /// Record a `pending` notification as `unknown_user` when no user has this Oura user id,
    /// decided inside the insert's transaction (no separate lookup per notification).
    pub require_user: bool,
}

/// How a notification was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecorded {
    /// False when the same notification was already recorded (coalesced).
    pub new: bool,
    /// The status it was recorded with (`pending`, `unknown_user`, …).
    pub status: String,
}

/// A claimed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraNotification {
    pub id: String,
    pub oura_user_id: String,
    pub data_type: String,
    pub object_id: String,
    pub event_type: String,
    pub event_time: String,
    /// Attempts including this one.
    pub attempts: i64,
}

/// A notification row for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraNotificationInfo {
    pub id: String,
    pub oura_user_id: String,
    pub data_type: String,
    pub object_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// A stored Oura document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraDocumentRow {
    pub data_type: String,
    pub object_id: String,
    pub day: Option<String>,
    pub body: String,
}

/// A webhook subscription as last seen at Oura.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraSubscriptionRow {
    pub id: String,
    pub event_type: String,
    pub data_type: String,
    pub callback_url: String,
    pub expiration_time: Option<String>,
}

impl Store {
    // ---------------------------------------------------------------- users

    /// Create a user whose consent link was just issued.
    pub async fn oura_create_pending_user(
        &self,
        user_id: &str,
        reference_id: Option<&str>,
        success_redirect: Option<&str>,
        failure_redirect: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO oura_users (user_id, reference_id, status, active, success_redirect, failure_redirect, \
             created_at, updated_at) VALUES ($1, $2, 'pending', 1, $3, $4, $5, $5)",
        )
        .bind(user_id)
        .bind(reference_id.map(str::to_string))
        .bind(success_redirect.map(str::to_string))
        .bind(failure_redirect.map(str::to_string))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn oura_user(&self, user_id: &str) -> Result<Option<OuraUserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM oura_users WHERE user_id = $1");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row))
    }

    pub async fn oura_user_by_oura_id(&self, oura_user_id: &str) -> Result<Option<OuraUserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM oura_users WHERE oura_user_id = $1");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(oura_user_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row))
    }

    pub async fn oura_users_by_reference(&self, reference_id: &str) -> Result<Vec<OuraUserRow>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM oura_users WHERE reference_id = $1 ORDER BY created_at, user_id"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(reference_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect())
    }

    pub async fn oura_users(&self) -> Result<Vec<OuraUserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM oura_users ORDER BY created_at, user_id");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect())
    }

    /// Mark `user_id` connected to `oura_user_id` with fresh tokens, in one transaction. Any
    /// other user of the same Oura account, or (when `user_id` has a reference id) of the same
    /// reference id, is replaced: its row and documents are deleted and it is returned, so the
    /// caller can emit `user_reauth`.
    pub async fn oura_connect_user(
        &self,
        user_id: &str,
        oura_user_id: &str,
        tokens: &OuraTokens,
    ) -> Result<Vec<OuraUserRow>> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let reference: Option<String> =
            sqlx::query("SELECT reference_id FROM oura_users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .and_then(|r| r.get(0));
        let sql = format!(
            "SELECT {USER_COLS} FROM oura_users WHERE user_id <> $1 AND status <> 'pending' AND \
             (oura_user_id = $2 OR ($3 IS NOT NULL AND reference_id = $3)) ORDER BY created_at"
        );
        let replaced: Vec<OuraUserRow> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(oura_user_id)
            .bind(reference.clone())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(user_from_row)
            .collect();
        // A half-finished earlier consent of the same Oura account cannot keep the id either.
        sqlx::query(
            "UPDATE oura_users SET oura_user_id = NULL WHERE user_id <> $1 AND oura_user_id = $2",
        )
        .bind(user_id)
        .bind(oura_user_id)
        .execute(&mut *tx)
        .await?;
        for old in &replaced {
            sqlx::query("DELETE FROM oura_documents WHERE user_id = $1")
                .bind(&old.user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM oura_users WHERE user_id = $1")
                .bind(&old.user_id)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query(
            "UPDATE oura_users SET oura_user_id = $1, status = 'connected', paused_reason = NULL, \
             access_token = $2, refresh_token = $3, expires_at = $4, scopes = $5, updated_at = $6, \
             connected_at = $6 WHERE user_id = $7",
        )
        .bind(oura_user_id)
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(tokens.expires_at)
        .bind(tokens.scopes.clone())
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(super::StoreError::Other(format!(
                "no Oura user {user_id} to connect"
            )));
        }
        tx.commit().await?;
        Ok(replaced)
    }

    /// Persist a refreshed token pair only if the stored refresh token is still
    /// `old_refresh_token` (Oura refresh tokens are single-use: whoever refreshed first wins).
    /// Returns false when another refresh got there first.
    pub async fn oura_swap_tokens(
        &self,
        user_id: &str,
        old_refresh_token: &str,
        tokens: &OuraTokens,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE oura_users SET access_token = $1, refresh_token = $2, expires_at = $3, \
             scopes = COALESCE($4, scopes), updated_at = $5 WHERE user_id = $6 AND refresh_token = $7",
        )
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(tokens.expires_at)
        .bind(tokens.scopes.clone())
        .bind(now_ms())
        .bind(user_id)
        .bind(old_refresh_token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Pause a user (re-auth needed) or resume it (`reason = None`).
    pub async fn oura_set_paused(&self, user_id: &str, reason: Option<&str>) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE oura_users SET status = CASE WHEN $1 IS NULL THEN 'connected' ELSE 'paused' END, \
             paused_reason = $1, updated_at = $2 WHERE user_id = $3",
        )
        .bind(reason.map(str::to_string))
        .bind(now_ms())
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// `PATCH /v2/users/{id}`: change `active` and/or `reference_id`. False if unknown.
    pub async fn oura_patch_user(
        &self,
        user_id: &str,
        active: Option<bool>,
        reference_id: Option<&str>,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE oura_users SET active = COALESCE($1, active), reference_id = COALESCE($2, reference_id), \
             updated_at = $3 WHERE user_id = $4",
        )
        .bind(active.map(i64::from))
        .bind(reference_id.map(str::to_string))
        .bind(now_ms())
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Forget a user: its row, tokens, stored documents and history/backfill bookkeeping.
    /// False if unknown.
    pub async fn oura_delete_user(&self, user_id: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        for table in [
            "oura_documents",
            "oura_history_fetches",
            "backfill_progress",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        let n = sqlx::query("DELETE FROM oura_users WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn oura_touch_webhook(&self, user_id: &str) -> Result<()> {
        sqlx::query("UPDATE oura_users SET last_webhook_at = $1 WHERE user_id = $2")
            .bind(now_ms())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // -------------------------------------------------------- notifications

    /// Record a notification durably. Returns false when the same (user, data type, object,
    /// event type, event time) was already recorded: duplicates are coalesced. A fetchable
    /// (`pending`) notification also stamps its user's `last_webhook_at`.
    ///
    /// On SQLite the insert joins the writer's group commit, so thousands of notifications per
    /// second share a few statements and one fsync per group.
    pub async fn oura_record_notification(
        &self,
        n: &NewOuraNotification,
    ) -> Result<NotificationRecorded> {
        if let Some(w) = self.writer.as_ref() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            w.send(super::writer::Request::Notification {
                notification: n.clone(),
                respond: tx,
            })
            .await
            .map_err(|_| super::StoreError::Other("the store writer has stopped".into()))?;
            return rx
                .await
                .map_err(|_| super::StoreError::Other("the store writer has stopped".into()))?;
        }
        let mut tx = self.write_tx().await?;
        let mut out = self
            .oura_record_notifications_in(&mut tx, std::slice::from_ref(n))
            .await?;
        tx.commit().await?;
        out.pop()
            .ok_or_else(|| super::StoreError::Other("no result".into()))
    }

    /// The statements of [`Store::oura_record_notification`] for several notifications, in the
    /// caller's transaction: which Oura users exist, one multi-row INSERT … ON CONFLICT DO
    /// NOTHING RETURNING (which tells the new ones apart from duplicates) and one UPDATE
    /// stamping the users. (SQLite's group-commit writer runs the same statements in
    /// `writer.rs`.)
    pub(crate) async fn oura_record_notifications_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        ns: &[NewOuraNotification],
    ) -> Result<Vec<NotificationRecorded>> {
        let now = now_ms();
        let refs: Vec<&NewOuraNotification> = ns.iter().collect();
        let asked = users_to_check(&refs);
        let mut known = std::collections::HashSet::new();
        for chunk in asked.chunks(NOTIFICATION_CHUNK) {
            let sql = format!(
                "SELECT oura_user_id FROM oura_users WHERE oura_user_id IN ({})",
                super::placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q.bind(*u);
            }
            for row in q.fetch_all(&mut *tx).await? {
                known.insert(row.get::<String, _>(0));
            }
        }
        let decided = decide_statuses(&refs, &known);
        let ids: Vec<String> = ns
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let mut inserted = std::collections::HashSet::new();
        for (chunk_no, chunk) in ns.chunks(NOTIFICATION_CHUNK).enumerate() {
            // `now` is an integer from our clock, written as a literal.
            let sql = format!(
                "INSERT INTO oura_notifications (id, oura_user_id, data_type, object_id, event_type, event_time, \
                 status, last_error, attempts, next_attempt_at, received_at, updated_at) VALUES {} \
                 ON CONFLICT (oura_user_id, data_type, object_id, event_type, event_time) DO NOTHING \
                 RETURNING id",
                super::value_rows(
                    self.backend,
                    1,
                    chunk.len(),
                    8,
                    &format!(", 0, {now}, {now}, {now}")
                )
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, n) in chunk.iter().enumerate() {
                let (status, error) = &decided[chunk_no * NOTIFICATION_CHUNK + i];
                q = q
                    .bind(ids[chunk_no * NOTIFICATION_CHUNK + i].as_str())
                    .bind(n.oura_user_id.as_str())
                    .bind(n.data_type.as_str())
                    .bind(n.object_id.as_str())
                    .bind(n.event_type.as_str())
                    .bind(n.event_time.as_str())
                    .bind(*status)
                    .bind(error.clone());
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.get::<String, _>(0));
            }
        }
        let users = users_to_stamp(&refs, &decided);
        for chunk in users.chunks(NOTIFICATION_CHUNK) {
            let sql = format!(
                "UPDATE oura_users SET last_webhook_at = {now} WHERE oura_user_id IN ({})",
                super::placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q.bind(*u);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(recorded(&ids, decided, &inserted))
    }

    /// Claim up to `limit` due pending notifications under a lease.
    pub async fn oura_claim_notifications(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<(String, Vec<OuraNotification>)> {
        let token = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let _gate = self.write_gate().await;
        let expires = now + lease.as_millis() as i64;
        let sql = match self.backend {
            Backend::Postgres => {
                "WITH due AS (SELECT id FROM oura_notifications WHERE status = 'pending' \
                 AND next_attempt_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE oura_notifications n SET lease_owner = $3, lease_expires_at = $4, \
                 attempts = n.attempts + 1, updated_at = $1 FROM due WHERE n.id = due.id"
            }
            Backend::Sqlite => {
                "UPDATE oura_notifications SET lease_owner = $3, lease_expires_at = $4, attempts = attempts + 1, \
                 updated_at = $1 WHERE id IN (SELECT id FROM oura_notifications WHERE status = 'pending' \
                 AND next_attempt_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
                 ORDER BY next_attempt_at LIMIT $2)"
            }
        };
        let claimed = sqlx::query(sql)
            .bind(now)
            .bind(limit as i64)
            .bind(&token)
            .bind(expires)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if claimed == 0 {
            return Ok((token, Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT id, oura_user_id, data_type, object_id, event_type, event_time, attempts \
             FROM oura_notifications WHERE lease_owner = $1 ORDER BY received_at, id",
        )
        .bind(&token)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            token,
            rows.iter()
                .map(|r| OuraNotification {
                    id: r.get(0),
                    oura_user_id: r.get(1),
                    data_type: r.get(2),
                    object_id: r.get(3),
                    event_type: r.get(4),
                    event_time: r.get(5),
                    attempts: r.get(6),
                })
                .collect(),
        ))
    }

    /// End a claimed notification with a final status (`done`, `failed`, `gone`,
    /// `unknown_user`, …). False when the lease was lost.
    pub async fn oura_finish_notification(
        &self,
        id: &str,
        token: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE oura_notifications SET status = $1, last_error = $2, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $3 WHERE id = $4 AND lease_owner = $5",
        )
        .bind(status)
        .bind(reason.map(|e| truncate(e, 1024)))
        .bind(now_ms())
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Put a claimed notification back, due at `at_ms`. `count` = false gives the attempt back
    /// (rate limiting is not the notification's fault).
    pub async fn oura_retry_notification(
        &self,
        id: &str,
        token: &str,
        at_ms: i64,
        error: &str,
        count: bool,
    ) -> Result<bool> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE oura_notifications SET next_attempt_at = $1, last_error = $2, lease_owner = NULL, \
             lease_expires_at = NULL, attempts = attempts - $3, updated_at = $4 WHERE id = $5 AND lease_owner = $6",
        )
        .bind(at_ms)
        .bind(truncate(error, 1024))
        .bind(if count { 0i64 } else { 1i64 })
        .bind(now_ms())
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Notifications, newest first (inspection and tests).
    pub async fn oura_notifications(&self, limit: i64) -> Result<Vec<OuraNotificationInfo>> {
        let rows = sqlx::query(
            "SELECT id, oura_user_id, data_type, object_id, event_type, status, attempts, next_attempt_at, \
             last_error FROM oura_notifications ORDER BY received_at DESC, id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| OuraNotificationInfo {
                id: r.get(0),
                oura_user_id: r.get(1),
                data_type: r.get(2),
                object_id: r.get(3),
                event_type: r.get(4),
                status: r.get(5),
                attempts: r.get(6),
                next_attempt_at: r.get(7),
                last_error: r.get(8),
            })
            .collect())
    }

    // ------------------------------------------------------------ documents

    /// Insert or replace a raw document.
    pub async fn oura_upsert_document(
        &self,
        user_id: &str,
        data_type: &str,
        object_id: &str,
        day: Option<&str>,
        body: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO oura_documents (user_id, data_type, object_id, day, body, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, data_type, object_id) DO UPDATE SET \
             day = excluded.day, body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(data_type)
        .bind(object_id)
        .bind(day.map(str::to_string))
        .bind(body)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn oura_document(
        &self,
        user_id: &str,
        data_type: &str,
        object_id: &str,
    ) -> Result<Option<OuraDocumentRow>> {
        Ok(sqlx::query(
            "SELECT data_type, object_id, day, body FROM oura_documents \
             WHERE user_id = $1 AND data_type = $2 AND object_id = $3",
        )
        .bind(user_id)
        .bind(data_type)
        .bind(object_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| OuraDocumentRow {
            data_type: r.get(0),
            object_id: r.get(1),
            day: r.get(2),
            body: r.get(3),
        }))
    }

    /// Delete a stored document; returns it if it existed.
    pub async fn oura_delete_document(
        &self,
        user_id: &str,
        data_type: &str,
        object_id: &str,
    ) -> Result<Option<OuraDocumentRow>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "DELETE FROM oura_documents WHERE user_id = $1 AND data_type = $2 AND object_id = $3 \
             RETURNING data_type, object_id, day, body",
        )
        .bind(user_id)
        .bind(data_type)
        .bind(object_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| OuraDocumentRow {
            data_type: r.get(0),
            object_id: r.get(1),
            day: r.get(2),
            body: r.get(3),
        });
        tx.commit().await?;
        Ok(row)
    }

    /// Every stored document of a user's day (any data type).
    pub async fn oura_day_documents(
        &self,
        user_id: &str,
        day: &str,
    ) -> Result<Vec<OuraDocumentRow>> {
        Ok(sqlx::query(
            "SELECT data_type, object_id, day, body FROM oura_documents WHERE user_id = $1 AND day = $2 \
             ORDER BY data_type, updated_at, object_id",
        )
        .bind(user_id)
        .bind(day)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| OuraDocumentRow {
            data_type: r.get(0),
            object_id: r.get(1),
            day: r.get(2),
            body: r.get(3),
        })
        .collect())
    }

    /// The most recent document of a type for a user (e.g. `personal_info`).
    pub async fn oura_latest_document(
        &self,
        user_id: &str,
        data_type: &str,
    ) -> Result<Option<OuraDocumentRow>> {
        Ok(sqlx::query(
            "SELECT data_type, object_id, day, body FROM oura_documents WHERE user_id = $1 AND data_type = $2 \
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(data_type)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| OuraDocumentRow {
            data_type: r.get(0),
            object_id: r.get(1),
            day: r.get(2),
            body: r.get(3),
        }))
    }

    pub async fn oura_count_documents(&self, user_id: &str) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM oura_documents WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    // -------------------------------------------------------- subscriptions

    /// Replace the remembered set of subscriptions with what Oura reported.
    pub async fn oura_save_subscriptions(&self, subs: &[OuraSubscriptionRow]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM oura_subscriptions")
            .execute(&mut *tx)
            .await?;
        for s in subs {
            sqlx::query(
                "INSERT INTO oura_subscriptions (id, event_type, data_type, callback_url, expiration_time, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&s.id)
            .bind(&s.event_type)
            .bind(&s.data_type)
            .bind(&s.callback_url)
            .bind(s.expiration_time.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn oura_subscriptions(&self) -> Result<Vec<OuraSubscriptionRow>> {
        Ok(sqlx::query(
            "SELECT id, event_type, data_type, callback_url, expiration_time FROM oura_subscriptions \
             ORDER BY data_type, event_type",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| OuraSubscriptionRow {
            id: r.get(0),
            event_type: r.get(1),
            data_type: r.get(2),
            callback_url: r.get(3),
            expiration_time: r.get(4),
        })
        .collect())
    }
}

// ------------------------------------------------ polling and reconcile (migration 5)

/// A claimed `oura_poll_state` row: the caller holds its lease until
/// [`Store::oura_poll_finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraPollClaim {
    pub user_id: String,
    pub task: String,
    /// Task-defined progress (heart-rate polling: Unix ms of the newest sample seen).
    pub cursor_ms: Option<i64>,
    pub token: String,
}

/// One `oura_poll_state` row, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuraPollState {
    pub user_id: String,
    pub task: String,
    pub cursor_ms: Option<i64>,
    pub next_due_at: i64,
    pub last_run_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Store {
    /// Give every connected, active user without a `task` row one, first due at `first_due_ms`.
    /// Returns how many rows were created.
    pub async fn oura_poll_ensure(&self, task: &str, first_due_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO oura_poll_state (user_id, task, next_due_at, updated_at) \
             SELECT u.user_id, $1, $2, $3 FROM oura_users u WHERE u.status = 'connected' AND u.active <> 0 \
             AND NOT EXISTS (SELECT 1 FROM oura_poll_state s WHERE s.user_id = u.user_id AND s.task = $1) \
             ON CONFLICT (user_id, task) DO NOTHING",
        )
        .bind(task)
        .bind(first_due_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Forget the state of users that no longer exist.
    pub async fn oura_poll_prune(&self) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM oura_poll_state WHERE NOT EXISTS \
             (SELECT 1 FROM oura_users u WHERE u.user_id = oura_poll_state.user_id)",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Users whose `task` is due (connected, active, not leased by a live claim), most overdue
    /// first.
    pub async fn oura_poll_due(&self, task: &str, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query(
            "SELECT s.user_id FROM oura_poll_state s JOIN oura_users u ON u.user_id = s.user_id \
             WHERE s.task = $1 AND s.next_due_at <= $2 \
             AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= $2) \
             AND u.status = 'connected' AND u.active <> 0 \
             ORDER BY s.next_due_at, s.user_id LIMIT $3",
        )
        .bind(task)
        .bind(now_ms())
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    /// Claim a due `task` of a user under a lease; `None` when it is not due or another
    /// claim holds it.
    pub async fn oura_poll_claim(
        &self,
        user_id: &str,
        task: &str,
        lease: Duration,
    ) -> Result<Option<OuraPollClaim>> {
        let token = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE oura_poll_state SET lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
             WHERE user_id = $4 AND task = $5 AND next_due_at <= $3 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= $3)",
        )
        .bind(&token)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(user_id)
        .bind(task)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let cursor: Option<i64> = sqlx::query(
            "SELECT cursor_ms FROM oura_poll_state WHERE user_id = $1 AND task = $2 AND lease_owner = $3",
        )
        .bind(user_id)
        .bind(task)
        .bind(&token)
        .fetch_optional(&self.pool)
        .await?
        .and_then(|r| r.get(0));
        Ok(Some(OuraPollClaim {
            user_id: user_id.to_string(),
            task: task.to_string(),
            cursor_ms: cursor,
            token,
        }))
    }

    /// End a claim: store the new cursor (`None` keeps the old one), when it is next due and
    /// the error, if any; release the lease. False when the lease was lost.
    pub async fn oura_poll_finish(
        &self,
        claim: &OuraPollClaim,
        cursor_ms: Option<i64>,
        next_due_ms: i64,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE oura_poll_state SET cursor_ms = COALESCE($1, cursor_ms), next_due_at = $2, \
             last_run_at = $3, last_error = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
             WHERE user_id = $5 AND task = $6 AND lease_owner = $7",
        )
        .bind(cursor_ms)
        .bind(next_due_ms)
        .bind(now)
        .bind(error.map(|e| truncate(e, 1024)))
        .bind(&claim.user_id)
        .bind(&claim.task)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Give a claim back unchanged (shutdown): due again at once, no error recorded.
    pub async fn oura_poll_release(&self, claim: &OuraPollClaim) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE oura_poll_state SET lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE user_id = $2 AND task = $3 AND lease_owner = $4",
        )
        .bind(now_ms())
        .bind(&claim.user_id)
        .bind(&claim.task)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn oura_poll_state(
        &self,
        user_id: &str,
        task: &str,
    ) -> Result<Option<OuraPollState>> {
        Ok(sqlx::query(
            "SELECT user_id, task, cursor_ms, next_due_at, last_run_at, last_error FROM oura_poll_state \
             WHERE user_id = $1 AND task = $2",
        )
        .bind(user_id)
        .bind(task)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| OuraPollState {
            user_id: r.get(0),
            task: r.get(1),
            cursor_ms: r.get(2),
            next_due_at: r.get(3),
            last_run_at: r.get(4),
            last_error: r.get(5),
        }))
    }

    /// Pending notifications that are due now: live work that polling and reconcile give
    /// way to.
    pub async fn oura_notifications_due(&self) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM oura_notifications WHERE status = 'pending' AND next_attempt_at <= $1",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }

    /// Insert or replace many raw documents of one user in one transaction,
    /// `(data_type, object_id, day, body)`, writing only those that are new or whose day or
    /// body changed. Returns, per input, whether it was written.
    pub async fn oura_upsert_documents_changed(
        &self,
        user_id: &str,
        docs: &[(String, String, Option<String>, String)],
    ) -> Result<Vec<bool>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut out = Vec::with_capacity(docs.len());
        let mut tx = self.write_tx().await?;
        for (data_type, object_id, day, body) in docs {
            let stored = sqlx::query(
                "SELECT day, body FROM oura_documents WHERE user_id = $1 AND data_type = $2 AND object_id = $3",
            )
            .bind(user_id)
            .bind(data_type)
            .bind(object_id)
            .fetch_optional(&mut *tx)
            .await?;
            let same = stored.is_some_and(|r| {
                r.get::<Option<String>, _>(0) == *day && r.get::<String, _>(1) == *body
            });
            if same {
                out.push(false);
                continue;
            }
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
            out.push(true);
        }
        tx.commit().await?;
        Ok(out)
    }
}
