//! Terra `Daily` (one calendar day, cumulative; key = date part of `metadata.start_time`).
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use std::collections::BTreeMap;

use crate::Timestamp;
use crate::common::{
    ActiveDurationsData, CaloriesData, DeviceData, HeartRateData, MetData, OxygenData,
};
use crate::enums::{StressLevel, TimestampLocalization, UploadType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyMetadata {
    /// `start_time`
    pub start_time: Timestamp,
    /// `end_time`
    pub end_time: Timestamp,
    /// `upload_type`
    pub upload_type: UploadType,
    /// `timestamp_localization`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_localization: Option<TimestampLocalization>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `distance_data` of a day (flat, unlike Activity's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DailyDistanceData {
    /// `steps`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    /// `distance_meters`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub distance_meters: Option<f64>,
    /// `floors_climbed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floors_climbed: Option<i64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `scores` of a day, as calculated by the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DailyScores {
    /// `activity`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub activity: Option<f64>,
    /// `recovery`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub recovery: Option<f64>,
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

/// `stress_data` of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StressData {
    /// `avg_stress_level`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub avg_stress_level: Option<f64>,
    /// `max_stress_level`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub max_stress_level: Option<f64>,
    /// `stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub stress_duration_seconds: Option<f64>,
    /// `high_stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub high_stress_duration_seconds: Option<f64>,
    /// `medium_stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub medium_stress_duration_seconds: Option<f64>,
    /// `low_stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub low_stress_duration_seconds: Option<f64>,
    /// `rest_stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub rest_stress_duration_seconds: Option<f64>,
    /// `activity_stress_duration_seconds`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub activity_stress_duration_seconds: Option<f64>,
    /// `stress_rating`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress_rating: Option<StressLevel>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `data_enrichment` of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DailyDataEnrichment {
    /// `resilience_score`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub resilience_score: Option<f64>,
    /// `resilience_contributors`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64_map"
    )]
    pub resilience_contributors: Option<BTreeMap<String, f64>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `Daily` payload item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Daily {
    /// `metadata`
    pub metadata: DailyMetadata,
    /// `active_durations_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_durations_data: Option<ActiveDurationsData>,
    /// `calories_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calories_data: Option<CaloriesData>,
    /// `distance_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_data: Option<DailyDistanceData>,
    /// `heart_rate_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_data: Option<HeartRateData>,
    /// `MET_data`
    #[serde(rename = "MET_data", default, skip_serializing_if = "Option::is_none")]
    pub met_data: Option<MetData>,
    /// `oxygen_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oxygen_data: Option<OxygenData>,
    /// `scores`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<DailyScores>,
    /// `stress_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress_data: Option<StressData>,
    /// `data_enrichment`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_enrichment: Option<DailyDataEnrichment>,
    /// `device_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<DeviceData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
