//! JSON ↔ Firestore values, and Firestore's document size rules: pure, no I/O.
//!
//! | JSON | Firestore |
//! |---|---|
//! | `null` | `nullValue` |
//! | `true`/`false` | `booleanValue` |
//! | integer in i64 range | `integerValue` |
//! | any other number (fraction, exponent, or an integer beyond i64) | `doubleValue` |
//! | string (timestamps included: kept verbatim) | `stringValue` |
//! | object | `mapValue` |
//! | array | `arrayValue`; an array directly inside an array (Firestore forbids that) becomes `{"_manifold_array": [...]}` |

use std::collections::HashMap;

use gcloud_sdk::google::firestore::v1::{ArrayValue, MapValue, Value, value::ValueType};
use serde_json::{Map, Number, Value as Json};

/// Key of the map that stands for an array nested directly inside an array.
pub const NESTED_ARRAY_KEY: &str = "_manifold_array";
/// Firestore's largest document, in its own size units.
pub const MAX_DOCUMENT_BYTES: usize = 1_048_576;
/// Firestore's deepest nesting of maps and arrays.
pub const MAX_DEPTH: usize = 20;

/// A value that cannot become a Firestore field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstorable(pub String);

fn reserved(name: &str) -> bool {
    name.len() >= 4 && name.starts_with("__") && name.ends_with("__")
}

/// Convert a JSON value. `path` names the field in errors.
pub fn to_value(v: &Json, path: &str, depth: usize) -> Result<Value, Unstorable> {
    if depth > MAX_DEPTH {
        return Err(Unstorable(format!(
            "`{path}` is nested deeper than Firestore's limit of {MAX_DEPTH} maps/arrays"
        )));
    }
    let t = match v {
        Json::Null => ValueType::NullValue(0),
        Json::Bool(b) => ValueType::BooleanValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => ValueType::IntegerValue(i),
            None => ValueType::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => ValueType::StringValue(s.clone()),
        Json::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let value = match item {
                    Json::Array(_) => {
                        // Firestore: "an array cannot contain another array value".
                        let inner = to_value(item, &p, depth + 2)?;
                        Value {
                            value_type: Some(ValueType::MapValue(MapValue {
                                fields: HashMap::from([(NESTED_ARRAY_KEY.to_string(), inner)]),
                            })),
                        }
                    }
                    _ => to_value(item, &p, depth + 1)?,
                };
                values.push(value);
            }
            ValueType::ArrayValue(ArrayValue { values })
        }
        Json::Object(o) => ValueType::MapValue(MapValue {
            fields: to_fields(o, path, depth + 1)?,
        }),
    };
    Ok(Value {
        value_type: Some(t),
    })
}

/// Convert the fields of a JSON object.
pub fn to_fields(
    o: &Map<String, Json>,
    path: &str,
    depth: usize,
) -> Result<HashMap<String, Value>, Unstorable> {
    let mut fields = HashMap::with_capacity(o.len());
    for (k, v) in o {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if reserved(k) {
            return Err(Unstorable(format!(
                "field `{p}`: Firestore reserves field names of the form `__name__`"
            )));
        }
        fields.insert(k.clone(), to_value(v, &p, depth)?);
    }
    Ok(fields)
}

/// Convert back to JSON: integers as JSON integers, doubles as JSON floats, timestamps as
/// RFC 3339 strings, bytes as base64-free lists of numbers (never written by this crate).
pub fn to_json(v: &Value) -> Json {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => Json::Null,
        Some(ValueType::BooleanValue(b)) => Json::Bool(*b),
        Some(ValueType::IntegerValue(i)) => Json::Number((*i).into()),
        Some(ValueType::DoubleValue(d)) => Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Some(ValueType::StringValue(s)) => Json::String(s.clone()),
        Some(ValueType::TimestampValue(t)) => Json::String(
            chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
        ),
        Some(ValueType::BytesValue(b)) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        Some(ValueType::ReferenceValue(s)) => Json::String(s.clone()),
        Some(ValueType::GeoPointValue(g)) => {
            serde_json::json!({"latitude": g.latitude, "longitude": g.longitude})
        }
        Some(ValueType::ArrayValue(a)) => Json::Array(a.values.iter().map(to_json).collect()),
        Some(ValueType::MapValue(m)) => {
            if m.fields.len() == 1
                && let Some(inner) = m.fields.get(NESTED_ARRAY_KEY)
                && matches!(inner.value_type, Some(ValueType::ArrayValue(_)))
            {
                return to_json(inner);
            }
            Json::Object(fields_to_json(&m.fields))
        }
        Some(_) => Json::Null,
    }
}

