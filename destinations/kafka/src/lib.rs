//! Kafka destination: one message per payload on a topic, keyed by user id.
//!
//! ```toml
//! [[destinations]]
//! name = "stream"
//! type = "kafka"
//! brokers = ["kafka-1.example.com:9093", "kafka-2.example.com:9093"]  # or "h1:9093,h2:9093"
//! topic = "terra-events"                # or topic_template = "terra.{type}" (exactly one)
//! security_protocol = "sasl_ssl"        # plaintext | ssl | sasl_plaintext | sasl_ssl
//! sasl_mechanism = "PLAIN"              # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
//! sasl_username = "manifold"
//! sasl_password = "${KAFKA_PASSWORD}"
//! ssl_ca_location = "/etc/ssl/certs/kafka-ca.pem"   # optional; system CAs otherwise
//! max_message_bytes = 1000000           # larger payloads go through the claim check
//! claim_check = "archive"               # optional: an object-storage destination's name
//! claim_check_prefix = "kafka"          # optional key prefix inside that store
//! presign_expiry = "10m"                # lifetime of the claim-check URL (default 10m)
//! [destinations.producer]               # librdkafka producer options, passed through
//! "linger.ms" = "20"
//! "compression.type" = "zstd"
//! ```
//!
//! # Messages
//! * key = the user id (so one user's events land on one partition, in order); no key for
//!   events without a user;
//! * value = the payload exactly as delivered (the Terra event JSON, or the FHIR bundle / FIT
//!   file when the destination's `format` asks for one), or an `s3_payload` claim-check message
//!   (JSON) when it is larger than `max_message_bytes` and `claim_check` is set;
//! * headers `type` (event type), `trace_id` (stable across retries; equals
//!   `X-Terra-Trace-Id`), `delivery_id` (stable id of this payload × destination),
//!   `content-type` (of the value) and `terra-reference` (when the payload has one).
//!
//! The producer is idempotent (`enable.idempotence=true`, `acks=all`): librdkafka's own
//! retries never duplicate or reorder a message. A redelivery by the engine (after a lost
//! acknowledgement) is a new message with the same `trace_id`/`delivery_id` headers, so consumers
//! deduplicate on them.
//!
//! # How failures are classified
//! Each item's delivery report is its outcome. Broker timeouts, connection failures, leader
//! changes, not-enough-replicas and the like → retry (the reason carries librdkafka's last
//! connection error, e.g. "Connection refused"). Message too large, topic authorization, invalid
//! topic, unknown topic (auto-creation off), SASL/TLS failures, policy violations → permanent,
//! with a reason that names the fix.

mod classify;
mod destination;

pub use destination::KafkaDestination;

use std::sync::Arc;
use std::time::Duration;

use manifold_core::config::Secret;
use manifold_core::destination::{
    BuildContext, Destination, DestinationFactory, SettingIssue, serde_issue,
};
use rdkafka::ClientConfig;
use serde::Deserialize;

/// Largest batch produced at once (every report is awaited before `deliver` returns).
pub const MAX_BATCH: usize = 100;
/// Default `max_message_bytes` (Kafka's default `message.max.bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_000_000;
/// Default `presign_expiry` (Terra's queue messages: `expires_in: 600`).
pub const DEFAULT_PRESIGN_EXPIRY: Duration = Duration::from_secs(600);
/// Default librdkafka `message.timeout.ms`: how long one `deliver` may wait for a report.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;
/// Kafka's limit on topic name length.
const MAX_TOPIC_LEN: usize = 249;

/// `brokers` as a list or a comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Brokers {
    List(Vec<String>),
    Csv(String),
}

/// The Kafka destination's own settings, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub brokers: Option<Brokers>,
    pub topic: Option<String>,
    pub topic_template: Option<String>,
    pub security_protocol: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    pub ssl_ca_location: Option<String>,
    pub producer: Option<toml::Table>,
    pub claim_check: Option<String>,
    pub claim_check_prefix: Option<String>,
    #[serde(default, deserialize_with = "opt_bytes")]
    pub max_message_bytes: Option<u64>,
    pub presign_expiry: Option<String>,
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    manifold_core::config::bytesize::deserialize(d).map(Some)
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRule {
    Fixed(String),
    /// `{type}` is replaced by the event type.
    Template(String),
}

