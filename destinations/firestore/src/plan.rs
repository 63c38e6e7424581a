//! Turning deliveries into Firestore documents and deletes: pure, no I/O.

use std::collections::HashMap;

use gcloud_sdk::google::firestore::v1::Value;
use manifold_core::destination::Delivery;
use manifold_core::event::{DATA_TYPES, item_key};
use manifold_core::object_layout::{sanitize, timestamp};
use serde_json::{Map, Value as Json};

use crate::value::{self, Unstorable};

/// Collection of informational events (auth, deauth, …), as Terra names it.
pub const USER_EVENTS: &str = "user_events";
/// Natural key of the record a document holds.
pub const KEY_FIELD: &str = "_manifold_key";
/// Version of that record.
pub const VERSION_FIELD: &str = "_manifold_version";
/// Payload id (`X-Terra-Trace-Id`) of the delivery that wrote it.
pub const TRACE_FIELD: &str = "_manifold_trace_id";
/// When it was written (a Firestore timestamp).
pub const UPDATED_FIELD: &str = "_manifold_updated_at";
/// On data documents: the top-level event fields (`type`, `user`, `version`, …) stored beside
/// the item's own fields, so the event can be rebuilt exactly.
pub const ENVELOPE_FIELD: &str = "_manifold_envelope";
/// Every field this crate adds starts with this.
pub const META_PREFIX: &str = "_manifold_";

/// One document to write (replace whole, if not older than what is stored under its key).
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// Collection id under the root (the event type, `user_events` or `athlete`).
    pub collection: String,
    /// Document id.
    pub id: String,
    /// Natural key (`<user>:<type>:<summary_id or day>`; the delivery's key for other events).
    pub key: String,
    pub version: i64,
    pub trace_id: String,
    /// The payload's fields (without the `_manifold_*` metadata, which the writer adds).
    pub fields: HashMap<String, Value>,
}

/// A tombstone entry: delete every document of `collection` whose `_manifold_key` is `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub collection: String,
    pub key: String,
}

/// Everything one delivery writes, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Upsert),
    Delete(Delete),
}

impl Op {
    pub fn collection(&self) -> &str {
        match self {
            Op::Upsert(u) => &u.collection,
            Op::Delete(d) => &d.collection,
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Op::Upsert(u) => &u.key,
            Op::Delete(d) => &d.key,
        }
    }
}

fn s(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Null => None,
        other => Some(other.to_string()),
    }
}

fn fields_of(obj: &Map<String, Json>) -> Result<HashMap<String, Value>, String> {
    if let Some(k) = obj.keys().find(|k| k.starts_with(META_PREFIX)) {
        return Err(format!(
            "the payload has a field `{k}`; names starting with `{META_PREFIX}` are reserved for Manifold's own fields"
        ));
    }
    value::to_fields(obj, "", 1).map_err(|Unstorable(m)| {
        format!("the payload cannot be stored as a Firestore document: {m}")
    })
}

/// Document id of a data item: `<user_id>-<start_time>.json` (Terra's name).
pub fn data_id(user_id: &str, start_time: &str) -> String {
    format!("{}-{}.json", sanitize(user_id), sanitize(start_time))
}

/// Document id of an informational event: `<user_id>-<timestamp>-<trace_id>.json`.
pub fn info_id(d: &Delivery) -> String {
    format!(
        "{}-{}-{}.json",
        sanitize(d.user_id.as_deref().unwrap_or("unknown")),
        timestamp(d.created_at),
        sanitize(d.trace_id())
    )
}

