//! Oura API v2 document types (schemas of `shared/reference/oura-api.md` §3).
//!
//! Unknown fields are ignored; fields the spec marks optional (and a few required ones
//! Manifold does not need) are `Option`. Numeric fields are `f64` because Oura sends
//! integers as floats in places (`300.0`). Timestamps accept any RFC 3339 form.

use crate::MappingError;
use chrono::NaiveDate;
use manifold_model::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Contributor scores (`1..=100`, each may be null).
pub type Contributors = BTreeMap<String, Option<f64>>;

/// `PublicSample`: item `i` is at `timestamp + i * interval` seconds; `null` = missing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublicSample {
    /// Seconds between items.
    pub interval: f64,
    /// Values (`null` marks a missing sample).
    pub items: Vec<Option<f64>>,
    /// Time of the first item.
    pub timestamp: Timestamp,
}

/// `PublicReadiness` (embedded in a sleep period) and the readiness part of `daily_readiness`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Readiness {
    /// 0–100.
    #[serde(default)]
    pub score: Option<f64>,
    /// °C vs baseline.
    #[serde(default)]
    pub temperature_deviation: Option<f64>,
    /// °C trend deviation.
    #[serde(default)]
    pub temperature_trend_deviation: Option<f64>,
    /// Contributor scores.
    #[serde(default)]
    pub contributors: Option<Contributors>,
}

/// `sleep` → `PublicModifiedSleepModel` (one sleep period).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OuraSleep {
    /// Document id.
    pub id: String,
    /// Day the period is attributed to.
    pub day: NaiveDate,
    /// Start of the period.
    pub bedtime_start: Timestamp,
    /// End of the period.
    pub bedtime_end: Timestamp,
    /// `deleted`, `sleep`, `long_sleep`, `late_nap`, `rest`.
    #[serde(default, rename = "type")]
    pub sleep_type: Option<String>,
    /// Internal period index.
    #[serde(default)]
    pub period: Option<f64>,
    /// Seconds in bed.
    #[serde(default)]
    pub time_in_bed: Option<f64>,
    /// Seconds asleep.
    #[serde(default)]
    pub total_sleep_duration: Option<f64>,
    /// Seconds of deep sleep.
    #[serde(default)]
    pub deep_sleep_duration: Option<f64>,
    /// Seconds of light sleep.
    #[serde(default)]
    pub light_sleep_duration: Option<f64>,
    /// Seconds of REM sleep.
    #[serde(default)]
    pub rem_sleep_duration: Option<f64>,
    /// Seconds awake within the period.
    #[serde(default)]
    pub awake_time: Option<f64>,
    /// Seconds to fall asleep.
    #[serde(default)]
    pub latency: Option<f64>,
    /// 1–100.
    #[serde(default)]
    pub efficiency: Option<f64>,
    /// bpm.
    #[serde(default)]
    pub average_heart_rate: Option<f64>,
    /// bpm.
    #[serde(default)]
    pub lowest_heart_rate: Option<f64>,
    /// ms (RMSSD).
    #[serde(default)]
    pub average_hrv: Option<f64>,
    /// breaths/min.
    #[serde(default)]
    pub average_breath: Option<f64>,
    /// Count.
    #[serde(default)]
    pub restless_periods: Option<f64>,
    /// HR series (bpm).
    #[serde(default)]
    pub heart_rate: Option<PublicSample>,
    /// HRV series (ms).
    #[serde(default)]
    pub hrv: Option<PublicSample>,
    /// Hypnogram, one char per 5 min: `1` deep, `2` light, `3` REM, `4` awake.
    #[serde(default)]
    pub sleep_phase_5_min: Option<String>,
    /// Readiness computed for this period.
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// Effect of this period on the readiness score.
    #[serde(default)]
    pub readiness_score_delta: Option<f64>,
    /// Effect of this period on the sleep score.
    #[serde(default)]
    pub sleep_score_delta: Option<f64>,
    /// Ring low-battery alert.
    #[serde(default)]
    pub low_battery_alert: Option<bool>,
    /// `v1` | `v2`.
    #[serde(default)]
    pub sleep_algorithm_version: Option<String>,
}

impl OuraSleep {
    /// True for periods the user deleted (`deleted`) or rejected (`rest`): the engine should
    /// treat these as tombstones rather than sleep sessions.
    pub fn is_deleted_or_rejected(&self) -> bool {
        matches!(self.sleep_type.as_deref(), Some("deleted" | "rest"))
    }
}

