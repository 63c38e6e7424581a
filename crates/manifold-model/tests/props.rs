//! Property tests for the wire primitives.

use manifold_model::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn timestamp_round_trips_at_microsecond_precision(
        secs in -2_000_000_000i64..4_000_000_000,
        micros in 0u32..1_000_000,
        offset_min in -12 * 60..14 * 60i32,
    ) {
        let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
        let t = chrono::DateTime::from_timestamp(secs, micros * 1000).unwrap().with_timezone(&off);
        let ts = Timestamp(t);
        let s = ts.to_terra_string();
        // YYYY-MM-DDTHH:MM:SS.ffffff±HH:MM
        prop_assert_eq!(s.len(), 32);
        prop_assert_eq!(&s[19..20], ".");
        let back: Timestamp = serde_json::from_value(serde_json::to_value(ts).unwrap()).unwrap();
        prop_assert_eq!(back, ts);
        prop_assert_eq!(back.offset(), off);
    }

    #[test]
    fn enum_codes_round_trip(code in -10i64..200) {
        let t = ActivityType::from_code(code);
        prop_assert_eq!(t.code(), code);
        let back: ActivityType = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        prop_assert_eq!(back, t);
        let l: SleepLevel = serde_json::from_str(&code.to_string()).unwrap();
        prop_assert_eq!(i64::from(l), code);
    }

    #[test]
    fn floats_round_trip_through_the_integer_rule(x in -1.0e12f64..1.0e12) {
        let s = SleepScores { sleep: Some(x), ..SleepScores::default() };
        let v = serde_json::to_value(&s).unwrap();
        let back: SleepScores = serde_json::from_value(v).unwrap();
        prop_assert_eq!(back.sleep, Some(x));
    }
}
