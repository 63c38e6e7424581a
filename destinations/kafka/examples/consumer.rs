//! A consumer to copy: subscribes to the topic(s) Manifold writes, prints each payload's type,
//! user and trace id, and follows `s3_payload` claim-check links to fetch the full payload.
//!
//! ```sh
//! KAFKA_BROKERS=127.0.0.1:19092 KAFKA_TOPICS=terra-events \
//!   cargo run -p manifold-kafka --example kafka-consumer
//! ```
//! Optional: `KAFKA_GROUP` (default `terra-consumer`), and for SASL over TLS `KAFKA_USERNAME`,
//! `KAFKA_PASSWORD` (and `KAFKA_MECHANISM`, default PLAIN).
//!
//! Deliveries are at least once: deduplicate on the `trace_id` header (or `delivery_id`).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = env("KAFKA_BROKERS", "127.0.0.1:19092");
    let topics = env("KAFKA_TOPICS", "terra-events");
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &brokers)
        .set("group.id", env("KAFKA_GROUP", "terra-consumer"))
        .set("auto.offset.reset", "earliest")
        // Commit only after a message was handled.
        .set("enable.auto.commit", "false");
    if let (Ok(user), Ok(pass)) = (
        std::env::var("KAFKA_USERNAME"),
        std::env::var("KAFKA_PASSWORD"),
    ) {
        cfg.set("security.protocol", "sasl_ssl")
            .set("sasl.mechanisms", env("KAFKA_MECHANISM", "PLAIN"))
            .set("sasl.username", user)
            .set("sasl.password", pass);
    }
    let consumer: StreamConsumer = cfg.create()?;
    let topics: Vec<&str> = topics.split(',').map(str::trim).collect();
    consumer.subscribe(&topics)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    eprintln!("consuming {topics:?} from {brokers}");

    loop {
        let msg = consumer.recv().await?;
        let header = |name: &str| {
            msg.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let trace_id = header("trace_id").unwrap_or_default();
        let content_type = header("content-type").unwrap_or_default();
        let user = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| "-".into());
        let value = msg.payload().unwrap_or_default();

        // JSON values are the Terra event itself, or an `s3_payload` link to it.
        let mut body: Option<serde_json::Value> = if content_type.contains("json") {
            serde_json::from_slice(value).ok()
        } else {
            None
        };
        if let Some(link) = body.clone().filter(|b| b["type"] == "s3_payload") {
            let url = link["url"].as_str().unwrap_or_default();
            let fetched = http.get(url).send().await?.error_for_status()?;
            body = Some(fetched.json().await?);
            eprintln!(
                "  (fetched the claim-checked payload {})",
                link["payload_reference"]
            );
        }
        let kind = body
            .as_ref()
            .and_then(|b| b["type"].as_str().map(str::to_string))
            .or_else(|| header("type"))
            .unwrap_or_else(|| "?".into());
        println!(
            "{}[{}]@{} type={kind} user={user} trace_id={trace_id} ({} bytes, {content_type})",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            value.len()
        );
        // Handle `body` here (store it, deduplicating on trace_id), then commit.
        consumer.commit_message(&msg, CommitMode::Async)?;
    }
}