/// Fields back to a JSON object.
pub fn fields_to_json(fields: &HashMap<String, Value>) -> Map<String, Json> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), to_json(v)))
        .collect()
}

/// Size of a value by Firestore's storage size rules.
pub fn value_size(v: &Value) -> usize {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) | Some(ValueType::BooleanValue(_)) => 1,
        Some(ValueType::IntegerValue(_))
        | Some(ValueType::DoubleValue(_))
        | Some(ValueType::TimestampValue(_)) => 8,
        Some(ValueType::GeoPointValue(_)) => 16,
        Some(ValueType::StringValue(s)) | Some(ValueType::ReferenceValue(s)) => s.len() + 1,
        Some(ValueType::BytesValue(b)) => b.len(),
        Some(ValueType::ArrayValue(a)) => a.values.iter().map(value_size).sum(),
        Some(ValueType::MapValue(m)) => fields_size(&m.fields),
        Some(_) => 8,
    }
}

/// Size of a set of fields (field name + 1 + value, each).
pub fn fields_size(fields: &HashMap<String, Value>) -> usize {
    fields
        .iter()
        .map(|(k, v)| k.len() + 1 + value_size(v))
        .sum()
}

/// Size of a document name: each path segment after `…/documents/` + 1, plus 16.
pub fn name_size(relative_path: &str) -> usize {
    relative_path.split('/').map(|s| s.len() + 1).sum::<usize>() + 16
}

/// Size of a whole document (name + fields + 32).
pub fn document_size(relative_path: &str, fields: &HashMap<String, Value>) -> usize {
    name_size(relative_path) + fields_size(fields) + 32
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trip_keeps_integers_floats_and_nesting() {
        let v = json!({"i": 1, "neg": -7, "f": 54.0, "g": 2450.8, "s": "2026-07-01T00:00:00.000000+02:00",
            "n": null, "b": true, "a": [1, 2.5, "x", {"k": [[1, 2], []]}], "m": {"deep": {"x": []}}});
        let Value {
            value_type: Some(ValueType::MapValue(m)),
        } = to_value(&v, "", 0).unwrap()
        else {
            panic!("a map")
        };
        let back = Json::Object(fields_to_json(&m.fields));
        assert_eq!(back, v);
        // 54.0 stays a double, 1 stays an integer.
        assert!(matches!(
            m.fields["f"].value_type,
            Some(ValueType::DoubleValue(_))
        ));
        assert!(matches!(
            m.fields["i"].value_type,
            Some(ValueType::IntegerValue(1))
        ));
        // The nested array became a wrapper map.
        let Some(ValueType::ArrayValue(a)) = &m.fields["a"].value_type else {
            panic!()
        };
        let Some(ValueType::MapValue(k)) = &a.values[3].value_type else {
            panic!()
        };
        let Some(ValueType::ArrayValue(inner)) = &k.fields["k"].value_type else {
            panic!()
        };
        assert!(matches!(
            &inner.values[0].value_type,
            Some(ValueType::MapValue(w)) if w.fields.contains_key(NESTED_ARRAY_KEY)
        ));
    }

    #[test]
    fn huge_integers_become_doubles() {
        let v: Json = serde_json::from_str("18446744073709551615").unwrap();
        assert!(matches!(
            to_value(&v, "x", 0).unwrap().value_type,
            Some(ValueType::DoubleValue(_))
        ));
    }

    #[test]
    fn reserved_names_and_depth_are_refused() {
        let e = to_value(&json!({"a": {"__name__": 1}}), "", 0).unwrap_err();
        assert!(e.0.contains("a.__name__"), "{e:?}");
        let mut deep = json!(1);
        for _ in 0..25 {
            deep = json!({ "d": deep });
        }
        assert!(to_value(&deep, "", 0).unwrap_err().0.contains("deeper"));
    }

    #[test]
    fn sizes_follow_firestores_rules() {
        // Firestore's own example: users/jeff/tasks/my_task_id is 6+5+6+11+16 = 44 bytes.
        assert_eq!(name_size("users/jeff/tasks/my_task_id"), 44);
        let v = to_value(
            &json!({"type": "Personal", "done": false, "priority": 1, "description": "Learn Cloud Firestore"}),
            "",
            0,
        )
        .unwrap();
        let Some(ValueType::MapValue(m)) = v.value_type else {
            panic!()
        };
        // Firestore's example document: 147 bytes with its (different) name of 44 bytes.
        assert_eq!(fields_size(&m.fields), 71);
        assert_eq!(document_size("users/jeff/tasks/my_task_id", &m.fields), 147);
    }
}
