//! Config validation (no broker needed).

use super::*;

fn validate(src: &str) -> Result<Settings, Vec<SettingIssue>> {
    let table: toml::Table = toml::from_str(src).unwrap();
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e| vec![serde_issue(&e)])?;
    config.validate()
}

fn issues(src: &str) -> Vec<SettingIssue> {
    validate(src).expect_err("expected issues")
}

fn has(issues: &[SettingIssue], key: &str, needle: &str) -> bool {
    issues
        .iter()
        .any(|i| i.key == key && i.message.contains(needle))
}

fn client(s: &Settings, key: &str) -> Option<String> {
    s.client
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn minimal_config_gets_idempotent_producer_defaults() {
    let s = validate("brokers = \"a:9092, b:9093\"\ntopic = \"terra-events\"").unwrap();
    assert_eq!(s.brokers, ["a:9092", "b:9093"]);
    assert_eq!(s.topic, TopicRule::Fixed("terra-events".into()));
    assert_eq!(client(&s, "bootstrap.servers").unwrap(), "a:9092,b:9093");
    assert_eq!(client(&s, "enable.idempotence").unwrap(), "true");
    assert_eq!(client(&s, "acks").unwrap(), "all");
    assert_eq!(client(&s, "security.protocol").unwrap(), "plaintext");
    assert_eq!(s.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    assert!(s.claim_check.is_none());
}

#[test]
fn brokers_as_list_and_template() {
    let s = validate("brokers = [\"k1:9092\", \"k2:9092\"]\ntopic_template = \"terra.{type}\"")
        .unwrap();
    assert_eq!(s.topic.topic_for("sleep"), "terra.sleep");
    assert_eq!(s.brokers.len(), 2);
}

#[test]
fn topic_and_template_are_exclusive_and_one_is_required() {
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"x\"\ntopic_template = \"t.{type}\""),
        "topic_template",
        "not both"
    ));
    assert!(has(&issues("brokers = \"a:1\""), "topic", "missing"));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic_template = \"terra\""),
        "topic_template",
        "{type}"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic_template = \"t.{type}.{user}\""),
        "topic_template",
        "only placeholder"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"bad topic\""),
        "topic",
        "not a valid Kafka topic"
    ));
}

#[test]
fn brokers_must_be_host_port() {
    let i = issues("brokers = [\"kafka://a:9092\", \"b\"]\ntopic = \"t\"");
    assert_eq!(i.iter().filter(|i| i.key == "brokers").count(), 2);
    assert!(has(&issues("topic = \"t\""), "brokers", "missing"));
}

#[test]
fn sasl_defaults_to_sasl_ssl_plain_and_needs_both_credentials() {
    let s = validate(
        "brokers = \"a:9093\"\ntopic = \"t\"\nsasl_username = \"u\"\nsasl_password = \"p\"",
    )
    .unwrap();
    assert_eq!(client(&s, "security.protocol").unwrap(), "sasl_ssl");
    assert_eq!(client(&s, "sasl.mechanisms").unwrap(), "PLAIN");
    assert_eq!(client(&s, "sasl.username").unwrap(), "u");
    // The password is not in the loggable list, only in the real client config.
    assert!(client(&s, "sasl.password").is_none());
    assert_eq!(
        s.client_config().get("sasl.password"),
        Some("p"),
        "password reaches librdkafka"
    );
    assert!(
        !format!("{s:?}").contains("\"p\""),
        "Debug must not show it"
    );

    let i = issues("brokers = \"a:9093\"\ntopic = \"t\"\nsecurity_protocol = \"sasl_ssl\"");
    assert!(has(&i, "sasl_username", "missing"));
    assert!(has(&i, "sasl_password", "KAFKA_PASSWORD"));
    assert!(has(
        &issues(
            "brokers = \"a:1\"\ntopic = \"t\"\nsecurity_protocol = \"plaintext\"\nsasl_username = \"u\"\nsasl_password = \"p\""
        ),
        "security_protocol",
        "sasl_ssl"
    ));
    assert!(has(
        &issues(
            "brokers = \"a:1\"\ntopic = \"t\"\nsasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\nsasl_password = \"p\""
        ),
        "sasl_mechanism",
        "SCRAM-SHA-256"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\nssl_ca_location = \"/ca.pem\""),
        "ssl_ca_location",
        "only used"
    ));
}

#[test]
fn producer_options_pass_through_as_strings_and_are_checked_by_librdkafka() {
    let s = validate(
        "brokers = \"a:1\"\ntopic = \"t\"\n[producer]\n\"linger.ms\" = \"50\"\n\"compression.type\" = \"lz4\"\n\"message.timeout.ms\" = \"5000\"",
    )
    .unwrap();
    assert_eq!(client(&s, "linger.ms").unwrap(), "50");
    assert_eq!(client(&s, "compression.type").unwrap(), "lz4");
    assert_eq!(s.message_timeout, Duration::from_secs(5));

    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\n[producer]\n\"linger.ms\" = 50"),
        "producer.\"linger.ms\"",
        "\"linger.ms\" = \"50\""
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\n[producer]\n\"no.such.option\" = \"1\""),
        "producer",
        "librdkafka rejects"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\n[producer]\n\"enable.idempotence\" = \"false\""),
        "producer.\"enable.idempotence\"",
        "idempotent"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\n[producer]\n\"bootstrap.servers\" = \"x:1\""),
        "producer.\"bootstrap.servers\"",
        "brokers"
    ));
}

#[test]
fn claim_check_settings() {
    let s = validate(
        "brokers = \"a:1\"\ntopic = \"t\"\nclaim_check = \"archive\"\nclaim_check_prefix = \"/kafka/\"\npresign_expiry = \"15m\"\nmax_message_bytes = \"512KiB\"",
    )
    .unwrap();
    assert_eq!(s.claim_check.as_deref(), Some("archive"));
    assert_eq!(s.claim_check_prefix, "kafka");
    assert_eq!(s.presign_expiry, Duration::from_secs(900));
    assert_eq!(s.max_message_bytes, 512 * 1024);

    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\npresign_expiry = \"10m\""),
        "presign_expiry",
        "claim_check"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\nclaim_check = \"x\"\npresign_expiry = \"30d\""),
        "presign_expiry",
        "7 days"
    ));
    assert!(has(
        &issues("brokers = \"a:1\"\ntopic = \"t\"\nmax_message_bytes = 10"),
        "max_message_bytes",
        "out of range"
    ));
}

#[test]
fn unknown_keys_are_named() {
    let i = issues("brokers = \"a:1\"\ntopic = \"t\"\nbootstrap_servers = \"x\"");
    assert_eq!(i[0].key, "bootstrap_servers");
}

#[test]
fn factory_builds_without_io_and_declares_the_claim_check() {
    let ctx = BuildContext::default();
    let table: toml::Table =
        toml::from_str("brokers = \"127.0.0.1:1\"\ntopic = \"t\"\nclaim_check = \"archive\"")
            .unwrap();
    let d = KafkaFactory.build("stream", table, &ctx).unwrap();
    assert_eq!(d.max_batch(), MAX_BATCH);
    assert_eq!(
        ctx.blob_stores.missing(),
        vec![("stream".into(), "claim_check".into(), "archive".into())]
    );
}
