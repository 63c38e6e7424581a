//! The producer: lazily created, one message per delivery, one outcome per delivery report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use manifold_core::blob::{BlobStores, claim_check};
use manifold_core::destination::{Delivery, Destination, Outcome, Response};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::classify::{ClientError, classify};
use crate::{MAX_BATCH, Settings, TopicRule};

/// How long `check()` waits for the cluster's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message may wait for room in librdkafka's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-record overhead counted against `max_message_bytes` (record header, lengths, timestamp).
const RECORD_OVERHEAD: usize = 64;

/// Keeps the client's last error so a timed-out message can say why, and routes librdkafka's
/// log to `tracing`.
#[derive(Default, Clone)]
pub struct Context {
    last_error: Arc<Mutex<Option<(ClientError, Instant)>>>,
}

impl Context {
    fn last_error(&self, within: Duration) -> Option<ClientError> {
        let guard = self.last_error.lock().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() <= within)
            .map(|(e, _)| e.clone())
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac}: {msg}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac}: {msg}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
        let code = error.rdkafka_error_code();
        if let Ok(mut g) = self.last_error.lock() {
            // "n/n brokers are down" follows the error that says why (e.g. connection refused):
            // keep both.
            let new = match g.take() {
                Some((prev, at))
                    if code == Some(RDKafkaErrorCode::AllBrokersDown)
                        && prev.code != Some(RDKafkaErrorCode::AllBrokersDown) =>
                {
                    let reason = if prev.reason.contains(reason) {
                        prev.reason.clone()
                    } else {
                        format!("{}; {reason}", prev.reason)
                    };
                    (
                        ClientError {
                            code: prev.code,
                            reason,
                        },
                        at.max(Instant::now()),
                    )
                }
                _ => (
                    ClientError {
                        code,
                        reason: reason.to_string(),
                    },
                    Instant::now(),
                ),
            };
            *g = Some(new);
        }
    }
}

type Kafka = FutureProducer<Context>;

/// A `type = "kafka"` destination.
pub struct KafkaDestination {
    name: String,
    settings: Settings,
    blob_stores: BlobStores,
    producer: Mutex<Option<(Arc<Kafka>, Context)>>,
}

/// One message ready to produce.
struct Message {
    topic: String,
    key: Option<String>,
    value: Vec<u8>,
    content_type: String,
}