/// `daily_sleep` → `PublicDailySleep`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailySleep {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Sleep score 0–100.
    #[serde(default)]
    pub score: Option<f64>,
    /// Observed `YYYY-MM-DDT00:00:00±hh:mm`.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Contributor scores.
    #[serde(default)]
    pub contributors: Option<Contributors>,
}

/// `daily_readiness` → `PublicDailyReadiness`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyReadiness {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Observed `YYYY-MM-DDT00:00:00±hh:mm`.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Score, temperature deviation and contributors.
    #[serde(flatten)]
    pub readiness: Readiness,
}

/// `daily_activity` → `PublicDailyActivity` (the day runs 24 h from 04:00 local).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyActivity {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Start of the activity day (observed `T04:00:00±hh:mm`).
    pub timestamp: Timestamp,
    /// Activity score 1–100.
    #[serde(default)]
    pub score: Option<f64>,
    /// Steps.
    #[serde(default)]
    pub steps: Option<f64>,
    /// kcal.
    #[serde(default)]
    pub active_calories: Option<f64>,
    /// kcal.
    #[serde(default)]
    pub total_calories: Option<f64>,
    /// kcal target.
    #[serde(default)]
    pub target_calories: Option<f64>,
    /// Metres.
    #[serde(default)]
    pub equivalent_walking_distance: Option<f64>,
    /// Metres target.
    #[serde(default)]
    pub target_meters: Option<f64>,
    /// Metres remaining.
    #[serde(default)]
    pub meters_to_target: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub high_activity_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub medium_activity_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub low_activity_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub sedentary_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub resting_time: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub non_wear_time: Option<f64>,
    /// MET-minutes.
    #[serde(default)]
    pub high_activity_met_minutes: Option<f64>,
    /// MET-minutes.
    #[serde(default)]
    pub medium_activity_met_minutes: Option<f64>,
    /// MET-minutes.
    #[serde(default)]
    pub low_activity_met_minutes: Option<f64>,
    /// MET-minutes.
    #[serde(default)]
    pub sedentary_met_minutes: Option<f64>,
    /// Average MET.
    #[serde(default)]
    pub average_met_minutes: Option<f64>,
    /// Count.
    #[serde(default)]
    pub inactivity_alerts: Option<f64>,
    /// One char per 5 min: `0` non-wear, `1` rest, `2` inactive, `3` low, `4` medium, `5` high.
    #[serde(default)]
    pub class_5_min: Option<String>,
    /// MET series.
    #[serde(default)]
    pub met: Option<PublicSample>,
    /// Contributor scores.
    #[serde(default)]
    pub contributors: Option<Contributors>,
}

/// `heartrate` → `PublicHeartRateRow`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeartRateRow {
    /// bpm.
    pub bpm: f64,
    /// `awake`, `workout`, `rest`, `sleep`, `live`, `session`.
    #[serde(default)]
    pub source: Option<String>,
    /// Sample time (UTC).
    pub timestamp: Timestamp,
}

/// `workout` → `PublicWorkout`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Workout {
    /// Document id.
    pub id: String,
    /// Free-form activity code (`walking`, `running`, `cycling`, …).
    pub activity: String,
    /// kcal.
    #[serde(default)]
    pub calories: Option<f64>,
    /// Metres.
    #[serde(default)]
    pub distance: Option<f64>,
    /// Day.
    pub day: NaiveDate,
    /// Start.
    pub start_datetime: Timestamp,
    /// End.
    pub end_datetime: Timestamp,
    /// `easy`, `moderate`, `hard`.
    #[serde(default)]
    pub intensity: Option<String>,
    /// User label.
    #[serde(default)]
    pub label: Option<String>,
    /// `manual`, `autodetected`, `confirmed`, `workout_heart_rate`.
    #[serde(default)]
    pub source: Option<String>,
}

/// `session` → `PublicSession`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Start.
    pub start_datetime: Timestamp,
    /// End.
    pub end_datetime: Timestamp,
    /// `breathing`, `meditation`, `nap`, `relaxation`, `rest`, `body_status`.
    #[serde(default, rename = "type")]
    pub session_type: Option<String>,
    /// `bad`, `worse`, `same`, `good`, `great`.
    #[serde(default)]
    pub mood: Option<String>,
    /// HR series (bpm).
    #[serde(default)]
    pub heart_rate: Option<PublicSample>,
    /// HRV series (ms).
    #[serde(default)]
    pub heart_rate_variability: Option<PublicSample>,
    /// Motion series.
    #[serde(default)]
    pub motion_count: Option<PublicSample>,
}