impl TopicRule {
    pub fn topic_for(&self, event_type: &str) -> String {
        match self {
            TopicRule::Fixed(t) => t.clone(),
            TopicRule::Template(t) => t.replace("{type}", event_type),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub brokers: Vec<String>,
    pub topic: TopicRule,
    /// librdkafka configuration for the producer (everything but the password is safe to log).
    pub client: Vec<(String, String)>,
    pub sasl_password: Option<Secret>,
    pub claim_check: Option<String>,
    pub claim_check_prefix: String,
    pub max_message_bytes: u64,
    pub presign_expiry: Duration,
    /// librdkafka `message.timeout.ms` in effect.
    pub message_timeout: Duration,
}

impl Settings {
    /// The librdkafka configuration (with the password).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.client {
            c.set(k, v);
        }
        if let Some(p) = &self.sasl_password {
            c.set("sasl.password", p.expose());
        }
        c
    }
}

/// A valid Kafka topic name: 1–249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOPIC_LEN
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Keys of `producer` that have a dedicated setting or that the destination relies on.
fn reserved_producer_key(key: &str) -> Option<&'static str> {
    match key {
        "bootstrap.servers" | "metadata.broker.list" => Some("use `brokers`"),
        "security.protocol" => Some("use `security_protocol`"),
        "sasl.mechanism" | "sasl.mechanisms" => Some("use `sasl_mechanism`"),
        "sasl.username" => Some("use `sasl_username`"),
        "sasl.password" => Some("use `sasl_password`"),
        "ssl.ca.location" => Some("use `ssl_ca_location`"),
        "enable.idempotence" | "acks" | "request.required.acks" => Some(
            "the destination always uses an idempotent producer with acks=all (no loss, no reordering); remove it",
        ),
        "transactional.id" => Some("transactions are not used; remove it"),
        _ => None,
    }
}

