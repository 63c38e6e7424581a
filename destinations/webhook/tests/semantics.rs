//! How answers from a real receiver are classified, what is sent, and the address guard.

mod common;

use std::time::Duration;

use common::{Receiver, Reply, build, dead_port};
use manifold_core::destination::{Destination, Outcome};
use manifold_core::testkit::sample_delivery;

fn dest_for(rx: &Receiver, extra: &str) -> std::sync::Arc<dyn Destination> {
    build(&format!(
        "url = \"{}\"\nsigning_secret = \"s3cret\"\nallow_private_network = true\n{extra}",
        rx.url("/hook")
    ))
}

async fn one(dest: &dyn Destination) -> Outcome {
    let d = sample_delivery("sleep", "user-1", 1);
    dest.deliver(std::slice::from_ref(&d)).await.remove(0)
}

#[tokio::test]
async fn server_error_is_retry_with_status_and_body() {
    let rx = Receiver::start().await;
    rx.answer(|_| Reply::status(500).body("database down"));
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Retry {
            after,
            reason,
            response,
        } => {
            assert_eq!(after, None);
            assert!(
                reason.contains("500") && reason.contains("database down"),
                "{reason}"
            );
            assert_eq!(response.status, Some(500));
            assert_eq!(response.body.as_deref(), Some("database down"));
        }
        o => panic!("expected Retry, got {o:?}"),
    }
}

#[tokio::test]
async fn throttling_statuses_are_retry() {
    let rx = Receiver::start().await;
    for code in [408u16, 425, 502, 503] {
        rx.answer(move |_| Reply::status(code));
        let o = one(dest_for(&rx, "").as_ref()).await;
        assert_eq!(o.class(), "retryable", "{code}: {o:?}");
    }
}

#[tokio::test]
async fn too_many_requests_honours_retry_after_seconds() {
    let rx = Receiver::start().await;
    rx.answer(|_| Reply::status(429).header("retry-after", "7"));
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Retry {
            after, response, ..
        } => {
            assert_eq!(after, Some(Duration::from_secs(7)));
            assert_eq!(response.status, Some(429));
        }
        o => panic!("expected Retry, got {o:?}"),
    }
}

#[tokio::test]
async fn retry_after_as_http_date() {
    let rx = Receiver::start().await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(120);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    rx.answer(move |_| Reply::status(503).header("retry-after", &date));
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Retry {
            after: Some(after), ..
        } => {
            assert!(
                after >= Duration::from_secs(100) && after <= Duration::from_secs(121),
                "{after:?}"
            );
        }
        o => panic!("expected Retry with a hint, got {o:?}"),
    }
}

#[tokio::test]
async fn gone_is_gone() {
    let rx = Receiver::start().await;
    rx.answer(|_| Reply::status(410).body("endpoint removed"));
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Gone { reason, response } => {
            assert!(reason.contains("410"), "{reason}");
            assert_eq!(response.status, Some(410));
        }
        o => panic!("expected Gone, got {o:?}"),
    }
}

