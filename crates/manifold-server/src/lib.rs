//! Manifold's HTTP surface: the publish API (`POST /v2/events`), the admin API (deliveries,
//! replays, destination enable/disable), `/healthz`, `/readyz` and `/metrics`.

mod admin;
mod auth;
mod metrics_route;
pub mod problem;
mod publish;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use manifold_core::Engine;
use manifold_core::config::Secret;

pub use metrics_route::metrics_handle;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub api_keys: Arc<Vec<Secret>>,
    pub max_body: usize,
}

/// The whole router. `api_keys` guard everything but health and metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/events", post(publish::publish))
        .route("/admin/deliveries", get(admin::list_deliveries))
        .route("/admin/deliveries/{id}/attempts", get(admin::attempts))
        .route("/admin/deliveries/{id}/replay", post(admin::replay))
        .route("/admin/destinations", get(admin::destinations))
        .route(
            "/admin/destinations/{name}/replay",
            post(admin::replay_destination),
        )
        .route("/admin/destinations/{name}/enable", post(admin::enable))
        .route("/admin/destinations/{name}/disable", post(admin::disable))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(admin::ready))
        .route("/metrics", get(metrics_route::metrics))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
