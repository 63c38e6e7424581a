//! Heart-rate polling and the reconcile, against the Oura simulator, delivered to a real
//! webhook receiver; and the config errors of their keys.
//!
//! Expected values are read straight from the simulator with a token it issued itself, never
//! from Manifold.

mod oura_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use manifold_core::{Config, Registry};
use oura_common::*;
use oura_sim::{FaultUpdate, SimConfig, SyncRequest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn ts(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("timestamp `{s}`: {e}"))
}

/// `start_datetime`/`end_datetime` of every heart-rate request in the simulator's log.
fn heartrate_windows(log: &[String]) -> Vec<(DateTime<Utc>, DateTime<Utc>, bool)> {
    log.iter()
        .filter_map(|l| l.strip_prefix("GET "))
        .filter(|p| p.starts_with("/v2/usercollection/heartrate?"))
        .map(|p| {
            let u = url::Url::parse(&format!("http://x{p}")).unwrap();
            let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
            (
                ts(&q["start_datetime"]).to_utc(),
                ts(&q["end_datetime"]).to_utc(),
                q.contains_key("next_token"),
            )
        })
        .collect()
}

/// The body payloads delivered for `day` (its `metadata.start_time` date), newest last.
fn bodies_of_day(all: &[Value], day: NaiveDate) -> Vec<Value> {
    all.iter()
        .filter(|v| is_type(v, "body"))
        .filter(|v| {
            ts(v["data"][0]["metadata"]["start_time"].as_str().unwrap()).date_naive() == day
        })
        .cloned()
        .collect()
}

/// Heart-rate polling: the poller reads the heartrate time series per connected user on its
/// schedule (waiting out a 429), and each day's samples reach the receiver as that day's Terra
/// `body` (local day bounds, every sample the simulator served for the polled window with its
/// bpm and context, summary avg/min/max). Its progress is persistent: after a restart the next
/// poll starts where the last one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartrate_polling_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    heartrate_polling(&format!("sqlite://{}", dir.path().join("m.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartrate_polling_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    heartrate_polling(&db.url).await;
}

