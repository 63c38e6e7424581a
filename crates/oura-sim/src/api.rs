//! `/v2/usercollection/*`, `/v2/sandbox/usercollection/*` and the `/_sim/*` control API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data::{Doc, Row, UserProfile, gen_battery, gen_body, gen_heartrate};
use crate::state::{FaultUpdate, Faults, SANDBOX, Shared};
use crate::types::{DocType, SeriesType};
use crate::{SyncRequest, sync_impl};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/usercollection/{kind}", get(list))
        .route("/v2/usercollection/{kind}/{id}", get(single))
        .route("/v2/sandbox/usercollection/{kind}", get(sandbox_list))
        .route(
            "/v2/sandbox/usercollection/{kind}/{id}",
            get(sandbox_single),
        )
}

pub fn control_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/sync", post(ctl_sync))
        .route("/_sim/users", post(ctl_users).get(ctl_list_users))
        .route("/_sim/state", get(ctl_state))
        .route("/_sim/faults", post(ctl_faults).get(ctl_get_faults))
        .route("/_sim/tokens", post(ctl_tokens))
        .route("/_sim/deliveries", get(ctl_deliveries))
        .route("/_sim/requests", get(ctl_requests))
}

/// Middleware: remember `METHOD /path?query` of every `/v2/*` request.
pub async fn log_request(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path().starts_with("/v2/") {
        let line = format!(
            "{} {}",
            req.method(),
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_else(|| req.uri().path())
        );
        let mut log = s.request_log.lock().expect("lock");
        log.push_back(line);
        while log.len() > 10_000 {
            log.pop_front();
        }
    }
    next.run(req).await
}

async fn ctl_requests(State(s): State<Arc<Shared>>) -> Response {
    let log = s.request_log.lock().expect("lock");
    Json(json!({ "requests": log.iter().collect::<Vec<_>>() })).into_response()
}

pub fn detail(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "detail": msg }))).into_response()
}

