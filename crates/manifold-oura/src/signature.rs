//! Oura webhook verification: `x-oura-signature` = upper-case hex
//! HMAC-SHA256(client secret, `x-oura-timestamp` ‖ raw body), compared in constant time, and a
//! freshness check on the timestamp (Oura documents none; we refuse replays outside a window).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("x-oura-timestamp `{0}` is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error("x-oura-timestamp is {0}s away from now, outside the accepted window")]
    Stale(i64),
    #[error("x-oura-signature does not match the body")]
    Mismatch,
}

/// The signature Oura sends for `timestamp` and `body` (upper-case hex).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(body);
    hex::encode_upper(mac.finalize().into_bytes())
}

/// Parse `x-oura-timestamp` into Unix seconds. Accepts seconds, milliseconds (13+ digits,
/// fractional seconds) and RFC 3339.
pub fn parse_timestamp(ts: &str) -> Option<i64> {
    let t = ts.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Some(if n.abs() >= 100_000_000_000 {
            n / 1000
        } else {
            n
        });
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return Some(f as i64);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp())
}

/// Verify a notification. `now` is Unix seconds. The signature is checked first (over the raw
/// bytes, in constant time), then the timestamp's distance from `now`.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::Missing("x-oura-timestamp"))?;
    let signature = signature.ok_or(SignatureError::Missing("x-oura-signature"))?;
    let expected = sign(secret, timestamp, body);
    let given = signature.trim().to_ascii_uppercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(SignatureError::Mismatch);
    }
    let ts = parse_timestamp(timestamp)
        .ok_or_else(|| SignatureError::BadTimestamp(timestamp.chars().take(40).collect()))?;
    let skew = now - ts;
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Duration = Duration::from_secs(300);

    #[test]
    fn round_trip_and_tamper() {
        let body = br#"{"event_type":"create"}"#;
        let sig = sign(b"s3cret", "1700000000", body);
        assert_eq!(sig, sig.to_ascii_uppercase());
        assert_eq!(sig.len(), 64);
        assert!(
            verify(
                b"s3cret",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_000_010,
                TOL
            )
            .is_ok()
        );
        // lower-case hex is accepted too
        let lower = sig.to_ascii_lowercase();
        assert!(
            verify(
                b"s3cret",
                Some("1700000000"),
                Some(&lower),
                body,
                1_700_000_010,
                TOL
            )
            .is_ok()
        );
        assert_eq!(
            verify(
                b"other",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_000_010,
                TOL
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"s3cret",
                Some("1700000001"),
                Some(&sig),
                body,
                1_700_000_010,
                TOL
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"s3cret",
                Some("1700000000"),
                Some(&sig),
                b"{}",
                1_700_000_010,
                TOL
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"s3cret",
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_001_000,
                TOL
            ),
            Err(SignatureError::Stale(1000))
        );
        assert_eq!(
            verify(b"s3cret", None, Some(&sig), body, 0, TOL),
            Err(SignatureError::Missing("x-oura-timestamp"))
        );
    }

    #[test]
    fn timestamp_forms() {
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("1700000000123"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("1700000000.5"), Some(1_700_000_000));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20+00:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