impl KafkaDestination {
    /// No I/O: the producer is created on first use.
    pub fn new(name: &str, settings: Settings, blob_stores: BlobStores) -> Self {
        Self {
            name: name.to_string(),
            settings,
            blob_stores,
            producer: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn producer(&self) -> Result<(Arc<Kafka>, Context), Outcome> {
        let mut slot = self
            .producer
            .lock()
            .map_err(|_| Outcome::internal("kafka producer lock poisoned"))?;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let mut cfg = self.settings.client_config();
        cfg.set("client.id", format!("manifold-{}", self.name));
        let ctx = Context::default();
        let p: Kafka = cfg.create_with_context(ctx.clone()).map_err(|e| {
            Outcome::permanent(format!(
                "kafka: cannot create the producer: {e}; fix the destination's `producer` options"
            ))
        })?;
        let p = Arc::new(p);
        *slot = Some((p.clone(), ctx.clone()));
        Ok((p, ctx))
    }

    /// Drop a producer that hit a fatal error (e.g. the idempotence state was lost), or whose
    /// messages timed out, so the next attempt starts with a fresh producer (new connections,
    /// metadata and producer id). A producer that lived through a broker losing its state can
    /// otherwise wait forever on sequence numbers the broker no longer knows (seen with tansu;
    /// see README). Every report of this batch is in, so nothing is lost by dropping it.
    fn reset_if_broken(&self, p: &Arc<Kafka>, stale: bool) {
        let fatal = p.client().fatal_error();
        if fatal.is_none() && !stale {
            return;
        }
        if let Some((code, reason)) = &fatal {
            tracing::warn!(destination = %self.name, ?code, %reason, "kafka producer hit a fatal error; recreating it");
        } else {
            tracing::info!(destination = %self.name, "kafka messages timed out or the broker refused the producer id; the next attempt uses a fresh producer");
        }
        if let Ok(mut slot) = self.producer.lock() {
            // Only if no other batch replaced it meanwhile.
            if slot.as_ref().is_some_and(|(cur, _)| Arc::ptr_eq(cur, p)) {
                *slot = None;
            }
        }
    }

    fn headers(&self, d: &Delivery, m: &Message) -> OwnedHeaders {
        let mut h = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "type",
                value: Some(d.event_type.as_str()),
            })
            .insert(Header {
                key: "trace_id",
                value: Some(d.trace_id()),
            })
            .insert(Header {
                key: "delivery_id",
                value: Some(d.id.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some(m.content_type.as_str()),
            });
        if let Some(r) = &d.terra_reference {
            h = h.insert(Header {
                key: "terra-reference",
                value: Some(r.as_str()),
            });
        }
        h
    }

    fn estimated_size(d: &Delivery, value_len: usize, content_type: &str) -> usize {
        value_len
            + d.user_id.as_deref().map_or(0, str::len)
            + "type".len()
            + d.event_type.len()
            + "trace_id".len()
            + d.trace_id().len()
            + "delivery_id".len()
            + d.id.len()
            + "content-type".len()
            + content_type.len()
            + d.terra_reference
                .as_deref()
                .map_or(0, |r| r.len() + "terra-reference".len())
            + RECORD_OVERHEAD
    }

    /// The message for one delivery: the body inline, or a claim check when it is too large.
    async fn prepare(&self, d: &Delivery) -> Result<Message, Outcome> {
        let topic = self.settings.topic.topic_for(&d.event_type);
        if !crate::valid_topic(&topic) {
            return Err(Outcome::permanent(format!(
                "kafka: event type `{}` makes the invalid topic name `{topic}`: change `topic_template`",
                d.event_type
            )));
        }
        let limit = self.settings.max_message_bytes as usize;
        let size = Self::estimated_size(d, d.body.len(), d.content_type);
        if size <= limit {
            return Ok(Message {
                topic,
                key: d.user_id.clone(),
                value: d.body.to_vec(),
                content_type: d.content_type.to_string(),
            });
        }
        let Some(store_name) = &self.settings.claim_check else {
            return Err(Outcome::permanent(format!(
                "kafka: the payload is {size} bytes with key and headers, over max_message_bytes ({limit}): set `claim_check` to an object-storage destination (s3, gcs, azure-blob) so it is sent as an s3_payload link, or raise `max_message_bytes` (and the topic's max.message.bytes)"
            )));
        };
        let Some(store) = self.blob_stores.get(store_name) else {
            return Err(Outcome::internal(format!(
                "kafka: claim_check destination `{store_name}` is not registered as an object store"
            )));
        };
        let msg = claim_check(
            store.as_ref(),
            &self.settings.claim_check_prefix,
            d,
            self.settings.presign_expiry,
        )
        .await?;
        let value = serde_json::to_vec(&msg)
            .map_err(|e| Outcome::internal(format!("kafka: cannot encode the claim check: {e}")))?;
        let size = Self::estimated_size(d, value.len(), "application/json");
        if size > limit {
            return Err(Outcome::permanent(format!(
                "kafka: even the claim-check message is {size} bytes, over max_message_bytes ({limit}): raise `max_message_bytes`"
            )));
        }
        Ok(Message {
            topic,
            key: d.user_id.clone(),
            value,
            content_type: "application/json".to_string(),
        })
    }

    /// Produce one message and wait for its report; the error code when it failed.
    async fn produce(
        &self,
        p: &Kafka,
        ctx: &Context,
        d: &Delivery,
        m: &Message,
    ) -> (Outcome, Option<RDKafkaErrorCode>) {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&m.topic)
            .payload(m.value.as_slice())
            .headers(self.headers(d, m));
        if let Some(k) = &m.key {
            record = record.key(k.as_str());
        }
        match p.send(record, Timeout::After(QUEUE_TIMEOUT)).await {
            Ok(done) => (
                Outcome::Delivered {
                    response: Response::default()
                        .with_body(format!("{}[{}]@{}", m.topic, done.partition, done.offset)),
                },
                None,
            ),
            Err((e, _)) => {
                let last = ctx.last_error(self.settings.message_timeout + Duration::from_secs(5));
                let outcome = classify(
                    &e,
                    &m.topic,
                    m.value.len(),
                    &self.settings.brokers.join(","),
                    last.as_ref(),
                );
                (outcome, e.rdkafka_error_code())
            }
        }
    }
}

