//! The destination: PostgREST requests per batch (users, tombstones, data, misc).

use std::fmt;

use async_trait::async_trait;
use manifold_core::destination::{Delivery, Destination, Outcome};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::Settings;
use crate::classify::{Context, Failure, classify_error, classify_status};
use manifold_sql::plan::{
    DATA, DATA_COLS, Item, MISC, MISC_COLS, Plan, USER_COLS, USERS, parse, ts,
};

/// Rows per request (PostgREST builds one statement per request).
const ROWS_PER_REQUEST: usize = 500;
/// `payload_id` of the row `check()` writes and deletes again.
const PROBE_ID: &str = "manifold-check-probe";

/// Writes Terra payloads into a Supabase project's tables through its REST API.
pub struct SupabaseDestination {
    name: String,
    settings: Settings,
    client: reqwest::Client,
}

impl fmt::Debug for SupabaseDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseDestination")
            .field("name", &self.name)
            .field("url", &self.settings.url)
            .field("schema", &self.settings.schema)
            .finish_non_exhaustive()
    }
}

/// A JWT has three base64url parts; new `sb_secret_…` keys are not JWTs and go in `apikey` only.
fn is_jwt(key: &str) -> bool {
    key.split('.').count() == 3 && key.starts_with("eyJ")
}

