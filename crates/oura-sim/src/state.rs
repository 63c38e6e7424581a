//! Shared simulator state: users and their documents, OAuth grants/tokens, subscriptions,
//! fault knobs, delivery log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::SimConfig;
use crate::data::{Doc, UserProfile, doc_id, initial_count, make_user};
use crate::rng::Rng;
use crate::types::DocType;

/// Index of the hidden sandbox user in `DataStore::users` lookups.
pub const SANDBOX: usize = usize::MAX;

pub struct UserData {
    pub profile: UserProfile,
    /// Per type: documents sorted by `(day, index)`.
    pub docs: BTreeMap<DocType, Vec<Doc>>,
    /// Next free index per `(type, day)` (so created docs never reuse a deleted id).
    pub next_index: HashMap<(DocType, NaiveDate), u32>,
}

pub struct DataStore {
    pub seed: u64,
    pub first_day: NaiveDate,
    pub end_day: NaiveDate,
    pub users: Vec<UserData>,
    pub sandbox: UserData,
}

impl DataStore {
    pub fn new(seed: u64, users: usize, days: u32, end_day: NaiveDate) -> Self {
        let first_day = end_day - Duration::days(i64::from(days.max(1)) - 1);
        let mk = |profile: UserProfile| build_user(seed, profile, first_day, end_day);
        let sandbox_profile = make_user(seed ^ 0x5A4D_B0C5, 0);
        DataStore {
            seed,
            first_day,
            end_day,
            users: (0..users).map(|i| mk(make_user(seed, i))).collect(),
            sandbox: mk(sandbox_profile),
        }
    }

    pub fn add_users(&mut self, n: usize) -> Vec<UserProfile> {
        let start = self.users.len();
        (start..start + n)
            .map(|i| {
                let u = build_user(
                    self.seed,
                    make_user(self.seed, i),
                    self.first_day,
                    self.end_day,
                );
                let p = u.profile.clone();
                self.users.push(u);
                p
            })
            .collect()
    }

    pub fn user(&self, idx: usize) -> Option<&UserData> {
        if idx == SANDBOX {
            Some(&self.sandbox)
        } else {
            self.users.get(idx)
        }
    }

    /// Resolve a user reference: numeric index or Oura user id.
    pub fn resolve_user(&self, r: &str) -> Option<usize> {
        if let Ok(i) = r.parse::<usize>() {
            return (i < self.users.len()).then_some(i);
        }
        self.users.iter().position(|u| u.profile.id == r)
    }

    /// Apply a simulated sync; returns the affected document id.
    pub fn apply_sync(
        &mut self,
        user: usize,
        t: DocType,
        op: Operation,
        day: Option<NaiveDate>,
        object_id: Option<&str>,
    ) -> Result<String, (u16, String)> {
        let seed = self.seed;
        let end_day = self.end_day;
        let u = self
            .users
            .get_mut(user)
            .ok_or((404, "unknown user".to_string()))?;
        let docs = u.docs.entry(t).or_default();
        match op {
            Operation::Create => {
                let day = match day {
                    Some(d) => d,
                    None if t == DocType::RingConfiguration => Utc::now().date_naive(),
                    None if t.one_per_day() => docs
                        .last()
                        .map(|d| d.day + Duration::days(1))
                        .unwrap_or(end_day + Duration::days(1)),
                    None => docs.last().map(|d| d.day).unwrap_or(end_day),
                };
                if t.one_per_day() && docs.iter().any(|d| d.day == day) {
                    return Err((
                        409,
                        format!("a {} document already exists for {day}", t.path()),
                    ));
                }
                let slot = u.next_index.entry((t, day)).or_insert(0);
                let index = *slot;
                *slot += 1;
                let doc = Doc {
                    id: doc_id(seed, &u.profile, t, day, index),
                    day,
                    index,
                    rev: 0,
                };
                let id = doc.id.clone();
                let pos = docs.partition_point(|d| (d.day, d.index) < (day, index));
                docs.insert(pos, doc);
                Ok(id)
            }
            Operation::Update | Operation::Delete => {
                let pos = if let Some(oid) = object_id {
                    docs.iter().position(|d| d.id == oid)
                } else if let Some(day) = day {
                    docs.iter().position(|d| d.day == day)
                } else {
                    docs.len().checked_sub(1)
                }
                .ok_or((404, format!("no matching {} document", t.path())))?;
                if op == Operation::Delete {
                    Ok(docs.remove(pos).id)
                } else {
                    docs[pos].rev += 1;
                    Ok(docs[pos].id.clone())
                }
            }
        }
    }
}

