//! The local Firestore emulator for the tests (MANIFOLD_TEST_FIRESTORE, started by
//! `scripts/services`): a fresh project per test, so tests never see each other's documents.
//! A missing variable or an unreachable emulator fails the test with how to start it.
//!
//! Two readers, both independent of the crate's own decoding: a raw gRPC reader
//! (`BatchGetDocuments`/`RunQuery` with this file's own value decoder, fast enough for the
//! conformance suite) and Google's Python client (`google-cloud-firestore` in
//! $MANIFOLD_TEST_PYTHON) for the read-back proofs.
#![allow(dead_code)]

use std::sync::Arc;

use gcloud_sdk::google::firestore::v1::firestore_client::FirestoreClient;
use gcloud_sdk::google::firestore::v1::{
    ArrayValue, BatchGetDocumentsRequest, RunQueryRequest, StructuredQuery, Value,
    batch_get_documents_response, run_query_request, structured_query, value::ValueType,
};
use gcloud_sdk::tonic::transport::{Channel, Endpoint};
use manifold_core::destination::{BuildContext, Delivery, Destination, DestinationFactory};
use manifold_firestore::FirestoreFactory;
use serde_json::{Map, Value as Json};

pub const ROOT: &str = "terra/2022-03-16";
/// Every collection the destination writes (the emulator cannot list collections).
pub const COLLECTIONS: &[&str] = &[
    "activity",
    "athlete",
    "body",
    "daily",
    "menstruation",
    "nutrition",
    "planned_workout",
    "sleep",
    "user_events",
];

pub fn emulator_host() -> String {
    std::env::var("MANIFOLD_TEST_FIRESTORE").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_FIRESTORE is not set: the firestore destination's tests need the local \
             Firestore emulator (@firestore-emulator/server on 127.0.0.1:8086). Start it with \
             `scripts/services --env` and export what it prints (or `source ~/.cache/manifold-services/env`)"
        )
    })
}

pub fn python() -> String {
    std::env::var("MANIFOLD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_PYTHON is not set: the read-back tests use Google's Python Firestore client \
             from the clients venv. Run `scripts/services --env` and export what it prints"
        )
    })
}

/// A fresh project on the emulator.
pub struct Project {
    pub host: String,
    pub id: String,
    client: FirestoreClient<Channel>,
}

