//! Where each delivery lands in an object store (S3, GCS, Azure Blob): pure functions, no I/O.
//!
//! One layout for every object-storage destination, so a consumer reading Terra-style keys
//! finds the same object wherever it is stored.
//!
//! * Data events (`data` array): one object per data item,
//!   `<prefix>/2022-03-16/<type>/<user_id>-<start_time>.json`, where `start_time` is the item's
//!   `metadata.start_time` verbatim. The object body is the event with `data` holding just that
//!   item (for a one-item event: the delivered bytes exactly), so every object is a
//!   self-contained Terra payload and an updated record overwrites its own object.
//! * Informational events (`auth`, `deauth`, `athlete`, …, anything without `data`):
//!   `<prefix>/2022-03-16/<event_type>/<user_id>-<timestamp>-<trace_id>.json`, `timestamp` = when
//!   the payload was committed (UTC, milliseconds). Both are stable across retries; the trace id
//!   keeps two events of one user committed in the same millisecond apart (Terra's name stops
//!   after the timestamp).
//! * Tombstones (`{"type":…,"deleted":[…]}`): `<prefix>/2022-03-16/<type>/deleted/<user_id>-<timestamp>-<trace_id>.json`
//!   (the deleted records' objects are not removed: their keys hold `start_time`, which a
//!   tombstone does not carry).
//! * FIT files (`application/vnd.ant.fit`): `<prefix>/2022-03-16/<type>/<user_id>-<record>.fit`,
//!   `record` = the record's natural key (the activity's `summary_id`): the binary carries no
//!   `start_time` we could read without decoding FIT.
//! * FHIR bundles (`application/fhir+json`): one object per event,
//!   `<prefix>/2022-03-16/<type>/<user_id>-<record>.fhir.json`.
//!
//! A missing user id is written as `unknown`. `/`, `\` and control characters inside a user id,
//! start time or record key become `_`, so a value can never add or escape a folder.
//! With `gzip = true` every key gets a `.gz` suffix.

use crate::destination::Delivery;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// The API version folder every object lives under (Terra's layout).
pub const VERSION_FOLDER: &str = "2022-03-16";
/// Content type of FIT files.
pub const FIT: &str = "application/vnd.ant.fit";
/// Content type of FHIR bundles.
pub const FHIR_JSON: &str = "application/fhir+json";

/// One object to write for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: &'static str,
}

/// Make one path segment safe: no folder separators, no control characters, never empty or `..`.
pub fn sanitize(segment: &str) -> String {
    let s: String = segment
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" => "_".to_string(),
        "." | ".." => s.replace('.', "_"),
        _ => s,
    }
}

/// `prefix` without leading/trailing slashes joined with `rest`.
pub fn join(prefix: &str, rest: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        rest.to_string()
    } else {
        format!("{p}/{rest}")
    }
}

/// Timestamp used in informational object names: RFC 3339, UTC, milliseconds (`…T14:30:00.123Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn user(d: &Delivery) -> String {
    sanitize(d.user_id.as_deref().unwrap_or("unknown"))
}

/// The record part of the natural key (`user:type:<record>`), or the whole key.
pub fn record_part(d: &Delivery) -> String {
    let user = d.user_id.as_deref().unwrap_or("-");
    let head = format!("{user}:{}:", d.event_type);
    sanitize(d.natural_key.strip_prefix(&head).unwrap_or(&d.natural_key))
}

/// Key of one data item: `2022-03-16/<type>/<user>-<start_time>.json` under `prefix`.
pub fn data_key(prefix: &str, event_type: &str, user_id: &str, start_time: &str) -> String {
    join(
        prefix,
        &format!(
            "{VERSION_FOLDER}/{}/{}-{}.json",
            sanitize(event_type),
            sanitize(user_id),
            sanitize(start_time)
        ),
    )
}

/// Key of an informational event: `2022-03-16/<event_type>/<user>-<timestamp>-<trace id>.json`.
pub fn info_key(
    prefix: &str,
    event_type: &str,
    user_id: &str,
    at: DateTime<Utc>,
    trace_id: &str,
) -> String {
    join(
        prefix,
        &format!(
            "{VERSION_FOLDER}/{}/{}-{}-{}.json",
            sanitize(event_type),
            sanitize(user_id),
            timestamp(at),
            sanitize(trace_id)
        ),
    )
}

