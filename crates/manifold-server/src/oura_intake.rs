//! Oura webhook intake: the subscription handshake (`GET /oura/webhook`) and verified
//! notifications (`POST /oura/webhook`), acknowledged only once durably recorded.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use manifold_oura::connector::{Connector, WebhookNotification};
use manifold_oura::signature;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::Problem;

/// Largest notification accepted (they are ~200 bytes).
pub const MAX_NOTIFICATION: usize = 1024 * 1024;

pub(crate) fn connector(state: &AppState) -> Result<&std::sync::Arc<Connector>, Problem> {
    state.oura.as_ref().ok_or_else(|| {
        Problem::not_found(
            "Oura is not configured on this server: add an [oura] section to the config",
        )
    })
}

/// `GET /oura/webhook?verification_token=…&challenge=…`
pub async fn challenge(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let oura = match connector(&state) {
        Ok(o) => o,
        Err(p) => return p.into_response(),
    };
    let Some(expected) = oura.config().verification_token.as_ref() else {
        return Problem::unauthorized(
            "oura.verification_token is not configured, so no subscription can be verified",
        )
        .into_response();
    };
    let given = q
        .get("verification_token")
        .map(String::as_bytes)
        .unwrap_or_default();
    if !bool::from(expected.expose().as_bytes().ct_eq(given)) {
        metrics::counter!("manifold_oura_webhook_rejected_total", "reason" => "verification_token")
            .increment(1);
        return Problem::unauthorized("verification_token does not match oura.verification_token")
            .into_response();
    }
    let Some(challenge) = q.get("challenge") else {
        return Problem::bad_request("the `challenge` query parameter is missing").into_response();
    };
    axum::Json(json!({ "challenge": challenge })).into_response()
}

/// `POST /oura/webhook`
pub async fn notify(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match notify_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(p) => {
            let reason = match p.status.as_u16() {
                401 => "signature",
                413 => "too_large",
                400 => "malformed",
                _ => "other",
            };
            metrics::counter!("manifold_oura_webhook_rejected_total", "reason" => reason)
                .increment(1);
            p.into_response()
        }
    }
}

fn too_large() -> Problem {
    Problem::too_large(format!(
        "an Oura notification is at most {MAX_NOTIFICATION} bytes"
    ))
}

async fn notify_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let oura = connector(state)?;
    if headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_NOTIFICATION)
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_NOTIFICATION)
        .await
        .map_err(|_| too_large())?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    signature::verify(
        oura.config().client_secret.expose().as_bytes(),
        header("x-oura-timestamp"),
        header("x-oura-signature"),
        &bytes,
        chrono::Utc::now().timestamp(),
        oura.config().signature_tolerance,
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "Oura notification refused");
        Problem::unauthorized(format!("{e}: the notification was not accepted"))
    })?;
    let n: WebhookNotification = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the notification is not valid: {e} (line {}, column {}); expected event_type, data_type, object_id, event_time, user_id",
            e.line(),
            e.column()
        ))
    })?;
    for (k, v) in [
        ("event_type", &n.event_type),
        ("data_type", &n.data_type),
        ("object_id", &n.object_id),
        ("event_time", &n.event_time),
        ("user_id", &n.user_id),
    ] {
        if v.trim().is_empty() || v.len() > 512 {
            return Err(Problem::bad_request(format!(
                "`{k}` must be a non-empty string of at most 512 characters"
            )));
        }
    }
    match oura.record_notification(&n).await {
        Ok(r) => Ok((
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "recorded": r.status, "duplicate": !r.new})),
        )
            .into_response()),
        Err(e) => {
            tracing::error!(error = %e, "Oura intake: store unavailable");
            Err(Problem::unavailable(
                "the store is unavailable; the notification was not recorded, retry",
            ))
        }
    }
}
