//! Manifold's HTTP surface: the publish API (`POST /v2/events`), the admin API (deliveries,
//! replays, destination enable/disable), the Oura webhook intake and connect flow (`/oura/*`,
//! `/v2/auth/*`, `/v2/userInfo`, `/v2/users/{id}`), the history data endpoints
//! (`/v2/{activity,athlete,body,daily,menstruation,sleep}`), `/healthz`, `/readyz`, `/metrics`
//! and the operator dashboard (`/ui`).

mod admin;
mod auth;
mod auth_flow;
mod history;
mod metrics_route;
pub mod oura_intake;
pub mod problem;
mod publish;
pub mod ui;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use manifold_core::Engine;
use manifold_core::config::Secret;

pub use metrics_route::metrics_handle;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub api_keys: Arc<Vec<Secret>>,
    pub max_body: usize,
    /// The Oura connector, when `[oura]` is configured (its routes answer 404 otherwise).
    pub oura: Option<Arc<manifold_oura::connector::Connector>>,
}

/// The whole router. `api_keys` guard everything but health and metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/events", post(publish::publish))
        .route("/admin/deliveries", get(admin::list_deliveries))
        .route("/admin/deliveries/{id}/attempts", get(admin::attempts))
        .route("/admin/deliveries/{id}/replay", post(admin::replay))
        .route("/admin/payloads/{id}", get(admin::payload))
        .route("/admin/users", get(admin::users))
        .route("/admin/destinations", get(admin::destinations))
        .route(
            "/admin/destinations/{name}/replay",
            post(admin::replay_destination),
        )
        .route("/admin/destinations/{name}/enable", post(admin::enable))
        .route("/admin/destinations/{name}/disable", post(admin::disable))
        .route(
            "/oura/webhook",
            get(oura_intake::challenge).post(oura_intake::notify),
        )
        .route("/oura/callback", get(auth_flow::callback))
        .route(
            "/v2/auth/authenticateUser",
            post(auth_flow::authenticate_user),
        )
        .route(
            "/v2/auth/generateWidgetSession",
            post(auth_flow::generate_widget_session),
        )
        .route(
            "/v2/auth/deauthenticateUser",
            delete(auth_flow::deauthenticate_user),
        )
        .route("/v2/userInfo", get(users::user_info))
        .route("/v2/activity", get(history::activity))
        .route("/v2/athlete", get(history::athlete))
        .route("/v2/body", get(history::body))
        .route("/v2/daily", get(history::daily))
        .route("/v2/menstruation", get(history::menstruation))
        .route("/v2/sleep", get(history::sleep))
        .route("/v2/requests", get(history::list_requests))
        .route("/v2/requests/{reference}", get(history::request_status))
        .route("/v2/users/{user_id}", patch(users::patch_user))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(admin::ready))
        .route("/metrics", get(metrics_route::metrics))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
