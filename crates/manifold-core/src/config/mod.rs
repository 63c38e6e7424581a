//! `manifold.toml`: strictly typed, `${ENV}`-interpolated, validated as a whole before anything
//! starts. Every problem is reported as `file:line: key: what is wrong; how to fix`.

mod interpolate;
mod locate;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml_edit::DocumentMut;

pub use interpolate::interpolate;
pub use locate::SpanIndex;

use crate::destination::{BuildContext, Destination, DestinationFactory};
use crate::retry::RetryPolicy;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Durations written like `"30s"`, `"5m"`, `"8h"`, `"1h 30m"`, `"250ms"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim()).map_err(|_| {
            format!(
                "`{s}` is not a duration: write a number and a unit, like \"30s\", \"5m\" or \"8h\""
            )
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize(d).map(Some)
    }
}

/// Sizes written like `"10MiB"`, `"512KiB"`, `"1000"` (bytes), or a plain integer.
pub mod bytesize {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }

    pub fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().map_err(|_| {
            format!("`{s}` is not a size: write e.g. \"10MiB\", \"512KiB\" or a number of bytes")
        })?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}`: use B, KiB, MiB or GiB"
                ));
            }
        };
        Ok(n.saturating_mul(mult))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Public base URL (Oura callback and webhook URLs derive from it).
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// Keys accepted in `x-api-key`. Empty = the API refuses every request that needs a key.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Largest request body accepted.
    #[serde(
        default = "default_max_body",
        deserialize_with = "bytesize::deserialize"
    )]
    pub max_body: u64,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("static address")
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            public_url: None,
            api_keys: Vec::new(),
            max_body: default_max_body(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    #[serde(default = "default_store_url")]
    pub url: Secret,
    /// How long a claimed delivery stays owned by one node before others may take it.
    #[serde(default = "default_lease", with = "duration")]
    pub lease: Duration,
    /// Backstop poll interval for due deliveries (workers are also woken on commit).
    #[serde(default = "default_poll", with = "duration")]
    pub poll_interval: Duration,
    /// Connection pool size (PostgreSQL).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_store_url() -> Secret {
    Secret::new("sqlite://./manifold-data/manifold.db")
}
fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_max_connections() -> u32 {
    10
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
            lease: default_lease(),
            poll_interval: default_poll(),
            max_connections: default_max_connections(),
        }
    }
}

impl StoreConfig {
    pub fn is_postgres(&self) -> bool {
        let u = self.url.expose();
        u.starts_with("postgres://") || u.starts_with("postgresql://")
    }
}