/// `PublicSpo2AggregatedValues`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Spo2Aggregate {
    /// Percent.
    #[serde(default)]
    pub average: Option<f64>,
}

/// `daily_spo2` → `PublicDailySpO2`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailySpo2 {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Average SpO2 of the night.
    #[serde(default)]
    pub spo2_percentage: Option<Spo2Aggregate>,
    /// 0–100.
    #[serde(default)]
    pub breathing_disturbance_index: Option<f64>,
}

/// `daily_stress` → `PublicDailyStress`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyStress {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Seconds in the high-stress zone.
    #[serde(default)]
    pub stress_high: Option<f64>,
    /// Seconds in the high-recovery zone.
    #[serde(default)]
    pub recovery_high: Option<f64>,
    /// `restored`, `normal`, `stressful`.
    #[serde(default)]
    pub day_summary: Option<String>,
}

/// `daily_resilience` → `DailyResilienceModel`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyResilience {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// `sleep_recovery`, `daytime_recovery`, `stress` (0–100).
    #[serde(default)]
    pub contributors: Option<Contributors>,
    /// `limited`, `adequate`, `solid`, `strong`, `exceptional`.
    #[serde(default)]
    pub level: Option<String>,
}

/// `daily_cardiovascular_age` → `PublicDailyCardiovascularAge` (`id` observed missing).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyCardiovascularAge {
    /// Document id (not always sent).
    #[serde(default)]
    pub id: Option<String>,
    /// Day.
    pub day: NaiveDate,
    /// Years.
    #[serde(default)]
    pub vascular_age: Option<f64>,
    /// m/s.
    #[serde(default)]
    pub pulse_wave_velocity: Option<f64>,
}

/// `vO2_max` → `PublicVO2Max`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Vo2Max {
    /// Document id.
    pub id: String,
    /// Day.
    pub day: NaiveDate,
    /// Measurement time.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// ml/kg/min.
    #[serde(default)]
    pub vo2_max: Option<f64>,
}

/// `personal_info` → `PersonalInfoResponse`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PersonalInfo {
    /// Oura user id.
    pub id: String,
    /// Years.
    #[serde(default)]
    pub age: Option<f64>,
    /// kg.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Metres.
    #[serde(default)]
    pub height: Option<f64>,
    /// e.g. `male`.
    #[serde(default)]
    pub biological_sex: Option<String>,
    /// Needs the `email` scope.
    #[serde(default)]
    pub email: Option<String>,
}

/// `enhanced_tag` → `EnhancedTagModel`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EnhancedTag {
    /// Document id.
    pub id: String,
    /// e.g. `tag_generic_period`; `custom`; null for text-only tags.
    #[serde(default)]
    pub tag_type_code: Option<String>,
    /// Local start.
    pub start_time: Timestamp,
    /// Local end (null when no duration).
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    /// First day.
    pub start_day: NaiveDate,
    /// Last day.
    #[serde(default)]
    pub end_day: Option<NaiveDate>,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
    /// Set when the code is `custom`.
    #[serde(default)]
    pub custom_name: Option<String>,
}

impl EnhancedTag {
    /// True for a logged period (`tag_generic_period`).
    pub fn is_period(&self) -> bool {
        self.tag_type_code.as_deref() == Some("tag_generic_period")
    }
}

/// `daily_cycle_phases` (partner-only route, schema unpublished): the day and a phase name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyCyclePhases {
    /// Document id.
    #[serde(default)]
    pub id: Option<String>,
    /// Day.
    pub day: NaiveDate,
    /// Phase name (e.g. `menstrual`, `follicular`, `ovulation`, `luteal`).
    #[serde(default, alias = "cycle_phase", alias = "current_phase")]
    pub phase: Option<String>,
    /// Everything else the route returns (kept for inspection; unmapped).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Any supported Oura document.