impl Project {
    pub async fn new() -> Project {
        let host = emulator_host();
        let id = format!("manifold-test-{}", uuid::Uuid::new_v4().simple());
        let channel = Endpoint::from_shared(format!("http://{host}"))
            .unwrap()
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the Firestore emulator is not reachable at {host}: {e}\nstart the test services with `scripts/services`"
                )
            });
        Project {
            host,
            id,
            client: FirestoreClient::new(channel),
        }
    }

    pub fn dest(&self) -> Arc<dyn Destination> {
        build(&self.host, &self.id, "")
    }

    pub fn dest_with(&self, extra: &str) -> Arc<dyn Destination> {
        build(&self.host, &self.id, extra)
    }

    fn documents(&self) -> String {
        format!("projects/{}/databases/(default)/documents", self.id)
    }

    /// The document `<root>/<collection>/<id>`, its fields as JSON (this file's decoder).
    pub async fn raw(&self, collection: &str, id: &str) -> Option<Map<String, Json>> {
        let name = format!("{}/{ROOT}/{collection}/{id}", self.documents());
        let req = BatchGetDocumentsRequest {
            database: format!("projects/{}/databases/(default)", self.id),
            documents: vec![name],
            ..Default::default()
        };
        let mut stream = self
            .client
            .clone()
            .batch_get_documents(req)
            .await
            .expect("BatchGetDocuments")
            .into_inner();
        while let Some(r) = stream.message().await.expect("BatchGetDocuments stream") {
            if let Some(batch_get_documents_response::Result::Found(doc)) = r.result {
                return Some(
                    doc.fields
                        .iter()
                        .map(|(k, v)| (k.clone(), decode(v)))
                        .collect(),
                );
            }
        }
        None
    }

    /// The event stored at `<root>/<collection>/<id>`, rebuilt.
    pub async fn event(&self, collection: &str, id: &str) -> Option<Json> {
        self.raw(collection, id).await.map(rebuild)
    }

    /// Documents of `collection` whose top-level `field` equals `value` (ids and fields).
    pub async fn query(
        &self,
        collection: &str,
        field: &str,
        value: &str,
    ) -> Vec<(String, Map<String, Json>)> {
        let filter = structured_query::Filter {
            filter_type: Some(structured_query::filter::FilterType::FieldFilter(
                structured_query::FieldFilter {
                    field: Some(structured_query::FieldReference {
                        field_path: field.into(),
                    }),
                    op: structured_query::field_filter::Operator::Equal as i32,
                    value: Some(Value {
                        value_type: Some(ValueType::StringValue(value.into())),
                    }),
                },
            )),
        };
        let req = RunQueryRequest {
            parent: format!("{}/{ROOT}", self.documents()),
            query_type: Some(run_query_request::QueryType::StructuredQuery(
                StructuredQuery {
                    from: vec![structured_query::CollectionSelector {
                        collection_id: collection.into(),
                        all_descendants: false,
                    }],
                    r#where: Some(filter),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let mut stream = self
            .client
            .clone()
            .run_query(req)
            .await
            .expect("RunQuery")
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await.expect("RunQuery stream") {
            if let Some(doc) = r.document {
                let id = doc.name.rsplit('/').next().unwrap_or("").to_string();
                out.push((
                    id,
                    doc.fields
                        .iter()
                        .map(|(k, v)| (k.clone(), decode(v)))
                        .collect(),
                ));
            }
        }
        out
    }

    /// Every document of the given collections, read by Google's Python client.
    pub async fn python_read(&self, collections: &[&str]) -> Map<String, Json> {
        python_read(&self.host, &self.id, ROOT, collections).await
    }
}

/// Every document of `collections` under `root`, read by google-cloud-firestore:
/// `"<collection>/<id>" → fields`.
pub async fn python_read(
    host: &str,
    project: &str,
    root: &str,
    collections: &[&str],
) -> Map<String, Json> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/read_firestore.py"
    );
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(project)
        .arg(root)
        .args(collections)
        .env("FIRESTORE_EMULATOR_HOST", host)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the Python Firestore reader");
    assert!(
        out.status.success(),
        "the Python Firestore reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Json::Object(m)) => m,
        other => panic!("the Python reader printed no JSON object: {other:?}"),
    }
}

/// A Firestore value as JSON: integers stay integers, doubles stay floats, and the
/// `{"_manifold_array": [...]}` wrapper of an array inside an array is unwrapped.
pub fn decode(v: &Value) -> Json {
    match &v.value_type {
        None | Some(ValueType::NullValue(_)) => Json::Null,
        Some(ValueType::BooleanValue(b)) => Json::Bool(*b),
        Some(ValueType::IntegerValue(i)) => Json::from(*i),
        Some(ValueType::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(ValueType::StringValue(s)) => Json::String(s.clone()),
        Some(ValueType::TimestampValue(t)) => Json::String(format!("ts:{}.{}", t.seconds, t.nanos)),
        Some(ValueType::ArrayValue(ArrayValue { values })) => {
            Json::Array(values.iter().map(decode).collect())
        }
        Some(ValueType::MapValue(m)) => Json::Object(
            m.fields
                .iter()
                .map(|(k, v)| (k.clone(), decode(v)))
                .collect(),
        ),
        Some(other) => panic!("a value the destination never writes: {other:?}"),
    }
}

/// Undo the nested-array wrapper everywhere (for JSON read by the Python client).
pub fn unwrap_arrays(v: Json) -> Json {
    match v {
        Json::Object(mut o) => {
            if o.len() == 1
                && let Some(Json::Array(_)) = o.get("_manifold_array")
            {
                return unwrap_arrays(o.remove("_manifold_array").unwrap());
            }
            Json::Object(o.into_iter().map(|(k, v)| (k, unwrap_arrays(v))).collect())
        }
        Json::Array(a) => Json::Array(a.into_iter().map(unwrap_arrays).collect()),
        other => other,
    }
}

/// The Terra event a document holds, rebuilt here (not with the crate's code): drop the
/// `_manifold_*` fields; on data documents put the item's fields back into `data: [item]`
/// beside the event fields `_manifold_envelope` names.
pub fn rebuild(doc: Map<String, Json>) -> Json {
    let mut doc = match unwrap_arrays(Json::Object(doc)) {
        Json::Object(o) => o,
        _ => unreachable!(),
    };
    let envelope = doc.remove("_manifold_envelope");
    doc.retain(|k, _| !k.starts_with("_manifold_"));
    match envelope {
        Some(Json::Array(keys)) => {
            let mut event = Map::new();
            for k in keys {
                let k = k.as_str().expect("envelope names are strings").to_string();
                if let Some(v) = doc.remove(&k) {
                    event.insert(k, v);
                }
            }
            event.insert("data".into(), Json::Array(vec![Json::Object(doc)]));
            Json::Object(event)
        }
        _ => Json::Object(doc),
    }
}

/// Where a delivery of one item lands, by Terra's layout (written here from the spec):
/// `(collection, id)`.
pub fn location(d: &Delivery) -> (String, String) {
    let body = d.json().unwrap();
    let user = d.user_id.clone().unwrap_or_default();
    match body.get("data").and_then(|x| x.get(0)) {
        Some(item) => (
            d.event_type.clone(),
            format!(
                "{user}-{}.json",
                item["metadata"]["start_time"].as_str().unwrap()
            ),
        ),
        None => (
            "user_events".into(),
            format!(
                "{user}-{}-{}.json",
                d.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                d.payload_id
            ),
        ),
    }
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Build a destination through the factory, like the engine does.
pub fn build(host: &str, project: &str, extra: &str) -> Arc<dyn Destination> {
    let src = format!(
        "project_id = \"{project}\"\nemulator_host = \"{host}\"\nconnect_timeout = \"2s\"\n{extra}"
    );
    let table: toml::Table = toml::from_str(&src).unwrap();
    FirestoreFactory
        .build("test", table, &BuildContext::default())
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

/// A delivery with an arbitrary body.
pub fn delivery_with(event_type: &str, user: &str, version: i64, body: Json) -> Delivery {
    let mut d = manifold_core::testkit::sample_delivery(event_type, user, 1);
    d.version = version;
    d.body = serde_json::to_vec(&body).unwrap().into();
    d
}