/// Oura application credentials and connector settings (used by the Oura connector).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuraConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Token Oura sends in the subscription handshake (`GET /oura/webhook?verification_token=`).
    #[serde(default)]
    pub verification_token: Option<Secret>,
    /// Data API and token endpoint base (default `https://api.ouraring.com`).
    #[serde(default)]
    pub api_base: Option<url::Url>,
    /// Where users consent: `{auth_base}/oauth/authorize` (default `https://cloud.ouraring.com`).
    #[serde(default)]
    pub auth_base: Option<url::Url>,
    /// Token endpoint override (default `{api_base}/oauth/token`).
    #[serde(default)]
    pub token_url: Option<url::Url>,
    /// Revocation endpoint override (default `{api_base}/oauth/revoke`).
    #[serde(default)]
    pub revoke_url: Option<url::Url>,
    /// OAuth redirect URI registered with Oura (default `{server.public_url}/oura/callback`).
    #[serde(default)]
    pub redirect_uri: Option<url::Url>,
    /// Keys that encrypt stored Oura tokens: base64 of 32 random bytes each. The first
    /// encrypts; all decrypt (add a new key in front to rotate).
    #[serde(default)]
    pub token_keys: Vec<Secret>,
    /// Scopes requested at consent (space-joined into `scope`).
    #[serde(default = "default_oura_scopes")]
    pub scopes: Vec<String>,
    /// How far `x-oura-timestamp` may be from now before a notification is refused.
    #[serde(default = "default_signature_tolerance", with = "duration")]
    pub signature_tolerance: Duration,
    /// Notifications fetched at once by one node.
    #[serde(default = "default_fetch_concurrency")]
    pub fetch_concurrency: usize,
    /// Refresh an access token when it expires within this margin.
    #[serde(default = "default_refresh_margin", with = "duration")]
    pub refresh_margin: Duration,
    /// How long a signed `state` (consent link) stays valid.
    #[serde(default = "default_state_ttl", with = "duration")]
    pub state_ttl: Duration,
    /// Failed fetches of one notification before it is given up (status `failed`).
    #[serde(default = "default_fetch_attempts")]
    pub max_fetch_attempts: u32,
    /// Create/renew webhook subscriptions when `manifold serve` starts.
    #[serde(default = "default_true")]
    pub sync_subscriptions: bool,
    /// Days of history fetched and published for every data type right after a user connects
    /// (0 disables the backfill). At most 1826 (5 years).
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u32,
    /// `GET /v2/{type}?to_webhook=false` answers from the stored Oura documents instead of
    /// calling Oura again when every day of the range was fetched within this duration.
    #[serde(default = "default_history_freshness", with = "duration")]
    pub history_freshness: Duration,
    /// Oura's request budget per application (`client_id`), shared by every process on this
    /// store: at most `rate_limit` requests in any `rate_window` (Oura: 5000 per 5 minutes).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    #[serde(default = "default_rate_window", with = "duration")]
    pub rate_window: Duration,
    /// Share (0 to 0.9) of the budget's burst kept for live notification fetches: history,
    /// backfills and polling wait while less than this remains.
    #[serde(default = "default_live_reserve")]
    pub live_reserve: f64,
    /// How often each connected, active user's `heartrate` is polled (Oura sends no webhook
    /// for it). `"0s"` disables heart-rate polling.
    #[serde(default = "default_heartrate_poll", with = "duration")]
    pub heartrate_poll: Duration,
    /// How often each connected, active user's recent days are re-listed to pick up changes
    /// whose notification never arrived. `"0s"` disables the reconcile.
    #[serde(default = "default_reconcile_every", with = "duration")]
    pub reconcile_every: Duration,
    /// Days the reconcile re-lists: today and this many days before it (1..=30).
    #[serde(default = "default_reconcile_days")]
    pub reconcile_days: u32,
}

fn default_heartrate_poll() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_reconcile_every() -> Duration {
    Duration::from_secs(3600)
}
fn default_reconcile_days() -> u32 {
    2
}

fn default_rate_limit() -> u32 {
    5000
}
fn default_rate_window() -> Duration {
    Duration::from_secs(300)
}
fn default_live_reserve() -> f64 {
    0.2
}
fn default_backfill_days() -> u32 {
    28
}
fn default_history_freshness() -> Duration {
    Duration::from_secs(600)
}

