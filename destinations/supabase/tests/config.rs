//! Config validation: every problem named with its key and fix; no I/O in build.

use manifold_core::destination::{BuildContext, DestinationFactory};
use manifold_supabase::SupabaseFactory;

fn issues(src: &str) -> Vec<(String, String)> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match SupabaseFactory.build("s", table, &BuildContext::default()) {
        Ok(_) => Vec::new(),
        Err(v) => v.into_iter().map(|i| (i.key, i.message)).collect(),
    }
}

#[test]
fn valid_config_builds_without_a_runtime() {
    let i = issues("url = \"https://abc.supabase.co/\"\nservice_role_key = \"eyJa.b.c\"");
    assert!(i.is_empty(), "{i:?}");
    let i = issues(
        "url = \"http://127.0.0.1:3000\"\nservice_role_key = \"sb_secret_x\"\nschema = \"api\"\nrest_path = \"/api\"\nbatch_size = 10\ntimeout = \"5s\"",
    );
    assert!(i.is_empty(), "{i:?}");
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    assert!(
        i.iter()
            .any(|(k, m)| k == "url" && m.contains("supabase.co"))
    );
    assert!(
        i.iter()
            .any(|(k, m)| k == "service_role_key" && m.contains("Project Settings"))
    );
    let i = issues(
        "url = \"ftp://x\"\nservice_role_key = \"k\"\nschema = \"a-b\"\nrest_path = \"rest\"\nbatch_size = 0\ntimeout = \"0s\"",
    );
    for key in ["url", "schema", "rest_path", "batch_size", "timeout"] {
        assert!(i.iter().any(|(k, _)| k == key), "{key} not reported: {i:?}");
    }
    let i = issues("url = \"https://u:secret@abc.supabase.co\"\nservice_role_key = \"k\"");
    assert!(
        i.iter().any(|(k, m)| k == "url" && !m.contains("secret")),
        "{i:?}"
    );
    let i = issues("url = \"https://abc.supabase.co\"\nservice_role_key = \"k\"\nanon_key = \"x\"");
    assert!(
        i.iter()
            .any(|(k, m)| k == "anon_key" && m.contains("unknown field")),
        "{i:?}"
    );
}

/// The shipped example's destination table (minus the engine's own keys) builds.
#[test]
fn the_example_config_builds() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/supabase.toml"
    ))
    .expect("examples/supabase.toml");
    let doc: toml::Table = toml::from_str(&src).expect("the example is valid TOML");
    let dest = doc["destinations"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(dest["type"].as_str(), Some("supabase"));
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
    if let Err(e) = SupabaseFactory.build("example", settings, &BuildContext::default()) {
        panic!("examples/supabase.toml does not build: {e:?}");
    }
}