#[derive(Debug, Clone, PartialEq)]
pub enum OuraDocument {
    /// `sleep`
    Sleep(OuraSleep),
    /// `daily_sleep`
    DailySleep(DailySleep),
    /// `daily_readiness`
    DailyReadiness(DailyReadiness),
    /// `daily_activity`
    DailyActivity(DailyActivity),
    /// `heartrate`
    HeartRate(HeartRateRow),
    /// `workout`
    Workout(Workout),
    /// `session`
    Session(Session),
    /// `daily_spo2`
    DailySpo2(DailySpo2),
    /// `daily_stress`
    DailyStress(DailyStress),
    /// `daily_resilience`
    DailyResilience(DailyResilience),
    /// `daily_cardiovascular_age`
    DailyCardiovascularAge(DailyCardiovascularAge),
    /// `vO2_max`
    Vo2Max(Vo2Max),
    /// `personal_info`
    PersonalInfo(PersonalInfo),
    /// `enhanced_tag`
    EnhancedTag(EnhancedTag),
    /// `daily_cycle_phases`
    DailyCyclePhases(DailyCyclePhases),
}

/// Oura data types this crate parses (webhook `data_type` / collection path names).
pub const SUPPORTED_DATA_TYPES: &[&str] = &[
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "heartrate",
    "workout",
    "session",
    "daily_spo2",
    "daily_stress",
    "daily_resilience",
    "daily_cardiovascular_age",
    "vO2_max",
    "personal_info",
    "enhanced_tag",
    "daily_cycle_phases",
];

/// Canonical spelling of an Oura data type (`vo2_max` → `vO2_max`), or `None` if unsupported.
pub fn canonical_data_type(data_type: &str) -> Option<&'static str> {
    if data_type.eq_ignore_ascii_case("vo2_max") {
        return Some("vO2_max");
    }
    SUPPORTED_DATA_TYPES
        .iter()
        .copied()
        .find(|t| *t == data_type)
}

impl OuraDocument {
    /// The Oura data type name.
    pub fn data_type(&self) -> &'static str {
        match self {
            OuraDocument::Sleep(_) => "sleep",
            OuraDocument::DailySleep(_) => "daily_sleep",
            OuraDocument::DailyReadiness(_) => "daily_readiness",
            OuraDocument::DailyActivity(_) => "daily_activity",
            OuraDocument::HeartRate(_) => "heartrate",
            OuraDocument::Workout(_) => "workout",
            OuraDocument::Session(_) => "session",
            OuraDocument::DailySpo2(_) => "daily_spo2",
            OuraDocument::DailyStress(_) => "daily_stress",
            OuraDocument::DailyResilience(_) => "daily_resilience",
            OuraDocument::DailyCardiovascularAge(_) => "daily_cardiovascular_age",
            OuraDocument::Vo2Max(_) => "vO2_max",
            OuraDocument::PersonalInfo(_) => "personal_info",
            OuraDocument::EnhancedTag(_) => "enhanced_tag",
            OuraDocument::DailyCyclePhases(_) => "daily_cycle_phases",
        }
    }

    /// The day the document belongs to (`None` for `personal_info`; the UTC date for
    /// `heartrate` rows, whose timestamps are UTC; `start_day` for tags).
    pub fn day(&self) -> Option<NaiveDate> {
        Some(match self {
            OuraDocument::Sleep(d) => d.day,
            OuraDocument::DailySleep(d) => d.day,
            OuraDocument::DailyReadiness(d) => d.day,
            OuraDocument::DailyActivity(d) => d.day,
            OuraDocument::HeartRate(d) => d.timestamp.date(),
            OuraDocument::Workout(d) => d.day,
            OuraDocument::Session(d) => d.day,
            OuraDocument::DailySpo2(d) => d.day,
            OuraDocument::DailyStress(d) => d.day,
            OuraDocument::DailyResilience(d) => d.day,
            OuraDocument::DailyCardiovascularAge(d) => d.day,
            OuraDocument::Vo2Max(d) => d.day,
            OuraDocument::PersonalInfo(_) => return None,
            OuraDocument::EnhancedTag(d) => d.start_day,
            OuraDocument::DailyCyclePhases(d) => d.day,
        })
    }

    /// The document id, when it has one (heart-rate rows have none).
    pub fn id(&self) -> Option<&str> {
        match self {
            OuraDocument::Sleep(d) => Some(&d.id),
            OuraDocument::DailySleep(d) => Some(&d.id),
            OuraDocument::DailyReadiness(d) => Some(&d.id),
            OuraDocument::DailyActivity(d) => Some(&d.id),
            OuraDocument::HeartRate(_) => None,
            OuraDocument::Workout(d) => Some(&d.id),
            OuraDocument::Session(d) => Some(&d.id),
            OuraDocument::DailySpo2(d) => Some(&d.id),
            OuraDocument::DailyStress(d) => Some(&d.id),
            OuraDocument::DailyResilience(d) => Some(&d.id),
            OuraDocument::DailyCardiovascularAge(d) => d.id.as_deref(),
            OuraDocument::Vo2Max(d) => Some(&d.id),
            OuraDocument::PersonalInfo(d) => Some(&d.id),
            OuraDocument::EnhancedTag(d) => Some(&d.id),
            OuraDocument::DailyCyclePhases(d) => d.id.as_deref(),
        }
    }
}

