//! Terra's data endpoints for Oura users: `GET /v2/{activity,body,daily,sleep,menstruation}`
//! and `GET /v2/athlete` with `user_id` (or `reference_id`), `start_date`, `end_date`
//! (`YYYY-MM-DD`, Unix seconds or RFC 3339; both days included; `end_date` defaults to today),
//! `to_webhook` (default true) and `with_samples` (default false). See
//! [`manifold_oura::history`] for what is fetched, stored and stripped.
//!
//! * `to_webhook=false` → `200 {"user", "data": [...], "type"}` (athlete: `"athlete": {...}`);
//!   ranges over 28 days → 400.
//! * `to_webhook=true` → `200 {"status":"success","type","reference","message","user"}` at once;
//!   the records follow through every matching destination in events of at most 10 records,
//!   all with `terra-reference: <reference>`. Over 28 days the answer is the
//!   `large_request_processing` event (also delivered), then `large_request_sending` with
//!   `expected_payloads`, then the chunks.
//! * Errors (problem+json): 401 API key, 404 unknown user, 400 dates / range over 5 years /
//!   synchronous range over 28 days, 403 missing Oura scope, 429 Oura rate limit (with
//!   `Retry-After`), 502 other Oura failures, 503 store.
//! * `GET /v2/requests/{reference}` → what became of an asynchronous request (or a backfill
//!   after connect): `status` (`processing`, `rate_limited`, `completed`, `failed`), `error`
//!   (`{status, title, detail}`, the problem a synchronous request would have got), counts
//!   (`records`, `expected_payloads`, `payloads_sent`, `rate_limit_hits`), `retrying_at`, and
//!   the delivery rows of its payloads per destination and status. `GET /v2/requests` lists
//!   them, newest first (`user_id`, `status`, `limit`).

use std::collections::HashMap;

use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use manifold_core::store::history_requests::HistoryRequestRow;
use manifold_oura::history::{self, HistoryError, Kind, MAX_SYNC_DAYS};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::require_key;
use crate::oura_intake::connector;
use crate::problem::Problem;

fn flag(q: &HashMap<String, String>, key: &str, default: bool) -> Result<bool, Problem> {
    match q.get(key).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) if s.is_empty() => Ok(default),
        Some(s) if s == "true" || s == "1" => Ok(true),
        Some(s) if s == "false" || s == "0" => Ok(false),
        Some(s) => Err(Problem::bad_request(format!(
            "`{key}` = `{}` is not a boolean: use true or false",
            s.chars().take(20).collect::<String>()
        ))),
    }
}

fn problem(e: HistoryError) -> Problem {
    match e {
        HistoryError::NotConnected(d) => Problem::not_found(format!("user not connected: {d}")),
        e @ HistoryError::Forbidden { .. } => {
            Problem::new(StatusCode::FORBIDDEN, "Forbidden", e.to_string())
        }
        HistoryError::RateLimited { retry_after } => {
            let secs = retry_after.map(|d| d.as_secs().max(1)).unwrap_or(60);
            Problem {
                retry_after: Some(secs),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests",
                    format!(
                        "Oura's rate limit was reached (or the shared Oura budget has no token for history requests within {}s): retry after {secs}s, or use to_webhook=true (it waits and retries by itself)",
                        history::SYNC_MAX_WAIT.as_secs()
                    ),
                )
            }
        }
        e @ HistoryError::Oura(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "Bad gateway", e.to_string())
        }
        HistoryError::Store(e) => {
            tracing::error!(error = %e, "history: store unavailable");
            Problem::unavailable("the store is unavailable; retry the request")
        }
        e @ HistoryError::Mapping(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            e.to_string(),
        ),
    }
}

async fn handle(
    kind: Kind,
    state: AppState,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_key(&state, &headers)?;
    let conn = connector(&state)?.clone();
    let to_webhook = flag(&q, "to_webhook", true)?;
    let with_samples = flag(&q, "with_samples", false)?;
    let user_id = q.get("user_id").filter(|s| !s.is_empty());
    let reference_id = q.get("reference_id").filter(|s| !s.is_empty());
    if user_id.is_none() && reference_id.is_none() {
        return Err(Problem::bad_request(
            "give `user_id` (from authenticateUser / the auth event) or `reference_id`",
        ));
    }
    let today = Utc::now().date_naive();
    let range = if kind == Kind::Athlete && !q.contains_key("start_date") {
        history::DayRange {
            start: today,
            end: today,
        }
    } else {
        history::parse_range(
            q.get("start_date").map(String::as_str),
            q.get("end_date").map(String::as_str),
            today,
        )
        .map_err(Problem::bad_request)?
    };
    let user = history::find_user(
        &conn,
        user_id.map(String::as_str),
        reference_id.map(String::as_str),
    )
    .await
    .map_err(problem)?
    .ok_or_else(|| Problem::not_found("user not found"))?;
    if user.status != "connected" {
        return Err(Problem::not_found(format!(
            "user not connected (status `{}`): connect it again with authenticateUser",
            user.status
        )));
    }
    if !to_webhook {
        if range.days() > MAX_SYNC_DAYS {
            return Err(Problem::bad_request(format!(
                "the range is {} days; synchronous requests (to_webhook=false) cover at most {MAX_SYNC_DAYS} days: use to_webhook=true to have it sent to your destinations in chunks, or split the range",
                range.days()
            )));
        }
        let body = history::history_sync(&conn, &user, kind, range, with_samples)
            .await
            .map_err(problem)?;
        return Ok(axum::Json(body).into_response());
    }
    let (reference, body) = history::history_async(conn, user, kind, range, with_samples)
        .await
        .map_err(problem)?;
    let mut res = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&reference) {
        res.headers_mut().insert("terra-reference", v);
    }
    Ok(res)
}

