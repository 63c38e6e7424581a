//! Every way a produce can fail, and what the engine should do about it.

use manifold_core::destination::Outcome;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

/// What the producer's client last reported about its connections (e.g. "Connection refused"),
/// used to explain a timed-out message.
#[derive(Debug, Clone)]
pub struct ClientError {
    pub code: Option<C>,
    pub reason: String,
}

/// Codes that no retry can fix; the reason says what to change.
fn permanent_fix(code: C, topic: &str, size: usize) -> Option<String> {
    Some(match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => format!(
            "the message ({size} bytes) is larger than the broker or topic `{topic}` accepts: set `claim_check` to an object-storage destination so large payloads go by reference, or lower `max_message_bytes` below the topic's `max.message.bytes`"
        ),
        C::TopicAuthorizationFailed => format!(
            "not authorized to write to topic `{topic}`: grant the client's principal WRITE (and DESCRIBE) on the topic"
        ),
        C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed => {
            "not authorized on the cluster: the idempotent producer needs IDEMPOTENT_WRITE on the cluster (Kafka < 3.0) or WRITE on the topic; grant it to the client's principal".to_string()
        }
        C::InvalidTopic => format!(
            "topic `{topic}` is not a valid topic name for this cluster: fix `topic`/`topic_template`"
        ),
        C::UnknownTopic => format!(
            "topic `{topic}` does not exist and the cluster does not create topics automatically: create it (e.g. `kafka-topics.sh --create --topic {topic}`) or enable `auto.create.topics.enable`, then replay"
        ),
        C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential => {
            "the broker refused the credentials: check `sasl_username`, `sasl_password` and `sasl_mechanism`".to_string()
        }
        C::SSL => {
            "TLS handshake failed: check `security_protocol` and `ssl_ca_location` (the CA that signed the broker's certificate)".to_string()
        }
        C::PolicyViolation | C::InvalidRecord | C::InvalidTimestamp => format!(
            "the broker's policy for topic `{topic}` rejects the record: check the topic's configuration (message.timestamp.*, schema validation)"
        ),
        C::InvalidRequiredAcks | C::UnsupportedForMessageFormat | C::UnsupportedVersion => {
            "the broker does not support the idempotent producer (acks=all, message format v2): use Kafka 0.11 or newer".to_string()
        }
        C::UnsupportedCompressionType | C::BadCompression => {
            "the broker does not accept the compression: change `producer.\"compression.type\"`".to_string()
        }
        C::InvalidArgument | C::InvalidConfig | C::BadMessage | C::InvalidType => {
            "librdkafka refused the message or configuration: check the `producer` options".to_string()
        }
        _ => return None,
    })
}

/// Classify one failed delivery report (or enqueue error).
pub fn classify(
    err: &KafkaError,
    topic: &str,
    size: usize,
    brokers: &str,
    last_client_error: Option<&ClientError>,
) -> Outcome {
    let code = err.rdkafka_error_code();
    if let Some(fix) = code.and_then(|c| permanent_fix(c, topic, size)) {
        return Outcome::permanent(format!("kafka: {err}: {fix}"));
    }
    // A message that timed out while the client could not authenticate will never go through.
    let auth_failure = last_client_error.and_then(|ce| {
        ce.code
            .filter(|c| {
                matches!(
                    c,
                    C::SaslAuthenticationFailed
                        | C::Authentication
                        | C::UnsupportedSASLMechanism
                        | C::SSL
                )
            })
            .and_then(|c| permanent_fix(c, topic, size))
            .map(|fix| (ce, fix))
    });
    if let Some((ce, fix)) = auth_failure {
        return Outcome::permanent(format!("kafka: {err} ({}): {fix}", ce.reason));
    }
    let mut reason = format!("kafka: {err} (topic `{topic}`)");
    if let Some(ce) = last_client_error {
        reason.push_str(&format!("; last client error: {}", ce.reason));
    }
    match code {
        Some(C::MessageTimedOut) => reason.push_str(&format!(
            "; no acknowledgement within message.timeout.ms: check that `brokers` ({brokers}) are reachable"
        )),
        Some(C::Fatal) => reason.push_str("; the producer will be recreated"),
        _ => {}
    }
    Outcome::retry(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod(c: C) -> KafkaError {
        KafkaError::MessageProduction(c)
    }

    #[test]
    fn size_auth_topic_errors_are_permanent_and_name_the_fix() {
        for (c, needle) in [
            (C::MessageSizeTooLarge, "claim_check"),
            (C::TopicAuthorizationFailed, "WRITE"),
            (C::InvalidTopic, "topic_template"),
            (C::UnknownTopic, "create it"),
            (C::SaslAuthenticationFailed, "sasl_password"),
            (C::SSL, "ssl_ca_location"),
        ] {
            match classify(&prod(c), "t", 10, "b:9092", None) {
                Outcome::Permanent { reason, .. } => {
                    assert!(reason.contains(needle), "{c:?}: {reason}")
                }
                other => panic!("{c:?} should be permanent, got {other:?}"),
            }
        }
    }

    #[test]
    fn transient_errors_retry_and_explain() {
        let ce = ClientError {
            code: Some(C::BrokerTransportFailure),
            reason: "Connect to ipv4#127.0.0.1:1 failed: Connection refused".into(),
        };
        for c in [
            C::MessageTimedOut,
            C::NotLeaderForPartition,
            C::NotEnoughReplicas,
            C::RequestTimedOut,
            C::AllBrokersDown,
            C::QueueFull,
            C::UnknownTopicOrPartition,
            C::ThrottlingQuotaExceeded,
        ] {
            match classify(&prod(c), "t", 10, "b:9092", Some(&ce)) {
                Outcome::Retry { reason, .. } => {
                    assert!(reason.contains("Connection refused"), "{reason}")
                }
                other => panic!("{c:?} should retry, got {other:?}"),
            }
        }
    }

    #[test]
    fn timeout_after_auth_failure_is_permanent() {
        let ce = ClientError {
            code: Some(C::Authentication),
            reason: "SASL authentication error: Authentication failed".into(),
        };
        assert!(matches!(
            classify(&prod(C::MessageTimedOut), "t", 10, "b:9092", Some(&ce)),
            Outcome::Permanent { .. }
        ));
    }
}
