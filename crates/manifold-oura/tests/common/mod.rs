#![allow(dead_code)]

use manifold_oura::{OuraDocument, parse_collection, parse_document};
use serde_json::Value;
use std::path::PathBuf;

pub fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

pub fn oura_bytes(name: &str) -> Vec<u8> {
    let p = dir("oura").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn oura(data_type: &str, name: &str) -> OuraDocument {
    parse_document(data_type, &oura_bytes(name)).unwrap()
}

pub fn oura_list(data_type: &str, name: &str) -> Vec<OuraDocument> {
    parse_collection(data_type, &oura_bytes(name)).unwrap()
}

/// Compares `actual` with `tests/fixtures/terra/<name>`; `MANIFOLD_BLESS=1` rewrites the file.
pub fn golden(name: &str, actual: &Value) {
    let p = dir("terra").join(name);
    if std::env::var_os("MANIFOLD_BLESS").is_some() {
        std::fs::write(&p, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run with MANIFOLD_BLESS=1 once)", p.display()));
    let expected: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(actual, &expected, "output differs from {}", p.display());
}
