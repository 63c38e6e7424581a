//! History: Terra's `GET /v2/{activity,body,daily,sleep,menstruation,athlete}` for Oura users,
//! the backfill after connect and `manifold backfill`.
//!
//! One pipeline for all of them: **fetch** every Oura collection a Terra type needs over a day
//! range (all pages; `end_date` sent as the day after the last day, because Oura's bare
//! `end_date` excludes that day), **store** the raw documents in `oura_documents` (the same rows
//! webhook fetches write), then **map from the store** exactly as the live day rebuild does, so
//! a history record has the same natural key and — for the same documents — the same body as
//! the live one: re-fetching an overlapping range stores no new payload versions.
//!
//! | Terra type | Oura collections | record |
//! |---|---|---|
//! | `sleep` | `sleep`, `daily_sleep` | one per sleep period (`deleted`/`rest` periods skipped) |
//! | `daily` | `daily_activity`, `daily_readiness`, `daily_sleep`, `daily_stress`, `daily_spo2`, `daily_resilience` | one per day |
//! | `body` | `daily_readiness`, `daily_spo2`, `vO2_max`, `daily_cardiovascular_age`, `personal_info` | one per day that maps |
//! | `menstruation` | `enhanced_tag` | one per day a period tag starts |
//! | `activity` | `workout`, `session` | one per workout/session |
//! | `athlete` | `personal_info` | the athlete |
//!
//! Body deliberately leaves out `heartrate` (`hr_samples`) and `personal_info` weight/height: the
//! live day rebuild has neither (no webhook exists for them), and history must produce the same
//! body as live data for the same day. `personal_info` is still fetched and stored.
//!
//! `with_samples=false` ([`strip_samples`]) removes, at any depth of every data item, each key
//! ending in `_samples` (`hypnogram_samples`, `hr_samples`, `MET_data.MET_samples`,
//! `activity_levels_samples`, …), each key containing `_samples_` (`hrv_samples_rmssd`,
//! `hrv_samples_sdnn`) and each key named `samples` — the whole key, not just emptied.
//! Nothing else is removed (an object left empty, e.g. `heart_rate_data.detailed`, stays).
//!
//! Rate budget: requests run one at a time per history request, each taking a token of the
//! application's Oura budget shared through the store by every node and every `manifold
//! backfill` process ([`manifold_core::store::rate_budget`]) at [`Priority::Background`]: live
//! notification fetches keep priority across processes. Synchronous requests wait at most
//! [`SYNC_MAX_WAIT`] for a token or for the end of a 429 pause, then answer 429 with
//! `Retry-After`. Asynchronous requests and backfills, on Oura's 429 (here or on another node,
//! which pauses everyone), publish `rate_limit_hit` (`start_date`/`end_date` of the request,
//! `retrying_at`; asynchronous requests with their `terra-reference`), wait until `retrying_at`
//! and go on.
//!
//! Asynchronous requests and the backfill after connect are recorded in `history_requests`
//! (status `processing`, `rate_limited`, `completed`, `failed` with the HTTP status and reason
//! a synchronous request would have got), shown by `GET /v2/requests/{reference}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use manifold_core::store::history_requests::NewHistoryRequest;
use manifold_core::store::rate_budget::Priority;
use manifold_core::store::{HistoryDocRow, OuraUserRow, now_ms};
use manifold_model::{Event, TerraUser, Timestamp};
use serde_json::Value;

use crate::DayDocuments;
use crate::client::OuraError;
use crate::connector::{Connector, terra_user};
use crate::normalize;
use crate::types::{OuraDocument, parse_document, parse_value};

/// Longest range answered synchronously (`to_webhook=false`), in days.
pub const MAX_SYNC_DAYS: i64 = 28;
/// Longest range accepted at all, in days (5 years).
pub const MAX_RANGE_DAYS: i64 = 1826;
/// Records per data event of an asynchronous request.
pub const CHUNK_RECORDS: usize = 10;
/// Days fetched per Oura request window during a backfill.
const BACKFILL_WINDOW_DAYS: i64 = 7;
/// Longest wait of a synchronous request for a budget token or the end of a 429 pause.
pub const SYNC_MAX_WAIT: Duration = Duration::from_secs(10);

/// A Terra data type served by the history routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Activity,
    Athlete,
    Body,
    Daily,
    Menstruation,
    Sleep,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Sleep,
        Kind::Daily,
        Kind::Activity,
        Kind::Body,
        Kind::Menstruation,
        Kind::Athlete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Activity => "activity",
            Kind::Athlete => "athlete",
            Kind::Body => "body",
            Kind::Daily => "daily",
            Kind::Menstruation => "menstruation",
            Kind::Sleep => "sleep",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s.trim())
    }

    /// The Oura collections this type is built from.
    pub fn sources(self) -> &'static [&'static str] {
        match self {
            Kind::Sleep => &["sleep", "daily_sleep"],
            Kind::Daily => &[
                "daily_activity",
                "daily_readiness",
                "daily_sleep",
                "daily_stress",
                "daily_spo2",
                "daily_resilience",
            ],
            Kind::Body => &[
                "daily_readiness",
                "daily_spo2",
                "vO2_max",
                "daily_cardiovascular_age",
                "personal_info",
            ],
            Kind::Menstruation => &["enhanced_tag"],
            Kind::Activity => &["workout", "session"],
            Kind::Athlete => &["personal_info"],
        }
    }
}