/// Every object a delivery becomes. An error is permanent (the body cannot be laid out).
pub fn plan(prefix: &str, d: &Delivery) -> Result<Vec<PlannedObject>, String> {
    let ty = sanitize(&d.event_type);
    let user = user(d);
    if d.content_type == FIT {
        return Ok(vec![PlannedObject {
            key: join(
                prefix,
                &format!("{VERSION_FOLDER}/{ty}/{user}-{}.fit", record_part(d)),
            ),
            body: d.body.clone(),
            content_type: FIT,
        }]);
    }
    if d.content_type == FHIR_JSON {
        return Ok(vec![PlannedObject {
            key: join(
                prefix,
                &format!("{VERSION_FOLDER}/{ty}/{user}-{}.fhir.json", record_part(d)),
            ),
            body: d.body.clone(),
            content_type: FHIR_JSON,
        }]);
    }
    let event: Value = serde_json::from_slice(&d.body)
        .map_err(|e| format!("the payload is not JSON ({e}); cannot name its object"))?;
    let ct = d.content_type;
    match event.get("data") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let start = item
                    .get("metadata")
                    .and_then(|m| m.get("start_time"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        format!(
                            "data item {i} of this `{}` event has no `metadata.start_time`; the object name \
                             `<user_id>-<start_time>.json` needs it (fix the producer of this event)",
                            d.event_type
                        )
                    })?;
                let body = if items.len() == 1 {
                    d.body.clone()
                } else {
                    let mut one = event.clone();
                    one["data"] = Value::Array(vec![item.clone()]);
                    Bytes::from(serde_json::to_vec(&one).map_err(|e| e.to_string())?)
                };
                out.push(PlannedObject {
                    key: data_key(prefix, &d.event_type, &user, start),
                    body,
                    content_type: ct,
                });
            }
            // Two items with the same start time would overwrite each other: keep the last one
            // (the producer's order), as a re-delivered record would.
            let mut seen = std::collections::HashSet::new();
            let mut dedup: Vec<PlannedObject> = out
                .into_iter()
                .rev()
                .filter(|o| seen.insert(o.key.clone()))
                .collect();
            dedup.reverse();
            Ok(dedup)
        }
        _ if event.get("deleted").is_some_and(Value::is_array) => Ok(vec![PlannedObject {
            key: join(
                prefix,
                &format!(
                    "{VERSION_FOLDER}/{ty}/deleted/{user}-{}-{}.json",
                    timestamp(d.created_at),
                    sanitize(d.trace_id())
                ),
            ),
            body: d.body.clone(),
            content_type: ct,
        }]),
        _ => Ok(vec![PlannedObject {
            key: info_key(prefix, &d.event_type, &user, d.created_at, d.trace_id()),
            body: d.body.clone(),
            content_type: ct,
        }]),
    }
}

