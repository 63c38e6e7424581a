//! Terra's table rows for a batch of deliveries: pure, no I/O. This is the one place where the
//! row layout and its rules live (which table an event goes to, the natural key of each item,
//! the day, the user's state transitions, how a batch merges); both the SQL destination (which
//! binds the rows as SQL values) and `manifold-supabase` (which sends them as JSON to PostgREST)
//! use it.

use std::collections::HashMap;

use manifold_core::destination::Delivery;
use manifold_core::event::{DATA_TYPES, item_key};
use serde_json::{Map, Value};

pub const USERS: &str = "terra_users";
pub const DATA: &str = "terra_data_payloads";
pub const MISC: &str = "terra_misc_payloads";
pub const TABLES: [&str; 3] = [USERS, DATA, MISC];

/// Columns of one `terra_data_payloads` row, in bind order.
pub const DATA_COLS: [&str; 12] = [
    "user_id",
    "data_type",
    "record_key",
    "summary_id",
    "day",
    "start_time",
    "end_time",
    "payload_id",
    "version",
    "created_at",
    "updated_at",
    "payload",
];
/// Columns of one `terra_users` row, in bind order.
pub const USER_COLS: [&str; 8] = [
    "user_id",
    "reference_id",
    "provider",
    "granted_scopes",
    "state",
    "state_changed_at",
    "created_at",
    "updated_at",
];
/// Columns of one `terra_misc_payloads` row, in bind order.
pub const MISC_COLS: [&str; 6] = [
    "payload_id",
    "user_id",
    "payload_type",
    "data_type",
    "created_at",
    "payload",
];

/// Data types keyed by the local day (`record_key` = `day` = `YYYY-MM-DD`).
pub const DAY_BASED: [&str; 4] = ["daily", "body", "menstruation", "nutrition"];

#[derive(Debug, Clone, PartialEq)]
pub struct DataRow {
    pub user_id: String,
    pub data_type: String,
    pub record_key: String,
    pub summary_id: Option<String>,
    pub day: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub payload_id: String,
    pub version: i64,
    /// The event with `data` holding just this item (athlete: the whole event).
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    pub reference_id: Option<String>,
    pub provider: Option<String>,
    pub granted_scopes: Option<String>,
    /// New state and when its event was committed, for auth-lifecycle events.
    pub state: Option<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MiscRow {
    pub payload_id: String,
    pub user_id: Option<String>,
    pub payload_type: String,
    pub data_type: Option<String>,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub user_id: String,
    pub data_type: String,
    pub key: String,
}

/// Everything one delivery writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    pub user: Option<UserRow>,
    pub data: Vec<DataRow>,
    pub deletes: Vec<Delete>,
    pub misc: Option<MiscRow>,
}

/// The statements' rows for a whole batch, merged so no statement touches a key twice.
#[derive(Debug, Default)]
pub struct Plan {
    pub users: Vec<UserRow>,
    pub deletes: Vec<Delete>,
    pub data: Vec<DataRow>,
    pub misc: Vec<MiscRow>,
}

