//! Shared helpers for the simulator's HTTP tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::NaiveDate;
use oura_sim::{RunningSim, SimConfig};
use serde_json::{Value, json};

pub fn end_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
}

pub fn config() -> SimConfig {
    SimConfig {
        users: 2,
        days: 14,
        seed: 7,
        end_day: Some(end_day()),
        delivery_backoff: std::time::Duration::from_millis(50),
        ..SimConfig::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(base).unwrap();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

pub async fn post_form(c: &reqwest::Client, url: &str, body: String) -> reqwest::Response {
    c.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Token for `user` with `scope` via the control API.
pub async fn token(sim: &RunningSim, user: usize, scope: &str) -> String {
    let r: Value = client()
        .post(sim.url("/_sim/tokens"))
        .json(&json!({"user": user, "scope": scope}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

pub async fn get_json(c: &reqwest::Client, url: &str, tok: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Follow `next_token` until null; returns all items and the number of pages.
pub async fn collect_all(
    sim: &RunningSim,
    tok: &str,
    path: &str,
    params: &[(&str, &str)],
) -> (Vec<Value>, usize) {
    let c = client();
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut p: Vec<(&str, &str)> = params.to_vec();
        if let Some(n) = next.as_deref() {
            p.push(("next_token", n));
        }
        let (st, body) = get_json(&c, &with_query(&sim.url(path), &p), tok).await;
        assert_eq!(st, 200, "{path}: {body}");
        pages += 1;
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["next_token"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => {
                assert!(body.get("next_token").is_some(), "next_token key present");
                return (out, pages);
            }
        }
        assert!(pages < 10_000);
    }
}

/// What a webhook receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub verifications: Arc<Mutex<Vec<(String, String)>>>,
    pub posts: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct RecvState {
    r: Receiver,
    expected_token: String,
    echo: bool,
}

async fn verify(
    State(s): State<RecvState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    let tok = q.get("verification_token").cloned().unwrap_or_default();
    let ch = q.get("challenge").cloned().unwrap_or_default();
    s.r.verifications
        .lock()
        .unwrap()
        .push((tok.clone(), ch.clone()));
    if tok != s.expected_token {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if s.echo {
        axum::Json(json!({ "challenge": ch })).into_response()
    } else {
        axum::Json(json!({ "challenge": "wrong" })).into_response()
    }
}

async fn receive(
    State(s): State<RecvState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    s.r.posts.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// Start a webhook receiver; returns (callback URL, recorder).
pub async fn start_receiver(expected_token: &str, echo: bool) -> (String, Receiver) {
    let r = Receiver::default();
    let st = RecvState {
        r: r.clone(),
        expected_token: expected_token.to_string(),
        echo,
    };
    let app = Router::new()
        .route("/oura/hook", get(verify).post(receive))
        .with_state(st);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    (format!("http://{addr}/oura/hook"), r)
}

pub async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting");
}
