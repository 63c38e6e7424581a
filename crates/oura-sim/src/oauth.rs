//! OAuth2: `/oauth/authorize`, `/oauth/token`, `/oauth/revoke`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use chrono::{Duration, Utc};
use serde_json::json;
use url::Url;

use crate::state::{AuthCode, Shared, random_token};
use crate::types::{ALL_SCOPES, normalize_scope};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", axum::routing::post(token))
        .route("/oauth/revoke", get(revoke).post(revoke))
}

/// Space-separated requested scopes → normalised `extapi:` names; empty → all scopes.
pub fn parse_scopes(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split([' ', '+', ',']).filter(|p| !p.is_empty()) {
        let n = normalize_scope(part).ok_or_else(|| format!("unknown scope {part}"))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.is_empty() {
        out = ALL_SCOPES.iter().map(|s| s.to_string()).collect();
    }
    Ok(out)
}

fn oauth_error(status: StatusCode, error: &str, desc: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": desc})),
    )
        .into_response()
}

fn redirect(mut url: Url, pairs: &[(&str, &str)]) -> Response {
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Auto-approving consent screen. Extra simulator parameter `user` (index or Oura id, default
/// 0) selects who "logs in". With the `deny_authorize` fault it redirects with
/// `error=access_denied`.
async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cfg = &s.config;
    if q.get("client_id").map(String::as_str) != Some(cfg.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid client_id",
        );
    }
    let redirect_uri = match q.get("redirect_uri") {
        Some(r) => {
            if !cfg.redirect_uris.is_empty() && !cfg.redirect_uris.contains(r) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "redirect_uri does not match a registered redirect URI",
                );
            }
            r.clone()
        }
        None if cfg.redirect_uris.len() == 1 => cfg.redirect_uris[0].clone(),
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "redirect_uri is required",
            );
        }
    };
    let Ok(url) = Url::parse(&redirect_uri) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not a valid URL",
        );
    };
    let state = q.get("state").cloned().unwrap_or_default();
    let with_state = |mut pairs: Vec<(&'static str, String)>| {
        if q.contains_key("state") {
            pairs.push(("state", state.clone()));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect(url.clone(), &refs)
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return with_state(vec![("error", "unsupported_response_type".into())]);
    }
    let scopes = match parse_scopes(q.get("scope").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(_) => return with_state(vec![("error", "invalid_scope".into())]),
    };
    if s.faults.lock().expect("lock").deny_authorize {
        return with_state(vec![
            ("error", "access_denied".into()),
            ("error_description", "The user denied access".into()),
        ]);
    }
    let user_ref = q.get("user").cloned().unwrap_or_else(|| "0".into());
    let Some(user) = s.data.read().expect("lock").resolve_user(&user_ref) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unknown user");
    };
    let code = random_token(24);
    s.auth.lock().expect("lock").codes.insert(
        code.clone(),
        AuthCode {
            client_id: cfg.client_id.clone(),
            redirect_uri: q.get("redirect_uri").cloned(),
            user,
            scopes,
            expires_at: Utc::now() + Duration::minutes(10),
        },
    );
    with_state(vec![("code", code)])
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Client credentials from HTTP Basic or form fields.
fn client_credentials(
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    if let Some(b64) = basic {
        let dec = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let s = String::from_utf8(dec).ok()?;
        let (id, secret) = s.split_once(':')?;
        let d = |x: &str| {
            url::form_urlencoded::parse(format!("v={x}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        return Some((d(id), d(secret)));
    }
    Some((f.get("client_id")?.clone(), f.get("client_secret")?.clone()))
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = form(&body);
    let cfg = &s.config;
    let Some((cid, secret)) = client_credentials(&headers, &f) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    };
    if cid != cfg.client_id || secret != cfg.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client");
    }
    let ttl = cfg.access_token_ttl.as_secs() as i64;
    let mut auth = s.auth.lock().expect("lock");
    let resp = match f.get("grant_type").map(String::as_str) {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some("authorization_code") => {
            let Some(code) = f.get("code").and_then(|c| auth.codes.remove(c)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid, expired or already used authorization code",
                );
            };
            if code.expires_at < Utc::now() || code.client_id != cid {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid or expired authorization code",
                );
            }
            if code.redirect_uri.is_some() && code.redirect_uri.as_ref() != f.get("redirect_uri") {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            let g = auth.new_grant(code.user, &cid, code.scopes);
            auth.issue(g, ttl)
        }
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            let grant = match auth.refresh.get_mut(&rt) {
                Some(r) if !r.used => {
                    r.used = true;
                    r.grant
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token (refresh tokens can only be used once)",
                    );
                }
            };
            let g = &auth.grants[grant];
            if g.revoked || g.client_id != cid {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token has been revoked",
                );
            }
            auth.issue(grant, ttl)
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            );
        }
    };
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(resp),
    )
        .into_response()
}

/// `GET|POST /oauth/revoke?access_token=…` (also form `access_token`/`token`, or an
/// `Authorization: <type> <token>` header). Revokes the whole grant (access + refresh tokens).
async fn revoke(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let tok = q
        .get("access_token")
        .or_else(|| q.get("token"))
        .or_else(|| f.get("access_token"))
        .or_else(|| f.get("token"))
        .cloned()
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_string()))
        });
    let Some(tok) = tok else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let mut auth = s.auth.lock().expect("lock");
    let now = Utc::now();
    let grant = if let Some(a) = auth.access.get(&tok) {
        (a.expires_at > now).then_some(a.grant)
    } else {
        auth.refresh
            .get(&tok)
            .and_then(|r| (!r.used).then_some(r.grant))
    };
    match grant {
        Some(g) if !auth.grants[g].revoked => {
            auth.grants[g].revoked = true;
            (StatusCode::OK, axum::Json(json!({}))).into_response()
        }
        _ => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Token is invalid, expired or already revoked",
        ),
    }
}
