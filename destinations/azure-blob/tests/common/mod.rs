//! The local Azure Blob server (Azurite, MANIFOLD_TEST_AZURITE) and a fresh container per test.
//! Containers are created and blobs read back with SAS tokens from `azsas.py`, an independent
//! stdlib-only Python implementation of Azure's SAS signing. A missing variable or an
//! unreachable server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use manifold_azure_blob::AzureBlobFactory;
use manifold_core::destination::{BuildContext, Destination, DestinationFactory};

pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `http://127.0.0.1:10000/devstoreaccount1`
pub fn service_url() -> String {
    std::env::var("MANIFOLD_TEST_AZURITE").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_AZURITE is not set: these tests need the local Azure Blob server (Azurite). \
             Start it with `scripts/services --env` and export the variables it prints \
             (e.g. `eval \"$(scripts/services --env)\"`)"
        )
    })
}

/// Run `azsas.py` (the independent SAS implementation) with `args`.
pub fn azsas(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/azsas.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 {script}: {e} (scripts/services installs python3)")
        });
    assert!(
        out.status.success(),
        "azsas.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub struct Blob {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// A fresh container on Azurite.
pub struct Container {
    pub service: String,
    pub name: String,
    /// Full-permission container SAS (`racwdl`) from the independent implementation.
    pub admin_sas: String,
    pub http: reqwest::Client,
}

impl Container {
    pub async fn new() -> Container {
        let service = service_url();
        let name = format!("mtest-{}", uuid::Uuid::new_v4().simple());
        let account_sas = azsas(&["account", ACCOUNT, KEY, "rwdlac"]);
        let http = reqwest::Client::new();
        let resp = http
            .put(format!("{service}/{name}?restype=container&{account_sas}"))
            .header("x-ms-version", "2022-11-02")
            .header("content-length", "0")
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the local Azure Blob server (Azurite) at {service} is not reachable: {e}\n\
                     start it with `scripts/services` (it runs azurite-blob on 127.0.0.1:10000)"
                )
            });
        assert_eq!(
            resp.status().as_u16(),
            201,
            "creating container {name} on Azurite failed: {}",
            resp.text().await.unwrap_or_default()
        );
        let admin_sas = azsas(&["container", ACCOUNT, KEY, &name, "racwdl"]);
        Container {
            service,
            name,
            admin_sas,
            http,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.service, self.name)
    }

    /// A blob's body, content type and metadata (read with the admin SAS), if it exists.
    pub async fn get(&self, blob: &str) -> Option<Blob> {
        let url = format!(
            "{}/{}?{}",
            self.url(),
            manifold_azure_blob::sas::encode_path(blob),
            self.admin_sas
        );
        let resp = self
            .http
            .get(url)
            .header("x-ms-version", "2022-11-02")
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert!(resp.status().is_success(), "GET {blob}: {}", resp.status());
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let metadata = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                k.as_str()
                    .strip_prefix("x-ms-meta-")
                    .map(|m| (m.to_string(), v.to_str().unwrap().to_string()))
            })
            .collect();
        let body = resp.bytes().await.unwrap().to_vec();
        Some(Blob {
            body,
            content_type,
            metadata,
        })
    }

    /// Blob names under `prefix` (List Blobs).
    pub async fn names(&self, prefix: &str) -> Vec<String> {
        let url = format!(
            "{}?restype=container&comp=list&prefix={}&{}",
            self.url(),
            manifold_azure_blob::sas::encode_query(prefix),
            self.admin_sas
        );
        let xml = self
            .http
            .get(url)
            .header("x-ms-version", "2022-11-02")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Name>")
            .skip(1)
            .filter_map(|s| {
                s.split_once("</Name>")
                    .map(|(n, _)| n.replace("&amp;", "&"))
            })
            .collect()
    }

    /// Settings with a connection string (Azurite's dev account key) plus `extra` lines.
    pub fn toml_cs(&self, extra: &str) -> String {
        format!(
            "container = \"{}\"\nconnection_string = \"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};\"\n{extra}",
            self.name, self.service
        )
    }

    /// Settings with a container SAS URL (signed independently, permissions `perms`).
    pub fn toml_sas(&self, perms: &str, extra: &str) -> String {
        format!(
            "container = \"{}\"\nsas_url = \"{}?{}\"\n{extra}",
            self.name,
            self.url(),
            azsas(&["container", ACCOUNT, KEY, &self.name, perms])
        )
    }
}

/// Build through the factory, like the engine does.
pub fn build(settings: &str, ctx: &BuildContext, name: &str) -> Arc<dyn Destination> {
    let table: toml::Table = toml::from_str(settings).unwrap();
    AzureBlobFactory
        .build(name, table, ctx)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}