impl Config {
    /// Check every setting; all problems are reported at once.
    pub fn validate(self) -> Result<Settings, Vec<SettingIssue>> {
        let mut issues = Vec::new();

        // brokers
        let brokers: Vec<String> = match &self.brokers {
            None => Vec::new(),
            Some(Brokers::List(l)) => l.iter().map(|b| b.trim().to_string()).collect(),
            Some(Brokers::Csv(s)) => s.split(',').map(|b| b.trim().to_string()).collect(),
        };
        let brokers: Vec<String> = brokers.into_iter().filter(|b| !b.is_empty()).collect();
        if brokers.is_empty() {
            issues.push(SettingIssue::new(
                "brokers",
                "missing or empty: set `brokers` to the bootstrap servers, e.g. [\"kafka-1.example.com:9093\"] or \"h1:9093,h2:9093\"",
            ));
        }
        for b in &brokers {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
                && !b.contains("://");
            if !ok {
                issues.push(SettingIssue::new(
                    "brokers",
                    format!("`{b}` is not host:port: write each broker like \"kafka-1.example.com:9093\" (no scheme)"),
                ));
            }
        }

        // topic / topic_template
        let topic = match (self.topic, self.topic_template) {
            (Some(_), Some(_)) => {
                issues.push(SettingIssue::new(
                    "topic_template",
                    "set either `topic` (one topic) or `topic_template` (e.g. \"terra.{type}\"), not both",
                ));
                None
            }
            (None, None) => {
                issues.push(SettingIssue::new(
                    "topic",
                    "missing: set `topic = \"terra-events\"`, or `topic_template = \"terra.{type}\"` for one topic per event type",
                ));
                None
            }
            (Some(t), None) => {
                let t = t.trim().to_string();
                if valid_topic(&t) {
                    Some(TopicRule::Fixed(t))
                } else {
                    issues.push(SettingIssue::new(
                        "topic",
                        format!("`{t}` is not a valid Kafka topic name: use 1–249 letters, digits, `.`, `_` or `-`"),
                    ));
                    None
                }
            }
            (None, Some(t)) => {
                let t = t.trim().to_string();
                let rest = t.replace("{type}", "");
                if !t.contains("{type}") {
                    issues.push(SettingIssue::new(
                        "topic_template",
                        format!("`{t}` has no `{{type}}` placeholder: write e.g. \"terra.{{type}}\", or use `topic` for a single topic"),
                    ));
                    None
                } else if rest.contains('{') || rest.contains('}') {
                    issues.push(SettingIssue::new(
                        "topic_template",
                        format!("`{t}`: the only placeholder is `{{type}}` (the event type), e.g. \"terra.{{type}}\""),
                    ));
                    None
                } else if !valid_topic(&t.replace("{type}", "large_request_processing")) {
                    issues.push(SettingIssue::new(
                        "topic_template",
                        format!("`{t}` does not make valid Kafka topic names: use letters, digits, `.`, `_`, `-` around `{{type}}`"),
                    ));
                    None
                } else {
                    Some(TopicRule::Template(t))
                }
            }
        };

        // security
        let has_sasl_creds = self.sasl_username.is_some() || self.sasl_password.is_some();
        let protocol = match self
            .security_protocol
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
        {
            None if has_sasl_creds => "sasl_ssl".to_string(),
            None => "plaintext".to_string(),
            Some(p)
                if matches!(
                    p.as_str(),
                    "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"
                ) =>
            {
                p
            }
            Some(p) => {
                issues.push(SettingIssue::new(
                    "security_protocol",
                    format!("`{p}` is not supported: use \"plaintext\", \"ssl\", \"sasl_plaintext\" or \"sasl_ssl\" (SASL PLAIN over TLS is \"sasl_ssl\")"),
                ));
                "plaintext".to_string()
            }
        };
        let sasl = protocol.starts_with("sasl_");
        let tls = protocol.ends_with("ssl");
        let mechanism = match self
            .sasl_mechanism
            .as_deref()
            .map(|s| s.trim().to_ascii_uppercase())
        {
            Some(_) if !sasl => {
                issues.push(SettingIssue::new(
                    "sasl_mechanism",
                    format!("only used with security_protocol \"sasl_ssl\" or \"sasl_plaintext\" (it is \"{protocol}\"): remove it or change `security_protocol`"),
                ));
                None
            }
            None if sasl => Some("PLAIN".to_string()),
            None => None,
            Some(m) if matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => Some(m),
            Some(m) => {
                issues.push(SettingIssue::new(
                    "sasl_mechanism",
                    format!("`{m}` is not supported: use \"PLAIN\", \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\""),
                ));
                None
            }
        };
        if sasl {
            if self
                .sasl_username
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
            {
                issues.push(SettingIssue::new(
                    "sasl_username",
                    format!("missing: security_protocol \"{protocol}\" needs `sasl_username` and `sasl_password`"),
                ));
            }
            if self
                .sasl_password
                .as_ref()
                .is_none_or(|p| p.expose().is_empty())
            {
                issues.push(SettingIssue::new(
                    "sasl_password",
                    format!("missing or empty: security_protocol \"{protocol}\" needs it; write `sasl_password = \"${{KAFKA_PASSWORD}}\"` and set the variable"),
                ));
            }
        } else if has_sasl_creds {
            issues.push(SettingIssue::new(
                "security_protocol",
                format!("`sasl_username`/`sasl_password` are set but security_protocol is \"{protocol}\": set it to \"sasl_ssl\" (SASL over TLS) or remove the credentials"),
            ));
        }
        if self.ssl_ca_location.is_some() && !tls {
            issues.push(SettingIssue::new(
                "ssl_ca_location",
                format!("only used with security_protocol \"ssl\" or \"sasl_ssl\" (it is \"{protocol}\"): remove it or change `security_protocol`"),
            ));
        }

        // sizes and claim check
        let max_message_bytes = self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(1024..=1_000_000_000).contains(&max_message_bytes) {
            issues.push(SettingIssue::new(
                "max_message_bytes",
                format!("{max_message_bytes} is out of range: use a size between 1KiB and 1000000000 bytes that the topic's `max.message.bytes` accepts (default 1000000)"),
            ));
        }
        let claim_check = match self.claim_check.as_deref().map(str::trim) {
            Some("") => {
                issues.push(SettingIssue::new(
                    "claim_check",
                    "empty: set it to the name of an s3/gcs/azure-blob destination, or remove it",
                ));
                None
            }
            other => other.map(str::to_string),
        };
        if claim_check.is_none() && self.claim_check_prefix.is_some() {
            issues.push(SettingIssue::new(
                "claim_check_prefix",
                "only used with `claim_check`: set `claim_check` too, or remove it",
            ));
        }
        let presign_expiry = match self.presign_expiry.as_deref() {
            None => DEFAULT_PRESIGN_EXPIRY,
            Some(_) if claim_check.is_none() => {
                issues.push(SettingIssue::new(
                    "presign_expiry",
                    "only used with `claim_check`: set `claim_check` too, or remove it",
                ));
                DEFAULT_PRESIGN_EXPIRY
            }
            Some(raw) => match manifold_core::config::duration::parse(raw) {
                Ok(d) if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 24 * 3600) => {
                    issues.push(SettingIssue::new(
                        "presign_expiry",
                        format!("`{raw}` is out of range: use between \"1s\" and \"7d\" (pre-signed URLs last at most 7 days), e.g. \"10m\""),
                    ));
                    DEFAULT_PRESIGN_EXPIRY
                }
                Ok(d) => d,
                Err(e) => {
                    issues.push(SettingIssue::new("presign_expiry", e));
                    DEFAULT_PRESIGN_EXPIRY
                }
            },
        };

