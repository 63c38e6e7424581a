//! Usercollection routes: pagination, single documents, determinism, schema spot-checks.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn pagination_returns_every_document_once() {
    let mut cfg = config();
    cfg.page_size = 4;
    cfg.timeseries_page_size = 100;
    let sim = oura_sim::start(cfg).await;
    let tok = token(&sim, 0, "").await;
    let days = 14;
    for kind in [
        "daily_activity",
        "daily_sleep",
        "sleep",
        "workout",
        "enhanced_tag",
    ] {
        let (all, pages) = collect_all(
            &sim,
            &tok,
            &format!("/v2/usercollection/{kind}"),
            &[("start_date", "2026-06-17"), ("end_date", "2026-07-01")],
        )
        .await;
        let ids: HashSet<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), all.len(), "{kind}: duplicate ids across pages");
        if kind.starts_with("daily_") {
            assert_eq!(all.len(), days, "{kind}");
            assert!(pages >= 4, "{kind}: {pages} pages");
        }
        // Unpaginated truth from the state: counts match.
        let st = sim.sim.state();
        let n = st["users"][0]["document_counts"][kind].as_u64().unwrap() as usize;
        assert_eq!(all.len(), n, "{kind}");
    }
    // end_date as a bare date excludes that day (observed Oura behaviour).
    let (all, _) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/daily_activity",
        &[("start_date", "2026-06-20"), ("end_date", "2026-06-22")],
    )
    .await;
    let days: Vec<&str> = all.iter().map(|d| d["day"].as_str().unwrap()).collect();
    assert_eq!(days, ["2026-06-20", "2026-06-21"]);
    let (all, _) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/daily_activity",
        &[
            ("start_date", "2026-06-20"),
            ("end_date", "2026-06-22T23:59:59"),
        ],
    )
    .await;
    assert_eq!(all.len(), 3);

    // Heart rate: datetime range, pages of 100, no duplicates, ascending.
    let (rows, pages) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/heartrate",
        &[
            ("start_datetime", "2026-06-20T00:00:00+00:00"),
            ("end_datetime", "2026-06-22T00:00:00+00:00"),
        ],
    )
    .await;
    assert!(pages >= 5);
    assert!(rows.len() > 500 && rows.len() < 600, "{}", rows.len());
    let ts: Vec<i64> = rows
        .iter()
        .map(|r| r["timestamp_unix"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]));
    let (latest, _) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/heartrate",
        &[
            ("start_datetime", "2026-06-20T00:00:00+00:00"),
            ("end_datetime", "2026-06-22T00:00:00+00:00"),
            ("latest", "true"),
        ],
    )
    .await;
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0], *rows.last().unwrap());

    // Date-only values on a datetime route → empty page.
    let (all, _) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/heartrate",
        &[
            ("start_datetime", "2026-06-20"),
            ("end_datetime", "2026-06-22"),
        ],
    )
    .await;
    assert!(all.is_empty());

    // Bad next_token → 400; garbage date → empty page.
    let c = client();
    let (st, _) = get_json(
        &c,
        &with_query(
            &sim.url("/v2/usercollection/sleep"),
            &[("next_token", "!!!")],
        ),
        &tok,
    )
    .await;
    assert_eq!(st, 400);
    let (st, body) = get_json(
        &c,
        &with_query(&sim.url("/v2/usercollection/sleep"), &[("start_date", "1")]),
        &tok,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body, serde_json::json!({"data": [], "next_token": null}));
    sim.shutdown().await;
}

