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
    let oura = match start_oura(&engine, &config, &stop_rx, &mut workers) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: oura: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
        oura,
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

/// With `[oura]` configured: build the connector, run its fetch workers with the engine's, and
/// (unless `oura.sync_subscriptions = false`) sync webhook subscriptions once the HTTP server
/// answers the verification handshake.
fn start_oura(
    engine: &Engine,
    config: &Config,
    stop: &watch::Receiver<bool>,
    workers: &mut tokio::task::JoinSet<()>,
) -> Result<Option<Arc<manifold_oura::connector::Connector>>, String> {
    if config.oura.is_none() {
        return Ok(None);
    }
    let connector = manifold_oura::connector::Connector::new(engine.clone(), config)?;
    workers.spawn(connector.clone().run(stop.clone()));
    let sync = config
        .oura
        .as_ref()
        .is_some_and(|o| o.sync_subscriptions && o.verification_token.is_some())
        && config.server.public_url.is_some();
    if sync {
        let c = connector.clone();
        let mut stop = stop.clone();
        workers.spawn(async move {
            // Re-check every 6 hours: renew what expires within a day, recreate what is gone.
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                match c.sync_subscriptions(std::time::Duration::from_secs(86_400)).await {
                    Ok(subs) => tracing::info!(count = subs.len(), "Oura webhook subscriptions in place"),
                    Err(e) => tracing::warn!(error = %e, "Oura webhook subscription sync failed; will retry"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(6 * 3600)) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        });
    }
    Ok(Some(connector))
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