/// The Oura scope a collection needs (`extapi:` form; the legacy name is the part after `:`).
pub fn required_scope(collection: &str) -> &'static str {
    match collection {
        "daily_resilience" => "extapi:stress",
        "daily_spo2" => "extapi:spo2",
        "daily_cardiovascular_age" | "vO2_max" => "extapi:heart_health",
        "workout" => "extapi:workout",
        "session" => "extapi:session",
        "enhanced_tag" | "tag" => "extapi:tag",
        "heartrate" => "extapi:heartrate",
        "personal_info" => "extapi:personal",
        _ => "extapi:daily",
    }
}

/// An inclusive range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DayRange {
    /// Number of days, both ends included.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    pub fn iter(&self) -> impl Iterator<Item = NaiveDate> {
        let (s, n) = (self.start, self.days().max(0));
        (0..n).map(move |i| s + chrono::Duration::days(i))
    }

    /// Consecutive sub-ranges of at most `n` days.
    pub fn windows(&self, n: i64) -> Vec<DayRange> {
        let mut out = Vec::new();
        let mut s = self.start;
        while s <= self.end {
            let e = (s + chrono::Duration::days(n - 1)).min(self.end);
            out.push(DayRange { start: s, end: e });
            s = e + chrono::Duration::days(1);
        }
        out
    }
}

/// Formats accepted for `start_date` / `end_date`, for error messages.
pub const DATE_FORMATS: &str =
    "YYYY-MM-DD (e.g. 2026-06-01), Unix seconds (e.g. 1780272000) or an RFC 3339 date-time";

/// Parse a `start_date`/`end_date` value: a date, Unix seconds (UTC day) or RFC 3339.
pub fn parse_date(param: &str, s: &str) -> Result<NaiveDate, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d);
    }
    if !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit())
        && let Some(d) = s
            .parse::<i64>()
            .ok()
            .and_then(|n| DateTime::<Utc>::from_timestamp(n, 0))
    {
        return Ok(d.date_naive());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Ok(d.date_naive());
    }
    Err(format!(
        "`{param}` = `{}` is not a date: use {DATE_FORMATS}",
        s.chars().take(40).collect::<String>()
    ))
}

/// Parse and check a request's range. `end_date` defaults to `today` (or `start_date` when
/// that is later). Errors are messages for a 400.
pub fn parse_range(
    start: Option<&str>,
    end: Option<&str>,
    today: NaiveDate,
) -> Result<DayRange, String> {
    let start = parse_date(
        "start_date",
        start.ok_or(format!("`start_date` is required: use {DATE_FORMATS}"))?,
    )?;
    let end = match end {
        Some(e) => parse_date("end_date", e)?,
        None => today.max(start),
    };
    if start > end {
        return Err(format!(
            "`start_date` ({start}) is after `end_date` ({end}): swap them"
        ));
    }
    let r = DayRange { start, end };
    if r.days() > MAX_RANGE_DAYS {
        return Err(format!(
            "the range is {} days; at most {MAX_RANGE_DAYS} days (5 years) per request: split it",
            r.days()
        ));
    }
    Ok(r)
}

/// Why history could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    NotConnected(String),
    #[error(
        "Oura refused `{collection}` (403): the user did not grant the scope `{scope}` (or the membership lapsed); reconnect the user with that scope. Oura said: {detail}"
    )]
    Forbidden {
        collection: String,
        scope: String,
        detail: String,
    },
    #[error("Oura rate limit reached; retry after {}s", retry_after.map(|d| d.as_secs()).unwrap_or(60))]
    RateLimited { retry_after: Option<Duration> },
    #[error("Oura: {0}")]
    Oura(String),
    #[error("{0}")]
    Store(String),
    #[error("mapping: {0}")]
    Mapping(String),
}

impl HistoryError {
    /// The HTTP status this failure gets (synchronous answers and failed request rows).
    pub fn http_status(&self) -> u16 {
        match self {
            HistoryError::NotConnected(_) => 404,
            HistoryError::Forbidden { .. } => 403,
            HistoryError::RateLimited { .. } => 429,
            HistoryError::Oura(_) => 502,
            HistoryError::Store(_) => 503,
            HistoryError::Mapping(_) => 500,
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Store(e.to_string())
}

/// How fetches behave on 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRateLimit {
    /// Return [`HistoryError::RateLimited`] (synchronous requests).
    Fail,
    /// Wait `Retry-After` and go on (asynchronous requests, backfills).
    Wait,
}

/// Where a fetch that waits on Oura's 429 says so: a `rate_limit_hit` event over `range`
/// (with `terra_reference`, for asynchronous requests) and the `history_requests` row.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitNotice<'a> {
    pub range: DayRange,
    pub terra_reference: Option<&'a str>,
    pub request: Option<&'a str>,
}