        // librdkafka configuration
        let mut client: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), brokers.join(",")),
            ("security.protocol".into(), protocol.clone()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            (
                "message.timeout.ms".into(),
                DEFAULT_MESSAGE_TIMEOUT_MS.to_string(),
            ),
            ("linger.ms".into(), "5".into()),
            // Room for the largest message we send inline plus key and headers.
            (
                "message.max.bytes".into(),
                (max_message_bytes.max(DEFAULT_MAX_MESSAGE_BYTES) + 65_536).to_string(),
            ),
        ];
        if let Some(m) = &mechanism {
            client.push(("sasl.mechanisms".into(), m.clone()));
        }
        if let Some(u) = self.sasl_username.as_ref().filter(|_| sasl) {
            client.push(("sasl.username".into(), u.trim().to_string()));
        }
        if let Some(ca) = self.ssl_ca_location.as_ref().filter(|_| tls) {
            client.push(("ssl.ca.location".into(), ca.trim().to_string()));
        }
        for (k, v) in self.producer.unwrap_or_default() {
            let key = format!("producer.\"{k}\"");
            if let Some(fix) = reserved_producer_key(&k) {
                issues.push(SettingIssue::new(
                    key,
                    format!("`{k}` cannot be set here: {fix}"),
                ));
                continue;
            }
            match v {
                toml::Value::String(s) => {
                    client.retain(|(ck, _)| ck != &k);
                    client.push((k, s));
                }
                other => issues.push(SettingIssue::new(
                    key,
                    format!(
                        "librdkafka options are strings: write `\"{k}\" = \"{}\"`",
                        other.to_string().trim_matches('"')
                    ),
                )),
            }
        }
        // librdkafka checks names and values without connecting anywhere.
        let mut probe = ClientConfig::new();
        for (k, v) in &client {
            probe.set(k, v);
        }
        if sasl {
            probe.set("sasl.password", "probe");
        }
        if let Err(e) = probe.create_native_config() {
            issues.push(SettingIssue::new(
                "producer",
                format!("librdkafka rejects the producer configuration: {e}; see https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"),
            ));
        }
        let message_timeout = client
            .iter()
            .rev()
            .find(|(k, _)| k == "message.timeout.ms" || k == "delivery.timeout.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(DEFAULT_MESSAGE_TIMEOUT_MS));

        match topic {
            Some(topic) if issues.is_empty() => Ok(Settings {
                brokers,
                topic,
                client,
                sasl_password: if sasl { self.sasl_password } else { None },
                claim_check,
                claim_check_prefix: self
                    .claim_check_prefix
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_string(),
                max_message_bytes,
                presign_expiry,
                message_timeout,
            }),
            _ => Err(issues),
        }
    }
}

/// Builds `type = "kafka"` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaFactory;

impl DestinationFactory for KafkaFactory {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn build(
        &self,
        name: &str,
        settings: toml::Table,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Destination>, Vec<SettingIssue>> {
        let config: Config = toml::Value::Table(settings)
            .try_into()
            .map_err(|e| vec![serde_issue(&e)])?;
        let settings = config.validate()?;
        if let Some(target) = &settings.claim_check {
            ctx.blob_stores.require(name, "claim_check", target);
        }
        Ok(Arc::new(KafkaDestination::new(
            name,
            settings,
            ctx.blob_stores.clone(),
        )))
    }
}

#[cfg(test)]
mod tests;
