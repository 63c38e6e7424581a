//! Turning deliveries into documents and deletes: pure, no I/O.

use std::collections::HashMap;

use manifold_core::destination::Delivery;
use manifold_core::event::{DATA_TYPES, item_key};
use serde_json::{Map, Value};

use crate::USER_EVENTS;

/// One document to write (replace-or-insert by `_id`, if not older than what is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// Collection name without the prefix (the event type, or `user_events`).
    pub collection: String,
    pub id: String,
    pub user_id: Option<String>,
    pub summary_id: Option<String>,
    pub version: i64,
    pub trace_id: String,
    /// The event with just this item (without `_id` and `_meta`).
    pub doc: Map<String, Value>,
}

/// A tombstone entry: delete the documents whose `_id` is `id`, or whose user is `user_id` and
/// whose `data.metadata.summary_id` is `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub collection: String,
    pub user_id: String,
    pub id: String,
    pub key: String,
}

/// Everything one delivery writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    pub upserts: Vec<Upsert>,
    pub deletes: Vec<Delete>,
}

/// An operation and the indexes (in the batch) of the deliveries that depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Op<T> {
    pub owners: Vec<usize>,
    pub op: T,
}

/// A whole batch, merged so no command touches the same `_id` twice.
#[derive(Debug, Default)]
pub struct Plan {
    pub deletes: Vec<Op<Delete>>,
    pub upserts: Vec<Op<Upsert>>,
}

fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Parse one delivery. An error is the reason the item can never be stored (permanent).
pub fn parse(d: &Delivery) -> Result<Item, String> {
    let body: Value = d
        .json()
        .map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(obj) = body else {
        return Err("the body must be a JSON object (a Terra event)".into());
    };
    let event_type = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(&d.event_type)
        .to_string();
    let user_id = obj
        .get("user")
        .and_then(|u| s(u.get("user_id")))
        .or_else(|| d.user_id.clone());
    let mut item = Item::default();

    if !DATA_TYPES.contains(&event_type.as_str()) {
        item.upserts.push(Upsert {
            collection: USER_EVENTS.into(),
            id: d.payload_id.clone(),
            user_id,
            summary_id: None,
            version: d.version,
            trace_id: d.payload_id.clone(),
            doc: obj,
        });
        return Ok(item);
    }

    let Some(uid) = user_id else {
        return Err(format!(
            "a `{event_type}` event needs `user.user_id`: without it the document has no key"
        ));
    };
    if let Some(deleted) = obj.get("deleted") {
        let list = deleted
            .as_array()
            .ok_or("`deleted` must be an array of {\"summary_id\"} or {\"date\"} objects")?;
        for (i, del) in list.iter().enumerate() {
            let key = s(del.get("summary_id").or_else(|| del.get("date")))
                .ok_or_else(|| format!("`deleted[{i}]` needs a `summary_id` or a `date`"))?;
            item.deletes.push(Delete {
                collection: event_type.clone(),
                user_id: uid.clone(),
                id: format!("{uid}:{event_type}:{key}"),
                key,
            });
        }
    }
    if event_type == "athlete" {
        if obj.get("athlete").is_some() {
            item.upserts.push(Upsert {
                collection: event_type.clone(),
                id: format!("{uid}:athlete"),
                user_id: Some(uid.clone()),
                summary_id: None,
                version: d.version,
                trace_id: d.payload_id.clone(),
                doc: obj,
            });
        } else if item.deletes.is_empty() {
            return Err("an `athlete` event needs an `athlete` object".into());
        }
        return Ok(item);
    }
    match obj.get("data") {
        Some(data) => {
            let records = data
                .as_array()
                .ok_or_else(|| format!("`data` must be an array of {event_type} records"))?;
            for (i, rec) in records.iter().enumerate() {
                let key = item_key(&event_type, rec).ok_or_else(|| {
                    format!("`data[{i}]` has no natural key: it needs `metadata.summary_id` or `metadata.start_time`")
                })?;
                let mut single = obj.clone();
                single.insert("data".into(), Value::Array(vec![rec.clone()]));
                item.upserts.push(Upsert {
                    collection: event_type.clone(),
                    id: format!("{uid}:{event_type}:{key}"),
                    user_id: Some(uid.clone()),
                    summary_id: s(rec.get("metadata").and_then(|m| m.get("summary_id"))),
                    version: d.version,
                    trace_id: d.payload_id.clone(),
                    doc: single,
                });
            }
        }
        None if item.deletes.is_empty() => {
            return Err(format!(
                "a `{event_type}` event needs a `data` array (or `deleted` for a tombstone)"
            ));
        }
        None => {}
    }
    Ok(item)
}

