//! Settings validation: each mistake gives an issue naming the key and the fix.

mod common;

use common::try_build;
use manifold_core::destination::SettingIssue;

fn issues(settings: &str) -> Vec<SettingIssue> {
    match try_build(settings) {
        Ok(_) => panic!("expected settings to be refused: {settings}"),
        Err(i) => i,
    }
}

fn assert_issue(settings: &str, key: &str, words: &[&str]) {
    let all = issues(settings);
    let found = all.iter().find(|i| i.key == key);
    let Some(issue) = found else {
        panic!("no issue for `{key}` in {all:?}")
    };
    for w in words {
        assert!(
            issue.message.contains(w),
            "issue for `{key}` should mention {w:?}: {}",
            issue.message
        );
    }
}

#[test]
fn valid_minimal_settings_build() {
    assert!(try_build("url = \"https://example.com/hook\"\nsigning_secret = \"s\"").is_ok());
    assert!(try_build(
        "url = \"https://example.com/hook\"\nsigning_secret = \"whsec_c2VjcmV0\"\nsignature = \"both\"\nrequest_timeout = \"3s\"\nheaders = { X-Env = \"prod\" }"
    )
    .is_ok());
}

#[test]
fn missing_url() {
    assert_issue("signing_secret = \"s\"", "url", &["missing", "https://"]);
}

#[test]
fn relative_url() {
    assert_issue(
        "url = \"/terra/hook\"\nsigning_secret = \"s\"",
        "url",
        &["not an absolute URL", "https://"],
    );
}

#[test]
fn non_http_url() {
    assert_issue(
        "url = \"ftp://example.com/x\"\nsigning_secret = \"s\"",
        "url",
        &["ftp", "http"],
    );
}

#[test]
fn credentials_in_url() {
    assert_issue(
        "url = \"https://u:p@example.com/x\"\nsigning_secret = \"s\"",
        "url",
        &["credentials", "headers"],
    );
}

#[test]
fn unknown_key() {
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nsecret = \"x\"",
        "secret",
        &["unknown field"],
    );
}

#[test]
fn bad_signature_mode() {
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nsignature = \"hmac\"",
        "signature",
        &["hmac", "\"terra\"", "\"standard\"", "\"both\""],
    );
}

#[test]
fn missing_secret() {
    assert_issue(
        "url = \"https://example.com\"",
        "signing_secret",
        &["signing_secret"],
    );
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"\"",
        "signing_secret",
        &["empty"],
    );
}

#[test]
fn bad_standard_secret() {
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"whsec_%%%\"\nsignature = \"standard\"",
        "signing_secret",
        &["base64"],
    );
}

#[test]
fn bad_timeout() {
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nrequest_timeout = \"8\"",
        "request_timeout",
        &["30s"],
    );
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nrequest_timeout = \"0s\"",
        "request_timeout",
        &["more than zero"],
    );
}

#[test]
fn reserved_and_invalid_headers() {
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nheaders = { terra-signature = \"x\" }",
        "headers.terra-signature",
        &["cannot be overridden"],
    );
    assert_issue(
        "url = \"https://example.com\"\nsigning_secret = \"s\"\nheaders = { \"bad header\" = \"x\" }",
        "headers.bad header",
        &["not a valid HTTP header name"],
    );
}

#[test]
fn several_problems_reported_together_and_secrets_not_echoed() {
    let all = issues(
        "url = \"nope\"\nsignature = \"x\"\nheaders = { Authorization = \"Bearer SUPERSECRET\\n\" }",
    );
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert!(
        keys.contains(&"url") && keys.contains(&"signature") && keys.contains(&"signing_secret"),
        "{keys:?}"
    );
    assert!(keys.contains(&"headers.Authorization"), "{keys:?}");
    assert!(!format!("{all:?}").contains("SUPERSECRET"));
}
