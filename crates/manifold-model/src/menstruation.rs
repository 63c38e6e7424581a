//! Terra `Menstruation` (one calendar day; key = date part of `metadata.start_time`).
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use crate::enums::{MenstruationFlow, MenstruationInterval, TimestampLocalization};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of a menstruation day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MenstruationMetadata {
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

/// `menstruation_data.menstruation_flow[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MenstruationFlowSample {
    /// `timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// `flow`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<MenstruationFlow>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `menstruation_data.intervals[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MenstruationIntervalSample {
    /// `start_timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Timestamp>,
    /// `end_timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Timestamp>,
    /// `phase`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MenstruationInterval>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `menstruation_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MenstruationData {
    /// `period_length_days`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_length_days: Option<i64>,
    /// `current_phase`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<MenstruationInterval>,
    /// `length_of_current_phase_days`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_of_current_phase_days: Option<i64>,
    /// `days_until_next_phase`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_until_next_phase: Option<i64>,
    /// `period_start_date`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start_date: Option<NaiveDate>,
    /// `predicted_cycle_length_days`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_cycle_length_days: Option<i64>,
    /// `day_in_cycle`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_in_cycle: Option<i64>,
    /// `last_updated_time`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time: Option<Timestamp>,
    /// `cycle_length_days`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_length_days: Option<i64>,
    /// `is_predicted_cycle`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_predicted_cycle: Option<bool>,
    /// `menstruation_flow`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menstruation_flow: Option<Vec<MenstruationFlowSample>>,
    /// `intervals`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<MenstruationIntervalSample>>,
    /// `fertility_window_start`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fertility_window_start: Option<NaiveDate>,
    /// `fertility_window_end`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fertility_window_end: Option<NaiveDate>,
    /// `ovulation_day`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ovulation_day: Option<NaiveDate>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `Menstruation` payload item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Menstruation {
    /// `metadata`
    pub metadata: MenstruationMetadata,
    /// `menstruation_data`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menstruation_data: Option<MenstruationData>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