#[async_trait]
impl Destination for KafkaDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        let (producer, ctx) = match self.producer() {
            Ok(p) => p,
            Err(o) => return vec![o; batch.len()],
        };
        // Claim checks (if any) first, then every message is enqueued before any report is
        // awaited, so a batch costs one round trip, not one per item.
        let prepared = join_all(batch.iter().map(|d| self.prepare(d))).await;
        let results = join_all(batch.iter().zip(&prepared).map(|(d, m)| {
            let producer = &producer;
            let ctx = &ctx;
            async move {
                match m {
                    Ok(m) => self.produce(producer, ctx, d, m).await,
                    Err(o) => (o.clone(), None),
                }
            }
        }))
        .await;
        // A timeout, or a broker that no longer accepts this producer's id/epoch/sequence
        // (after a broker restart that lost the producer state: seen as ProducerFenced from
        // tansu), needs a fresh producer; retrying on this one would fail forever.
        let stale = results.iter().any(|(_, code)| {
            matches!(
                code,
                Some(
                    RDKafkaErrorCode::MessageTimedOut
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                        | RDKafkaErrorCode::UnknownProducerId
                        | RDKafkaErrorCode::OutOfOrderSequenceNumber
                        | RDKafkaErrorCode::InvalidProducerIdMapping
                        | RDKafkaErrorCode::Fatal
                )
            )
        });
        self.reset_if_broken(&producer, stale);
        results.into_iter().map(|(o, _)| o).collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Key = user id: one user's events share a partition, and the engine sends them one
    /// batch at a time so the partition holds them in commit order.
    fn ordered_by_user(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<(), String> {
        let (producer, ctx) = self.producer().map_err(|o| {
            o.reason()
                .unwrap_or("cannot create the producer")
                .to_string()
        })?;
        let topic = match &self.settings.topic {
            TopicRule::Fixed(t) => Some(t.clone()),
            TopicRule::Template(_) => None,
        };
        let brokers = self.settings.brokers.join(",");
        let p = producer.clone();
        let t = topic.clone();
        let md = tokio::task::spawn_blocking(move || {
            p.client().fetch_metadata(t.as_deref(), METADATA_TIMEOUT)
        })
        .await
        .map_err(|e| format!("metadata request panicked: {e}"))?;
        let last = || {
            ctx.last_error(METADATA_TIMEOUT * 2)
                .map(|e| format!(" (last client error: {})", e.reason))
                .unwrap_or_default()
        };
        let md = md.map_err(|e| {
            format!(
                "cannot fetch cluster metadata from {brokers} within {METADATA_TIMEOUT:?}: {e}{}; check `brokers`, `security_protocol` and the credentials",
                last()
            )
        })?;
        if md.brokers().is_empty() {
            return Err(format!(
                "the cluster at {brokers} reported no brokers{}",
                last()
            ));
        }
        if let Some(t) = topic {
            let Some(mt) = md.topics().iter().find(|mt| mt.name() == t) else {
                return Err(format!("the cluster did not describe topic `{t}`"));
            };
            if let Some(err) = mt.error() {
                let code: RDKafkaErrorCode = err.into();
                return Err(match code {
                    RDKafkaErrorCode::UnknownTopicOrPartition => format!(
                        "topic `{t}` does not exist: create it, or enable auto.create.topics.enable on the cluster"
                    ),
                    RDKafkaErrorCode::TopicAuthorizationFailed => format!(
                        "not authorized for topic `{t}`: grant the client's principal WRITE and DESCRIBE on it"
                    ),
                    other => format!("topic `{t}`: {other}"),
                });
            }
        }
        Ok(())
    }
}
