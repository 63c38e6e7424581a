//! Service-account auth: the RS256 JWT and the V4 signed URL, checked against independent
//! implementations (the openssl CLI, and `v4sign.py` — Google's documented Python sample), and
//! the token exchange against a local stand-in token endpoint together with the real local GCS
//! server. Real Google endpoints are not reachable here; see the README for what that leaves.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{TimeZone, Utc};
use common::{Bucket, build};
use manifold_core::destination::{BuildContext, Outcome};
use manifold_core::testkit::sample_delivery;
use manifold_gcs::auth::ServiceAccount;
use serde_json::{Value, json};

const EMAIL: &str = "manifold-test@my-project.iam.gserviceaccount.com";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (openssl and python3 are needed)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Removes the key directory when the test ends (also on failure).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh RSA key (PKCS#8 `key.pem`, PKCS#1 `key1.pem`, public `pub.pem`) made by openssl.
fn keys() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manifold-gcs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(p("key.pem")));
    run(Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("key1.pem")));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("pub.pem")));
    dir
}

fn key_json(dir: &Path, pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "kid-1",
        "private_key": std::fs::read_to_string(dir.join(pem)).unwrap(),
        "client_email": EMAIL,
        "token_uri": token_uri,
    })
    .to_string()
}

/// openssl's verdict on an RSA-SHA256 signature over `msg`.
fn openssl_verifies(dir: &Path, msg: &[u8], sig: &[u8]) -> bool {
    let m = dir.join(format!("msg-{}", uuid::Uuid::new_v4()));
    let s = dir.join(format!("sig-{}", uuid::Uuid::new_v4()));
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(dir.join("pub.pem"))
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn v4_signed_url_matches_googles_python_sample() {
    let dir = keys();
    let _cleanup = Cleanup(dir.clone());
    let origin = "https://storage.googleapis.com";
    let object = "terra/2022-03-16/claim-check/sleep/u 1-ü+x~y.json";
    let now = Utc.with_ymd_and_hms(2026, 3, 12, 14, 30, 5).unwrap();
    for pem in ["key.pem", "key1.pem"] {
        let sa =
            ServiceAccount::from_json(&key_json(&dir, pem, "https://oauth2.googleapis.com/token"))
                .unwrap();
        let ours = sa.signed_url(origin, "my-bucket", object, now, 600);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/v4sign.py");
        let theirs = String::from_utf8(run(Command::new("python3")
            .arg(script)
            .arg(dir.join("key.pem"))
            .args([
                EMAIL,
                origin,
                "my-bucket",
                object,
                "20260312T143005Z",
                "600",
            ])))
        .unwrap();
        assert_eq!(ours, theirs.trim(), "key {pem}");
        assert!(ours.starts_with(
            "https://storage.googleapis.com/my-bucket/terra/2022-03-16/claim-check/sleep/u%201-%C3%BC%2Bx~y.json?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=manifold-test%40my-project.iam.gserviceaccount.com%2F20260312%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20260312T143005Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host&x-goog-signature="
        ), "{ours}");
    }
}

#[test]
fn jwt_is_rs256_signed_with_the_key_and_names_the_token_endpoint() {
    let dir = keys();
    let _cleanup = Cleanup(dir.clone());
    let sa = ServiceAccount::from_json(&key_json(
        &dir,
        "key.pem",
        "https://oauth2.googleapis.com/token",
    ))
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 3, 12, 14, 30, 5).unwrap();
    let jwt = sa.jwt(now);
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
    );
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
    assert_eq!(claims["scope"], manifold_gcs::auth::SCOPE);
    assert_eq!(claims["iat"], now.timestamp());
    assert_eq!(claims["exp"], now.timestamp() + 3600);
    let sig = B64URL.decode(parts[2]).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    assert!(
        openssl_verifies(&dir, input.as_bytes(), &sig),
        "openssl rejects the JWT signature"
    );
    assert!(!openssl_verifies(&dir, b"something else", &sig));
}

