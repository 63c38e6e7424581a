//! The local GCS server (fake-gcs-server, MANIFOLD_TEST_GCS_ENDPOINT) and a fresh bucket per
//! test, read back through the JSON API with plain HTTP. A missing variable or an unreachable
//! server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use manifold_core::destination::{BuildContext, Destination, DestinationFactory};
use manifold_gcs::GcsFactory;
use manifold_gcs::auth::encode_component;
use serde_json::Value;

pub fn endpoint() -> String {
    std::env::var("MANIFOLD_TEST_GCS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_GCS_ENDPOINT is not set: these tests need the local GCS server (fake-gcs-server). \
             Start it with `scripts/services --env` and export the variables it prints \
             (e.g. `eval \"$(scripts/services --env)\"`)"
        )
    })
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub struct Object {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// A fresh bucket on the local server.
pub struct Bucket {
    pub endpoint: String,
    pub name: String,
    pub http: reqwest::Client,
}

impl Bucket {
    pub async fn new() -> Bucket {
        let endpoint = endpoint();
        let name = format!("manifold-test-{}", uuid::Uuid::new_v4().simple());
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{endpoint}/storage/v1/b?project=test"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the local GCS server (fake-gcs-server) at {endpoint} is not reachable: {e}\n\
                     start it with `scripts/services` (it runs fake-gcs-server on 127.0.0.1:4443)"
                )
            });
        assert!(
            resp.status().is_success(),
            "creating bucket {name} failed: {}",
            resp.text().await.unwrap_or_default()
        );
        Bucket {
            endpoint,
            name,
            http,
        }
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            self.name,
            encode_component(name)
        )
    }

    /// Body, content type and custom metadata of an object, if it exists.
    pub async fn get(&self, name: &str) -> Option<Object> {
        let meta = self.http.get(self.object_url(name)).send().await.unwrap();
        if meta.status().as_u16() == 404 {
            return None;
        }
        let meta: Value = meta.json().await.unwrap();
        let body = self
            .http
            .get(format!("{}?alt=media", self.object_url(name)))
            .send()
            .await
            .unwrap();
        assert!(body.status().is_success(), "GET {name}: {}", body.status());
        let body = body.bytes().await.unwrap().to_vec();
        Some(Object {
            body,
            content_type: meta["contentType"].as_str().map(str::to_string),
            metadata: meta["metadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Object names under `prefix`.
    pub async fn names(&self, prefix: &str) -> Vec<String> {
        let v: Value = self
            .http
            .get(format!(
                "{}/storage/v1/b/{}/o?prefix={}",
                self.endpoint,
                self.name,
                encode_component(prefix)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Settings for a destination on this bucket (anonymous, emulator endpoint) plus `extra`.
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "bucket = \"{}\"\nendpoint = \"{}\"\n{extra}",
            self.name, self.endpoint
        )
    }
}

/// Build through the factory, like the engine does.
pub fn build(settings: &str, ctx: &BuildContext, name: &str) -> Arc<dyn Destination> {
    let table: toml::Table = toml::from_str(settings).unwrap();
    GcsFactory
        .build(name, table, ctx)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}