/// Parse one delivery into its operations. An error is the reason it can never be stored.
pub fn parse(d: &Delivery) -> Result<Vec<Op>, String> {
    if d.content_type != "application/json" {
        return Err(format!(
            "Firestore stores JSON documents, and this payload is `{}`: remove `format` from this destination (or set format = \"json\")",
            d.content_type
        ));
    }
    let body: Json = d
        .json()
        .map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Json::Object(obj) = body else {
        return Err("the body must be a JSON object (a Terra event)".into());
    };
    let event_type = obj
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or(&d.event_type)
        .to_string();
    let user_id = obj
        .get("user")
        .and_then(|u| s(u.get("user_id")))
        .or_else(|| d.user_id.clone());

    if !DATA_TYPES.contains(&event_type.as_str()) {
        return Ok(vec![Op::Upsert(Upsert {
            collection: USER_EVENTS.into(),
            id: info_id(d),
            key: d.natural_key.clone(),
            version: d.version,
            trace_id: d.payload_id.clone(),
            fields: fields_of(&obj)?,
        })]);
    }

    let Some(uid) = user_id else {
        return Err(format!(
            "a `{event_type}` event needs `user.user_id`: without it the document has no name"
        ));
    };
    let collection = sanitize(&event_type);
    let mut ops = Vec::new();
    if let Some(deleted) = obj.get("deleted") {
        let list = deleted
            .as_array()
            .ok_or("`deleted` must be an array of {\"summary_id\"} or {\"date\"} objects")?;
        for (i, del) in list.iter().enumerate() {
            let key = s(del.get("summary_id").or_else(|| del.get("date")))
                .ok_or_else(|| format!("`deleted[{i}]` needs a `summary_id` or a `date`"))?;
            ops.push(Op::Delete(Delete {
                collection: collection.clone(),
                key: format!("{uid}:{event_type}:{key}"),
            }));
        }
    }
    if event_type == "athlete" {
        if obj.get("athlete").is_some() {
            ops.push(Op::Upsert(Upsert {
                collection,
                id: format!("{}.json", sanitize(&uid)),
                key: format!("{uid}:athlete"),
                version: d.version,
                trace_id: d.payload_id.clone(),
                fields: fields_of(&obj)?,
            }));
        } else if ops.is_empty() {
            return Err("an `athlete` event needs an `athlete` object".into());
        }
        return Ok(ops);
    }
    let Some(data) = obj.get("data") else {
        if ops.is_empty() {
            return Err(format!(
                "a `{event_type}` event needs a `data` array (or `deleted` for a tombstone)"
            ));
        }
        return Ok(ops);
    };
    let records = data
        .as_array()
        .ok_or_else(|| format!("`data` must be an array of {event_type} records"))?;
    let mut envelope: Map<String, Json> = obj.clone();
    envelope.remove("data");
    let envelope_keys: Vec<Json> = envelope.keys().map(|k| Json::String(k.clone())).collect();
    let envelope_fields = fields_of(&envelope)?;
    for (i, rec) in records.iter().enumerate() {
        let Json::Object(item) = rec else {
            return Err(format!("`data[{i}]` must be an object"));
        };
        let key = item_key(&event_type, rec).ok_or_else(|| {
            format!("`data[{i}]` has no natural key: it needs `metadata.summary_id` or `metadata.start_time`")
        })?;
        let start = rec
            .get("metadata")
            .and_then(|m| m.get("start_time"))
            .and_then(Json::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "`data[{i}]` has no `metadata.start_time`; the document name `<user_id>-<start_time>.json` needs it (fix the producer of this event)"
                )
            })?;
        if let Some(k) = item.keys().find(|k| envelope.contains_key(*k)) {
            return Err(format!(
                "`data[{i}]` has a field `{k}` that the event itself also has; the document keeps item and event fields side by side, so they cannot share a name"
            ));
        }
        let mut fields = fields_of(item)?;
        fields.extend(envelope_fields.clone());
        fields.insert(
            ENVELOPE_FIELD.into(),
            value::to_value(&Json::Array(envelope_keys.clone()), ENVELOPE_FIELD, 1)
                .map_err(|Unstorable(m)| m)?,
        );
        ops.push(Op::Upsert(Upsert {
            collection: collection.clone(),
            id: data_id(&uid, start),
            key: format!("{uid}:{event_type}:{key}"),
            version: d.version,
            trace_id: d.payload_id.clone(),
            fields,
        }));
    }
    Ok(ops)
}

/// The Terra event a stored document holds, from its fields as JSON (as any Firestore client
/// reads them): the `_manifold_*` fields removed, and for data documents the item put back
/// into `data: [item]` beside the event's own fields.
pub fn event_from_document(mut doc: Map<String, Json>) -> Json {
    let envelope = doc.remove(ENVELOPE_FIELD);
    doc.retain(|k, _| !k.starts_with(META_PREFIX));
    match envelope {
        Some(Json::Array(keys)) => {
            let mut event = Map::new();
            for k in keys.iter().filter_map(Json::as_str) {
                if let Some(v) = doc.remove(k) {
                    event.insert(k.to_string(), v);
                }
            }
            event.insert("data".into(), Json::Array(vec![Json::Object(doc)]));
            Json::Object(event)
        }
        _ => Json::Object(doc),
    }
}

#[cfg(test)]
mod tests {
    use manifold_core::testkit::sample_delivery;
    use serde_json::json;

    use super::*;

    fn with_body(mut d: Delivery, body: Json) -> Delivery {
        d.body = serde_json::to_vec(&body).unwrap().into();
        d
    }

    fn upsert(op: &Op) -> &Upsert {
        match op {
            Op::Upsert(u) => u,
            Op::Delete(_) => panic!("expected an upsert"),
        }
    }