/// UTC timestamp as stored in `created_at`-like columns (sorts as text).
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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
    let obj = body
        .as_object()
        .ok_or("the body must be a JSON object (a Terra event)")?;
    let event_type = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(&d.event_type)
        .to_string();
    let user = obj.get("user").and_then(Value::as_object);
    let user_id = user
        .and_then(|u| s(u.get("user_id")))
        .or_else(|| d.user_id.clone());
    let user_row = |state: Option<&'static str>| {
        user_id.as_ref().map(|id| UserRow {
            user_id: id.clone(),
            reference_id: user
                .and_then(|u| s(u.get("reference_id")))
                .or_else(|| d.reference_id.clone())
                .or_else(|| s(obj.get("reference_id"))),
            provider: user.and_then(|u| s(u.get("provider"))),
            granted_scopes: user.and_then(|u| s(u.get("scopes"))),
            state: state.map(|st| (st, ts(d.created_at))),
        })
    };

    let mut item = Item::default();
    if DATA_TYPES.contains(&event_type.as_str()) {
        let Some(uid) = user_id.clone() else {
            return Err(format!(
                "a `{event_type}` event needs `user.user_id`: without it the row has no key"
            ));
        };
        item.user = user_row(None);
        if let Some(deleted) = obj.get("deleted") {
            let list = deleted
                .as_array()
                .ok_or("`deleted` must be an array of {\"summary_id\"} or {\"date\"} objects")?;
            for (i, del) in list.iter().enumerate() {
                let key = s(del.get("summary_id").or_else(|| del.get("date")))
                    .ok_or_else(|| format!("`deleted[{i}]` needs a `summary_id` or a `date`"))?;
                item.deletes.push(Delete {
                    user_id: uid.clone(),
                    data_type: event_type.clone(),
                    key,
                });
            }
        }
        if event_type == "athlete" {
            if obj.get("athlete").is_some() {
                item.data.push(DataRow {
                    user_id: uid.clone(),
                    data_type: event_type.clone(),
                    record_key: "athlete".into(),
                    summary_id: None,
                    day: None,
                    start_time: None,
                    end_time: None,
                    payload_id: d.payload_id.clone(),
                    version: d.version,
                    payload: body.clone(),
                });
            }
        } else if let Some(data) = obj.get("data") {
            let items = data
                .as_array()
                .ok_or_else(|| format!("`data` must be an array of {event_type} records"))?;
            for (i, rec) in items.iter().enumerate() {
                let key = item_key(&event_type, rec).ok_or_else(|| {
                    format!("`data[{i}]` has no natural key: it needs `metadata.summary_id` or `metadata.start_time`")
                })?;
                let meta = rec.get("metadata");
                let start_time = s(meta.and_then(|m| m.get("start_time")));
                let day_based = DAY_BASED.contains(&event_type.as_str());
                let mut single: Map<String, Value> = obj.clone();
                single.insert("data".into(), Value::Array(vec![rec.clone()]));
                item.data.push(DataRow {
                    user_id: uid.clone(),
                    data_type: event_type.clone(),
                    summary_id: s(meta.and_then(|m| m.get("summary_id"))),
                    day: if day_based {
                        Some(key.clone())
                    } else {
                        start_time
                            .as_deref()
                            .filter(|t| t.len() >= 10)
                            .map(|t| t[..10].to_string())
                    },
                    record_key: key,
                    start_time,
                    end_time: s(meta.and_then(|m| m.get("end_time"))),
                    payload_id: d.payload_id.clone(),
                    version: d.version,
                    payload: Value::Object(single),
                });
            }
        } else if item.deletes.is_empty() {
            return Err(format!(
                "a `{event_type}` event needs a `data` array (or `deleted` for a tombstone)"
            ));
        }
    } else {
        let state = match event_type.as_str() {
            "auth" if obj.get("status").and_then(Value::as_str) != Some("error") => Some("active"),
            "user_reauth" => Some("active"),
            "deauth" => Some("deauthenticated"),
            "access_revoked" => Some("revoked"),
            _ => None,
        };
        if state.is_some() {
            item.user = user_row(state);
        }
        item.misc = Some(MiscRow {
            payload_id: d.payload_id.clone(),
            user_id,
            payload_type: event_type,
            data_type: s(obj.get("data_type")),
            payload: body.clone(),
        });
    }
    Ok(item)
}

impl Plan {
    /// Merge items in delivery order. Data rows keep the highest version per key (the later one
    /// on a tie); a tombstone drops the pending rows it matches (deletes run before upserts, so
    /// a record re-sent after its tombstone in the same batch survives).
    pub fn merge<'a>(items: impl IntoIterator<Item = &'a Item>) -> Plan {
        let mut plan = Plan::default();
        let mut users: HashMap<String, usize> = HashMap::new();
        let mut data: HashMap<(String, String, String), usize> = HashMap::new();
        let mut data_rows: Vec<Option<DataRow>> = Vec::new();
        let mut misc: HashMap<String, ()> = HashMap::new();
        for item in items {
            if let Some(u) = &item.user {
                match users.get(&u.user_id) {
                    None => {
                        users.insert(u.user_id.clone(), plan.users.len());
                        plan.users.push(u.clone());
                    }
                    Some(&i) => {
                        let cur = &mut plan.users[i];
                        cur.reference_id = u.reference_id.clone().or(cur.reference_id.take());
                        cur.provider = u.provider.clone().or(cur.provider.take());
                        cur.granted_scopes = u.granted_scopes.clone().or(cur.granted_scopes.take());
                        let newer = match (&cur.state, &u.state) {
                            (_, None) => false,
                            (None, Some(_)) => true,
                            (Some((_, a)), Some((_, b))) => b >= a,
                        };
                        if newer {
                            cur.state = u.state.clone();
                        }
                    }
                }
            }
            for del in &item.deletes {
                for row in data_rows.iter_mut() {
                    if row.as_ref().is_some_and(|r| {
                        r.user_id == del.user_id
                            && r.data_type == del.data_type
                            && (r.record_key == del.key || r.summary_id.as_ref() == Some(&del.key))
                    }) {
                        let r = row.take().expect("checked");
                        data.remove(&(r.user_id, r.data_type, r.record_key));
                    }
                }
                plan.deletes.push(del.clone());
            }
            for row in &item.data {
                let key = (
                    row.user_id.clone(),
                    row.data_type.clone(),
                    row.record_key.clone(),
                );
                match data.get(&key) {
                    Some(&i) => {
                        let slot = &mut data_rows[i];
                        if slot.as_ref().is_none_or(|cur| row.version >= cur.version) {
                            *slot = Some(row.clone());
                        }
                    }
                    None => {
                        data.insert(key, data_rows.len());
                        data_rows.push(Some(row.clone()));
                    }
                }
            }
            if let Some(m) = &item.misc
                && misc.insert(m.payload_id.clone(), ()).is_none()
            {
                plan.misc.push(m.clone());
            }
        }
        plan.data = data_rows.into_iter().flatten().collect();
        plan
    }
}