pub fn default_oura_scopes() -> Vec<String> {
    [
        "extapi:email",
        "extapi:personal",
        "extapi:daily",
        "extapi:heartrate",
        "extapi:workout",
        "extapi:tag",
        "extapi:session",
        "extapi:spo2",
        "extapi:stress",
        "extapi:heart_health",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn default_signature_tolerance() -> Duration {
    Duration::from_secs(300)
}
fn default_fetch_concurrency() -> usize {
    4
}
fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
fn default_state_ttl() -> Duration {
    Duration::from_secs(900)
}
fn default_fetch_attempts() -> u32 {
    10
}

impl OuraConfig {
    /// The data API base, without a trailing slash.
    pub fn api_base(&self) -> String {
        base_str(self.api_base.as_ref(), "https://api.ouraring.com")
    }
    /// The consent site base, without a trailing slash.
    pub fn auth_base(&self) -> String {
        base_str(self.auth_base.as_ref(), "https://cloud.ouraring.com")
    }
    pub fn token_url(&self) -> String {
        match &self.token_url {
            Some(u) => u.to_string(),
            None => format!("{}/oauth/token", self.api_base()),
        }
    }
    pub fn revoke_url(&self) -> String {
        match &self.revoke_url {
            Some(u) => u.to_string(),
            None => format!("{}/oauth/revoke", self.api_base()),
        }
    }
    /// The redirect URI: explicit, else derived from the public URL.
    pub fn redirect_uri(&self, public_url: Option<&url::Url>) -> Option<String> {
        match (&self.redirect_uri, public_url) {
            (Some(u), _) => Some(u.to_string()),
            (None, Some(p)) => Some(format!(
                "{}/oura/callback",
                p.as_str().trim_end_matches('/')
            )),
            (None, None) => None,
        }
    }
    /// Decoded `token_keys` (validated by `Config::from_str`).
    pub fn decoded_token_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        use base64::Engine as _;
        self.token_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(k.expose().trim())
                    .or_else(|_| {
                        base64::engine::general_purpose::URL_SAFE.decode(k.expose().trim())
                    })
                    .map_err(|_| format!("token_keys[{i}] is not base64"))?;
                <[u8; 32]>::try_from(raw.as_slice())
                    .map_err(|_| format!("token_keys[{i}] decodes to {} bytes, not 32", raw.len()))
            })
            .collect()
    }
}

fn base_str(u: Option<&url::Url>, default: &str) -> String {
    u.map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|| default.to_string())
}

/// Payload format a destination receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Fhir,
    Fit,
}

/// The keys every destination has; the engine owns them. Everything else in a
/// `[[destinations]]` table belongs to the destination type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationCommon {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Event types this destination receives; absent = all.
    #[serde(default)]
    pub data_types: Option<Vec<String>>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Deliveries per second at most (absent = unlimited).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Items per `deliver` call at most (capped by what the destination accepts).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Time one `deliver` call may take before the engine counts it as a retryable timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "data_types",
    "format",
    "retry",
    "concurrency",
    "rate_limit",
    "batch_size",
    "timeout",
    "enabled",
];

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> Duration {
    Duration::from_secs(8)
}
fn default_true() -> bool {
    true
}

impl DestinationCommon {
    pub fn accepts(&self, event_type: &str) -> bool {
        match &self.data_types {
            None => true,
            Some(types) => types.iter().any(|t| t == event_type),
        }
    }
}

/// One configured, validated, built destination.
#[derive(Clone)]
pub struct DestinationConfig {
    pub common: DestinationCommon,
    pub destination: Arc<dyn Destination>,
}

impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("common", &self.common)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub oura: Option<OuraConfig>,
    pub destinations: Vec<DestinationConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    oura: Option<OuraConfig>,
    #[serde(default)]
    destinations: Vec<toml::Table>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: ", self.file, l)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Destination types the binary knows, by `type` name.
#[derive(Default, Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn DestinationFactory>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn register(&mut self, f: impl DestinationFactory) -> &mut Self {
        self.factories.insert(f.kind(), Arc::new(f));
        self
    }
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DestinationFactory>> {
        self.factories.get(kind)
    }
}

/// Fix hints for common mistakes, keyed by a fragment of the message.
fn fix_for(message: &str, key: &str) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("unknown field") {
        let expected = message
            .split("expected")
            .nth(1)
            .map(|s| s.trim().trim_end_matches('.'));
        match expected {
            Some(e) => format!("remove it or correct the spelling (expected {e})"),
            None => "remove it or correct the spelling".into(),
        }
    } else if m.contains("is not a duration") {
        "write a number and a unit, like \"30s\", \"5m\" or \"8h\"".into()
    } else if m.contains("is not set") {
        "export the variable before starting, or use `${NAME:-default}`".into()
    } else if m.contains("missing field") {
        "add the key".into()
    } else if m.contains("relative url")
        || m.contains("invalid url")
        || m.contains("url") && key.ends_with("url")
    {
        "write an absolute URL such as \"https://app.example.com/hooks/terra\"".into()
    } else {
        String::new()
    }
}

