//! The dashboard in a real browser: headless Chromium (installed by
//! scripts/services.d/chromium.sh) loads `/ui` from a running `manifold serve`, logs in through
//! the URL fragment, and renders the delivery rows, the dead letters with their reasons and a
//! delivery's attempt timeline — with data escaped, never interpreted as markup. Without a key
//! it shows the login form and no data.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const HOSTILE: &str = r#"<img src=x id=pwned onerror="document.title='pwned'">"#;

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("MANIFOLD_TEST_CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().into();
        }
    }
    panic!(
        "chromium is not installed: run scripts/services (scripts/services.d/chromium.sh installs \
         Debian's chromium) or set MANIFOLD_TEST_CHROMIUM"
    );
}

/// Load `url` in a fresh headless Chromium and return the DOM once the page's requests are done.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn event(kind: &str, summary: &str, reference: &str) -> Value {
    json!({
        "type": kind,
        "user": {"user_id": "browser-user", "reference_id": reference, "provider": "OURA"},
        "version": "2022-03-16",
        "data": [{"metadata": {"summary_id": summary, "start_time": "2026-07-01T23:00:00.000000+01:00",
                  "end_time": "2026-07-02T07:00:00.000000+01:00", "upload_type": 1, "is_nap": false}}]
    })
}

/// The `<tr>` (or `<li>`) that carries `attr="value"`, as the dumped DOM has it.
fn element<'a>(dom: &'a str, attr: &str, value: &str) -> &'a str {
    let needle = format!("{attr}=\"{value}\"");
    let at = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no element with {needle} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let close = if dom[start..].starts_with("<li") {
        "</li>"
    } else {
        "</tr>"
    };
    let end = dom[at..]
        .find(close)
        .map(|e| at + e)
        .unwrap_or_else(|| panic!("unclosed element at {needle}"));
    &dom[start..end]
}

#[tokio::test]
async fn dashboard_renders_deliveries_dead_letters_and_timeline_in_chromium() {
    let good = Receiver::start(Behaviour::Ok).await;
    let refusing = Receiver::start(Behaviour::Always(422)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sqlite_url(dir.path()),
        port,
        &good.url,
        &format!(
            "\n[[destinations]]\nname = \"refusing\"\ntype = \"webhook\"\nurl = \"{}\"\n\
             signing_secret = \"s\"\nallow_private_network = true\ntimeout = \"2s\"\n",
            refusing.url
        ),
    );
    let _server = spawn_serve(&config, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for (kind, key, reference) in [
        ("sleep", "browser-1", "ref-plain"),
        ("daily", "browser-2", HOSTILE),
    ] {
        let res = http
            .post(format!("{base}/v2/events"))
            .header("x-api-key", "test-key")
            .json(&event(kind, key, reference))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    // Wait until both destinations settled: 2 delivered to `app`, 2 dead at `refusing`.
    let end = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let body: Value = http
            .get(format!("{base}/admin/deliveries"))
            .header("x-api-key", "test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = body["deliveries"].as_array().unwrap().clone();
        if rows.len() == 4 && rows.iter().all(|d| d["status"] != "pending") {
            break rows;
        }
        assert!(Instant::now() < end, "deliveries did not settle: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Without a key: the login form, and no data.
    let dom = dump_dom(&format!("{base}/ui"));
    assert!(
        dom.contains(r#"<section id="login">"#),
        "login form hidden:\n{dom}"
    );
    for d in &rows {
        assert!(!dom.contains(d["id"].as_str().unwrap()));
    }
    assert!(!dom.contains("refusing") && !dom.contains("ref-plain"));

    // The delivery log, logged in through the URL fragment.
    let dom = dump_dom(&format!("{base}/ui#key=test-key&tab=deliveries"));
    assert!(
        dom.contains(r#"<section id="login" hidden="">"#),
        "still on the login form:\n{dom}"
    );
    for d in &rows {
        let id = d["id"].as_str().unwrap();
        let tr = element(&dom, "data-delivery", id);
        assert!(
            tr.contains(&format!(
                "data-status=\"{}\"",
                d["status"].as_str().unwrap()
            )),
            "{tr}"
        );
        assert!(
            tr.contains(&format!(">{}<", d["destination"].as_str().unwrap())),
            "{tr}"
        );
        assert!(
            tr.contains(&format!(">{}<", d["event_type"].as_str().unwrap())),
            "{tr}"
        );
    }
    // The hostile reference id is shown as text: escaped in the DOM, no element was created and
    // its handler never ran.
    assert!(
        dom.contains("&lt;img src=x id=pwned"),
        "hostile text not rendered:\n{dom}"
    );
    assert!(!dom.contains("<img"), "markup from data was interpreted");
    assert!(!dom.contains("<title>pwned</title>"));
    // The destinations tab fed the filter's destination list.
    assert!(dom.contains(r#"<option value="refusing">refusing</option>"#));

    // The dead letters with their reasons, and the attempt timeline of one of them.
    let dead: Vec<&Value> = rows.iter().filter(|d| d["status"] == "dead").collect();
    assert_eq!(dead.len(), 2);
    let id = dead[0]["id"].as_str().unwrap();
    let dom = dump_dom(&format!("{base}/ui#key=test-key&tab=dead&delivery={id}"));
    for d in &dead {
        let tr = element(&dom, "data-delivery", d["id"].as_str().unwrap());
        assert!(
            tr.contains("HTTP 422"),
            "no reason in the dead letter row: {tr}"
        );
        assert!(tr.contains(">Replay</button>"), "{tr}");
    }
    assert!(
        dom.contains(r#"<section id="detail">"#),
        "detail hidden:\n{dom}"
    );
    assert!(dom.contains(&format!(r#"<code id="detail-id">{id}</code>"#)));
    let attempt = element(&dom, "data-attempt", "1");
    assert!(attempt.contains("HTTP 422"), "{attempt}");
    assert!(attempt.contains(">permanent<"), "{attempt}");

    // The destinations with health and counts.
    let dom = dump_dom(&format!("{base}/ui#key=test-key&tab=destinations"));
    let tr = element(&dom, "data-destination", "refusing");
    assert!(tr.contains(">failing<"), "{tr}");
    assert!(tr.contains(">Replay dead</button>"), "{tr}");
    let tr = element(&dom, "data-destination", "app");
    assert!(tr.contains(">healthy<"), "{tr}");
}