/// How a fetch behaves on Oura's rate limit.
#[derive(Debug, Clone, Copy)]
pub struct FetchMode<'a> {
    pub on_429: OnRateLimit,
    /// With [`OnRateLimit::Wait`]: tell destinations and the request row before waiting.
    pub notice: Option<RateLimitNotice<'a>>,
}

impl FetchMode<'_> {
    /// Synchronous requests: give up with [`HistoryError::RateLimited`].
    pub const SYNC: FetchMode<'static> = FetchMode {
        on_429: OnRateLimit::Fail,
        notice: None,
    };
}

/// Observer of a fetch (progress bars).
pub trait FetchObserver: Send + Sync {
    fn fetched(&self, _documents: usize) {}
    fn waiting(&self, _for_: Duration, _why: &str) {}
}

struct NoObserver;
impl FetchObserver for NoObserver {}

/// Fetch every collection of `kind` for `range` from Oura (all pages) and store the documents.
/// Returns how many documents were fetched.
pub async fn fetch_range(
    conn: &Connector,
    user: &OuraUserRow,
    kind: Kind,
    range: DayRange,
    mode: FetchMode<'_>,
    obs: &dyn FetchObserver,
) -> Result<usize, HistoryError> {
    let mut total = 0;
    for collection in kind.sources() {
        total += fetch_collection(conn, user, collection, range, mode, obs).await?;
    }
    Ok(total)
}

fn day_start(d: NaiveDate) -> Option<Timestamp> {
    Timestamp::midnight(d, FixedOffset::east_opt(0)?)
}

/// Publish `rate_limit_hit` and mark the request row `rate_limited` (failures are logged: the
/// request goes on).
async fn notice_rate_limit(
    conn: &Connector,
    user: &OuraUserRow,
    n: &RateLimitNotice<'_>,
    wait: Duration,
) {
    let retrying_ms = now_ms() + wait.as_millis() as i64;
    let event = (|| {
        let retrying_at = DateTime::<Utc>::from_timestamp_millis(retrying_ms)?.fixed_offset();
        Some(Event::rate_limit_hit(
            terra_user(user),
            day_start(n.range.start)?,
            day_start(n.range.end)?.plus_seconds(86_399)?,
            Timestamp::from(retrying_at),
        ))
    })();
    if let Some(e) = event {
        let published = match e.to_value() {
            Ok(v) => conn
                .engine()
                .publish_value(&v, n.terra_reference.map(str::to_string))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = published {
            tracing::error!(error = %e, "cannot publish rate_limit_hit");
        }
    }
    if let Some(r) = n.request
        && let Err(e) = conn
            .store()
            .history_request_rate_limited(r, retrying_ms)
            .await
    {
        tracing::warn!(error = %e, reference = r, "cannot record the rate limit on the request");
    }
}

async fn fetch_collection(
    conn: &Connector,
    user: &OuraUserRow,
    collection: &str,
    range: DayRange,
    mode: FetchMode<'_>,
    obs: &dyn FetchObserver,
) -> Result<usize, HistoryError> {
    let on_429 = mode.on_429;
    let client = match on_429 {
        OnRateLimit::Fail => conn
            .client()
            .with_priority(Priority::Background)
            .with_max_wait(SYNC_MAX_WAIT),
        OnRateLimit::Wait => conn.client().with_priority(Priority::Background),
    };
    let start = range.start.to_string();
    // A bare end_date excludes that day at Oura: ask up to the next day.
    let end = (range.end + chrono::Duration::days(1)).to_string();
    let mut token = conn
        .api_token(&user.user_id, false)
        .await
        .map_err(HistoryError::NotConnected)?;
    let mut refreshed = false;
    let mut transient = 0u32;
    let mut next: Option<String> = None;
    let mut docs: Vec<(String, String, Option<String>, String)> = Vec::new();
    loop {
        let page = if collection == "personal_info" {
            client
                .personal_info(&token)
                .await
                .and_then(|b| {
                    serde_json::from_slice::<Value>(&b)
                        .map_err(|e| OuraError::Decode(format!("personal_info: {e}")))
                })
                .map(|v| (vec![v], None))
        } else {
            let mut params: Vec<(&str, &str)> = vec![("start_date", &start), ("end_date", &end)];
            if let Some(n) = &next {
                params.push(("next_token", n));
            }
            client.list_page(&token, collection, &params).await
        };
        match page {
            Ok((items, next_token)) => {
                transient = 0;
                obs.fetched(items.len());
                for item in items {
                    let doc = match parse_value(collection, item.clone()) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e, collection, "unreadable Oura document skipped");
                            continue;
                        }
                    };
                    let Some(id) = doc.id().map(str::to_string) else {
                        continue;
                    };
                    docs.push((
                        collection.to_string(),
                        id,
                        doc.day().map(|d| d.to_string()),
                        item.to_string(),
                    ));
                }
                match next_token {
                    Some(t) if collection != "personal_info" => next = Some(t),
                    _ => break,
                }
            }
            Err(OuraError::Unauthorized) if !refreshed => {
                refreshed = true;
                token = conn
                    .api_token(&user.user_id, true)
                    .await
                    .map_err(HistoryError::NotConnected)?;
            }
            Err(OuraError::Forbidden(detail)) => {
                return Err(HistoryError::Forbidden {
                    collection: collection.to_string(),
                    scope: required_scope(collection).to_string(),
                    detail,
                });
            }
            Err(OuraError::RateLimited { retry_after }) => match on_429 {
                OnRateLimit::Fail => return Err(HistoryError::RateLimited { retry_after }),
                OnRateLimit::Wait => {
                    let d = retry_after
                        .unwrap_or(Duration::from_secs(60))
                        .clamp(Duration::from_millis(200), Duration::from_secs(3600));
                    if let Some(n) = &mode.notice {
                        notice_rate_limit(conn, user, n, d).await;
                    }
                    obs.waiting(d, "Oura rate limit (429)");
                    tracing::info!(
                        wait_ms = d.as_millis() as u64,
                        collection,
                        "history: Oura rate limit, waiting Retry-After"
                    );
                    tokio::time::sleep(d).await;
                    if let Some(r) = mode.notice.and_then(|n| n.request)
                        && let Err(e) = conn.store().history_request_resumed(r).await
                    {
                        tracing::warn!(error = %e, reference = r, "cannot record the request's resumption");
                    }
                }
            },
            Err(e) if e.is_transient() && on_429 == OnRateLimit::Wait && transient < 5 => {
                transient += 1;
                let d = Duration::from_secs(2u64 << transient);
                tracing::warn!(error = %e, collection, attempt = transient, "history: transient Oura error; retrying");
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(HistoryError::Oura(e.to_string())),
        }
    }
    let n = docs.len();
    let store = conn.store();
    store
        .oura_upsert_documents(&user.user_id, &docs)
        .await
        .map_err(store_err)?;
    let days: Vec<String> = if collection == "personal_info" {
        vec!["-".into()]
    } else {
        range.iter().map(|d| d.to_string()).collect()
    };
    store
        .oura_mark_fetched(&user.user_id, collection, &days)
        .await
        .map_err(store_err)?;
    Ok(n)
}