/// The key with `.gz` appended when objects are gzip-compressed.
pub fn with_gzip(key: String, gzip: bool) -> String {
    if gzip { format!("{key}.gz") } else { key }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn delivery(body: Value, content_type: &'static str) -> Delivery {
        Delivery {
            id: "p1:s3".into(),
            payload_id: "p1".into(),
            event_type: body["type"].as_str().unwrap_or("activity").into(),
            user_id: Some("abc123".into()),
            reference_id: None,
            natural_key: "abc123:activity:sum-1".into(),
            version: 1,
            terra_reference: None,
            attempt: 1,
            created_at: Utc.with_ymd_and_hms(2026, 3, 12, 14, 30, 0).unwrap(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
            content_type,
        }
    }

    #[test]
    fn data_event_is_named_by_user_and_start_time() {
        let body = json!({"type":"sleep","user":{"user_id":"abc123"},"version":"2022-03-16",
            "data":[{"metadata":{"start_time":"2026-03-11T22:00:00Z","summary_id":"s"}}]});
        let d = delivery(body, "application/json");
        let out = plan("terra", &d).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].key,
            "terra/2022-03-16/sleep/abc123-2026-03-11T22:00:00Z.json"
        );
        assert_eq!(
            out[0].body, d.body,
            "a one-item event is stored byte for byte"
        );
        assert_eq!(out[0].content_type, "application/json");
    }

    #[test]
    fn empty_and_slashed_prefixes_are_normalised() {
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("/x/y/", "a"), "x/y/a");
        assert_eq!(
            data_key("", "daily", "u", "2026-07-01T00:00:00+02:00"),
            "2022-03-16/daily/u-2026-07-01T00:00:00+02:00.json"
        );
    }

    #[test]
    fn several_items_become_one_object_each() {
        let body = json!({"type":"daily","user":{"user_id":"abc123"},"version":"2022-03-16","data":[
            {"metadata":{"start_time":"2026-03-10T00:00:00+01:00"},"n":1},
            {"metadata":{"start_time":"2026-03-11T00:00:00+01:00"},"n":2}]});
        let out = plan("", &delivery(body.clone(), "application/json")).unwrap();
        assert_eq!(
            out.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            [
                "2022-03-16/daily/abc123-2026-03-10T00:00:00+01:00.json",
                "2022-03-16/daily/abc123-2026-03-11T00:00:00+01:00.json"
            ]
        );
        for (i, o) in out.iter().enumerate() {
            let v: Value = serde_json::from_slice(&o.body).unwrap();
            assert_eq!(v["data"].as_array().unwrap().len(), 1);
            assert_eq!(v["data"][0], body["data"][i]);
            assert_eq!(v["user"], body["user"]);
            assert_eq!(v["type"], "daily");
        }
    }

    #[test]
    fn duplicate_start_times_keep_the_last_item() {
        let body = json!({"type":"daily","data":[
            {"metadata":{"start_time":"T"},"n":1},{"metadata":{"start_time":"T"},"n":2}]});
        let out = plan("", &delivery(body, "application/json")).unwrap();
        assert_eq!(out.len(), 1);
        let v: Value = serde_json::from_slice(&out[0].body).unwrap();
        assert_eq!(v["data"][0]["n"], 2);
    }

    #[test]
    fn informational_events_are_named_by_commit_time() {
        let body = json!({"type":"auth","status":"success","user":{"user_id":"abc123"}});
        let out = plan("p", &delivery(body, "application/json")).unwrap();
        assert_eq!(
            out[0].key,
            "p/2022-03-16/auth/abc123-2026-03-12T14:30:00.000Z-p1.json"
        );
    }

    #[test]
    fn tombstones_go_to_a_deleted_folder() {
        let body = json!({"type":"sleep","deleted":[{"summary_id":"x"}]});
        let out = plan("", &delivery(body, "application/json")).unwrap();
        assert_eq!(
            out[0].key,
            "2022-03-16/sleep/deleted/abc123-2026-03-12T14:30:00.000Z-p1.json"
        );
    }

    #[test]
    fn fit_files_use_the_record_key_and_fit_extension() {
        let mut d = delivery(json!({}), FIT);
        d.body = Bytes::from_static(b"\x0e\x10\x00\x00.FIT binary");
        let out = plan("", &d).unwrap();
        assert_eq!(out[0].key, "2022-03-16/activity/abc123-sum-1.fit");
        assert_eq!(out[0].content_type, FIT);
        assert_eq!(out[0].body, d.body);
    }

    #[test]
    fn fhir_bundles_are_one_object() {
        let d = delivery(json!({"resourceType":"Bundle"}), FHIR_JSON);
        let out = plan("", &d).unwrap();
        assert_eq!(out[0].key, "2022-03-16/activity/abc123-sum-1.fhir.json");
        assert_eq!(out[0].content_type, FHIR_JSON);
    }

    #[test]
    fn values_cannot_escape_their_folder() {
        let mut d = delivery(
            json!({"type":"sleep","data":[{"metadata":{"start_time":"../../x"}}]}),
            "application/json",
        );
        d.user_id = Some("a/../b".into());
        let key = &plan("", &d).unwrap()[0].key;
        assert_eq!(key, "2022-03-16/sleep/a_.._b-.._.._x.json");
        assert_eq!(sanitize(".."), "__");
        assert_eq!(sanitize(""), "_");
        d.user_id = None;
        assert!(plan("", &d).unwrap()[0].key.contains("/unknown-"));
    }

    #[test]
    fn items_without_start_time_are_refused_with_the_fix() {
        let d = delivery(
            json!({"type":"sleep","data":[{"metadata":{}}]}),
            "application/json",
        );
        let err = plan("", &d).unwrap_err();
        assert!(err.contains("metadata.start_time"), "{err}");
        let bad = Delivery {
            body: Bytes::from_static(b"not json"),
            ..d
        };
        assert!(plan("", &bad).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn gzip_suffix() {
        assert_eq!(with_gzip("a.json".into(), true), "a.json.gz");
        assert_eq!(with_gzip("a.json".into(), false), "a.json");
    }
}