/// A problem found after parsing: key path, message, fix.
struct Problem {
    key: String,
    message: String,
    fix: String,
}

fn problem(key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        fix: fix.into(),
    }
}

impl Config {
    /// Read, interpolate, parse, validate and build a config file.
    pub fn load(path: &Path, registry: &Registry) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![ConfigIssue {
                file: file.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
                fix: "pass an existing file with --config".into(),
            }])
        })?;
        Self::from_str(&src, &file, registry, &|k| std::env::var(k).ok())
    }

    /// Parse a config from text. `env` resolves `${NAME}` references.
    pub fn from_str(
        src: &str,
        file: &str,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let index = SpanIndex::new(src);
        let issue = |p: Problem| ConfigIssue {
            file: file.to_string(),
            line: index.line_of_path(&p.key),
            fix: if p.fix.is_empty() && !has_hint(&p.message) {
                fix_for(&p.message, &p.key)
            } else {
                p.fix
            },
            key: p.key,
            message: p.message,
        };

        // 1. syntax
        let mut doc: DocumentMut = match src.parse() {
            Ok(d) => d,
            Err(e) => {
                let e: toml_edit::TomlError = e;
                let line = e.span().map(|s| index.line_of(s.start));
                return Err(ConfigError(vec![ConfigIssue {
                    file: file.to_string(),
                    line,
                    key: String::new(),
                    message: format!("invalid TOML: {}", e.message()),
                    fix: "correct the syntax (strings need double quotes, tables `[name]`)".into(),
                }]));
            }
        };

        // 2. ${ENV} interpolation in every string value
        let mut problems = Vec::new();
        interpolate_item(doc.as_item_mut(), "", env, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError(problems.into_iter().map(issue).collect()));
        }
        let text = doc.to_string();
        let index2 = SpanIndex::new(&text);

        // 3. typed parse
        let raw: RawConfig = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let (key, line) = match e.span() {
                    Some(s) => {
                        let key = index2.path_at(s.start).unwrap_or("").to_string();
                        (key, Some(index2.line_of(s.start)))
                    }
                    None => (String::new(), None),
                };
                let message = e.message().trim().to_string();
                return Err(ConfigError(vec![ConfigIssue {
                    file: file.to_string(),
                    line,
                    fix: fix_for(&message, &key),
                    key,
                    message,
                }]));
            }
        };

        // 4. validation and destination builds
        let mut problems = Vec::new();
        if raw.server.api_keys.iter().any(|k| k.expose().is_empty()) {
            problems.push(problem(
                "server.api_keys",
                "an API key is empty",
                "set a long random key, e.g. api_keys = [\"${MANIFOLD_API_KEY}\"]",
            ));
        }
        if raw.server.max_body < 1024 {
            problems.push(problem(
                "server.max_body",
                "is below 1KiB",
                "use e.g. \"10MiB\"",
            ));
        }
        let url = raw.store.url.expose();
        if !(url.starts_with("sqlite:") || raw.store.is_postgres()) {
            problems.push(problem(
                "store.url",
                format!("unsupported store URL scheme in `{}`", redact_url(url)),
                "use \"sqlite://./manifold-data/manifold.db\" or \"postgres://user@host/db\"",
            ));
        }
        if raw.store.lease < Duration::from_secs(1) {
            problems.push(problem(
                "store.lease",
                "must be at least 1s",
                "use e.g. \"60s\"",
            ));
        }
        if let Some(oura) = &raw.oura {
            validate_oura(oura, &raw.server, &mut problems);
        }

        let ctx = BuildContext::default();
        let mut names = HashSet::new();
        let mut names_in_order: Vec<String> = Vec::new();
        let mut destinations = Vec::new();
        for (i, table) in raw.destinations.into_iter().enumerate() {
            let at = format!("destinations[{i}]");
            let (common_t, settings): (toml::Table, toml::Table) = table
                .into_iter()
                .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
            let common: DestinationCommon =
                match serde_path_to_error::deserialize(toml::Value::Table(common_t)) {
                    Ok(c) => c,
                    Err(e) => {
                        let path = e.path().to_string();
                        let msg = e.inner().message().trim().to_string();
                        let key = if path.is_empty() || path == "." {
                            guess_key(&msg, COMMON_KEYS)
                                .map(|k| format!("{at}.{k}"))
                                .unwrap_or(at.clone())
                        } else {
                            format!("{at}.{path}")
                        };
                        problems.push(problem(key, msg, ""));
                        continue;
                    }
                };
            let name_ok = !common.name.is_empty()
                && common
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                problems.push(problem(
                    format!("{at}.name"),
                    format!("`{}` is not a valid destination name", common.name),
                    "use letters, digits, `-` and `_` only",
                ));
            }
            names_in_order.push(common.name.clone());
            if !names.insert(common.name.clone()) {
                problems.push(problem(
                    format!("{at}.name"),
                    format!("the name `{}` is used by another destination", common.name),
                    "give every destination a unique name",
                ));
            }
            if common.concurrency == 0 {
                problems.push(problem(
                    format!("{at}.concurrency"),
                    "must be at least 1",
                    "use e.g. 8",
                ));
            }
            if let Some(r) = common.rate_limit
                && (r.is_nan() || r <= 0.0)
            {
                problems.push(problem(
                    format!("{at}.rate_limit"),
                    "must be a positive number of deliveries per second",
                    "remove it for no limit",
                ));
            }
            if common.batch_size == Some(0) {
                problems.push(problem(
                    format!("{at}.batch_size"),
                    "must be at least 1",
                    "remove it to use the destination's default",
                ));
            }
            let retry = &common.retry;
            if retry.max_attempts == 0 {
                problems.push(problem(
                    format!("{at}.retry.max_attempts"),
                    "must be at least 1",
                    "use e.g. 10",
                ));
            }
            if retry.initial_backoff > retry.max_backoff {
                problems.push(problem(
                    format!("{at}.retry.initial_backoff"),
                    format!(
                        "is longer than retry.max_backoff ({} > {})",
                        humantime::format_duration(retry.initial_backoff),
                        humantime::format_duration(retry.max_backoff)
                    ),
                    "make initial_backoff <= max_backoff",
                ));
            }
            // Cross-field rule: a lease must outlive the attempt it protects, or another node
            // could claim a row that is still being delivered.
            if raw.store.lease <= common.timeout + Duration::from_secs(1) {
                problems.push(problem(
                    format!("{at}.timeout"),
                    format!(
                        "is {} but store.lease is {}: the lease must exceed the timeout by more than 1s",
                        humantime::format_duration(common.timeout),
                        humantime::format_duration(raw.store.lease)
                    ),
                    "lower the timeout or raise store.lease",
                ));
            }
            if let Some(types) = &common.data_types {
                for (j, t) in types.iter().enumerate() {
                    if !crate::event::is_known_type(t) {
                        problems.push(problem(
                            format!("{at}.data_types[{j}]"),
                            format!("`{t}` is not a Terra event type"),
                            format!("use one of {}", crate::event::KNOWN_TYPES.join(", ")),
                        ));
                    }
                }
            }
            let Some(factory) = registry.get(&common.kind) else {
                problems.push(problem(
                    format!("{at}.type"),
                    format!("unknown destination type `{}`", common.kind),
                    format!("use one of: {}", registry.kinds().join(", ")),
                ));
                continue;
            };
            match factory.build(&common.name, settings, &ctx) {
                Ok(destination) => {
                    if common.enabled {
                        destinations.push(DestinationConfig {
                            common,
                            destination,
                        });
                    }
                }
                Err(issues) => {
                    for s in issues {
                        let key = if s.key.is_empty() {
                            at.clone()
                        } else {
                            format!("{at}.{}", s.key)
                        };
                        problems.push(problem(key, s.message, ""));
                    }
                }
            }
        }
        for (by, key, name) in ctx.blob_stores.missing() {
            let at = names_in_order
                .iter()
                .position(|n| *n == by)
                .map(|i| format!("destinations[{i}].{key}"));
            problems.push(problem(
                at.unwrap_or(key),
                format!("`{name}` is not an object-storage destination in this file"),
                "name an s3, gcs or azure-blob destination defined in the same config",
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems.into_iter().map(issue).collect()));
        }
        Ok(Config {
            path: PathBuf::from(file),
            server: raw.server,
            store: raw.store,
            oura: raw.oura,
            destinations,
        })
    }
}

