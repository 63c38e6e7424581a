//! The event envelope: data events, the athlete event, informational events and our
//! tombstone extension.
//!
//! Wire shapes:
//! * data: `{"type": "sleep", "user": {…}, "data": [ … ], "version": "2022-03-16"}`
//! * athlete: `{"type": "athlete", "user": {…}, "athlete": {…}, "version": "2022-03-16"}`
//! * tombstone (Manifold extension): `{"type": "sleep", "user": {…}, "deleted":
//!   [{"summary_id": "…"} | {"date": "YYYY-MM-DD"}], "version": "2022-03-16"}`
//! * informational: `{"type": "deauth", "user": {…}, "status": "success", …}` (see [`InfoEvent`]).
//!
//! Unknown envelope keys are kept in each event's `extra` map.

use crate::{Activity, Athlete, Body, Daily, Menstruation, Sleep, TerraUser, Timestamp};
use chrono::NaiveDate;
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Terra payload schema version carried by every data event.
pub const VERSION: &str = "2022-03-16";

/// The `data` array of a data event, typed by event type.
#[derive(Debug, Clone, PartialEq)]
pub enum DataPayload {
    /// `activity`
    Activity(Vec<Activity>),
    /// `body`
    Body(Vec<Body>),
    /// `daily`
    Daily(Vec<Daily>),
    /// `menstruation`
    Menstruation(Vec<Menstruation>),
    /// `nutrition` (not produced from Oura; kept as raw JSON)
    Nutrition(Vec<Value>),
    /// `sleep`
    Sleep(Vec<Sleep>),
}

impl DataPayload {
    /// The event `type` string.
    pub fn event_type(&self) -> &'static str {
        match self {
            DataPayload::Activity(_) => "activity",
            DataPayload::Body(_) => "body",
            DataPayload::Daily(_) => "daily",
            DataPayload::Menstruation(_) => "menstruation",
            DataPayload::Nutrition(_) => "nutrition",
            DataPayload::Sleep(_) => "sleep",
        }
    }

    /// Number of items in `data`.
    pub fn len(&self) -> usize {
        match self {
            DataPayload::Activity(v) => v.len(),
            DataPayload::Body(v) => v.len(),
            DataPayload::Daily(v) => v.len(),
            DataPayload::Menstruation(v) => v.len(),
            DataPayload::Nutrition(v) => v.len(),
            DataPayload::Sleep(v) => v.len(),
        }
    }

    /// True when `data` is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items as JSON values (e.g. to compute [`crate::natural_key`] or store them one by one).
    pub fn items_json(&self) -> Result<Vec<Value>, serde_json::Error> {
        fn all<T: Serialize>(v: &[T]) -> Result<Vec<Value>, serde_json::Error> {
            v.iter().map(serde_json::to_value).collect()
        }
        match self {
            DataPayload::Activity(v) => all(v),
            DataPayload::Body(v) => all(v),
            DataPayload::Daily(v) => all(v),
            DataPayload::Menstruation(v) => all(v),
            DataPayload::Nutrition(v) => Ok(v.clone()),
            DataPayload::Sleep(v) => all(v),
        }
    }

    fn to_json(&self) -> Result<Value, serde_json::Error> {
        self.items_json().map(Value::Array)
    }

    fn from_json(event_type: &str, data: Value) -> Result<Self, serde_json::Error> {
        Ok(match event_type {
            "activity" => DataPayload::Activity(serde_json::from_value(data)?),
            "body" => DataPayload::Body(serde_json::from_value(data)?),
            "daily" => DataPayload::Daily(serde_json::from_value(data)?),
            "menstruation" => DataPayload::Menstruation(serde_json::from_value(data)?),
            "nutrition" => DataPayload::Nutrition(serde_json::from_value(data)?),
            "sleep" => DataPayload::Sleep(serde_json::from_value(data)?),
            other => {
                return Err(serde_json::Error::custom(format!(
                    "`{other}` is not a data event type"
                )));
            }
        })
    }
}

/// A data event (`activity`, `body`, `daily`, `menstruation`, `nutrition`, `sleep`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataEvent {
    /// `user`
    pub user: TerraUser,
    /// `data` (its variant gives `type`)
    pub data: DataPayload,
    /// `version`
    pub version: String,
    /// Unknown envelope keys, kept verbatim.
    pub extra: Map<String, Value>,
}

