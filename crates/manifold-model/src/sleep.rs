//! Terra `Sleep` (one sleep session, naps included; key `metadata.summary_id`).
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use crate::common::{DeviceData, HeartRateData};
use crate::enums::{RecoveryLevel, SleepLevel, SleepUploadType, TimestampLocalization};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of a sleep session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepMetadata {
    /// `start_time`
    pub start_time: Timestamp,
    /// `end_time`
    pub end_time: Timestamp,
    /// `summary_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_id: Option<String>,
    /// `is_nap`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_nap: Option<bool>,
    /// `upload_type`
    pub upload_type: SleepUploadType,
    /// `timestamp_localization`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_localization: Option<TimestampLocalization>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sleep_durations_data.asleep` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AsleepDurations {
    /// `duration_asleep_state_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_asleep_state_seconds: Option<f64>,
    /// `duration_deep_sleep_state_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_deep_sleep_state_seconds: Option<f64>,
    /// `duration_light_sleep_state_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_light_sleep_state_seconds: Option<f64>,
    /// `duration_REM_sleep_state_seconds`
    #[serde(
        rename = "duration_REM_sleep_state_seconds",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_rem_sleep_state_seconds: Option<f64>,
    /// `num_REM_events`
    #[serde(
        rename = "num_REM_events",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_rem_events: Option<i64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sleep_durations_data.awake` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AwakeDurations {
    /// `duration_awake_state_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_awake_state_seconds: Option<f64>,
    /// `duration_long_interruption_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_long_interruption_seconds: Option<f64>,
    /// `duration_short_interruption_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_short_interruption_seconds: Option<f64>,
    /// `num_out_of_bed_events`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_out_of_bed_events: Option<i64>,
    /// `num_wakeup_events`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_wakeup_events: Option<i64>,
    /// `sleep_latency_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub sleep_latency_seconds: Option<f64>,
    /// `wake_up_latency_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub wake_up_latency_seconds: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sleep_durations_data.other` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OtherSleepDurations {
    /// `duration_in_bed_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_in_bed_seconds: Option<f64>,
    /// `duration_unmeasurable_sleep_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub duration_unmeasurable_sleep_seconds: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One hypnogram sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SleepHypnogramSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `level`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<SleepLevel>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sleep_durations_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SleepDurationsData {
    /// `asleep`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep: Option<AsleepDurations>,
    /// `awake`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awake: Option<AwakeDurations>,
    /// `other`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<OtherSleepDurations>,
    /// `sleep_efficiency`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub sleep_efficiency: Option<f64>,
    /// `hypnogram_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypnogram_samples: Option<Vec<SleepHypnogramSample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `respiration_data.breaths_data` (breaths per minute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BreathsData {
    /// `avg_breaths_per_min`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_breaths_per_min: Option<f64>,
    /// `max_breaths_per_min`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub max_breaths_per_min: Option<f64>,
    /// `min_breaths_per_min`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub min_breaths_per_min: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `respiration_data.oxygen_saturation_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OxygenSaturationData {
    /// `avg_saturation_percentage`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_saturation_percentage: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `respiration_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RespirationData {
    /// `breaths_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaths_data: Option<BreathsData>,
    /// `oxygen_saturation_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oxygen_saturation_data: Option<OxygenSaturationData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `temperature_data` of a sleep session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SleepTemperatureData {
    /// `delta`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub delta: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `readiness_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReadinessData {
    /// `readiness`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub readiness: Option<f64>,
    /// `recovery_level`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_level: Option<RecoveryLevel>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `scores` of a sleep session (newest shape: `scores.sleep`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SleepScores {
    /// `sleep`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub sleep: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `Sleep` payload item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sleep {
    /// `metadata`
    pub metadata: SleepMetadata,
    /// `sleep_durations_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_durations_data: Option<SleepDurationsData>,
    /// `heart_rate_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_data: Option<HeartRateData>,
    /// `respiration_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respiration_data: Option<RespirationData>,
    /// `temperature_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_data: Option<SleepTemperatureData>,
    /// `readiness_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_data: Option<ReadinessData>,
    /// `scores`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<SleepScores>,
    /// `device_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<DeviceData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
