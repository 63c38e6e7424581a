//! What an HTTP answer (or its absence) from PostgREST means for the delivery.

use std::time::Duration;

use manifold_core::destination::{Outcome, Response};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Longest response body kept for the attempt log.
const BODY_LIMIT: usize = 2048;

/// How bad a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Transient: connection, timeout, throttling, 5xx.
    Retry,
    /// Key, grants, missing table or schema: nothing in the batch can succeed until someone acts.
    Access,
    /// The server refused the data (4xx): may belong to one item.
    Permanent,
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub reason: String,
    pub after: Option<Duration>,
    pub response: Response,
}

impl Failure {
    pub fn retry(reason: impl Into<String>) -> Failure {
        Failure {
            kind: Kind::Retry,
            reason: reason.into(),
            after: None,
            response: Response::default(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether writing the items one by one may let the others through.
    pub fn item_specific(&self) -> bool {
        self.kind == Kind::Permanent
    }

    pub fn outcome(&self) -> Outcome {
        match self.kind {
            Kind::Retry => Outcome::Retry {
                after: self.after,
                reason: self.reason.clone(),
                response: self.response.clone(),
            },
            Kind::Access | Kind::Permanent => Outcome::Permanent {
                reason: self.reason.clone(),
                response: self.response.clone(),
            },
        }
    }
}

/// What the request was doing, for messages.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub action: &'a str,
    pub url: &'a str,
}

fn truncate(s: &str) -> String {
    if s.len() <= BODY_LIMIT {
        return s.to_string();
    }
    let mut end = BODY_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `Retry-After` in seconds (HTTP dates are rare from PostgREST/Supabase; ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(24 * 3600)))
}

/// PostgREST's `{code, message, details, hint}` as one short string.
fn pgrst_error(body: &str) -> (Option<String>, String) {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => {
            let code = v.get("code").and_then(|c| c.as_str()).map(str::to_string);
            let mut parts = Vec::new();
            for k in ["message", "details", "hint"] {
                if let Some(t) = v.get(k).and_then(|x| x.as_str())
                    && !t.is_empty()
                {
                    parts.push(t.to_string());
                }
            }
            (code, parts.join("; "))
        }
        _ => (None, truncate(body.trim())),
    }
}

/// Classify a non-2xx answer.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    cx: &Context<'_>,
) -> Failure {
    let (code, detail) = pgrst_error(body);
    let code_s = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
    let what = format!(
        "{} {}.{} answered HTTP {}{code_s}",
        cx.action,
        cx.schema,
        cx.table,
        status.as_u16()
    );
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let grant = format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.terra_users, {s}.terra_data_payloads, {s}.terra_misc_payloads TO service_role (part of `manifold supabase init`)",
        s = cx.schema
    );
    let response = Response::status(status.as_u16()).with_body(truncate(body));
    let (kind, reason, after) = match status.as_u16() {
        408 | 425 | 429 => (
            Kind::Retry,
            format!("{what}{detail}: throttled or timed out; retrying"),
            retry_after(headers),
        ),
        500..=599 => (
            Kind::Retry,
            format!("{what}{detail}: server error; retrying"),
            retry_after(headers),
        ),
        401 => (
            Kind::Access,
            format!(
                "{what}{detail}: the key was refused or its role may not write: set `service_role_key` to the project's service_role key (Project Settings → API; not the anon key), and make sure it may write: {grant}"
            ),
            None,
        ),
        403 => (
            Kind::Access,
            format!("{what}{detail}: permission denied for the key's role: {grant}"),
            None,
        ),
        404 if code
            .as_deref()
            .is_some_and(|c| c == "PGRST205" || c == "42P01") =>
        {
            (
                Kind::Access,
                format!(
                    "{what}{detail}: the table does not exist (or the API has not reloaded its schema cache): run the SQL from `manifold supabase init --schema {}` in the project",
                    cx.schema
                ),
                None,
            )
        }
        404 => (
            Kind::Access,
            format!(
                "{what}{detail}: nothing serves {}: check `url` (the project URL) and `rest_path` (\"/rest/v1\" on Supabase)",
                cx.url
            ),
            None,
        ),
        406 if code.as_deref() == Some("PGRST106") => (
            Kind::Access,
            format!(
                "{what}{detail}: schema `{}` is not exposed by the API: add it under Project Settings → API → Exposed schemas, or set `schema` to an exposed one",
                cx.schema
            ),
            None,
        ),
        400 if code
            .as_deref()
            .is_some_and(|c| c == "PGRST204" || c == "42703") =>
        {
            (
                Kind::Access,
                format!(
                    "{what}{detail}: the table lacks a column Manifold writes: it was not created by `manifold supabase init`; create it with that SQL (or add the column)"
                ),
                None,
            )
        }
        413 => (
            Kind::Permanent,
            format!(
                "{what}: the request is too large for the server; lower `batch_size` if this is a batch"
            ),
            None,
        ),
        300..=399 => (
            Kind::Access,
            format!("{what}: redirects are not followed; point `url` at the final project URL"),
            None,
        ),
        _ => (
            Kind::Permanent,
            format!("{what}{detail}: the server refused the data"),
            None,
        ),
    };
    Failure {
        kind,
        reason,
        after,
        response,
    }
}

/// Classify a request that got no answer.
pub fn classify_error(e: &reqwest::Error, cx: &Context<'_>, timeout: Duration) -> Failure {
    let what = format!("{} {}.{}", cx.action, cx.schema, cx.table);
    let reason = if e.is_timeout() {
        format!("{what}: no answer from {} within {timeout:?}", cx.url)
    } else if e.is_connect() {
        format!("{what}: cannot connect to {}: {}", cx.url, root_cause(e))
    } else {
        format!("{what}: request to {} failed: {}", cx.url, root_cause(e))
    };
    Failure::retry(reason)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            schema: "public",
            table: "terra_data_payloads",
            action: "POST",
            url: "https://x.supabase.co/rest/v1/terra_data_payloads",
        }
    }

    fn classify(status: u16, body: &str, headers: HeaderMap) -> Failure {
        classify_status(StatusCode::from_u16(status).unwrap(), &headers, body, &cx())
    }

    #[test]
    fn statuses() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        let f = classify(503, "", h.clone());
        assert_eq!(
            (f.kind, f.after),
            (Kind::Retry, Some(Duration::from_secs(7)))
        );
        assert_eq!(classify(429, "", h).after, Some(Duration::from_secs(7)));
        let f = classify(
            401,
            r#"{"code":"PGRST301","message":"JWT cryptographic operation failed"}"#,
            HeaderMap::new(),
        );
        assert_eq!(f.kind, Kind::Access);
        assert!(
            f.reason.contains("service_role") && f.reason.contains("PGRST301"),
            "{}",
            f.reason
        );
        assert!(
            classify(403, r#"{"code":"42501"}"#, HeaderMap::new())
                .reason
                .contains("GRANT")
        );
        let f = classify(
            404,
            r#"{"code":"PGRST205","message":"Could not find the table"}"#,
            HeaderMap::new(),
        );
        assert!(f.reason.contains("manifold supabase init"));
        assert!(
            classify(404, "<html>", HeaderMap::new())
                .reason
                .contains("rest_path")
        );
        assert!(
            classify(406, r#"{"code":"PGRST106"}"#, HeaderMap::new())
                .reason
                .contains("Exposed schemas")
        );
        let f = classify(409, r#"{"code":"23505"}"#, HeaderMap::new());
        assert!(f.item_specific());
        assert!(
            matches!(f.outcome(), Outcome::Permanent { response, .. } if response.status == Some(409))
        );
    }
}
