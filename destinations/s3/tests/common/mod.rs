//! The local S3 server (moto, MANIFOLD_TEST_AWS_ENDPOINT) and a fresh bucket per test. A missing
//! variable or an unreachable server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use manifold_core::destination::{BuildContext, Destination, DestinationFactory};
use manifold_s3::S3Factory;

pub fn endpoint() -> String {
    std::env::var("MANIFOLD_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_AWS_ENDPOINT is not set: these tests need the local S3 server (moto). \
             Start it with `scripts/services --env` and export the variables it prints \
             (e.g. `eval \"$(scripts/services --env)\"`)"
        )
    })
}

/// A plain S3 client for setting up and reading back.
pub fn admin(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A fresh bucket on the local server.
pub struct Bucket {
    pub endpoint: String,
    pub name: String,
    pub client: Client,
}

impl Bucket {
    pub async fn new() -> Bucket {
        let endpoint = endpoint();
        let client = admin(&endpoint);
        let name = format!("manifold-test-{}", uuid::Uuid::new_v4().simple());
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the local S3 server (moto) at {endpoint} is not usable: {}\n\
                     start it with `scripts/services` (it runs moto_server on 127.0.0.1:4566)",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        Bucket {
            endpoint,
            name,
            client,
        }
    }

    /// Body, content type, content encoding and user metadata of an object, if it exists.
    pub async fn get(&self, key: &str) -> Option<Object> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .ok()?;
        let content_type = out.content_type().map(str::to_string);
        let content_encoding = out.content_encoding().map(str::to_string);
        let metadata = out.metadata().cloned().unwrap_or_default();
        let body = out.body.collect().await.unwrap().into_bytes().to_vec();
        Some(Object {
            body,
            content_type,
            content_encoding,
            metadata,
        })
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Settings for a destination on this bucket (plus `extra` TOML lines).
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "bucket = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n{extra}",
            self.name, self.endpoint
        )
    }
}

pub struct Object {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub metadata: std::collections::HashMap<String, String>,
}

/// Build through the factory, like the engine does.
pub fn build(settings: &str, ctx: &BuildContext, name: &str) -> Arc<dyn Destination> {
    let table: toml::Table = toml::from_str(settings).unwrap();
    S3Factory
        .build(name, table, ctx)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}
