//! Rate limits, error injection and the control API.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn injected_429_has_retry_after() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let tok = token(&sim, 0, "").await;
    let url = sim.url("/v2/usercollection/daily_sleep");
    let r = c
        .post(sim.url("/_sim/faults"))
        .json(&json!({"rate_limit_next": 2, "retry_after_secs": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        for h in [
            "x-ratelimit-limit",
            "x-ratelimit-window",
            "x-ratelimit-reset",
            "x-ratelimit-tier",
        ] {
            assert!(r.headers().contains_key(h), "{h}");
        }
    }
    assert_eq!(
        c.get(&url).bearer_auth(&tok).send().await.unwrap().status(),
        200
    );

    // Share-based 5xx and 429.
    c.post(sim.url("/_sim/faults"))
        .json(&json!({"server_error_share": 1.0}))
        .send()
        .await
        .unwrap();
    let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert!(r.status().is_server_error());
    c.post(sim.url("/_sim/faults"))
        .json(&json!({"clear": true, "rate_limit_share": 1.0}))
        .send()
        .await
        .unwrap();
    let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    c.post(sim.url("/_sim/faults"))
        .json(&json!({"clear": true, "latency_ms": 150}))
        .send()
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn per_user_rate_limit() {
    let mut cfg = config();
    cfg.rate_limit = 5;
    let sim = oura_sim::start(cfg).await;
    let c = client();
    let t0 = token(&sim, 0, "").await;
    let t1 = token(&sim, 1, "").await;
    let url = sim.url("/v2/usercollection/personal_info");
    for _ in 0..5 {
        assert_eq!(
            c.get(&url).bearer_auth(&t0).send().await.unwrap().status(),
            200
        );
    }
    let r = c.get(&url).bearer_auth(&t0).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let ra: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ra > 0 && ra <= 301);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5");
    // Another user is unaffected.
    assert_eq!(
        c.get(&url).bearer_auth(&t1).send().await.unwrap().status(),
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_users_and_state() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let r = c
        .post(sim.url("/_sim/users"))
        .json(&json!({"count": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["users"].as_array().unwrap().len(), 2);
    assert_eq!(body["users"][0]["index"], 2);
    let st: Value = c
        .get(sim.url("/_sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["users"].as_array().unwrap().len(), 4);
    assert_eq!(st["end_day"], "2026-06-30");
    // New user's data is served.
    let tok = token(&sim, 3, "daily").await;
    let (all, _) = collect_all(&sim, &tok, "/v2/usercollection/daily_activity", &[]).await;
    assert_eq!(all.len(), 14);
    // Bad sync requests.
    let r = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 0, "data_type": "heartrate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 0, "data_type": "daily_sleep", "day": "2026-06-20", "operation": "create"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 99, "data_type": "sleep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn background_ticker_changes_data() {
    let mut cfg = config();
    cfg.sync_interval = Some(std::time::Duration::from_millis(20));
    let sim = oura_sim::start(cfg).await;
    let before = sim.sim.state()["users"].clone();
    wait_for(|| (sim.sim.state()["users"] != before).then_some(())).await;
    sim.shutdown().await;
}