#[tokio::test]
async fn client_error_is_permanent_with_truncated_body() {
    let rx = Receiver::start().await;
    let long = format!(
        "{{\"error\":\"invalid payload\",\"detail\":\"{}\"}}",
        "y".repeat(5000)
    );
    rx.answer(move |_| Reply::status(400).body(&long));
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Permanent { reason, response } => {
            assert!(
                reason.starts_with("HTTP 400 Bad Request: {\"error\":\"invalid payload\""),
                "{reason}"
            );
            assert!(
                reason.len() < 300,
                "reason not truncated: {} bytes",
                reason.len()
            );
            assert_eq!(response.status, Some(400));
            assert!(response.body.unwrap().len() <= 1024);
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
}

#[tokio::test]
async fn redirect_is_permanent_and_not_followed() {
    let rx = Receiver::start().await;
    let target = rx.url("/elsewhere");
    rx.answer(move |r| {
        if r.path == "/hook" {
            Reply::status(302).header("location", &target)
        } else {
            Reply::status(200)
        }
    });
    match one(dest_for(&rx, "").as_ref()).await {
        Outcome::Permanent { reason, response } => {
            assert!(
                reason.contains("redirects are not followed; point url at the final address"),
                "{reason}"
            );
            assert_eq!(response.status, Some(302));
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    let paths: Vec<String> = rx.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/hook"], "the redirect must not be followed");
}

#[tokio::test]
async fn timeout_is_retry() {
    let rx = Receiver::start().await;
    rx.answer(|_| Reply::status(200).delay(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    match one(dest_for(&rx, "request_timeout = \"300ms\"").as_ref()).await {
        Outcome::Retry {
            reason, response, ..
        } => {
            assert!(reason.contains("no response within"), "{reason}");
            assert_eq!(response.status, None);
        }
        o => panic!("expected Retry, got {o:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout not applied: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connection_refused_is_retry_and_check_fails() {
    let port = dead_port().await;
    let dest = build(&format!(
        "url = \"http://127.0.0.1:{port}/hook\"\nsigning_secret = \"s\"\nallow_private_network = true"
    ));
    match one(dest.as_ref()).await {
        Outcome::Retry { reason, .. } => assert!(reason.contains("cannot connect"), "{reason}"),
        o => panic!("expected Retry, got {o:?}"),
    }
    assert!(dest.check().await.is_err());
}

#[tokio::test]
async fn private_addresses_are_refused_without_sending() {
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let dest = build(&format!(
            "url = \"http://{host}:{port}/hook\"\nsigning_secret = \"s\""
        ));
        match one(dest.as_ref()).await {
            Outcome::Permanent { reason, response } => {
                assert!(reason.contains("loopback"), "{host}: {reason}");
                assert!(
                    reason.contains("allow_private_network = true"),
                    "{host}: {reason}"
                );
                assert_eq!(response.status, None);
            }
            o => panic!("{host}: expected Permanent, got {o:?}"),
        }
        let err = dest.check().await.unwrap_err();
        assert!(err.contains("allow_private_network"), "{host}: {err}");
    }
    assert!(rx.received().is_empty(), "a request reached the receiver");
    // And explicitly allowed, the same address works.
    let ok = build(&format!(
        "url = \"http://localhost:{port}/hook\"\nsigning_secret = \"s\"\nallow_private_network = true"
    ));
    assert!(ok.check().await.is_ok());
    assert_eq!(one(ok.as_ref()).await.class(), "delivered");
}

#[tokio::test]
async fn headers_and_stable_trace_id_across_attempts() {
    let rx = Receiver::start().await;
    let dest = dest_for(
        &rx,
        "signature = \"both\"\nheaders = { Authorization = \"Bearer t0ken\" }",
    );
    let mut d = sample_delivery("daily", "user-7", 3);
    d.terra_reference = Some("ref-abc".into());
    for attempt in 1..=2 {
        d.attempt = attempt;
        let out = dest.deliver(std::slice::from_ref(&d)).await;
        assert_eq!(out[0].class(), "delivered", "{out:?}");
        if attempt == 1 {
            tokio::time::sleep(Duration::from_millis(1100)).await; // a new signing timestamp
        }
    }
    let got = rx.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.body, d.body, "the body must be sent byte for byte");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(r.header("x-terra-trace-id").as_deref(), Some(d.trace_id()));
        assert_eq!(r.header("terra-reference").as_deref(), Some("ref-abc"));
        assert_eq!(r.header("webhook-id").as_deref(), Some(d.id.as_str()));
        assert_eq!(
            r.header("x-terra-ordering-timestamp"),
            Some(d.created_at.timestamp_millis().to_string())
        );
        assert_eq!(
            r.header("user-agent"),
            Some(format!("manifold/{}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(r.header("authorization").as_deref(), Some("Bearer t0ken"));
        let sig = r.header("terra-signature").unwrap();
        assert!(sig.starts_with("t=") && sig.contains(",v1="), "{sig}");
        assert_eq!(
            r.header("webhook-timestamp").unwrap(),
            sig[2..sig.find(',').unwrap()]
        );
        assert!(r.header("webhook-signature").unwrap().starts_with("v1,"));
    }
    assert_ne!(
        got[0].header("terra-signature"),
        got[1].header("terra-signature"),
        "each attempt is signed afresh"
    );
}

#[tokio::test]
async fn no_terra_reference_header_without_one_and_standard_only_mode() {
    let rx = Receiver::start().await;
    let dest = dest_for(&rx, "signature = \"standard\"");
    assert_eq!(one(dest.as_ref()).await.class(), "delivered");
    let r = &rx.received()[0];
    assert!(r.header("terra-reference").is_none());
    assert!(r.header("terra-signature").is_none());
    assert!(r.header("webhook-signature").is_some());
}

#[tokio::test]
async fn batch_outcomes_are_in_order() {
    let rx = Receiver::start().await;
    // Status chosen from the body, so arrival order does not matter.
    rx.answer(|r| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        match v["type"].as_str().unwrap() {
            "sleep" => Reply::status(200),
            "daily" => Reply::status(503),
            "activity" => Reply::status(410),
            _ => Reply::status(422),
        }
    });
    let batch: Vec<_> = ["sleep", "daily", "activity", "body", "sleep"]
        .iter()
        .enumerate()
        .map(|(i, t)| sample_delivery(t, "user-b", i as u32))
        .collect();
    let classes: Vec<_> = dest_for(&rx, "")
        .deliver(&batch)
        .await
        .iter()
        .map(|o| o.class())
        .collect();
    assert_eq!(
        classes,
        ["delivered", "retryable", "gone", "permanent", "delivered"]
    );
}
