//! Command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use manifold_core::Config;
use manifold_core::store::{DeliveryFilter, Store};

use crate::registry::registry;

#[derive(Parser)]
#[command(
    name = "manifold",
    version,
    about = "Oura → Terra-compatible payloads, delivered with retries to every destination"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the engine and the HTTP API.
    Serve {
        #[arg(long, short, env = "MANIFOLD_CONFIG", default_value = "manifold.toml")]
        config: PathBuf,
    },
    /// Validate a config file completely; exit 0 if valid, 2 with one line per problem if not.
    Check {
        #[arg(long, short, env = "MANIFOLD_CONFIG", default_value = "manifold.toml")]
        config: PathBuf,
        /// Also connect to the store and every destination.
        #[arg(long)]
        connect: bool,
    },
    /// Inspect and replay deliveries in the store.
    Deliveries {
        #[arg(long, short, env = "MANIFOLD_CONFIG", default_value = "manifold.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: DeliveriesAction,
    },
    /// Oura connector tools.
    Oura {
        #[arg(long, short, env = "MANIFOLD_CONFIG", default_value = "manifold.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: OuraAction,
    },
    /// Fetch a user's Oura history for a day range and queue it like live data (resumable;
    /// progress on stderr).
    Backfill(crate::backfill::BackfillArgs),
    /// Run the whole flow locally: the Oura simulator, an embedded store, and a receiver that
    /// verifies every signature and prints each Terra payload as it arrives.
    Demo(crate::demo::DemoArgs),
    /// Supabase helpers.
    Supabase {
        #[command(subcommand)]
        action: SupabaseAction,
    },
}

#[derive(Subcommand)]
pub enum SupabaseAction {
    /// Print the tables, triggers and grants the `supabase` destination needs (run them once in
    /// the SQL editor), or apply them with --database-url.
    Init {
        /// Schema the tables live in (must be exposed by the project's API settings).
        #[arg(long, default_value = "public")]
        schema: String,
        /// Apply to this PostgreSQL database instead of printing (e.g. the project's direct URL).
        #[arg(long, env = "SUPABASE_DB_URL")]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries (newest first).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Replay one delivery by id, or every dead delivery of a destination.
    Replay {
        /// Delivery id.
        id: Option<String>,
        /// Replay all deliveries of this destination with --status (default dead).
        #[arg(long, conflicts_with = "id")]
        destination: Option<String>,
        #[arg(long, default_value = "dead")]
        status: String,
        /// Only deliveries created within this duration (e.g. 24h).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum OuraAction {
    /// Oura webhook subscriptions of this app (one per event type × data type).
    Subscriptions {
        #[command(subcommand)]
        action: SubscriptionsAction,
    },
}

#[derive(Subcommand)]
pub enum SubscriptionsAction {
    /// Create missing subscriptions for `{server.public_url}/oura/webhook`, renew expiring ones.
    Sync {
        /// Renew subscriptions that expire within this duration.
        #[arg(long, default_value = "24h")]
        renew_within: String,
    },
    /// List the app's subscriptions at Oura.
    List,
    /// Renew one subscription by id, or all of them.
    Renew { id: Option<String> },
    /// Delete one subscription by id, or (with --all) every one of this app.
    Delete {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

impl Command {
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve { .. } => "info",
            Command::Demo(_) => "warn",
            _ => "warn",
        }
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => match load(&config) {
            Ok(c) => crate::serve::serve(c).await,
            Err(code) => code,
        },
        Command::Check { config, connect } => check(&config, connect).await,
        Command::Deliveries { config, action } => match load(&config) {
            Ok(c) => deliveries(c, action).await,
            Err(code) => code,
        },
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Supabase {
            action:
                SupabaseAction::Init {
                    schema,
                    database_url,
                },
        } => supabase_init(&schema, database_url.as_deref()).await,
        Command::Backfill(args) => match load(&args.config) {
            Ok(c) => crate::backfill::run(c, args).await,
            Err(code) => code,
        },
        Command::Oura { config, action } => match load(&config) {
            Ok(c) => crate::oura_cli::run(c, action).await,
            Err(code) => code,
        },
    }
}

async fn supabase_init(schema: &str, database_url: Option<&str>) -> ExitCode {
    let sql = manifold_supabase::init_sql(schema);
    let Some(url) = database_url else {
        println!("{sql}");
        return ExitCode::SUCCESS;
    };
    use sqlx::Connection;
    let result = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await
    }
    .await;
    match result {
        Ok(()) => {
            println!("applied the Manifold tables and grants to schema `{schema}`");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: applying the Supabase schema failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Load and validate; print every problem and return exit code 2 on failure.
pub fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path, &registry()).map_err(|e| {
        eprintln!("{e}");
        eprintln!("{} problem(s) in {}", e.0.len(), path.display());
        ExitCode::from(2)
    })
}

async fn check(path: &std::path::Path, connect: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if connect {
        let mut failed = false;
        match Store::open(config.store.url.expose(), 2).await {
            Ok(s) => {
                println!("store: ok ({:?})", s.backend());
                s.close().await;
            }
            Err(e) => {
                println!("{}: store.url: cannot open the store: {e}", path.display());
                failed = true;
            }
        }
        for d in &config.destinations {
            match d.destination.check().await {
                Ok(()) => println!("destination {}: ok", d.common.name),
                Err(e) => {
                    println!("{}: destinations.{}: {e}", path.display(), d.common.name);
                    failed = true;
                }
            }
        }
        if failed {
            return ExitCode::from(2);
        }
    }
    println!(
        "{}: ok ({} destination(s): {})",
        path.display(),
        config.destinations.len(),
        config
            .destinations
            .iter()
            .map(|d| d.common.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::SUCCESS
}

async fn deliveries(config: Config, action: DeliveriesAction) -> ExitCode {
    let store = match Store::open(config.store.url.expose(), 2).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        DeliveriesAction::List {
            status,
            destination,
            limit,
        } => {
            let f = DeliveryFilter {
                status,
                destination,
                payload_id: None,
                limit,
            };
            store.list_deliveries(&f).await.map(|rows| {
                println!(
                    "{:<36}  {:<12} {:<10} {:>3}  {:<8} error",
                    "id", "destination", "status", "try", "type"
                );
                for r in rows {
                    println!(
                        "{:<36}  {:<12} {:<10} {:>3}  {:<8} {}",
                        r.id,
                        r.destination,
                        r.status,
                        r.attempts,
                        r.event_type,
                        r.dead_reason.or(r.last_error).unwrap_or_default()
                    );
                }
            })
        }
        DeliveriesAction::Replay { id: Some(id), .. } => store.replay(&id).await.map(|d| match d {
            Some(dest) => println!("replaying {id} to {dest}"),
            None => eprintln!("no delivery has the id {id}"),
        }),
        DeliveriesAction::Replay {
            id: None,
            destination: Some(dest),
            status,
            since,
        } => {
            let since_ms = match since.as_deref().map(manifold_core::config::duration::parse) {
                None => Ok(0),
                Some(Ok(d)) => Ok(manifold_core::store::now_ms() - d.as_millis() as i64),
                Some(Err(e)) => Err(e),
            };
            match since_ms {
                Ok(since_ms) => store
                    .replay_destination(&dest, &status, since_ms)
                    .await
                    .map(|n| println!("replaying {n} {status} deliveries to {dest}")),
                Err(e) => {
                    eprintln!("error: --since: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        DeliveriesAction::Replay { .. } => {
            eprintln!("error: give a delivery id, or --destination NAME");
            return ExitCode::from(2);
        }
    };
    store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
