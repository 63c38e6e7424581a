//! Terra-compatible user endpoints for Oura users: `GET /v2/userInfo` and
//! `PATCH /v2/users/{user_id}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use manifold_oura::connector::terra_user;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::require_key;
use crate::oura_intake::connector;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
pub struct InfoQuery {
    user_id: Option<String>,
    reference_id: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "users: store unavailable");
    Problem::unavailable("the store is unavailable; retry the request")
}

/// `GET /v2/userInfo?user_id=…` → `{"status","user","is_authenticated"}`;
/// `?reference_id=…` → an array of users (as Terra answers).
pub async fn user_info(
    State(state): State<AppState>,
    Query(q): Query<InfoQuery>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        require_key(&state, &headers)?;
        let store = connector(&state)?.store().clone();
        if let Some(id) = q.user_id {
            let row = store
                .oura_user(&id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| Problem::not_found("user not found"))?;
            return Ok(axum::Json(json!({
                "status": "success",
                "user": terra_user(&row),
                "is_authenticated": row.status == "connected",
            }))
            .into_response());
        }
        if let Some(r) = q.reference_id {
            let rows = store
                .oura_users_by_reference(&r)
                .await
                .map_err(unavailable)?;
            let users: Vec<_> = rows.iter().map(terra_user).collect();
            return Ok(axum::Json(users).into_response());
        }
        Err(Problem::bad_request("give `user_id` or `reference_id`"))
    };
    run.await.unwrap_or_else(|p: Problem| p.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    reference_id: Option<String>,
}

/// `PATCH /v2/users/{user_id}` with `{"active"?, "reference_id"?}`.
pub async fn patch_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        require_key(&state, &headers)?;
        let store = connector(&state)?.store().clone();
        let patch: PatchBody = serde_json::from_slice(&body).map_err(|e| {
            Problem::bad_request(format!(
                "the body is not valid: {e} (line {}, column {}); send {{\"active\": bool, \"reference_id\": string}}",
                e.line(),
                e.column()
            ))
        })?;
        let found = store
            .oura_patch_user(&user_id, patch.active, patch.reference_id.as_deref())
            .await
            .map_err(unavailable)?;
        if !found {
            return Err(Problem::not_found("user not found"));
        }
        let row = store
            .oura_user(&user_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Problem::not_found("user not found"))?;
        Ok(axum::Json(json!({"status": "success", "user": terra_user(&row)})).into_response())
    };
    run.await.unwrap_or_else(|p: Problem| p.into_response())
}
