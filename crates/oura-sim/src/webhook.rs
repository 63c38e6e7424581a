//! `/v2/webhook/subscription*` and signed notification delivery.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;

use crate::api::{detail, inject_faults};
use crate::state::{DeliveryRecord, Event, Shared, Subscription, random_token};
use crate::types::DocType;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/webhook/subscription", get(list_subs).post(create_sub))
        .route(
            "/v2/webhook/subscription/{id}",
            get(get_sub).put(update_sub).delete(delete_sub),
        )
        .route("/v2/webhook/subscription/renew/{id}", put(renew_sub))
}

/// `x-client-id` / `x-client-secret` check; returns the client id.
fn client_auth(s: &Shared, h: &HeaderMap) -> Result<String, Response> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
    match (get("x-client-id"), get("x-client-secret")) {
        (Some(id), Some(secret))
            if id == s.config.client_id && secret == s.config.client_secret =>
        {
            Ok(id.to_string())
        }
        (None, _) | (_, None) => Err(detail(
            StatusCode::UNAUTHORIZED,
            "Missing x-client-id or x-client-secret header",
        )),
        _ => Err(detail(
            StatusCode::UNAUTHORIZED,
            "Invalid client credentials",
        )),
    }
}

fn validation(items: Vec<Value>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": items })),
    )
        .into_response()
}

fn v_missing(field: &str) -> Value {
    json!({"type": "missing", "loc": ["body", field], "msg": "Field required", "input": null})
}

fn v_enum(field: &str) -> Value {
    json!({"type": "enum", "loc": ["body", field], "msg": format!("Invalid {field} value")})
}

fn valid_event_type(s: &str) -> bool {
    matches!(s, "create" | "update" | "delete")
}

