//! Settings validation: every problem names the key and the fix; nothing connects at build.

use manifold_core::destination::{BuildContext, DestinationFactory, SettingIssue};
use manifold_sql::SqlFactory;

fn build(src: &str) -> Result<(), Vec<SettingIssue>> {
    let table: toml::Table = toml::from_str(src).unwrap();
    SqlFactory
        .build("db", table, &BuildContext::default())
        .map(|_| ())
}

fn issues(src: &str) -> Vec<SettingIssue> {
    build(src).expect_err("expected setting issues")
}

#[test]
fn valid_configs_build_without_connecting() {
    // Nothing listens on port 1: build must not try.
    build("driver = \"postgres\"\nurl = \"postgres://u:p@127.0.0.1:1/db\"").unwrap();
    build("driver = \"mysql\"\nurl = \"mysql://u:p@127.0.0.1:1/db\"\nmax_connections = 2").unwrap();
    build("driver = \"sqlite\"\nurl = \"sqlite:///tmp/x/terra.db\"\ncreate_tables = false")
        .unwrap();
}

#[test]
fn url_scheme_must_match_the_driver_with_a_hint_and_no_secret() {
    let i = issues("driver = \"mysql\"\nurl = \"postgres://u:hunter2@h/db\"");
    assert_eq!(i[0].key, "url");
    assert!(
        i[0].message.contains("does not match driver \"mysql\""),
        "{}",
        i[0].message
    );
    assert!(i[0].message.contains("mysql://"), "{}", i[0].message);
    assert!(!i[0].message.contains("hunter2"));
}

#[test]
fn bad_values_name_their_key() {
    let i = issues("driver = \"oracle\"\nurl = \"x\"");
    assert_eq!(i[0].key, "driver");
    let i = issues("url = \"postgres://h/db\"");
    assert_eq!(i[0].key, "driver");
    let i = issues("driver = \"postgres\"");
    assert_eq!(i[0].key, "url");
    let i = issues("driver = \"postgres\"\nurl = \"postgres://h/db\"\nschema = \"a;drop\"");
    assert_eq!(i[0].key, "schema");
    let i = issues("driver = \"mysql\"\nurl = \"mysql://h/db\"\nschema = \"terra\"");
    assert_eq!(i[0].key, "schema");
    let i = issues("driver = \"postgres\"\nurl = \"postgres://h/db\"\nmax_connections = 0");
    assert_eq!(i[0].key, "max_connections");
    let i = issues("driver = \"postgres\"\nurl = \"postgres://h/db\"\nconnect_timeout = \"soon\"");
    assert_eq!(i[0].key, "connect_timeout");
}

#[test]
fn unknown_keys_are_errors() {
    let i = issues("driver = \"postgres\"\nurl = \"postgres://h/db\"\ntable = \"x\"");
    assert_eq!(i[0].key, "table", "{i:?}");
}
