//! Config validation: every problem reported with its fix; build does no I/O.

use manifold_azure_blob::{Auth, AzureBlobFactory, Config, parse_connection_string, parse_sas_url};
use manifold_core::destination::{BuildContext, DestinationFactory, SettingIssue};

fn issues(src: &str) -> Vec<SettingIssue> {
    let table: toml::Table = toml::from_str(src).unwrap();
    match AzureBlobFactory.build("az", table, &BuildContext::default()) {
        Ok(_) => vec![],
        Err(e) => e,
    }
}

fn settings(src: &str) -> manifold_azure_blob::Settings {
    let c: Config = toml::from_str(src).unwrap();
    c.validate().unwrap()
}

const SAS: &str = "sv=2022-11-02&sr=c&sp=racw&se=2099-01-01T00%3A00%3A00Z&sig=abc%3D";

#[test]
fn sas_urls_of_a_container_or_an_account() {
    let s = settings(&format!(
        "container = \"health-data\"\nsas_url = \"https://acct.blob.core.windows.net/health-data?{SAS}\"\nprefix = \"/t/\""
    ));
    assert_eq!(s.service_url, "https://acct.blob.core.windows.net");
    assert_eq!(
        s.container_url(),
        "https://acct.blob.core.windows.net/health-data"
    );
    assert_eq!(s.prefix, "t");
    assert!(matches!(&s.auth, Auth::Sas { permissions: Some(p), .. } if p == "racw"));
    // Azurite's path-style account URL.
    let (svc, q) = parse_sas_url(
        &format!("http://127.0.0.1:10000/devstoreaccount1/c1?{SAS}"),
        "c1",
    )
    .unwrap();
    assert_eq!(svc, "http://127.0.0.1:10000/devstoreaccount1");
    assert_eq!(q, SAS);
    // An account SAS (no container in the path).
    let (svc, _) = parse_sas_url(
        "https://acct.blob.core.windows.net/?sv=2022-11-02&ss=b&srt=co&sp=cw&se=2099-01-01&sig=x",
        "c1",
    )
    .unwrap();
    assert_eq!(svc, "https://acct.blob.core.windows.net");
}

#[test]
fn connection_strings() {
    let (svc, auth) = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
    )
    .unwrap();
    assert_eq!(svc, "https://acct.blob.core.windows.net");
    assert!(
        matches!(auth, Auth::Key { ref account, ref key } if account == "acct" && key.0 == b"key")
    );
    let (svc, _) = parse_connection_string("UseDevelopmentStorage=true").unwrap();
    assert_eq!(svc, "http://127.0.0.1:10000/devstoreaccount1");
    let (svc, auth) = parse_connection_string(
        "BlobEndpoint=https://x.example/;SharedAccessSignature=sv=1&sp=cw&sig=s",
    )
    .unwrap();
    assert_eq!(svc, "https://x.example");
    assert!(matches!(auth, Auth::Sas { permissions: Some(ref p), .. } if p == "cw"));
    assert!(
        parse_connection_string("AccountName=a;AccountKey=not base64!")
            .unwrap_err()
            .contains("base64")
    );
    assert!(
        parse_connection_string("AccountName=a")
            .unwrap_err()
            .contains("AccountKey")
    );
    assert!(
        parse_connection_string("garbage")
            .unwrap_err()
            .contains("Key=Value")
    );
}

#[test]
fn build_needs_no_runtime_and_registers_the_blob_store() {
    let ctx = BuildContext::default();
    let table: toml::Table =
        toml::from_str("container = \"abc\"\nconnection_string = \"UseDevelopmentStorage=true\"")
            .unwrap();
    AzureBlobFactory.build("archive", table, &ctx).unwrap();
    assert!(ctx.blob_stores.get("archive").is_some());
    assert_eq!(AzureBlobFactory.kind(), "azure-blob");
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let i = issues("");
    let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["container", "sas_url"]);
    assert!(i[1].message.contains("`cw`"), "{i:?}");

    let i = issues("container = \"Health_Data\"\nsas_url = \"\"");
    assert_eq!(i.len(), 2, "{i:?}");
    assert!(i[0].message.contains("lowercase"), "{i:?}");
    assert!(i[1].message.contains("${ENV}"), "{i:?}");

    let both = format!(
        "container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?{SAS}\"\nconnection_string = \"UseDevelopmentStorage=true\""
    );
    assert!(issues(&both)[0].message.contains("not both"));

    let i = issues("container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?sv=1\"");
    assert!(i[0].message.contains("sig="), "{i:?}");
    let i = issues(&format!(
        "container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/other?{SAS}\""
    ));
    assert!(i[0].message.contains("for `other`"), "{i:?}");
    let i =
        issues("container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?sp=r&sig=x\"");
    assert!(i[0].message.contains("without `w`"), "{i:?}");
    let i =
        issues("container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?sp=c&sig=x\"");
    assert!(i[0].message.contains("`cw`"), "{i:?}");
    let i = issues(
        "container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?sp=cw&se=2020-01-01T00:00:00Z&sig=x\"",
    );
    assert!(i[0].message.contains("expired"), "{i:?}");
    let i = issues("container = \"abc\"\nconnection_string = \"AccountName=a\"");
    assert_eq!(i[0].key, "connection_string");
    let i = issues(
        "container = \"abc\"\nconnection_string = \"UseDevelopmentStorage=true\"\npresign_expiry = \"9d\"",
    );
    assert_eq!(i[0].key, "presign_expiry");
    let i = issues(
        "container = \"abc\"\nconnection_string = \"UseDevelopmentStorage=true\"\nbucket = \"x\"",
    );
    assert_eq!(i[0].key, "bucket");
}

#[test]
fn secrets_never_show_in_debug() {
    let s = settings(
        "container = \"abc\"\nconnection_string = \"AccountName=a;AccountKey=c2VjcmV0LWtleS12YWx1ZQ==\"",
    );
    let dbg = format!("{s:?}");
    assert!(
        !dbg.contains("c2VjcmV0") && !dbg.contains("115, 101"),
        "{dbg}"
    );
    let s = settings(&format!(
        "container = \"abc\"\nsas_url = \"https://a.blob.core.windows.net/abc?{SAS}\""
    ));
    assert!(!format!("{s:?}").contains("sig=abc"));
}
