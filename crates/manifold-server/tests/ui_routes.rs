//! The dashboard at `/ui`: the page and its assets are served public, with a strict CSP and
//! `no-store`, and carry no data; every admin endpoint the page calls answers 401 without the
//! key and, with it, returns every field the page reads (the list is read from `app.js` itself),
//! with values that match what really happened to real deliveries (a real engine, a real
//! SQLite store, real webhook receivers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use manifold_core::store::OuraTokens;
use manifold_core::{Config, Engine, Registry};
use manifold_server::{AppState, router};
use serde_json::{Value, json};
use tokio::sync::watch;

const KEY: &str = "ui-test-key";
/// What the rejecting receiver answers: longer than the store keeps (2 KiB).
fn long_refusal() -> String {
    format!("schema check failed: {}", "x".repeat(3000))
}

async fn receivers() -> String {
    let app = axum::Router::new()
        .route("/good", post(|| async { (StatusCode::OK, "thanks") }))
        .route(
            "/bad",
            post(|| async { (StatusCode::BAD_REQUEST, long_refusal()) }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

struct Server {
    base: String,
    engine: Engine,
    _stop: watch::Sender<bool>,
    _workers: tokio::task::JoinSet<()>,
    _dir: tempfile::TempDir,
}

async fn start(with_oura: bool) -> Server {
    start_on(with_oura, None).await
}

/// `store`: a store URL (PostgreSQL); a temporary SQLite file otherwise.
async fn start_on(with_oura: bool, store: Option<String>) -> Server {
    let recv = receivers().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("ui.db").display()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let oura = if with_oura {
        // The connector is built (for its store and users) but never contacts Oura here.
        r#"
[oura]
client_id = "ui-test"
client_secret = "ui-test-secret"
api_base = "http://127.0.0.1:9"
auth_base = "http://127.0.0.1:9"
token_keys = ["ZGVtby1vbmx5LXRva2VuLWtleS0zMi1ieXRlcyEhISE="]
sync_subscriptions = false
backfill_days = 0
"#
    } else {
        ""
    };
    let toml = format!(
        r#"
[server]
listen = "{addr}"
public_url = "http://{addr}"
api_keys = ["{KEY}"]

[store]
url = "{store}"
poll_interval = "100ms"
{oura}
[[destinations]]
name = "sink-good"
type = "webhook"
url = "{recv}/good"
signing_secret = "s"
allow_private_network = true

[[destinations]]
name = "sink-bad"
type = "webhook"
url = "{recv}/bad"
signing_secret = "s"
allow_private_network = true
"#
    );
    let mut registry = Registry::new();
    registry.register(manifold_webhook::WebhookFactory);
    let config = Config::from_str(&toml, "<ui test>", &registry, &|_| None).unwrap();
    let engine = Engine::from_config(&config).await.unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let workers = engine.start(stop_rx);
    let oura = with_oura.then(|| {
        manifold_oura::connector::Connector::new(engine.clone(), &config).expect("connector")
    });
    let state = AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
        oura,
    };
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Server {
        base: format!("http://{addr}"),
        engine,
        _stop: stop,
        _workers: workers,
        _dir: dir,
    }
}

fn event(kind: &str, summary: &str) -> Value {
    json!({
        "type": kind,
        "user": {"user_id": "user-ui-1", "reference_id": "ref-ui-1", "provider": "OURA"},
        "version": "2022-03-16",
        "data": [{"metadata": {"summary_id": summary, "start_time": "2026-07-01T00:00:00.000000+00:00",
                  "end_time": "2026-07-02T00:00:00.000000+00:00", "upload_type": 1}}]
    })
}

async fn get(http: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, String, Value) {
    let mut r = http.get(url);
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}

async fn post_admin(http: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = http.post(url);
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The `API` block of app.js: endpoint → {path, list, fields}.
fn page_api() -> serde_json::Map<String, Value> {
    let js = include_str!("../ui/app.js");
    let start = js.find("// BEGIN API").expect("BEGIN API marker") + "// BEGIN API".len();
    let end = js.find("// END API").expect("END API marker");
    let block = js[start..end].trim();
    let obj = block
        .strip_prefix("const API =")
        .and_then(|b| b.trim().strip_suffix(';'))
        .expect("`const API = {...};`");
    serde_json::from_str::<Value>(obj)
        .expect("the API block is JSON")
        .as_object()
        .unwrap()
        .clone()
}

/// ` onclick=`, ` onload=`, …
fn has_event_handler_attribute(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.chars().take_while(|c| c.is_ascii_lowercase()).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

fn has_path(v: &Value, path: &str) -> bool {
    let mut cur = v;
    for part in path.split('.') {
        match cur.as_object().and_then(|o| o.get(part)) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

async fn wait_settled(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, body) = get(http, &format!("{base}/admin/deliveries"), Some(KEY)).await;
        let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
        let settled = rows.len() == 4
            && rows.iter().all(|d| {
                (d["destination"] == "sink-good" && d["status"] == "delivered")
                    || (d["destination"] == "sink-bad" && d["status"] == "dead")
            });
        if settled {
            return rows;
        }
        assert!(Instant::now() < end, "deliveries did not settle: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn page_is_public_strict_and_holds_no_data() {
    let s = start(false).await;
    let http = reqwest::Client::new();
    for (path, ct) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let res = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["content-type"], ct, "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, manifold_server::ui::CSP);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP lacks {directive}: {csp}"
            );
        }
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    // The page loads its code from the allowed origin only, and holds no inline script or style.
    let html = http
        .get(format!("{}/ui", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"<script src="/ui/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one external script only"
    );
    assert!(!html.contains("<style") && !html.contains("style="));
    assert!(
        !has_event_handler_attribute(&html),
        "inline event handler in the page"
    );
    // ...and it never renders data as markup.
    let js = include_str!("../ui/app.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }

    // Data exists, yet none of it is in what is served without a key.
    s.engine
        .publish_value(&event("sleep", "secret-summary-1"), None)
        .await
        .unwrap();
    let rows = wait_settled_two(&http, &s.base).await;
    for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
        let body = http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for d in &rows {
            assert!(
                !body.contains(d["id"].as_str().unwrap()),
                "{path} holds a delivery id"
            );
        }
        for secret in [
            "sink-good",
            "sink-bad",
            "user-ui-1",
            "ref-ui-1",
            "secret-summary-1",
        ] {
            assert!(!body.contains(secret), "{path} holds `{secret}`");
        }
    }
}

async fn wait_settled_two(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, body) = get(http, &format!("{base}/admin/deliveries"), Some(KEY)).await;
        let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
        if rows.len() == 2 && rows.iter().all(|d| d["status"] != "pending") {
            return rows;
        }
        assert!(Instant::now() < end, "deliveries did not settle: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_endpoint_the_page_calls_needs_the_key_and_returns_what_the_page_reads() {
    endpoints(start(true).await).await;
}

#[tokio::test]
async fn every_endpoint_the_page_calls_works_on_postgres() {
    let db = manifold_core::testdb::TempDatabase::create().await;
    endpoints(start_on(true, Some(db.url.clone())).await).await;
}

async fn endpoints(s: Server) {
    let http = reqwest::Client::new();
    let store = s.engine.store();
    store
        .oura_create_pending_user("user-ui-1", Some("ref-ui-1"), None, None)
        .await
        .unwrap();
    store
        .oura_connect_user(
            "user-ui-1",
            "oura-ui-1",
            &OuraTokens {
                access_token: "a".into(),
                refresh_token: "r".into(),
                expires_at: 0,
                scopes: Some("daily".into()),
            },
        )
        .await
        .unwrap();
    for (kind, id) in [("sleep", "s-1"), ("daily", "d-1")] {
        let res = http
            .post(format!("{}/v2/events", s.base))
            .header("x-api-key", KEY)
            .json(&event(kind, id))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let rows = wait_settled(&http, &s.base).await;
    let dead = rows.iter().find(|d| d["status"] == "dead").unwrap().clone();
    let dead_id = dead["id"].as_str().unwrap();

    // Every endpoint of the page's API block.
    let api = page_api();
    assert_eq!(
        api.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        ["attempts", "deliveries", "destinations", "users"]
            .map(String::from)
            .into()
    );
    for (name, spec) in &api {
        let path = spec["path"].as_str().unwrap().replace("{id}", dead_id);
        let url = format!("{}{path}", s.base);
        for key in [None, Some("wrong-key")] {
            let (status, ct, body) = get(&http, &url, key).await;
            assert_eq!(status, 401, "{name} with key {key:?}");
            assert_eq!(ct, "application/problem+json");
            let text = body.to_string();
            assert!(!text.contains("sink-") && !text.contains(dead_id), "{text}");
        }
        let (status, _, body) = get(&http, &url, Some(KEY)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let items = body[spec["list"].as_str().unwrap()]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no list in {body}"));
        assert!(!items.is_empty(), "{name}: empty list");
        for item in items {
            for f in spec["fields"].as_array().unwrap() {
                let f = f.as_str().unwrap();
                assert!(has_path(item, f), "{name} lacks `{f}`: {item:#}");
            }
        }
    }

    // Destinations: counts and health match what happened.
    let (_, _, body) = get(&http, &format!("{}/admin/destinations", s.base), Some(KEY)).await;
    let dests = body["destinations"].as_array().unwrap();
    let good = dests.iter().find(|d| d["name"] == "sink-good").unwrap();
    let bad = dests.iter().find(|d| d["name"] == "sink-bad").unwrap();
    assert_eq!(good["health"], "healthy", "{good:#}");
    assert_eq!(good["queue"]["delivered"], 2);
    assert_eq!(good["queue"]["dead"], 0);
    assert_eq!(good["recent"]["attempts"], 2);
    assert_eq!(good["recent"]["failures"], 0);
    assert!(good["recent"]["avg_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(bad["health"], "failing", "{bad:#}");
    assert_eq!(bad["queue"]["dead"], 2);
    assert_eq!(bad["queue"]["pending"], 0);
    assert_eq!(bad["retrying"], 0);
    assert_eq!(bad["recent"]["failures"], 2);
    assert_eq!(bad["recent"]["last_status_code"], 400);
    assert_eq!(bad["recent"]["last_class"], "permanent");
    assert!(
        bad["recent"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{bad:#}"
    );

    // Delivery filters: user (Terra id or reference id), type, status, destination.
    let list = |q: &'static str| {
        let url = format!("{}/admin/deliveries?{q}", s.base);
        let http = http.clone();
        async move {
            let (status, _, body) = get(&http, &url, Some(KEY)).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["deliveries"].as_array().unwrap().clone()
        }
    };
    assert_eq!(list("user=user-ui-1").await.len(), 4);
    assert_eq!(list("user=ref-ui-1").await.len(), 4);
    assert_eq!(list("user=somebody-else").await.len(), 0);
    let sleep = list("type=sleep").await;
    assert_eq!(sleep.len(), 2);
    assert!(sleep.iter().all(|d| d["event_type"] == "sleep"));
    let sleep_dead = list("type=sleep&status=dead&destination=sink-bad").await;
    assert_eq!(sleep_dead.len(), 1);
    assert_eq!(sleep_dead[0]["reference_id"], "ref-ui-1");
    // Empty filter values (the page's "any") filter nothing.
    assert_eq!(
        list("status=&destination=&user=&type=&limit=100")
            .await
            .len(),
        4
    );
    let dead_rows = list("status=dead&limit=500").await;
    assert_eq!(dead_rows.len(), 2);
    for d in &dead_rows {
        let reason = d["dead_reason"].as_str().unwrap();
        assert!(
            reason.contains("HTTP 400") && reason.contains("schema check failed"),
            "{reason}"
        );
    }
    let (status, _, _) = get(
        &http,
        &format!("{}/admin/deliveries?status=lost", s.base),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 400);

    // The attempt timeline: status code, duration, class, error, a truncated response.
    let (_, _, body) = get(
        &http,
        &format!("{}/admin/deliveries/{dead_id}/attempts", s.base),
        Some(KEY),
    )
    .await;
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{body:#}");
    let a = &attempts[0];
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["status_code"], 400);
    assert_eq!(a["class"], "permanent");
    assert!(a["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(a["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["response_truncated"], true);
    let response = a["response"].as_str().unwrap();
    assert!(response.starts_with("schema check failed: xxx") && response.len() == 512);

    // The payload a delivery carries is the event as published.
    let res = http
        .get(format!(
            "{}/admin/payloads/{}",
            s.base,
            dead["payload_id"].as_str().unwrap()
        ))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let payload: Value = res.json().await.unwrap();
    assert_eq!(payload["user"]["reference_id"], "ref-ui-1");
    assert_eq!(payload["type"], dead["event_type"]);
    let (status, _, _) = get(
        &http,
        &format!(
            "{}/admin/payloads/{}",
            s.base,
            dead["payload_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Users: connected, no tokens.
    let (_, _, body) = get(&http, &format!("{}/admin/users", s.base), Some(KEY)).await;
    assert_eq!(body["oura"], true);
    let u = &body["users"][0];
    assert_eq!(u["user_id"], "user-ui-1");
    assert_eq!(u["reference_id"], "ref-ui-1");
    assert_eq!(u["status"], "connected");
    assert_eq!(u["active"], true);
    assert!(u["connected_at"].as_str().unwrap().ends_with('Z'));
    assert!(u.get("access_token").is_none() && u.get("refresh_token").is_none());
    assert!(!body.to_string().contains("\"a\"") && !body.to_string().contains("\"r\""));

    // The page's buttons: each needs the key and does what it says.
    let base = &s.base;
    for path in [
        format!("{base}/admin/deliveries/{dead_id}/replay"),
        format!("{base}/admin/destinations/sink-bad/replay?status=dead"),
        format!("{base}/admin/destinations/sink-bad/disable"),
        format!("{base}/admin/destinations/sink-bad/enable"),
    ] {
        assert_eq!(post_admin(&http, &path, None).await.0, 401, "{path}");
    }
    let (status, body) = post_admin(
        &http,
        &format!("{base}/admin/destinations/sink-bad/disable"),
        Some(KEY),
    )
    .await;
    assert_eq!((status, body["disabled"].clone()), (200, json!(true)));
    let (_, _, body) = get(&http, &format!("{base}/admin/destinations"), Some(KEY)).await;
    let bad = body["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "sink-bad")
        .unwrap()
        .clone();
    assert_eq!(bad["health"], "disabled");
    assert_eq!(bad["disabled"], true);
    // Replaying the dead letters of a disabled destination queues them and nothing is tried.
    let (status, body) = post_admin(
        &http,
        &format!("{base}/admin/destinations/sink-bad/replay?status=dead"),
        Some(KEY),
    )
    .await;
    assert_eq!((status, body["replayed"].clone()), (200, json!(2)));
    assert_eq!(list("status=pending&destination=sink-bad").await.len(), 2);
    let (status, _) = post_admin(
        &http,
        &format!("{base}/admin/destinations/sink-bad/enable"),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 200);
    // Enabled again, the replayed deliveries are tried (and refused) once more: two attempts
    // each in the log.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = list("status=dead&destination=sink-bad").await;
        let mut logged = Vec::new();
        for d in &dead {
            let url = format!(
                "{base}/admin/deliveries/{}/attempts",
                d["id"].as_str().unwrap()
            );
            logged.push(
                get(&http, &url, Some(KEY)).await.2["attempts"]
                    .as_array()
                    .unwrap()
                    .len(),
            );
        }
        if dead.len() == 2 && logged == [2, 2] {
            break;
        }
        assert!(
            Instant::now() < end,
            "replayed deliveries not retried: {dead:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post_admin(
        &http,
        &format!("{base}/admin/deliveries/{dead_id}/replay"),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["destination"], "sink-bad");
}

#[tokio::test]
async fn users_endpoint_without_oura_says_so() {
    let s = start(false).await;
    let http = reqwest::Client::new();
    let (status, _, body) = get(&http, &format!("{}/admin/users", s.base), Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"oura": false, "users": []}));
    let (status, _, _) = get(&http, &format!("{}/admin/users", s.base), None).await;
    assert_eq!(status, 401);
}