fn build_user(seed: u64, profile: UserProfile, first: NaiveDate, end: NaiveDate) -> UserData {
    let mut docs: BTreeMap<DocType, Vec<Doc>> = BTreeMap::new();
    let mut next_index = HashMap::new();
    for t in DocType::ALL {
        let v = docs.entry(t).or_default();
        if t == DocType::RingConfiguration {
            let mut r = Rng::from_key(&format!("{seed}/{}/ring-setup", profile.id));
            let day = first - Duration::days(r.range(30, 400));
            v.push(Doc {
                id: doc_id(seed, &profile, t, day, 0),
                day,
                index: 0,
                rev: 0,
            });
            next_index.insert((t, day), 1);
            continue;
        }
        let mut day = first;
        while day <= end {
            let n = initial_count(seed, &profile, t, day);
            for index in 0..n {
                v.push(Doc {
                    id: doc_id(seed, &profile, t, day, index),
                    day,
                    index,
                    rev: 0,
                });
            }
            if n > 0 {
                next_index.insert((t, day), n);
            }
            day += Duration::days(1);
        }
    }
    UserData {
        profile,
        docs,
        next_index,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Operation::Create),
            "update" => Some(Operation::Update),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- OAuth

pub struct Grant {
    pub user: usize,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

pub struct AccessToken {
    pub grant: usize,
    pub expires_at: DateTime<Utc>,
}

pub struct RefreshToken {
    pub grant: usize,
    pub used: bool,
}

pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub user: usize,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct AuthStore {
    pub grants: Vec<Grant>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub codes: HashMap<String, AuthCode>,
    /// Per-user fixed rate-limit window: (window start, count).
    pub rate: HashMap<usize, (Instant, u32)>,
}

/// Token endpoint response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: String,
}

pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

impl AuthStore {
    pub fn issue(&mut self, grant: usize, ttl_secs: i64) -> TokenResponse {
        let access = random_token(32);
        let refresh = random_token(32);
        self.access.insert(
            access.clone(),
            AccessToken {
                grant,
                expires_at: Utc::now() + Duration::seconds(ttl_secs),
            },
        );
        self.refresh
            .insert(refresh.clone(), RefreshToken { grant, used: false });
        TokenResponse {
            token_type: "bearer".into(),
            access_token: access,
            expires_in: ttl_secs,
            refresh_token: refresh,
            scope: self.grants[grant].scopes.join(" "),
        }
    }

    pub fn new_grant(&mut self, user: usize, client_id: &str, scopes: Vec<String>) -> usize {
        self.grants.push(Grant {
            user,
            client_id: client_id.to_string(),
            scopes,
            revoked: false,
        });
        self.grants.len() - 1
    }

    /// Whether `user` has a live grant for `client_id` including `scope`.
    pub fn user_authorized(&self, user: usize, client_id: &str, scope: &str) -> bool {
        self.grants.iter().any(|g| {
            g.user == user
                && !g.revoked
                && g.client_id == client_id
                && g.scopes.iter().any(|s| s == scope)
        })
    }

    pub fn revoke_user(&mut self, user: usize) -> usize {
        let mut n = 0;
        for g in self
            .grants
            .iter_mut()
            .filter(|g| g.user == user && !g.revoked)
        {
            g.revoked = true;
            n += 1;
        }
        n
    }
}

// ---------------------------------------------------------------- faults

/// Error-injection knobs (apply to `/v2/*` routes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Answer the next N requests with 429.
    pub rate_limit_next: u32,
    /// Answer this share (0..1) of requests with 429.
    pub rate_limit_share: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Answer the next N requests with a 5xx.
    pub server_error_next: u32,
    /// Answer this share (0..1) of requests with a 5xx (500/502/503).
    pub server_error_share: f64,
    /// Added latency per request, milliseconds.
    pub latency_ms: u64,
    /// `/oauth/authorize` redirects with `error=access_denied`.
    pub deny_authorize: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_limit_next: 0,
            rate_limit_share: 0.0,
            retry_after_secs: 1,
            server_error_next: 0,
            server_error_share: 0.0,
            latency_ms: 0,
            deny_authorize: false,
        }
    }
}

/// Body of `POST /_sim/faults`: every field optional; actions are one-shot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultUpdate {
    /// Reset all knobs to defaults first.
    pub clear: bool,
    pub rate_limit_next: Option<u32>,
    pub rate_limit_share: Option<f64>,
    pub retry_after_secs: Option<u64>,
    pub server_error_next: Option<u32>,
    pub server_error_share: Option<f64>,
    pub latency_ms: Option<u64>,
    pub deny_authorize: Option<bool>,
    /// Action: every access token issued so far expires now.
    pub expire_access_tokens: bool,
    /// Action: revoke every grant of this user (index or Oura id): its tokens stop working,
    /// its refresh tokens are refused with `invalid_grant`.
    pub revoke_user: Option<String>,
    /// Action: every webhook subscription's `expiration_time` is set to now.
    pub expire_subscriptions: bool,
}

// ---------------------------------------------------------------- webhooks

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: String,
    pub callback_url: String,
    pub event_type: String,
    pub data_type: String,
    #[serde(serialize_with = "ser_expiration")]
    pub expiration_time: DateTime<Utc>,
    #[serde(skip)]
    pub client_id: String,
    #[serde(skip)]
    pub verification_token: String,
}

/// Oura's `expiration_time` apparently carries no timezone designator (UTC implied).
fn ser_expiration<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
}

/// A webhook notification body (field order as documented).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub event_type: String,
    pub data_type: String,
    pub object_id: String,
    pub event_time: String,
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: u64,
    pub subscription_id: String,
    pub callback_url: String,
    pub event: Event,
    pub attempts: u32,
    /// `pending`, `delivered`, `failed`, `gone` (410 → subscription deleted).
    pub status: String,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
}

pub struct Shared {
    pub config: SimConfig,
    pub data: RwLock<DataStore>,
    pub auth: Mutex<AuthStore>,
    pub faults: Mutex<Faults>,
    pub subs: Mutex<Vec<Subscription>>,
    pub deliveries: Mutex<VecDeque<DeliveryRecord>>,
    pub delivery_seq: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    /// `METHOD /path?query` of recent `/v2/*` requests (oldest first, at most 10,000).
    pub request_log: Mutex<VecDeque<String>>,
    pub http: reqwest::Client,
}