/// The athlete event: a single `athlete` object instead of a `data` array.
#[derive(Debug, Clone, PartialEq)]
pub struct AthleteEvent {
    /// `user`
    pub user: TerraUser,
    /// `athlete`
    pub athlete: Athlete,
    /// `version`
    pub version: String,
    /// Unknown envelope keys, kept verbatim.
    pub extra: Map<String, Value>,
}

/// One deleted item of a tombstone: by `summary_id` (activity, sleep) or by `date`
/// (day types: daily, body, menstruation, nutrition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeletedRef {
    /// `{"summary_id": "…"}`
    SummaryId {
        /// The deleted item's `metadata.summary_id`.
        summary_id: String,
    },
    /// `{"date": "YYYY-MM-DD"}`
    Date {
        /// The deleted day.
        date: NaiveDate,
    },
}

impl DeletedRef {
    /// The natural key this reference deletes (same key space as [`crate::natural_key`]).
    pub fn natural_key(&self) -> String {
        match self {
            DeletedRef::SummaryId { summary_id } => summary_id.clone(),
            DeletedRef::Date { date } => date.to_string(),
        }
    }
}

/// Tombstone (Manifold extension): items of `event_type` that no longer exist at the source.
#[derive(Debug, Clone, PartialEq)]
pub struct TombstoneEvent {
    /// The data type of the deleted items (`sleep`, `daily`, …).
    pub event_type: String,
    /// `user`
    pub user: TerraUser,
    /// `deleted`
    pub deleted: Vec<DeletedRef>,
    /// `version`
    pub version: String,
    /// Unknown envelope keys, kept verbatim.
    pub extra: Map<String, Value>,
}

/// `auth` (success, or the legacy error form with `status: "error"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthEvent {
    /// `status` (`success` | `error`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `user`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<TerraUser>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `reference_id` (legacy top-level copy)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// `widget_session_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widget_session_id: Option<String>,
    /// `flow_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// `provider` (legacy error form)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `reason` (legacy error form)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `auth_cancelled`: auth failed or was cancelled; carries no user.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthCancelledEvent {
    /// `status` (`error`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `flow_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// `reason` (e.g. `access_denied`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `reference_id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `deauth`, `access_revoked`, `connection_error`: a user plus a status and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserStatusEvent {
    /// `user`
    pub user: TerraUser,
    /// `status`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `user_reauth`: the same provider account connected again under a new user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserReauthEvent {
    /// `new_user`
    pub new_user: TerraUser,
    /// `old_user`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_user: Option<TerraUser>,
    /// `status` (`warning`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `permission_change`: scopes changed on re-auth (comma-separated strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionChangeEvent {
    /// `user`
    pub user: TerraUser,
    /// `status` (`warning`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `scopes_added`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_added: Option<String>,
    /// `scopes_removed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_removed: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `large_request_processing` and `large_request_sending`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LargeRequestEvent {
    /// `user`
    pub user: TerraUser,
    /// `status`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `reference` (equals the `terra-reference` header of every chunk)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `expected_payloads` (`large_request_sending` only)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_payloads: Option<i64>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `rate_limit_hit`: the provider rate-limited an async request; retried later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitHitEvent {
    /// `user`
    pub user: TerraUser,
    /// `start_date`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<Timestamp>,
    /// `end_date`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<Timestamp>,
    /// `retrying_at`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrying_at: Option<Timestamp>,
    /// `message`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `healthcheck`: periodic destination probe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthcheckEvent {
    /// `status`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `creation_timestamp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// `trend_percentage`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::num::opt_f64"
    )]
    pub trend_percentage: Option<f64>,
    /// `sent_webhooks_last_hour`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_webhooks_last_hour: Option<i64>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `s3_payload`: a claim check pointing at the payload stored elsewhere.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct S3PayloadEvent {
    /// `status`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `url`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `expires_in` (seconds)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// `payload_reference` (queue destinations)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_reference: Option<String>,
    /// `user_id` (queue destinations)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `reference_id` (queue destinations)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// Unknown keys, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Informational (non-data) events, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InfoEvent {
    /// `auth`
    Auth(AuthEvent),
    /// `auth_cancelled`
    AuthCancelled(AuthCancelledEvent),
    /// `deauth`
    Deauth(UserStatusEvent),
    /// `user_reauth`
    UserReauth(UserReauthEvent),
    /// `access_revoked`
    AccessRevoked(UserStatusEvent),
    /// `connection_error`
    ConnectionError(UserStatusEvent),
    /// `permission_change`
    PermissionChange(PermissionChangeEvent),
    /// `large_request_processing`
    LargeRequestProcessing(LargeRequestEvent),
    /// `large_request_sending`
    LargeRequestSending(LargeRequestEvent),
    /// `rate_limit_hit`
    RateLimitHit(RateLimitHitEvent),
    /// `healthcheck`
    Healthcheck(HealthcheckEvent),
    /// `s3_payload`
    S3Payload(S3PayloadEvent),
}

