//! The envelope of a Terra-shaped event as the engine sees it: its type, its user, and the
//! natural key under which a newer version replaces an older one.

use serde_json::Value;

/// Data event types (they carry `data` or, for athlete, `athlete`).
pub const DATA_TYPES: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "sleep",
    "planned_workout",
];

/// Informational event types.
pub const INFO_TYPES: &[&str] = &[
    "auth",
    "auth_cancelled",
    "deauth",
    "user_reauth",
    "access_revoked",
    "connection_error",
    "permission_change",
    "large_request_processing",
    "large_request_sending",
    "rate_limit_hit",
    "healthcheck",
    "s3_payload",
];

/// Every event type a destination can subscribe to.
pub const KNOWN_TYPES: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "sleep",
    "planned_workout",
    "auth",
    "auth_cancelled",
    "deauth",
    "user_reauth",
    "access_revoked",
    "connection_error",
    "permission_change",
    "large_request_processing",
    "large_request_sending",
    "rate_limit_hit",
    "healthcheck",
    "s3_payload",
];

pub fn is_known_type(t: &str) -> bool {
    KNOWN_TYPES.contains(&t)
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event must be a JSON object")]
    NotAnObject,
    #[error("`type` is missing: set it to one of {}", KNOWN_TYPES.join(", "))]
    MissingType,
    #[error("`{0}` is not a Terra event type: use one of {list}", list = KNOWN_TYPES.join(", "))]
    UnknownType(String),
    #[error("`{0}`: {1}")]
    Invalid(&'static str, String),
}

impl EventError {
    /// Unknown types are a semantic error (422); the rest are malformed input (400).
    pub fn is_unknown_type(&self) -> bool {
        matches!(self, EventError::UnknownType(_))
    }
}

/// What the engine needs to know about an event to store and route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_type: String,
    pub user_id: Option<String>,
    pub reference_id: Option<String>,
    /// `None` for events that never replace one another (informational events): each is unique.
    pub natural_key: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Key of one data item: `summary_id` for sleep/activity, the local day for day-based types.
pub fn item_key(event_type: &str, item: &Value) -> Option<String> {
    let start = str_at(item, &["metadata", "start_time"]);
    match event_type {
        "sleep" | "activity" | "planned_workout" => str_at(item, &["metadata", "summary_id"])
            .map(str::to_string)
            .or_else(|| start.map(str::to_string)),
        "daily" | "body" | "menstruation" | "nutrition" => {
            // ISO-8601 starts with the local date of the user's offset.
            start.filter(|s| s.len() >= 10).map(|s| s[..10].to_string())
        }
        _ => None,
    }
}

/// Read and check the envelope of a published event.
pub fn parse_envelope(v: &Value) -> Result<Envelope, EventError> {
    let obj = v.as_object().ok_or(EventError::NotAnObject)?;
    let event_type = match obj.get("type") {
        None | Some(Value::Null) => return Err(EventError::MissingType),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(EventError::Invalid("type", "must be a string".into())),
    };
    if !is_known_type(&event_type) {
        return Err(EventError::UnknownType(event_type));
    }
    let user = obj.get("user");
    if let Some(u) = user
        && !u.is_object()
        && !u.is_null()
    {
        return Err(EventError::Invalid(
            "user",
            "must be an object with `user_id`".into(),
        ));
    }
    let user_id = user
        .and_then(|u| u.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let reference_id = user
        .and_then(|u| u.get("reference_id"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let natural_key = if event_type == "athlete" {
        if !obj.get("athlete").is_some_and(Value::is_object) {
            return Err(EventError::Invalid(
                "athlete",
                "an athlete event needs an `athlete` object".into(),
            ));
        }
        Some(format!("{}:athlete", user_id.as_deref().unwrap_or("-")))
    } else if DATA_TYPES.contains(&event_type.as_str()) {
        let data = match obj.get("data") {
            Some(Value::Array(a)) => Some(a),
            None if obj.get("deleted").is_some_and(Value::is_array) => None,
            _ => {
                return Err(EventError::Invalid(
                    "data",
                    format!("a `{event_type}` event needs a `data` array"),
                ));
            }
        };
        let keys: Vec<String> = match data {
            Some(items) => items
                .iter()
                .map(|i| item_key(&event_type, i))
                .collect::<Option<_>>()
                .unwrap_or_default(),
            None => obj["deleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    d.get("summary_id")
                        .or_else(|| d.get("date"))
                        .and_then(Value::as_str)
                        .map(|s| format!("del:{s}"))
                })
                .collect(),
        };
        (!keys.is_empty()).then(|| {
            format!(
                "{}:{}:{}",
                user_id.as_deref().unwrap_or("-"),
                event_type,
                keys.join(",")
            )
        })
    } else {
        None
    };
    Ok(Envelope {
        event_type,
        user_id,
        reference_id,
        natural_key,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sleep_key_is_summary_id() {
        let e = parse_envelope(&json!({"type":"sleep","user":{"user_id":"u1","reference_id":"r"},
            "data":[{"metadata":{"summary_id":"s-9","start_time":"2026-07-01T23:00:00.000000+01:00"}}]}))
        .unwrap();
        assert_eq!(e.natural_key.as_deref(), Some("u1:sleep:s-9"));
        assert_eq!(e.reference_id.as_deref(), Some("r"));
    }

    #[test]
    fn daily_key_is_local_day() {
        let e = parse_envelope(&json!({"type":"daily","user":{"user_id":"u1"},
            "data":[{"metadata":{"start_time":"2026-07-01T00:00:00.000000+09:00"}}]}))
        .unwrap();
        assert_eq!(e.natural_key.as_deref(), Some("u1:daily:2026-07-01"));
    }

    #[test]
    fn info_events_have_no_key() {
        let e = parse_envelope(&json!({"type":"auth","user":{"user_id":"u1"},"status":"success"}))
            .unwrap();
        assert_eq!(e.natural_key, None);
    }

    #[test]
    fn refuses_unknown_and_malformed() {
        assert!(
            parse_envelope(&json!({"type":"nope"}))
                .unwrap_err()
                .is_unknown_type()
        );
        assert_eq!(
            parse_envelope(&json!([])).unwrap_err(),
            EventError::NotAnObject
        );
        assert_eq!(
            parse_envelope(&json!({"user":{}})).unwrap_err(),
            EventError::MissingType
        );
        assert!(matches!(
            parse_envelope(&json!({"type":"sleep"})),
            Err(EventError::Invalid("data", _))
        ));
    }
}
