//! A minimal consumer for a Manifold `sqs` destination: long-polls the queue, prints each
//! payload, follows `s3_payload` claim-check links, and deletes each message once handled.
//!
//! ```sh
//! QUEUE_URL=https://sqs.eu-west-2.amazonaws.com/123456789012/health-events \
//! AWS_REGION=eu-west-2 cargo run -p manifold-sqs --example sqs-consumer
//! # against the local server: add AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
//! ```
//!
//! Credentials and region come from the AWS default chain (env, profile, instance role);
//! `AWS_ENDPOINT_URL` points it at another server. Copy this file and replace `handle`.

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use serde_json::Value;

/// Do something with one Terra payload (here: print it). Return an error to leave the message
/// on the queue; SQS redelivers it after the visibility timeout.
fn handle(event_type: &str, trace_id: &str, payload: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let user = v["user"]["user_id"].as_str().unwrap_or("-");
    println!(
        "{event_type} for user {user} (trace {trace_id}, {} bytes): {}",
        payload.len(),
        serde_json::to_string(&v).unwrap_or_default()
    );
    Ok(())
}

/// The payload a message stands for: its body, or the object an `s3_payload` link points to.
async fn payload(http: &reqwest::Client, body: &str) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if v["type"] != "s3_payload" {
        return Ok(body.as_bytes().to_vec());
    }
    let url = v["url"].as_str().ok_or("s3_payload without url")?;
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        // An expired link (see `expires_in`) answers 403: ask the sender to raise presign_expiry.
        return Err(format!("GET claim-check link: HTTP {}", resp.status()));
    }
    Ok(resp.bytes().await.map_err(|e| e.to_string())?.to_vec())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue_url = std::env::var("QUEUE_URL").map_err(|_| "set QUEUE_URL to the queue's URL")?;
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let sqs = Client::new(&config);
    let http = reqwest::Client::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .message_attribute_names("All")
            .send()
            .await?;
        for m in out.messages() {
            let attr = |k: &str| {
                m.message_attributes()
                    .and_then(|a| a.get(k))
                    .and_then(|v| v.string_value())
                    .unwrap_or("-")
                    .to_string()
            };
            let (event_type, trace_id) = (attr("type"), attr("trace_id"));
            if event_type == "healthcheck" {
                // Sent by `manifold check --connect`: nothing to do.
            } else {
                let handled = match payload(&http, m.body().unwrap_or("")).await {
                    Ok(bytes) => handle(&event_type, &trace_id, &bytes),
                    Err(e) => Err(e),
                };
                if let Err(e) = handled {
                    eprintln!("trace {trace_id}: {e}; leaving it on the queue");
                    continue;
                }
            }
            if let Some(rh) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(rh)
                    .send()
                    .await?;
            }
        }
    }
}
