//! Terra-compatible health data model (payload version `2022-03-16`).
//!
//! Typed Rust structs for Terra's normalised payloads — [`Activity`], [`Body`], [`Daily`],
//! [`Sleep`], [`Menstruation`], [`Athlete`], [`TerraUser`] — plus the event envelope
//! ([`Event`]), informational events ([`InfoEvent`]) and helpers for natural keys.
//! Field names, units and enum values follow `shared/reference/terra-model.md` (the newest
//! OpenAPI shape: `scores.sleep`, `activity_levels_samples[].activity_level`, …).
//!
//! # Serialisation rules
//!
//! * **Omit, never null.** Every nullable field is an `Option` that is *omitted* when `None`
//!   (`skip_serializing_if = "Option::is_none"`). When parsing, an explicit `null` and an absent
//!   key both become `None`. Terra documents every such field as nullable, so consumers treat
//!   both the same. Required fields (`metadata`, `metadata.start_time`/`end_time`,
//!   Activity `summary_id`/`type`/`upload_type`, Sleep/Daily `upload_type`,
//!   `user.user_id`/`provider`) are plain (non-`Option`) fields and must be present.
//! * **Nothing is lost.** Every object carries `#[serde(flatten)] extra` holding the keys this
//!   crate does not model (fields no Oura source can fill, newer Terra fields), so any Terra
//!   payload round-trips through these types.
//! * **Numbers.** Floats with no fractional part are written as JSON integers (`25200`, not
//!   `25200.0`); numeric enums are JSON numbers with Terra's values (see [`enums`]); unknown
//!   enum values are kept as `Unrecognized(n)`.
//! * **Timestamps** are [`Timestamp`]: written `2026-07-01T07:02:00.000000+01:00` (six
//!   fractional digits, numeric offset, `+00:00` for UTC); any RFC 3339 string is accepted.
//!   Dates (`period_start_date`, …) are `YYYY-MM-DD`.
//!
//! The only normalisations a round trip can make are therefore: `null` → absent, timestamps
//! re-formatted to the form above, `4.0` → `4` for floats (and enum codes) with no fraction.
//!
//! # Units
//!
//! As in Terra, the unit is in the field name: `_seconds`, `_meters`, `_kg`, `_cm`,
//! `_celsius`, `_bpm`, `_percentage`, `_ml_per_min_per_kg`; `*_calories` are kcal; HRV
//! (`hrv_rmssd`, `avg_hrv_rmssd`) is milliseconds; `MET_data` levels are METs and its
//! `num_*_minutes` are minutes; Sleep `temperature_data.delta` is °C deviation from the
//! user's baseline.
//!
//! # Tombstones (Manifold extension)
//!
//! Terra has no deletion event. When a source deletes an item Manifold emits
//! `{"type": "<data type>", "user": {…}, "deleted": [{"summary_id": "…"} | {"date":
//! "YYYY-MM-DD"}], "version": "2022-03-16"}` ([`Event::tombstone`], [`DeletedRef`]):
//! `summary_id` for activity/sleep, `date` for the day types. Each entry's
//! [`DeletedRef::natural_key`] is the key of the item to remove.
//!
//! # Natural keys
//!
//! [`natural_key`]: `metadata.summary_id` for activity and sleep; the date part
//! (`YYYY-MM-DD`, in the timestamp's own offset — i.e. the first ten characters) of
//! `metadata.start_time` for daily, body, menstruation and nutrition; the constant
//! [`ATHLETE_KEY`] for the athlete (one per connection, latest wins).
//!
//! # FHIR R4 ([`fhir`])
//!
//! [`fhir::bundle`] turns an activity, sleep, daily or body event into a FHIR R4 `Bundle`
//! (`type: collection`) of `Observation`s (`status: final`, category `vital-signs` or
//! `activity`, UCUM quantities, `subject` `Patient/<user_id>` with the `reference_id` as
//! identifier, `device` display = device name or `Oura`; `effectivePeriod` from the item's
//! metadata for summaries, `effectiveDateTime` for samples). Only present values are
//! encoded. Informational events, tombstones, `athlete`, `menstruation` and `nutrition`
//! give [`fhir::FhirError::NotApplicable`].
//!
//! | Value | Code (`http://loinc.org` unless noted) | UCUM |
//! |---|---|---|
//! | heart rate: average, samples | 8867-4 | `/min` |
//! | resting heart rate | 40443-4 (+ 8867-4) | `/min` |
//! | steps: daily / activity | 41950-7 / 55423-8 | `{steps}` |
//! | distance: daily / activity | 41953-1 / 55412-1 | `m` |
//! | calories burned | 41981-2 | `kcal` |
//! | sleep duration (asleep) | 93832-4 | `s` |
//! | respiratory rate | 9279-1 | `/min` |
//! | SpO2: average, samples | 59408-5 (+ 2708-6) | `%` |
//! | body temperature samples | 8310-5 | `Cel` |
//! | HRV SDNN: average, samples | 80404-7 | `ms` |
//! | HRV RMSSD: average, samples | `hrv-rmssd` in `urn:manifold:fhir:metric` (no LOINC code) | `ms` |
//! | sleep temperature deviation | `temperature-deviation` in `urn:manifold:fhir:metric` | `Cel` |
//! | body weight / height / BMI / body fat | 29463-7 / 8302-2 / 39156-5 / 41982-0 | `kg` / `cm` / `kg/m2` / `%` |
//!
//! # FIT ([`fit`])
//!
//! [`fit::encode_activity`] writes an [`Activity`] as a Garmin FIT activity file: header
//! (with header CRC), `file_id` (activity, manufacturer development), `device_info`,
//! `event` timer start, `record` (timestamp + heart_rate per HR sample, + distance where
//! Terra distance samples exist), `event` timer stop,
//! `lap`, `session` (sport from the Terra activity type, start time, elapsed/timer time,
//! distance, calories, avg/max heart rate), `activity` (num_sessions, timestamp,
//! local_timestamp) and the file CRC.