impl InfoEvent {
    /// The event `type` string.
    pub fn event_type(&self) -> &'static str {
        match self {
            InfoEvent::Auth(_) => "auth",
            InfoEvent::AuthCancelled(_) => "auth_cancelled",
            InfoEvent::Deauth(_) => "deauth",
            InfoEvent::UserReauth(_) => "user_reauth",
            InfoEvent::AccessRevoked(_) => "access_revoked",
            InfoEvent::ConnectionError(_) => "connection_error",
            InfoEvent::PermissionChange(_) => "permission_change",
            InfoEvent::LargeRequestProcessing(_) => "large_request_processing",
            InfoEvent::LargeRequestSending(_) => "large_request_sending",
            InfoEvent::RateLimitHit(_) => "rate_limit_hit",
            InfoEvent::Healthcheck(_) => "healthcheck",
            InfoEvent::S3Payload(_) => "s3_payload",
        }
    }

    /// The user the event is about, when it has one (`new_user` for `user_reauth`).
    pub fn user(&self) -> Option<&TerraUser> {
        match self {
            InfoEvent::Auth(e) => e.user.as_ref(),
            InfoEvent::Deauth(e) | InfoEvent::AccessRevoked(e) | InfoEvent::ConnectionError(e) => {
                Some(&e.user)
            }
            InfoEvent::UserReauth(e) => Some(&e.new_user),
            InfoEvent::PermissionChange(e) => Some(&e.user),
            InfoEvent::LargeRequestProcessing(e) | InfoEvent::LargeRequestSending(e) => {
                Some(&e.user)
            }
            InfoEvent::RateLimitHit(e) => Some(&e.user),
            InfoEvent::AuthCancelled(_) | InfoEvent::Healthcheck(_) | InfoEvent::S3Payload(_) => {
                None
            }
        }
    }
}

/// Any event Manifold emits or accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A data event with a `data` array.
    Data(DataEvent),
    /// The athlete event.
    Athlete(AthleteEvent),
    /// A tombstone (Manifold extension).
    Tombstone(TombstoneEvent),
    /// An informational event.
    Info(InfoEvent),
}

fn user_status(user: TerraUser, status: &str, message: &str) -> UserStatusEvent {
    UserStatusEvent {
        user,
        status: Some(status.to_owned()),
        message: Some(message.to_owned()),
        version: None,
        extra: Map::new(),
    }
}

impl Event {
    /// A data event of `data`'s type.
    pub fn data(user: TerraUser, data: DataPayload) -> Self {
        Event::Data(DataEvent {
            user,
            data,
            version: VERSION.to_owned(),
            extra: Map::new(),
        })
    }

    /// `activity` event.
    pub fn activity(user: TerraUser, items: Vec<Activity>) -> Self {
        Self::data(user, DataPayload::Activity(items))
    }

    /// `body` event.
    pub fn body(user: TerraUser, items: Vec<Body>) -> Self {
        Self::data(user, DataPayload::Body(items))
    }

    /// `daily` event.
    pub fn daily(user: TerraUser, items: Vec<Daily>) -> Self {
        Self::data(user, DataPayload::Daily(items))
    }

    /// `menstruation` event.
    pub fn menstruation(user: TerraUser, items: Vec<Menstruation>) -> Self {
        Self::data(user, DataPayload::Menstruation(items))
    }

    /// `sleep` event.
    pub fn sleep(user: TerraUser, items: Vec<Sleep>) -> Self {
        Self::data(user, DataPayload::Sleep(items))
    }

    /// `athlete` event.
    pub fn athlete(user: TerraUser, athlete: Athlete) -> Self {
        Event::Athlete(AthleteEvent {
            user,
            athlete,
            version: VERSION.to_owned(),
            extra: Map::new(),
        })
    }

    /// Tombstone for items of `event_type` (must be one of [`crate::DATA_TYPES`]).
    pub fn tombstone(
        event_type: impl Into<String>,
        user: TerraUser,
        deleted: Vec<DeletedRef>,
    ) -> Self {
        Event::Tombstone(TombstoneEvent {
            event_type: event_type.into(),
            user,
            deleted,
            version: VERSION.to_owned(),
            extra: Map::new(),
        })
    }

