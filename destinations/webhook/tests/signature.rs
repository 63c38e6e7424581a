//! Signatures checked by independent implementations (Python's hmac/hashlib, and the official
//! `standardwebhooks` package when it installs quickly), not by our own signing code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Received, Receiver, build};
use manifold_core::testkit::sample_delivery;

/// Terra's documented verification: split the header into `t=` and `v1=`, HMAC-SHA256 the
/// string "{t}.{body}" with the secret, compare the hex digests.
const TERRA_VERIFY: &str = r#"
import hashlib, hmac, os, sys, time
header = os.environ["SIG_HEADER"]
secret = os.environ["SIG_SECRET"].encode()
body = open(os.environ["SIG_BODY"], "rb").read()
parts = dict(p.split("=", 1) for p in header.split(","))
t, v1 = parts["t"], parts["v1"]
assert abs(time.time() - int(t)) < 300, "timestamp too old"
expected = hmac.new(secret, (t + ".").encode() + body, hashlib.sha256).hexdigest()
if not hmac.compare_digest(expected, v1):
    print("MISMATCH expected", expected, "got", v1); sys.exit(1)
print("OK")
"#;

/// The Standard Webhooks spec by hand: key = base64-decode(secret without "whsec_"),
/// signature = base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), header "v1,<sig>".
const STANDARD_VERIFY_HMAC: &str = r#"
import base64, hashlib, hmac, os, sys
secret = os.environ["SIG_SECRET"]
key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
body = open(os.environ["SIG_BODY"], "rb").read()
msg = (os.environ["WH_ID"] + "." + os.environ["WH_TS"] + ".").encode() + body
expected = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
sigs = [s.split(",", 1)[1] for s in os.environ["WH_SIG"].split(" ") if s.startswith("v1,")]
if not any(hmac.compare_digest(expected, s) for s in sigs):
    print("MISMATCH expected", expected, "got", sigs); sys.exit(1)
print("OK")
"#;

/// The official library.
const STANDARD_VERIFY_LIB: &str = r#"
import os
from standardwebhooks.webhooks import Webhook
body = open(os.environ["SIG_BODY"], "rb").read()
headers = {"webhook-id": os.environ["WH_ID"], "webhook-timestamp": os.environ["WH_TS"],
           "webhook-signature": os.environ["WH_SIG"]}
Webhook(os.environ["SIG_SECRET"]).verify(body, headers)
print("OK")
"#;

fn python3() -> String {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => "python3".into(),
        other => panic!(
            "python3 is required for the independent signature checks and was not found ({other:?}); install python3 (e.g. apt-get install python3)"
        ),
    }
}

fn run_python(python: &str, script: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn body_file(dir: &Path, r: &Received) -> PathBuf {
    let p = dir.join("body.json");
    std::fs::write(&p, &r.body).unwrap();
    p
}

async fn receive(signature: &str, secret: &str) -> Received {
    let rx = Receiver::start().await;
    let dest = build(&format!(
        "url = \"{}\"\nsigning_secret = \"{secret}\"\nsignature = \"{signature}\"\nallow_private_network = true",
        rx.url("/hook")
    ));
    let d = sample_delivery("sleep", "sig-user", 1);
    let out = dest.deliver(std::slice::from_ref(&d)).await;
    assert_eq!(out[0].class(), "delivered", "{out:?}");
    rx.received().remove(0)
}

#[tokio::test]
async fn terra_signature_verified_by_python() {
    let py = python3();
    let secret = "terra-test-secret-123";
    let r = receive("terra", secret).await;
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), &r);
    let header = r.header("terra-signature").expect("terra-signature header");
    let body_s = body.to_str().unwrap();
    let (ok, out) = run_python(
        &py,
        TERRA_VERIFY,
        &[
            ("SIG_HEADER", &header),
            ("SIG_SECRET", secret),
            ("SIG_BODY", body_s),
        ],
    );
    assert!(ok, "Python rejected our Terra signature: {out}");
    // The same checker refuses a wrong secret and a tampered body (it is not a rubber stamp).
    let (ok, _) = run_python(
        &py,
        TERRA_VERIFY,
        &[
            ("SIG_HEADER", &header),
            ("SIG_SECRET", "wrong"),
            ("SIG_BODY", body_s),
        ],
    );
    assert!(!ok, "the Python checker accepted a wrong secret");
    let mut tampered = r.body.to_vec();
    tampered[10] ^= 1;
    std::fs::write(&body, tampered).unwrap();
    let (ok, _) = run_python(
        &py,
        TERRA_VERIFY,
        &[
            ("SIG_HEADER", &header),
            ("SIG_SECRET", secret),
            ("SIG_BODY", body_s),
        ],
    );
    assert!(!ok, "the Python checker accepted a tampered body");
}