/// Were all collections of `kind` fetched for every day of `range` within `freshness`?
pub async fn is_fresh(
    conn: &Connector,
    user_id: &str,
    kind: Kind,
    range: DayRange,
    freshness: Duration,
) -> Result<bool, HistoryError> {
    if freshness.is_zero() {
        return Ok(false);
    }
    let since = now_ms() - freshness.as_millis() as i64;
    for c in kind.sources() {
        let (from, to, want) = if *c == "personal_info" {
            ("-".to_string(), "-".to_string(), 1)
        } else {
            (range.start.to_string(), range.end.to_string(), range.days())
        };
        let n = conn
            .store()
            .oura_fetched_days_since(user_id, c, &from, &to, since)
            .await
            .map_err(store_err)?;
        if n < want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One mapped record: its day (`None` for athlete) and its single-record event (the same
/// JSON a live publish of it would produce).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub day: Option<NaiveDate>,
    pub event: Value,
}

fn mapping(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Mapping(e.to_string())
}

fn to_value(e: &Event) -> Result<Value, HistoryError> {
    e.to_value().map_err(mapping)
}

fn parse_row(r: &HistoryDocRow) -> Option<OuraDocument> {
    match parse_document(&r.data_type, r.body.as_bytes()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "stored Oura document unreadable; skipped");
            None
        }
    }
}

