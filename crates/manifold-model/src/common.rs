//! Sub-objects shared by several Terra payload types.
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use crate::enums::{ActivityLevel, HeartRateContext, OxygenSaturationType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Device that recorded the data (`device_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeviceData {
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `manufacturer`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// `hardware_version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_version: Option<String>,
    /// `software_version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `serial_number`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heart_rate_data.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartRateSummary {
    /// `avg_hr_bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_hr_bpm: Option<f64>,
    /// `avg_hrv_rmssd`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_hrv_rmssd: Option<f64>,
    /// `avg_hrv_sdnn`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_hrv_sdnn: Option<f64>,
    /// `max_hr_bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub max_hr_bpm: Option<f64>,
    /// `min_hr_bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub min_hr_bpm: Option<f64>,
    /// `resting_hr_bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub resting_hr_bpm: Option<f64>,
    /// `user_max_hr_bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub user_max_hr_bpm: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One heart-rate sample (`hr_samples[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartRateSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `bpm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub bpm: Option<f64>,
    /// `timer_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub timer_duration_seconds: Option<f64>,
    /// `context`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<HeartRateContext>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One RMSSD HRV sample (`hrv_samples_rmssd[]`), milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HrvRmssdSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `hrv_rmssd`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub hrv_rmssd: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One SDNN HRV sample (`hrv_samples_sdnn[]`), milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HrvSdnnSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `hrv_sdnn`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub hrv_sdnn: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heart_rate_data.detailed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartRateDetailed {
    /// `hr_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hr_samples: Option<Vec<HeartRateSample>>,
    /// `hrv_samples_rmssd`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrv_samples_rmssd: Option<Vec<HrvRmssdSample>>,
    /// `hrv_samples_sdnn`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrv_samples_sdnn: Option<Vec<HrvSdnnSample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heart_rate_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartRateData {
    /// `summary`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<HeartRateSummary>,
    /// `detailed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed: Option<HeartRateDetailed>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One activity-level sample (`activity_levels_samples[]`), newest OpenAPI shape (`activity_level`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ActivityLevelSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `activity_level`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_level: Option<ActivityLevel>,
    /// `timer_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub timer_duration_seconds: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `active_durations_data` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ActiveDurationsData {
    /// `activity_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub activity_seconds: Option<f64>,
    /// `inactivity_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub inactivity_seconds: Option<f64>,
    /// `low_intensity_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub low_intensity_seconds: Option<f64>,
    /// `moderate_intensity_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub moderate_intensity_seconds: Option<f64>,
    /// `vigorous_intensity_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub vigorous_intensity_seconds: Option<f64>,
    /// `rest_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub rest_seconds: Option<f64>,
    /// `num_continuous_inactive_periods`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_continuous_inactive_periods: Option<i64>,
    /// `standing_hours_count`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub standing_hours_count: Option<f64>,
    /// `standing_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub standing_seconds: Option<f64>,
    /// `activity_levels_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_levels_samples: Option<Vec<ActivityLevelSample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `calories_data` (kcal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CaloriesData {
    /// `BMR_calories`
    #[serde(
        rename = "BMR_calories",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub bmr_calories: Option<f64>,
    /// `net_activity_calories`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub net_activity_calories: Option<f64>,
    /// `net_intake_calories`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub net_intake_calories: Option<f64>,
    /// `total_burned_calories`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub total_burned_calories: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One MET sample (`MET_samples[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `level`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub level: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `MET_data` (minutes / MET levels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetData {
    /// `MET_samples`
    #[serde(
        rename = "MET_samples",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub met_samples: Option<Vec<MetSample>>,
    /// `avg_level`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_level: Option<f64>,
    /// `num_high_intensity_minutes`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub num_high_intensity_minutes: Option<f64>,
    /// `num_inactive_minutes`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub num_inactive_minutes: Option<f64>,
    /// `num_low_intensity_minutes`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub num_low_intensity_minutes: Option<f64>,
    /// `num_moderate_intensity_minutes`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub num_moderate_intensity_minutes: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One SpO2/SmO2 sample (`saturation_samples[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OxygenSaturationSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `percentage`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub percentage: Option<f64>,
    /// `type`
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub saturation_type: Option<OxygenSaturationType>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One VO2max sample (`vo2_samples[]`), ml/min/kg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Vo2MaxSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `vo2max_ml_per_min_per_kg`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub vo2max_ml_per_min_per_kg: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `oxygen_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OxygenData {
    /// `avg_saturation_percentage`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_saturation_percentage: Option<f64>,
    /// `saturation_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation_samples: Option<Vec<OxygenSaturationSample>>,
    /// `vo2max_ml_per_min_per_kg`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub vo2max_ml_per_min_per_kg: Option<f64>,
    /// `day_avg_vo2max_ml_per_min_per_kg`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub day_avg_vo2max_ml_per_min_per_kg: Option<f64>,
    /// `vo2_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vo2_samples: Option<Vec<Vo2MaxSample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
