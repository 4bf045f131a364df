//! Settings in three layers: `config/default.toml` (embedded in the binary, so the program runs
//! from anywhere), `config/{APP_ENVIRONMENT}.toml`, then `APP_<SECTION>__<KEY>` variables.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod database;
mod keys;
pub use database::{DatabaseSettings, Pooler};
use keys::refuse_unknown_keys;
#[cfg(test)]
use keys::{closest, edit_distance, known_keys};

const DEFAULT: &str = include_str!("../../config/default.toml");
const PRODUCTION: &str = include_str!("../../config/production.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub atrip: AtripSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub card: CardSettings,
    pub log: LogSettings,
    pub console: ConsoleSettings,
    pub reconcile: ReconcileSettings,
    /// `APP_ENVIRONMENT=production`: the stricter checks (TLS only, the plain-card guard).
    #[serde(skip)]
    pub production: bool,
}

/// The reconciliation of the job table with ATRIP's `orderList.do` (docs/design.md, R1-R6).
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileSettings {
    /// The worker runs it once a UTC day (one replica: the day's row in
    /// `ticketing_reconcile_runs` is its claim). On in production, off elsewhere.
    pub daily: bool,
    /// Not before this hour of the UTC day (the database's clock).
    pub daily_after_hour_utc: i32,
    /// The daily window: orders ATRIP created in the UTC days before today, this many.
    pub lookback_days: i32,
    /// Orders asked per page.
    pub page_size: u32,
    /// A run that would need more pages than this ends with an error (an endless answer).
    pub max_pages: u32,
    /// The number of ATRIP's first page (documented: 1).
    pub first_page: i64,
    /// A run ends with an error after this long, whatever ATRIP does.
    pub max_run_s: u64,
    /// Tries of one page that met a transient failure or a rate limit.
    pub page_tries: u32,
}

/// The operator console at `/console` on the HTTP port (`src/console/`): off until enabled
/// and given at least one password hash.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// `ticketing-tracker console-hash` output for the viewer role (reads everything, acts on
    /// nothing); empty: nobody logs in as a viewer. A hash, never the password.
    pub viewer_password_hash: SecretString,
    /// The same for the operator role (may retry and cancel).
    pub operator_password_hash: SecretString,
    /// A session ends this long after its login, whatever happens meanwhile.
    pub session_ttl_s: u64,
    /// Lists and the overview reload themselves this often.
    pub refresh_s: u64,
    /// Rows per page of a list.
    pub page_size: i64,
    /// A session nobody used for this long ends (a page that reloads itself counts as use).
    pub session_idle_s: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only) always: on wherever the console
    /// is reached through TLS. Off, it is still marked for a request that came through a
    /// trusted proxy saying `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
    /// The proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-Proto` is
    /// believed; empty: nobody's.
    pub trusted_proxies: String,
    /// `host:port` of a listener of the console's own (an internal address), apart from the
    /// HTTP port, which then serves no console; empty: the console is on the HTTP port.
    pub listen: String,
    /// The header in which an authenticating proxy (oauth2-proxy, Pomerium) names the person,
    /// e.g. `X-Forwarded-User`; believed only from `trusted_proxies` (docs/design.md, L4).
    /// Empty: no proxy identity.
    #[serde(default)]
    pub identity_header: String,
    /// The role of a person the proxy names: `viewer` or `operator`.
    #[serde(default = "viewer")]
    pub identity_role: String,
}

