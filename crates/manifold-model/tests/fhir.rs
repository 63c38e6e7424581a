//! FHIR encoder: output validated against the independent `fhir-model` crate (R4B types; the
//! Bundle and Observation shapes used here are identical in R4 and R4B).

use fhir_model::r4b::codes::{BundleType, ObservationStatus};
use fhir_model::r4b::resources::{
    Bundle, Observation, ObservationEffective, ObservationValue, Resource,
};
use manifold_model::fhir::{self, FhirError};
use manifold_model::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Event {
    let path = format!("{}/tests/fixtures/terra/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn at() -> Timestamp {
    Timestamp::parse("2026-07-02T10:00:00Z").unwrap()
}

/// JSON numbers compared by value: `fhir-model` stores decimals as `f64`, so an integer we
/// write (`7000`) comes back as `7000.0`.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

/// Deserialises into the strict typed `Bundle`, re-serialises, and requires the same JSON
/// (so no key was unknown to the FHIR model and every code/date parsed).
fn validate(json: &Value) -> Bundle {
    let typed: Bundle = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("not a FHIR Bundle: {e}\n{json:#}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        normalise(&again),
        normalise(json),
        "FHIR round trip changed the bundle"
    );
    typed
}

fn observations(b: &Bundle) -> Vec<Observation> {
    b.entry
        .iter()
        .flatten()
        .map(|e| match e.resource.as_ref() {
            Some(Resource::Observation(o)) => o.clone(),
            other => panic!("unexpected resource {other:?}"),
        })
        .collect()
}

fn codes(o: &Observation) -> Vec<String> {
    o.code
        .coding
        .iter()
        .flatten()
        .filter_map(|c| c.code.clone())
        .collect()
}

fn quantity(o: &Observation) -> (f64, String) {
    match o.value.as_ref() {
        Some(ObservationValue::Quantity(q)) => (q.value.unwrap(), q.code.clone().unwrap()),
        other => panic!("no quantity: {other:?}"),
    }
}

fn find<'a>(obs: &'a [Observation], code: &str) -> Vec<&'a Observation> {
    obs.iter().filter(|o| codes(o)[0] == code).collect()
}

