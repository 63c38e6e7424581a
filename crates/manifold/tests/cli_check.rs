//! `manifold check`: exit 0 for a valid file, 2 with `file:line: key: message; fix` otherwise.

use std::process::Command;

fn check(src: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifold.toml");
    std::fs::write(&path, src).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("WEBHOOK_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&*path.display().to_string(), "F"),
        String::from_utf8_lossy(&out.stderr).replace(&*path.display().to_string(), "F"),
    )
}

const GOOD: &str = r#"[server]
api_keys = ["k"]

[[destinations]]
name = "app"
type = "webhook"
url = "https://app.example.com/terra"
signing_secret = "${WEBHOOK_SECRET}"
"#;

#[test]
fn valid_config_exits_zero() {
    let (code, out, err) = check(GOOD, &[("WEBHOOK_SECRET", "s")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok (1 destination(s): app)"), "{out}");
}

#[test]
fn each_mistake_exits_two_with_file_line_key_and_fix() {
    let (code, _, err) = check(GOOD, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "F:8: destinations[0].signing_secret: environment variable `WEBHOOK_SECRET` is not set"
        ),
        "{err}"
    );

    let (code, _, err) = check(&GOOD.replace("url =", "urll ="), &[("WEBHOOK_SECRET", "s")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("F:7: destinations[0].urll: unknown field `urll`"),
        "{err}"
    );

    let (code, _, err) = check(
        &format!("{GOOD}timeout = \"8 lightyears\"\n"),
        &[("WEBHOOK_SECRET", "s")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("F:9: destinations[0].timeout: `8 lightyears` is not a duration"),
        "{err}"
    );

    let (code, _, err) = check(
        &GOOD.replace("https://app.example.com/terra", "not a url"),
        &[("WEBHOOK_SECRET", "s")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("F:7: destinations[0].url:"), "{err}");
}

/// Every example config in `examples/` is valid (with its secrets exported; an example states
/// realistic values for variables such as URLs in `# example-env: NAME=value` lines).
#[test]
fn every_example_config_checks() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let src = std::fs::read_to_string(&path).unwrap();
        // Export a value for every ${VAR} the example uses.
        let vars: Vec<String> = src
            .split("${")
            .skip(1)
            .filter_map(|s| {
                s.split_once('}')
                    .map(|(v, _)| v.split(":-").next().unwrap_or(v).to_string())
            })
            .filter(|v| !v.starts_with("file:"))
            .collect();
        // An example may give a realistic value: `# example-env: NAME=value`.
        let given: Vec<(String, String)> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# example-env:"))
            .filter_map(|kv| {
                kv.trim()
                    .split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let env: Vec<(&str, &str)> = vars
            .iter()
            .map(|v| {
                let value = given
                    .iter()
                    .find(|(k, _)| k == v)
                    .map(|(_, val)| val.as_str());
                (v.as_str(), value.unwrap_or("example-value"))
            })
            .collect();
        let (code, out, err) = check(&src, &env);
        assert_eq!(code, 0, "{}: {out}{err}", path.display());
    }
    assert!(n >= 2, "no example configs found in {}", examples.display());
}
