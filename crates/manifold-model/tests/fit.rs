//! FIT encoder: files decoded with the independent `fitparser` crate (which checks both CRCs).

use fitparser::profile::MesgNum;
use fitparser::{FitDataRecord, Value};
use manifold_model::fit::{self, FitError};
use manifold_model::*;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn run() -> Activity {
    let mut a = Activity::new(ActivityMetadata {
        summary_id: "w-1".into(),
        start_time: ts("2026-07-01T07:00:00+01:00"),
        end_time: ts("2026-07-01T07:30:00+01:00"),
        activity_type: ActivityType::Running,
        upload_type: UploadType::Automatic,
        name: Some("Morning run".into()),
        timestamp_localization: None,
        extra: Default::default(),
    });
    let samples = [
        (0, 95.0),
        (60, 120.4),
        (120, 141.0),
        (180, 150.0),
        (1790, 132.0),
    ];
    a.heart_rate_data = Some(HeartRateData {
        summary: Some(HeartRateSummary {
            avg_hr_bpm: Some(138.0),
            max_hr_bpm: Some(151.0),
            ..Default::default()
        }),
        detailed: Some(HeartRateDetailed {
            // Deliberately out of order; one sample without a value is skipped.
            hr_samples: Some(
                samples
                    .iter()
                    .rev()
                    .map(|&(s, bpm)| HeartRateSample {
                        timestamp: ts("2026-07-01T07:00:00+01:00").plus_seconds(s),
                        bpm: Some(bpm),
                        ..Default::default()
                    })
                    .chain([HeartRateSample {
                        timestamp: Some(ts("2026-07-01T07:10:00+01:00")),
                        ..Default::default()
                    }])
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    });
    a.distance_data = Some(ActivityDistanceData {
        summary: Some(DistanceSummary {
            distance_meters: Some(5012.34),
            ..Default::default()
        }),
        ..Default::default()
    });
    a.calories_data = Some(CaloriesData {
        total_burned_calories: Some(402.6),
        ..Default::default()
    });
    a.active_durations_data = Some(ActiveDurationsData {
        activity_seconds: Some(1750.0),
        ..Default::default()
    });
    a
}

fn field<'a>(r: &'a FitDataRecord, name: &str) -> &'a Value {
    r.fields()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| f.value())
        .unwrap_or_else(|| panic!("{:?} has no field {name}: {:?}", r.kind(), r.fields()))
}

fn unix(v: &Value) -> i64 {
    match v {
        Value::Timestamp(t) => t.timestamp(),
        other => panic!("not a timestamp: {other:?}"),
    }
}

fn num(v: &Value) -> f64 {
    v.clone().try_into().unwrap()
}

fn one(records: &[FitDataRecord], kind: MesgNum) -> &FitDataRecord {
    let v: Vec<_> = records.iter().filter(|r| r.kind() == kind).collect();
    assert_eq!(v.len(), 1, "{kind:?}");
    v[0]
}

#[test]
fn activity_decodes_with_fitparser() {
    let bytes = fit::encode_activity(&run()).unwrap();
    assert_eq!(&bytes[8..12], b".FIT");
    assert_eq!(bytes[0], 14);
    let data_size = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 14 + data_size + 2);
    assert_eq!(
        fit::crc16(0, &bytes),
        0,
        "CRC over file including its CRC is zero"
    );

    let records = fitparser::from_bytes(&bytes).expect("fitparser decodes (CRCs valid)");
    let start = ts("2026-07-01T07:00:00+01:00").0.timestamp();
    let end = start + 1800;

    let file_id = one(&records, MesgNum::FileId);
    assert_eq!(field(file_id, "type"), &Value::String("activity".into()));
    assert_eq!(
        field(file_id, "manufacturer"),
        &Value::String("development".into())
    );
    assert_eq!(unix(field(file_id, "time_created")), start);

    let device = one(&records, MesgNum::DeviceInfo);
    assert_eq!(field(device, "product_name"), &Value::String("Oura".into()));

    let hr: Vec<(i64, f64)> = records
        .iter()
        .filter(|r| r.kind() == MesgNum::Record)
        .map(|r| (unix(field(r, "timestamp")), num(field(r, "heart_rate"))))
        .collect();
    assert_eq!(
        hr,
        [
            (start, 95.0),
            (start + 60, 120.0),
            (start + 120, 141.0),
            (start + 180, 150.0),
            (start + 1790, 132.0)
        ]
    );

    let events: Vec<_> = records
        .iter()
        .filter(|r| r.kind() == MesgNum::Event)
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        field(events[0], "event_type"),
        &Value::String("start".into())
    );
    assert_eq!(
        field(events[1], "event_type"),
        &Value::String("stop_all".into())
    );

    for (kind, avg, max) in [
        (MesgNum::Session, "avg_heart_rate", "max_heart_rate"),
        (MesgNum::Lap, "avg_heart_rate", "max_heart_rate"),
    ] {
        let r = one(&records, kind);
        assert_eq!(unix(field(r, "start_time")), start, "{kind:?}");
        assert_eq!(unix(field(r, "timestamp")), end, "{kind:?}");
        assert_eq!(num(field(r, "total_elapsed_time")), 1800.0, "{kind:?}");
        assert_eq!(num(field(r, "total_timer_time")), 1750.0, "{kind:?}");
        assert!(
            (num(field(r, "total_distance")) - 5012.34).abs() < 1e-6,
            "{kind:?}"
        );
        assert_eq!(num(field(r, "total_calories")), 403.0, "{kind:?}");
        assert_eq!(num(field(r, avg)), 138.0, "{kind:?}");
        assert_eq!(num(field(r, max)), 151.0, "{kind:?}");
    }
    let session = one(&records, MesgNum::Session);
    assert_eq!(field(session, "sport"), &Value::String("running".into()));
    assert_eq!(num(field(session, "num_laps")), 1.0);

    let act = one(&records, MesgNum::Activity);
    assert_eq!(num(field(act, "num_sessions")), 1.0);
    assert_eq!(unix(field(act, "timestamp")), end);
    // local_timestamp is the end time shifted by the payload's offset (+01:00); fitparser
    // reports it with the FIT epoch already added.
    let local = num(field(act, "local_timestamp")) as i64;
    assert_eq!(local, end + 3600);

    // Order: file_id first, activity last.
    assert_eq!(records[0].kind(), MesgNum::FileId);
    assert_eq!(records.last().unwrap().kind(), MesgNum::Activity);
}