    /// `auth` success.
    pub fn auth_success(user: TerraUser, widget_session_id: Option<String>) -> Self {
        Event::Info(InfoEvent::Auth(AuthEvent {
            status: Some("success".into()),
            reference_id: user.reference_id.clone(),
            user: Some(user),
            message: Some("User has successfully authenticated".into()),
            widget_session_id,
            ..AuthEvent::default()
        }))
    }

    /// `auth_cancelled` (no user exists yet).
    pub fn auth_cancelled(
        reference_id: Option<String>,
        reason: impl Into<String>,
        flow_id: Option<String>,
    ) -> Self {
        Event::Info(InfoEvent::AuthCancelled(AuthCancelledEvent {
            status: Some("error".into()),
            flow_id,
            reason: Some(reason.into()),
            reference_id,
            extra: Map::new(),
        }))
    }

    /// `deauth`.
    pub fn deauth(user: TerraUser) -> Self {
        Event::Info(InfoEvent::Deauth(user_status(
            user,
            "success",
            "User has deauthenticated",
        )))
    }

    /// `access_revoked`.
    pub fn access_revoked(user: TerraUser) -> Self {
        Event::Info(InfoEvent::AccessRevoked(user_status(
            user,
            "warning",
            "User revoked access",
        )))
    }

    /// `connection_error`.
    pub fn connection_error(user: TerraUser) -> Self {
        Event::Info(InfoEvent::ConnectionError(user_status(
            user,
            "warning",
            "User connection degraded",
        )))
    }

    /// `user_reauth`.
    pub fn user_reauth(new_user: TerraUser, old_user: Option<TerraUser>) -> Self {
        Event::Info(InfoEvent::UserReauth(UserReauthEvent {
            new_user,
            old_user,
            status: Some("warning".into()),
            message: Some("User has reauthenticated and old ID has been deleted".into()),
            version: Some(VERSION.into()),
            extra: Map::new(),
        }))
    }

    /// `permission_change` (comma-separated scope lists).
    pub fn permission_change(
        user: TerraUser,
        scopes_added: Option<String>,
        scopes_removed: Option<String>,
    ) -> Self {
        Event::Info(InfoEvent::PermissionChange(PermissionChangeEvent {
            user,
            status: Some("warning".into()),
            message: Some("User permissions have been modified".into()),
            version: Some(VERSION.into()),
            scopes_added,
            scopes_removed,
            extra: Map::new(),
        }))
    }

    /// `large_request_processing`.
    pub fn large_request_processing(user: TerraUser, reference: impl Into<String>) -> Self {
        Event::Info(InfoEvent::LargeRequestProcessing(LargeRequestEvent {
            user,
            status: Some("processing".into()),
            message: Some("Large request is processing".into()),
            reference: Some(reference.into()),
            expected_payloads: None,
            extra: Map::new(),
        }))
    }

    /// `large_request_sending`.
    pub fn large_request_sending(
        user: TerraUser,
        reference: impl Into<String>,
        expected_payloads: i64,
    ) -> Self {
        Event::Info(InfoEvent::LargeRequestSending(LargeRequestEvent {
            user,
            status: None,
            message: Some("Large request is being sent".into()),
            reference: Some(reference.into()),
            expected_payloads: Some(expected_payloads),
            extra: Map::new(),
        }))
    }

    /// `rate_limit_hit`.
    pub fn rate_limit_hit(
        user: TerraUser,
        start_date: Timestamp,
        end_date: Timestamp,
        retrying_at: Timestamp,
    ) -> Self {
        Event::Info(InfoEvent::RateLimitHit(RateLimitHitEvent {
            user,
            start_date: Some(start_date),
            end_date: Some(end_date),
            retrying_at: Some(retrying_at),
            message: Some("Rate limit reached whilst processing async query".into()),
            extra: Map::new(),
        }))
    }

    /// `healthcheck`.
    pub fn healthcheck(
        status: impl Into<String>,
        creation_timestamp: Timestamp,
        trend_percentage: f64,
        sent_webhooks_last_hour: i64,
    ) -> Self {
        Event::Info(InfoEvent::Healthcheck(HealthcheckEvent {
            status: Some(status.into()),
            creation_timestamp: Some(creation_timestamp),
            trend_percentage: Some(trend_percentage),
            sent_webhooks_last_hour: Some(sent_webhooks_last_hour),
            extra: Map::new(),
        }))
    }