fn validate_oura(oura: &OuraConfig, server: &ServerConfig, problems: &mut Vec<Problem>) {
    if oura.client_id.trim().is_empty() {
        problems.push(problem(
            "oura.client_id",
            "is empty",
            "set it from the Oura developer portal, e.g. \"${OURA_CLIENT_ID}\"",
        ));
    }
    if oura.client_secret.expose().is_empty() {
        problems.push(problem(
            "oura.client_secret",
            "is empty",
            "set it from the Oura developer portal, e.g. \"${OURA_CLIENT_SECRET}\"",
        ));
    }
    if oura
        .verification_token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        problems.push(problem(
            "oura.verification_token",
            "is empty",
            "set a long random string, e.g. \"${OURA_VERIFICATION_TOKEN}\", or remove the key",
        ));
    }
    if oura.token_keys.is_empty() {
        problems.push(problem(
            "oura.token_keys",
            "is missing: Oura tokens are stored encrypted and need a key",
            "add token_keys = [\"${OURA_TOKEN_KEY}\"] with the base64 of 32 random bytes (`openssl rand -base64 32`)",
        ));
    } else if let Err(e) = oura.decoded_token_keys() {
        let at = e
            .split(' ')
            .next()
            .map(|k| format!("oura.{k}"))
            .unwrap_or_else(|| "oura.token_keys".into());
        problems.push(problem(
            at,
            e,
            "each key must be the base64 of 32 random bytes (`openssl rand -base64 32`)",
        ));
    }
    for (key, url) in [
        ("oura.api_base", &oura.api_base),
        ("oura.auth_base", &oura.auth_base),
        ("oura.token_url", &oura.token_url),
        ("oura.revoke_url", &oura.revoke_url),
        ("oura.redirect_uri", &oura.redirect_uri),
    ] {
        if let Some(u) = url
            && !matches!(u.scheme(), "http" | "https")
        {
            problems.push(problem(
                key,
                format!("`{u}` is not an http(s) URL"),
                "write an absolute URL such as \"https://api.ouraring.com\"",
            ));
        }
    }
    if oura.redirect_uri(server.public_url.as_ref()).is_none() {
        problems.push(problem(
            "server.public_url",
            "is required when [oura] is configured (the OAuth callback and webhook URLs derive from it)",
            "set server.public_url = \"https://health.example.com\", or oura.redirect_uri",
        ));
    }
    if oura
        .scopes
        .iter()
        .any(|s| s.trim().is_empty() || s.contains(' '))
    {
        problems.push(problem(
            "oura.scopes",
            "contains an empty scope or one with a space",
            "list one scope per string, e.g. [\"daily\", \"heartrate\"]",
        ));
    }
    if oura.signature_tolerance < Duration::from_secs(1) {
        problems.push(problem(
            "oura.signature_tolerance",
            "must be at least 1s",
            "use e.g. \"5m\"",
        ));
    }
    if oura.fetch_concurrency == 0 {
        problems.push(problem(
            "oura.fetch_concurrency",
            "must be at least 1",
            "use e.g. 4",
        ));
    }
    if oura.max_fetch_attempts == 0 {
        problems.push(problem(
            "oura.max_fetch_attempts",
            "must be at least 1",
            "use e.g. 10",
        ));
    }
    if oura.backfill_days > 1826 {
        problems.push(problem(
            "oura.backfill_days",
            "must be at most 1826 (5 years)",
            "use e.g. 28, or 0 to disable the backfill after connect",
        ));
    }
    if oura.rate_limit < 10 {
        problems.push(problem(
            "oura.rate_limit",
            format!(
                "is {}: it must be at least 10 requests per window",
                oura.rate_limit
            ),
            "use Oura's limit for your application, e.g. 5000",
        ));
    }
    if oura.rate_window < Duration::from_secs(1) {
        problems.push(problem(
            "oura.rate_window",
            "must be at least 1s",
            "use Oura's window, e.g. \"5m\"",
        ));
    }
    if !(0.0..=0.9).contains(&oura.live_reserve) {
        problems.push(problem(
            "oura.live_reserve",
            format!("is {}: it must be between 0 and 0.9", oura.live_reserve),
            "use e.g. 0.2 (a fifth of the burst is kept for live fetches)",
        ));
    }
    if oura.state_ttl < Duration::from_secs(10) {
        problems.push(problem(
            "oura.state_ttl",
            "must be at least 10s",
            "use e.g. \"15m\"",
        ));
    }
    for (key, value, example) in [
        ("oura.heartrate_poll", oura.heartrate_poll, "\"15m\""),
        ("oura.reconcile_every", oura.reconcile_every, "\"1h\""),
    ] {
        if !value.is_zero() && value < Duration::from_secs(1) {
            problems.push(problem(
                key,
                format!(
                    "`{}` is too short: it must be 0s (off) or at least 1s",
                    humantime::format_duration(value)
                ),
                format!("use e.g. {example}, or \"0s\" to turn it off"),
            ));
        }
    }
    if !(1..=30).contains(&oura.reconcile_days) {
        problems.push(problem(
            "oura.reconcile_days",
            format!("is {}: it must be between 1 and 30", oura.reconcile_days),
            "use e.g. 2 (today and the 2 days before); turn the reconcile off with reconcile_every = \"0s\"",
        ));
    }
}

