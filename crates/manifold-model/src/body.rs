//! Terra `Body` (body metrics of one calendar day; key = date part of `metadata.start_time`).
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use crate::common::{DeviceData, HeartRateData, OxygenData};
use crate::enums::TimestampLocalization;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of a body day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyMetadata {
    /// `start_time`
    pub start_time: Timestamp,
    /// `end_time`
    pub end_time: Timestamp,
    /// `timestamp_localization`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_localization: Option<TimestampLocalization>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heart_data.pulse_wave_velocity_samples[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PulseVelocitySample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `pulse_wave_velocity_meters_per_second`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub pulse_wave_velocity_meters_per_second: Option<f64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heart_data` of a body day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartData {
    /// `heart_rate_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_data: Option<HeartRateData>,
    /// `pulse_wave_velocity_samples`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulse_wave_velocity_samples: Option<Vec<PulseVelocitySample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `measurements_data.measurements[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MeasurementDataSample {
    /// `measurement_time`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_time: Option<Timestamp>,
    /// `weight_kg`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub weight_kg: Option<f64>,
    /// `height_cm`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub height_cm: Option<f64>,
    /// `BMI`
    #[serde(
        rename = "BMI",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub bmi: Option<f64>,
    /// `bodyfat_percentage`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub bodyfat_percentage: Option<f64>,
    /// `estimated_fitness_age`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_fitness_age: Option<i64>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `measurements_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MeasurementsData {
    /// `measurements`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<MeasurementDataSample>>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `Body` payload item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// `metadata`
    pub metadata: BodyMetadata,
    /// `heart_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_data: Option<HeartData>,
    /// `oxygen_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oxygen_data: Option<OxygenData>,
    /// `measurements_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements_data: Option<MeasurementsData>,
    /// `device_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<DeviceData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