impl SupabaseDestination {
    /// Build without I/O.
    pub fn new(name: &str, settings: Settings) -> Result<SupabaseDestination, String> {
        let key = settings.service_role_key.expose();
        let mut headers = HeaderMap::new();
        let secret = |v: String| {
            HeaderValue::from_str(&v)
                .map(|mut h| {
                    h.set_sensitive(true);
                    h
                })
                .map_err(|_| "`service_role_key` contains characters a header cannot carry: paste the key exactly as Supabase shows it".to_string())
        };
        headers.insert("apikey", secret(key.to_string())?);
        if is_jwt(key) {
            headers.insert(AUTHORIZATION, secret(format!("Bearer {key}"))?);
        }
        let profile = HeaderValue::from_str(&settings.schema).map_err(|e| e.to_string())?;
        headers.insert("Content-Profile", profile.clone());
        headers.insert("Accept-Profile", profile);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("manifold/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(SupabaseDestination {
            name: name.to_string(),
            settings,
            client,
        })
    }

    /// `{url}{rest_path}/{table}?k=v&…` with the values percent-encoded.
    fn url(&self, table: &str, pairs: &[(&str, &str)]) -> String {
        let base = self.settings.table_url(table);
        match url::Url::parse(&base) {
            Ok(mut u) => {
                if !pairs.is_empty() {
                    let mut q = u.query_pairs_mut();
                    for (k, v) in pairs {
                        q.append_pair(k, v);
                    }
                }
                u.to_string()
            }
            Err(_) => base,
        }
    }

    /// Send one request; `Ok` on 2xx.
    async fn send(
        &self,
        req: RequestBuilder,
        table: &str,
        action: &str,
        url: &str,
    ) -> Result<String, Failure> {
        let cx = Context {
            schema: &self.settings.schema,
            table,
            action,
            url,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| classify_error(&e, &cx, self.settings.timeout))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify_status(status, &headers, &body, &cx))
        }
    }

    /// `POST` rows as one JSON array with an upsert preference.
    async fn post(
        &self,
        table: &str,
        on_conflict: &str,
        resolution: &str,
        columns: &[&str],
        rows: &[Value],
    ) -> Result<(), Failure> {
        for chunk in rows.chunks(ROWS_PER_REQUEST) {
            let url = self.url(
                table,
                &[
                    ("on_conflict", on_conflict),
                    ("columns", &columns.join(",")),
                ],
            );
            let req = self
                .client
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .header("Prefer", format!("resolution={resolution},return=minimal"))
                .json(chunk);
            self.send(req, table, "POST", &url).await?;
        }
        Ok(())
    }

    async fn delete(&self, filters: &[(&str, String)]) -> Result<(), Failure> {
        let query: Vec<(&str, String)> = filters
            .iter()
            .map(|(k, v)| (*k, format!("eq.{v}")))
            .collect();
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = self.url(DATA, &pairs);
        let req = self
            .client
            .request(Method::DELETE, &url)
            .header("Prefer", "return=minimal");
        self.send(req, DATA, "DELETE", &url).await.map(|_| ())
    }

    /// Write items: users, tombstones, data rows, misc rows (each request is atomic; re-running
    /// a partly written batch is harmless because every write is an idempotent upsert/delete).
    async fn write(&self, items: &[&Item]) -> Result<(), Failure> {
        let plan = Plan::merge(items.iter().copied());
        let now = ts(chrono::Utc::now());
        let users: Vec<Value> = plan
            .users
            .iter()
            .map(|u| {
                json!({
                    "user_id": u.user_id,
                    "reference_id": u.reference_id,
                    "provider": u.provider,
                    "granted_scopes": u.granted_scopes,
                    "state": u.state.as_ref().map(|(s, _)| *s).unwrap_or("active"),
                    "state_changed_at": u.state.as_ref().map(|(_, at)| at.clone()),
                    "created_at": now,
                    "updated_at": now,
                })
            })
            .collect();
        if !users.is_empty() {
            self.post(USERS, "user_id", "merge-duplicates", &USER_COLS, &users)
                .await?;
        }
        for d in &plan.deletes {
            let base = [
                ("user_id", d.user_id.clone()),
                ("data_type", d.data_type.clone()),
            ];
            for col in ["record_key", "summary_id"] {
                let mut f = base.to_vec();
                f.push((col, d.key.clone()));
                self.delete(&f).await?;
            }
        }
        let data: Vec<Value> = plan
            .data
            .iter()
            .map(|r| {
                json!({
                    "user_id": r.user_id,
                    "data_type": r.data_type,
                    "record_key": r.record_key,
                    "summary_id": r.summary_id,
                    "day": r.day,
                    "start_time": r.start_time,
                    "end_time": r.end_time,
                    "payload_id": r.payload_id,
                    "version": r.version,
                    "created_at": now,
                    "updated_at": now,
                    "payload": r.payload,
                })
            })
            .collect();
        if !data.is_empty() {
            self.post(
                DATA,
                "user_id,data_type,record_key",
                "merge-duplicates",
                &DATA_COLS,
                &data,
            )
            .await?;
        }
        let misc: Vec<Value> = plan
            .misc
            .iter()
            .map(|m| {
                json!({
                    "payload_id": m.payload_id,
                    "user_id": m.user_id,
                    "payload_type": m.payload_type,
                    "data_type": m.data_type,
                    "created_at": now,
                    "payload": m.payload,
                })
            })
            .collect();
        if !misc.is_empty() {
            self.post(MISC, "payload_id", "ignore-duplicates", &MISC_COLS, &misc)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Destination for SupabaseDestination {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let parsed: Vec<Result<Item, String>> = batch.iter().map(parse).collect();
        let mut out: Vec<Option<Outcome>> = parsed
            .iter()
            .map(|p| p.as_ref().err().map(|e| Outcome::permanent(e.clone())))
            .collect();
        let ok: Vec<(usize, &Item)> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().ok().map(|it| (i, it)))
            .collect();
        if !ok.is_empty() {
            let items: Vec<&Item> = ok.iter().map(|(_, it)| *it).collect();
            match self.write(&items).await {
                Ok(()) => ok
                    .iter()
                    .for_each(|(i, _)| out[*i] = Some(Outcome::delivered())),
                Err(f) if f.item_specific() && ok.len() > 1 => {
                    tracing::debug!(destination = %self.name, reason = f.reason(), "batch refused; writing items one by one");
                    for (i, it) in &ok {
                        out[*i] = Some(match self.write(&[*it]).await {
                            Ok(()) => Outcome::delivered(),
                            Err(f) => f.outcome(),
                        });
                    }
                }
                Err(f) => ok.iter().for_each(|(i, _)| out[*i] = Some(f.outcome())),
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::internal("no outcome computed")))
            .collect()
    }

    fn max_batch(&self) -> usize {
        self.settings.batch_size
    }

    /// Read each table (key, schema exposure, tables exist), then write and delete a probe row
    /// in `terra_misc_payloads` (insert and delete grants).
    async fn check(&self) -> Result<(), String> {
        let what = format!("supabase destination `{}`", self.name);
        for table in [USERS, DATA, MISC] {
            let url = self.url(table, &[("select", "*"), ("limit", "1")]);
            let req = self.client.get(&url);
            self.send(req, table, "GET", &url)
                .await
                .map_err(|f| format!("{what}: {}", f.reason()))?;
        }
        let probe = json!({
            "payload_id": PROBE_ID,
            "user_id": null,
            "payload_type": "healthcheck",
            "data_type": null,
            "created_at": ts(chrono::Utc::now()),
            "payload": {"type": "healthcheck"},
        });
        self.post(
            MISC,
            "payload_id",
            "ignore-duplicates",
            &MISC_COLS,
            &[probe],
        )
        .await
        .map_err(|f| format!("{what}: cannot write: {}", f.reason()))?;
        let probe_filter = format!("eq.{PROBE_ID}");
        let url = self.url(MISC, &[("payload_id", &probe_filter)]);
        let req = self.client.request(Method::DELETE, &url);
        self.send(req, MISC, "DELETE", &url)
            .await
            .map_err(|f| format!("{what}: cannot delete: {}", f.reason()))?;
        Ok(())
    }
}
