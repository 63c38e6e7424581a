//! Shared Access Signatures: pure functions, no I/O.
//!
//! A service SAS (Microsoft's "Create a service SAS", signed version 2020-12-06 and later: 16
//! lines including the encryption scope) is computed with HMAC-SHA256 over the account key. The
//! destination signs a short-lived container SAS (`sr=c`) for its own writes and a read-only blob
//! SAS (`sr=b`, `sp=r`) for claim-check links, so the account key never leaves the process.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// The REST API version sent as `x-ms-version` and signed into every SAS.
pub const API_VERSION: &str = "2022-11-02";

/// Everything but RFC 3986 unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Path segments: the same, and `/` stays a separator.
const PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Percent-encode a blob name for the URL path (keeps `/`).
pub fn encode_path(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}

/// Percent-encode one query value.
pub fn encode_query(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// What a SAS grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasRequest<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// `None`: a container SAS (`sr=c`); `Some(name)`: a blob SAS (`sr=b`).
    pub blob: Option<&'a str>,
    /// Permissions in Azure's canonical order, e.g. `r`, `cw`, `cwd`.
    pub permissions: &'a str,
    pub expiry: DateTime<Utc>,
}

/// The string Azure signs for a service SAS (version 2020-12-06 and later).
pub fn string_to_sign(r: &SasRequest<'_>) -> String {
    let resource = match r.blob {
        Some(b) => format!("/blob/{}/{}/{b}", r.account, r.container),
        None => format!("/blob/{}/{}", r.account, r.container),
    };
    let sr = if r.blob.is_some() { "b" } else { "c" };
    [
        r.permissions,
        "", // signedStart
        &expiry(r.expiry),
        &resource,
        "", // signedIdentifier
        "", // signedIP
        "", // signedProtocol
        API_VERSION,
        sr,
        "", // signedSnapshotTime
        "", // signedEncryptionScope
        "", // rscc
        "", // rscd
        "", // rsce
        "", // rscl
        "", // rsct
    ]
    .join("\n")
}

fn expiry(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The SAS query string (without `?`) for `r`, signed with the base64-decoded account key.
pub fn service_sas(r: &SasRequest<'_>, key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(string_to_sign(r).as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!(
        "sv={API_VERSION}&sr={}&sp={}&se={}&sig={}",
        if r.blob.is_some() { "b" } else { "c" },
        encode_query(r.permissions),
        encode_query(&expiry(r.expiry)),
        encode_query(&sig)
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn string_to_sign_has_sixteen_lines_in_order() {
        let r = SasRequest {
            account: "acct",
            container: "terra",
            blob: Some("a/b c.json"),
            permissions: "r",
            expiry: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        };
        let s = string_to_sign(&r);
        assert_eq!(
            s,
            "r\n\n2026-01-02T03:04:05Z\n/blob/acct/terra/a/b c.json\n\n\n\n2022-11-02\nb\n\n\n\n\n\n\n"
        );
        assert_eq!(s.split('\n').count(), 16);
    }

    #[test]
    fn query_is_encoded() {
        let r = SasRequest {
            account: "acct",
            container: "terra",
            blob: None,
            permissions: "cw",
            expiry: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        };
        let q = service_sas(&r, b"key");
        assert!(
            q.starts_with("sv=2022-11-02&sr=c&sp=cw&se=2026-01-02T03%3A04%3A05Z&sig="),
            "{q}"
        );
        assert!(!q["sv=".len()..].contains('+') && !q.contains('/'), "{q}");
        assert_eq!(
            encode_path("t/2022-03-16/u-2026-07-01T00:00:00+00:00.json"),
            "t/2022-03-16/u-2026-07-01T00%3A00%3A00%2B00%3A00.json"
        );
    }
}