/// Does the message already say how to fix it?
fn has_hint(message: &str) -> bool {
    [
        ": write ",
        "; write ",
        ": use ",
        "; use ",
        "write e.g.",
        "use e.g.",
    ]
    .iter()
    .any(|h| message.contains(h))
}

fn guess_key<'a>(msg: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .copied()
        .find(|k| msg.contains(&format!("`{k}`")))
}

/// `postgres://user:pass@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn interpolate_item(
    item: &mut toml_edit::Item,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    use toml_edit::Item;
    match item {
        Item::Table(t) => {
            for (k, v) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_item(v, &p, env, problems);
            }
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter_mut().enumerate() {
                for (k, v) in t.iter_mut() {
                    interpolate_item(v, &format!("{path}[{i}].{k}"), env, problems);
                }
            }
        }
        Item::Value(v) => interpolate_value(v, path, env, problems),
        Item::None => {}
    }
}

fn interpolate_value(
    v: &mut toml_edit::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    use toml_edit::Value;
    match v {
        Value::String(s) => {
            let raw = s.value().to_string();
            if raw.contains("${") {
                match interpolate(&raw, env) {
                    Ok(new) => *v = Value::from(new),
                    Err(msg) => problems.push(problem(path, msg, "")),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                interpolate_value(child, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::InlineTable(t) => {
            for (k, child) in t.iter_mut() {
                interpolate_value(child, &format!("{path}.{k}"), env, problems);
            }
        }
        _ => {}
    }
}
