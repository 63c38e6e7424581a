//! `POST /v2/events`: publish a Terra-shaped event; 202 only after the commit is durable.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use manifold_core::engine::PublishError;
use serde_json::json;

use crate::AppState;
use crate::auth::require_key;
use crate::problem::Problem;

pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match publish_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn publish_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    require_key(state, headers)?;
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > state.max_body
    {
        return Err(too_large(state.max_body));
    }
    let bytes = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| too_large(state.max_body))?;
    let reference = headers
        .get("terra-reference")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match state.engine.publish(&bytes, reference).await {
        Ok(c) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "status": "accepted",
                "id": c.payload_id,
                "version": c.version,
                "deliveries": c.deliveries,
                "duplicate": c.duplicate,
            })),
        )
            .into_response()),
        Err(PublishError::Json(e)) => Err(Problem::bad_request(format!(
            "the body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))),
        Err(PublishError::Event(e)) if e.is_unknown_type() => {
            Err(Problem::unprocessable(e.to_string()))
        }
        Err(PublishError::Event(e)) => Err(Problem::bad_request(e.to_string())),
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish: store unavailable");
            Err(Problem::unavailable(
                "the store is unavailable; nothing was stored, retry the request",
            ))
        }
    }
}

fn too_large(max: usize) -> Problem {
    Problem::too_large(format!(
        "the body is larger than server.max_body ({max} bytes); split the event or raise server.max_body"
    ))
}