fn viewer() -> String {
    "viewer".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardSettings {
    /// Opens `card_sealed`; empty: this worker cannot pay sealed cards.
    pub secret_key: SecretString,
    /// During a key rotation, the key cards sealed before it were sealed to: tried when the
    /// current one cannot open a card. Empty once every such card is paid or erased.
    pub previous_secret_key: SecretString,
    /// In production, plain card data (`card`) may reach the table. Off: the database refuses
    /// it before the row is written (docs/design.md, C3).
    pub allow_plain: bool,
}

impl CardSettings {
    /// The keys, when one is configured: the current one, then the previous one.
    pub fn key(&self) -> Result<Option<crate::sealed::CardKeys>, ConfigError> {
        let parse = |key: &'static str, secret: &SecretString| {
            let secret = secret.expose_secret();
            if secret.trim().is_empty() {
                return Ok(None);
            }
            crate::sealed::CardKey::from_base64(secret)
                .map(Some)
                .map_err(|e| ConfigError::Invalid {
                    key,
                    problem: e.to_string(),
                })
        };
        let current = parse("card.secret_key", &self.secret_key)?;
        let previous = parse("card.previous_secret_key", &self.previous_secret_key)?;
        match (current, previous) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError::Invalid {
                key: "card.previous_secret_key",
                problem: "is set without card.secret_key: a rotation needs the new key too"
                    .to_owned(),
            }),
            (Some(current), previous) => Ok(Some(crate::sealed::CardKeys::new(current, previous))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AtripSettings {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub connect_timeout_ms: u64,
    pub pay_timeout_ms: u64,
    pub query_timeout_ms: u64,
    pub rate_limit_per_s: f64,
    /// The most one answer may hold, counted after gzip is undone; a longer one is read no
    /// further and is unclear (`pay.do`: outcome unknown). Real answers are a few KB to tens
    /// of KB; this only stops an answer that would otherwise take the process's memory.
    pub max_answer_bytes: u64,
    /// The most every answer in flight may hold at once, in this process: bodies as they are
    /// read, and their parsed fields. With `worker.concurrency` answers in flight each could be
    /// at `max_answer_bytes`; this is what keeps them all within the process's memory. Each
    /// answer waits for a first share of 192 KiB, enough for any real answer; the default
    /// holds one for each of the default concurrency's 128 answers.
    pub answer_budget_bytes: u64,
    /// `environment`, `none`, or a proxy URL: which proxy carries ATRIP traffic.
    pub proxy: String,
    /// In production, allows `http://` to a loopback host (a TLS-terminating sidecar).
    pub allow_plain_http: bool,
    /// A PEM bundle whose certificates are added to the built-in roots (an inspecting egress
    /// proxy's CA); empty: none. Read by `atrip::ca::CaBundle` when the client is built.
    pub ca_file: String,
    /// pay.do's `requestSource`; empty: null (ATRIP uses it for channel attribution).
    #[serde(default)]
    pub request_source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub webhook_secret: SecretString,
    /// A request's line and headers must arrive whole within this (also the longest a
    /// kept-alive connection waits for its next request): a client trickling header bytes
    /// holds a connection no longer.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed (a stalled
    /// body, a client that does not read its answer).
    pub idle_timeout_ms: u64,
    /// Connections open at once on the port; past it new ones wait to be accepted.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_ms: u64,
    pub claim_interval_ms: u64,
    pub max_pay_attempts: i32,
    pub unpaid_settle_s: u64,
    pub review_margin_s: u64,
    pub recovery_delay_ms: u64,
    pub first_poll_ms: u64,
    pub poll_initial_ms: u64,
    pub poll_multiplier: f64,
    pub poll_max_ms: u64,
    pub poll_randomization: f64,
    pub ticketing_deadline_s: u64,
    pub paying_deadline_s: u64,
    pub max_error_streak: i32,
    pub shutdown_grace_ms: u64,
    pub credentials_pause_ms: u64,
    pub write_batch_wait_ms: u64,
    pub retention_days: u64,
    /// Where an intent must be durable before its `pay.do` may leave (rule P1b): `auto`,
    /// `local` or `replicated`; see [`IntentDurability`].
    pub intent_durability: String,
    /// With `replicated`: how many standbys must have flushed an intent first.
    pub intent_standbys: u32,
    /// With `replicated`: how long a `pay.do` may wait for that; past it the row is given back
    /// unsent.
    pub replication_wait_ms: u64,
    /// The deposit account's settlement currency, asked of `balance.do` for a 411 review
    /// (rule P6).
    #[serde(default = "default_balance_currency")]
    pub balance_currency: String,
    /// The balance pre-check (rule P1e): every this many seconds, pending deposit orders with
    /// a `price` the balance cannot cover wait instead of meeting a 411. 0: off.
    #[serde(default)]
    pub balance_precheck_s: u64,
}

fn default_balance_currency() -> String {
    "USD".to_owned()
}

/// Where a pay intent must be durable before its `pay.do` leaves (docs/design.md, rule P1b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentDurability {
    /// `replicated` as soon as the server has, or is seen to have had, a standby (a streaming
    /// standby, a physical replication slot, or `synchronous_standby_names`); `local` until
    /// then. It never goes back to `local` while the process lives: a standby that has just
    /// disconnected is the moment a failover is most likely.
    Auto,
    /// Flushed on the server the worker writes to: safe across a crash of that server, not
    /// across a failover to a standby. For a single server, or storage replicated below
    /// PostgreSQL (RDS Multi-AZ instances, Cloud SQL HA).
    Local,
    /// Flushed by at least `intent_standbys` physical standbys, read from
    /// `pg_stat_replication` after the intent's commit.
    Replicated,
}

impl IntentDurability {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "auto" => Some(Self::Auto),
            "local" => Some(Self::Local),
            "replicated" => Some(Self::Replicated),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Local => "local",
            Self::Replicated => "replicated",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    /// A key no setting has: a typo must not be ignored silently.
    #[error("{source_name}: unknown setting {key}{}", suggestion.as_ref().map_or(String::new(), |s| format!("; did you mean {s}?")))]
    Unknown {
        source_name: String,
        key: String,
        suggestion: Option<String>,
    },
}

impl Settings {
    /// Loads the layers for `APP_ENVIRONMENT` (default `local`) and checks them.
    pub fn load() -> Result<Self, ConfigError> {
        let env = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        let dir = std::env::var("APP_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT, config::FileFormat::Toml));
        if env == "production" {
            builder =
                builder.add_source(config::File::from_str(PRODUCTION, config::FileFormat::Toml));
        }
        builder = builder
            .add_source(config::File::with_name(&format!("{dir}/{env}")).required(false))
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("_")
                    .separator("__"),
            );
        if std::env::var_os("APP_DATABASE__URL").is_none() {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                builder = builder.set_override("database.url", url)?;
            }
        }
        refuse_unknown_keys(&env, &dir)?;
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.production = env == "production";
        settings.validate()?;
        if env == "production" {
            settings.atrip.require_tls()?;
        }
        Ok(settings)
    }

    /// Refuses settings the worker cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.atrip.client_id.trim().is_empty() {
            return invalid("atrip.client_id", "is empty: set APP_ATRIP__CLIENT_ID");
        }
        if self.atrip.client_secret.expose_secret().trim().is_empty() {
            return invalid(
                "atrip.client_secret",
                "is empty: set APP_ATRIP__CLIENT_SECRET",
            );
        }
        let schema = &self.database.schema;
        if !(1..=63).contains(&schema.len())
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                key: "database.schema",
                problem: format!(
                    "is {schema:?}; it must be a plain lower-case schema name (letters, digits, _)"
                ),
            });
        }
        let db_url = self.database.url.expose_secret();
        if !(db_url.starts_with("postgres://") || db_url.starts_with("postgresql://")) {
            // Quote the scheme only when there is one that looks like a scheme: a URL typed
            // without its scheme starts with the user and password.
            let scheme = db_url
                .split_once("://")
                .map(|(scheme, _)| scheme)
                .filter(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                });
            let found = match scheme {
                Some(scheme) => format!("the scheme is {scheme:?}"),
                None => {
                    "it has no scheme (nothing of it is shown: it may hold a password)".to_owned()
                }
            };
            return Err(ConfigError::Invalid {
                key: "database.url",
                problem: format!(
                    "{found}; the job table lives in PostgreSQL: postgres://user:password@host:5432/database"
                ),
            });
        }
        self.database.validate_pooling()?;
        if !(self.atrip.base_url.starts_with("http://")
            || self.atrip.base_url.starts_with("https://"))
        {
            return invalid("atrip.base_url", "must start with http:// or https://");
        }
        // Every duration and count within a sane range, so that no arithmetic on them can
        // overflow and no typo leaves rows waiting for a year.
        const MINUTE: u64 = 60_000;
        const DAY_S: u64 = 86_400;
        const MIB: u64 = 1 << 20;
        let a = &self.atrip;
        let w = &self.worker;
        let ranges: &[(&'static str, u64, u64, u64)] = &[
            (
                "atrip.connect_timeout_ms",
                a.connect_timeout_ms,
                100,
                MINUTE,
            ),
            ("atrip.pay_timeout_ms", a.pay_timeout_ms, 100, 5 * MINUTE),
            (
                "atrip.query_timeout_ms",
                a.query_timeout_ms,
                100,
                5 * MINUTE,
            ),
            (
                "atrip.max_answer_bytes",
                a.max_answer_bytes,
                16 * 1024,
                64 * MIB,
            ),
            ("worker.concurrency", w.concurrency as u64, 1, 100_000),
            ("worker.lease_ms", w.lease_ms, 1000, 60 * MINUTE),
            (
                "worker.claim_interval_ms",
                w.claim_interval_ms,
                10,
                10 * MINUTE,
            ),
            (
                "worker.max_pay_attempts",
                w.max_pay_attempts.max(0) as u64,
                1,
                100,
            ),
            ("worker.unpaid_settle_s", w.unpaid_settle_s, 1, DAY_S),
            ("worker.review_margin_s", w.review_margin_s, 0, DAY_S),
            (
                "worker.recovery_delay_ms",
                w.recovery_delay_ms,
                0,
                60 * MINUTE,
            ),
            ("worker.first_poll_ms", w.first_poll_ms, 0, 60 * MINUTE),
            ("worker.poll_initial_ms", w.poll_initial_ms, 1, 60 * MINUTE),
            ("worker.poll_max_ms", w.poll_max_ms, 1, 24 * 60 * MINUTE),
            (
                "worker.ticketing_deadline_s",
                w.ticketing_deadline_s,
                1,
                30 * DAY_S,
            ),
            (
                "worker.paying_deadline_s",
                w.paying_deadline_s,
                1,
                30 * DAY_S,
            ),
            (
                "worker.max_error_streak",
                w.max_error_streak.max(0) as u64,
                1,
                10_000,
            ),
            (
                "worker.shutdown_grace_ms",
                w.shutdown_grace_ms,
                0,
                60 * MINUTE,
            ),
            (
                "worker.credentials_pause_ms",
                w.credentials_pause_ms,
                100,
                60 * MINUTE,
            ),
            ("worker.write_batch_wait_ms", w.write_batch_wait_ms, 0, 1000),
            ("worker.retention_days", w.retention_days, 0, 3650),
            (
                "worker.intent_standbys",
                u64::from(w.intent_standbys),
                1,
                16,
            ),
            (
                "worker.replication_wait_ms",
                w.replication_wait_ms,
                10,
                5 * MINUTE,
            ),
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
                1,
                10_000,
            ),
        ];
        for &(key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}; it must be between {min} and {max}"),
                });
            }
        }
        // An answer at the size limit must fit in the budget (its body and its parsed fields),
        // or it could never be read.
        let reserve = crate::atrip::client::PARSED_RESERVE as u64;
        if !(2 * a.max_answer_bytes + reserve..=1024 * MIB).contains(&a.answer_budget_bytes) {
            return Err(ConfigError::Invalid {
                key: "atrip.answer_budget_bytes",
                problem: format!(
                    "is {}; it must be at least twice atrip.max_answer_bytes plus {reserve} (for the parsed fields), and at most 1073741824 (1 GiB)",
                    a.answer_budget_bytes
                ),
            });
        }
        // The pay call must end (and its answer be recorded) while the lease is still ours;
        // otherwise another worker could start recovery while our pay.do is in flight. (The
        // bounds above keep the product from overflowing.)
        if a.pay_timeout_ms * 2 > w.lease_ms || a.query_timeout_ms * 2 > w.lease_ms {
            return invalid(
                "atrip.pay_timeout_ms",
                "pay_timeout_ms and query_timeout_ms must each be at most half of worker.lease_ms",
            );
        }
        if IntentDurability::parse(&w.intent_durability).is_none() {
            return Err(ConfigError::Invalid {
                key: "worker.intent_durability",
                problem: format!(
                    "is {:?}; it must be auto, local or replicated",
                    w.intent_durability
                ),
            });
        }
        self.card.key()?;
        self.validate_http()?;
        self.validate_console()?;
        self.validate_reconcile()?;
        if !(self.atrip.rate_limit_per_s > 0.0 && self.atrip.rate_limit_per_s <= 100_000.0) {
            return invalid(
                "atrip.rate_limit_per_s",
                "must be above 0 and at most 100000",
            );
        }
        if !(0.0..1.0).contains(&self.worker.poll_randomization)
            || self.worker.poll_multiplier < 1.0
        {
            return invalid(
                "worker.poll_randomization",
                "must be in [0, 1) with poll_multiplier >= 1",
            );
        }
        Ok(())
    }

    /// The reconciliation's bounds.
    fn validate_reconcile(&self) -> Result<(), ConfigError> {
        let r = &self.reconcile;
        for (key, value, min, max) in [
            (
                "reconcile.daily_after_hour_utc",
                i64::from(r.daily_after_hour_utc),
                0,
                23,
            ),
            ("reconcile.lookback_days", i64::from(r.lookback_days), 1, 31),
            (
                "reconcile.page_size",
                i64::from(r.page_size),
                1,
                crate::atrip::MAX_LIST_ROWS as i64,
            ),
            ("reconcile.max_pages", i64::from(r.max_pages), 1, 100_000),
            ("reconcile.first_page", r.first_page, 0, 1),
            (
                "reconcile.max_run_s",
                i64::try_from(r.max_run_s).unwrap_or(i64::MAX),
                10,
                86_400,
            ),
            ("reconcile.page_tries", i64::from(r.page_tries), 1, 10),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}; it must be between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    /// The HTTP port's bounds: each must be set, none so long that it bounds nothing.
    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        for (key, value, min, max) in [
            (
                "http.header_read_timeout_ms",
                h.header_read_timeout_ms,
                100,
                300_000,
            ),
            ("http.idle_timeout_ms", h.idle_timeout_ms, 1000, 3_600_000),
            ("http.max_connections", h.max_connections as u64, 1, 100_000),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}; it must be between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    /// An enabled console needs password hashes that parse (if any: named accounts live in
    /// the database), sane bounds, and a proxy identity only behind a trusted proxy.
    fn validate_console(&self) -> Result<(), ConfigError> {
        let c = &self.console;
        if !c.enabled {
            return Ok(());
        }
        for (key, hash) in [
            ("console.viewer_password_hash", &c.viewer_password_hash),
            ("console.operator_password_hash", &c.operator_password_hash),
        ] {
            let hash = hash.expose_secret().trim();
            if hash.is_empty() {
                continue;
            }
            crate::console::PasswordHash::parse(hash).map_err(|problem| ConfigError::Invalid {
                key,
                problem: format!("{problem} (make one with `ticketing-tracker console-hash`)"),
            })?;
        }
        let header = c.identity_header.trim();
        if !header.is_empty() {
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ConfigError::Invalid {
                    key: "console.identity_header",
                    problem: "is not a header name (e.g. X-Forwarded-User)".into(),
                });
            }
            if c.trusted_proxies.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "console.identity_header",
                    problem: "is set but console.trusted_proxies is empty: the header would be believed from nobody; name the authenticating proxy's addresses".into(),
                });
            }
        }
        if !["viewer", "operator"].contains(&c.identity_role.trim()) {
            return Err(ConfigError::Invalid {
                key: "console.identity_role",
                problem: "must be viewer or operator".into(),
            });
        }
        let listen = c.listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "console.listen",
                problem: "must be empty or an address and port, e.g. 127.0.0.1:8081 or [::1]:8081"
                    .into(),
            });
        }
        crate::console::TrustedProxies::parse(&c.trusted_proxies).map_err(|problem| {
            ConfigError::Invalid {
                key: "console.trusted_proxies",
                problem,
            }
        })?;
        for (key, value, min, max) in [
            ("console.session_ttl_s", c.session_ttl_s, 60, 7 * 86_400),
            (
                "console.session_idle_s",
                c.session_idle_s,
                60,
                c.session_ttl_s.max(60),
            ),
            ("console.refresh_s", c.refresh_s, 1, 3600),
            ("console.page_size", c.page_size.max(0) as u64, 10, 500),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("is {value}; it must be between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    /// The embedded defaults alone (tests and the demo start from these).
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULT, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the embedded config/default.toml is valid")
    }
}