#[cfg(test)]
mod tests {
    use manifold_core::testkit::sample_delivery;

    use super::*;

    #[test]
    fn one_row_per_item_with_a_self_contained_payload() {
        let mut d = sample_delivery("daily", "u1", 1);
        let mut body = d.json().unwrap();
        let mut second = body["data"][0].clone();
        second["metadata"]["start_time"] = "2026-07-03T00:00:00.000000+00:00".into();
        body["data"].as_array_mut().unwrap().push(second);
        d.body = serde_json::to_vec(&body).unwrap().into();
        let item = parse(&d).unwrap();
        assert_eq!(item.data.len(), 2);
        assert_eq!(item.data[0].record_key, "2026-07-02");
        assert_eq!(item.data[1].record_key, "2026-07-03");
        let p = item.data[1].payload.clone();
        assert_eq!(p["data"].as_array().unwrap().len(), 1);
        assert_eq!(p["data"][0], body["data"][1]);
        assert_eq!(p["user"], body["user"]);
    }

    #[test]
    fn tombstone_then_merge_drops_pending_rows() {
        let d = sample_delivery("sleep", "u1", 1);
        let data = parse(&d).unwrap();
        let mut t = sample_delivery("sleep", "u1", 1);
        t.body = serde_json::to_vec(&serde_json::json!({"type":"sleep","user":{"user_id":"u1"},
            "deleted":[{"summary_id":"u1-sleep-1"}]}))
        .unwrap()
        .into();
        let del = parse(&t).unwrap();
        assert_eq!(del.deletes.len(), 1);
        let plan = Plan::merge([&data, &del]);
        assert!(plan.data.is_empty());
        let plan = Plan::merge([&del, &data]);
        assert_eq!(plan.data.len(), 1);
    }

    #[test]
    fn newest_version_wins_within_a_batch() {
        let mut a = sample_delivery("sleep", "u1", 1);
        a.version = 3;
        let mut b = sample_delivery("sleep", "u1", 1);
        b.version = 2;
        let plan = Plan::merge([&parse(&a).unwrap(), &parse(&b).unwrap()]);
        assert_eq!(plan.data.len(), 1);
        assert_eq!(plan.data[0].version, 3);
        assert_eq!(plan.users.len(), 1);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let mut d = sample_delivery("sleep", "u1", 1);
        d.body = bytes_of("not json");
        assert!(parse(&d).unwrap_err().contains("not valid JSON"));
        d.body = bytes_of(r#"{"type":"sleep","user":{"user_id":"u"},"data":[{"x":1}]}"#);
        assert!(parse(&d).unwrap_err().contains("natural key"));
        d.body = bytes_of(r#"{"type":"sleep","data":[]}"#);
        d.user_id = None;
        assert!(parse(&d).unwrap_err().contains("user_id"));
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn auth_lifecycle_states() {
        let d = sample_delivery("auth", "u1", 1);
        let item = parse(&d).unwrap();
        assert_eq!(item.user.unwrap().state.unwrap().0, "active");
        assert!(item.misc.is_some());
    }
}