fn valid_data_type(s: &str) -> bool {
    s == "meal" || DocType::ALL.iter().any(|t| t.webhook_name() == s)
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(validation(vec![
            json!({"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}),
        ])),
    }
}

fn str_field(m: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

/// The GET verification handshake against the callback URL.
async fn verify_callback(s: &Shared, callback_url: &str, token: &str) -> Result<(), String> {
    let challenge = random_token(18);
    let mut url = Url::parse(callback_url).map_err(|e| format!("invalid callback_url: {e}"))?;
    url.query_pairs_mut()
        .append_pair("verification_token", token)
        .append_pair("challenge", &challenge);
    let resp = s
        .http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("callback unreachable: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("callback answered {}", resp.status().as_u16()));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|_| "callback did not answer JSON".to_string())?;
    if v.get("challenge").and_then(Value::as_str) != Some(challenge.as_str()) {
        return Err("callback did not echo the challenge".into());
    }
    Ok(())
}

fn expiration(s: &Shared) -> chrono::DateTime<Utc> {
    Utc::now() + Duration::seconds(s.config.subscription_ttl.as_secs() as i64)
}

async fn list_subs(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let subs: Vec<Subscription> = s
        .subs
        .lock()
        .expect("lock")
        .iter()
        .filter(|x| x.client_id == client)
        .cloned()
        .collect();
    Json(subs).into_response()
}

async fn create_sub(State(s): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut errors = Vec::new();
    let mut get = |k: &str| {
        let v = str_field(&m, k);
        if v.is_none() {
            errors.push(v_missing(k));
        }
        v.unwrap_or_default()
    };
    let (callback_url, token, event_type, data_type) = (
        get("callback_url"),
        get("verification_token"),
        get("event_type"),
        get("data_type"),
    );
    if !event_type.is_empty() && !valid_event_type(&event_type) {
        errors.push(v_enum("event_type"));
    }
    if !data_type.is_empty() && !valid_data_type(&data_type) {
        errors.push(v_enum("data_type"));
    }
    if !callback_url.is_empty() && Url::parse(&callback_url).is_err() {
        errors.push(json!({"type": "url_parsing", "loc": ["body", "callback_url"], "msg": "Input should be a valid URL"}));
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let dup =
        s.subs.lock().expect("lock").iter().any(|x| {
            x.client_id == client && x.event_type == event_type && x.data_type == data_type
        });
    if dup {
        return detail(
            StatusCode::CONFLICT,
            "A subscription for this event_type and data_type already exists.",
        );
    }
    if let Err(e) = verify_callback(&s, &callback_url, &token).await {
        return detail(
            StatusCode::BAD_REQUEST,
            &format!("Verification of the callback URL failed: {e}"),
        );
    }
    let sub = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        callback_url,
        event_type,
        data_type,
        expiration_time: expiration(&s),
        client_id: client,
        verification_token: token,
    };
    s.subs.lock().expect("lock").push(sub.clone());
    (StatusCode::CREATED, Json(sub)).into_response()
}

async fn get_sub(State(s): State<Arc<Shared>>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let subs = s.subs.lock().expect("lock");
    match subs.iter().find(|x| x.id == id && x.client_id == client) {
        Some(x) => Json(x.clone()).into_response(),
        None => detail(StatusCode::FORBIDDEN, "Forbidden"),
    }
}

fn sub_not_found(id: &str) -> Response {
    detail(
        StatusCode::NOT_FOUND,
        &format!("Subscription with id {id} not found."),
    )
}

async fn update_sub(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(token) = str_field(&m, "verification_token") else {
        return validation(vec![v_missing("verification_token")]);
    };
    let (cb, et, dt) = (
        str_field(&m, "callback_url"),
        str_field(&m, "event_type"),
        str_field(&m, "data_type"),
    );
    let mut errors = Vec::new();
    if et.as_deref().is_some_and(|e| !valid_event_type(e)) {
        errors.push(v_enum("event_type"));
    }
    if dt.as_deref().is_some_and(|d| !valid_data_type(d)) {
        errors.push(v_enum("data_type"));
    }
    if !errors.is_empty() {
        return validation(errors);
    }
    let current = {
        let subs = s.subs.lock().expect("lock");
        subs.iter()
            .find(|x| x.id == id && x.client_id == client)
            .cloned()
    };
    let Some(mut sub) = current else {
        return sub_not_found(&id);
    };
    let url = cb.unwrap_or_else(|| sub.callback_url.clone());
    if let Err(e) = verify_callback(&s, &url, &token).await {
        return detail(
            StatusCode::BAD_REQUEST,
            &format!("Verification of the callback URL failed: {e}"),
        );
    }
    sub.callback_url = url;
    sub.verification_token = token;
    if let Some(e) = et {
        sub.event_type = e;
    }
    if let Some(d) = dt {
        sub.data_type = d;
    }
    let mut subs = s.subs.lock().expect("lock");
    match subs.iter_mut().find(|x| x.id == id) {
        Some(x) => {
            *x = sub.clone();
            Json(sub).into_response()
        }
        None => sub_not_found(&id),
    }
}

async fn renew_sub(State(s): State<Arc<Shared>>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut subs = s.subs.lock().expect("lock");
    match subs
        .iter_mut()
        .find(|x| x.id == id && x.client_id == client)
    {
        Some(x) => {
            x.expiration_time = expiration(&s);
            Json(x.clone()).into_response()
        }
        None => sub_not_found(&id),
    }
}

async fn delete_sub(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = inject_faults(&s).await {
        return r;
    }
    let client = match client_auth(&s, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut subs = s.subs.lock().expect("lock");
    let before = subs.len();
    subs.retain(|x| !(x.id == id && x.client_id == client));
    if subs.len() == before {
        return detail(StatusCode::NOT_FOUND, &format!("No webhook id {id} found."));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Upper-case hex HMAC-SHA256(client_secret, timestamp ‖ body).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(body);
    hex::encode_upper(mac.finalize().into_bytes())
}

/// Queue a notification to every matching, unexpired subscription whose app the user has
/// authorised (with the scope covering the data type). Returns how many were queued.
pub fn dispatch(s: &Arc<Shared>, event: &Event, user: usize, t: DocType) -> usize {
    let now = Utc::now();
    let targets: Vec<Subscription> = {
        let subs = s.subs.lock().expect("lock");
        let auth = s.auth.lock().expect("lock");
        subs.iter()
            .filter(|x| {
                x.data_type == event.data_type
                    && x.event_type == event.event_type
                    && x.expiration_time > now
                    && auth.user_authorized(user, &x.client_id, t.scope())
            })
            .cloned()
            .collect()
    };
    for sub in &targets {
        let id = s.delivery_seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut log = s.deliveries.lock().expect("lock");
            log.push_back(DeliveryRecord {
                id,
                subscription_id: sub.id.clone(),
                callback_url: sub.callback_url.clone(),
                event: event.clone(),
                attempts: 0,
                status: "pending".into(),
                last_status_code: None,
                last_error: None,
            });
            while log.len() > 10_000 {
                log.pop_front();
            }
        }
        let s = s.clone();
        let sub = sub.clone();
        let event = event.clone();
        tokio::spawn(async move { deliver(s, sub, event, id).await });
    }
    targets.len()
}

fn update_record(s: &Shared, id: u64, f: impl FnOnce(&mut DeliveryRecord)) {
    let mut log = s.deliveries.lock().expect("lock");
    if let Some(r) = log.iter_mut().rev().find(|r| r.id == id) {
        f(r);
    }
}

async fn deliver(s: Arc<Shared>, sub: Subscription, event: Event, id: u64) {
    let body = serde_json::to_vec(&event).expect("json");
    let attempts = s.config.delivery_attempts.max(1);
    let mut delay = s.config.delivery_backoff;
    for attempt in 1..=attempts {
        let ts = Utc::now().timestamp().to_string();
        let sig = sign(&s.config.client_secret, &ts, &body);
        let res = s
            .http
            .post(&sub.callback_url)
            .header("content-type", "application/json")
            .header("x-oura-signature", sig)
            .header("x-oura-timestamp", ts)
            .body(body.clone())
            .send()
            .await;
        let (code, error) = match res {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = code.is_some_and(|c| (200..400).contains(&c));
        let gone = code == Some(410);
        update_record(&s, id, |r| {
            r.attempts = attempt;
            r.last_status_code = code;
            r.last_error = error.clone();
            r.status = if ok {
                "delivered".into()
            } else if gone {
                "gone".into()
            } else if attempt == attempts {
                "failed".into()
            } else {
                "pending".into()
            };
        });
        if ok {
            return;
        }
        if gone {
            s.subs.lock().expect("lock").retain(|x| x.id != sub.id);
            return;
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_upper_hex() {
        let s = super::sign("secret", "123", b"{}");
        assert_eq!(s.len(), 64);
        assert_eq!(s, s.to_uppercase());
    }
}