#[test]
fn minimal_activity_and_fallbacks() {
    let mut a = run();
    a.distance_data = None;
    a.calories_data = None;
    a.active_durations_data = None;
    a.metadata.activity_type = ActivityType::RoadBiking;
    // Without a summary, avg/max come from the samples.
    a.heart_rate_data.as_mut().unwrap().summary = None;
    let records = fitparser::from_bytes(&fit::encode_activity(&a).unwrap()).unwrap();
    let session = one(&records, MesgNum::Session);
    assert_eq!(field(session, "sport"), &Value::String("cycling".into()));
    assert_eq!(field(session, "sub_sport"), &Value::String("road".into()));
    assert_eq!(num(field(session, "total_timer_time")), 1800.0);
    assert_eq!(num(field(session, "avg_heart_rate")), 128.0); // (95+120+141+150+132)/5 = 127.6
    assert_eq!(num(field(session, "max_heart_rate")), 150.0);
    assert!(
        session
            .fields()
            .iter()
            .all(|f| f.name() != "total_distance")
    );

    // No heart rate at all: still a valid file, no records.
    a.heart_rate_data = None;
    let records = fitparser::from_bytes(&fit::encode_activity(&a).unwrap()).unwrap();
    assert!(records.iter().all(|r| r.kind() != MesgNum::Record));
    one(&records, MesgNum::Session);
}

#[test]
fn distance_samples_are_merged_into_records() {
    let mut a = run();
    a.distance_data.as_mut().unwrap().extra.insert(
        "detailed".into(),
        serde_json::json!({"distance_samples": [
            {"timestamp": "2026-07-01T07:01:00+01:00", "distance_meters": 150.5},
            {"timestamp": "2026-07-01T07:01:30+01:00", "distance_meters": 240.0}
        ]}),
    );
    let records = fitparser::from_bytes(&fit::encode_activity(&a).unwrap()).unwrap();
    let start = ts("2026-07-01T07:00:00+01:00").0.timestamp();
    let rows: Vec<(i64, Option<f64>, Option<f64>)> = records
        .iter()
        .filter(|r| r.kind() == MesgNum::Record)
        .map(|r| {
            let get = |n: &str| {
                r.fields()
                    .iter()
                    .find(|f| f.name() == n)
                    .map(|f| num(f.value()))
            };
            (
                unix(field(r, "timestamp")),
                get("heart_rate"),
                get("distance"),
            )
        })
        .collect();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[1], (start + 60, Some(120.0), Some(150.5)));
    assert_eq!(rows[2], (start + 90, None, Some(240.0)));
    assert_eq!(rows[3], (start + 120, Some(141.0), None));
}

#[test]
fn corrupted_file_fails_crc() {
    let mut bytes = fit::encode_activity(&run()).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x01;
    assert!(fitparser::from_bytes(&bytes).is_err());
}

#[test]
fn bad_activities_are_errors_not_panics() {
    // A Terra activity without a start time is rejected when parsed (start_time is required).
    let json = serde_json::json!({"metadata": {"summary_id": "x", "end_time": "2026-07-01T07:00:00+00:00", "type": 8, "upload_type": 1}});
    assert!(serde_json::from_value::<Activity>(json).is_err());

    // A start time the FIT format cannot represent (the default "no time" of 1970).
    let mut a = run();
    a.metadata.start_time = ts("1970-01-01T00:00:00Z");
    assert!(matches!(
        fit::encode_activity(&a),
        Err(FitError::TimeOutOfRange {
            field: "metadata.start_time",
            ..
        })
    ));

    let mut a = run();
    a.metadata.end_time = ts("2026-07-01T06:00:00+01:00");
    assert!(matches!(
        fit::encode_activity(&a),
        Err(FitError::EndBeforeStart { .. })
    ));

    let mut a = run();
    a.metadata.end_time = ts("2200-01-01T00:00:00Z");
    assert!(matches!(
        fit::encode_activity(&a),
        Err(FitError::TimeOutOfRange { .. })
    ));

    let mut a = run();
    a.heart_rate_data
        .as_mut()
        .unwrap()
        .detailed
        .as_mut()
        .unwrap()
        .hr_samples
        .as_mut()
        .unwrap()[0]
        .timestamp = Some(ts("1980-01-01T00:00:00Z"));
    assert!(matches!(
        fit::encode_activity(&a),
        Err(FitError::TimeOutOfRange { .. })
    ));
}

#[test]
fn crc_matches_the_fit_sdk_reference() {
    // The FIT CRC is CRC-16/ARC, whose check value (CRC of "123456789") is 0xBB3D.
    assert_eq!(fit::crc16(0, b"123456789"), 0xBB3D);
}
