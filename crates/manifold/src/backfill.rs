//! `manifold backfill --user <id|reference_id> --from YYYY-MM-DD --to YYYY-MM-DD [--types …]`:
//! fetch a user's Oura history and queue it in the outbox like live data (the running
//! `manifold serve` nodes deliver it).
//!
//! * Progress (days, documents fetched, payloads queued, ETA) goes to stderr; a summary line to
//!   stdout.
//! * Resumable: every finished (user, type, day) is stored; a rerun after an interruption
//!   (Ctrl-C, kill) skips those days. `--restart` ignores the record and redoes every day.
//! * Idempotent: records carry the same natural keys as live data, so a day whose documents
//!   did not change commits no new payload version (and nothing is delivered again).
//! * Oura's request budget (`oura.rate_limit` per `oura.rate_window`) is shared through the
//!   store with every `manifold serve` node: this command takes tokens at background priority,
//!   so live notification fetches keep priority and together they never exceed the budget.
//! * On Oura's 429 (here or on a node: the pause is shared) it publishes `rate_limit_hit` for
//!   the whole range, waits until `retrying_at` and goes on.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use manifold_core::{Config, Engine};
use manifold_oura::connector::Connector;
use manifold_oura::history::{
    self, BackfillObserver, DayRange, FetchObserver, Kind, MAX_RANGE_DAYS,
};

/// Arguments of `manifold backfill`.
#[derive(clap::Args)]
pub struct BackfillArgs {
    #[arg(long, short, env = "MANIFOLD_CONFIG", default_value = "manifold.toml")]
    pub config: std::path::PathBuf,
    /// Manifold user id, or a reference_id (its latest connected user).
    #[arg(long)]
    pub user: String,
    /// First day (YYYY-MM-DD), included.
    #[arg(long)]
    pub from: String,
    /// Last day (YYYY-MM-DD), included.
    #[arg(long)]
    pub to: String,
    /// Comma-separated Terra types (default: all of sleep,daily,activity,body,menstruation,athlete).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Redo every day, ignoring the progress of earlier runs.
    #[arg(long)]
    pub restart: bool,
}

struct State {
    started: Instant,
    total_days: usize,
    days: usize,
    skipped: usize,
    fetched: usize,
    queued: usize,
    waiting: Option<String>,
    last_draw: Option<Instant>,
}

struct Progress {
    s: Mutex<State>,
    tty: bool,
}

impl Progress {
    fn draw(&self, s: &mut State, force: bool) {
        let now = Instant::now();
        if !force
            && s.last_draw
                .is_some_and(|t| now - t < Duration::from_millis(if self.tty { 100 } else { 1000 }))
        {
            return;
        }
        s.last_draw = Some(now);
        let worked = s.days.saturating_sub(s.skipped);
        let left = s.total_days.saturating_sub(s.days);
        let eta = if worked > 0 {
            let per = s.started.elapsed().as_secs_f64() / worked as f64;
            format!("{:.0}s", per * left as f64)
        } else {
            "?".into()
        };
        let line = format!(
            "backfill: {}/{} days ({} already done), {} documents fetched, {} payloads queued, ETA {eta}{}",
            s.days,
            s.total_days,
            s.skipped,
            s.fetched,
            s.queued,
            s.waiting
                .as_deref()
                .map(|w| format!(" — {w}"))
                .unwrap_or_default()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

impl FetchObserver for Progress {
    fn fetched(&self, documents: usize) {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        s.fetched += documents;
        s.waiting = None;
        self.draw(&mut s, false);
    }
    fn waiting(&self, d: Duration, why: &str) {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting = Some(format!("{why}: waiting {}s", d.as_secs_f64().ceil()));
        self.draw(&mut s, true);
    }
}

impl BackfillObserver for Progress {
    fn day_done(&self, _kind: Kind, _day: NaiveDate, _records: usize, new_versions: usize) {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        s.days += 1;
        s.queued += new_versions;
        self.draw(&mut s, false);
    }
    fn day_skipped(&self, _kind: Kind, _day: NaiveDate) {
        let mut s = self.s.lock().unwrap_or_else(|e| e.into_inner());
        s.days += 1;
        s.skipped += 1;
        self.draw(&mut s, false);
    }
}

fn usage(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

pub async fn run(config: Config, args: BackfillArgs) -> ExitCode {
    if config.oura.is_none() {
        return usage(format!(
            "{}: oura: the config has no [oura] section",
            config.path.display()
        ));
    }
    let parse = |flag: &str, v: &str| {
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .map_err(|_| format!("--{flag} `{v}` is not a date: use YYYY-MM-DD"))
    };
    let range = match (parse("from", &args.from), parse("to", &args.to)) {
        (Ok(start), Ok(end)) if start <= end => DayRange { start, end },
        (Ok(_), Ok(_)) => return usage("--from is after --to: swap them".into()),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    if range.days() > MAX_RANGE_DAYS {
        return usage(format!(
            "the range is {} days; at most {MAX_RANGE_DAYS} (5 years) per run",
            range.days()
        ));
    }
    let kinds: Vec<Kind> = if args.types.is_empty() {
        Kind::ALL.to_vec()
    } else {
        let mut out = Vec::new();
        for t in args.types.iter().filter(|t| !t.trim().is_empty()) {
            match Kind::parse(t) {
                Some(k) if !out.contains(&k) => out.push(k),
                Some(_) => {}
                None => {
                    return usage(format!(
                        "--types: `{t}` is not one of sleep, daily, activity, body, menstruation, athlete"
                    ));
                }
            }
        }
        out
    };
    let engine = match Engine::from_config(&config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot open the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conn = match Connector::new(engine.clone(), &config) {
        Ok(c) => c,
        Err(e) => return usage(format!("oura: {e}")),
    };
    let found = match history::find_user(&conn, Some(&args.user), None).await {
        Ok(None) => history::find_user(&conn, None, Some(&args.user)).await,
        other => other,
    };
    let user = match found {
        Ok(Some(u)) if u.status == "connected" => u,
        Ok(Some(u)) => {
            eprintln!(
                "error: --user {}: the user is {}, not connected: reconnect it first",
                args.user, u.status
            );
            return ExitCode::FAILURE;
        }
        Ok(None) => {
            eprintln!(
                "error: --user {}: no user has this id or reference_id",
                args.user
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total_days: usize = kinds
        .iter()
        .map(|k| {
            if *k == Kind::Athlete {
                1
            } else {
                range.days() as usize
            }
        })
        .sum();
    let progress = Progress {
        s: Mutex::new(State {
            started: Instant::now(),
            total_days,
            days: 0,
            skipped: 0,
            fetched: 0,
            queued: 0,
            waiting: None,
            last_draw: None,
        }),
        tty: std::io::stderr().is_terminal(),
    };
    let result =
        history::backfill(&conn, &user, &kinds, range, !args.restart, None, &progress).await;
    {
        let mut s = progress.s.lock().unwrap_or_else(|e| e.into_inner());
        progress.draw(&mut s, true);
        if progress.tty {
            eprintln!();
        }
    }
    engine.store().close().await;
    match result {
        Ok(st) => {
            println!(
                "backfill finished: user={} from={} to={} types={} days_done={} days_skipped={} documents_fetched={} records={} new_versions={}",
                user.user_id,
                range.start,
                range.end,
                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
                st.days_done,
                st.days_skipped,
                st.documents_fetched,
                st.records,
                st.new_versions
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: backfill stopped: {e} (finished days are kept: rerun to resume)");
            ExitCode::FAILURE
        }
    }
}