/// Map the stored documents of `range` to `kind` records, as the live flow would.
pub async fn map_range(
    conn: &Connector,
    user: &OuraUserRow,
    kind: Kind,
    range: DayRange,
) -> Result<Vec<Record>, HistoryError> {
    let tuser = terra_user(user);
    let store = conn.store();
    let (from, to) = (range.start.to_string(), range.end.to_string());
    let mut out = Vec::new();
    match kind {
        Kind::Athlete => {
            if let Some(row) = store
                .oura_latest_document(&user.user_id, "personal_info")
                .await
                .map_err(store_err)?
                && let Ok(OuraDocument::PersonalInfo(p)) =
                    parse_document("personal_info", row.body.as_bytes())
            {
                out.push(Record {
                    day: None,
                    event: to_value(&Event::athlete(tuser, normalize::athlete(&p)))?,
                });
            }
        }
        Kind::Sleep => {
            let rows = store
                .oura_documents_between(&user.user_id, &["sleep", "daily_sleep"], &from, &to)
                .await
                .map_err(store_err)?;
            let mut daily_sleep = HashMap::new();
            for r in rows.iter().filter(|r| r.data_type == "daily_sleep") {
                if let Some(OuraDocument::DailySleep(ds)) = parse_row(r) {
                    daily_sleep.entry(ds.day).or_insert(ds);
                }
            }
            for r in rows.iter().filter(|r| r.data_type == "sleep") {
                let Some(OuraDocument::Sleep(s)) = parse_row(r) else {
                    continue;
                };
                if s.is_deleted_or_rejected() {
                    continue;
                }
                let mapped = normalize::sleep(&s, daily_sleep.get(&s.day)).map_err(mapping)?;
                out.push(Record {
                    day: Some(s.day),
                    event: to_value(&Event::sleep(tuser.clone(), vec![mapped]))?,
                });
            }
        }
        Kind::Activity => {
            let rows = store
                .oura_documents_between(&user.user_id, &["workout", "session"], &from, &to)
                .await
                .map_err(store_err)?;
            for r in &rows {
                let (day, a) = match parse_row(r) {
                    Some(OuraDocument::Workout(w)) => (w.day, normalize::workout(&w)),
                    Some(OuraDocument::Session(s)) => (s.day, normalize::session(&s)),
                    _ => continue,
                };
                let a = a.map_err(mapping)?;
                out.push(Record {
                    day: Some(day),
                    event: to_value(&Event::activity(tuser.clone(), vec![a]))?,
                });
            }
        }
        Kind::Daily | Kind::Body | Kind::Menstruation => {
            // Every stored document of each day, as the live day rebuild reads them.
            let rows = store
                .oura_documents_between(&user.user_id, &[], &from, &to)
                .await
                .map_err(store_err)?;
            let mut by_day: BTreeMap<NaiveDate, Vec<&HistoryDocRow>> = BTreeMap::new();
            for r in &rows {
                if let Some(d) = r.day.as_deref().and_then(|d| d.parse().ok()) {
                    by_day.entry(d).or_default().push(r);
                }
            }
            for (day, rows) in by_day {
                let mut docs = DayDocuments::new(day);
                let mut has_daily = false;
                for r in rows {
                    match parse_row(r) {
                        Some(
                            OuraDocument::Sleep(_)
                            | OuraDocument::Workout(_)
                            | OuraDocument::Session(_),
                        )
                        | None => {}
                        Some(d) => {
                            has_daily |=
                                normalize::terra_types_for(d.data_type()).contains(&"daily");
                            if let Err(e) = docs.add(d) {
                                tracing::warn!(error = %e, "stored Oura document skipped in the day rebuild");
                            }
                        }
                    }
                }
                let event = match kind {
                    Kind::Daily if has_daily => Some(Event::daily(
                        tuser.clone(),
                        vec![normalize::daily(&docs).map_err(mapping)?],
                    )),
                    Kind::Body => normalize::body(&docs)
                        .map_err(mapping)?
                        .map(|b| Event::body(tuser.clone(), vec![b])),
                    Kind::Menstruation => normalize::menstruation(&docs)
                        .map_err(mapping)?
                        .map(|m| Event::menstruation(tuser.clone(), vec![m])),
                    _ => None,
                };
                if let Some(e) = event {
                    out.push(Record {
                        day: Some(day),
                        event: to_value(&e)?,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// A key [`strip_samples`] removes.
pub fn is_sample_key(k: &str) -> bool {
    k == "samples" || k.ends_with("_samples") || k.contains("_samples_")
}

/// Remove sample arrays (see the module docs for exactly what).
pub fn strip_samples(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_sample_key(k));
            for x in m.values_mut() {
                strip_samples(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_samples),
        _ => {}
    }
}

fn items_of(kind: Kind, records: &[Record], with_samples: bool) -> Vec<Value> {
    let key = if kind == Kind::Athlete {
        "athlete"
    } else {
        "data"
    };
    let mut items = Vec::new();
    for r in records {
        match r.event.get(key) {
            Some(Value::Array(a)) => items.extend(a.iter().cloned()),
            Some(v) => items.push(v.clone()),
            None => {}
        }
    }
    if !with_samples {
        items.iter_mut().for_each(strip_samples);
    }
    items
}

/// Data events of at most `size` records each (one event for athlete).
pub fn chunk_events(
    kind: Kind,
    user: &TerraUser,
    records: &[Record],
    with_samples: bool,
    size: usize,
) -> Vec<Value> {
    let Some(first) = records.first() else {
        return Vec::new();
    };
    if kind == Kind::Athlete {
        let mut e = first.event.clone();
        if !with_samples && let Some(a) = e.get_mut("athlete") {
            strip_samples(a);
        }
        return vec![e];
    }
    let items = items_of(kind, records, with_samples);
    items
        .chunks(size.max(1))
        .map(|c| {
            let mut e = first.event.clone();
            e["data"] = Value::Array(c.to_vec());
            e["user"] = serde_json::to_value(user).unwrap_or(Value::Null);
            e
        })
        .collect()
}

/// Find the user a request names: `user_id`, else the latest connected user of `reference_id`.
pub async fn find_user(
    conn: &Connector,
    user_id: Option<&str>,
    reference_id: Option<&str>,
) -> Result<Option<OuraUserRow>, HistoryError> {
    let store = conn.store();
    if let Some(id) = user_id {
        return store.oura_user(id).await.map_err(store_err);
    }
    if let Some(r) = reference_id {
        return Ok(store
            .oura_users_by_reference(r)
            .await
            .map_err(store_err)?
            .into_iter()
            .rev()
            .find(|u| u.status == "connected"));
    }
    Ok(None)
}

/// `to_webhook=false`: the Terra body `{"user", "data", "type"}` (athlete:
/// `{"user", "athlete", "type"}`), from stored documents when fresh, else fetched first.
pub async fn history_sync(
    conn: &Connector,
    user: &OuraUserRow,
    kind: Kind,
    range: DayRange,
    with_samples: bool,
) -> Result<Value, HistoryError> {
    let freshness = conn.config().history_freshness;
    if !is_fresh(conn, &user.user_id, kind, range, freshness).await? {
        fetch_range(conn, user, kind, range, FetchMode::SYNC, &NoObserver).await?;
    }
    let records = map_range(conn, user, kind, range).await?;
    let tuser = terra_user(user);
    let user_v = serde_json::to_value(&tuser).map_err(mapping)?;
    if kind == Kind::Athlete {
        let athlete = items_of(kind, &records, with_samples)
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        return Ok(serde_json::json!({"user": user_v, "athlete": athlete, "type": "athlete"}));
    }
    Ok(serde_json::json!({
        "user": user_v,
        "data": items_of(kind, &records, with_samples),
        "type": kind.name(),
    }))
}

/// `to_webhook=true`: record the request (`history_requests`, status `processing`), commit
/// `large_request_processing` first when the range is over [`MAX_SYNC_DAYS`], spawn the fetch
/// and publish, and return the HTTP answer. The outcome (completed, or failed with its reason)
/// lands in the request row.
pub async fn history_async(
    conn: Arc<Connector>,
    user: OuraUserRow,
    kind: Kind,
    range: DayRange,
    with_samples: bool,
) -> Result<(String, Value), HistoryError> {
    let reference = uuid::Uuid::new_v4().to_string();
    let tuser = terra_user(&user);
    let large = range.days() > MAX_SYNC_DAYS;
    conn.store()
        .history_request_create(&NewHistoryRequest {
            reference: &reference,
            origin: "request",
            user_id: &user.user_id,
            data_type: kind.name(),
            start_date: &range.start.to_string(),
            end_date: &range.end.to_string(),
            node: conn.engine().node(),
        })
        .await
        .map_err(store_err)?;
    let answer = if large {
        let v = to_value(&Event::large_request_processing(
            tuser.clone(),
            reference.clone(),
        ))?;
        conn.engine()
            .publish_value(&v, Some(reference.clone()))
            .await
            .map_err(store_err)?;
        v
    } else {
        serde_json::json!({
            "status": "success",
            "type": kind.name(),
            "reference": reference,
            "message": "Request is being processed and will be sent to your destination",
            "user": tuser,
        })
    };
    let r = reference.clone();
    tokio::spawn(async move {
        let result = run_async(&conn, &user, kind, range, with_samples, &r, large).await;
        finish_request(
            &conn,
            &r,
            kind.name(),
            "asynchronous history request",
            &result,
        )
        .await;
    });
    Ok((reference, answer))
}

/// Record how a request ended (and log it; a failure is a warning).
async fn finish_request<T>(
    conn: &Connector,
    reference: &str,
    what: &str,
    label: &str,
    result: &Result<T, HistoryError>,
) {
    let failure = result
        .as_ref()
        .err()
        .map(|e| (e.http_status(), e.to_string()));
    let status = if failure.is_some() {
        "failed"
    } else {
        "completed"
    };
    metrics::counter!("manifold_history_requests_total", "status" => status).increment(1);
    if let Some((code, e)) = &failure {
        tracing::warn!(reference, kind = what, status = code, error = %e, "{label} failed");
    }
    if let Err(e) = conn
        .store()
        .history_request_finish(reference, failure.as_ref().map(|(c, e)| (*c, e.as_str())))
        .await
    {
        tracing::error!(reference, error = %e, "cannot record the outcome of a history request");
    }
}

async fn run_async(
    conn: &Connector,
    user: &OuraUserRow,
    kind: Kind,
    range: DayRange,
    with_samples: bool,
    reference: &str,
    large: bool,
) -> Result<(), HistoryError> {
    let freshness = conn.config().history_freshness;
    if !is_fresh(conn, &user.user_id, kind, range, freshness).await? {
        let mode = FetchMode {
            on_429: OnRateLimit::Wait,
            notice: Some(RateLimitNotice {
                range,
                terra_reference: Some(reference),
                request: Some(reference),
            }),
        };
        fetch_range(conn, user, kind, range, mode, &NoObserver).await?;
    }
    let records = map_range(conn, user, kind, range).await?;
    let tuser = terra_user(user);
    let events = chunk_events(kind, &tuser, &records, with_samples, CHUNK_RECORDS);
    let engine = conn.engine();
    let store = conn.store();
    let n_records = items_of(kind, &records, false).len() as i64;
    store
        .history_request_progress(reference, n_records, Some(events.len() as i64), 0)
        .await
        .map_err(store_err)?;
    if large {
        let v = to_value(&Event::large_request_sending(
            tuser.clone(),
            reference,
            events.len() as i64,
        ))?;
        engine
            .publish_value(&v, Some(reference.to_string()))
            .await
            .map_err(store_err)?;
    }
    for (i, e) in events.iter().enumerate() {
        // Forced: an explicit request is delivered even when identical data was sent before.
        engine
            .publish_value_with(e, Some(reference.to_string()), true)
            .await
            .map_err(store_err)?;
        store
            .history_request_progress(reference, n_records, None, i as i64 + 1)
            .await
            .map_err(store_err)?;
    }
    tracing::info!(
        reference,
        kind = kind.name(),
        payloads = events.len(),
        "asynchronous history request sent"
    );
    Ok(())
}

/// Progress of a backfill.
pub trait BackfillObserver: FetchObserver {
    /// A (kind, day) is finished: `records` mapped, `new_versions` of them stored anew.
    fn day_done(&self, _kind: Kind, _day: NaiveDate, _records: usize, _new_versions: usize) {}
    /// A (kind, day) was already finished by an earlier run.
    fn day_skipped(&self, _kind: Kind, _day: NaiveDate) {}
}

impl BackfillObserver for NoObserver {}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillStats {
    pub documents_fetched: usize,
    pub records: usize,
    /// Payload versions committed (0 when everything was already stored identically).
    pub new_versions: usize,
    pub days_done: usize,
    pub days_skipped: usize,
}

/// Fetch and publish `kinds` over `range` like live data (one record per event, natural keys
/// as live; no `terra-reference`). With `resume`, days finished by an earlier run (persisted
/// per user, type and day) are skipped; every finished day is recorded either way. On Oura's
/// 429 it publishes `rate_limit_hit` for `range` and waits; `request` names its
/// `history_requests` row, if it has one (progress and rate-limit pauses are recorded there).
pub async fn backfill(
    conn: &Connector,
    user: &OuraUserRow,
    kinds: &[Kind],
    range: DayRange,
    resume: bool,
    request: Option<&str>,
    obs: &dyn BackfillObserver,
) -> Result<BackfillStats, HistoryError> {
    let mut stats = BackfillStats::default();
    let store = conn.store();
    let engine = conn.engine();
    let mode = FetchMode {
        on_429: OnRateLimit::Wait,
        notice: Some(RateLimitNotice {
            range,
            terra_reference: None,
            request,
        }),
    };
    for &kind in kinds {
        let done: HashSet<String> = if resume {
            store
                .backfill_done_days(
                    &user.user_id,
                    kind.name(),
                    &range.start.to_string(),
                    &range.end.to_string(),
                )
                .await
                .map_err(store_err)?
        } else {
            HashSet::new()
        };
        let windows = if kind == Kind::Athlete {
            // One record: tracked on the last day of the range.
            vec![DayRange {
                start: range.end,
                end: range.end,
            }]
        } else {
            range.windows(BACKFILL_WINDOW_DAYS)
        };
        for w in windows {
            let todo: Vec<NaiveDate> = w
                .iter()
                .filter(|d| !done.contains(&d.to_string()))
                .collect();
            for d in w.iter().filter(|d| done.contains(&d.to_string())) {
                stats.days_skipped += 1;
                obs.day_skipped(kind, d);
            }
            if todo.is_empty() {
                continue;
            }
            stats.documents_fetched += fetch_range(conn, user, kind, w, mode, obs).await?;
            let records = map_range(conn, user, kind, w).await?;
            for day in todo {
                let mut n = 0;
                let mut new = 0;
                for r in records
                    .iter()
                    .filter(|r| kind == Kind::Athlete || r.day == Some(day))
                {
                    let c = engine
                        .publish_value(&r.event, None)
                        .await
                        .map_err(store_err)?;
                    n += 1;
                    if !c.duplicate {
                        new += 1;
                    }
                }
                store
                    .backfill_mark_done(&user.user_id, kind.name(), &day.to_string(), n as i64)
                    .await
                    .map_err(store_err)?;
                stats.records += n;
                stats.new_versions += new;
                stats.days_done += 1;
                obs.day_done(kind, day, n, new);
            }
            if let Some(r) = request {
                store
                    .history_request_progress(
                        r,
                        stats.records as i64,
                        None,
                        stats.new_versions as i64,
                    )
                    .await
                    .map_err(store_err)?;
            }
        }
    }
    Ok(stats)
}

/// After a user connected: backfill the last `oura.backfill_days` days of every type in a
/// background task (no-op when 0). Each type is one `history_requests` row (origin
/// `connect_backfill`), so a type that fails (e.g. a scope the user did not grant) is visible.
pub fn spawn_connect_backfill(conn: Arc<Connector>, user_id: String) {
    let days = i64::from(conn.config().backfill_days);
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let today = Utc::now().date_naive();
        let range = DayRange {
            start: today - chrono::Duration::days(days - 1),
            end: today,
        };
        let user = match conn.store().oura_user(&user_id).await {
            Ok(Some(u)) => u,
            _ => return,
        };
        // Type by type: a scope the user did not grant only loses that type.
        for kind in Kind::ALL {
            let reference = uuid::Uuid::new_v4().to_string();
            let recorded = conn
                .store()
                .history_request_create(&NewHistoryRequest {
                    reference: &reference,
                    origin: "connect_backfill",
                    user_id: &user.user_id,
                    data_type: kind.name(),
                    start_date: &range.start.to_string(),
                    end_date: &range.end.to_string(),
                    node: conn.engine().node(),
                })
                .await;
            if let Err(e) = &recorded {
                tracing::warn!(user_id, error = %e, "cannot record the backfill after connect");
            }
            let request = recorded.is_ok().then_some(reference.as_str());
            let result = backfill(&conn, &user, &[kind], range, false, request, &NoObserver).await;
            if let Ok(s) = &result {
                tracing::info!(
                    user_id,
                    days,
                    kind = kind.name(),
                    records = s.records,
                    new_versions = s.new_versions,
                    "backfill after connect finished"
                );
            }
            if request.is_some() {
                finish_request(
                    &conn,
                    &reference,
                    kind.name(),
                    "backfill after connect",
                    &result,
                )
                .await;
            } else if let Err(e) = &result {
                tracing::warn!(user_id, kind = kind.name(), error = %e, "backfill after connect failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn dates_and_ranges() {
        let today = d("2026-06-30");
        assert_eq!(
            parse_date("start_date", "2026-06-01").unwrap(),
            d("2026-06-01")
        );
        assert_eq!(
            parse_date("start_date", "1780272000").unwrap(),
            d("2026-06-01")
        );
        assert_eq!(
            parse_date("start_date", "2026-06-01T23:30:00+02:00").unwrap(),
            d("2026-06-01")
        );
        let e = parse_date("start_date", "June 1st").unwrap_err();
        assert!(
            e.contains("YYYY-MM-DD") && e.contains("Unix seconds"),
            "{e}"
        );
        let r = parse_range(Some("2026-06-01"), None, today).unwrap();
        assert_eq!((r.start, r.end, r.days()), (d("2026-06-01"), today, 30));
        assert!(
            parse_range(Some("2026-06-02"), Some("2026-06-01"), today)
                .unwrap_err()
                .contains("after")
        );
        assert!(
            parse_range(Some("2020-01-01"), Some("2026-06-01"), today)
                .unwrap_err()
                .contains("5 years")
        );
        assert!(parse_range(None, None, today).is_err());
        let w = DayRange {
            start: d("2026-06-01"),
            end: d("2026-06-16"),
        }
        .windows(7);
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].start, d("2026-06-15"));
        assert_eq!(w[2].end, d("2026-06-16"));
    }

    #[test]
    fn strips_exactly_the_sample_keys() {
        let mut v = serde_json::json!({
            "hypnogram_samples": [1],
            "MET_data": {"MET_samples": [1], "avg_level": 1.0},
            "heart_rate_data": {"detailed": {"hr_samples": [1], "hrv_samples_rmssd": [1]},
                                "summary": {"avg_hr_bpm": 50}},
            "position_data": {"samples": [1], "center_pos_lat_lng_deg": [1, 2]},
            "samples_count": 3,
        });
        strip_samples(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "MET_data": {"avg_level": 1.0},
                "heart_rate_data": {"detailed": {}, "summary": {"avg_hr_bpm": 50}},
                "position_data": {"center_pos_lat_lng_deg": [1, 2]},
                "samples_count": 3,
            })
        );
    }

    #[test]
    fn chunks_hold_at_most_ten_records() {
        let user: TerraUser =
            serde_json::from_value(serde_json::json!({"user_id": "u", "provider": "OURA"}))
                .unwrap();
        let records: Vec<Record> = (0..23)
            .map(|i| Record {
                day: None,
                event: serde_json::json!({"type": "sleep", "user": {"user_id": "u"},
                    "data": [{"metadata": {"summary_id": format!("s{i}")}, "hr_samples": []}]}),
            })
            .collect();
        let chunks = chunk_events(Kind::Sleep, &user, &records, false, CHUNK_RECORDS);
        let sizes: Vec<usize> = chunks
            .iter()
            .map(|c| c["data"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        assert!(chunks[0]["data"][0].get("hr_samples").is_none());
        assert_eq!(chunks[2]["data"][2]["metadata"]["summary_id"], "s22");
    }
}