/// A venv with `standardwebhooks` under the target dir, if it installs within 60 s.
fn standardwebhooks_python(py: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standardwebhooks-venv");
    let vpy = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import standardwebhooks"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(&vpy) {
        return Some(vpy);
    }
    let started = Instant::now();
    let ok = Command::new(py)
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("cannot create a venv; verifying Standard Webhooks with hmac/base64 only");
        return None;
    }
    let mut child = Command::new(&vpy)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "standardwebhooks",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            if status.success() && works(&vpy) {
                eprintln!("standardwebhooks installed in {:?}", started.elapsed());
                return Some(vpy);
            }
            eprintln!("pip install standardwebhooks failed; verifying with hmac/base64 only");
            return None;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "pip install standardwebhooks took over 60 s; verifying with hmac/base64 only"
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn standard_webhooks_signature_verified_independently() {
    let py = python3();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let r = receive("both", secret).await;
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), &r);
    let (id, ts, sig) = (
        r.header("webhook-id").expect("webhook-id"),
        r.header("webhook-timestamp").expect("webhook-timestamp"),
        r.header("webhook-signature").expect("webhook-signature"),
    );
    let env = [
        ("SIG_SECRET", secret),
        ("SIG_BODY", body.to_str().unwrap()),
        ("WH_ID", id.as_str()),
        ("WH_TS", ts.as_str()),
        ("WH_SIG", sig.as_str()),
    ];
    let (ok, out) = run_python(&py, STANDARD_VERIFY_HMAC, &env);
    assert!(
        ok,
        "Python (hmac/base64 per the spec) rejected our Standard Webhooks signature: {out}"
    );
    let mut bad = env;
    bad[0] = ("SIG_SECRET", "whsec_d3Jvbmc=");
    assert!(
        !run_python(&py, STANDARD_VERIFY_HMAC, &bad).0,
        "the checker accepted a wrong secret"
    );

    let lib = tokio::task::spawn_blocking(move || standardwebhooks_python(&py))
        .await
        .unwrap();
    if let Some(vpy) = lib {
        let (ok, out) = run_python(vpy.to_str().unwrap(), STANDARD_VERIFY_LIB, &env);
        assert!(
            ok,
            "the standardwebhooks library rejected our signature: {out}"
        );
        assert!(
            !run_python(vpy.to_str().unwrap(), STANDARD_VERIFY_LIB, &bad).0,
            "the library accepted a wrong secret"
        );
    }
    // "both" also carries a Terra signature over the same body, keyed with the secret as written.
    let terra = r.header("terra-signature").unwrap();
    let (ok, out) = run_python(
        "python3",
        TERRA_VERIFY,
        &[
            ("SIG_HEADER", &terra),
            ("SIG_SECRET", secret),
            ("SIG_BODY", body.to_str().unwrap()),
        ],
    );
    assert!(ok, "{out}");
}

#[tokio::test]
async fn raw_secret_without_whsec_prefix_is_used_as_bytes() {
    let py = python3();
    let secret = "plain-secret-no-prefix";
    let r = receive("standard", secret).await;
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), &r);
    let env = [
        ("SIG_SECRET", secret),
        ("SIG_BODY", body.to_str().unwrap()),
        ("WH_ID", &r.header("webhook-id").unwrap()),
        ("WH_TS", &r.header("webhook-timestamp").unwrap()),
        ("WH_SIG", &r.header("webhook-signature").unwrap()),
    ];
    let (ok, out) = run_python(&py, STANDARD_VERIFY_HMAC, &env);
    assert!(ok, "{out}");
}

/// Terra's own Python SDK (`terra-python` on PyPI) verifies our signature: its
/// `terra/utils/verify_signature.py` is loaded straight from the installed wheel (the module only
/// needs the standard library, so the SDK's HTTP dependencies are not installed).
const TERRA_SDK_VERIFY: &str = r#"
import importlib.util, os, sys, glob
site = os.environ["SDK_DIR"]
path = glob.glob(os.path.join(site, "terra", "utils", "verify_signature.py"))[0]
spec = importlib.util.spec_from_file_location("terra_verify_signature", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
body = open(os.environ["SIG_BODY"], "rb").read().decode("utf-8")
try:
    ok = mod.verify_terra_webhook_signature(body, os.environ["SIG_HEADER"], os.environ["SIG_SECRET"])
except mod.WebhookVerificationError as e:
    print("refused:", e); sys.exit(1)
print("OK" if ok else "refused"); sys.exit(0 if ok else 1)
"#;

#[tokio::test]
async fn terra_signature_verified_by_terras_own_sdk() {
    let py = python3();
    let sdk = Path::new(env!("CARGO_TARGET_TMPDIR")).join("terra-python-sdk");
    if !sdk.join("terra/utils/verify_signature.py").exists() {
        let out = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&sdk)
            .arg("terra-python==1.1.0")
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "installing Terra's SDK (pip install terra-python==1.1.0) failed; PyPI must be reachable for this test: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secret = "terra-sdk-secret";
    let r = receive("terra", secret).await;
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), &r);
    let header = r.header("terra-signature").expect("terra-signature header");
    let env = |s: &'static str| {
        vec![
            ("SDK_DIR", sdk.to_str().unwrap().to_string()),
            ("SIG_HEADER", header.clone()),
            ("SIG_SECRET", s.to_string()),
            ("SIG_BODY", body.to_str().unwrap().to_string()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let good = as_refs(&env(secret));
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out) = run_python(&py, TERRA_SDK_VERIFY, &good);
    assert!(ok, "Terra's SDK rejected our signature: {out}");
    let bad = as_refs(&env("not-the-secret"));
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, _) = run_python(&py, TERRA_SDK_VERIFY, &bad);
    assert!(
        !ok,
        "Terra's SDK accepted a wrong secret: the test proves nothing"
    );
}