mod activity;
mod athlete;
mod body;
mod common;
mod daily;
pub mod enums;
pub mod event;
pub mod fhir;
pub mod fit;
mod menstruation;
mod num;
mod sleep;
mod timestamp;

pub use activity::*;
pub use athlete::*;
pub use body::*;
pub use common::*;
pub use daily::*;
pub use enums::*;
pub use event::{
    AthleteEvent, AuthCancelledEvent, AuthEvent, DataEvent, DataPayload, DeletedRef, Event,
    HealthcheckEvent, InfoEvent, LargeRequestEvent, PermissionChangeEvent, RateLimitHitEvent,
    S3PayloadEvent, TombstoneEvent, UserReauthEvent, UserStatusEvent, VERSION,
};
pub use menstruation::*;
pub use sleep::*;
pub use timestamp::{Timestamp, TimestampError};

use chrono::NaiveDate;
use serde_json::{Map, Value};

/// Data event types (those with a `data` array, plus `athlete`).
pub const DATA_TYPES: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "sleep",
];

/// Informational event types.
pub const EVENT_TYPES: &[&str] = &[
    "auth",
    "auth_cancelled",
    "deauth",
    "user_reauth",
    "access_revoked",
    "connection_error",
    "permission_change",
    "large_request_processing",
    "large_request_sending",
    "rate_limit_hit",
    "healthcheck",
    "s3_payload",
];

/// Natural key of the athlete item (one per connection).
pub const ATHLETE_KEY: &str = "athlete";

/// True when `t` is one of [`DATA_TYPES`] or [`EVENT_TYPES`].
pub fn is_known_type(t: &str) -> bool {
    DATA_TYPES.contains(&t) || EVENT_TYPES.contains(&t)
}

/// True when items of `t` are keyed by day rather than by `summary_id`.
pub fn is_day_type(t: &str) -> bool {
    matches!(t, "daily" | "body" | "menstruation" | "nutrition")
}

/// Natural key of one item of a data event's `data` array (see the crate docs).
///
/// Returns `None` for unknown or informational types and when the key field is missing,
/// empty or (for day types) does not start with a valid `YYYY-MM-DD` date.
pub fn natural_key(event_type: &str, item: &Value) -> Option<String> {
    let metadata = item.get("metadata");
    match event_type {
        "activity" | "sleep" => metadata?
            .get("summary_id")?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        t if is_day_type(t) => {
            let start = metadata?.get("start_time")?.as_str()?;
            let day = start.get(..10)?;
            NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
            Some(day.to_owned())
        }
        "athlete" => Some(ATHLETE_KEY.to_owned()),
        _ => None,
    }
}

