//! What a MongoDB error means for the delivery: retry, or permanent with the fix.

use manifold_core::destination::Outcome;
use mongodb::error::{Error, ErrorKind, RETRYABLE_WRITE_ERROR};

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Transient: connection, server selection, elections, write conflicts, time limits.
    Retry(String),
    /// Credentials or privileges: nothing in the batch can succeed until an operator acts.
    Access(String),
    /// Something about one document (too large, invalid, refused by a validator).
    Permanent(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retry(r) | Failure::Access(r) | Failure::Permanent(r) => r,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Failure::Retry(r) => Outcome::retry(r.clone()),
            Failure::Access(r) | Failure::Permanent(r) => Outcome::permanent(r.clone()),
        }
    }
}

/// Server error codes that go away by themselves.
const RETRY_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    24,    // LockTimeout
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    117,   // ConflictingOperationInProgress
    133,   // FailedToSatisfyReadPreference
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    202,   // NetworkInterfaceExceededTimeLimit
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
    64,    // WriteConcernFailed
    16500, // Atlas: rate limited / request timed out
    251,   // NoSuchTransaction
    384,   // TransientTransactionError-style ConnectionPoolExpired
];

/// Codes that mean the credentials or privileges are wrong.
const ACCESS_CODES: &[i32] = &[
    13,   // Unauthorized
    18,   // AuthenticationFailed
    8000, // AtlasError (bad auth, user not allowed)
];

/// Who needs which role, for hints.
#[derive(Debug, Clone)]
pub struct Hint {
    pub database: String,
}

impl Hint {
    pub fn grant(&self) -> String {
        format!(
            "give the user in `uri` the readWrite role on database `{}` (Atlas: Database Access → \"Read and write to any database\" or a custom role with find, insert, update, remove, createIndex)",
            self.database
        )
    }
}

/// Classify one server error code from a command or a write error.
pub fn classify_code(code: i32, message: &str, hint: &Hint) -> Failure {
    if ACCESS_CODES.contains(&code) {
        return Failure::Access(format!(
            "MongoDB refused the operation (code {code}: {message}): {}",
            hint.grant()
        ));
    }
    if RETRY_CODES.contains(&code) {
        return Failure::Retry(format!(
            "MongoDB is temporarily unavailable (code {code}: {message})"
        ));
    }
    let fix = match code {
        2 | 10334 | 17419 if code != 2 || message.to_ascii_lowercase().contains("too large") => {
            "the document exceeds MongoDB's 16 MiB limit; this record cannot be stored as one document"
        }
        121 => {
            "a collection validator refused the document: relax the validator for Terra payloads"
        }
        26 => {
            "the namespace does not exist and cannot be created: check `database` and `collection_prefix`"
        }
        73 => {
            "the database or collection name is invalid: check `database` and `collection_prefix`"
        }
        11000 => "a unique index other than _id refused the document: drop that index",
        _ => "the server refused the document",
    };
    Failure::Permanent(format!("MongoDB error code {code} ({message}): {fix}"))
}

/// Classify a driver error.
pub fn classify(err: &Error, hint: &Hint) -> Failure {
    if err.contains_label(RETRYABLE_WRITE_ERROR) {
        return Failure::Retry(format!("MongoDB asked to retry: {err}"));
    }
    match err.kind.as_ref() {
        ErrorKind::Authentication { message, .. } => Failure::Access(format!(
            "MongoDB refused the credentials in `uri` ({message}): check the user name and password (and `authSource`) in `uri`"
        )),
        ErrorKind::Command(c) => classify_code(c.code, &c.message, hint),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            classify_code(w.code, &w.message, hint)
        }
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(w)) => {
            Failure::Retry(format!(
                "MongoDB write concern failed (code {}: {})",
                w.code, w.message
            ))
        }
        ErrorKind::ServerSelection { message, .. } => Failure::Retry(format!(
            "MongoDB is not reachable (no server available within the connect timeout): {}",
            first_line(message)
        )),
        ErrorKind::Io(e) => Failure::Retry(format!("MongoDB connection failed: {e}")),
        ErrorKind::ConnectionPoolCleared { message, .. } => {
            Failure::Retry(format!("MongoDB connection pool was reset: {message}"))
        }
        ErrorKind::DnsResolve { message, .. } => Failure::Retry(format!(
            "cannot resolve the MongoDB host in `uri` ({message}); check the host name if this persists"
        )),
        ErrorKind::InvalidTlsConfig { message, .. } => Failure::Access(format!(
            "MongoDB TLS configuration is invalid: {message}; fix the tls options in `uri`"
        )),
        ErrorKind::InvalidArgument { message, .. } => {
            Failure::Permanent(format!("MongoDB rejected the request: {message}"))
        }
        ErrorKind::BsonSerialization(e) => Failure::Permanent(format!(
            "the payload cannot be converted to a BSON document: {e}"
        )),
        ErrorKind::IncompatibleServer { message, .. } => Failure::Access(format!(
            "the MongoDB server is too old for this driver ({message}): use MongoDB 4.2 or newer"
        )),
        ErrorKind::Shutdown => Failure::Retry("the MongoDB client is shutting down".into()),
        _ => Failure::Retry(format!("MongoDB error: {err}")),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint() -> Hint {
        Hint {
            database: "terra".into(),
        }
    }

    #[test]
    fn codes() {
        assert!(
            matches!(classify_code(13, "not authorized", &hint()), Failure::Access(r) if r.contains("readWrite") && r.contains("terra"))
        );
        assert!(matches!(
            classify_code(10107, "not primary", &hint()),
            Failure::Retry(_)
        ));
        assert!(
            matches!(classify_code(10334, "too large", &hint()), Failure::Permanent(r) if r.contains("16 MiB"))
        );
        assert!(matches!(
            classify_code(121, "validation", &hint()),
            Failure::Permanent(_)
        ));
    }
}
