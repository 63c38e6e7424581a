//! Admin API: list deliveries and attempts, replay, enable/disable destinations, readiness.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use manifold_core::store::DeliveryFilter;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::AppState;
use crate::auth::require_key;
use crate::problem::Problem;

const STATUSES: &[&str] = &["pending", "delivered", "dead"];

fn store_error(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "admin: store error");
    Problem::unavailable("the store is unavailable; retry the request")
}

fn check_status(s: &str) -> Result<(), Problem> {
    if STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "status `{s}` is unknown: use one of {}",
            STATUSES.join(", ")
        )))
    }
}

fn check_destination(state: &AppState, name: &str) -> Result<(), Problem> {
    if state
        .engine
        .destinations()
        .iter()
        .any(|d| d.common.name == name)
    {
        Ok(())
    } else {
        Err(Problem::not_found(format!(
            "no destination is named `{name}` in the config"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    destination: Option<String>,
    payload_id: Option<String>,
    /// A Terra user id or a reference id.
    user: Option<String>,
    /// A payload type (`sleep`, `daily`, `auth`, …).
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<i64>,
}

/// `GET /admin/deliveries?status=&destination=&payload_id=&user=&type=&limit=`, newest first.
pub async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let q = ListQuery {
        status: empty(q.status),
        ..q
    };
    if let Some(s) = &q.status {
        check_status(s)?;
    }
    let filter = DeliveryFilter {
        status: empty(q.status),
        destination: empty(q.destination),
        payload_id: empty(q.payload_id),
        limit: q.limit.unwrap_or(100),
    };
    let rows = query_deliveries(
        &state,
        &filter,
        empty(q.user).as_deref(),
        empty(q.event_type).as_deref(),
    )
    .await
    .map_err(store_error)?;
    Ok(Json(json!({ "deliveries": rows })).into_response())
}

/// A delivery row as the admin API and the dashboard show it.
#[derive(Debug, Serialize)]
struct DeliveryRow {
    id: String,
    payload_id: String,
    destination: String,
    status: String,
    attempts: i64,
    next_attempt_at: String,
    last_error: Option<String>,
    dead_reason: Option<String>,
    event_type: String,
    user_id: Option<String>,
    reference_id: Option<String>,
    natural_key: String,
    version: i64,
    created_at: String,
    updated_at: String,
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn iso_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

async fn query_deliveries(
    state: &AppState,
    f: &DeliveryFilter,
    user: Option<&str>,
    event_type: Option<&str>,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id, d.payload_id, d.destination, d.status, d.attempts, d.next_attempt_at, d.last_error, \
         dl.reason, p.event_type, p.user_id, p.reference_id, p.natural_key, p.version, d.created_at, d.updated_at \
         FROM deliveries d JOIN payloads p ON p.id = d.payload_id \
         LEFT JOIN dead_letters dl ON dl.delivery_id = d.id \
         WHERE ($1 IS NULL OR d.status = $2) AND ($3 IS NULL OR d.destination = $4) \
         AND ($5 IS NULL OR d.payload_id = $6) \
         AND ($7 IS NULL OR p.user_id = $8 OR p.reference_id = $9) \
         AND ($10 IS NULL OR p.event_type = $11) \
         ORDER BY d.created_at DESC, d.id DESC LIMIT $12",
    )
    .bind(f.status.clone())
    .bind(f.status.clone())
    .bind(f.destination.clone())
    .bind(f.destination.clone())
    .bind(f.payload_id.clone())
    .bind(f.payload_id.clone())
    .bind(user.map(str::to_string))
    .bind(user.map(str::to_string))
    .bind(user.map(str::to_string))
    .bind(event_type.map(str::to_string))
    .bind(event_type.map(str::to_string))
    .bind(if f.limit <= 0 { 100 } else { f.limit.min(10_000) })
    .fetch_all(state.engine.store().pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| DeliveryRow {
            id: r.get(0),
            payload_id: r.get(1),
            destination: r.get(2),
            status: r.get(3),
            attempts: r.get(4),
            next_attempt_at: iso_ms(r.get(5)),
            last_error: r.get(6),
            dead_reason: r.get(7),
            event_type: r.get(8),
            user_id: r.get(9),
            reference_id: r.get(10),
            natural_key: r.get(11),
            version: r.get(12),
            created_at: iso_ms(r.get(13)),
            updated_at: iso_ms(r.get(14)),
        })
        .collect())
}

/// How much of a stored response body the attempt timeline returns (destinations keep up to
/// 1 KiB of it, the store up to 2 KiB).
const RESPONSE_PREVIEW: usize = 512;

/// `GET /admin/deliveries/{id}/attempts`: the attempt timeline of a delivery, oldest first,
/// each with its duration and (a preview of) the receiver's answer.
pub async fn attempts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let rows = state
        .engine
        .store()
        .attempts(Some(&id))
        .await
        .map_err(store_error)?;
    let out: Vec<_> = rows
        .into_iter()
        .map(|a| {
            let (response, truncated) = match a.response {
                Some(r) if r.len() > RESPONSE_PREVIEW => {
                    let mut end = RESPONSE_PREVIEW;
                    while !r.is_char_boundary(end) {
                        end -= 1;
                    }
                    (Some(r[..end].to_string()), true)
                }
                r => (r, false),
            };
            json!({
                "delivery_id": a.delivery_id,
                "destination": a.destination,
                "node": a.node,
                "attempt": a.attempt,
                "started_at_us": a.started_at_us,
                "finished_at_us": a.finished_at_us,
                "started_at": iso_us(a.started_at_us),
                "duration_ms": (a.finished_at_us - a.started_at_us) as f64 / 1000.0,
                "status_code": a.status_code,
                "class": a.class,
                "error": a.error,
                "response": response,
                "response_truncated": truncated,
            })
        })
        .collect();
    Ok(Json(json!({ "attempts": out })).into_response())
}

/// `GET /admin/payloads/{id}`: the stored Terra payload a delivery carries.
pub async fn payload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let body = state
        .engine
        .store()
        .payload(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Problem::not_found(format!("no payload has the id `{id}`")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /admin/users`: the connected Oura users (never their tokens).
pub async fn users(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let Some(oura) = &state.oura else {
        return Ok(Json(json!({ "oura": false, "users": [] })).into_response());
    };
    let rows = oura.store().oura_users().await.map_err(store_error)?;
    let users: Vec<_> = rows
        .iter()
        .map(|u| {
            json!({
                "user_id": u.user_id,
                "reference_id": u.reference_id,
                "provider": "OURA",
                "oura_user_id": u.oura_user_id,
                "status": u.status,
                "active": u.active,
                "paused_reason": u.paused_reason,
                "scopes": u.scopes,
                "created_at": iso_ms(u.created_at),
                "connected_at": u.connected_at.map(iso_ms),
                "last_webhook_at": u.last_webhook_at.map(iso_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "oura": true, "users": users })).into_response())
}

pub async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    match state
        .engine
        .store()
        .replay(&id)
        .await
        .map_err(store_error)?
    {
        Some(dest) => Ok(
            Json(json!({ "status": "replaying", "id": id, "destination": dest })).into_response(),
        ),
        None => Err(Problem::not_found(format!("no delivery has the id `{id}`"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    since: Option<String>,
    status: Option<String>,
}

pub async fn replay_destination(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    check_destination(&state, &name)?;
    let status = q.status.unwrap_or_else(|| "dead".into());
    check_status(&status)?;
    let since_ms = match q.since.as_deref() {
        None => 0,
        Some(s) => parse_since(s).ok_or_else(|| {
            Problem::bad_request(format!(
                "since=`{s}` is not a time: use RFC 3339 (2026-07-01T00:00:00Z), unix seconds, or a duration like 1h"
            ))
        })?,
    };
    let n = state
        .engine
        .store()
        .replay_destination(&name, &status, since_ms)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "status": "replaying", "destination": name, "replayed": n })).into_response())
}

/// RFC 3339, unix seconds, or a duration back from now (`1h`).
fn parse_since(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n * 1000);
    }
    let d = manifold_core::config::duration::parse(s).ok()?;
    Some(manifold_core::store::now_ms() - d.as_millis() as i64)
}

pub async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    check_destination(&state, &name)?;
    state
        .engine
        .store()
        .set_disabled(&name, false, None)
        .await
        .map_err(store_error)?;
    tracing::info!(destination = %name, "destination enabled by the admin API");
    Ok(Json(json!({ "destination": name, "disabled": false })).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    check_destination(&state, &name)?;
    state
        .engine
        .store()
        .set_disabled(&name, true, Some("disabled by the admin API"))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "destination": name, "disabled": true })).into_response())
}

/// How many of the most recent attempts (over all destinations) `/admin/destinations` looks at
/// for each destination's recent success rate and last error.
const RECENT_ATTEMPTS: i64 = 2000;

/// A destination's recent attempts, from the attempt log.
#[derive(Debug, Default, Serialize)]
struct Recent {
    attempts: i64,
    failures: i64,
    avg_ms: Option<f64>,
    last_attempt_at: Option<String>,
    last_failure_at: Option<String>,
    last_error: Option<String>,
    last_status_code: Option<i64>,
    last_class: Option<String>,
}

async fn recent_attempts(
    state: &AppState,
) -> Result<std::collections::HashMap<String, Recent>, sqlx::Error> {
    let pool = state.engine.store().pool();
    // Bounded by the primary key, so the cost does not grow with the log.
    let rows = sqlx::query(
        "SELECT destination, CAST(CASE WHEN class = 'delivered' THEN 0 ELSE 1 END AS BIGINT), \
         COUNT(*), CAST(SUM(finished_at_us - started_at_us) AS BIGINT), MAX(finished_at_us) FROM attempts \
         WHERE id > (SELECT COALESCE(MAX(id), 0) FROM attempts) - $1 \
         GROUP BY destination, CASE WHEN class = 'delivered' THEN 0 ELSE 1 END",
    )
    .bind(RECENT_ATTEMPTS)
    .fetch_all(pool)
    .await?;
    let mut out: std::collections::HashMap<String, Recent> = Default::default();
    let mut total_us: std::collections::HashMap<String, i64> = Default::default();
    for r in rows {
        let dest: String = r.get(0);
        let failed: i64 = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        let sum_us: i64 = r.try_get::<Option<i64>, _>(3)?.unwrap_or(0);
        let last_us: Option<i64> = r.try_get(4)?;
        let e = out.entry(dest.clone()).or_default();
        e.attempts += n;
        *total_us.entry(dest).or_default() += sum_us;
        if let Some(us) = last_us {
            let at = iso_us(us);
            if e.last_attempt_at.as_deref().is_none_or(|x| x < at.as_str()) {
                e.last_attempt_at = Some(at.clone());
            }
            if failed == 1 {
                e.failures += n;
                e.last_failure_at = Some(at);
            }
        }
    }
    for (dest, e) in out.iter_mut() {
        if e.attempts > 0 {
            e.avg_ms =
                Some(total_us.get(dest).copied().unwrap_or(0) as f64 / e.attempts as f64 / 1000.0);
        }
    }
    let last = sqlx::query(
        "SELECT destination, error, status_code, class FROM attempts WHERE id IN \
         (SELECT MAX(id) FROM attempts WHERE id > (SELECT COALESCE(MAX(id), 0) FROM attempts) - $1 \
         AND class <> 'delivered' GROUP BY destination)",
    )
    .bind(RECENT_ATTEMPTS)
    .fetch_all(pool)
    .await?;
    for r in last {
        let dest: String = r.get(0);
        let e = out.entry(dest).or_default();
        e.last_error = r.try_get(1)?;
        e.last_status_code = r.try_get(2)?;
        e.last_class = r.try_get(3)?;
    }
    Ok(out)
}

/// Pending deliveries that already failed at least once, per destination.
async fn retrying(state: &AppState) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT destination, COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts > 0 \
         GROUP BY destination",
    )
    .fetch_all(state.engine.store().pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// `healthy`, `degraded` (some recent failures, or due work waiting over a minute), `failing`
/// (most recent attempts failed, or due work waiting over five minutes) or `disabled`.
fn health(disabled: bool, q: &manifold_core::store::QueueStats, r: &Recent) -> &'static str {
    let waiting_ms = q.oldest_due_ms.unwrap_or(0);
    if disabled {
        "disabled"
    } else if (r.attempts > 0 && r.failures * 2 >= r.attempts) || waiting_ms > 300_000 {
        "failing"
    } else if r.failures > 0 || waiting_ms > 60_000 {
        "degraded"
    } else {
        "healthy"
    }
}

/// `GET /admin/destinations`: every configured destination with its queue, recent attempts and
/// a health verdict.
pub async fn destinations(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let stats = state
        .engine
        .store()
        .queue_stats()
        .await
        .map_err(store_error)?;
    let mut recent = recent_attempts(&state).await.map_err(store_error)?;
    let retrying = retrying(&state).await.map_err(store_error)?;
    let mut out = Vec::new();
    for d in state.engine.destinations() {
        let disabled = state
            .engine
            .store()
            .disabled(&d.common.name)
            .await
            .map_err(store_error)?;
        let queue = stats.get(&d.common.name).cloned().unwrap_or_default();
        let r = recent.remove(&d.common.name).unwrap_or_default();
        out.push(json!({
            "name": d.common.name,
            "type": d.common.kind,
            "disabled": disabled.is_some(),
            "disabled_reason": disabled,
            "health": health(disabled.is_some(), &queue, &r),
            "retrying": retrying.get(&d.common.name).copied().unwrap_or(0),
            "queue": queue,
            "recent": r,
        }));
    }
    Ok(Json(json!({ "destinations": out, "recent_window": RECENT_ATTEMPTS })).into_response())
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => Problem::unavailable(format!("the store is not reachable: {e}")).into_response(),
    }
}
