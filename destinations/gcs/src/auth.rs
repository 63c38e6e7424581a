//! Service-account credentials: the OAuth 2.0 JWT-bearer assertion (RS256) and V4 signed URLs
//! (`GOOG4-RSA-SHA256`). Pure functions apart from [`ServiceAccount::load`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rsa::PrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::{Digest, Sha256};
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;
use serde_json::json;

/// Scope of the access tokens requested (object read/write; no bucket administration).
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Google's token endpoint (used when the key file names none).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (object names in paths).
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Percent-encode an object name for a URL path (keeps `/`).
pub fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// Percent-encode a query value or a single path segment (encodes `/`).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A loaded service-account key.
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    key: SigningKey<Sha256>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parse a service-account JSON key (as downloaded from IAM → Service accounts → Keys).
    pub fn from_json(src: &str) -> Result<ServiceAccount, String> {
        let f: KeyFile = serde_json::from_str(src).map_err(|e| {
            format!("is not a service-account JSON key ({e}); download one from IAM → Service accounts → Keys")
        })?;
        if let Some(k) = &f.kind
            && k != "service_account"
        {
            return Err(format!(
                "holds credentials of type `{k}`, not `service_account`; download a service-account key from IAM → Service accounts → Keys"
            ));
        }
        let email = f.client_email.filter(|e| !e.is_empty()).ok_or(
            "has no `client_email`; download the key again from IAM → Service accounts → Keys",
        )?;
        let pem = f.private_key.filter(|e| !e.is_empty()).ok_or(
            "has no `private_key`; download the key again from IAM → Service accounts → Keys",
        )?;
        let key = PrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| PrivateKey::from_pkcs1_pem(&pem))
            .map_err(|e| format!("has a `private_key` that is not an RSA PEM key ({e})"))?;
        Ok(ServiceAccount {
            client_email: email,
            private_key_id: f.private_key_id,
            token_uri: f
                .token_uri
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string()),
            key: SigningKey::<Sha256>::new(key),
        })
    }

    /// Read and parse the key file (blocking file read; small).
    pub fn load(path: &std::path::Path) -> Result<ServiceAccount, String> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "`credentials_file` {}: cannot read it ({e}); fix the path or the file's permissions",
                path.display()
            )
        })?;
        Self::from_json(&src).map_err(|e| format!("`credentials_file` {} {e}", path.display()))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).to_vec()
    }

    /// The signed JWT asserted to the token endpoint (valid for one hour from `now`).
    pub fn jwt(&self, now: DateTime<Utc>) -> String {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let iat = now.timestamp();
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = B64URL.encode(self.sign(signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    /// A V4 signed URL (`GOOG4-RSA-SHA256`) that GETs `object` of `bucket` for `expires_secs`
    /// from `now`, on `origin` (`https://storage.googleapis.com`, or an emulator's origin).
    pub fn signed_url(
        &self,
        origin: &str,
        bucket: &str,
        object: &str,
        now: DateTime<Utc>,
        expires_secs: u64,
    ) -> String {
        let parts = v4_parts(
            &self.client_email,
            origin,
            bucket,
            object,
            now,
            expires_secs,
        );
        let sig = hex::encode(self.sign(parts.string_to_sign.as_bytes()));
        format!(
            "{}{}?{}&x-goog-signature={sig}",
            origin.trim_end_matches('/'),
            parts.canonical_uri,
            parts.canonical_query
        )
    }
}

/// The pieces of a V4 signature (exposed for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Parts {
    pub canonical_uri: String,
    pub canonical_query: String,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Build the canonical request and string to sign per Google's V4 signing process.
pub fn v4_parts(
    email: &str,
    origin: &str,
    bucket: &str,
    object: &str,
    now: DateTime<Utc>,
    expires_secs: u64,
) -> V4Parts {
    let host = origin
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(origin)
        .trim_end_matches('/');
    let timestamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let datestamp = now.format("%Y%m%d").to_string();
    let scope = format!("{datestamp}/auto/storage/goog4_request");
    let canonical_uri = format!("/{bucket}/{}", encode_path(object));
    let params = [
        ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_string()),
        ("X-Goog-Credential", format!("{email}/{scope}")),
        ("X-Goog-Date", timestamp.clone()),
        ("X-Goog-Expires", expires_secs.to_string()),
        ("X-Goog-SignedHeaders", "host".to_string()),
    ];
    let canonical_query = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = [
        "GET",
        &canonical_uri,
        &canonical_query,
        &format!("host:{host}\n"),
        "host",
        "UNSIGNED-PAYLOAD",
    ]
    .join("\n");
    let string_to_sign = format!(
        "GOOG4-RSA-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    V4Parts {
        canonical_uri,
        canonical_query,
        canonical_request,
        string_to_sign,
    }
}
