//! Config validation: every problem reported with its fix; build does no I/O.

use manifold_core::destination::{BuildContext, DestinationFactory, SettingIssue};
use manifold_gcs::{Config, GcsFactory};

fn issues(src: &str) -> Vec<SettingIssue> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match GcsFactory.build("gcs", table, &BuildContext::default()) {
        Ok(_) => vec![],
        Err(e) => e,
    }
}

fn settings(src: &str) -> manifold_gcs::Settings {
    let c: Config = toml::from_str(src).unwrap();
    c.validate().unwrap()
}

#[test]
fn minimal_configs_have_sane_defaults() {
    let s = settings("bucket = \"my-bucket\"\ncredentials_file = \"/etc/k.json\"");
    assert_eq!(s.prefix, "");
    assert_eq!(s.origin, "https://storage.googleapis.com");
    assert!(!s.custom_endpoint);
    assert_eq!(s.presign_expiry.as_secs(), 600);
    let s = settings(
        "bucket = \"gs://b_1.x\"\nendpoint = \"http://127.0.0.1:4443/\"\nprefix = \"/a/b/\"",
    );
    assert_eq!(s.bucket, "b_1.x");
    assert_eq!(s.origin, "http://127.0.0.1:4443");
    assert!(
        s.credentials_file.is_none(),
        "an emulator endpoint may be anonymous"
    );
    assert_eq!(s.prefix, "a/b");
}

#[test]
fn build_needs_no_runtime_or_file_and_registers_the_blob_store() {
    let ctx = BuildContext::default();
    let table: toml::Table =
        toml::from_str("bucket = \"abc\"\ncredentials_file = \"/does/not/exist.json\"").unwrap();
    GcsFactory.build("archive", table, &ctx).unwrap();
    assert!(ctx.blob_stores.get("archive").is_some());
    assert_eq!(GcsFactory.kind(), "gcs");
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["bucket", "credentials_file"]);
    assert!(i[0].message.contains("set `bucket`"));
    assert!(
        i[1].message.contains("roles/storage.objectCreator"),
        "{i:?}"
    );

    let i = issues("bucket = \"My Bucket\"\ncredentials_file = \"\"");
    assert_eq!(i.len(), 2, "{i:?}");
    assert!(i[0].message.contains("lowercase"), "{i:?}");
    assert!(i[1].message.contains("${ENV}"), "{i:?}");

    let i = issues("bucket = \"abc\"\nendpoint = \"localhost:4443\"");
    assert_eq!(i[0].key, "endpoint");
    let i = issues("bucket = \"abc\"\nendpoint = \"http://h:1/storage/v1\"");
    assert_eq!(i[0].key, "endpoint");

    let i = issues("bucket = \"abc\"\nendpoint = \"http://h:1\"\npresign_expiry = \"8d\"");
    assert_eq!(i[0].key, "presign_expiry");
    assert!(i[0].message.contains("7 days"));

    let i = issues("bucket = \"abc\"\nendpoint = \"http://h:1\"\nprefix = \"a/../b\"");
    assert_eq!(i[0].key, "prefix");

    let i = issues("bucket = \"abc\"\nendpoint = \"http://h:1\"\nregion = \"x\"");
    assert_eq!(i[0].key, "region");
}