#[tokio::test]
async fn single_document_equals_list_entry() {
    let sim = oura_sim::start(config()).await;
    let tok = token(&sim, 1, "").await;
    let c = client();
    for kind in [
        "daily_activity",
        "daily_readiness",
        "daily_sleep",
        "sleep",
        "sleep_time",
        "daily_spo2",
        "daily_stress",
        "daily_resilience",
        "daily_cardiovascular_age",
        "vO2_max",
        "workout",
        "session",
        "enhanced_tag",
        "tag",
        "rest_mode_period",
        "ring_configuration",
    ] {
        let (all, _) = collect_all(&sim, &tok, &format!("/v2/usercollection/{kind}"), &[]).await;
        for d in all.iter().take(3) {
            let id = d["id"].as_str().unwrap();
            let (st, one) = get_json(
                &c,
                &sim.url(&format!("/v2/usercollection/{kind}/{id}")),
                &tok,
            )
            .await;
            assert_eq!(st, 200, "{kind}/{id}");
            assert_eq!(&one, d, "{kind}");
        }
    }
    let (st, body) = get_json(
        &c,
        &sim.url("/v2/usercollection/daily_activity/not-existing"),
        &tok,
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(body["detail"], "Document not found.");
    // Another user's document is not visible.
    let other = token(&sim, 0, "").await;
    let (all, _) = collect_all(&sim, &other, "/v2/usercollection/daily_sleep", &[]).await;
    let id = all[0]["id"].as_str().unwrap();
    let (st, _) = get_json(
        &c,
        &sim.url(&format!("/v2/usercollection/daily_sleep/{id}")),
        &tok,
    )
    .await;
    assert_eq!(st, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_documents() {
    let a = oura_sim::start(config()).await;
    let b = oura_sim::start(config()).await;
    let mut other_cfg = config();
    other_cfg.seed = 8;
    let c3 = oura_sim::start(other_cfg).await;
    assert_eq!(a.sim.users()[0].id, b.sim.users()[0].id);
    assert_ne!(a.sim.users()[0].id, c3.sim.users()[0].id);
    let (ta, tb, tc) = (
        token(&a, 0, "").await,
        token(&b, 0, "").await,
        token(&c3, 0, "").await,
    );
    for kind in ["sleep", "daily_activity", "workout", "daily_readiness"] {
        let p = format!("/v2/usercollection/{kind}");
        let (da, _) = collect_all(&a, &ta, &p, &[]).await;
        let (db, _) = collect_all(&b, &tb, &p, &[]).await;
        let (dc, _) = collect_all(&c3, &tc, &p, &[]).await;
        assert!(!da.is_empty());
        assert_eq!(da, db, "{kind}");
        assert_ne!(da, dc, "{kind}");
    }
    let range = [
        ("start_datetime", "2026-06-25T00:00:00Z"),
        ("end_datetime", "2026-06-26T00:00:00Z"),
    ];
    let (ha, _) = collect_all(&a, &ta, "/v2/usercollection/heartrate", &range).await;
    let (hb, _) = collect_all(&b, &tb, "/v2/usercollection/heartrate", &range).await;
    assert_eq!(ha, hb);
    // A window that ends later still yields the same document for the same day.
    let mut longer = config();
    longer.days = 20;
    longer.end_day = Some(end_day() + chrono::Duration::days(3));
    let d = oura_sim::start(longer).await;
    let td = token(&d, 0, "").await;
    let q = [("start_date", "2026-06-28"), ("end_date", "2026-06-29")];
    let (x, _) = collect_all(&a, &ta, "/v2/usercollection/daily_activity", &q).await;
    let (y, _) = collect_all(&d, &td, "/v2/usercollection/daily_activity", &q).await;
    assert_eq!(x, y);
    for s in [a, b, c3, d] {
        s.shutdown().await;
    }
}

fn has_fields(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(*f).is_some(), "missing {f} in {v}");
    }
}

fn is_sample(v: &Value) {
    has_fields(v, &["interval", "items", "timestamp"]);
    assert!(v["interval"].is_f64());
    assert!(v["items"].is_array());
}

#[tokio::test]
async fn schema_spot_checks_and_scopes() {
    let sim = oura_sim::start(config()).await;
    let tok = token(&sim, 0, "").await;
    let (sleep, _) = collect_all(&sim, &tok, "/v2/usercollection/sleep", &[]).await;
    let long = sleep.iter().find(|s| s["type"] == "long_sleep").unwrap();
    has_fields(
        long,
        &[
            "id",
            "day",
            "bedtime_start",
            "bedtime_end",
            "type",
            "period",
            "time_in_bed",
            "total_sleep_duration",
            "deep_sleep_duration",
            "light_sleep_duration",
            "rem_sleep_duration",
            "awake_time",
            "latency",
            "efficiency",
            "average_heart_rate",
            "lowest_heart_rate",
            "average_hrv",
            "average_breath",
            "restless_periods",
            "heart_rate",
            "hrv",
            "sleep_phase_5_min",
            "movement_30_sec",
            "readiness",
            "low_battery_alert",
            "sleep_algorithm_version",
        ],
    );
    is_sample(&long["heart_rate"]);
    is_sample(&long["hrv"]);
    let start =
        chrono::DateTime::parse_from_rfc3339(long["bedtime_start"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(long["bedtime_end"].as_str().unwrap()).unwrap();
    let tib = long["time_in_bed"].as_i64().unwrap();
    assert_eq!((end - start).num_seconds(), tib);
    let offset = sim.sim.users()[0].utc_offset_secs;
    assert_eq!(start.offset().local_minus_utc(), offset);
    let phases = long["sleep_phase_5_min"].as_str().unwrap();
    assert_eq!(phases.len() as i64, (tib + 299) / 300);
    assert!(phases.chars().all(|c| ('1'..='4').contains(&c)));
    let dur = [
        "deep_sleep_duration",
        "light_sleep_duration",
        "rem_sleep_duration",
    ]
    .iter()
    .map(|k| long[*k].as_i64().unwrap())
    .sum::<i64>();
    assert_eq!(dur, long["total_sleep_duration"].as_i64().unwrap());
    assert_eq!(dur + long["awake_time"].as_i64().unwrap(), tib);
    let hr_ts =
        chrono::DateTime::parse_from_rfc3339(long["heart_rate"]["timestamp"].as_str().unwrap())
            .unwrap();
    assert_eq!(hr_ts, start);

    let (act, _) = collect_all(&sim, &tok, "/v2/usercollection/daily_activity", &[]).await;
    let a = &act[0];
    let class = a["class_5_min"].as_str().unwrap();
    assert_eq!(class.len(), 288);
    assert!(class.chars().all(|c| ('0'..='5').contains(&c)));
    is_sample(&a["met"]);
    assert_eq!(a["met"]["interval"], 60.0);
    assert_eq!(a["met"]["items"].as_array().unwrap().len(), 1440);
    assert!(a["timestamp"].as_str().unwrap().contains("T04:00:00"));
    has_fields(
        &a["contributors"],
        &[
            "meet_daily_targets",
            "move_every_hour",
            "recovery_time",
            "stay_active",
            "training_frequency",
            "training_volume",
        ],
    );
    let secs: i64 = [
        "high_activity_time",
        "medium_activity_time",
        "low_activity_time",
        "sedentary_time",
        "resting_time",
        "non_wear_time",
    ]
    .iter()
    .map(|k| a[*k].as_i64().unwrap())
    .sum();
    assert_eq!(secs, 86_400);
    assert!(a["steps"].as_i64().unwrap() > 1000);

    let (rd, _) = collect_all(&sim, &tok, "/v2/usercollection/daily_readiness", &[]).await;
    has_fields(
        &rd[0]["contributors"],
        &["activity_balance", "hrv_balance", "sleep_regularity"],
    );
    assert!(rd[0]["timestamp"].as_str().unwrap().contains("T00:00:00"));
    let (hr, _) = collect_all(
        &sim,
        &tok,
        "/v2/usercollection/heartrate",
        &[
            ("start_datetime", "2026-06-29T00:00:00Z"),
            ("end_datetime", "2026-06-29T06:00:00Z"),
        ],
    )
    .await;
    has_fields(&hr[0], &["bpm", "source", "timestamp", "timestamp_unix"]);
    assert!(hr[0]["timestamp"].as_str().unwrap().ends_with("+00:00"));
    let (rc, _) = collect_all(&sim, &tok, "/v2/usercollection/ring_configuration", &[]).await;
    has_fields(
        &rc[0],
        &[
            "id",
            "color",
            "design",
            "firmware_version",
            "hardware_type",
            "set_up_at",
            "size",
        ],
    );
    let (spo2, _) = collect_all(&sim, &tok, "/v2/usercollection/daily_spo2", &[]).await;
    assert!(spo2[0]["spo2_percentage"]["average"].is_f64());
    let (res, _) = collect_all(&sim, &tok, "/v2/usercollection/daily_resilience", &[]).await;
    assert!(
        ["limited", "adequate", "solid", "strong", "exceptional"]
            .contains(&res[0]["level"].as_str().unwrap())
    );

    // fields= narrows to required + requested.
    let c = client();
    let (_, body) = get_json(
        &c,
        &with_query(
            &sim.url("/v2/usercollection/daily_activity"),
            &[("fields", "score")],
        ),
        &tok,
    )
    .await;
    let d0 = &body["data"][0];
    assert!(d0.get("score").is_some() && d0.get("steps").is_some());
    assert!(d0.get("class_5_min").is_none());

    // Scope checks: missing scope → 403; unknown collection → 404.
    let daily_only = token(&sim, 0, "daily").await;
    let (st, body) = get_json(&c, &sim.url("/v2/usercollection/workout"), &daily_only).await;
    assert_eq!(st, 403, "{body}");
    let (st, _) = get_json(&c, &sim.url("/v2/usercollection/heartrate"), &daily_only).await;
    assert_eq!(st, 403);
    let (st, me) = get_json(
        &c,
        &sim.url("/v2/usercollection/personal_info"),
        &daily_only,
    )
    .await;
    assert_eq!(st, 200);
    assert!(me["id"].is_string() && me["email"].is_null() && me["age"].is_null());
    let (st, _) = get_json(&c, &sim.url("/v2/usercollection/vo2_max"), &tok).await;
    assert_eq!(st, 404);
    // Sandbox accepts any bearer.
    let (st, body) = get_json(
        &c,
        &sim.url("/v2/sandbox/usercollection/daily_sleep"),
        "anything",
    )
    .await;
    assert_eq!(st, 200);
    assert!(!body["data"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}