fn de<'de, T, D>(data_type: &str, d: D) -> Result<T, MappingError>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // Missing fields are reported at the parent; name the field itself.
        let field = match message.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            }
            None => path,
        };
        MappingError::InvalidField {
            data_type: data_type.to_owned(),
            field,
            message,
        }
    })
}

fn from_deserializer<'de, D>(data_type: &str, d: D) -> Result<OuraDocument, MappingError>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let t = canonical_data_type(data_type)
        .ok_or_else(|| MappingError::UnsupportedDataType(data_type.to_owned()))?;
    let doc = match t {
        "sleep" => OuraDocument::Sleep(de(t, d)?),
        "daily_sleep" => OuraDocument::DailySleep(de(t, d)?),
        "daily_readiness" => OuraDocument::DailyReadiness(de(t, d)?),
        "daily_activity" => OuraDocument::DailyActivity(de(t, d)?),
        "heartrate" => OuraDocument::HeartRate(de(t, d)?),
        "workout" => OuraDocument::Workout(de(t, d)?),
        "session" => OuraDocument::Session(de(t, d)?),
        "daily_spo2" => OuraDocument::DailySpo2(de(t, d)?),
        "daily_stress" => OuraDocument::DailyStress(de(t, d)?),
        "daily_resilience" => OuraDocument::DailyResilience(de(t, d)?),
        "daily_cardiovascular_age" => OuraDocument::DailyCardiovascularAge(de(t, d)?),
        "vO2_max" => OuraDocument::Vo2Max(de(t, d)?),
        "personal_info" => OuraDocument::PersonalInfo(de(t, d)?),
        "enhanced_tag" => OuraDocument::EnhancedTag(de(t, d)?),
        "daily_cycle_phases" => OuraDocument::DailyCyclePhases(de(t, d)?),
        other => return Err(MappingError::UnsupportedDataType(other.to_owned())),
    };
    crate::normalize::validate(&doc)?;
    Ok(doc)
}

/// Parses one Oura document of `data_type` from raw JSON bytes, then checks it (sample
/// intervals, encoded strings, end not before start). Errors name the offending field.
pub fn parse_document(data_type: &str, json: &[u8]) -> Result<OuraDocument, MappingError> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let doc = from_deserializer(data_type, &mut d)?;
    d.end().map_err(|e| MappingError::InvalidField {
        data_type: data_type.to_owned(),
        field: String::new(),
        message: e.to_string(),
    })?;
    Ok(doc)
}

/// Parses one Oura document of `data_type` from an already-parsed JSON value.
pub fn parse_value(data_type: &str, json: Value) -> Result<OuraDocument, MappingError> {
    from_deserializer(data_type, json)
}

/// Parses a collection response (`{"data": [...], "next_token": …}`), a bare array, or a
/// single document. Errors name the field as `data[i].field`.
pub fn parse_collection(data_type: &str, json: &[u8]) -> Result<Vec<OuraDocument>, MappingError> {
    let invalid = |field: String, message: String| MappingError::InvalidField {
        data_type: data_type.to_owned(),
        field,
        message,
    };
    let v: Value =
        serde_json::from_slice(json).map_err(|e| invalid(String::new(), e.to_string()))?;
    let items = match v {
        Value::Object(mut m) if m.contains_key("data") && !m.contains_key("id") => {
            match m.remove("data") {
                Some(Value::Array(a)) => a,
                _ => return Err(invalid("data".into(), "expected an array".into())),
            }
        }
        Value::Array(a) => a,
        other => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            parse_value(data_type, item).map_err(|e| match e {
                MappingError::InvalidField {
                    data_type,
                    field,
                    message,
                } => MappingError::InvalidField {
                    data_type,
                    field: if field.is_empty() {
                        format!("data[{i}]")
                    } else {
                        format!("data[{i}].{field}")
                    },
                    message,
                },
                other => other,
            })
        })
        .collect()
}
