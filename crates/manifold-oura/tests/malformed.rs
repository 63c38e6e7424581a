//! Bad input: unknown fields are ignored, missing optional fields are `None`, and malformed
//! documents are an `Err(MappingError)` naming the field — never a panic or partial output.

mod common;

use common::*;
use manifold_model::TerraUser;
use manifold_oura::normalize::{self, DayDocuments};
use manifold_oura::{MappingError, OuraDocument, parse_collection, parse_document};
use serde_json::{Value, json};

fn sleep_json() -> Value {
    serde_json::from_slice(&oura_bytes("sleep.json")).unwrap()
}

fn err_field(data_type: &str, v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap();
    let e = parse_document(data_type, &bytes).expect_err("must be rejected");
    assert!(e.to_string().contains(data_type), "{e}");
    e.field()
        .unwrap_or_else(|| panic!("no field in {e}"))
        .to_owned()
}

#[test]
fn bad_timestamp_names_the_field() {
    let mut v = sleep_json();
    v["bedtime_start"] = json!("2022-07-12 soon");
    assert_eq!(err_field("sleep", &v), "bedtime_start");
    let mut v = sleep_json();
    v["heart_rate"]["timestamp"] = json!("yesterday");
    assert_eq!(err_field("sleep", &v), "heart_rate.timestamp");
    let mut v = sleep_json();
    v["day"] = json!("2022-13-45");
    assert_eq!(err_field("sleep", &v), "day");
}

#[test]
fn wrong_type_names_the_field() {
    let mut v = sleep_json();
    v["time_in_bed"] = json!("30000");
    assert_eq!(err_field("sleep", &v), "time_in_bed");
    let mut v = sleep_json();
    v["heart_rate"]["items"][3] = json!("fast");
    assert_eq!(err_field("sleep", &v), "heart_rate.items[3]");
    let mut v = sleep_json();
    v["readiness"]["score"] = json!(true);
    assert_eq!(err_field("sleep", &v), "readiness.score");
    let mut v = serde_json::from_slice::<Value>(&oura_bytes("daily_activity.json")).unwrap();
    v["steps"] = json!({"n": 1});
    assert_eq!(err_field("daily_activity", &v), "steps");
}

#[test]
fn missing_required_field_names_the_field() {
    let mut v = sleep_json();
    v.as_object_mut().unwrap().remove("bedtime_end");
    assert_eq!(err_field("sleep", &v), "bedtime_end");
    let mut v = sleep_json();
    v["hrv"].as_object_mut().unwrap().remove("interval");
    assert_eq!(err_field("sleep", &v), "hrv.interval");
}

#[test]
fn semantic_errors_name_the_field() {
    let mut v = sleep_json();
    v["sleep_phase_5_min"] = json!("1234x");
    assert_eq!(err_field("sleep", &v), "sleep_phase_5_min");
    let mut v = sleep_json();
    v["heart_rate"]["interval"] = json!(0);
    assert_eq!(err_field("sleep", &v), "heart_rate.interval");
    let mut v = sleep_json();
    v["bedtime_end"] = json!("2022-07-11T09:25:14-07:00");
    assert_eq!(err_field("sleep", &v), "bedtime_end");
    let mut v = serde_json::from_slice::<Value>(&oura_bytes("daily_activity.json")).unwrap();
    v["class_5_min"] = json!("0123456");
    assert_eq!(err_field("daily_activity", &v), "class_5_min");
    // Oura's own documented workout example ends before it starts.
    let original = json!({"id":"8f9a5221-639e-4a85-81cb-4065ef23f979","activity":"cycling","calories":300,
        "day":"2021-01-01","distance":13500.5,"end_datetime":"2021-01-01T01:00:00.000000+00:00",
        "intensity":"moderate","label":null,"source":"manual",
        "start_datetime":"2021-01-01T01:30:00.000000+00:00"});
    assert_eq!(err_field("workout", &original), "end_datetime");
}

#[test]
fn unknown_fields_ignored_and_missing_optionals_are_none() {
    let mut v = sleep_json();
    v["brand_new_field"] = json!({"nested": [1, 2, 3]});
    v["heart_rate"]["future"] = json!("x");
    let doc = parse_document("sleep", &serde_json::to_vec(&v).unwrap()).unwrap();
    let OuraDocument::Sleep(s) = doc else {
        panic!()
    };
    assert_eq!(s.lowest_heart_rate, Some(48.0));

    let minimal = json!({"id": "s1", "day": "2022-07-12", "bedtime_start": "2022-07-12T01:05:14-07:00",
                         "bedtime_end": "2022-07-12T01:35:14-07:00"});
    let OuraDocument::Sleep(s) =
        parse_document("sleep", &serde_json::to_vec(&minimal).unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            s.heart_rate.is_none(),
            s.sleep_phase_5_min.is_none(),
            s.efficiency
        ),
        (true, true, None)
    );
    let out = serde_json::to_value(normalize::sleep(&s, None).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"start_time": "2022-07-12T01:05:14.000000-07:00",
                            "end_time": "2022-07-12T01:35:14.000000-07:00", "summary_id": "s1",
                            "upload_type": 2, "timestamp_localization": 1},
               "device_data": {"name": "Oura Ring", "manufacturer": "Oura"}})
    );
}

#[test]
fn other_errors() {
    assert!(matches!(
        parse_document("ring_configuration", b"{}"),
        Err(MappingError::UnsupportedDataType(_))
    ));
    assert!(parse_document("sleep", b"{not json").is_err());
    assert!(parse_document("personal_info", br#"{"id": "x"} trailing"#).is_err());
    let e = parse_collection(
        "heartrate",
        br#"{"data": [{"bpm": 60, "timestamp": "2021-01-01T01:02:03+00:00"}, {"bpm": "sixty", "timestamp": "2021-01-01T01:02:03+00:00"}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("data[1].bpm"));
    // vo2_max is accepted as an alias of vO2_max (the webhook spelling).
    assert!(parse_document("vo2_max", &oura_bytes("vO2_max.json")).is_ok());

    let mut day = DayDocuments::new("2021-11-27".parse().unwrap());
    let e = day
        .add(oura("daily_activity", "daily_activity.json"))
        .unwrap_err();
    assert_eq!(e.field(), Some("day"));
    // A day document of another day slipped into the struct directly is caught too.
    let OuraDocument::DailyStress(stress) = oura("daily_stress", "daily_stress.json") else {
        panic!()
    };
    day.daily_stress = Some(stress);
    assert_eq!(normalize::daily(&day).unwrap_err().field(), Some("day"));
    assert!(normalize::body(&day).is_err());
    let _ = TerraUser::new("u", "OURA");
}
