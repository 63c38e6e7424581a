//! `/metrics` in the Prometheus text format. Queue gauges are refreshed on every scrape.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        // In tests several servers share a process; only the first install wins, which is fine.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let handle = metrics_handle();
    if let Ok(stats) = state.engine.store().queue_stats().await {
        for d in state.engine.destinations() {
            let s = stats.get(&d.common.name).cloned().unwrap_or_default();
            let name = d.common.name.clone();
            metrics::gauge!("manifold_queue_depth", "destination" => name.clone())
                .set(s.pending as f64);
            metrics::gauge!("manifold_queue_due", "destination" => name.clone()).set(s.due as f64);
            metrics::gauge!("manifold_queue_oldest_due_seconds", "destination" => name.clone())
                .set(s.oldest_due_ms.unwrap_or(0) as f64 / 1000.0);
            metrics::gauge!("manifold_dead_letters", "destination" => name).set(s.dead as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
