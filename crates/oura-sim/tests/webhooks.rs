//! Webhook subscriptions (handshake) and signed notifications.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

fn sub_req(c: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    c.request(method, url)
        .header("x-client-id", "sim-client-id")
        .header("x-client-secret", "sim-client-secret")
}

/// Independent check: upper-case hex HMAC-SHA256(secret, timestamp ‖ raw body).
fn expected_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(ts.as_bytes());
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[tokio::test]
async fn subscription_lifecycle_and_handshake() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let (cb, recv) = start_receiver("tok-1", true).await;
    let subs_url = sim.url("/v2/webhook/subscription");

    // Client headers required.
    let r = c.get(&subs_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = sub_req(&c, reqwest::Method::GET, subs_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));

    let body = json!({"callback_url": cb, "verification_token": "tok-1", "event_type": "update", "data_type": "sleep"});
    let r = sub_req(&c, reqwest::Method::POST, subs_url.clone())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sub: Value = r.json().await.unwrap();
    for f in [
        "id",
        "callback_url",
        "event_type",
        "data_type",
        "expiration_time",
    ] {
        assert!(sub.get(f).is_some(), "{f}");
    }
    assert_eq!(sub["data_type"], "sleep");
    let v = recv.verifications.lock().unwrap().clone();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "tok-1");
    assert!(!v[0].1.is_empty());
    let id = sub["id"].as_str().unwrap().to_string();
    let exp1 = sub["expiration_time"].as_str().unwrap().to_string();
    chrono::NaiveDateTime::parse_from_str(&exp1, "%Y-%m-%dT%H:%M:%S%.f").unwrap();

    // Invalid enum → 422 with FastAPI-style detail.
    let r = sub_req(&c, reqwest::Method::POST, subs_url.clone())
        .json(&json!({"callback_url": cb, "verification_token": "tok-1", "event_type": "update", "data_type": "heartrate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["detail"][0]["loc"], json!(["body", "data_type"]));

    // Renew, get, update, list, delete.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = sub_req(
        &c,
        reqwest::Method::PUT,
        sim.url(&format!("/v2/webhook/subscription/renew/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let renewed: Value = r.json().await.unwrap();
    assert!(renewed["expiration_time"].as_str().unwrap() > exp1.as_str());
    let r = sub_req(
        &c,
        reqwest::Method::PUT,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .json(&json!({"event_type": "create"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let r = sub_req(
        &c,
        reqwest::Method::PUT,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .json(&json!({"verification_token": "tok-1", "event_type": "create"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["event_type"], "create");
    let r = sub_req(
        &c,
        reqwest::Method::GET,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = sub_req(
        &c,
        reqwest::Method::DELETE,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let r = sub_req(
        &c,
        reqwest::Method::DELETE,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = sub_req(
        &c,
        reqwest::Method::PUT,
        sim.url(&format!("/v2/webhook/subscription/renew/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = sub_req(
        &c,
        reqwest::Method::GET,
        sim.url(&format!("/v2/webhook/subscription/{id}")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn handshake_failure_refuses_subscription() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let subs_url = sim.url("/v2/webhook/subscription");
    // Callback answers with the wrong challenge.
    let (cb, recv) = start_receiver("tok", false).await;
    let r = sub_req(&c, reqwest::Method::POST, subs_url.clone())
        .json(&json!({"callback_url": cb, "verification_token": "tok", "event_type": "create", "data_type": "workout"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(recv.verifications.lock().unwrap().len(), 1);
    // Callback rejects the token.
    let (cb2, _) = start_receiver("other", true).await;
    let r = sub_req(&c, reqwest::Method::POST, subs_url.clone())
        .json(&json!({"callback_url": cb2, "verification_token": "tok", "event_type": "create", "data_type": "workout"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // Unreachable callback.
    let r = sub_req(&c, reqwest::Method::POST, subs_url.clone())
        .json(&json!({"callback_url": "http://127.0.0.1:9/hook", "verification_token": "tok", "event_type": "create", "data_type": "workout"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let r = sub_req(&c, reqwest::Method::GET, subs_url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn sync_sends_signed_notification() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let (cb, recv) = start_receiver("vt", true).await;
    for et in ["create", "update", "delete"] {
        let r = sub_req(&c, reqwest::Method::POST, sim.url("/v2/webhook/subscription"))
            .json(&json!({"callback_url": cb, "verification_token": "vt", "event_type": et, "data_type": "daily_sleep"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let user = sim.sim.users()[1].clone();

    // Not authorised yet → nobody is notified.
    let r: Value = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 1, "data_type": "daily_sleep", "operation": "update"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["notified_subscriptions"], 0);

    let tok = token(&sim, 1, "daily").await;
    let (_, before) = get_json(
        &c,
        &with_query(
            &sim.url("/v2/usercollection/daily_sleep"),
            &[("start_date", "2026-06-25"), ("end_date", "2026-06-26")],
        ),
        &tok,
    )
    .await;
    let doc_before = before["data"][0].clone();
    let r = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": user.id, "data_type": "daily_sleep", "operation": "update", "day": "2026-06-25"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["notified_subscriptions"], 1);
    assert_eq!(out["event"]["object_id"], doc_before["id"]);

    let got = wait_for(|| recv.posts.lock().unwrap().first().cloned()).await;
    let ts = got.headers["x-oura-timestamp"]
        .to_str()
        .unwrap()
        .to_string();
    let sig = got.headers["x-oura-signature"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ts.parse::<i64>().is_ok());
    assert_eq!(sig, expected_signature("sim-client-secret", &ts, &got.body));
    assert_eq!(sig, sig.to_uppercase());
    let ev: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(ev["event_type"], "update");
    assert_eq!(ev["data_type"], "daily_sleep");
    assert_eq!(ev["user_id"], user.id.as_str());
    assert_eq!(ev["object_id"], doc_before["id"]);
    chrono::DateTime::parse_from_rfc3339(ev["event_time"].as_str().unwrap()).unwrap();
    let keys: Vec<&String> = ev.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5);

    // The document changed but kept its id.
    let oid = ev["object_id"].as_str().unwrap();
    let (st, after) = get_json(
        &c,
        &sim.url(&format!("/v2/usercollection/daily_sleep/{oid}")),
        &tok,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(after["id"], doc_before["id"]);
    assert_ne!(after, doc_before);

    // Create a new day, then delete it.
    let out: Value = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 1, "data_type": "daily_sleep", "operation": "create"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_id = out["event"]["object_id"].as_str().unwrap().to_string();
    let (st, doc) = get_json(
        &c,
        &sim.url(&format!("/v2/usercollection/daily_sleep/{new_id}")),
        &tok,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(doc["day"], "2026-07-01");
    let out: Value = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 1, "data_type": "daily_sleep", "operation": "delete", "object_id": new_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["event"]["event_type"], "delete");
    let (st, _) = get_json(
        &c,
        &sim.url(&format!("/v2/usercollection/daily_sleep/{new_id}")),
        &tok,
    )
    .await;
    assert_eq!(st, 404);
    wait_for(|| (recv.posts.lock().unwrap().len() == 3).then_some(())).await;
    let posts = recv.posts.lock().unwrap().clone();
    let types: Vec<String> = posts
        .iter()
        .map(|p| {
            serde_json::from_slice::<Value>(&p.body).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["update", "create", "delete"]);
    for p in &posts {
        let ts = p.headers["x-oura-timestamp"].to_str().unwrap();
        assert_eq!(
            p.headers["x-oura-signature"].to_str().unwrap(),
            expected_signature("sim-client-secret", ts, &p.body)
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn delivery_retries_until_success() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sim = oura_sim::start(config()).await;
    let c = client();
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::get(
            |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                axum::Json(json!({"challenge": q.0["challenge"]}))
            },
        )
        .post(move || {
            let h = h2.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < 2 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!("http://{}/cb", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let r = sub_req(&c, reqwest::Method::POST, sim.url("/v2/webhook/subscription"))
        .json(&json!({"callback_url": cb, "verification_token": "x", "event_type": "create", "data_type": "workout"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    token(&sim, 0, "workout").await;
    let out = sim
        .sim
        .sync(oura_sim::SyncRequest {
            user: json!(0),
            data_type: "workout".into(),
            day: None,
            operation: Some("create".into()),
            object_id: None,
        })
        .await
        .unwrap();
    assert_eq!(out.notified_subscriptions, 1);
    let rec = wait_for(|| {
        sim.sim
            .deliveries()
            .into_iter()
            .find(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(rec["attempts"], 3);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    sim.shutdown().await;
}

/// `POST /_sim/sync?notify=false` changes the data and notifies nobody (a notification Oura
/// gave up on); the same sync without the flag notifies. `GET /_sim/requests` lists the
/// `/v2/*` requests made.
#[tokio::test]
async fn silent_sync_changes_data_without_notifying() {
    let sim = oura_sim::start(config()).await;
    let c = client();
    let (cb, recv) = start_receiver("vt", true).await;
    let r = sub_req(&c, reqwest::Method::POST, sim.url("/v2/webhook/subscription"))
        .json(&json!({"callback_url": cb, "verification_token": "vt", "event_type": "update", "data_type": "daily_sleep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tok = token(&sim, 0, "daily").await;
    let list = with_query(
        &sim.url("/v2/usercollection/daily_sleep"),
        &[("start_date", "2026-06-25"), ("end_date", "2026-06-26")],
    );
    let (_, before) = get_json(&c, &list, &tok).await;
    let doc_before = before["data"][0].clone();

    let out: Value = c
        .post(sim.url("/_sim/sync?notify=false"))
        .json(&json!({"user": 0, "data_type": "daily_sleep", "operation": "update", "day": "2026-06-25"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["notified_subscriptions"], 0);
    assert_eq!(out["event"]["object_id"], doc_before["id"]);
    let (_, after) = get_json(&c, &list, &tok).await;
    assert_eq!(after["data"][0]["id"], doc_before["id"]);
    assert_ne!(after["data"][0], doc_before, "the document changed");

    // the same sync, notifying: exactly one notification arrives (the silent one never does)
    let out: Value = c
        .post(sim.url("/_sim/sync"))
        .json(&json!({"user": 0, "data_type": "daily_sleep", "operation": "update", "day": "2026-06-25"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["notified_subscriptions"], 1);
    wait_for(|| recv.posts.lock().unwrap().first().cloned()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(recv.posts.lock().unwrap().len(), 1);
    let deliveries = sim.sim.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");

    // the request log: both list requests, with their query, and no control routes
    let log: Value = c
        .get(sim.url("/_sim/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = format!(
        "GET /v2/usercollection/daily_sleep?{}",
        list.split_once('?').unwrap().1
    );
    let lines: Vec<&str> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| **l == want).count(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains(" /v2/")), "{lines:?}");
    assert_eq!(sim.sim.request_log(), lines);
}
