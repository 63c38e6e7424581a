//! `manifold serve`: the engine's workers and the HTTP API until SIGTERM/SIGINT; then stop taking
//! requests, let in-flight attempts finish and exit 0.

use std::process::ExitCode;
use std::sync::Arc;

use manifold_core::{Config, Engine};
use manifold_server::{AppState, router};
use tokio::sync::watch;

pub async fn serve(config: Config) -> ExitCode {
    let engine = match Engine::from_config(&config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: server.listen: cannot listen on {}: {e}",
                config.server.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    manifold_server::metrics_handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = engine.start(stop_rx.clone());
    let state = AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
    };
    tracing::info!(listen = %addr, node = %engine.node(), destinations = config.destinations.len(), "manifold serving");
    let mut http_stop = stop_rx.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|v| *v).await;
    });
    let server = tokio::spawn(async move { server.await });

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight attempts");
    let _ = stop_tx.send(true);
    while workers.join_next().await.is_some() {}
    let _ = server.await;
    engine.store().close().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
