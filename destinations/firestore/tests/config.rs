//! Config validation: every problem named with its key and fix; no I/O in build.

use manifold_core::destination::{BuildContext, DestinationFactory};
use manifold_firestore::{Config, FirestoreFactory, Target};

fn issues(src: &str) -> Vec<(String, String)> {
    issues_env(src, None)
}

/// Validate with `FIRESTORE_EMULATOR_HOST` = `env` (the process environment is not touched).
fn issues_env(src: &str, env: Option<&str>) -> Vec<(String, String)> {
    let config: Config = match toml::from_str(src) {
        Ok(c) => c,
        Err(e) => return vec![("<serde>".into(), e.to_string())],
    };
    match config.validate_with(|k| {
        assert_eq!(k, "FIRESTORE_EMULATOR_HOST");
        env.map(str::to_string)
    }) {
        Ok(_) => Vec::new(),
        Err(v) => v.into_iter().map(|i| (i.key, i.message)).collect(),
    }
}

#[test]
fn valid_configs_build_without_a_runtime() {
    let table: toml::Table = toml::from_str(
        "project_id = \"my-gcp-project\"\ncredentials_file = \"/nonexistent/key.json\"",
    )
    .unwrap();
    // No I/O at build: the key file is read on first use.
    assert!(
        FirestoreFactory
            .build("f", table, &BuildContext::default())
            .is_ok()
    );
    assert!(issues("project_id = \"p\"\nemulator_host = \"127.0.0.1:8086\"\ndatabase = \"my-db\"\nroot = \"apps/manifold\"\nconnect_timeout = \"3s\"").is_empty());
    assert!(
        issues("project_id = \"p\"\nemulator_host = \"http://localhost:8086\"\nroot = \"\"")
            .is_empty()
    );
}

#[test]
fn defaults_and_targets() {
    let s: Config =
        toml::from_str("project_id = \"p\"\nemulator_host = \"127.0.0.1:8086\"").unwrap();
    let s = s.validate_with(|_| None).unwrap();
    assert_eq!(s.database, "(default)");
    assert_eq!(s.root, "terra/2022-03-16");
    assert_eq!(
        s.target,
        Target::Emulator {
            url: "http://127.0.0.1:8086".into()
        }
    );
    assert_eq!(
        s.document_name("sleep", "u-t.json"),
        "projects/p/databases/(default)/documents/terra/2022-03-16/sleep/u-t.json"
    );
    assert_eq!(
        s.parent(),
        "projects/p/databases/(default)/documents/terra/2022-03-16"
    );

    // FIRESTORE_EMULATOR_HOST is honoured when the file names neither target…
    let c: Config = toml::from_str("project_id = \"p\"").unwrap();
    let s = c.validate_with(|_| Some("127.0.0.1:9999".into())).unwrap();
    assert_eq!(
        s.target,
        Target::Emulator {
            url: "http://127.0.0.1:9999".into()
        }
    );
    // …and the file wins over it.
    let c: Config = toml::from_str("project_id = \"p\"\ncredentials_file = \"/k.json\"").unwrap();
    let s = c.validate_with(|_| Some("127.0.0.1:9999".into())).unwrap();
    assert_eq!(
        s.target,
        Target::Google {
            credentials_file: "/k.json".into()
        }
    );
    let c: Config =
        toml::from_str("project_id = \"p\"\nroot = \"/x/y/\"\nemulator_host = \"h:1\"").unwrap();
    let s = c.validate_with(|_| None).unwrap();
    assert_eq!(s.root, "x/y");
    assert_eq!(s.relative_path("daily", "d"), "x/y/daily/d");
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    assert!(
        i.iter()
            .any(|(k, m)| k == "project_id" && m.contains("missing")),
        "{i:?}"
    );
    assert!(
        i.iter()
            .any(|(k, m)| k == "credentials_file" && m.contains("emulator_host")),
        "no target and no FIRESTORE_EMULATOR_HOST: {i:?}"
    );
    let i = issues(
        "project_id = \"has space\"\ncredentials_file = \"\"\ndatabase = \"Bad_DB\"\nroot = \"terra\"\nconnect_timeout = \"soon\"",
    );
    for key in [
        "project_id",
        "credentials_file",
        "database",
        "root",
        "connect_timeout",
    ] {
        assert!(i.iter().any(|(k, _)| k == key), "{key} not reported: {i:?}");
    }
    assert!(
        i.iter()
            .any(|(k, m)| k == "root" && m.contains("even number of segments")),
        "{i:?}"
    );
    let i = issues(
        "project_id = \"p\"\ncredentials_file = \"/k.json\"\nemulator_host = \"127.0.0.1:8086\"",
    );
    assert!(
        i.iter()
            .any(|(k, m)| k == "emulator_host" && m.contains("not both")),
        "{i:?}"
    );
    let i = issues("project_id = \"p\"\nemulator_host = \"https://firestore.googleapis.com\"");
    assert!(i.iter().any(|(k, _)| k == "emulator_host"), "{i:?}");
    let i = issues(
        "project_id = \"p\"\nemulator_host = \"nohost\"\nroot = \"a//b/c\"\nconnect_timeout = \"0s\"",
    );
    assert!(
        i.iter()
            .any(|(k, m)| k == "emulator_host" && m.contains("host:port")),
        "{i:?}"
    );
    assert!(
        i.iter()
            .any(|(k, m)| k == "root" && m.contains("invalid segment")),
        "{i:?}"
    );
    assert!(i.iter().any(|(k, _)| k == "connect_timeout"), "{i:?}");
    let i = issues_env("project_id = \"p\"", Some("not-an-address"));
    assert!(
        i.iter()
            .any(|(k, m)| k == "emulator_host" && m.contains("FIRESTORE_EMULATOR_HOST")),
        "{i:?}"
    );
}

#[test]
fn unknown_keys_are_refused_by_the_factory() {
    let table: toml::Table =
        toml::from_str("project_id = \"p\"\nemulator_host = \"h:1\"\nbogus = 1").unwrap();
    let Err(e) = FirestoreFactory.build("f", table, &BuildContext::default()) else {
        panic!("an unknown key must be refused")
    };
    assert!(
        e.iter()
            .any(|i| i.key == "bogus" && i.message.contains("unknown field")),
        "{e:?}"
    );
}

/// The shipped example's destination table (minus the engine's own keys) builds.
#[test]
fn the_example_config_builds() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/firestore.toml"
    ))
    .expect("examples/firestore.toml");
    let doc: toml::Table = toml::from_str(&src).expect("the example is valid TOML");
    let dest = doc["destinations"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(dest["type"].as_str(), Some("firestore"));
    let mut settings = toml::Table::new();
    for (k, v) in dest {
        if matches!(
            k.as_str(),
            "name"
                | "type"
                | "retry"
                | "data_types"
                | "format"
                | "batch_size"
                | "timeout"
                | "concurrency"
        ) {
            continue;
        }
        let v = match v {
            toml::Value::String(s) if s.starts_with("${") => {
                toml::Value::String("/etc/key.json".into())
            }
            other => other,
        };
        settings.insert(k, v);
    }
    if let Err(e) = FirestoreFactory.build("example", settings, &BuildContext::default()) {
        panic!("examples/firestore.toml does not build: {e:?}");
    }
}
