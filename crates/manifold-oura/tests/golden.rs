//! Golden tests: Oura's example documents (oura-api.md §9; see fixtures/oura) in, Terra
//! JSON out (fixtures/terra). Besides the file comparison, each test checks the values by
//! hand against the Oura input and Terra's reference.

mod common;

use common::*;
use manifold_model::*;
use manifold_oura::normalize::{self, DayDocuments};
use manifold_oura::{OuraDocument, types::*};
use serde_json::{Value, json};

fn user() -> TerraUser {
    let mut u = TerraUser::new("40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad", "OURA");
    u.reference_id = Some("your-user-123".into());
    u
}

fn event_json(e: &Event) -> Value {
    let v = serde_json::to_value(e).unwrap();
    // Every emitted event must parse back into our types unchanged.
    let back: Event = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), v);
    v
}

fn sleep_doc() -> OuraSleep {
    match oura("sleep", "sleep.json") {
        OuraDocument::Sleep(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn sleep_period_to_terra_sleep() {
    let doc = sleep_doc();
    let s = normalize::sleep(&doc, None).unwrap();
    let v = event_json(&Event::sleep(user(), vec![s.clone()]));
    golden("sleep.json", &v);
    let d = &v["data"][0];

    assert_eq!(
        d["metadata"]["summary_id"],
        "8f9a5221-639e-4a85-81cb-4065ef23f979"
    );
    assert_eq!(
        d["metadata"]["start_time"],
        "2022-07-12T01:05:14.000000-07:00"
    );
    assert_eq!(
        d["metadata"]["end_time"],
        "2022-07-12T09:25:14.000000-07:00"
    );
    assert_eq!(d["metadata"]["is_nap"], false); // long_sleep
    assert_eq!(d["metadata"]["upload_type"], 2); // SleepUploadType Automatic
    let dur = &d["sleep_durations_data"];
    assert_eq!(dur["asleep"]["duration_deep_sleep_state_seconds"], 4170);
    assert_eq!(dur["asleep"]["duration_light_sleep_state_seconds"], 18750);
    assert_eq!(dur["asleep"]["duration_REM_sleep_state_seconds"], 2280);
    // total_sleep_duration is null in Oura's example: derived as deep + light + REM.
    assert_eq!(
        dur["asleep"]["duration_asleep_state_seconds"],
        4170 + 18750 + 2280
    );
    assert_eq!(dur["awake"]["duration_awake_state_seconds"], 4800);
    assert_eq!(dur["awake"]["sleep_latency_seconds"], 540);
    assert_eq!(dur["other"]["duration_in_bed_seconds"], 30000);
    assert_eq!(dur["sleep_efficiency"], 84);

    // One hypnogram sample per 5-min phase, starting at bedtime_start.
    let hyp = dur["hypnogram_samples"].as_array().unwrap();
    let phases = doc.sleep_phase_5_min.as_deref().unwrap();
    assert_eq!(phases.len(), 100);
    assert_eq!(hyp.len(), 100);
    assert_eq!(
        hyp[0],
        json!({"timestamp": "2022-07-12T01:05:14.000000-07:00", "level": 1})
    );
    assert_eq!(hyp[1]["timestamp"], "2022-07-12T01:10:14.000000-07:00");
    assert_eq!(hyp[99]["timestamp"], "2022-07-12T09:20:14.000000-07:00");
    for (i, c) in phases.chars().enumerate() {
        let want = match c {
            '1' => 5, // deep
            '2' => 4, // light
            '3' => 6, // REM
            '4' => 1, // awake
            _ => unreachable!(),
        };
        assert_eq!(hyp[i]["level"], want, "slot {i}");
    }
    // 5-minute slot counts agree with Oura's durations to within one slot.
    let slots = |c| phases.chars().filter(|p| *p == c).count() as i64 * 300;
    assert!((slots('1') - 4170).abs() <= 300);
    assert!((slots('3') - 2280).abs() <= 300);

    let hr = &d["heart_rate_data"];
    assert_eq!(hr["summary"]["avg_hr_bpm"], 4.25);
    assert_eq!(hr["summary"]["min_hr_bpm"], 48);
    assert_eq!(hr["summary"]["resting_hr_bpm"], 48);
    assert_eq!(hr["summary"]["max_hr_bpm"], 54);
    assert_eq!(hr["summary"]["avg_hrv_rmssd"], 117);
    let hr_items = &doc.heart_rate.as_ref().unwrap().items;
    let hr_samples = hr["detailed"]["hr_samples"].as_array().unwrap();
    assert_eq!(hr_samples.len(), hr_items.iter().flatten().count()); // nulls dropped
    assert_eq!(hr_samples.len(), 97);
    assert_eq!(
        hr_samples[0],
        json!({"timestamp": "2022-07-12T01:10:14.000000-07:00", "bpm": 50})
    );
    let hrv = hr["detailed"]["hrv_samples_rmssd"].as_array().unwrap();
    // null, -102, -122 and one more null are dropped (non-positive HRV is invalid).
    assert_eq!(hrv.len(), 100 - 4);
    assert_eq!(hrv[0]["timestamp"], "2022-07-12T01:20:14.000000-07:00");
    assert_eq!(hrv[0]["hrv_rmssd"], 40);

    assert_eq!(
        d["respiration_data"]["breaths_data"]["avg_breaths_per_min"],
        12.625
    );
    assert_eq!(d["temperature_data"]["delta"], -0.2);
    assert_eq!(d["readiness_data"]["readiness"], 66);
    assert!(d.get("scores").is_none());
    assert_eq!(d["device_data"]["manufacturer"], "Oura");
}

#[test]
fn sleep_score_comes_from_daily_sleep_of_the_same_day() {
    let doc = sleep_doc();
    let OuraDocument::DailySleep(mut ds) =
        oura_list("daily_sleep", "daily_sleep_list.json").remove(0)
    else {
        panic!()
    };
    assert_eq!(ds.score, Some(63.0));
    let err = normalize::sleep(&doc, Some(&ds)).unwrap_err();
    assert_eq!(err.field(), Some("day"));
    assert!(err.to_string().contains("daily_sleep"), "{err}");
    ds.day = doc.day;
    let s = normalize::sleep(&doc, Some(&ds)).unwrap();
    assert_eq!(s.scores.unwrap().sleep, Some(63.0));
}

fn day_docs() -> DayDocuments {
    let mut day = DayDocuments::new("2021-11-26".parse().unwrap());
    for (t, f) in [
        ("daily_activity", "daily_activity.json"),
        ("daily_readiness", "daily_readiness.json"),
        ("daily_sleep", "daily_sleep.json"),
        ("daily_stress", "daily_stress.json"),
        ("daily_spo2", "daily_spo2.json"),
        ("daily_resilience", "daily_resilience.json"),
        ("daily_cardiovascular_age", "daily_cardiovascular_age.json"),
        ("vO2_max", "vO2_max.json"),
        ("personal_info", "personal_info.json"),
        ("enhanced_tag", "enhanced_tag.json"),
    ] {
        day.add(oura(t, f)).unwrap();
    }
    for row in oura_list("heartrate", "heartrate_list.json") {
        day.add(row).unwrap();
    }
    day
}

#[test]
fn day_documents_to_terra_daily() {
    let day = day_docs();
    let v = event_json(&Event::daily(user(), vec![normalize::daily(&day).unwrap()]));
    golden("daily.json", &v);
    let d = &v["data"][0];
    assert_eq!(
        d["metadata"]["start_time"],
        "2021-11-26T00:00:00.000000-08:00"
    );
    assert_eq!(
        d["metadata"]["end_time"],
        "2021-11-27T00:00:00.000000-08:00"
    );
    assert_eq!(d["metadata"]["upload_type"], 1);
    assert_eq!(d["metadata"]["timestamp_localization"], 1);
    assert_eq!(
        d["distance_data"],
        json!({"steps": 18430, "distance_meters": 20122})
    );
    assert_eq!(
        d["calories_data"],
        json!({"total_burned_calories": 3446, "net_activity_calories": 1222, "BMR_calories": 3446 - 1222})
    );
    let ad = &d["active_durations_data"];
    assert_eq!(ad["activity_seconds"], 3000 + 6060 + 10020); // all non-sedentary time
    assert_eq!(ad["vigorous_intensity_seconds"], 3000);
    assert_eq!(ad["moderate_intensity_seconds"], 6060);
    assert_eq!(ad["low_intensity_seconds"], 10020);
    assert_eq!(ad["inactivity_seconds"], 21000);
    assert_eq!(ad["rest_seconds"], 18840);
    let levels = ad["activity_levels_samples"].as_array().unwrap();
    assert_eq!(levels.len(), 288);
    assert_eq!(
        levels[0],
        json!({"timestamp": "2021-11-26T04:00:00.000000-08:00", "activity_level": 0})
    );
    assert_eq!(levels[46]["activity_level"], 1); // '1' rest
    assert_eq!(levels[46]["timestamp"], "2021-11-26T07:50:00.000000-08:00");
    assert_eq!(levels[46 + 63 + 35 + 33 + 20]["activity_level"], 5); // first '5'
    let met = &d["MET_data"];
    assert_eq!(met["MET_samples"].as_array().unwrap().len(), 1440);
    assert_eq!(
        met["MET_samples"][0],
        json!({"timestamp": "2021-11-26T04:00:00.000000-08:00", "level": 0.1})
    );
    assert_eq!(
        met["MET_samples"][1]["timestamp"],
        "2021-11-26T04:01:00.000000-08:00"
    );
    assert_eq!(met["avg_level"], 1.90625);
    assert_eq!(met["num_high_intensity_minutes"], 50);
    assert_eq!(met["num_moderate_intensity_minutes"], 101);
    assert_eq!(met["num_low_intensity_minutes"], 167);
    assert_eq!(met["num_inactive_minutes"], 350);
    assert_eq!(
        d["scores"],
        json!({"activity": 82, "recovery": 66, "sleep": 63})
    );
    assert_eq!(
        d["stress_data"],
        json!({"high_stress_duration_seconds": 3600, "stress_rating": 1})
    );
    assert_eq!(
        d["oxygen_data"],
        json!({"avg_saturation_percentage": 97.497})
    );
    assert_eq!(
        d["data_enrichment"]["resilience_contributors"],
        json!({"daytime_recovery": 60.5, "sleep_recovery": 35.4, "stress": 49})
    );
}

#[test]
fn day_documents_to_terra_body() {
    let day = day_docs();
    let body = normalize::body(&day).unwrap().expect("body data present");
    let v = event_json(&Event::body(user(), vec![body]));
    golden("body.json", &v);
    let d = &v["data"][0];
    assert_eq!(
        d["metadata"]["start_time"],
        "2021-11-26T00:00:00.000000-08:00"
    );
    let hr = &d["heart_data"]["heart_rate_data"];
    // Rows at 04:31:21, 10:00:00 and 23:59:59 local fall on the day; 21:00 the day before
    // and 00:00 the day after do not.
    let samples = hr["detailed"]["hr_samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(
        samples[0],
        json!({"timestamp": "2021-11-26T04:31:21.000000-08:00", "bpm": 60, "context": 2})
    );
    assert_eq!(samples[1]["context"], 1); // workout → active
    assert!(samples[2].get("context").is_none()); // awake → not set
    assert_eq!(
        hr["summary"],
        json!({"avg_hr_bpm": 85, "min_hr_bpm": 60, "max_hr_bpm": 120})
    );
    assert_eq!(
        d["heart_data"]["pulse_wave_velocity_samples"],
        json!([{"timestamp": "2021-11-26T00:00:00.000000-08:00", "pulse_wave_velocity_meters_per_second": 7.1}])
    );
    assert_eq!(d["oxygen_data"]["avg_saturation_percentage"], 97.497);
    assert_eq!(d["oxygen_data"]["vo2max_ml_per_min_per_kg"], 44);
    assert_eq!(
        d["oxygen_data"]["vo2_samples"],
        json!([{"timestamp": "2021-11-26T09:15:00.000000-08:00", "vo2max_ml_per_min_per_kg": 44}])
    );
    assert_eq!(
        d["measurements_data"]["measurements"],
        json!([{"measurement_time": "2021-11-26T00:00:00.000000-08:00", "weight_kg": 74.8,
                "height_cm": 180, "estimated_fitness_age": 38}])
    );
}

#[test]
fn period_tag_to_terra_menstruation() {
    let day = day_docs();
    let m = normalize::menstruation(&day)
        .unwrap()
        .expect("period covers the day");
    let v = event_json(&Event::menstruation(user(), vec![m]));
    golden("menstruation.json", &v);
    let md = &v["data"][0]["menstruation_data"];
    assert_eq!(md["current_phase"], 1); // Period
    assert_eq!(md["period_start_date"], "2021-11-24");
    assert_eq!(md["day_in_cycle"], 3);
    assert_eq!(md["period_length_days"], 5);
    assert_eq!(md["is_predicted_cycle"], false);
    assert_eq!(
        md["menstruation_flow"],
        json!([{"timestamp": "2021-11-26T00:00:00.000000-08:00", "flow": 5}])
    );
    assert_eq!(
        md["intervals"][0]["end_timestamp"],
        "2021-11-28T20:00:00.000000-08:00"
    );

    // Without a period tag, a cycle-phase document still gives the phase.
    let mut other = DayDocuments::new("2021-11-26".parse().unwrap());
    assert_eq!(normalize::menstruation(&other).unwrap(), None);
    other
        .add(oura("daily_cycle_phases", "daily_cycle_phases.json"))
        .unwrap();
    let m = normalize::menstruation(&other).unwrap().unwrap();
    assert_eq!(
        m.menstruation_data.unwrap().current_phase,
        Some(MenstruationInterval::Period)
    );
    // The day after the tag ends has no menstruation.
    let mut later = day_docs();
    later.day = "2021-11-29".parse().unwrap();
    later.daily_activity = None;
    later.daily_readiness = None;
    later.daily_sleep = None;
    later.daily_stress = None;
    later.daily_spo2 = None;
    later.daily_resilience = None;
    later.daily_cardiovascular_age = None;
    later.vo2_max = None;
    assert_eq!(normalize::menstruation(&later).unwrap(), None);
}

#[test]
fn workout_to_terra_activity() {
    let OuraDocument::Workout(w) = oura("workout", "workout.json") else {
        panic!()
    };
    let v = event_json(&Event::activity(
        user(),
        vec![normalize::workout(&w).unwrap()],
    ));
    golden("activity_workout.json", &v);
    let d = &v["data"][0];
    assert_eq!(
        d["metadata"],
        json!({"summary_id": "8f9a5221-639e-4a85-81cb-4065ef23f979",
               "start_time": "2021-01-01T01:00:00.000000+00:00",
               "end_time": "2021-01-01T01:30:00.000000+00:00",
               "type": 1, "upload_type": 2, "name": "cycling", "timestamp_localization": 1})
    );
    assert_eq!(d["calories_data"], json!({"total_burned_calories": 300}));
    assert_eq!(
        d["distance_data"],
        json!({"summary": {"distance_meters": 13500.5}})
    );
    assert_eq!(
        d["active_durations_data"],
        json!({"activity_seconds": 1800, "moderate_intensity_seconds": 1800})
    );
}

#[test]
fn sessions_to_terra_activity() {
    let OuraDocument::Session(s) = oura("session", "session.json") else {
        panic!()
    };
    let v = event_json(&Event::activity(
        user(),
        vec![normalize::session(&s).unwrap()],
    ));
    golden("activity_session.json", &v);
    let d = &v["data"][0];
    assert_eq!(d["metadata"]["type"], 3); // rest → Still
    assert_eq!(d["metadata"]["upload_type"], 2);
    assert_eq!(d["active_durations_data"]["activity_seconds"], 520);
    assert!(d.get("heart_rate_data").is_none());

    let OuraDocument::Session(s) = oura("session", "session_with_hr.json") else {
        panic!()
    };
    let v = event_json(&Event::activity(
        user(),
        vec![normalize::session(&s).unwrap()],
    ));
    golden("activity_session_with_hr.json", &v);
    let hr = &v["data"][0]["heart_rate_data"];
    assert_eq!(v["data"][0]["metadata"]["type"], 45); // meditation
    // items [64, null, 60, 56, 0, 58] at 60 s: null and 0 dropped.
    let samples = hr["detailed"]["hr_samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(
        samples[1],
        json!({"timestamp": "2021-11-12T12:34:09.000000-08:00", "bpm": 60})
    );
    assert_eq!(hr["summary"]["avg_hr_bpm"], 59.5);
    assert_eq!(hr["summary"]["min_hr_bpm"], 56);
    assert_eq!(hr["summary"]["max_hr_bpm"], 64);
    // HRV [40, 50, null, -3, 60, 70] → 4 samples, mean 55.
    assert_eq!(
        hr["detailed"]["hrv_samples_rmssd"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(hr["summary"]["avg_hrv_rmssd"], 55);
}

#[test]
fn personal_info_to_terra_athlete() {
    let OuraDocument::PersonalInfo(p) = oura("personal_info", "personal_info.json") else {
        panic!()
    };
    let v = event_json(&Event::athlete(user(), normalize::athlete(&p)));
    golden("athlete.json", &v);
    assert_eq!(
        v["athlete"],
        json!({"age": 31, "sex": "male", "email": "example@example.com",
               "provider_user_id": "8f9a5221-639e-4a85-81cb-4065ef23f979"})
    );
    assert!(v.get("data").is_none());
}

#[test]
fn oura_delete_to_tombstone() {
    let e = normalize::tombstone(&user(), "sleep", "8f9a5221")
        .unwrap()
        .unwrap();
    let v = event_json(&e);
    golden("tombstone_sleep.json", &v);
    assert_eq!(v["deleted"], json!([{"summary_id": "8f9a5221"}]));
    let e = normalize::tombstone(&user(), "workout", "w1")
        .unwrap()
        .unwrap();
    assert_eq!(e.event_type(), "activity");
    assert_eq!(
        normalize::tombstone(&user(), "daily_activity", "x").unwrap(),
        None
    );
    assert_eq!(
        normalize::delete_target("daily_sleep", "x").unwrap(),
        normalize::DeleteTarget::RebuildDay {
            event_types: &["daily", "sleep"]
        }
    );
    let t = normalize::day_tombstone(&user(), "daily", "2021-11-26".parse().unwrap());
    assert_eq!(event_json(&t)["deleted"], json!([{"date": "2021-11-26"}]));
    assert!(normalize::tombstone(&user(), "ring_configuration", "x").is_err());
}

#[test]
fn activity_type_codes() {
    use normalize::activity_type;
    assert_eq!(activity_type("walking").code(), 7);
    assert_eq!(activity_type("running").code(), 8);
    assert_eq!(activity_type("cycling").code(), 1);
    assert_eq!(activity_type("Strength Training").code(), 80);
    assert_eq!(activity_type("yoga").code(), 100);
    assert_eq!(activity_type("swimming").code(), 82);
    assert_eq!(activity_type("hiking").code(), 35);
    assert_eq!(activity_type("something_new").code(), 108);
}
