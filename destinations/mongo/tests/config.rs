//! Config validation: every problem named with its key and fix; no I/O in build.

use manifold_core::destination::{BuildContext, DestinationFactory};
use manifold_mongo::MongoFactory;

fn issues(src: &str) -> Vec<(String, String)> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match MongoFactory.build("m", table, &BuildContext::default()) {
        Ok(_) => Vec::new(),
        Err(v) => v.into_iter().map(|i| (i.key, i.message)).collect(),
    }
}

#[test]
fn valid_config_builds_without_a_runtime() {
    let i =
        issues("uri = \"mongodb+srv://u:p@cluster0.example.mongodb.net/\"\ndatabase = \"terra\"");
    assert!(i.is_empty(), "{i:?}");
    assert!(issues("uri = \"mongodb://127.0.0.1:1/\"\ndatabase = \"terra\"\ncollection_prefix = \"t_\"\nconnect_timeout = \"3s\"").is_empty());
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    assert!(i.iter().any(|(k, m)| k == "uri" && m.contains("mongodb")));
    assert!(
        i.iter()
            .any(|(k, m)| k == "database" && m.contains("terra"))
    );
    let i = issues("uri = \"http://x\"\ndatabase = \"a.b\"");
    assert!(
        i.iter()
            .any(|(k, m)| k == "uri" && m.contains("mongodb://"))
    );
    assert!(i.iter().any(|(k, _)| k == "database"));
    let i = issues("uri = \"mongodb://u:secretpw@h:notaport/\"\ndatabase = \"t\"");
    assert!(
        i.iter().any(|(k, m)| k == "uri" && !m.contains("secretpw")),
        "{i:?}"
    );
    let i = issues(
        "uri = \"mongodb://h/\"\ndatabase = \"t\"\nconnect_timeout = \"soon\"\ncollection_prefix = \"a$\"",
    );
    assert!(i.iter().any(|(k, _)| k == "connect_timeout"));
    assert!(i.iter().any(|(k, _)| k == "collection_prefix"));
    let i = issues("uri = \"mongodb://h/\"\ndatabase = \"t\"\nbogus = 1");
    assert!(
        i.iter()
            .any(|(k, m)| k == "bogus" && m.contains("unknown field")),
        "{i:?}"
    );
}

/// The shipped example's destination table (minus the engine's own keys) builds.
#[test]
fn the_example_config_builds() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/mongo.toml"
    ))
    .expect("examples/mongo.toml");
    let doc: toml::Table = toml::from_str(&src).expect("the example is valid TOML");
    let dest = doc["destinations"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(dest["type"].as_str(), Some("mongo"));
    let mut settings = toml::Table::new();
    for (k, v) in dest {
        if matches!(
            k.as_str(),
            "name" | "type" | "retry" | "data_types" | "format"
        ) {
            continue;
        }
        // ${ENV} secrets: a plausible value, as the engine interpolates before building.
        let v = match v {
            toml::Value::String(s) if s.starts_with("${") => toml::Value::String(if k == "uri" {
                "mongodb+srv://u:p@cluster0.example.mongodb.net/".into()
            } else {
                "eyJa.b.c".into()
            }),
            other => other,
        };
        settings.insert(k, v);
    }
    if let Err(e) = MongoFactory.build("example", settings, &BuildContext::default()) {
        panic!("examples/mongo.toml does not build: {e:?}");
    }
}
