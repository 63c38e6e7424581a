//! Terra `Activity` (one completed workout; key `metadata.summary_id`).
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use crate::common::{
    ActiveDurationsData, CaloriesData, DeviceData, HeartRateData, MetData, OxygenData,
};
use crate::enums::{ActivityType, TimestampLocalization, UploadType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityMetadata {
    /// `summary_id`
    pub summary_id: String,
    /// `start_time`
    pub start_time: Timestamp,
    /// `end_time`
    pub end_time: Timestamp,
    /// `type`
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    /// `upload_type`
    pub upload_type: UploadType,
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `timestamp_localization`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_localization: Option<TimestampLocalization>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `distance_data.summary` of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DistanceSummary {
    /// `distance_meters`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub distance_meters: Option<f64>,
    /// `steps`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    /// `floors_climbed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floors_climbed: Option<i64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `distance_data` of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ActivityDistanceData {
    /// `summary`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<DistanceSummary>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `Activity` payload item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// `metadata`
    pub metadata: ActivityMetadata,
    /// `active_durations_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_durations_data: Option<ActiveDurationsData>,
    /// `calories_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calories_data: Option<CaloriesData>,
    /// `device_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<DeviceData>,
    /// `distance_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_data: Option<ActivityDistanceData>,
    /// `heart_rate_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_data: Option<HeartRateData>,
    /// `MET_data`
    #[serde(rename = "MET_data", default, skip_serializing_if = "Option::is_none")]
    pub met_data: Option<MetData>,
    /// `oxygen_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oxygen_data: Option<OxygenData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
