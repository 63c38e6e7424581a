//! `POST /v2/events` refuses bad input with the right status and a problem+json that says what
//! to fix, and stores nothing; good input is 202 only after the commit.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn publish_statuses() {
    let receiver = Receiver::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sqlite_url(dir.path()),
        port,
        &receiver.url,
        "data_types = [\"sleep\"]",
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[store]", "max_body = \"4KiB\"\n\n[store]"),
    )
    .unwrap();
    let _child = spawn_serve(&config, port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v2/events");
    let post = |body: Vec<u8>, key: Option<&'static str>| {
        let mut r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    let problem = |r: reqwest::Response| async move {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v["detail"].as_str().unwrap_or("").to_string())
    };

    let (s, d) = problem(post(b"{}".to_vec(), None).await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(d.contains("x-api-key"), "{d}");
    let (s, _) = problem(post(b"{}".to_vec(), Some("wrong")).await.unwrap()).await;
    assert_eq!(s, 401);
    let (s, d) = problem(
        post(
            b"{\"type\": \"sleep\",\n \"user\": }".to_vec(),
            Some("test-key"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(d.contains("line 2, column"), "{d}");
    let (s, d) = problem(
        post(
            json!({"type":"snack","data":[]}).to_string().into_bytes(),
            Some("test-key"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert!(d.contains("`snack` is not a Terra event type"), "{d}");
    let (s, d) = problem(
        post(
            json!({"type":"sleep"}).to_string().into_bytes(),
            Some("test-key"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(d.contains("data"), "{d}");
    let big =
        json!({"type":"sleep","user":{"user_id":"u"},"data":[{"x":"y".repeat(5000)}]}).to_string();
    let (s, d) = problem(post(big.into_bytes(), Some("test-key")).await.unwrap()).await;
    assert_eq!(s, 413);
    assert!(d.contains("server.max_body"), "{d}");

    // nothing was stored by any refused request
    let list: Value = client
        .get(format!("http://127.0.0.1:{port}/admin/deliveries"))
        .header("x-api-key", "test-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 0);

    // accepted: 202 with the id; the routing respects data_types
    let r = post(
        sleep_event("ok-1").to_string().into_bytes(),
        Some("test-key"),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 1);
    assert!(v["id"].as_str().unwrap().len() > 10);
    let daily = json!({"type":"daily","user":{"user_id":"u"},"data":[{"metadata":{"start_time":"2026-07-01T00:00:00.000000+00:00"}}]});
    let v: Value = post(daily.to_string().into_bytes(), Some("test-key"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["deliveries"], 0, "daily is not in data_types");
    // the same event again is recognised as a duplicate
    let v: Value = post(
        sleep_event("ok-1").to_string().into_bytes(),
        Some("test-key"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["duplicate"], true);
    assert!(
        receiver
            .wait_for_delivered(1, std::time::Duration::from_secs(10))
            .await
    );

    // health and readiness need no key
    assert!(
        client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let m = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("manifold_payloads_accepted_total"), "{m}");
}
