//! Terra's published example payloads (terra-model.md §3.1, §3.2) parse into our types and
//! re-serialise without losing or changing anything.

use manifold_model::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/terra/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn round_trip(original: &Value) -> Event {
    let event: Event = serde_json::from_value(original.clone()).expect("parses");
    let again = serde_json::to_value(&event).unwrap();
    assert_eq!(&again, original, "round trip changed the payload");
    event
}

const EXAMPLES: &[&str] = &[
    "example_activity.json",
    "example_athlete.json",
    "example_body.json",
    "example_daily.json",
    "example_menstruation.json",
    "example_nutrition.json",
    "example_sleep.json",
    "example_sleep_with_samples.json",
];

#[test]
fn every_published_data_example_round_trips_exactly() {
    for name in EXAMPLES {
        let original = fixture(name);
        let event = round_trip(&original);
        assert_eq!(
            event.event_type(),
            original["type"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            event.user().unwrap().user_id,
            "40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad"
        );
    }
}

#[test]
fn sleep_example_lands_in_typed_fields() {
    let Event::Data(DataEvent {
        data: DataPayload::Sleep(items),
        user,
        version,
        ..
    }) = round_trip(&fixture("example_sleep_with_samples.json"))
    else {
        panic!("not a sleep data event")
    };
    assert_eq!(version, "2022-03-16");
    assert_eq!(user.provider, "GARMIN");
    assert_eq!(user.active, Some(true));
    let s = &items[0];
    // Only Terra's own enrichment (which Oura cannot fill) is left untyped.
    assert_eq!(s.extra.keys().collect::<Vec<_>>(), vec!["data_enrichment"]);
    assert_eq!(s.metadata.upload_type, SleepUploadType::Automatic);
    assert_eq!(
        s.metadata.timestamp_localization,
        Some(TimestampLocalization::Local)
    );
    assert_eq!(s.metadata.is_nap, Some(false));
    assert_eq!(
        s.metadata.start_time.to_terra_string(),
        "2026-06-30T23:12:00.000000+01:00"
    );
    let d = s.sleep_durations_data.as_ref().unwrap();
    let asleep = d.asleep.as_ref().unwrap();
    assert_eq!(asleep.duration_rem_sleep_state_seconds, Some(5400.0));
    assert_eq!(asleep.num_rem_events, Some(4));
    assert_eq!(d.awake.as_ref().unwrap().sleep_latency_seconds, Some(900.0));
    assert_eq!(
        d.other.as_ref().unwrap().duration_in_bed_seconds,
        Some(28200.0)
    );
    assert_eq!(d.sleep_efficiency, Some(89.4));
    let hyp = d.hypnogram_samples.as_ref().unwrap();
    assert_eq!(
        hyp.iter().map(|h| h.level.unwrap()).collect::<Vec<_>>(),
        vec![SleepLevel::Awake, SleepLevel::Light, SleepLevel::Deep]
    );
    let hr = s.heart_rate_data.as_ref().unwrap();
    assert_eq!(hr.summary.as_ref().unwrap().resting_hr_bpm, Some(48.0));
    let det = hr.detailed.as_ref().unwrap();
    assert_eq!(det.hr_samples.as_ref().unwrap()[0].bpm, Some(58.0));
    assert_eq!(
        det.hrv_samples_rmssd.as_ref().unwrap()[0].hrv_rmssd,
        Some(55.0)
    );
    assert_eq!(s.temperature_data.as_ref().unwrap().delta, Some(-0.12));
    let r = s.readiness_data.as_ref().unwrap();
    assert_eq!(
        (r.readiness, r.recovery_level),
        (Some(78.0), Some(RecoveryLevel::Ok))
    );
    assert_eq!(s.scores.as_ref().unwrap().sleep, Some(85.0));
    assert_eq!(
        s.device_data.as_ref().unwrap().manufacturer.as_deref(),
        Some("Oura")
    );
    assert_eq!(s.natural_key().as_deref(), Some("3b6f…"));
}

#[test]
fn activity_daily_body_menstruation_athlete_examples_land_in_typed_fields() {
    let Event::Data(DataEvent {
        data: DataPayload::Activity(a),
        ..
    }) = round_trip(&fixture("example_activity.json"))
    else {
        panic!()
    };
    assert_eq!(a[0].metadata.activity_type, ActivityType::Running);
    assert_eq!(a[0].metadata.upload_type, UploadType::Automatic);
    assert_eq!(a[0].natural_key(), "123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(
        a[0].distance_data
            .as_ref()
            .unwrap()
            .summary
            .as_ref()
            .unwrap()
            .steps,
        Some(7902)
    );
    assert!(a[0].extra.is_empty());

    let Event::Data(DataEvent {
        data: DataPayload::Daily(d),
        ..
    }) = round_trip(&fixture("example_daily.json"))
    else {
        panic!()
    };
    assert_eq!(d[0].natural_key(), "2026-07-01");
    assert_eq!(d[0].metadata.upload_type, UploadType::Unknown);
    assert_eq!(d[0].distance_data.as_ref().unwrap().steps, Some(11894));
    assert_eq!(
        d[0].calories_data.as_ref().unwrap().total_burned_calories,
        Some(2450.8)
    );
    assert!(d[0].extra.is_empty());

    let Event::Data(DataEvent {
        data: DataPayload::Body(b),
        ..
    }) = round_trip(&fixture("example_body.json"))
    else {
        panic!()
    };
    let m = &b[0]
        .measurements_data
        .as_ref()
        .unwrap()
        .measurements
        .as_ref()
        .unwrap()[0];
    assert_eq!((m.weight_kg, m.bmi), (Some(72.4), Some(22.6)));
    assert!(b[0].extra.is_empty());

    let Event::Data(DataEvent {
        data: DataPayload::Menstruation(ms),
        ..
    }) = round_trip(&fixture("example_menstruation.json"))
    else {
        panic!()
    };
    let md = ms[0].menstruation_data.as_ref().unwrap();
    assert_eq!(md.current_phase, Some(MenstruationInterval::Period));
    assert_eq!(md.period_start_date.unwrap().to_string(), "2026-06-28");
    assert_eq!(md.day_in_cycle, Some(4));

    let Event::Athlete(at) = round_trip(&fixture("example_athlete.json")) else {
        panic!()
    };
    assert_eq!(at.athlete.first_name.as_deref(), Some("John"));
    assert_eq!(at.athlete.date_of_birth.as_deref(), Some("1991-04-12"));
}

#[test]
fn informational_examples_round_trip_exactly() {
    let all = fixture("informational_events.json");
    let mut seen = Vec::new();
    for original in all.as_array().unwrap() {
        let event = round_trip(original);
        assert!(!event.is_data());
        seen.push(event.event_type().to_owned());
    }
    for t in EVENT_TYPES {
        assert!(seen.iter().any(|s| s == t), "no example for {t}");
    }
}

#[test]
fn documented_normalisations_only() {
    // Non-canonical but valid input: no fractional seconds, `Z`, float-typed integers,
    // explicit nulls. Output: canonical timestamps, integers, nulls omitted.
    let input = json!({"type": "daily", "version": "2022-03-16",
        "user": {"user_id": "u", "provider": "OURA", "scopes": null},
        "data": [{"metadata": {"start_time": "2026-07-01T00:00:00Z",
                               "end_time": "2026-07-02T00:00:00.5+00:00", "upload_type": 1.0},
                  "distance_data": {"steps": 10, "distance_meters": 25200.0, "swimming": null},
                  "future_field": {"x": [1, 2]}}]});
    let event: Event = serde_json::from_value(input).unwrap();
    let out = serde_json::to_value(&event).unwrap();
    assert_eq!(
        out,
        json!({"type": "daily", "version": "2022-03-16",
            "user": {"user_id": "u", "provider": "OURA"},
            "data": [{"metadata": {"start_time": "2026-07-01T00:00:00.000000+00:00",
                                   "end_time": "2026-07-02T00:00:00.500000+00:00", "upload_type": 1},
                      "distance_data": {"steps": 10, "distance_meters": 25200, "swimming": null},
                      "future_field": {"x": [1, 2]}}]})
    );
}

#[test]
fn tombstone_and_constructors() {
    let user = TerraUser::new("u1", "OURA");
    let t = Event::tombstone(
        "sleep",
        user.clone(),
        vec![DeletedRef::SummaryId {
            summary_id: "abc".into(),
        }],
    );
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(
        v,
        json!({"type": "sleep", "user": {"user_id": "u1", "provider": "OURA"},
               "deleted": [{"summary_id": "abc"}], "version": "2022-03-16"})
    );
    assert_eq!(serde_json::from_value::<Event>(v).unwrap(), t);

    let day = chrono::NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    let t = Event::tombstone("daily", user.clone(), vec![DeletedRef::Date { date: day }]);
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["deleted"], json!([{"date": "2026-07-01"}]));
    let Event::Tombstone(back) = serde_json::from_value::<Event>(v).unwrap() else {
        panic!()
    };
    assert_eq!(back.deleted[0].natural_key(), "2026-07-01");

    let empty = Event::sleep(user.clone(), vec![]);
    assert_eq!(serde_json::to_value(&empty).unwrap()["data"], json!([]));
    let d = serde_json::to_value(Event::deauth(user.clone())).unwrap();
    assert_eq!(
        d,
        json!({"type": "deauth", "user": {"user_id": "u1", "provider": "OURA"},
                         "status": "success", "message": "User has deauthenticated"})
    );
    let hc = Event::healthcheck(
        "success",
        Timestamp::parse("2026-07-01T09:00:00Z").unwrap(),
        1.0,
        3,
    );
    assert_eq!(
        serde_json::to_value(hc).unwrap()["trend_percentage"],
        json!(1)
    );
}

#[test]
fn malformed_events_are_errors() {
    for bad in [
        json!([]),
        json!({"type": "sleep", "user": {"user_id": "u", "provider": "OURA"}}),
        json!({"type": "nope", "user": {"user_id": "u", "provider": "OURA"}, "data": []}),
        json!({"type": "sleep", "user": {"provider": "OURA"}, "data": []}),
        json!({"type": "sleep", "user": {"user_id": "u", "provider": "OURA"},
               "data": [{"metadata": {"start_time": "not a time",
                 "end_time": "2026-07-01T07:02:00+01:00", "upload_type": 1}}]}),
    ] {
        let err = serde_json::from_value::<Event>(bad.clone())
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty(), "{bad}");
    }
    let err = serde_json::from_value::<Event>(json!({"type": "sleep",
        "user": {"user_id": "u", "provider": "OURA"},
        "data": [{"metadata": {"start_time": "not a time",
                 "end_time": "2026-07-01T07:02:00+01:00", "upload_type": 1}}]}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a time"), "{err}");
}
