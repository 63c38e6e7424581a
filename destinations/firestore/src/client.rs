//! The gRPC connection (lazy: building a destination does no I/O), authentication, and the
//! classification of what Firestore answered.

use std::sync::Arc;
use std::time::Duration;

use gcloud_sdk::google::firestore::v1::firestore_client::FirestoreClient;
use gcloud_sdk::google_cloud_auth::credentials::anonymous;
use gcloud_sdk::tonic::codegen::http::{HeaderName, HeaderValue};
use gcloud_sdk::tonic::transport::{ClientTlsConfig, Endpoint};
use gcloud_sdk::tonic::{Code, Status};
use gcloud_sdk::{GoogleAuthHeaders, GoogleAuthMiddleware, HeaderMap};

use crate::{GOOGLE_ENDPOINT, Settings, Target};

/// OAuth scope for Firestore's data plane.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datastore";
/// Time limit of one RPC (the engine's own `timeout` usually cuts a batch shorter).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub type Client = FirestoreClient<GoogleAuthMiddleware>;

/// Why something failed: retrying may help, or it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Retry(String),
    Permanent(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retry(r) | Failure::Permanent(r) => r,
        }
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }
}

/// A connected (lazily) client and its credentials.
pub struct Conn {
    pub client: Client,
    pub auth: Arc<GoogleAuthHeaders>,
}

/// Percent-encode a routing-header value (`x-goog-request-params`).
fn encode_param(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Build the client. Reads the service-account key file (the only I/O, done on first use).
pub async fn connect(settings: &Settings) -> Result<Conn, Failure> {
    let mut extra = HeaderMap::new();
    let (url, auth) = match &settings.target {
        Target::Emulator { url } => {
            // The Firebase tools' convention: emulators treat `Bearer owner` as an admin.
            extra.insert(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer owner"),
            );
            (
                url.clone(),
                GoogleAuthHeaders::from(anonymous::Builder::new().build()),
            )
        }
        Target::Google { credentials_file } => {
            let shown = credentials_file.display();
            let raw = tokio::fs::read_to_string(credentials_file)
                .await
                .map_err(|e| {
                    Failure::Permanent(format!(
                        "cannot read credentials_file `{shown}`: {e}; point it at a service-account JSON key"
                    ))
                })?;
            let key: serde_json::Value = serde_json::from_str(&raw).map_err(|e| {
                Failure::Permanent(format!(
                    "credentials_file `{shown}` is not JSON ({e}); download a service-account key from IAM → Service accounts → Keys → Add key → JSON"
                ))
            })?;
            if key.get("type").and_then(|t| t.as_str()) != Some("service_account") {
                return Err(Failure::Permanent(format!(
                    "credentials_file `{shown}` is not a service-account key (its `type` is not \"service_account\"); download one from IAM → Service accounts → Keys → Add key → JSON"
                )));
            }
            let auth = GoogleAuthHeaders::from_service_account_key(key, vec![SCOPE.to_string()])
                .await
                .map_err(|e| {
                    Failure::Permanent(format!("credentials_file `{shown}` cannot be used: {e}"))
                })?;
            (GOOGLE_ENDPOINT.to_string(), auth)
        }
    };
    let database = settings.database_path();
    if let Ok(v) = HeaderValue::from_str(&format!("database={}", encode_param(&database))) {
        extra.insert(HeaderName::from_static("x-goog-request-params"), v);
    }
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::Permanent(format!("`{url}` is not a usable endpoint: {e}")))?
        .connect_timeout(settings.connect_timeout)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(host) = url.strip_prefix("https://") {
        let host = host.split([':', '/']).next().unwrap_or(host).to_string();
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_webpki_roots().domain_name(host))
            .map_err(|e| Failure::Permanent(format!("TLS setup for `{url}` failed: {e}")))?;
    }
    let auth = Arc::new(auth);
    let mut service =
        GoogleAuthMiddleware::new(endpoint.connect_lazy(), Arc::clone(&auth), Some(database))
            .map_err(|e| Failure::Permanent(format!("cannot set up the Firestore client: {e}")))?;
    service.set_additional_headers(extra);
    let client = FirestoreClient::new(service)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    Ok(Conn { client, auth })
}

