//! Config validation: every problem reported with its fix; build does no I/O.

use manifold_core::destination::{BuildContext, DestinationFactory, SettingIssue};
use manifold_s3::{Config, S3Factory};

fn issues(src: &str) -> Vec<SettingIssue> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match S3Factory.build("s3", table, &BuildContext::default()) {
        Ok(_) => vec![],
        Err(e) => e,
    }
}

fn settings(src: &str) -> manifold_s3::Settings {
    let c: Config = toml::from_str(src).unwrap();
    c.validate().unwrap()
}

#[test]
fn minimal_config_has_sane_defaults() {
    let s = settings("bucket = \"my-bucket\"\nregion = \"eu-west-2\"");
    assert_eq!(s.prefix, "");
    assert!(!s.force_path_style);
    assert!(!s.gzip);
    assert!(s.keys.is_none());
    assert_eq!(s.presign_expiry.as_secs(), 600);
    let s = settings(
        "bucket = \"b.b-1\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9000/\"\nprefix = \"/a/b/\"",
    );
    assert!(s.force_path_style, "an endpoint defaults to path style");
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s.prefix, "a/b");
}

#[test]
fn build_needs_no_runtime_and_registers_the_blob_store() {
    let ctx = BuildContext::default();
    let table: toml::Table = toml::from_str("bucket = \"abc\"\nregion = \"eu-west-1\"").unwrap();
    S3Factory.build("archive", table, &ctx).unwrap();
    assert!(ctx.blob_stores.get("archive").is_some());
    assert_eq!(S3Factory.kind(), "s3");
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["bucket", "region"]);
    assert!(i[0].message.contains("set `bucket`"));

    let i = issues("bucket = \"s3://My_Bucket\"\nregion = \"EU West\"");
    assert_eq!(i.len(), 2, "{i:?}");
    assert!(i[0].message.contains("lowercase"), "{i:?}");
    assert!(i[1].message.contains("eu-west-2"), "{i:?}");

    let i = issues("bucket = \"abc\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIA\"");
    assert_eq!(i[0].key, "secret_access_key");

    let i = issues("bucket = \"abc\"\nregion = \"eu-west-1\"\nendpoint = \"localhost:9000\"");
    assert_eq!(i[0].key, "endpoint");

    let i = issues("bucket = \"abc\"\nregion = \"eu-west-1\"\npresign_expiry = \"30d\"");
    assert_eq!(i[0].key, "presign_expiry");
    assert!(i[0].message.contains("7 days"));

    let i = issues("bucket = \"abc\"\nregion = \"eu-west-1\"\nprefix = \"a/../b\"");
    assert_eq!(i[0].key, "prefix");

    let i = issues("bucket = \"abc\"\nregion = \"eu-west-1\"\nbukket = 1");
    assert_eq!(i[0].key, "bukket");
}

#[test]
fn secrets_never_show_in_debug() {
    let s = settings(
        "bucket = \"abc\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"very-secret\"",
    );
    let dbg = format!("{s:?}");
    assert!(
        !dbg.contains("very-secret") && !dbg.contains("AKIAEXAMPLE"),
        "{dbg}"
    );
}
