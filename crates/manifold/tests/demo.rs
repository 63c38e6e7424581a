//! The README's first command works: `manifold demo` connects simulated Oura users, receives
//! their rings' syncs and delivers signed Terra payloads, with no configuration.

use std::process::Command;

#[test]
fn demo_delivers_signed_payloads_with_no_setup() {
    let out = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["demo", "--users", "2", "--days", "2", "--duration", "90s"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("a summary line");
    assert!(summary.contains(" 0 bad signatures"), "{summary}");
    for t in ["sleep", "daily", "activity", "auth"] {
        assert!(
            summary.contains(&format!(" {t}")),
            "no {t} payload: {summary}"
        );
    }
    assert!(stdout.contains("connected app-user-1"), "{stdout}");
    assert!(stdout.contains("signature ok"), "{stdout}");
}
