//! The real MongoDB-protocol server for the tests (MANIFOLD_TEST_MONGO, started by
//! `scripts/services`): a fresh database per test, dropped afterwards. A missing variable or an
//! unreachable server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::sync::Arc;

use futures::TryStreamExt;
use manifold_core::destination::{BuildContext, Delivery, Destination, DestinationFactory};
use manifold_core::event::item_key;
use manifold_mongo::MongoFactory;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Database};
use serde_json::Value;

pub fn mongo_uri() -> String {
    std::env::var("MANIFOLD_TEST_MONGO").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_MONGO is not set: the mongo destination's tests need the local MongoDB-protocol \
             server (nx-27017). Start it with `scripts/services --env` and export what it prints \
             (or `source ~/.cache/manifold-services/env`)"
        )
    })
}

/// A fresh database on the test server, dropped on drop.
pub struct Db {
    pub uri: String,
    pub name: String,
    pub client: Client,
    pub db: Database,
}

impl Db {
    pub async fn new() -> Db {
        let uri = mongo_uri();
        let mut opts = mongodb::options::ClientOptions::parse(&uri)
            .await
            .unwrap_or_else(|e| panic!("MANIFOLD_TEST_MONGO={uri} is not a MongoDB URI: {e}"));
        opts.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let client = Client::with_options(opts).unwrap();
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the local MongoDB-protocol server (nx-27017) is not reachable at {uri}: {e}\n\
                     start the test services with `scripts/services`"
                )
            });
        let name = format!("manifold_test_{}", uuid::Uuid::new_v4().simple());
        let db = client.database(&name);
        Db {
            uri,
            name,
            client,
            db,
        }
    }

    pub fn dest(&self) -> Arc<dyn Destination> {
        build(&self.uri, &self.name, "")
    }

    pub fn dest_with(&self, extra: &str) -> Arc<dyn Destination> {
        build(&self.uri, &self.name, extra)
    }

    /// The stored document with `_id`, as JSON (relaxed extended JSON: int32/int64 are numbers).
    pub async fn raw(&self, collection: &str, id: &str) -> Option<Value> {
        self.db
            .collection::<Document>(collection)
            .find_one(doc! {"_id": id})
            .await
            .expect("find_one")
            .map(|d| Bson::Document(d).into_relaxed_extjson())
    }

    /// The stored document without `_id` and `_meta`: what the payload was.
    pub async fn payload(&self, collection: &str, id: &str) -> Option<Value> {
        self.raw(collection, id).await.map(strip)
    }

    pub async fn all(&self, collection: &str, filter: Document) -> Vec<Value> {
        self.db
            .collection::<Document>(collection)
            .find(filter)
            .await
            .expect("find")
            .try_collect::<Vec<_>>()
            .await
            .expect("cursor")
            .into_iter()
            .map(|d| Bson::Document(d).into_relaxed_extjson())
            .collect()
    }

    pub async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .expect("count")
    }

    /// Where a delivery lands: (collection, _id).
    pub fn location(d: &Delivery) -> (String, String) {
        let body = d.json().unwrap();
        match body.get("data").and_then(|x| x.get(0)) {
            Some(item) => {
                let key = item_key(&d.event_type, item).expect("sample items have keys");
                (
                    d.event_type.clone(),
                    format!("{}:{}:{key}", d.user_id.as_deref().unwrap(), d.event_type),
                )
            }
            None => ("user_events".into(), d.payload_id.clone()),
        }
    }
}

pub fn strip(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("_id");
        o.remove("_meta");
    }
    v
}

impl Drop for Db {
    fn drop(&mut self) {
        let uri = self.uri.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = Client::with_uri_str(&uri).await {
                    let _ = c.database(&name).drop().await;
                }
            });
        })
        .join();
    }
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Build a destination through the factory, like the engine does.
pub fn build(uri: &str, database: &str, extra: &str) -> Arc<dyn Destination> {
    let src =
        format!("uri = \"{uri}\"\ndatabase = \"{database}\"\nconnect_timeout = \"2s\"\n{extra}");
    let table: toml::Table = toml::from_str(&src).unwrap();
    MongoFactory
        .build("test", table, &BuildContext::default())
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

/// A delivery with an arbitrary body.
pub fn delivery_with(event_type: &str, user: &str, version: i64, body: Value) -> Delivery {
    let mut d = manifold_core::testkit::sample_delivery(event_type, user, 1);
    d.version = version;
    d.body = serde_json::to_vec(&body).unwrap().into();
    d
}