    fn as_json(u: &Upsert) -> Json {
        let mut fields = value::fields_to_json(&u.fields);
        fields.insert(KEY_FIELD.into(), json!(u.key));
        event_from_document(fields)
    }

    #[test]
    fn data_items_are_named_by_user_and_start_time_and_rebuild_exactly() {
        let d = sample_delivery("sleep", "u1", 3);
        let ops = parse(&d).unwrap();
        assert_eq!(ops.len(), 1);
        let u = upsert(&ops[0]);
        let body = d.json().unwrap();
        let start = body["data"][0]["metadata"]["start_time"].as_str().unwrap();
        assert_eq!(u.collection, "sleep");
        assert_eq!(u.id, format!("u1-{start}.json"));
        assert_eq!(u.key, d.natural_key);
        // Item fields and the user sit side by side, as Terra describes its documents.
        assert!(u.fields.contains_key("metadata"));
        assert!(u.fields.contains_key("user"));
        assert!(!u.fields.contains_key("data"));
        assert_eq!(as_json(u), body);
    }

    #[test]
    fn multi_item_events_give_one_document_per_item() {
        let d = sample_delivery("daily", "u1", 1);
        let mut body = d.json().unwrap();
        let mut second = body["data"][0].clone();
        second["metadata"]["start_time"] = json!("2026-07-09T00:00:00.000000+02:00");
        body["data"].as_array_mut().unwrap().push(second.clone());
        let ops = parse(&with_body(d, body.clone())).unwrap();
        assert_eq!(ops.len(), 2);
        let u = upsert(&ops[1]);
        assert_eq!(u.key, "u1:daily:2026-07-09");
        assert_eq!(u.id, "u1-2026-07-09T00:00:00.000000+02:00.json");
        let mut want = body.clone();
        want["data"] = json!([second]);
        assert_eq!(as_json(u), want);
    }

    #[test]
    fn informational_events_go_to_user_events_whole() {
        let d = sample_delivery("auth", "u/1", 1);
        let ops = parse(&d).unwrap();
        let u = upsert(&ops[0]);
        assert_eq!(u.collection, USER_EVENTS);
        assert!(u.id.starts_with("u_1-"), "{}", u.id);
        assert!(u.id.ends_with(&format!("-{}.json", d.payload_id)));
        assert_eq!(as_json(u), d.json().unwrap());
    }

    #[test]
    fn tombstones_delete_by_key_and_athlete_is_one_per_user() {
        let d = sample_delivery("sleep", "u1", 1);
        let t = with_body(
            d.clone(),
            json!({"type": "sleep", "user": {"user_id": "u1"}, "deleted": [{"summary_id": "s-9"}, {"date": "2026-07-01"}]}),
        );
        assert_eq!(
            parse(&t).unwrap(),
            vec![
                Op::Delete(Delete {
                    collection: "sleep".into(),
                    key: "u1:sleep:s-9".into()
                }),
                Op::Delete(Delete {
                    collection: "sleep".into(),
                    key: "u1:sleep:2026-07-01".into()
                }),
            ]
        );
        let a = with_body(
            d,
            json!({"type": "athlete", "user": {"user_id": "u1"}, "athlete": {"age": 30}}),
        );
        let ops = parse(&a).unwrap();
        let u = upsert(&ops[0]);
        assert_eq!(
            (u.collection.as_str(), u.id.as_str()),
            ("athlete", "u1.json")
        );
        assert_eq!(u.key, "u1:athlete");
    }

    #[test]
    fn unstorable_payloads_say_why() {
        let d = sample_delivery("sleep", "u1", 1);
        let e = parse(&with_body(
            d.clone(),
            json!({"type":"sleep","user":{"user_id":"u"},"data":[{"metadata":{"summary_id":"x"}}]}),
        ))
        .unwrap_err();
        assert!(e.contains("metadata.start_time"), "{e}");
        let e = parse(&with_body(
            d.clone(),
            json!({"type":"sleep","user":{"user_id":"u"},"data":[{"user": 1, "metadata":{"summary_id":"x","start_time":"t"}}]}),
        ))
        .unwrap_err();
        assert!(e.contains("`user`"), "{e}");
        let e = parse(&with_body(
            d.clone(),
            json!({"type":"auth","user":{"user_id":"u"},"_manifold_key": 1}),
        ))
        .unwrap_err();
        assert!(e.contains("reserved"), "{e}");
        let mut fit = d.clone();
        fit.content_type = "application/vnd.ant.fit";
        assert!(parse(&fit).unwrap_err().contains("format"));
        let mut bad = d;
        bad.body = bytes::Bytes::from_static(b"nope");
        assert!(parse(&bad).unwrap_err().contains("not valid JSON"));
    }
}
