//! Settings in three layers: `config/default.toml` (embedded in the binary, so the program runs
//! from anywhere), `config/{APP_ENVIRONMENT}.toml`, then `APP_<SECTION>__<KEY>` variables.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULT: &str = include_str!("../config/default.toml");
const PRODUCTION: &str = include_str!("../config/production.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub atrip: AtripSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub card: CardSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardSettings {
    /// Opens `card_sealed`; empty: this worker cannot pay sealed cards.
    pub secret_key: SecretString,
}

impl CardSettings {
    /// The key, when one is configured.
    pub fn key(&self) -> Result<Option<crate::sealed::CardKey>, ConfigError> {
        let secret = self.secret_key.expose_secret();
        if secret.trim().is_empty() {
            return Ok(None);
        }
        crate::sealed::CardKey::from_base64(secret)
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                key: "card.secret_key",
                problem: e.to_string(),
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// A secret: a URL may carry a password.
    pub url: SecretString,
    pub max_connections: u32,
    pub migrate_on_start: bool,
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
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub webhook_secret: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_ms: u64,
    pub claim_interval_ms: u64,
    pub pay_grace_ms: u64,
    pub max_pay_attempts: i32,
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
    pub retention_days: u64,
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
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
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
        if !(self.atrip.base_url.starts_with("http://")
            || self.atrip.base_url.starts_with("https://"))
        {
            return invalid("atrip.base_url", "must start with http:// or https://");
        }
        // The pay call must end (and its answer be recorded) while the lease is still ours;
        // otherwise another worker could start recovery while our pay.do is in flight.
        if self.atrip.pay_timeout_ms * 2 > self.worker.lease_ms {
            return invalid(
                "atrip.pay_timeout_ms",
                "must be at most half of worker.lease_ms",
            );
        }
        self.card.key()?;
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.max_pay_attempts < 1 {
            return invalid("worker.max_pay_attempts", "must be at least 1");
        }
        if self.atrip.rate_limit_per_s <= 0.0 {
            return invalid("atrip.rate_limit_per_s", "must be positive");
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

    /// The embedded defaults alone (tests and the demo start from these).
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULT, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the embedded config/default.toml is valid")
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl AtripSettings {
    pub fn connect_timeout(&self) -> Duration {
        ms(self.connect_timeout_ms)
    }
    pub fn pay_timeout(&self) -> Duration {
        ms(self.pay_timeout_ms)
    }
    pub fn query_timeout(&self) -> Duration {
        ms(self.query_timeout_ms)
    }
}

impl WorkerSettings {
    pub fn lease(&self) -> Duration {
        ms(self.lease_ms)
    }
    pub fn claim_interval(&self) -> Duration {
        ms(self.claim_interval_ms)
    }
    pub fn pay_grace(&self) -> Duration {
        ms(self.pay_grace_ms)
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
    fn secrets_do_not_print() {
        let s = Settings::defaults();
        let shown = format!("{s:?}");
        assert!(!shown.contains("sim-secret"), "{shown}");
    }

    #[test]
    fn a_pay_timeout_longer_than_half_the_lease_is_refused() {
        let mut s = Settings::defaults();
        s.atrip.pay_timeout_ms = s.worker.lease_ms;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("atrip.pay_timeout_ms"), "{e}");
    }
}
