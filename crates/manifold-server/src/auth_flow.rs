//! Connecting Oura accounts, Terra-compatible: `POST /v2/auth/authenticateUser?resource=OURA`,
//! `POST /v2/auth/generateWidgetSession`, `GET /oura/callback`,
//! `DELETE /v2/auth/deauthenticateUser?user_id=`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use manifold_oura::connector::{CallbackOutcome, ConnectError};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::require_key;
use crate::oura_intake::connector;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
pub struct ResourceQuery {
    resource: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthBody {
    #[serde(default)]
    reference_id: Option<String>,
    #[serde(default)]
    auth_success_redirect_url: Option<String>,
    #[serde(default)]
    auth_failure_redirect_url: Option<String>,
    #[serde(default)]
    providers: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    language: Option<String>,
}

fn parse_body(body: &Bytes) -> Result<AuthBody, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(AuthBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn connect_error(e: ConnectError) -> Problem {
    match e {
        ConnectError::Invalid(m) => Problem::bad_request(m),
        ConnectError::Store(e) => {
            tracing::error!(error = %e, "auth flow: store unavailable");
            Problem::unavailable("the store is unavailable; retry the request")
        }
    }
}

async fn start(state: &AppState, body: &AuthBody) -> Result<(String, String), Problem> {
    let oura = connector(state)?;
    oura.authenticate_user(
        body.reference_id.as_deref(),
        body.auth_success_redirect_url.as_deref(),
        body.auth_failure_redirect_url.as_deref(),
    )
    .await
    .map_err(connect_error)
}

/// `POST /v2/auth/authenticateUser?resource=OURA`
pub async fn authenticate_user(
    State(state): State<AppState>,
    Query(q): Query<ResourceQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        require_key(&state, &headers)?;
        match q.resource.as_deref() {
            Some(r) if r.eq_ignore_ascii_case("OURA") => {}
            Some(r) => {
                return Err(Problem::bad_request(format!(
                    "resource `{r}` is not supported: this server connects OURA only"
                )));
            }
            None => {
                return Err(Problem::bad_request(
                    "the `resource` query parameter is missing: use ?resource=OURA",
                ));
            }
        }
        let body = parse_body(&body)?;
        let (user_id, auth_url) = start(&state, &body).await?;
        Ok(
            axum::Json(json!({"status": "success", "user_id": user_id, "auth_url": auth_url}))
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|p: Problem| p.into_response())
}

/// `POST /v2/auth/generateWidgetSession`: the widget is the Oura consent page itself.
pub async fn generate_widget_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        require_key(&state, &headers)?;
        let body = parse_body(&body)?;
        if let Some(p) = &body.providers
            && !p.split(',').any(|x| x.trim().eq_ignore_ascii_case("OURA"))
        {
            return Err(Problem::bad_request(
                "`providers` must include OURA: this server connects OURA only",
            ));
        }
        let (user_id, auth_url) = start(&state, &body).await?;
        let ttl = connector(&state)?.config().state_ttl.as_secs();
        Ok(axum::Json(json!({
            "status": "success",
            "session_id": user_id,
            "url": auth_url,
            "expires_in": ttl,
        }))
        .into_response())
    };
    run.await.unwrap_or_else(|p: Problem| p.into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /oura/callback?code=…&state=…` (or `error=access_denied`).
pub async fn callback(State(state): State<AppState>, Query(q): Query<CallbackQuery>) -> Response {
    let oura = match connector(&state) {
        Ok(o) => o,
        Err(p) => return p.into_response(),
    };
    match oura
        .callback(q.code.as_deref(), q.state.as_deref(), q.error.as_deref())
        .await
    {
        CallbackOutcome::Redirect(url) => {
            (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
        }
        CallbackOutcome::Connected { user_id } => axum::Json(json!({
            "status": "success",
            "user_id": user_id,
            "message": "Oura account connected; you can close this window",
        }))
        .into_response(),
        CallbackOutcome::Failed { reason } => Problem::bad_request(format!(
            "the Oura connection failed ({reason}); start again from authenticateUser"
        ))
        .into_response(),
        CallbackOutcome::InvalidState(m) => Problem::bad_request(m).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct UserQuery {
    user_id: Option<String>,
}

/// `DELETE /v2/auth/deauthenticateUser?user_id=…`
pub async fn deauthenticate_user(
    State(state): State<AppState>,
    Query(q): Query<UserQuery>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        require_key(&state, &headers)?;
        let oura = connector(&state)?;
        let user_id = q
            .user_id
            .ok_or_else(|| Problem::bad_request("the `user_id` query parameter is missing"))?;
        match oura.deauthenticate(&user_id).await {
            Ok(true) => Ok(axum::Json(json!({"status": "success"})).into_response()),
            Ok(false) => Err(Problem::not_found("user not found")),
            Err(e) => {
                tracing::error!(error = %e, "deauth: store unavailable");
                Err(Problem::unavailable(
                    "the store is unavailable; retry the request",
                ))
            }
        }
    };
    run.await.unwrap_or_else(|p: Problem| p.into_response())
}