macro_rules! route {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            Query(q): Query<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            handle($kind, state, q, headers)
                .await
                .unwrap_or_else(|p| p.into_response())
        }
    };
}

route!(activity, Kind::Activity);
route!(athlete, Kind::Athlete);
route!(body, Kind::Body);
route!(daily, Kind::Daily);
route!(menstruation, Kind::Menstruation);
route!(sleep, Kind::Sleep);

// ------------------------------------------------------------ request status

fn iso(ms: i64) -> Value {
    chrono::DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn status_title(code: i64) -> &'static str {
    u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Error")
}

fn store_problem(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "requests: store unavailable");
    Problem::unavailable("the store is unavailable; retry the request")
}

async fn request_json(
    state: &AppState,
    r: &HistoryRequestRow,
    deliveries: bool,
) -> Result<Value, Problem> {
    let store = state.engine.store();
    let user = match store.oura_user(&r.user_id).await.map_err(store_problem)? {
        Some(u) => {
            serde_json::to_value(manifold_oura::connector::terra_user(&u)).unwrap_or(Value::Null)
        }
        None => json!({ "user_id": r.user_id }),
    };
    let error = match (&r.error_status, &r.error) {
        (Some(code), Some(detail)) => {
            json!({"status": code, "title": status_title(*code), "detail": detail})
        }
        _ => Value::Null,
    };
    let mut v = json!({
        "reference": r.reference,
        "status": r.status,
        "origin": r.origin,
        "type": r.data_type,
        "user": user,
        "start_date": r.start_date,
        "end_date": r.end_date,
        "records": r.records,
        "expected_payloads": r.expected_payloads,
        "payloads_sent": r.payloads_sent,
        "rate_limit_hits": r.rate_limit_hits,
        "retrying_at": r.retrying_at.map(iso).unwrap_or(Value::Null),
        "error": error,
        "node": r.node,
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "finished_at": r.finished_at.map(iso).unwrap_or(Value::Null),
    });
    if deliveries {
        let mut by_dest = serde_json::Map::new();
        for (dest, status, n) in store
            .deliveries_by_reference(&r.reference)
            .await
            .map_err(store_problem)?
        {
            let e = by_dest
                .entry(dest)
                .or_insert_with(|| json!({"pending": 0, "delivered": 0, "dead": 0}));
            e[status] = json!(n);
        }
        v["deliveries"] = Value::Object(by_dest);
    }
    Ok(v)
}

/// `GET /v2/requests/{reference}`.
pub async fn request_status(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    async {
        require_key(&state, &headers)?;
        let row = state
            .engine
            .store()
            .history_request(&reference)
            .await
            .map_err(store_problem)?
            .ok_or_else(|| {
                Problem::not_found(format!(
                    "no request has the reference `{}`: use the `reference` of a to_webhook=true answer (also its `terra-reference` header)",
                    reference.chars().take(60).collect::<String>()
                ))
            })?;
        Ok::<_, Problem>(axum::Json(request_json(&state, &row, true).await?).into_response())
    }
    .await
    .unwrap_or_else(|p| p.into_response())
}

const REQUEST_STATUSES: &[&str] = &["processing", "rate_limited", "completed", "failed"];

/// `GET /v2/requests?user_id=&status=&limit=`.
pub async fn list_requests(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    async {
        require_key(&state, &headers)?;
        let status = q.get("status").map(|s| s.trim()).filter(|s| !s.is_empty());
        if let Some(s) = status
            && !REQUEST_STATUSES.contains(&s)
        {
            return Err(Problem::bad_request(format!(
                "status `{s}` is unknown: use one of {}",
                REQUEST_STATUSES.join(", ")
            )));
        }
        let limit = match q.get("limit") {
            None => 100,
            Some(l) => l
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| Problem::bad_request("`limit` must be a number from 1 to 1000"))?,
        };
        let user = q.get("user_id").map(|s| s.trim()).filter(|s| !s.is_empty());
        let rows = state
            .engine
            .store()
            .history_requests(user, status, limit)
            .await
            .map_err(store_problem)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(request_json(&state, r, false).await?);
        }
        Ok::<_, Problem>(axum::Json(json!({ "requests": out })).into_response())
    }
    .await
    .unwrap_or_else(|p| p.into_response())
}
