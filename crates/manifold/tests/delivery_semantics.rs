//! Retry schedule, Retry-After, 410, dead letters and replay, each observed in the real HTTP
//! traffic between `manifold serve` and a receiver.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn admin(client: &reqwest::Client, port: u16, method: &str, path: &str) -> Value {
    let url = format!("http://127.0.0.1:{port}{path}");
    let req = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    let r = req.header("x-api-key", "test-key").send().await.unwrap();
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn start(
    receiver: &Receiver,
    extra: &str,
) -> (tempfile::TempDir, u16, tokio::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sqlite_url(dir.path()),
        port,
        &receiver.url,
        extra,
    );
    let child = spawn_serve(&config, port).await;
    (dir, port, child)
}

#[tokio::test]
async fn retries_follow_the_exponential_schedule() {
    let receiver = Receiver::start(Behaviour::Script(vec![
        (500, None),
        (503, None),
        (500, None),
    ]))
    .await;
    let (_dir, port, _child) = start(
        &receiver,
        "retry = { max_attempts = 10, initial_backoff = \"300ms\", max_backoff = \"5s\", jitter = false }",
    )
    .await;
    let client = reqwest::Client::new();
    publish_until_accepted(&client, &[port], &sleep_event("sched")).await;
    assert!(
        receiver
            .wait_for_delivered(1, Duration::from_secs(20))
            .await
    );
    let log = receiver.log();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 503, 500, 200]
    );
    let gaps: Vec<u128> = log
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect();
    // 300 ms, 600 ms, 1200 ms (+ poll and scheduling slack)
    for (gap, expected) in gaps.iter().zip([300u128, 600, 1200]) {
        assert!(
            *gap >= expected - 20,
            "gap {gap} ms shorter than the schedule's {expected} ms ({gaps:?})"
        );
        assert!(
            *gap < expected + 900,
            "gap {gap} ms far longer than {expected} ms ({gaps:?})"
        );
    }
    assert!(
        log.iter().all(|r| r.trace_id == log[0].trace_id),
        "trace id changed between attempts"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(Behaviour::Script(vec![(429, Some("2"))])).await;
    let (_dir, port, _child) = start(
        &receiver,
        "retry = { initial_backoff = \"100ms\", max_backoff = \"10s\", jitter = false }",
    )
    .await;
    let client = reqwest::Client::new();
    publish_until_accepted(&client, &[port], &sleep_event("ra")).await;
    assert!(
        receiver
            .wait_for_delivered(1, Duration::from_secs(20))
            .await
    );
    let log = receiver.log();
    assert_eq!(log.len(), 2);
    let gap = log[1].at - log[0].at;
    assert!(
        gap >= Duration::from_millis(1980),
        "retried after {gap:?}, before Retry-After: 2"
    );
    assert!(gap < Duration::from_millis(3500), "retried after {gap:?}");
}

#[tokio::test]
async fn permanent_errors_dead_letter_and_replay_delivers() {
    let receiver = Receiver::start(Behaviour::Always(400)).await;
    let (_dir, port, _child) = start(&receiver, "").await;
    let client = reqwest::Client::new();
    publish_until_accepted(&client, &[port], &sleep_event("dl")).await;

    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = admin(
            &client,
            port,
            "GET",
            "/admin/deliveries?status=dead&destination=app",
        )
        .await;
        if dead["deliveries"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = &dead["deliveries"][0];
    assert!(
        row["dead_reason"].as_str().unwrap().contains("400"),
        "reason: {row}"
    );
    assert_eq!(
        receiver.log().len(),
        1,
        "a permanent error must not be retried"
    );

    receiver.set(Behaviour::Ok);
    let id = row["id"].as_str().unwrap();
    let r = admin(
        &client,
        port,
        "POST",
        &format!("/admin/deliveries/{id}/replay"),
    )
    .await;
    assert_eq!(r["status"], "replaying");
    assert!(
        receiver
            .wait_for_delivered(1, Duration::from_secs(10))
            .await
    );
    let log = receiver.log();
    assert_eq!(
        log[0].trace_id, log[1].trace_id,
        "replay must keep the trace id"
    );
    let attempts = admin(
        &client,
        port,
        "GET",
        &format!("/admin/deliveries/{id}/attempts"),
    )
    .await;
    let classes: Vec<&str> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, vec!["permanent", "delivered"]);

    // bulk replay by destination
    receiver.set(Behaviour::Always(422));
    publish_until_accepted(&client, &[port], &sleep_event("dl-2")).await;
    publish_until_accepted(&client, &[port], &sleep_event("dl-3")).await;
    for _ in 0..100 {
        let d = admin(&client, port, "GET", "/admin/deliveries?status=dead").await;
        if d["deliveries"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.set(Behaviour::Ok);
    let r = admin(
        &client,
        port,
        "POST",
        "/admin/destinations/app/replay?status=dead&since=1h",
    )
    .await;
    assert_eq!(r["replayed"], 2);
    assert!(
        receiver
            .wait_for_delivered(3, Duration::from_secs(10))
            .await
    );
}

#[tokio::test]
async fn gone_disables_the_destination_until_enabled() {
    let receiver = Receiver::start(Behaviour::Always(410)).await;
    let (_dir, port, _child) = start(&receiver, "").await;
    let client = reqwest::Client::new();
    publish_until_accepted(&client, &[port], &sleep_event("g1")).await;
    let mut state = Value::Null;
    for _ in 0..100 {
        state = admin(&client, port, "GET", "/admin/destinations").await;
        if state["destinations"][0]["disabled"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state["destinations"][0]["disabled"], true, "{state}");
    assert!(
        state["destinations"][0]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    // while disabled nothing is sent
    publish_until_accepted(&client, &[port], &sleep_event("g2")).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.log().len(), 1, "a disabled destination was called");
    let metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("manifold_destination_disabled{destination=\"app\"} 1"),
        "{metrics}"
    );

    receiver.set(Behaviour::Ok);
    admin(&client, port, "POST", "/admin/destinations/app/enable").await;
    assert!(
        receiver
            .wait_for_delivered(2, Duration::from_secs(10))
            .await,
        "{:?}",
        receiver.log().len()
    );
}

#[tokio::test]
async fn fhir_format_delivers_a_bundle() {
    let receiver = Receiver::start(Behaviour::Ok).await;
    let (_dir, port, _child) = start(&receiver, "format = \"fhir\"").await;
    let client = reqwest::Client::new();
    let mut event = sleep_event("fhir-1");
    event["data"][0]["heart_rate_data"] = serde_json::json!({"summary": {"avg_hr_bpm": 55.0}});
    publish_until_accepted(&client, &[port], &event).await;
    assert!(
        receiver
            .wait_for_delivered(1, Duration::from_secs(10))
            .await
    );
    let body: Value = serde_json::from_slice(&receiver.log()[0].body).unwrap();
    assert_eq!(body["resourceType"], "Bundle", "{body}");
    assert_eq!(body["type"], "collection");
    let codes: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["resource"]["code"]["coding"].as_array().unwrap().iter())
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"8867-4"),
        "no heart-rate observation: {codes:?}"
    );
}