    /// `s3_payload` claim check.
    pub fn s3_payload(url: impl Into<String>, expires_in: i64) -> Self {
        Event::Info(InfoEvent::S3Payload(S3PayloadEvent {
            status: Some("success".into()),
            url: Some(url.into()),
            expires_in: Some(expires_in),
            ..S3PayloadEvent::default()
        }))
    }

    /// The `type` string.
    pub fn event_type(&self) -> &str {
        match self {
            Event::Data(e) => e.data.event_type(),
            Event::Athlete(_) => "athlete",
            Event::Tombstone(e) => &e.event_type,
            Event::Info(e) => e.event_type(),
        }
    }

    /// The user the event is about, if any.
    pub fn user(&self) -> Option<&TerraUser> {
        match self {
            Event::Data(e) => Some(&e.user),
            Event::Athlete(e) => Some(&e.user),
            Event::Tombstone(e) => Some(&e.user),
            Event::Info(e) => e.user(),
        }
    }

    /// True for data, athlete and tombstone events.
    pub fn is_data(&self) -> bool {
        !matches!(self, Event::Info(_))
    }

    /// Serialises to a JSON value.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

fn write_envelope<S: Serializer>(
    s: S,
    event_type: &str,
    user: &TerraUser,
    body_key: &str,
    body: &Value,
    version: &str,
    extra: &Map<String, Value>,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("type", event_type)?;
    m.serialize_entry("user", user)?;
    m.serialize_entry(body_key, body)?;
    m.serialize_entry("version", version)?;
    for (k, v) in extra {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self {
            Event::Data(e) => {
                let data = e.data.to_json().map_err(S::Error::custom)?;
                let t = e.data.event_type();
                write_envelope(s, t, &e.user, "data", &data, &e.version, &e.extra)
            }
            Event::Athlete(e) => {
                let a = serde_json::to_value(&e.athlete).map_err(S::Error::custom)?;
                write_envelope(s, "athlete", &e.user, "athlete", &a, &e.version, &e.extra)
            }
            Event::Tombstone(e) => {
                let d = serde_json::to_value(&e.deleted).map_err(S::Error::custom)?;
                let t = &e.event_type;
                write_envelope(s, t, &e.user, "deleted", &d, &e.version, &e.extra)
            }
            Event::Info(e) => e.serialize(s),
        }
    }
}

fn take<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    m: &mut Map<String, Value>,
    key: &str,
) -> Result<T, E> {
    let v = m
        .remove(key)
        .ok_or_else(|| E::custom(format!("missing field `{key}`")))?;
    serde_json::from_value(v).map_err(|e| E::custom(format!("field `{key}`: {e}")))
}

fn take_version(m: &mut Map<String, Value>) -> String {
    match m.remove("version") {
        Some(Value::String(v)) => v,
        _ => VERSION.to_owned(),
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Object(mut m) = v else {
            return Err(D::Error::custom("an event must be a JSON object"));
        };
        let event_type = match m.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(D::Error::custom("missing or non-string field `type`")),
        };
        if crate::DATA_TYPES.contains(&event_type.as_str()) {
            m.remove("type");
            if m.contains_key("deleted") {
                let user = take(&mut m, "user")?;
                let deleted = take(&mut m, "deleted")?;
                let version = take_version(&mut m);
                return Ok(Event::Tombstone(TombstoneEvent {
                    event_type,
                    user,
                    deleted,
                    version,
                    extra: m,
                }));
            }
            if event_type == "athlete" {
                let user = take(&mut m, "user")?;
                let athlete = take(&mut m, "athlete")?;
                let version = take_version(&mut m);
                return Ok(Event::Athlete(AthleteEvent {
                    user,
                    athlete,
                    version,
                    extra: m,
                }));
            }
            let user = take(&mut m, "user")?;
            let raw = m
                .remove("data")
                .ok_or_else(|| D::Error::custom("missing field `data`"))?;
            let data = DataPayload::from_json(&event_type, raw)
                .map_err(|e| D::Error::custom(format!("field `data`: {e}")))?;
            let version = take_version(&mut m);
            return Ok(Event::Data(DataEvent {
                user,
                data,
                version,
                extra: m,
            }));
        }
        if crate::EVENT_TYPES.contains(&event_type.as_str()) {
            return serde_json::from_value(Value::Object(m))
                .map(Event::Info)
                .map_err(|e| D::Error::custom(format!("`{event_type}` event: {e}")));
        }
        Err(D::Error::custom(format!(
            "unknown event type `{event_type}`"
        )))
    }
}