fn too_many(retry_after: u64, limit: u32, window: u64, tier: &str) -> Response {
    let reset = Utc::now().timestamp() as u64 + retry_after;
    let mut r = detail(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("retry-after", retry_after.to_string());
    put("x-ratelimit-limit", limit.to_string());
    put("x-ratelimit-window", window.to_string());
    put("x-ratelimit-reset", reset.to_string());
    put("x-ratelimit-tier", tier.to_string());
    r
}

/// Latency, forced 429s and 5xx from the fault knobs. Applies to all `/v2/*` routes.
pub async fn inject_faults(s: &Shared) -> Option<Response> {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let (latency, out) = {
        let mut f = s.faults.lock().expect("lock");
        let out = if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            Some(429)
        } else if f.rate_limit_share > 0.0 && rand::random::<f64>() < f.rate_limit_share {
            Some(429)
        } else if f.server_error_next > 0 {
            f.server_error_next -= 1;
            Some(500)
        } else if f.server_error_share > 0.0 && rand::random::<f64>() < f.server_error_share {
            Some([500, 502, 503][rand::random_range(0..3usize)])
        } else {
            None
        };
        (f.latency_ms, out.map(|c| (c, f.retry_after_secs)))
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let (code, retry_after) = out?;
    Some(match code {
        429 => too_many(
            retry_after,
            s.config.rate_limit,
            s.config.rate_limit_window.as_secs(),
            "token",
        ),
        c => detail(
            StatusCode::from_u16(c).expect("status"),
            match c {
                500 => "Internal Server Error",
                502 => "Bad Gateway",
                _ => "Service Unavailable",
            },
        ),
    })
}

pub struct AuthCtx {
    pub user: usize,
    pub scopes: Vec<String>,
}

fn unauthorized(msg: &str) -> Response {
    let mut r = detail(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| tok.trim())
        .filter(|t| !t.is_empty())
}

/// Bearer auth + per-user rate limit.
fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<AuthCtx, Response> {
    let tok = bearer(headers).ok_or_else(|| unauthorized("Not authenticated"))?;
    let mut auth = s.auth.lock().expect("lock");
    let a = auth
        .access
        .get(tok)
        .ok_or_else(|| unauthorized("Invalid access token"))?;
    if a.expires_at <= Utc::now() {
        return Err(unauthorized("Access token expired"));
    }
    let g = &auth.grants[a.grant];
    if g.revoked {
        return Err(unauthorized("Access token revoked"));
    }
    let ctx = AuthCtx {
        user: g.user,
        scopes: g.scopes.clone(),
    };
    let window = s.config.rate_limit_window;
    let limit = s.config.rate_limit;
    let now = Instant::now();
    let e = auth.rate.entry(ctx.user).or_insert((now, 0));
    if now.duration_since(e.0) >= window {
        *e = (now, 0);
    }
    e.1 += 1;
    if e.1 > limit {
        let left = window.saturating_sub(now.duration_since(e.0)).as_secs() + 1;
        return Err(too_many(left, limit, window.as_secs(), "token"));
    }
    Ok(ctx)
}

fn forbidden_scope(scope: &str) -> Response {
    detail(
        StatusCode::FORBIDDEN,
        &format!("The access token does not grant the required scope: {scope}"),
    )
}

async fn list(
    State(s): State<Arc<Shared>>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let ctx = match authenticate(&s, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if kind == "personal_info" {
        return personal_info(&s, &ctx);
    }
    serve_list(&s, ctx.user, Some(&ctx.scopes), &kind, &q)
}

async fn single(
    State(s): State<Arc<Shared>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let ctx = match authenticate(&s, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    serve_single(&s, ctx.user, Some(&ctx.scopes), &kind, &id)
}

async fn sandbox_list(
    State(s): State<Arc<Shared>>,
    Path(kind): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    if bearer(&headers).is_none() {
        return unauthorized("Not authenticated");
    }
    q.remove("fields");
    q.remove("latest");
    serve_list(&s, SANDBOX, None, &kind, &q)
}

async fn sandbox_single(
    State(s): State<Arc<Shared>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    if bearer(&headers).is_none() {
        return unauthorized("Not authenticated");
    }
    serve_single(&s, SANDBOX, None, &kind, &id)
}

fn personal_info(s: &Shared, ctx: &AuthCtx) -> Response {
    let d = s.data.read().expect("lock");
    let Some(u) = d.user(ctx.user) else {
        return unauthorized("Unknown user");
    };
    let p = &u.profile;
    let has = |sc: &str| ctx.scopes.iter().any(|x| x == sc);
    let personal = has("extapi:personal");
    let opt = |ok: bool, v: Value| if ok { v } else { Value::Null };
    Json(json!({
        "id": p.id,
        "age": opt(personal, json!(p.age)),
        "weight": opt(personal, json!(p.weight)),
        "height": opt(personal, json!(p.height)),
        "biological_sex": opt(personal, json!(p.biological_sex)),
        "email": opt(has("extapi:email"), json!(p.email)),
    }))
    .into_response()
}

fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

fn bad_param(name: &str) -> Response {
    detail(
        StatusCode::BAD_REQUEST,
        &format!("Invalid value for query parameter {name}"),
    )
}

enum Bound {
    Missing,
    /// Numeric garbage such as `start_date=1`: recorded as `200 {"data":[]}`.
    Garbage,
    At(NaiveDateTime),
}

/// Parse a date / date-time bound into the user's local wall-clock time.
fn parse_bound(v: Option<&String>, tz: FixedOffset) -> Result<Bound, ()> {
    let Some(v) = v else {
        return Ok(Bound::Missing);
    };
    let v = v.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(Bound::At(d.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Ok(Bound::At(dt.with_timezone(&tz).naive_local()));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(Bound::At(n));
    }
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Bound::Garbage);
    }
    Err(())
}

/// Parse an instant for time-series routes (naive = UTC). Date-only values are rejected.
fn parse_instant(v: Option<&String>) -> Result<Option<DateTime<Utc>>, ()> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(dt.with_timezone(&Utc)));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(Some(n.and_utc()));
    }
    Err(())
}

fn encode_cursor(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_cursor(s: &str) -> Option<Value> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&b).ok()
}

fn page(data: Vec<Value>, next: Option<String>) -> Response {
    Json(json!({"data": data, "next_token": next})).into_response()
}