async fn heartrate_polling(store_url: &str) {
    init_tracing();
    let store_url = store_url.to_string();
    // data through tomorrow: heart-rate rows exist up to "now" whatever the user's offset
    let sim = oura_sim::start(SimConfig {
        users: 3,
        days: 4,
        end_day: Some(today() + chrono::Duration::days(1)),
        client_secret: SECRET.into(),
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    // pick a user whose offset is not UTC, so local days are really exercised
    let index = sim
        .sim
        .users()
        .iter()
        .position(|u| u.utc_offset_secs != 0)
        .expect("a simulated user with a non-zero UTC offset");
    let offset = FixedOffset::east_opt(sim.sim.users()[index].utc_offset_secs).unwrap();

    // 1. polling off; the backfill after connect stores today's documents (the user's offset)
    let node = start_node(
        &store_url,
        &sim.base_url,
        &receiver_url,
        "backfill_days = 1\nheartrate_poll = \"0s\"\nreconcile_every = \"0s\"",
    )
    .await;
    let user_id = connect_at(&node.base, index, "ref-hr").await;
    received
        .wait_for("today's daily payload from the backfill", WAIT, |v| {
            is_type(v, "daily")
        })
        .await;
    let store = node.engine.store().clone();
    until("the backfill to finish", WAIT, || async {
        let done = store
            .backfill_done_days(&user_id, "athlete", "2000-01-01", "2100-01-01")
            .await
            .unwrap();
        (!done.is_empty()).then_some(())
    })
    .await;
    assert!(
        store
            .oura_poll_state(&user_id, "heartrate")
            .await
            .unwrap()
            .is_none(),
        "polling is off: no schedule"
    );
    assert_eq!(received.count(|v| is_type(v, "body") && has_hr(v)), 0);
    node.shutdown().await;

    // 2. polling every second; the first poll meets a 429 (Retry-After 1 s) and waits it out
    sim.sim
        .update_faults(FaultUpdate {
            rate_limit_next: Some(1),
            retry_after_secs: Some(1),
            ..Default::default()
        })
        .unwrap();
    let node = start_node(
        &store_url,
        &sim.base_url,
        &receiver_url,
        "backfill_days = 1\nheartrate_poll = \"1s\"\nreconcile_every = \"0s\"",
    )
    .await;
    let store = node.engine.store().clone();
    let state = until("the first heart-rate poll", WAIT, || async {
        store
            .oura_poll_state(&user_id, "heartrate")
            .await
            .unwrap()
            .filter(|s| s.last_run_at.is_some())
    })
    .await;
    assert_eq!(state.last_error, None, "{state:?}");
    let cursor = state.cursor_ms.expect("a cursor after the first poll");
    let windows = heartrate_windows(&sim.sim.request_log());
    assert!(
        windows.len() >= 2 && windows[0] == windows[1],
        "the 429'd request is retried as is: {windows:?}"
    );
    let (first_start, first_end, _) = windows[0];
    let span = first_end - first_start;
    assert!(
        span >= chrono::Duration::hours(24) && span < chrono::Duration::hours(25),
        "the first poll reads the last 24 h: {span}"
    );

    // what the simulator holds for the polled window, read independently
    let token = sim_token(&sim, index);
    let truth = sim_list(
        &sim,
        &token,
        "heartrate",
        &[
            ("start_datetime", first_start.to_rfc3339()),
            ("end_datetime", first_end.to_rfc3339()),
        ],
    )
    .await;
    assert!(
        truth.len() > 200,
        "the simulator served {} rows",
        truth.len()
    );
    let newest = truth
        .iter()
        .map(|r| r["timestamp_unix"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(cursor, newest, "the cursor is the newest sample seen");
    let mut by_day: BTreeMap<NaiveDate, Vec<(DateTime<Utc>, f64, String)>> = BTreeMap::new();
    for r in &truth {
        let t = ts(r["timestamp"].as_str().unwrap());
        by_day
            .entry(t.with_timezone(&offset).date_naive())
            .or_default()
            .push((
                t.to_utc(),
                r["bpm"].as_f64().unwrap(),
                r["source"].as_str().unwrap().to_string(),
            ));
    }
    assert!(!by_day.is_empty());
    for (day, rows) in &by_day {
        // the body the first poll published (a later one may hold a newer sample too)
        let v = received
            .wait_for(&format!("the body of {day} with heart rate"), WAIT, |v| {
                has_hr(v)
                    && bodies_of_day(std::slice::from_ref(v), *day).len() == 1
                    && hr_times(v).iter().all(|t| *t < first_end)
            })
            .await;
        let b = &v["data"][0];
        assert_eq!(v["user"]["user_id"], user_id.as_str());
        // local day bounds in the user's offset
        let start = ts(b["metadata"]["start_time"].as_str().unwrap());
        assert_eq!(start.offset(), &offset, "{}", b["metadata"]);
        assert_eq!(start.time(), chrono::NaiveTime::MIN);
        let samples = b["heart_data"]["heart_rate_data"]["detailed"]["hr_samples"]
            .as_array()
            .unwrap();
        let got: Vec<(DateTime<Utc>, f64)> = samples
            .iter()
            .map(|s| {
                (
                    ts(s["timestamp"].as_str().unwrap()).to_utc(),
                    s["bpm"].as_f64().unwrap(),
                )
            })
            .collect();
        let mut want: Vec<(DateTime<Utc>, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
        want.sort_by_key(|r| r.0);
        assert_eq!(got, want, "hr_samples of {day}");
        for (s, r) in samples.iter().zip({
            let mut r = rows.clone();
            r.sort_by_key(|x| x.0);
            r
        }) {
            let expect = match r.2.as_str() {
                "workout" => Some(1),
                "rest" | "sleep" | "session" => Some(2),
                _ => None,
            };
            assert_eq!(
                s["context"].as_i64(),
                expect,
                "context of a `{}` sample",
                r.2
            );
            assert_eq!(
                ts(s["timestamp"].as_str().unwrap()).offset(),
                &offset,
                "samples carry the local offset"
            );
        }
        let bpm: Vec<f64> = want.iter().map(|r| r.1).collect();
        let summary = &b["heart_data"]["heart_rate_data"]["summary"];
        let min = bpm.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = bpm.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(summary["min_hr_bpm"].as_f64(), Some(min));
        assert_eq!(summary["max_hr_bpm"].as_f64(), Some(max));
        let avg = bpm.iter().sum::<f64>() / bpm.len() as f64;
        assert!((summary["avg_hr_bpm"].as_f64().unwrap() - avg).abs() < 0.01);
    }
    // later polls start at the cursor
    let state = until("a second poll", WAIT, || async {
        store
            .oura_poll_state(&user_id, "heartrate")
            .await
            .unwrap()
            .filter(|s| s.last_run_at > state.last_run_at)
    })
    .await;
    let windows = heartrate_windows(&sim.sim.request_log());
    let later = windows
        .iter()
        .find(|w| w.0 != first_start)
        .expect("a later poll");
    assert_eq!(later.0.timestamp(), cursor / 1000, "{windows:?}");
    let _ = state;
    node.shutdown().await;
    // the cursor as persisted at shutdown, read with a store of our own
    let cursor = {
        let s = manifold_core::Store::open(&store_url, 2).await.unwrap();
        let c = s
            .oura_poll_state(&user_id, "heartrate")
            .await
            .unwrap()
            .unwrap()
            .cursor_ms
            .unwrap();
        s.close().await;
        c
    };

    // 3. after a restart the first poll starts at the persisted cursor (nothing refetched)
    let before = heartrate_windows(&sim.sim.request_log()).len();
    let bodies_before = received.count(|v| is_type(v, "body"));
    let node = start_node(
        &store_url,
        &sim.base_url,
        &receiver_url,
        "backfill_days = 1\nheartrate_poll = \"1s\"\nreconcile_every = \"0s\"",
    )
    .await;
    let windows = until("a poll after the restart", WAIT, || async {
        let w = heartrate_windows(&sim.sim.request_log());
        (w.len() > before).then_some(w)
    })
    .await;
    let (start, end, _) = windows[before];
    assert_eq!(
        start.timestamp(),
        cursor / 1000,
        "the poll after a restart resumes at the stored cursor"
    );
    assert!(
        end - start < chrono::Duration::minutes(5),
        "{start} .. {end}"
    );
    // nothing new (the simulator's next sample is up to 5 minutes away) → no new body, unless
    // a new sample did arrive meanwhile, which then must be in today's body
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new_rows = sim_list(
        &sim,
        &token,
        "heartrate",
        &[
            (
                "start_datetime",
                DateTime::from_timestamp_millis(cursor + 1)
                    .unwrap()
                    .to_rfc3339(),
            ),
            ("end_datetime", Utc::now().to_rfc3339()),
        ],
    )
    .await;
    if new_rows.is_empty() {
        assert_eq!(received.count(|v| is_type(v, "body")), bodies_before);
    }
    node.shutdown().await;
    sim.shutdown().await;
}

fn hr_times(v: &Value) -> Vec<DateTime<Utc>> {
    v["data"][0]["heart_data"]["heart_rate_data"]["detailed"]["hr_samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["timestamp"].as_str())
                .map(|s| ts(s).to_utc())
                .collect()
        })
        .unwrap_or_default()
}

fn has_hr(v: &Value) -> bool {
    v["data"][0]["heart_data"]["heart_rate_data"]["detailed"]["hr_samples"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

fn sleep_id(v: &Value) -> Option<&str> {
    v["data"][0]["metadata"]["summary_id"].as_str()
}

/// The reconcile: documents created, changed and deleted at the simulator WITHOUT any
/// notification (subscriptions exist; the simulator is told not to notify) reach the receiver
/// as Terra payloads with the simulator's content, under the same natural keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    reconcile_delivers_what_notifications_missed(&format!(
        "sqlite://{}",
        dir.path().join("m.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    reconcile_delivers_what_notifications_missed(&db.url).await;
}

async fn reconcile_delivers_what_notifications_missed(store_url: &str) {
    init_tracing();
    let store_url = store_url.to_string();
    let sim = oura_sim::start(SimConfig {
        users: 2,
        days: 5,
        end_day: Some(today()),
        client_secret: SECRET.into(),
        delivery_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    let node = start_node(
        &store_url,
        &sim.base_url,
        &receiver_url,
        "backfill_days = 0\nheartrate_poll = \"0s\"\nreconcile_every = \"1s\"\nreconcile_days = 2",
    )
    .await;
    let subs = node
        .connector
        .sync_subscriptions(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert!(!subs.is_empty());
    let user_id = connect_at(&node.base, 0, "ref-reconcile").await;
    let store = node.engine.store().clone();
    let token = sim_token(&sim, 0);
    let (first, last) = (today() - chrono::Duration::days(2), today());
    let window = [
        ("start_date", first.to_string()),
        ("end_date", (last + chrono::Duration::days(1)).to_string()),
    ];

    // the first run fills the window from nothing (no backfill, no notifications)
    let first_run = until("the first reconcile", WAIT, || async {
        store
            .oura_poll_state(&user_id, "reconcile")
            .await
            .unwrap()
            .filter(|s| s.last_run_at.is_some())
    })
    .await;
    assert_eq!(first_run.last_error, None);
    let sleeps = sim_list(&sim, &token, "sleep", &window).await;
    assert!(!sleeps.is_empty());
    for s in &sleeps {
        let id = s["id"].as_str().unwrap();
        let v = received
            .wait_for(&format!("sleep {id}"), WAIT, |v| {
                is_type(v, "sleep") && sleep_id(v) == Some(id)
            })
            .await;
        assert_sleep_matches(&v, s);
    }
    let activity_today = sim_list(&sim, &token, "daily_activity", &window)
        .await
        .into_iter()
        .find(|d| d["day"] == today().to_string())
        .expect("today's daily_activity at the simulator");
    received
        .wait_for("today's daily", WAIT, |v| {
            is_type(v, "daily") && daily_steps(v, today()) == activity_today["steps"].as_i64()
        })
        .await;

    // silent changes: an update, a create, a delete — the simulator notifies nobody
    let deliveries_before = sim.sim.deliveries().len();
    let silently = |data_type: &str, op: &str, day: Option<NaiveDate>, object: Option<&str>| {
        let req = SyncRequest {
            user: json!(0),
            data_type: data_type.into(),
            day,
            operation: Some(op.into()),
            object_id: object.map(str::to_string),
        };
        let sim = &sim;
        async move { sim.sim.sync_silently(req).await.unwrap() }
    };
    let updated_sleep = sleeps.last().unwrap()["id"].as_str().unwrap().to_string();
    let out = silently("sleep", "update", None, Some(&updated_sleep)).await;
    assert_eq!(out.notified_subscriptions, 0);
    let workout = silently("workout", "create", Some(today()), None)
        .await
        .event
        .object_id;
    // a sleep strictly after the window's first day, other than the updated one
    let deleted = sleeps
        .iter()
        .filter(|s| s["day"].as_str().unwrap() > first.to_string().as_str())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .find(|id| *id != updated_sleep)
        .expect("a second sleep inside the window");
    silently("sleep", "delete", None, Some(&deleted)).await;
    silently("daily_activity", "update", Some(today()), None).await;
    assert_eq!(
        sim.sim.deliveries().len(),
        deliveries_before,
        "the simulator sent no notification"
    );

    // the updated sleep: same summary_id (natural key), the simulator's new content
    let new_sleep = sim_doc(&sim, &token, "sleep", &updated_sleep).await;
    let v = received
        .wait_for("the updated sleep", WAIT, |v| {
            is_type(v, "sleep")
                && sleep_id(v) == Some(updated_sleep.as_str())
                && v["data"][0]["metadata"]["start_time"].as_str().map(ts)
                    == new_sleep["bedtime_start"].as_str().map(ts)
                && sleep_asleep(v) == new_sleep["total_sleep_duration"].as_f64()
        })
        .await;
    assert_sleep_matches(&v, &new_sleep);
    // the created workout
    let w = sim_doc(&sim, &token, "workout", &workout).await;
    let v = received
        .wait_for("the created workout", WAIT, |v| {
            is_type(v, "activity") && sleep_id(v) == Some(workout.as_str())
        })
        .await;
    let a = &v["data"][0];
    assert_eq!(
        a["metadata"]["start_time"].as_str().map(ts),
        w["start_datetime"].as_str().map(ts)
    );
    assert_eq!(
        a["calories_data"]["total_burned_calories"].as_f64(),
        w["calories"].as_f64()
    );
    // the deleted sleep: a tombstone
    received
        .wait_for("the tombstone of the deleted sleep", WAIT, |v| {
            is_type(v, "sleep")
                && v["deleted"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["summary_id"] == deleted.as_str()))
        })
        .await;
    // today's daily rebuilt with the changed activity
    let new_activity = sim_list(&sim, &token, "daily_activity", &window)
        .await
        .into_iter()
        .find(|d| d["day"] == today().to_string())
        .unwrap();
    assert_ne!(
        new_activity, activity_today,
        "the update changed the document"
    );
    received
        .wait_for("today's daily with the new steps", WAIT, |v| {
            is_type(v, "daily") && daily_steps(v, today()) == new_activity["steps"].as_i64()
        })
        .await;
    // nothing came through the webhook intake
    assert!(store.oura_notifications(100).await.unwrap().is_empty());

    // a run with nothing new publishes nothing
    let n = received.all().len();
    let last_run = store
        .oura_poll_state(&user_id, "reconcile")
        .await
        .unwrap()
        .unwrap()
        .last_run_at;
    until("two more reconcile runs", WAIT, || async {
        let s = store
            .oura_poll_state(&user_id, "reconcile")
            .await
            .unwrap()
            .unwrap();
        (s.last_run_at > last_run.map(|t| t + 1000)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let extra: BTreeSet<String> = received.all()[n..]
        .iter()
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(extra.is_empty(), "an idle reconcile published {extra:?}");
    node.shutdown().await;
    sim.shutdown().await;
}

fn sleep_asleep(v: &Value) -> Option<f64> {
    v["data"][0]["sleep_durations_data"]["asleep"]["duration_asleep_state_seconds"].as_f64()
}

fn daily_steps(v: &Value, day: NaiveDate) -> Option<i64> {
    let d = &v["data"][0];
    (ts(d["metadata"]["start_time"].as_str()?).date_naive() == day)
        .then(|| d["distance_data"]["steps"].as_i64())
        .flatten()
}

fn assert_sleep_matches(v: &Value, doc: &Value) {
    let s = &v["data"][0];
    assert_eq!(s["metadata"]["summary_id"], doc["id"]);
    assert_eq!(
        s["metadata"]["start_time"].as_str().map(ts),
        doc["bedtime_start"].as_str().map(ts)
    );
    assert_eq!(
        s["metadata"]["end_time"].as_str().map(ts),
        doc["bedtime_end"].as_str().map(ts)
    );
    if let Some(total) = doc["total_sleep_duration"].as_f64() {
        assert_eq!(sleep_asleep(v), Some(total));
    }
}

// ----------------------------------------------------------------- config errors

fn config_errors(extra_oura: &str) -> Vec<String> {
    let mut registry = Registry::new();
    registry.register(manifold_webhook::WebhookFactory);
    let text = config_text(
        "127.0.0.1:0",
        "sqlite://:memory:",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3/hook",
        extra_oura,
    );
    match Config::from_str(&text, "manifold.toml", &registry, &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|i| i.to_string()).collect(),
    }
}

/// The line of `key` in the config text built with `extra_oura`.
fn line_of(extra_oura: &str, key: &str) -> usize {
    config_text(
        "127.0.0.1:0",
        "sqlite://:memory:",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3/hook",
        extra_oura,
    )
    .lines()
    .position(|l| l.trim_start().starts_with(&format!("{key} =")))
    .unwrap()
        + 1
}

#[test]
fn polling_keys_are_checked_with_file_line_key_and_fix() {
    // defaults, and "0s" switching both off, are valid
    assert_eq!(config_errors(""), Vec::<String>::new());
    assert_eq!(
        config_errors("heartrate_poll = \"0s\"\nreconcile_every = \"0s\""),
        Vec::<String>::new()
    );
    assert_eq!(
        config_errors("heartrate_poll = \"5m\"\nreconcile_every = \"30m\"\nreconcile_days = 7"),
        Vec::<String>::new()
    );

    let extra = "heartrate_poll = \"250ms\"";
    let l = line_of(extra, "heartrate_poll");
    assert_eq!(
        config_errors(extra),
        [format!(
            "manifold.toml:{l}: oura.heartrate_poll: `250ms` is too short: it must be 0s (off) or at least 1s; use e.g. \"15m\", or \"0s\" to turn it off"
        )]
    );

    let extra = "reconcile_every = \"10ms\"";
    let l = line_of(extra, "reconcile_every");
    assert_eq!(
        config_errors(extra),
        [format!(
            "manifold.toml:{l}: oura.reconcile_every: `10ms` is too short: it must be 0s (off) or at least 1s; use e.g. \"1h\", or \"0s\" to turn it off"
        )]
    );

    for days in [0, 31] {
        let extra = format!("reconcile_days = {days}");
        let l = line_of(&extra, "reconcile_days");
        assert_eq!(
            config_errors(&extra),
            [format!(
                "manifold.toml:{l}: oura.reconcile_days: is {days}: it must be between 1 and 30; use e.g. 2 (today and the 2 days before); turn the reconcile off with reconcile_every = \"0s\""
            )]
        );
    }

    // not a duration / not a number: the parser's message, still at the key's line
    let extra = "heartrate_poll = \"often\"";
    let l = line_of(extra, "heartrate_poll");
    let e = config_errors(extra);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("manifold.toml:{l}: oura.heartrate_poll: "))
            && e[0].contains("is not a duration"),
        "{e:?}"
    );
    let extra = "reconcile_days = \"two\"";
    let l = line_of(extra, "reconcile_days");
    let e = config_errors(extra);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("manifold.toml:{l}: oura.reconcile_days: ")),
        "{e:?}"
    );
}
