//! `manifold oura subscriptions sync|list|renew|delete`.

use std::process::ExitCode;

use manifold_core::{Config, Engine};
use manifold_oura::client::{OuraClient, Subscription};
use manifold_oura::connector::Connector;

use crate::cli::{OuraAction, SubscriptionsAction};

fn print(subs: &[Subscription]) {
    println!(
        "{:<38} {:<7} {:<26} {:<28} callback",
        "id", "event", "data_type", "expires"
    );
    for s in subs {
        println!(
            "{:<38} {:<7} {:<26} {:<28} {}",
            s.id,
            s.event_type,
            s.data_type,
            s.expiration_time.as_deref().unwrap_or("-"),
            s.callback_url
        );
    }
}

pub async fn run(config: Config, action: OuraAction) -> ExitCode {
    let Some(oura) = config.oura.clone() else {
        eprintln!(
            "{}: oura: the config has no [oura] section: add client_id, client_secret, verification_token and token_keys",
            config.path.display()
        );
        return ExitCode::from(2);
    };
    let OuraAction::Subscriptions { action } = action;
    let redirect = oura
        .redirect_uri(config.server.public_url.as_ref())
        .unwrap_or_default();
    let client = match OuraClient::new(&oura, redirect) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = match action {
        SubscriptionsAction::List => client
            .list_subscriptions()
            .await
            .map(|s| print(&s))
            .map_err(|e| e.to_string()),
        SubscriptionsAction::Sync { renew_within } => {
            let within = match manifold_core::config::duration::parse(&renew_within) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: --renew-within: {e}");
                    return ExitCode::from(2);
                }
            };
            match Engine::from_config(&config).await {
                Ok(engine) => {
                    let r = match Connector::new(engine.clone(), &config) {
                        Ok(c) => c.sync_subscriptions(within).await.map(|s| print(&s)),
                        Err(e) => Err(e),
                    };
                    engine.store().close().await;
                    r
                }
                Err(e) => Err(format!("cannot open the store: {e}")),
            }
        }
        SubscriptionsAction::Renew { id } => {
            let ids = match id {
                Some(id) => Ok(vec![id]),
                None => client
                    .list_subscriptions()
                    .await
                    .map(|s| s.into_iter().map(|s| s.id).collect())
                    .map_err(|e| e.to_string()),
            };
            match ids {
                Ok(ids) => {
                    let mut renewed = Vec::new();
                    let mut err = None;
                    for id in ids {
                        match client.renew_subscription(&id).await {
                            Ok(s) => renewed.push(s),
                            Err(e) => err = Some(format!("renew {id}: {e}")),
                        }
                    }
                    print(&renewed);
                    err.map_or(Ok(()), Err)
                }
                Err(e) => Err(e),
            }
        }
        SubscriptionsAction::Delete { id, all } => {
            let ids = match (id, all) {
                (Some(id), _) => Ok(vec![id]),
                (None, true) => client
                    .list_subscriptions()
                    .await
                    .map(|s| s.into_iter().map(|s| s.id).collect())
                    .map_err(|e| e.to_string()),
                (None, false) => {
                    eprintln!("error: give a subscription id, or --all");
                    return ExitCode::from(2);
                }
            };
            match ids {
                Ok(ids) => {
                    let mut err = None;
                    for id in ids {
                        match client.delete_subscription(&id).await {
                            Ok(()) => println!("deleted {id}"),
                            Err(e) => err = Some(format!("delete {id}: {e}")),
                        }
                    }
                    err.map_or(Ok(()), Err)
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