#[test]
fn every_data_fixture_is_a_valid_fhir_bundle() {
    for name in [
        "example_activity.json",
        "example_body.json",
        "example_daily.json",
        "example_sleep.json",
        "example_sleep_with_samples.json",
    ] {
        let event = fixture(name);
        let json = fhir::bundle_at(&event, at()).unwrap();
        let typed = validate(&json);
        assert_eq!(typed.r#type, BundleType::Collection, "{name}");
        assert!(typed.id.is_some() && typed.timestamp.is_some(), "{name}");
        let obs = observations(&typed);
        assert!(!obs.is_empty(), "{name}: no observations");
        for o in &obs {
            assert_eq!(o.status, ObservationStatus::Final);
            assert_eq!(
                o.subject.as_ref().unwrap().reference.as_deref(),
                Some("Patient/40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad")
            );
            assert!(o.effective.is_some() && o.device.is_some(), "{name}");
            let cat = o.category[0].as_ref().unwrap().coding[0].as_ref().unwrap();
            assert_eq!(cat.system.as_deref(), Some(fhir::OBSERVATION_CATEGORY));
            let (_, unit) = quantity(o);
            assert!(!unit.is_empty());
        }
        // fullUrl is urn:uuid:<id>, ids unique.
        let mut ids: Vec<String> = json["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let id = e["resource"]["id"].as_str().unwrap();
                assert_eq!(e["fullUrl"], format!("urn:uuid:{id}"));
                id.to_owned()
            })
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{name}: duplicate ids");
        // Deterministic.
        assert_eq!(fhir::bundle_at(&event, at()).unwrap(), json);
    }
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn user() -> TerraUser {
    let mut u = TerraUser::new("u-1", "OURA");
    u.reference_id = Some("ref-42".into());
    u
}

#[test]
fn sleep_values_codes_units_and_samples() {
    let mut s = Sleep::new(SleepMetadata {
        start_time: ts("2026-06-30T23:12:00+01:00"),
        end_time: ts("2026-07-01T07:02:00+01:00"),
        summary_id: Some("sleep-1".into()),
        is_nap: None,
        upload_type: SleepUploadType::Automatic,
        timestamp_localization: None,
        extra: Default::default(),
    });
    s.sleep_durations_data = Some(SleepDurationsData {
        asleep: Some(AsleepDurations {
            duration_asleep_state_seconds: Some(25200.0),
            ..Default::default()
        }),
        ..Default::default()
    });
    s.heart_rate_data = Some(HeartRateData {
        summary: Some(HeartRateSummary {
            avg_hr_bpm: Some(55.5),
            resting_hr_bpm: Some(48.0),
            avg_hrv_rmssd: Some(41.0),
            ..Default::default()
        }),
        detailed: Some(HeartRateDetailed {
            hr_samples: Some(vec![
                HeartRateSample {
                    timestamp: Some(ts("2026-06-30T23:20:00+01:00")),
                    bpm: Some(58.0),
                    ..Default::default()
                },
                HeartRateSample {
                    timestamp: Some(ts("2026-06-30T23:25:00.250+01:00")),
                    bpm: Some(52.0),
                    ..Default::default()
                },
                // No value: no observation.
                HeartRateSample {
                    timestamp: Some(ts("2026-06-30T23:30:00+01:00")),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    s.respiration_data = Some(RespirationData {
        breaths_data: Some(BreathsData {
            avg_breaths_per_min: Some(14.5),
            ..Default::default()
        }),
        oxygen_saturation_data: Some(OxygenSaturationData {
            avg_saturation_percentage: Some(97.0),
            ..Default::default()
        }),
        ..Default::default()
    });
    let event = Event::sleep(user(), vec![s]);
    let json = fhir::bundle_at(&event, at()).unwrap();
    let obs = observations(&validate(&json));
    // duration, avg hr, resting hr, rmssd, 2 hr samples, rr, spo2
    assert_eq!(obs.len(), 8);

    let dur = find(&obs, "93832-4");
    assert_eq!(quantity(dur[0]), (25200.0, "s".into()));
    let ObservationEffective::Period(p) = dur[0].effective.as_ref().unwrap() else {
        panic!("summary must have a period")
    };
    assert!(p.start.is_some() && p.end.is_some());

    let hr = find(&obs, "8867-4");
    assert_eq!(hr.len(), 3); // average + 2 samples
    assert_eq!(quantity(hr[0]), (55.5, "/min".into()));
    let samples: Vec<f64> = hr[1..].iter().map(|o| quantity(o).0).collect();
    assert_eq!(samples, [58.0, 52.0]);
    assert!(matches!(
        hr[1].effective,
        Some(ObservationEffective::DateTime(_))
    ));
    let resting = find(&obs, "40443-4");
    assert_eq!(codes(resting[0]), ["40443-4", "8867-4"]);
    assert_eq!(quantity(resting[0]).0, 48.0);
    assert_eq!(quantity(find(&obs, "9279-1")[0]), (14.5, "/min".into()));
    assert_eq!(quantity(find(&obs, "59408-5")[0]), (97.0, "%".into()));
    assert_eq!(quantity(find(&obs, "hrv-rmssd")[0]), (41.0, "ms".into()));

    // Raw JSON details: offsets kept, fraction trimmed, subject identifier, device.
    let entries = json["entry"].as_array().unwrap();
    let sample = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["effectiveDateTime"] == "2026-06-30T23:25:00.25+01:00")
        .expect("sample with fractional time");
    assert_eq!(sample["valueQuantity"]["system"], fhir::UCUM);
    assert_eq!(sample["code"]["coding"][0]["system"], fhir::LOINC);
    assert_eq!(
        sample["subject"],
        json!({"reference": "Patient/u-1", "identifier": {"system": fhir::REFERENCE_ID_SYSTEM, "value": "ref-42"}})
    );
    assert_eq!(sample["device"], json!({"display": "Oura"}));
    assert_eq!(sample["category"][0]["coding"][0]["code"], "vital-signs");
    assert_eq!(json["timestamp"], "2026-07-02T10:00:00Z");
}

#[test]
fn daily_activity_and_body_codes() {
    let start = ts("2026-07-01T00:00:00+01:00");
    let end = ts("2026-07-02T00:00:00+01:00");
    let mut d = Daily::new(DailyMetadata {
        start_time: start,
        end_time: end,
        upload_type: UploadType::Automatic,
        timestamp_localization: None,
        extra: Default::default(),
    });
    d.distance_data = Some(DailyDistanceData {
        steps: Some(7000),
        distance_meters: Some(5123.4),
        ..Default::default()
    });
    d.calories_data = Some(CaloriesData {
        total_burned_calories: Some(2400.0),
        ..Default::default()
    });
    let obs = observations(&validate(
        &fhir::bundle_at(&Event::daily(user(), vec![d]), at()).unwrap(),
    ));
    assert_eq!(obs.len(), 3);
    assert_eq!(
        quantity(find(&obs, "41950-7")[0]),
        (7000.0, "{steps}".into())
    );
    assert_eq!(quantity(find(&obs, "41953-1")[0]), (5123.4, "m".into()));
    assert_eq!(quantity(find(&obs, "41981-2")[0]), (2400.0, "kcal".into()));
    let cat = obs[0].category[0].as_ref().unwrap().coding[0]
        .as_ref()
        .unwrap();
    assert_eq!(cat.code.as_deref(), Some("activity"));

    let mut b = Body::new(BodyMetadata {
        start_time: start,
        end_time: end,
        timestamp_localization: None,
        extra: Default::default(),
    });
    b.measurements_data = Some(MeasurementsData {
        measurements: Some(vec![MeasurementDataSample {
            measurement_time: Some(ts("2026-07-01T08:00:00+01:00")),
            weight_kg: Some(70.2),
            height_cm: Some(178.0),
            ..Default::default()
        }]),
        ..Default::default()
    });
    b.extra.insert(
        "temperature_data".into(),
        json!({"body_temperature_samples": [{"timestamp": "2026-07-01T03:00:00+01:00", "temperature_celsius": 36.4}]}),
    );
    let obs = observations(&validate(
        &fhir::bundle_at(&Event::body(user(), vec![b]), at()).unwrap(),
    ));
    assert_eq!(obs.len(), 3);
    assert_eq!(quantity(find(&obs, "29463-7")[0]), (70.2, "kg".into()));
    assert_eq!(quantity(find(&obs, "8302-2")[0]), (178.0, "cm".into()));
    assert_eq!(quantity(find(&obs, "8310-5")[0]), (36.4, "Cel".into()));

    let mut a = Activity::new(ActivityMetadata {
        summary_id: "w-1".into(),
        start_time: ts("2026-07-01T07:00:00+01:00"),
        end_time: ts("2026-07-01T07:30:00+01:00"),
        activity_type: ActivityType::Running,
        upload_type: UploadType::Automatic,
        name: None,
        timestamp_localization: None,
        extra: Default::default(),
    });
    a.distance_data = Some(ActivityDistanceData {
        summary: Some(DistanceSummary {
            steps: Some(4000),
            distance_meters: Some(5000.0),
            ..Default::default()
        }),
        ..Default::default()
    });
    let obs = observations(&validate(
        &fhir::bundle_at(&Event::activity(user(), vec![a]), at()).unwrap(),
    ));
    assert_eq!(obs.len(), 2);
    assert_eq!(quantity(find(&obs, "55423-8")[0]).0, 4000.0);
    assert_eq!(quantity(find(&obs, "55412-1")[0]).0, 5000.0);
}

#[test]
fn empty_items_give_a_bundle_without_entries() {
    let d = Daily::new(DailyMetadata {
        start_time: ts("2026-07-01T00:00:00+01:00"),
        end_time: ts("2026-07-02T00:00:00+01:00"),
        upload_type: UploadType::Automatic,
        timestamp_localization: None,
        extra: Default::default(),
    });
    let json = fhir::bundle_at(&Event::daily(user(), vec![d]), at()).unwrap();
    assert!(json.get("entry").is_none());
    validate(&json);
    // bundle() stamps the current time and is valid too.
    validate(&fhir::bundle(&Event::daily(user(), vec![])).unwrap());
}

#[test]
fn non_data_events_are_not_applicable() {
    let cases = [
        Event::deauth(user()),
        Event::healthcheck("pass", at(), 0.0, 3),
        Event::tombstone(
            "sleep",
            user(),
            vec![DeletedRef::SummaryId {
                summary_id: "s".into(),
            }],
        ),
        fixture("example_athlete.json"),
        fixture("example_menstruation.json"),
        fixture("example_nutrition.json"),
    ];
    for event in cases {
        let t = event.event_type().to_owned();
        assert_eq!(
            fhir::bundle(&event),
            Err(FhirError::NotApplicable(t.clone()))
        );
        assert_eq!(fhir::observations(&event), Err(FhirError::NotApplicable(t)));
    }
}

#[test]
fn the_validator_itself_rejects_bad_fhir() {
    let event = fixture("example_sleep.json");
    let good = fhir::bundle_at(&event, at()).unwrap();
    // A status outside the FHIR value set does not deserialise.
    let mut bad = good.clone();
    bad["entry"][0]["resource"]["status"] = json!("done");
    assert!(serde_json::from_value::<Bundle>(bad).is_err());
    // A key unknown to FHIR is dropped by the typed model, so the round trip differs.
    let mut bad = good.clone();
    bad["entry"][0]["resource"]["valueQuantity"]["units"] = json!("x");
    let typed: Bundle = serde_json::from_value(bad.clone()).unwrap();
    assert_ne!(
        normalise(&serde_json::to_value(&typed).unwrap()),
        normalise(&bad)
    );
}
