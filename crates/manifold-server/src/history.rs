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

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use manifold_oura::history::{self, HistoryError, Kind, MAX_SYNC_DAYS};

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
                        "Oura's rate limit was reached for this user: retry after {secs}s, or use to_webhook=true (it waits and retries by itself)"
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
