//! One test per class of config mistake, asserting the whole `file:line: key: message; fix` line.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::*;
use crate::destination::{Delivery, Outcome, SettingIssue, serde_issue};

/// A destination type with one required absolute URL, to exercise the type-specific path.
struct UrlFactory;
struct Nothing;

#[async_trait]
impl Destination for Nothing {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        batch.iter().map(|_| Outcome::delivered()).collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlSettings {
    url: String,
}

impl DestinationFactory for UrlFactory {
    fn kind(&self) -> &'static str {
        "webhook"
    }
    fn build(
        &self,
        _: &str,
        settings: toml::Table,
        _: &BuildContext,
    ) -> Result<Arc<dyn Destination>, Vec<SettingIssue>> {
        let s: UrlSettings = toml::Value::Table(settings)
            .try_into()
            .map_err(|e| vec![serde_issue(&e)])?;
        match url::Url::parse(&s.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(Arc::new(Nothing)),
            _ => Err(vec![SettingIssue::new(
                "url",
                format!(
                    "`{}` is not an absolute http(s) URL; write e.g. \"https://app.example.com/hooks\"",
                    s.url
                ),
            )]),
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(UrlFactory);
    r
}

fn env(name: &str) -> Option<String> {
    match name {
        "API_KEY" => Some("k-123".into()),
        "HOOK_SECRET" => Some("shh".into()),
        _ => None,
    }
}

fn load(src: &str) -> Result<Config, ConfigError> {
    Config::from_str(src, "manifold.toml", &registry(), &env)
}

fn errors(src: &str) -> Vec<String> {
    load(src)
        .unwrap_err()
        .0
        .iter()
        .map(|i| i.to_string())
        .collect()
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9999"
api_keys = ["${API_KEY}"]

[store]
url = "sqlite://./data/m.db"

[[destinations]]
name = "app"
type = "webhook"
url = "https://app.example.com/terra"
data_types = ["sleep", "daily"]
retry = { max_attempts = 4, initial_backoff = "10s", max_backoff = "1h" }
"#;

#[test]
fn a_good_file_loads_with_env_and_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.server.api_keys[0].expose(), "k-123");
    assert_eq!(c.server.max_body, 10 * 1024 * 1024);
    assert_eq!(c.destinations.len(), 1);
    let d = &c.destinations[0].common;
    assert_eq!(d.retry.max_attempts, 4);
    assert_eq!(d.retry.initial_backoff, Duration::from_secs(10));
    assert_eq!(d.retry.max_backoff, Duration::from_secs(3600));
    assert_eq!(d.timeout, Duration::from_secs(8));
    assert!(d.accepts("sleep") && !d.accepts("body"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = load(GOOD).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("k-123"), "{dbg}");
    assert!(dbg.contains("***"));
}

#[test]
fn unknown_key_names_file_line_key_and_fix() {
    let src = GOOD.replace("[store]\n", "[store]\nurll = \"x\"\n");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("manifold.toml:7: store.urll: unknown field `urll`"),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("remove it or correct the spelling"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_destination_key_is_reported_with_its_path() {
    let src = GOOD.replace("data_types", "signing_secrett = \"x\"\ndata_types");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("manifold.toml:13: destinations[0].signing_secrett: unknown field"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_duration_says_how_to_write_one() {
    let src = GOOD.replace("\"10s\"", "\"10 parsecs\"");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("manifold.toml:14: destinations[0]"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("`10 parsecs` is not a duration"), "{}", e[0]);
    assert!(e[0].contains("like \"30s\""), "{}", e[0]);
}

#[test]
fn missing_env_var_is_named() {
    let src = GOOD.replace("${API_KEY}", "${NOT_EXPORTED}");
    let e = errors(&src);
    assert_eq!(
        e,
        vec![
            "manifold.toml:4: server.api_keys[0]: environment variable `NOT_EXPORTED` is not set; \
             export the variable before starting, or use `${NAME:-default}`"
                .to_string()
        ]
    );
}

#[test]
fn bad_url_is_reported_by_the_destination_type() {
    let src = GOOD.replace("https://app.example.com/terra", "app.example.com/terra");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "manifold.toml:12: destinations[0].url: `app.example.com/terra` is not an absolute"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn bad_listen_address_is_located() {
    let src = GOOD.replace("127.0.0.1:9999", "localhost-ish");
    let e = errors(&src);
    assert!(
        e[0].starts_with("manifold.toml:3: server.listen: invalid socket address"),
        "{}",
        e[0]
    );
}

#[test]
fn lease_must_exceed_timeout() {
    let src = GOOD.replace("[store]\n", "[store]\nlease = \"5s\"\n");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("destinations[0].timeout: is 8s but store.lease is 5s"),
        "{}",
        e[0]
    );
    assert!(
        e[0].ends_with("lower the timeout or raise store.lease"),
        "{}",
        e[0]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let src = GOOD
        .replace("type = \"webhook\"", "type = \"carrier-pigeon\"")
        .replace("[\"sleep\", \"daily\"]", "[\"sleep\", \"naps\"]")
        .replace("max_attempts = 4", "max_attempts = 0");
    let e = errors(&src);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(|l| l.contains(
        "destinations[0].type: unknown destination type `carrier-pigeon`; use one of: webhook"
    )));
    assert!(
        e.iter()
            .any(|l| l.contains("destinations[0].data_types[1]: `naps` is not a Terra event type"))
    );
    assert!(
        e.iter()
            .any(|l| l.contains("destinations[0].retry.max_attempts: must be at least 1"))
    );
}

#[test]
fn duplicate_names_and_bad_store_urls() {
    let src = format!(
        "{GOOD}\n[[destinations]]\nname = \"app\"\ntype = \"webhook\"\nurl = \"https://b.example.com\"\n"
    )
    .replace("sqlite://./data/m.db", "mysql://db/x");
    let e = errors(&src);
    assert!(
        e.iter()
            .any(|l| l.contains("store.url: unsupported store URL scheme")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l
                .contains("destinations[1].name: the name `app` is used by another destination")),
        "{e:?}"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let e = errors("[server]\nlisten = 127.0.0.1\n");
    assert!(
        e[0].starts_with("manifold.toml:2: invalid TOML"),
        "{}",
        e[0]
    );
}