/// Classify a failure to get an access token.
pub fn classify_auth(e: &gcloud_sdk::error::Error) -> Failure {
    use gcloud_sdk::error::ErrorKind;
    match e.kind() {
        ErrorKind::Credentials(c) if c.is_transient() => Failure::Retry(format!(
            "could not get an access token for Firestore (will retry): {c}"
        )),
        ErrorKind::Http(_) => Failure::Retry(format!(
            "could not get an access token for Firestore (will retry): {e}"
        )),
        _ => Failure::Permanent(format!(
            "Google refused the service-account key in credentials_file: {e}; check that the key is current (IAM → Service accounts → Keys) and not deleted"
        )),
    }
}

/// The whole `source()` chain of an error, for messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push(text);
        }
        cur = s.source();
    }
    out.join(": ")
}

/// A credentials error that travelled inside a status (the middleware fetches tokens).
fn auth_error(status: &Status) -> Option<Failure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(status as &(dyn std::error::Error + 'static));
    while let Some(e) = cur {
        if let Some(g) = e.downcast_ref::<gcloud_sdk::error::Error>() {
            return Some(classify_auth(g));
        }
        if let Some(g) = e.downcast_ref::<Box<gcloud_sdk::error::Error>>() {
            return Some(classify_auth(g));
        }
        cur = e.source();
    }
    None
}

/// Classify a gRPC status from `rpc` (e.g. "Commit").
pub fn classify(rpc: &str, status: &Status) -> Failure {
    if let Some(f) = auth_error(status) {
        return f;
    }
    let detail = {
        let c = chain(status);
        let m = status.message();
        match (m.is_empty(), c.is_empty()) {
            (true, true) => String::new(),
            (false, true) => m.to_string(),
            (true, false) => c,
            (false, false) if m.contains(&c) => m.to_string(),
            (false, false) => format!("{m} ({c})"),
        }
    };
    let code = status.code();
    let what = format!("Firestore {rpc} failed: {code:?}: {detail}");
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled
        | Code::AlreadyExists => Failure::Retry(what),
        Code::FailedPrecondition if detail.contains("Datastore Mode") => {
            Failure::Permanent(format!(
                "{what}; this database is in Datastore mode, which the Firestore API cannot write: use a database in Firestore Native mode"
            ))
        }
        Code::FailedPrecondition if detail.contains("requires an index") => {
            Failure::Permanent(format!(
                "{what}; the lookup of `_manifold_key` needs Firestore's automatic single-field index: remove any index exemption on that field"
            ))
        }
        // Our preconditions: someone else wrote the document meanwhile.
        Code::FailedPrecondition => Failure::Retry(what),
        Code::PermissionDenied => Failure::Permanent(format!(
            "{what}; grant the service account the Cloud Datastore User role (roles/datastore.user) on the project, and enable the Firestore API"
        )),
        Code::Unauthenticated => Failure::Permanent(format!(
            "{what}; the credentials were refused: use a current service-account key"
        )),
        Code::NotFound => Failure::Permanent(format!(
            "{what}; check `project_id` and `database` (create the database in the console: Firestore → Create database, Native mode)"
        )),
        Code::Unimplemented => Failure::Permanent(format!(
            "{what}; the server does not implement this call (an incomplete emulator?)"
        )),
        _ => Failure::Permanent(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Unknown,
            Code::FailedPrecondition,
        ] {
            assert!(
                !classify("Commit", &Status::new(c, "x")).is_permanent(),
                "{c:?}"
            );
        }
        for c in [
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::InvalidArgument,
            Code::NotFound,
            Code::Unimplemented,
        ] {
            assert!(
                classify("Commit", &Status::new(c, "x")).is_permanent(),
                "{c:?}"
            );
        }
        let f = classify(
            "Commit",
            &Status::new(
                Code::PermissionDenied,
                "Missing or insufficient permissions.",
            ),
        );
        assert!(f.reason().contains("roles/datastore.user"), "{f:?}");
        assert!(
            classify(
                "Commit",
                &Status::new(
                    Code::FailedPrecondition,
                    "The Cloud Firestore API is not available for Firestore in Datastore Mode database"
                )
            )
            .is_permanent()
        );
    }

    #[test]
    fn routing_header_is_percent_encoded() {
        assert_eq!(
            encode_param("projects/p/databases/(default)"),
            "projects%2Fp%2Fdatabases%2F%28default%29"
        );
    }
}