impl Plan {
    /// Merge `(batch index, item)` pairs in delivery order. Upserts keep the highest version per
    /// `_id` (the later one on a tie); a tombstone drops the pending upserts it matches (deletes
    /// run before upserts, so a record re-sent after its tombstone in the same batch survives).
    /// The owners of a superseded operation become owners of the one that replaced it.
    pub fn merge<'a>(items: impl IntoIterator<Item = (usize, &'a Item)>) -> Plan {
        let mut plan = Plan::default();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut upserts: Vec<Option<Op<Upsert>>> = Vec::new();
        for (owner, item) in items {
            for del in &item.deletes {
                let mut owners = vec![owner];
                for slot in upserts.iter_mut() {
                    let hit = slot.as_ref().is_some_and(|u| {
                        u.op.collection == del.collection
                            && (u.op.id == del.id
                                || (u.op.user_id.as_deref() == Some(del.user_id.as_str())
                                    && u.op.summary_id.as_deref() == Some(del.key.as_str())))
                    });
                    if hit {
                        let u = slot.take().expect("checked");
                        index.remove(&(u.op.collection, u.op.id));
                        owners.extend(u.owners);
                    }
                }
                plan.deletes.push(Op {
                    owners,
                    op: del.clone(),
                });
            }
            for up in &item.upserts {
                let key = (up.collection.clone(), up.id.clone());
                match index.get(&key) {
                    Some(&i) => {
                        let cur = upserts[i].as_mut().expect("indexed slots are filled");
                        cur.owners.push(owner);
                        if up.version >= cur.op.version {
                            cur.op = up.clone();
                        }
                    }
                    None => {
                        index.insert(key, upserts.len());
                        upserts.push(Some(Op {
                            owners: vec![owner],
                            op: up.clone(),
                        }));
                    }
                }
            }
        }
        plan.upserts = upserts.into_iter().flatten().collect();
        plan
    }
}

#[cfg(test)]
mod tests {
    use manifold_core::testkit::sample_delivery;
    use serde_json::json;

    use super::*;

    fn with_body(mut d: Delivery, body: Value) -> Delivery {
        d.body = serde_json::to_vec(&body).unwrap().into();
        d
    }

    #[test]
    fn one_document_per_item_keyed_by_natural_key() {
        let d = sample_delivery("daily", "u1", 1);
        let mut body = d.json().unwrap();
        let mut second = body["data"][0].clone();
        second["metadata"]["start_time"] = "2026-07-03T00:00:00.000000+00:00".into();
        body["data"].as_array_mut().unwrap().push(second);
        let item = parse(&with_body(d.clone(), body.clone())).unwrap();
        assert_eq!(item.upserts.len(), 2);
        assert_eq!(item.upserts[0].id, d.natural_key);
        assert_eq!(item.upserts[0].id, "u1:daily:2026-07-02");
        assert_eq!(item.upserts[1].id, "u1:daily:2026-07-03");
        assert_eq!(item.upserts[1].collection, "daily");
        let doc = Value::Object(item.upserts[1].doc.clone());
        assert_eq!(doc["data"], json!([body["data"][1]]));
        assert_eq!(doc["user"], body["user"]);
    }

    #[test]
    fn informational_events_go_to_user_events_by_trace_id() {
        let d = sample_delivery("auth", "u1", 1);
        let item = parse(&d).unwrap();
        assert_eq!(item.upserts.len(), 1);
        assert_eq!(item.upserts[0].collection, USER_EVENTS);
        assert_eq!(item.upserts[0].id, d.payload_id);
        assert_eq!(
            Value::Object(item.upserts[0].doc.clone()),
            d.json().unwrap()
        );
    }

    #[test]
    fn athlete_is_one_document_per_user() {
        let d = with_body(
            sample_delivery("athlete", "u1", 1),
            json!({"type": "athlete", "user": {"user_id": "u1"}, "athlete": {"age": 40}}),
        );
        let item = parse(&d).unwrap();
        assert_eq!(item.upserts[0].id, "u1:athlete");
        assert_eq!(item.upserts[0].collection, "athlete");
    }

    #[test]
    fn tombstones_and_versions_merge_like_the_store() {
        let a = sample_delivery("sleep", "u1", 1);
        let mut b = sample_delivery("sleep", "u1", 1);
        b.version = 3;
        let mut c = sample_delivery("sleep", "u1", 1);
        c.version = 2;
        let (a, b, c) = (parse(&a).unwrap(), parse(&b).unwrap(), parse(&c).unwrap());
        let plan = Plan::merge([(0, &a), (1, &b), (2, &c)]);
        assert_eq!(plan.upserts.len(), 1);
        assert_eq!(plan.upserts[0].op.version, 3);
        assert_eq!(plan.upserts[0].owners, vec![0, 1, 2]);

        let t = parse(&with_body(
            sample_delivery("sleep", "u1", 1),
            json!({"type": "sleep", "user": {"user_id": "u1"}, "deleted": [{"summary_id": "u1-sleep-1"}]}),
        ))
        .unwrap();
        assert_eq!(t.deletes[0].id, "u1:sleep:u1-sleep-1");
        let plan = Plan::merge([(0, &a), (1, &t)]);
        assert!(plan.upserts.is_empty());
        assert_eq!(plan.deletes[0].owners, vec![1, 0]);
        let plan = Plan::merge([(0, &t), (1, &a)]);
        assert_eq!(plan.upserts.len(), 1);
        assert_eq!(plan.deletes.len(), 1);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let d = sample_delivery("sleep", "u1", 1);
        let bad = |b: &str| {
            let mut d = d.clone();
            d.body = bytes::Bytes::copy_from_slice(b.as_bytes());
            d.user_id = None;
            parse(&d).unwrap_err()
        };
        assert!(bad("not json").contains("not valid JSON"));
        assert!(bad("[1]").contains("JSON object"));
        assert!(
            bad(r#"{"type":"sleep","user":{"user_id":"u"},"data":[{"x":1}]}"#)
                .contains("natural key")
        );
        assert!(bad(r#"{"type":"sleep","data":[]}"#).contains("user_id"));
        assert!(bad(r#"{"type":"sleep","user":{"user_id":"u"}}"#).contains("`data` array"));
    }
}
