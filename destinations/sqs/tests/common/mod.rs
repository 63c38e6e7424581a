//! The local SQS + S3 server (moto, MANIFOLD_TEST_AWS_ENDPOINT), a fresh queue per test, and a
//! reader that drains the queue into memory so tests can match messages by trace id. A missing
//! variable or an unreachable server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use manifold_core::destination::{BuildContext, Destination, DestinationFactory};
use manifold_sqs::SqsFactory;

pub fn endpoint() -> String {
    std::env::var("MANIFOLD_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "MANIFOLD_TEST_AWS_ENDPOINT is not set: these tests need the local SQS/S3 server (moto). \
             Start it with `scripts/services --env` and export the variables it prints \
             (e.g. `eval \"$(scripts/services --env)\"`)"
        )
    })
}

pub fn admin(endpoint: &str) -> Client {
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(conf)
}

pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub attributes: HashMap<String, String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// A fresh queue on the local server; received messages are kept in memory.
pub struct Queue {
    pub endpoint: String,
    pub url: String,
    pub client: Client,
    pub seen: Mutex<Vec<Received>>,
}

impl Queue {
    pub async fn new(fifo: bool, attrs: &[(QueueAttributeName, &str)]) -> Queue {
        let endpoint = endpoint();
        let client = admin(&endpoint);
        let mut name = format!("manifold-test-{}", uuid::Uuid::new_v4().simple());
        let mut req = client.create_queue();
        if fifo {
            name.push_str(".fifo");
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
        }
        for (k, v) in attrs {
            req = req.attributes(k.clone(), *v);
        }
        let out = req.queue_name(&name).send().await.unwrap_or_else(|e| {
            panic!(
                "the local SQS server (moto) at {endpoint} is not usable: {}\n\
                 start it with `scripts/services` (it runs moto_server on 127.0.0.1:4566)",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        });
        Queue {
            url: out.queue_url().unwrap().to_string(),
            endpoint,
            client,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Receive (and delete) everything currently in the queue.
    pub async fn drain(&self) {
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage on the local server");
            let msgs = out.messages();
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                let attributes = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.string_value().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let sys = m.attributes();
                let get = |n: MessageSystemAttributeName| sys.and_then(|s| s.get(&n)).cloned();
                self.seen.lock().unwrap().push(Received {
                    body: m.body().unwrap_or("").to_string(),
                    attributes,
                    group_id: get(MessageSystemAttributeName::MessageGroupId),
                    dedup_id: get(MessageSystemAttributeName::MessageDeduplicationId),
                });
                self.client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Every message received so far (after a drain) carrying this trace id attribute.
    pub async fn for_trace(&self, trace: &str) -> Vec<Received> {
        self.drain().await;
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.attributes.get("trace_id").map(String::as_str) == Some(trace))
            .cloned()
            .collect()
    }

    pub fn toml(&self, extra: &str) -> String {
        format!(
            "queue_url = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n{extra}",
            self.url, self.endpoint
        )
    }
}

pub fn build_sqs(settings: &str, ctx: &BuildContext, name: &str) -> Arc<dyn Destination> {
    let table: toml::Table = toml::from_str(settings).unwrap();
    SqsFactory
        .build(name, table, ctx)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

/// A fresh bucket and an `s3` destination on it registered in `ctx` under `name`.
pub async fn s3_store(ctx: &BuildContext, name: &str, prefix: &str) -> String {
    let endpoint = endpoint();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let bucket = format!("manifold-cc-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let toml = format!(
        "bucket = \"{bucket}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nprefix = \"{prefix}\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n"
    );
    let table: toml::Table = toml::from_str(&toml).unwrap();
    manifold_s3::S3Factory.build(name, table, ctx).unwrap();
    bucket
}