/// A URL with any `user:password@` replaced by `***@`.
fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host))
                if !rest.split('/').next().unwrap_or("").is_empty()
                    && rest.split('/').next().unwrap_or("").contains('@') =>
            {
                format!("{scheme}://***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl AtripSettings {
    /// Production sends the card (in `pay.do`) and the client secret (in every request) to
    /// ATRIP: only over TLS. `http://` is refused, but to a loopback host (a sidecar that
    /// terminates TLS on this machine) when `allow_plain_http` says so.
    pub fn require_tls(&self) -> Result<(), ConfigError> {
        let url = self.base_url.trim();
        if url.starts_with("https://") {
            return Ok(());
        }
        let host = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .map(|authority| authority.rsplit_once('@').map_or(authority, |(_, h)| h))
            .map(|host_port| match host_port.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host_port.split(':').next().unwrap_or(""),
            })
            .unwrap_or("");
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.allow_plain_http && loopback {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            key: "atrip.base_url",
            problem: if loopback {
                "is http:// in production; a TLS-terminating sidecar on the loopback needs atrip.allow_plain_http = true (APP_ATRIP__ALLOW_PLAIN_HTTP)".to_owned()
            } else {
                "must be https:// in production: pay.do carries card data and every request the client secret".to_owned()
            },
        })
    }

    /// Which proxy ATRIP traffic goes through, in words for the start line (credentials in
    /// a proxy URL are not shown), and the proxy to configure: `None` means the client's
    /// default, the environment's.
    pub fn proxy_choice(&self) -> Result<(Option<reqwest::Proxy>, bool, String), ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "atrip.proxy",
            problem,
        };
        match self.proxy.trim() {
            "none" => Ok((None, true, "direct (atrip.proxy = none)".to_owned())),
            "environment" | "" => {
                let https = self.base_url.trim().starts_with("https://");
                let names: &[&str] = if https {
                    &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
                } else {
                    &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
                };
                let found = names.iter().find_map(|n| {
                    std::env::var(n)
                        .ok()
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (*n, v))
                });
                let said = match found {
                    Some((name, url)) => format!(
                        "through the proxy {} (from {name}; NO_PROXY may exempt ATRIP; atrip.proxy = none ignores the environment)",
                        redact_userinfo(&url)
                    ),
                    None => "direct (no proxy in the environment)".to_owned(),
                };
                Ok((None, false, said))
            }
            url => {
                let proxy = reqwest::Proxy::all(url)
                    .map_err(|e| invalid(format!("is not a proxy URL: {e}")))?;
                Ok((
                    Some(proxy),
                    true,
                    format!("through the proxy {} (atrip.proxy)", redact_userinfo(url)),
                ))
            }
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        ms(self.connect_timeout_ms)
    }
    pub fn pay_timeout(&self) -> Duration {
        ms(self.pay_timeout_ms)
    }
    pub fn query_timeout(&self) -> Duration {
        ms(self.query_timeout_ms)
    }
    pub fn max_answer_bytes(&self) -> usize {
        usize::try_from(self.max_answer_bytes).unwrap_or(usize::MAX)
    }
    pub fn answer_budget_bytes(&self) -> usize {
        usize::try_from(self.answer_budget_bytes).unwrap_or(usize::MAX)
    }
}