#[test]
fn bad_key_files_say_what_to_do() {
    let e = ServiceAccount::from_json("{").unwrap_err();
    assert!(e.contains("service-account JSON key"), "{e}");
    let e = ServiceAccount::from_json(r#"{"type":"authorized_user"}"#).unwrap_err();
    assert!(e.contains("authorized_user"), "{e}");
    let e = ServiceAccount::from_json(
        r#"{"type":"service_account","client_email":"a@b","private_key":"nope"}"#,
    )
    .unwrap_err();
    assert!(e.contains("not an RSA PEM key"), "{e}");
}

/// A stand-in OAuth token endpoint: records each assertion, answers `status` with `body`.
async fn token_server(status: u16, body: Value) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |form: String| {
            let s = s.clone();
            let body = body.clone();
            async move {
                s.lock().unwrap().push(form);
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(body),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/token"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_is_exchanged_once_and_cached() {
    let dir = keys();
    let _cleanup = Cleanup(dir.clone());
    let (uri, seen) = token_server(
        200,
        json!({"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer"}),
    )
    .await;
    let file = dir.join("sa.json");
    std::fs::write(&file, key_json(&dir, "key.pem", &uri)).unwrap();
    let bucket = Bucket::new().await;
    let dest = build(
        &bucket.toml(&format!("credentials_file = \"{}\"", file.display())),
        &BuildContext::default(),
        "gcs",
    );
    let a = sample_delivery("sleep", "sa-user", 1);
    let b = sample_delivery("daily", "sa-user", 2);
    for d in [&a, &b] {
        let out = dest.deliver(std::slice::from_ref(d)).await;
        assert!(matches!(out[0], Outcome::Delivered { .. }), "{out:?}");
    }
    let forms = seen.lock().unwrap().clone();
    assert_eq!(
        forms.len(),
        1,
        "one token exchange for two deliveries: {forms:?}"
    );
    let form = &forms[0];
    assert!(
        form.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{form}"
    );
    let jwt = form.split("assertion=").nth(1).unwrap();
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    assert!(openssl_verifies(
        &dir,
        input.as_bytes(),
        &B64URL.decode(sig).unwrap()
    ));
    let claims: Value =
        serde_json::from_slice(&B64URL.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["aud"], uri);

    // With a key, claim-check links are V4-signed (fake-gcs-server serves them without checking
    // the signature, so this proves the URL shape and path, not Google's verdict).
    let store = BuildContext::default();
    let dest2 = manifold_gcs::GcsFactory;
    let table: toml::Table = toml::from_str(&bucket.toml(&format!(
        "credentials_file = \"{}\"\nprefix = \"cc\"",
        file.display()
    )))
    .unwrap();
    manifold_core::destination::DestinationFactory::build(&dest2, "gcs", table, &store).unwrap();
    let blob = store.blob_stores.get("gcs").unwrap();
    let msg = manifold_core::blob::claim_check(
        blob.as_ref(),
        "",
        &a,
        std::time::Duration::from_secs(300),
    )
    .await
    .unwrap();
    let url = msg["url"].as_str().unwrap();
    assert!(
        url.contains("X-Goog-Algorithm=GOOG4-RSA-SHA256") && url.contains("x-goog-signature="),
        "{url}"
    );
    assert!(url.contains("X-Goog-Expires=300"), "{url}");
    let got = reqwest::get(url).await.unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.unwrap().as_ref(), a.body.as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_permanent_and_an_unreadable_file_too() {
    let dir = keys();
    let _cleanup = Cleanup(dir.clone());
    let (uri, _) = token_server(
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )
    .await;
    let file = dir.join("sa.json");
    std::fs::write(&file, key_json(&dir, "key.pem", &uri)).unwrap();
    let bucket = Bucket::new().await;
    let dest = build(
        &bucket.toml(&format!("credentials_file = \"{}\"", file.display())),
        &BuildContext::default(),
        "gcs",
    );
    let d = sample_delivery("sleep", "refused", 1);
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(
                reason.contains("Invalid JWT Signature") && reason.contains("credentials_file"),
                "{reason}"
            )
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    assert!(dest.check().await.is_err());

    let dest = build(
        &bucket.toml("credentials_file = \"/nonexistent/key.json\""),
        &BuildContext::default(),
        "gcs",
    );
    match &dest.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(reason.contains("/nonexistent/key.json"), "{reason}")
        }
        o => panic!("expected Permanent, got {o:?}"),
    }
    assert!(bucket.names("").await.is_empty(), "nothing may be written");
}
