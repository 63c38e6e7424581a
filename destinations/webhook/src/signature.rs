//! Signing and verifying webhook bodies.
//!
//! Two schemes are supported:
//!
//! * **Terra** (`terra-signature: t=<unix seconds>,v1=<hex>`): the hex is the lowercase
//!   HMAC-SHA256 of `"<t>.<raw body>"` keyed with the signing secret's bytes, exactly as Terra
//!   signs its webhooks, so Terra's SDK verifiers accept it.
//! * **Standard Webhooks** (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64>`): the base64 is the HMAC-SHA256 of
//!   `"<id>.<timestamp>.<raw body>"`. The key is the base64-decoded part after `whsec_` of the
//!   secret; a secret without the `whsec_` prefix is used as raw bytes (its UTF-8 encoding).
//!
//! These functions are public so receivers (and the demo) can verify what Manifold sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The Terra signature header value: `t=<ts>,v1=<lowercase hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn terra_signature(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let t = ts.to_string();
    let mac = hmac(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

/// Verify a `terra-signature` header the way a receiver should: parse `t=` and every `v1=`,
/// recompute the HMAC over `"<t>.<body>"`, compare in constant time, and refuse timestamps more
/// than `tolerance` away from now (replay protection). A zero tolerance disables the time check.
pub fn verify_terra_signature(
    header: &str,
    body: &[u8],
    secret: &[u8],
    tolerance: std::time::Duration,
) -> bool {
    let mut ts: Option<&str> = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => ts = Some(v),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(ts) = ts else { return false };
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    if !tolerance.is_zero() {
        let now = chrono::Utc::now().timestamp();
        if now.abs_diff(t) > tolerance.as_secs() {
            return false;
        }
    }
    let expected = hmac(secret, &[ts.as_bytes(), b".", body]);
    sigs.iter().any(|s| {
        hex::decode(s).is_ok_and(|given| given.len() == 32 && bool::from(given.ct_eq(&expected)))
    })
}

/// The Standard Webhooks signing key for a secret: the base64-decoded part after `whsec_`, or the
/// secret's raw bytes when it has no `whsec_` prefix. Errors when the part after `whsec_` is not
/// valid base64.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => B64
            .decode(b64)
            .map_err(|e| format!("the part after `whsec_` is not valid base64 ({e})")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The Standard Webhooks `webhook-signature` value: `v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`.
pub fn standard_signature(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    let t = ts.to_string();
    let mac = hmac(key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn terra_round_trip_and_tamper() {
        let now = chrono::Utc::now().timestamp();
        let h = terra_signature(b"s3cret", now, b"{\"a\":1}");
        assert!(h.starts_with(&format!("t={now},v1=")));
        assert!(verify_terra_signature(
            &h,
            b"{\"a\":1}",
            b"s3cret",
            Duration::from_secs(300)
        ));
        assert!(!verify_terra_signature(
            &h,
            b"{\"a\":2}",
            b"s3cret",
            Duration::from_secs(300)
        ));
        assert!(!verify_terra_signature(
            &h,
            b"{\"a\":1}",
            b"other",
            Duration::from_secs(300)
        ));
        let old = terra_signature(b"s3cret", now - 3600, b"x");
        assert!(!verify_terra_signature(
            &old,
            b"x",
            b"s3cret",
            Duration::from_secs(300)
        ));
        assert!(verify_terra_signature(
            &old,
            b"x",
            b"s3cret",
            Duration::ZERO
        ));
        assert!(!verify_terra_signature(
            "garbage",
            b"x",
            b"s3cret",
            Duration::ZERO
        ));
        assert!(!verify_terra_signature(
            "t=1,v1=zz",
            b"x",
            b"s3cret",
            Duration::ZERO
        ));
    }

    #[test]
    fn standard_webhooks_spec_vector() {
        // Test vector from the Standard Webhooks reference libraries.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(standard_key("plain").unwrap(), b"plain");
        assert!(standard_key("whsec_***").is_err());
    }
}