impl WorkerSettings {
    pub fn lease(&self) -> Duration {
        ms(self.lease_ms)
    }
    pub fn claim_interval(&self) -> Duration {
        ms(self.claim_interval_ms)
    }
    pub fn recovery_delay(&self) -> Duration {
        ms(self.recovery_delay_ms)
    }
    pub fn first_poll(&self) -> Duration {
        ms(self.first_poll_ms)
    }
    pub fn ticketing_deadline(&self) -> Duration {
        Duration::from_secs(self.ticketing_deadline_s)
    }
    pub fn paying_deadline(&self) -> Duration {
        Duration::from_secs(self.paying_deadline_s)
    }
    pub fn shutdown_grace(&self) -> Duration {
        ms(self.shutdown_grace_ms)
    }
    pub fn credentials_pause(&self) -> Duration {
        ms(self.credentials_pause_ms)
    }
    pub fn write_batch_wait(&self) -> Duration {
        ms(self.write_batch_wait_ms)
    }
    pub fn replication_wait(&self) -> Duration {
        ms(self.replication_wait_ms)
    }
    /// The policy; `validate` refused anything else, so an unknown word reads as the
    /// strictest.
    pub fn intent_durability(&self) -> IntentDurability {
        IntentDurability::parse(&self.intent_durability).unwrap_or(IntentDurability::Replicated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_valid_and_point_at_the_simulator() {
        let s = Settings::defaults();
        s.validate().unwrap();
        assert_eq!(s.atrip.base_url, "http://127.0.0.1:8088");
        assert_eq!(s.http.port, 8080);
    }

    #[test]
    fn keys_are_suggested_by_edit_distance() {
        let known = known_keys();
        assert!(
            known.contains(&"worker.concurrency".to_owned()),
            "{known:?}"
        );
        assert_eq!(
            closest("worker.concurency", &known),
            Some("worker.concurrency")
        );
        assert_eq!(closest("http.prot", &known), Some("http.port"));
        assert_eq!(closest("completely.different", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_database_url_that_is_not_postgres_is_refused() {
        let mut s = Settings::defaults();
        s.database.url = "mysql://root@127.0.0.1/db".to_owned().into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("database.url") && e.contains("\"mysql\""), "{e}");
    }

    #[test]
    fn a_database_url_without_its_scheme_is_refused_without_quoting_it() {
        let mut s = Settings::defaults();
        s.database.url = "ticketing:Sup3rS3cret@db.internal:5432/app"
            .to_owned()
            .into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("database.url") && e.contains("no scheme"), "{e}");
        assert!(
            !e.contains("Sup3rS3cret") && !e.contains("db.internal"),
            "{e}"
        );
    }

    #[test]
    fn production_takes_atrip_over_tls_only_and_a_loopback_sidecar_when_allowed() {
        let mut a = Settings::defaults().atrip;
        for url in [
            "http://api-sg.atriptech.com",
            "http://10.0.0.5:8080/",
            "ftp://x",
        ] {
            a.base_url = url.into();
            let e = a.require_tls().unwrap_err().to_string();
            assert!(
                e.contains("atrip.base_url") && e.contains("https://"),
                "{url}: {e}"
            );
        }
        a.base_url = "http://127.0.0.1:8443".into();
        let e = a.require_tls().unwrap_err().to_string();
        assert!(e.contains("allow_plain_http"), "{e}");
        a.allow_plain_http = true;
        a.require_tls().unwrap();
        a.base_url = "http://[::1]:8443/".into();
        a.require_tls().unwrap();
        a.base_url = "http://127.0.0.1.evil.example".into();
        assert!(a.require_tls().is_err(), "not a loopback host");
        a.base_url = "https://api-sg.atriptech.com".into();
        a.allow_plain_http = false;
        a.require_tls().unwrap();
    }

    #[test]
    fn the_proxy_setting_is_said_without_its_credentials() {
        let mut a = Settings::defaults().atrip;
        a.proxy = "none".into();
        assert!(a.proxy_choice().unwrap().2.contains("direct"));
        a.proxy = "http://user:pw@proxy.internal:3128".into();
        let said = a.proxy_choice().unwrap().2;
        assert!(
            said.contains("proxy.internal:3128") && !said.contains("pw"),
            "{said}"
        );
        a.proxy = "::not a url".into();
        assert!(a.proxy_choice().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::defaults();
        let shown = format!("{s:?}");
        assert!(!shown.contains("sim-secret"), "{shown}");
    }

    #[test]
    fn huge_values_are_refused_with_their_key_instead_of_wrapping() {
        let mut s = Settings::defaults();
        s.atrip.pay_timeout_ms = 1 << 63;
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("atrip.pay_timeout_ms") && e.contains("between"),
            "{e}"
        );
        let mut s = Settings::defaults();
        s.worker.lease_ms = u64::MAX;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("worker.lease_ms"), "{e}");
        let mut s = Settings::defaults();
        s.worker.ticketing_deadline_s = 100 * 365 * 86_400;
        assert!(s.validate().is_err());
    }

    #[test]
    fn an_enabled_console_needs_a_hash_that_parses() {
        let mut s = Settings::defaults();
        assert!(!s.console.enabled, "the console is off by default");
        s.console.enabled = true;
        // Without a shared hash only named accounts (in the database) log in.
        s.validate().unwrap();
        s.console.identity_header = "X-Forwarded-User".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("console.identity_header"), "{e}");
        s.console.trusted_proxies = "10.0.0.1".into();
        s.validate().unwrap();
        s.console.identity_role = "admin".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("console.identity_role"), "{e}");
        s.console.identity_role = "operator".into();
        s.console.operator_password_hash = "not-a-hash".to_owned().into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("console.operator_password_hash"), "{e}");
        let hash = crate::console::PasswordHash::create("correct horse battery", 1000);
        s.console.operator_password_hash = hash.to_string().into();
        s.validate().unwrap();
        s.console.refresh_s = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("console.refresh_s"));
    }

    #[test]
    fn an_answer_limit_the_budget_cannot_hold_is_refused() {
        let mut s = Settings::defaults();
        s.atrip.answer_budget_bytes = s.atrip.max_answer_bytes;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("atrip.answer_budget_bytes"), "{e}");
        let mut s = Settings::defaults();
        s.atrip.max_answer_bytes = u64::MAX;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("atrip.max_answer_bytes"), "{e}");
    }

    #[test]
    fn a_pay_timeout_longer_than_half_the_lease_is_refused() {
        let mut s = Settings::defaults();
        s.atrip.pay_timeout_ms = s.worker.lease_ms;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("atrip.pay_timeout_ms"), "{e}");
    }
}
