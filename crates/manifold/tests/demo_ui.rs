//! `manifold demo --open-ui` prints the dashboard URL, asks the desktop to open it, and keeps
//! the engine and the dashboard serving after the payloads are delivered, until Ctrl-C.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn open_ui_prints_the_url_opens_it_and_serves_until_ctrl_c() {
    // A stand-in for the desktop's `xdg-open` that records the URL it was asked to open.
    let bin = tempfile::tempdir().unwrap();
    let opened = bin.path().join("opened.txt");
    let tool = bin.path().join("xdg-open");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args([
            "demo",
            "--open-ui",
            "--users",
            "1",
            "--days",
            "1",
            "--quiet",
        ])
        .args(["--duration", "90s"])
        .env("PATH", bin.path())
        .env("DISPLAY", ":99")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo went silent")
            .unwrap()
            .expect("the demo closed stdout")
    };

    // The header names the dashboard and the key.
    let url = loop {
        let l = next().await;
        out.push(l.clone());
        if let Some(rest) = l.trim_start().strip_prefix("dashboard ") {
            assert!(l.contains("API key: demo-api-key"), "{l}");
            assert!(l.contains("opening it with xdg-open"), "{l}");
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/ui"),
        "{url}"
    );
    // Everything is delivered, and the demo says it keeps running.
    loop {
        let l = next().await;
        out.push(l.clone());
        if l.starts_with("summary:") {
            assert!(l.contains(" 0 bad signatures"), "{l}");
        }
        if l.contains("still running; press Ctrl-C to stop") {
            assert!(l.contains(&url), "{l}");
            break;
        }
    }
    assert!(out.iter().any(|l| l.starts_with("summary:")), "{out:#?}");

    // The browser was asked to open the dashboard, logged in through the URL fragment.
    let asked = std::fs::read_to_string(&opened).expect("xdg-open was not run");
    assert_eq!(asked.trim(), format!("{url}#key=demo-api-key"));

    // After delivery the dashboard and the admin API still answer.
    let http = reqwest::Client::new();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    let base = url.trim_end_matches("/ui");
    let deliveries: Value = http
        .get(format!(
            "{base}/admin/deliveries?destination=demo-receiver&limit=1000"
        ))
        .header("x-api-key", "demo-api-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = deliveries["deliveries"].as_array().unwrap();
    assert!(!rows.is_empty(), "{deliveries}");
    assert!(
        rows.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:#}"
    );
    assert!(rows.iter().any(|d| d["event_type"] == "sleep"));
    let users: Value = http
        .get(format!("{base}/admin/users"))
        .header("x-api-key", "demo-api-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["users"][0]["reference_id"], "app-user-0", "{users:#}");
    assert_eq!(users["users"][0]["status"], "connected");
    assert!(child.try_wait().unwrap().is_none(), "the demo exited");

    // Ctrl-C ends it cleanly.
    let pid = child.id().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the demo did not stop on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        http.get(&url).send().await.is_err(),
        "still serving after Ctrl-C"
    );
}