fn day_key(t: &Timestamp) -> String {
    t.date().format("%Y-%m-%d").to_string()
}

impl Activity {
    /// Creates an activity with only its metadata set.
    pub fn new(metadata: ActivityMetadata) -> Self {
        Activity {
            metadata,
            active_durations_data: None,
            calories_data: None,
            device_data: None,
            distance_data: None,
            heart_rate_data: None,
            met_data: None,
            oxygen_data: None,
            extra: Map::new(),
        }
    }

    /// Natural key: `metadata.summary_id`.
    pub fn natural_key(&self) -> String {
        self.metadata.summary_id.clone()
    }
}

impl Sleep {
    /// Creates a sleep session with only its metadata set.
    pub fn new(metadata: SleepMetadata) -> Self {
        Sleep {
            metadata,
            sleep_durations_data: None,
            heart_rate_data: None,
            respiration_data: None,
            temperature_data: None,
            readiness_data: None,
            scores: None,
            device_data: None,
            extra: Map::new(),
        }
    }

    /// Natural key: `metadata.summary_id` (Terra: always present for sleep).
    pub fn natural_key(&self) -> Option<String> {
        self.metadata.summary_id.clone()
    }
}

impl Daily {
    /// Creates a day with only its metadata set.
    pub fn new(metadata: DailyMetadata) -> Self {
        Daily {
            metadata,
            active_durations_data: None,
            calories_data: None,
            distance_data: None,
            heart_rate_data: None,
            met_data: None,
            oxygen_data: None,
            scores: None,
            stress_data: None,
            data_enrichment: None,
            device_data: None,
            extra: Map::new(),
        }
    }

    /// Natural key: the date of `metadata.start_time`.
    pub fn natural_key(&self) -> String {
        day_key(&self.metadata.start_time)
    }
}

impl Body {
    /// Creates a body day with only its metadata set.
    pub fn new(metadata: BodyMetadata) -> Self {
        Body {
            metadata,
            heart_data: None,
            oxygen_data: None,
            measurements_data: None,
            device_data: None,
            extra: Map::new(),
        }
    }

    /// Natural key: the date of `metadata.start_time`.
    pub fn natural_key(&self) -> String {
        day_key(&self.metadata.start_time)
    }
}

impl Menstruation {
    /// Creates a menstruation day with only its metadata set.
    pub fn new(metadata: MenstruationMetadata) -> Self {
        Menstruation {
            metadata,
            menstruation_data: None,
            extra: Map::new(),
        }
    }

    /// Natural key: the date of `metadata.start_time`.
    pub fn natural_key(&self) -> String {
        day_key(&self.metadata.start_time)
    }
}

impl TerraUser {
    /// A user with only the required fields set.
    pub fn new(user_id: impl Into<String>, provider: impl Into<String>) -> Self {
        TerraUser {
            user_id: user_id.into(),
            provider: provider.into(),
            created_at: None,
            last_webhook_update: None,
            scopes: None,
            reference_id: None,
            active: None,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn natural_keys() {
        let sleep = json!({"metadata": {"summary_id": "abc", "start_time": "2026-06-30T23:12:00.000000+01:00"}});
        assert_eq!(natural_key("sleep", &sleep).as_deref(), Some("abc"));
        assert_eq!(natural_key("activity", &sleep).as_deref(), Some("abc"));
        let day = json!({"metadata": {"start_time": "2026-07-01T00:00:00.000000+01:00"}});
        assert_eq!(natural_key("daily", &day).as_deref(), Some("2026-07-01"));
        assert_eq!(natural_key("body", &day).as_deref(), Some("2026-07-01"));
        assert_eq!(natural_key("sleep", &day), None);
        assert_eq!(
            natural_key("daily", &json!({"metadata": {"start_time": "garbage!!!!"}})),
            None
        );
        assert_eq!(natural_key("deauth", &day), None);
        assert_eq!(
            natural_key("athlete", &json!({})).as_deref(),
            Some(ATHLETE_KEY)
        );
    }

    #[test]
    fn type_lists() {
        assert!(is_known_type("sleep") && is_known_type("s3_payload"));
        assert!(!is_known_type("hormone"));
        assert_eq!(DATA_TYPES.len(), 7);
        assert_eq!(EVENT_TYPES.len(), 12);
    }
}
