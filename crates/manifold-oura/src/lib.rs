//! Oura API v2 support: document types ([`types`]) and the pure Oura → Terra mapping
//! ([`normalize`]) — both free of I/O — plus the connector that does the I/O: the Oura API and
//! OAuth2 client ([`client`]), webhook verification ([`signature`]), token encryption at rest
//! ([`tokens`]) and the fetch workers and connect flow ([`connector`]), with the scheduled
//! heart-rate polling ([`poll`]) and reconcile ([`reconcile`]) for what webhooks miss.
//!
//! # Use
//!
//! Raw bytes → [`parse_document`] (one document) or [`parse_collection`] (a
//! `{"data": [...]}` page) → [`OuraDocument`]. Then:
//!
//! | Oura | function | Terra |
//! |---|---|---|
//! | `sleep` (+ that day's `daily_sleep`) | [`normalize::sleep`] | `sleep`, key = Oura id |
//! | `daily_activity`, `daily_readiness`, `daily_sleep`, `daily_stress`, `daily_spo2`, `daily_resilience` of one day | [`normalize::daily`] on a [`DayDocuments`] | `daily`, key = day |
//! | `heartrate` rows, `daily_spo2`, `vO2_max`, `daily_cardiovascular_age`, `personal_info` weight/height | [`normalize::body`] | `body` (or `None`) |
//! | `enhanced_tag` (`tag_generic_period`), `daily_cycle_phases` | [`normalize::menstruation`] | `menstruation` (or `None`) |
//! | `workout` / `session` | [`normalize::workout`] / [`normalize::session`] | `activity`, key = Oura id |
//! | `personal_info` | [`normalize::athlete`] | `athlete` |
//! | `delete` notification | [`normalize::delete_target`], [`normalize::tombstone`] | tombstone event / rebuild the day |
//!
//! The engine rebuilds a day's `daily`/`body`/`menstruation` from ALL stored documents of
//! that day whenever one changes ([`normalize::terra_types_for`] says which Terra types an
//! Oura type feeds). Wrap results with `manifold_model::Event::{sleep, daily, …}`.
//!
//! # Errors
//!
//! Unknown Oura fields are ignored and missing optional fields are `None`. A malformed
//! document (wrong JSON type, unparsable timestamp or date, missing required field, a
//! sample `interval` ≤ 0, a character outside the documented alphabet of
//! `sleep_phase_5_min`/`class_5_min`, an end before its start) is a [`MappingError`] whose
//! [`MappingError::field`] names the field (`bedtime_start`, `heart_rate.items[3]`,
//! `data[1].bpm`). Mapping functions never panic and never return partial payloads.
//!
//! # Mapping notes and deliberate deviations
//!
//! * Output follows the `manifold_model` rules: absent values are omitted (never `null`),
//!   timestamps are `…T07:02:00.000000+01:00`, units as in Terra's field names.
//! * Sleep: `sleep_phase_5_min` → `hypnogram_samples`, one sample per character at
//!   `bedtime_start + k·300 s` (samples at/after `bedtime_end` dropped), `1` deep → 5,
//!   `2` light → 4, `3` REM → 6, `4` awake → 1 (Terra `SleepLevel`). `heart_rate`/`hrv`
//!   items → `hr_samples`/`hrv_samples_rmssd` at `timestamp + i·interval`; nulls and
//!   non-positive values dropped. `duration_asleep_state_seconds` = `total_sleep_duration`,
//!   or deep + light + REM when Oura sends null. `min_hr_bpm` and `resting_hr_bpm` are both
//!   Oura's `lowest_heart_rate`; `max_hr_bpm` is the highest 5-min sample. `is_nap`:
//!   `long_sleep` → false, `sleep`/`late_nap` → true, else absent. `upload_type` = 2
//!   (automatic). Periods of type `deleted`/`rest` should be tombstoned by the engine
//!   ([`types::OuraSleep::is_deleted_or_rejected`]).
//! * **Temperature**: Oura's `readiness.temperature_deviation` (°C vs baseline) goes to Sleep
//!   `temperature_data.delta`, not to Body: Terra's Body temperature fields are absolute
//!   temperatures and Oura gives none. `readiness.score` → Sleep `readiness_data.readiness`.
//! * Daily: day = local midnight → midnight in the offset of `DayDocuments::utc_offset`,
//!   else of `daily_activity.timestamp` (then readiness/sleep/VO2 timestamps; else UTC with
//!   `timestamp_localization` 0). `activity_levels_samples` (from `class_5_min`, same
//!   numbers: 0 non-wear → Unknown … 5 high) and `MET_samples` keep Oura's own 04:00 → 04:00
//!   activity day. `activity_seconds` = high + medium + low (all non-sedentary time, as
//!   Terra does), `BMR_calories` = total − active, `distance_meters` = Oura's
//!   `equivalent_walking_distance`, `MET_data.num_*_minutes` = activity times / 60.
//!   `scores` = activity / readiness (as `recovery`) / sleep score. Stress: `stress_high` →
//!   `high_stress_duration_seconds`; `day_summary` restored/normal/stressful →
//!   `stress_rating` 1/2/4; `recovery_high` has no Terra field and is dropped. Resilience
//!   contributors → `data_enrichment.resilience_contributors` (Oura has no numeric
//!   resilience score).
//! * Body: `heartrate` rows (only those whose local date is the day) → `hr_samples`
//!   (context: workout → active, rest/sleep/session → not active), summary avg/min/max.
//!   `pulse_wave_velocity` → `pulse_wave_velocity_samples`; **`vascular_age` →
//!   `estimated_fitness_age`** (closest Terra field). `vo2_max` → `oxygen_data`. Weight (kg)
//!   and height (m → cm) from `personal_info` as one measurement at the day's start.
//! * Menstruation: Oura has no cycle API; period tags logged by the user give
//!   `current_phase` = 1 (Period), `period_start_date` = the tag's `start_day`,
//!   `day_in_cycle`, `period_length_days` (when the tag has an `end_day`), a `menstruation_flow`
//!   sample with flow 5 ("had") and an `intervals` entry. `daily_cycle_phases` (schema
//!   unpublished) contributes a `phase` name when no period tag covers the day.
//! * Activity: Oura `activity` strings map to Terra `ActivityType` codes
//!   ([`normalize::activity_type`]; unknown → 108 Other); sessions: breathing → 122,
//!   meditation/relaxation → 45, nap/rest → 3 (Still), else 108. Workout `source` manual → 2,
//!   autodetected/confirmed/workout_heart_rate → 1; sessions are 2 (user-started). Workout
//!   `intensity` easy/moderate/hard puts the whole duration in
//!   `low`/`moderate`/`vigorous_intensity_seconds`. Calories → `total_burned_calories`.
//! * Tombstones (a Manifold extension, see `manifold_model`): deleting a sleep, workout or
//!   session gives `{"deleted": [{"summary_id": <Oura id>}]}`; deleting a day document means
//!   rebuilding the day, and [`normalize::day_tombstone`] when nothing is left.

pub mod client;
pub mod connector;
pub mod history;
pub mod normalize;
pub mod poll;
pub mod reconcile;
pub mod signature;
pub mod tokens;
pub mod types;

pub use normalize::DayDocuments;
pub use types::{OuraDocument, parse_collection, parse_document, parse_value};

/// A document could not be mapped. Never a partial payload: any error means no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The data type is not one this crate handles.
    #[error("unsupported Oura data type `{0}`")]
    UnsupportedDataType(String),
    /// A field has the wrong type, an unparsable value, or is missing.
    #[error("invalid Oura `{data_type}` document: field `{field}`: {message}")]
    InvalidField {
        /// Oura data type of the document.
        data_type: String,
        /// Path of the offending field (e.g. `bedtime_start`, `heart_rate.items[3]`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl MappingError {
    /// The offending field's path, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            MappingError::InvalidField { field, .. } => Some(field),
            MappingError::UnsupportedDataType(_) => None,
        }
    }
}
