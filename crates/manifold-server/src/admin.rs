//! Admin API: list deliveries and attempts, replay, enable/disable destinations, readiness.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use manifold_core::store::DeliveryFilter;
use serde::Deserialize;
use serde_json::json;

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
    limit: Option<i64>,
}

pub async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    if let Some(s) = &q.status {
        check_status(s)?;
    }
    let filter = DeliveryFilter {
        status: q.status,
        destination: q.destination,
        payload_id: q.payload_id,
        limit: q.limit.unwrap_or(100),
    };
    let rows = state
        .engine
        .store()
        .list_deliveries(&filter)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "deliveries": rows })).into_response())
}

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
    Ok(Json(json!({ "attempts": rows })).into_response())
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
    let mut out = Vec::new();
    for d in state.engine.destinations() {
        let disabled = state
            .engine
            .store()
            .disabled(&d.common.name)
            .await
            .map_err(store_error)?;
        out.push(json!({
            "name": d.common.name,
            "type": d.common.kind,
            "disabled": disabled.is_some(),
            "disabled_reason": disabled,
            "queue": stats.get(&d.common.name).cloned().unwrap_or_default(),
        }));
    }
    Ok(Json(json!({ "destinations": out })).into_response())
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => Problem::unavailable(format!("the store is not reachable: {e}")).into_response(),
    }
}
