//! Property tests: random valid Oura documents never panic, always map, and the Terra output
//! re-parses into our types unchanged; random junk in any field is an error, not a panic.

use manifold_model::{Event, TerraUser};
use manifold_oura::normalize::{self, DayDocuments};
use manifold_oura::{OuraDocument, parse_document};
use proptest::prelude::*;
use serde_json::{Value, json};

fn ts(days: i64, secs: i64, offset_min: i32) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let t = base + chrono::Duration::days(days) + chrono::Duration::seconds(secs);
    let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
    chrono::TimeZone::from_local_datetime(&off, &t)
        .unwrap()
        .to_rfc3339()
}

fn opt_num() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (0.0f64..100_000.0).prop_map(|x| json!(x)),
        (0i64..100_000).prop_map(|x| json!(x))
    ]
}

fn sample(len: usize) -> impl Strategy<Value = Value> {
    (
        1.0f64..600.0,
        prop::collection::vec(prop::option::of(-50.0f64..250.0), 0..len),
    )
        .prop_map(|(interval, items)| json!({"interval": interval, "items": items}))
}

fn sleep_doc() -> impl Strategy<Value = Value> {
    (
        (0i64..3000, 0i64..86_400, -12 * 60..14 * 60i32, 0i64..60_000),
        "[1-4]{0,200}",
        prop::option::of(sample(200)),
        prop::option::of(sample(200)),
        prop::sample::select(vec![
            json!("long_sleep"),
            json!("sleep"),
            json!("late_nap"),
            json!("rest"),
            Value::Null,
        ]),
        prop::collection::vec(opt_num(), 12),
        prop::option::of((opt_num(), opt_num())),
    )
        .prop_map(
            |((d, s, off, tib), phases, hr, hrv, kind, nums, readiness)| {
                let start = ts(d, s, off);
                let mut doc = json!({
                    "id": format!("sleep-{d}-{s}"), "day": ts(d, s + tib, off)[..10],
                    "bedtime_start": start, "bedtime_end": ts(d, s + tib, off),
                    "type": kind, "sleep_phase_5_min": phases, "time_in_bed": tib,
                });
                let names = [
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
                ];
                for (n, v) in names.iter().zip(nums) {
                    doc[*n] = v;
                }
                if let Some(mut h) = hr {
                    h["timestamp"] = json!(start);
                    doc["heart_rate"] = h;
                }
                if let Some(mut h) = hrv {
                    h["timestamp"] = json!(start);
                    doc["hrv"] = h;
                }
                if let Some((score, dev)) = readiness {
                    doc["readiness"] =
                        json!({"score": score, "temperature_deviation": dev, "contributors": {}});
                }
                doc
            },
        )
}

fn daily_activity_doc() -> impl Strategy<Value = Value> {
    (
        (0i64..3000, -12 * 60..14 * 60i32),
        "[0-5]{0,300}",
        prop::option::of(sample(1500)),
        prop::collection::vec(opt_num(), 12),
    )
        .prop_map(|((d, off), classes, met, nums)| {
            let start = ts(d, 4 * 3600, off);
            let mut doc = json!({"id": format!("da-{d}"), "day": start[..10], "timestamp": start,
                                 "class_5_min": classes});
            let names = [
                "score",
                "steps",
                "active_calories",
                "total_calories",
                "equivalent_walking_distance",
                "high_activity_time",
                "medium_activity_time",
                "low_activity_time",
                "sedentary_time",
                "resting_time",
                "non_wear_time",
                "average_met_minutes",
            ];
            for (n, v) in names.iter().zip(nums) {
                doc[*n] = v;
            }
            if let Some(mut m) = met {
                m["timestamp"] = json!(start);
                doc["met"] = m;
            }
            doc
        })
}

fn reparses(e: Event) {
    let v = serde_json::to_value(&e).unwrap();
    let back: Event = serde_json::from_value(v.clone()).expect("output re-parses");
    assert_eq!(serde_json::to_value(&back).unwrap(), v);
}

fn user() -> TerraUser {
    TerraUser::new("u", "OURA")
}

fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(|v| json!(v)),
        Just(json!({"a": 1})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_sleep_maps_and_reparses(doc in sleep_doc()) {
        let parsed = parse_document("sleep", &serde_json::to_vec(&doc).unwrap());
        let Ok(OuraDocument::Sleep(s)) = parsed else {
            panic!("valid sleep rejected: {parsed:?}");
        };
        let out = normalize::sleep(&s, None).unwrap();
        let hyp = out.sleep_durations_data.as_ref().and_then(|d| d.hypnogram_samples.as_ref());
        let phases = s.sleep_phase_5_min.as_deref().unwrap_or("");
        // Never more samples than phases, and none at or after bedtime_end.
        prop_assert!(hyp.map_or(0, Vec::len) <= phases.len());
        for h in hyp.into_iter().flatten() {
            prop_assert!(h.timestamp.unwrap() < s.bedtime_end);
        }
        reparses(Event::sleep(user(), vec![out]));
    }

    #[test]
    fn random_valid_daily_activity_maps_and_reparses(doc in daily_activity_doc()) {
        let parsed = parse_document("daily_activity", &serde_json::to_vec(&doc).unwrap());
        let Ok(OuraDocument::DailyActivity(a)) = parsed else {
            panic!("valid daily_activity rejected: {parsed:?}");
        };
        let classes = a.class_5_min.clone().unwrap_or_default();
        let mut day = DayDocuments::new(a.day);
        day.daily_activity = Some(a);
        let out = normalize::daily(&day).unwrap();
        let n = out.active_durations_data.as_ref()
            .and_then(|d| d.activity_levels_samples.as_ref()).map_or(0, Vec::len);
        prop_assert_eq!(n, classes.len());
        reparses(Event::daily(user(), vec![out]));
    }

    #[test]
    fn junk_in_any_field_is_an_error_or_maps_never_panics(
        doc in sleep_doc(),
        field in prop::sample::select(vec!["id", "day", "bedtime_start", "bedtime_end", "type",
            "sleep_phase_5_min", "heart_rate", "hrv", "efficiency", "readiness", "time_in_bed"]),
        value in junk(),
    ) {
        let mut doc = doc;
        doc[field] = value;
        if let Ok(OuraDocument::Sleep(s)) = parse_document("sleep", &serde_json::to_vec(&doc).unwrap()) {
            reparses(Event::sleep(user(), vec![normalize::sleep(&s, None).unwrap()]));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), t in prop::sample::select(manifold_oura::types::SUPPORTED_DATA_TYPES.to_vec())) {
        let _ = parse_document(t, &bytes);
    }
}
