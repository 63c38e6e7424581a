//! Terra `Athlete` (profile snapshot, one per connection) and `TerraUser`.
//!
//! Field names are Terra's JSON names; see the crate docs for the null/omit and number rules.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Terra `Athlete` (the `athlete` object of an athlete event). Dates are kept as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Athlete {
    /// `age`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    /// `country`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `bio`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    /// `state`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `last_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// `sex`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// `city`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// `email`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `date_of_birth`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// `first_name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// `gender`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// `account_creation_date`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_creation_date: Option<String>,
    /// `provider_user_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_user_id: Option<String>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Terra `TerraUser` (the `user` object of every event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerraUser {
    /// `user_id`
    pub user_id: String,
    /// `provider`
    pub provider: String,
    /// `created_at`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// `last_webhook_update`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_webhook_update: Option<Timestamp>,
    /// `scopes`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// `reference_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// `active`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Fields not modelled above, kept verbatim so that nothing is lost on a round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