fn apply_fields(t: DocType, body: Value, fields: Option<&Vec<String>>) -> Value {
    let (Some(fields), Value::Object(map)) = (fields, &body) else {
        return body;
    };
    let req = t.required_fields();
    Value::Object(
        map.iter()
            .filter(|(k, _)| req.contains(&k.as_str()) || fields.iter().any(|f| f == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn serve_list(
    s: &Shared,
    user: usize,
    scopes: Option<&[String]>,
    kind: &str,
    q: &HashMap<String, String>,
) -> Response {
    if let Some(st) = SeriesType::from_path(kind) {
        if scopes.is_some_and(|sc| !sc.iter().any(|x| x == st.scope())) {
            return forbidden_scope(st.scope());
        }
        return serve_series(s, user, st, q);
    }
    let Some(t) = DocType::from_path(kind) else {
        return not_found();
    };
    if scopes.is_some_and(|sc| !sc.iter().any(|x| x == t.scope())) {
        return forbidden_scope(t.scope());
    }
    let (profile, metas, seed) = {
        let d = s.data.read().expect("lock");
        let Some(u) = d.user(user) else {
            return unauthorized("Unknown user");
        };
        (
            u.profile.clone(),
            u.docs.get(&t).cloned().unwrap_or_default(),
            d.seed,
        )
    };
    let tz = profile.tz();
    let (start, end) = if t.date_filtered() {
        let Ok(start) = parse_bound(q.get("start_date"), tz) else {
            return bad_param("start_date");
        };
        let Ok(end) = parse_bound(q.get("end_date"), tz) else {
            return bad_param("end_date");
        };
        if matches!(start, Bound::Garbage) || matches!(end, Bound::Garbage) {
            return page(vec![], None);
        }
        let f = |b: Bound| match b {
            Bound::At(x) => Some(x),
            _ => None,
        };
        (f(start), f(end))
    } else {
        (None, None)
    };
    let after: Option<(NaiveDate, u32)> = match q.get("next_token") {
        None => None,
        Some(tok) => {
            let Some(c) = decode_cursor(tok) else {
                return bad_param("next_token");
            };
            let day = c
                .get("d")
                .and_then(Value::as_str)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            let idx = c.get("i").and_then(Value::as_u64);
            match (day, idx) {
                (Some(d), Some(i)) => Some((d, i as u32)),
                _ => return bad_param("next_token"),
            }
        }
    };
    let fields: Option<Vec<String>> = q
        .get("fields")
        .filter(|_| t.supports_fields())
        .map(|f| f.split(',').map(|x| x.trim().to_string()).collect());
    let mut selected: Vec<&Doc> = metas
        .iter()
        .filter(|d| {
            let key = d.day.and_hms_opt(0, 0, 0).expect("midnight");
            start.is_none_or(|s| key >= s) && end.is_none_or(|e| key < e)
        })
        .filter(|d| after.is_none_or(|a| (d.day, d.index) > a))
        .collect();
    let size = s.config.page_size.max(1);
    let next = if selected.len() > size {
        selected.truncate(size);
        let last = selected[size - 1];
        Some(encode_cursor(
            &json!({"d": last.day.to_string(), "i": last.index}),
        ))
    } else {
        None
    };
    let data = selected
        .into_iter()
        .map(|d| apply_fields(t, gen_body(seed, &profile, d, t), fields.as_ref()))
        .collect();
    page(data, next)
}

fn series_rows(
    seed: u64,
    p: &UserProfile,
    st: SeriesType,
    first: NaiveDate,
    last: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Row> {
    let tz = p.tz();
    let d0 = from.with_timezone(&tz).date_naive().max(first);
    let d1 = to.with_timezone(&tz).date_naive().min(last);
    let (f, t) = (from.timestamp_millis(), to.timestamp_millis());
    let mut out = Vec::new();
    let mut day = d0;
    while day <= d1 {
        let rows = match st {
            SeriesType::HeartRate => gen_heartrate(seed, p, day),
            SeriesType::RingBatteryLevel => gen_battery(seed, p, day),
        };
        out.extend(rows.into_iter().filter(|r| r.ts_ms >= f && r.ts_ms < t));
        day += Duration::days(1);
    }
    out
}

fn serve_series(s: &Shared, user: usize, st: SeriesType, q: &HashMap<String, String>) -> Response {
    let (profile, seed, first, last) = {
        let d = s.data.read().expect("lock");
        let Some(u) = d.user(user) else {
            return unauthorized("Unknown user");
        };
        (u.profile.clone(), d.seed, d.first_day, d.end_day)
    };
    // Date-only values are not date-times: the live API answers with an empty list.
    let date_only = |k: &str| {
        q.get(k)
            .is_some_and(|v| NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").is_ok())
    };
    if date_only("start_datetime") || date_only("end_datetime") {
        return page(vec![], None);
    }
    let Ok(start) = parse_instant(q.get("start_datetime")) else {
        return bad_param("start_datetime");
    };
    let Ok(end) = parse_instant(q.get("end_datetime")) else {
        return bad_param("end_datetime");
    };
    let end = end.unwrap_or_else(Utc::now);
    let start = start.unwrap_or(end - Duration::days(1));
    let mut from = start;
    if let Some(tok) = q.get("next_token") {
        let Some(ms) = decode_cursor(tok).and_then(|c| c.get("t").and_then(Value::as_i64)) else {
            return bad_param("next_token");
        };
        match DateTime::from_timestamp_millis(ms + 1) {
            Some(t) => from = from.max(t),
            None => return bad_param("next_token"),
        }
    }
    if from >= end {
        return page(vec![], None);
    }
    let latest = q
        .get("latest")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let size = s.config.timeseries_page_size.max(1);
    if latest {
        let rows = series_rows(seed, &profile, st, first, last, start, end);
        return page(
            rows.into_iter()
                .last()
                .map(|r| r.body)
                .into_iter()
                .collect(),
            None,
        );
    }
    // Generate day by day (within the data window) until more than a page is collected.
    let tz = profile.tz();
    let window_start = profile.local(first, 0).with_timezone(&Utc);
    let window_end = profile
        .local(last + Duration::days(1), 0)
        .with_timezone(&Utc);
    let end = end.min(window_end);
    let mut day_from = from.max(window_start);
    let mut rows = Vec::new();
    while day_from < end && rows.len() <= size {
        let next_day = day_from.with_timezone(&tz).date_naive() + Duration::days(1);
        let day_end = profile.local(next_day, 0).with_timezone(&Utc).min(end);
        rows.extend(series_rows(
            seed, &profile, st, first, last, day_from, day_end,
        ));
        day_from = day_end;
    }
    let next = if rows.len() > size {
        rows.truncate(size);
        Some(encode_cursor(&json!({"t": rows[size - 1].ts_ms})))
    } else {
        None
    };
    page(rows.into_iter().map(|r| r.body).collect(), next)
}

fn serve_single(
    s: &Shared,
    user: usize,
    scopes: Option<&[String]>,
    kind: &str,
    id: &str,
) -> Response {
    let Some(t) = DocType::from_path(kind) else {
        return not_found();
    };
    if scopes.is_some_and(|sc| !sc.iter().any(|x| x == t.scope())) {
        return forbidden_scope(t.scope());
    }
    let (profile, doc, seed) = {
        let d = s.data.read().expect("lock");
        let Some(u) = d.user(user) else {
            return unauthorized("Unknown user");
        };
        let doc = u
            .docs
            .get(&t)
            .and_then(|v| v.iter().find(|d| d.id == id))
            .cloned();
        (u.profile.clone(), doc, d.seed)
    };
    match doc {
        Some(doc) => Json(gen_body(seed, &profile, &doc, t)).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Document not found."),
    }
}

// ---------------------------------------------------------------- control API

fn sim_err(status: u16, msg: &str) -> Response {
    detail(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        msg,
    )
}

async fn ctl_sync(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let req: SyncRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return sim_err(422, &e.to_string()),
    };
    let notify = q.get("notify").is_none_or(|v| v != "false" && v != "0");
    match sync_impl(&s, req, notify) {
        Ok(o) => Json(o).into_response(),
        Err(e) => sim_err(e.status, &e.detail),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddUsers {
    count: Option<usize>,
}

async fn ctl_users(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: AddUsers = if body.is_empty() {
        AddUsers::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return sim_err(422, &e.to_string()),
        }
    };
    let users = s
        .data
        .write()
        .expect("lock")
        .add_users(req.count.unwrap_or(1));
    (StatusCode::CREATED, Json(json!({ "users": users }))).into_response()
}

async fn ctl_list_users(State(s): State<Arc<Shared>>) -> Response {
    let d = s.data.read().expect("lock");
    let users: Vec<&UserProfile> = d.users.iter().map(|u| &u.profile).collect();
    Json(json!({ "users": users })).into_response()
}

async fn ctl_state(State(s): State<Arc<Shared>>) -> Response {
    Json(state_json(&s)).into_response()
}

pub fn state_json(s: &Shared) -> Value {
    let d = s.data.read().expect("lock");
    let auth = s.auth.lock().expect("lock");
    let users: Vec<Value> = d
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let grants: Vec<&crate::state::Grant> =
                auth.grants.iter().filter(|g| g.user == i).collect();
            let live: Vec<&Vec<String>> = grants
                .iter()
                .filter(|g| !g.revoked)
                .map(|g| &g.scopes)
                .collect();
            let counts: serde_json::Map<String, Value> = u
                .docs
                .iter()
                .map(|(t, v)| (t.path().to_string(), json!(v.len())))
                .collect();
            json!({
                "profile": u.profile,
                "authorized": !live.is_empty(),
                "grants": grants.len(),
                "live_grant_scopes": live,
                "document_counts": counts,
            })
        })
        .collect();
    let subs = s.subs.lock().expect("lock").clone();
    let deliveries: Vec<Value> = s
        .deliveries
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .take(200)
        .map(|r| serde_json::to_value(r).expect("json"))
        .collect();
    json!({
        "seed": d.seed,
        "first_day": d.first_day.to_string(),
        "end_day": d.end_day.to_string(),
        "client_id": s.config.client_id,
        "users": users,
        "subscriptions": subs,
        "faults": *s.faults.lock().expect("lock"),
        "tokens": {"access": auth.access.len(), "refresh": auth.refresh.len(), "grants": auth.grants.len()},
        "requests": s.requests.load(Ordering::Relaxed),
        "recent_deliveries": deliveries,
    })
}

async fn ctl_get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.faults.lock().expect("lock").clone()).into_response()
}

pub fn apply_fault_update(s: &Shared, u: FaultUpdate) -> Result<Faults, (u16, String)> {
    let revoke_user = match &u.revoke_user {
        Some(r) => Some(
            s.data
                .read()
                .expect("lock")
                .resolve_user(r)
                .ok_or((404, format!("unknown user {r}")))?,
        ),
        None => None,
    };
    if u.expire_access_tokens || revoke_user.is_some() {
        let mut auth = s.auth.lock().expect("lock");
        if u.expire_access_tokens {
            let now = Utc::now();
            for a in auth.access.values_mut() {
                a.expires_at = a.expires_at.min(now);
            }
        }
        if let Some(user) = revoke_user {
            auth.revoke_user(user);
        }
    }
    if u.expire_subscriptions {
        let now = Utc::now();
        for sub in s.subs.lock().expect("lock").iter_mut() {
            sub.expiration_time = now;
        }
    }
    let mut f = s.faults.lock().expect("lock");
    if u.clear {
        *f = Faults::default();
    }
    if let Some(v) = u.rate_limit_next {
        f.rate_limit_next = v;
    }
    if let Some(v) = u.rate_limit_share {
        f.rate_limit_share = v.clamp(0.0, 1.0);
    }
    if let Some(v) = u.retry_after_secs {
        f.retry_after_secs = v;
    }
    if let Some(v) = u.server_error_next {
        f.server_error_next = v;
    }
    if let Some(v) = u.server_error_share {
        f.server_error_share = v.clamp(0.0, 1.0);
    }
    if let Some(v) = u.latency_ms {
        f.latency_ms = v;
    }
    if let Some(v) = u.deny_authorize {
        f.deny_authorize = v;
    }
    Ok(f.clone())
}

async fn ctl_faults(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let u: FaultUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return sim_err(422, &e.to_string()),
    };
    match apply_fault_update(&s, u) {
        Ok(f) => Json(f).into_response(),
        Err((c, m)) => sim_err(c, &m),
    }
}

#[derive(Deserialize)]
struct TokenReq {
    user: Value,
    #[serde(default)]
    scope: Option<String>,
}

async fn ctl_tokens(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: TokenReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return sim_err(422, &e.to_string()),
    };
    let r = match &req.user {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        _ => return sim_err(422, "user must be an index or an Oura user id"),
    };
    let Some(user) = s.data.read().expect("lock").resolve_user(&r) else {
        return sim_err(404, "unknown user");
    };
    let scopes = match crate::oauth::parse_scopes(req.scope.as_deref().unwrap_or("")) {
        Ok(x) => x,
        Err(e) => return sim_err(400, &e),
    };
    let mut auth = s.auth.lock().expect("lock");
    let g = auth.new_grant(user, &s.config.client_id, scopes);
    Json(auth.issue(g, s.config.access_token_ttl.as_secs() as i64)).into_response()
}

async fn ctl_deliveries(State(s): State<Arc<Shared>>) -> Response {
    let d = s.deliveries.lock().expect("lock");
    Json(json!({ "deliveries": d.iter().collect::<Vec<_>>() })).into_response()
}
