//! Reconcile: catch up on changes whose webhook notification never arrived (Oura stops
//! retrying a notification after about an hour of failed deliveries).
//!
//! Every `oura.reconcile_every` (default 1 h, `"0s"` = off; scheduled per user like heart-rate
//! polling, see [`crate::poll`]) each connected, active user's recent days — today (UTC) and the
//! `oura.reconcile_days` (default 2) days before it — are listed again for every collection
//! Manifold subscribes to ([`WEBHOOK_DATA_TYPES`], all pages, `end_date` = the day after the
//! last day since a bare `end_date` excludes that day). Then:
//!
//! * a listed document the store lacks, or whose content differs from the stored one, is
//!   stored and published exactly as a fetched notification would be (same mapping, same
//!   natural keys, so destinations upsert; an unchanged mapping stores no new payload version);
//! * a stored document of that collection whose day is inside the window — after its first
//!   day, where Oura's date filter and a document's `day` may disagree — and that Oura no longer
//!   lists is handled like a `delete` notification (tombstone, or the day rebuilt);
//! * with heart-rate polling on, the window's `heartrate` rows are listed too, so samples that
//!   synced late (older than the poll cursor) are picked up.
//!
//! A collection the user did not grant (403) is skipped. The cost per user and run is one
//! request per collection and page (12 collections, plus heart rate), at the scheduler's low
//! priority.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate, Utc};
use manifold_core::store::OuraUserRow;
use serde_json::Value;

use crate::connector::{Connector, Failure, WEBHOOK_DATA_TYPES};
use crate::poll::{PollError, heartrate_window, list_all, store_err};
use crate::types::canonical_data_type;

/// What one reconcile run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Documents Oura listed.
    pub listed: usize,
    /// Documents that were missing or different, and were published.
    pub changed: usize,
    /// Stored documents Oura no longer lists, handled as deletes.
    pub deleted: usize,
    /// Heart-rate rows that were new or changed.
    pub heartrate_rows: usize,
    /// Collections skipped because the user did not grant their scope.
    pub forbidden: usize,
}

/// The days a reconcile covers: `(first, last)`, both included.
pub fn window(today: NaiveDate, reconcile_days: u32) -> (NaiveDate, NaiveDate) {
    (
        today - Duration::days(i64::from(reconcile_days.max(1))),
        today,
    )
}

/// Reconcile one user now.
pub async fn reconcile_user(
    conn: &Connector,
    user: &OuraUserRow,
) -> Result<ReconcileStats, PollError> {
    let (first, last) = window(Utc::now().date_naive(), conn.config().reconcile_days);
    let params = [
        ("start_date", first.to_string()),
        ("end_date", (last + Duration::days(1)).to_string()),
    ];
    let store = conn.store();
    let mut stats = ReconcileStats::default();
    for webhook_type in WEBHOOK_DATA_TYPES {
        let collection = canonical_data_type(webhook_type).unwrap_or(webhook_type);
        let items = match list_all(conn, user, collection, &params).await {
            Ok(items) => items,
            Err(e @ PollError::Forbidden { .. }) => {
                tracing::debug!(user_id = %user.user_id, error = %e, "reconcile: collection skipped");
                stats.forbidden += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut listed = HashSet::new();
        let mut every_item_has_an_id = true;
        for item in items {
            stats.listed += 1;
            let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
                every_item_has_an_id = false;
                continue;
            };
            listed.insert(id.clone());
            let stored = store
                .oura_document(&user.user_id, collection, &id)
                .await
                .map_err(store_err)?;
            let same = stored
                .is_some_and(|s| serde_json::from_str::<Value>(&s.body).is_ok_and(|v| v == item));
            if same {
                continue;
            }
            match conn
                .apply_document(user, collection, &id, item.to_string().as_bytes())
                .await
            {
                Ok(()) => stats.changed += 1,
                Err(Failure::Permanent(status, reason)) => {
                    tracing::warn!(user_id = %user.user_id, collection, id, status, %reason, "reconcile: document skipped")
                }
                Err(Failure::Transient(e)) => return Err(PollError::Store(e)),
            }
        }
        if !every_item_has_an_id {
            continue;
        }
        let inside = (first + Duration::days(1)).to_string();
        let stored = store
            .oura_documents_between(&user.user_id, &[collection], &inside, &last.to_string())
            .await
            .map_err(store_err)?;
        for gone in stored.iter().filter(|r| !listed.contains(&r.object_id)) {
            conn.apply_delete(user, collection, &gone.object_id)
                .await
                .map_err(PollError::from)?;
            stats.deleted += 1;
        }
    }
    if !conn.config().heartrate_poll.is_zero() {
        let start = first.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        match heartrate_window(conn, user, start, Utc::now()).await {
            Ok((n, _)) => stats.heartrate_rows = n,
            Err(PollError::Forbidden { .. }) => stats.forbidden += 1,
            Err(e) => return Err(e),
        }
    }
    if stats.changed + stats.deleted + stats.heartrate_rows > 0 {
        tracing::info!(
            user_id = %user.user_id,
            changed = stats.changed,
            deleted = stats.deleted,
            heartrate_rows = stats.heartrate_rows,
            "reconcile published what notifications missed"
        );
    }
    metrics::counter!("manifold_oura_reconciled_documents_total")
        .increment((stats.changed + stats.deleted) as u64);
    Ok(stats)
}
