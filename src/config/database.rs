//! The `[database]` settings: where the job table is, and how the worker may reach it (directly,
//! or through a transaction pooler such as PgBouncer, with a direct address for what a pooler
//! cannot carry).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// A secret: a URL may carry a password.
    pub url: SecretString,
    pub max_connections: u32,
    pub migrate_on_start: bool,
    /// The schema the job table lives in. Every connection's `search_path` is this schema
    /// alone, whatever the role's or database's says: PostgreSQL's default `"$user", public`
    /// puts a schema named after the role first, and a copy of the table there would be read
    /// instead of the live one.
    pub schema: String,
    /// Whether `url` leads through a transaction pooler: `auto`, `none` or `transaction`; see
    /// [`Pooler`].
    pub pooler: String,
    /// The PostgreSQL server itself, for `LISTEN` when `url` goes through a transaction pooler
    /// (a pooler hands the session to other clients between transactions, and the
    /// notifications with it). Empty: no `LISTEN` then; new rows are found by polling every
    /// `worker.claim_interval_ms`. A secret, like `url`.
    pub listen_url: SecretString,
    /// The PostgreSQL server itself, for migrations when `url` goes through a transaction
    /// pooler (they hold an advisory lock for the whole session). Empty: `listen_url` if set;
    /// otherwise migrations are refused through the pooler.
    pub direct_url: SecretString,
    /// The longest any of the worker's statements may run (its own `statement_timeout`,
    /// whatever the server's is); migrations have none.
    pub statement_timeout_ms: u64,
}

/// How `database.url` reaches PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// Found out at start: one client connection whose statements run on more than one server
    /// backend (`pg_backend_pid()`), or two client connections that share one, is a
    /// transaction pooler; anything else is taken as a connection of its own (direct, or a
    /// session pooler, which is the same for the worker).
    Auto,
    /// Each client connection is one server session: named prepared statements, startup
    /// options and `LISTEN` hold for its life.
    None,
    /// Each transaction may run on another server session (PgBouncer `pool_mode =
    /// transaction`, PgCat, Supavisor, Odyssey, RDS Proxy): every statement runs inside a
    /// transaction of its own with the unnamed prepared statement, sets its `search_path` in
    /// that transaction, and nothing is kept in the session.
    Transaction,
}

impl Pooler {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "auto" => Some(Self::Auto),
            "none" => Some(Self::None),
            "transaction" => Some(Self::Transaction),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::Transaction => "transaction",
        }
    }
}

impl DatabaseSettings {
    /// The connection options for a connection that is a session of its own: the URL's, with
    /// `search_path` pinned to `schema` (sent at connection start, so it holds for every
    /// statement of every connection, the `LISTEN` one and the functions the statements call
    /// included).
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        Ok(self.pin_schema(parse("database.url", &self.url)?))
    }

    /// The URL's options as written, nothing added: for a transaction pooler, which refuses
    /// (PgBouncer before 1.20) or drops startup options, and for the start's look at what
    /// `url` leads to. The `search_path` is then set in every transaction instead.
    pub fn url_options(&self) -> Result<PgConnectOptions, ConfigError> {
        parse("database.url", &self.url)
    }

    /// `pooler`, parsed (validated at load).
    pub fn pooler(&self) -> Pooler {
        Pooler::parse(&self.pooler).unwrap_or(Pooler::Auto)
    }

    /// `listen_url`'s options with the schema pinned, when it is set.
    pub fn listen_options(&self) -> Result<Option<PgConnectOptions>, ConfigError> {
        optional("database.listen_url", &self.listen_url)
            .map(|o| o.map(|options| self.pin_schema(options)))
    }

    /// Where migrations may run when `url` goes through a transaction pooler: `direct_url`,
    /// else `listen_url`, with the key it came from.
    pub fn direct_options(&self) -> Result<Option<(PgConnectOptions, &'static str)>, ConfigError> {
        for (key, url) in [
            ("database.direct_url", &self.direct_url),
            ("database.listen_url", &self.listen_url),
        ] {
            if let Some(options) = optional(key, url)? {
                return Ok(Some((self.pin_schema(options), key)));
            }
        }
        Ok(None)
    }

    /// The session settings every connection of the worker pins, whatever a DBA set for the
    /// server, the database or the role (docs/design.md, E1), as `pg_settings` shows them once
    /// in force. Each is a promise's condition:
    /// - `search_path`: the job table is this schema's, never a copy in a schema named after
    ///   the role;
    /// - `default_transaction_isolation`: read committed, which the statements are written for
    ///   (a serializable default would fail claims with serialization errors);
    /// - `statement_timeout`: long enough for every statement, short enough that a stuck one
    ///   ends well within a lease; `lock_timeout` 0 (the statement timeout bounds every wait);
    /// - `idle_in_transaction_session_timeout`: the statement timeout, so that a frozen
    ///   worker's open transaction ends, but a DBA's few milliseconds do not cut a working one;
    /// - `idle_session_timeout` 0: the pool's and the LISTEN connection are not cut while idle;
    /// - `TimeZone` UTC: times rendered as text in events read the same everywhere.
    ///
    /// `synchronous_commit` is raised by the statements that need it (an intent is durable
    /// only once flushed, rule P1b), never lowered, and `default_transaction_read_only` is
    /// checked, not pinned: a database a DBA made read-only is not one to write to. Through a
    /// transaction pooler, the same values are set in each statement's own transaction
    /// ([`DatabaseSettings::transaction_pins`]).
    pub fn session_pins(&self) -> Vec<(&'static str, String)> {
        let timeout = self.statement_timeout_ms.to_string();
        vec![
            ("search_path", self.schema.clone()),
            ("default_transaction_isolation", "read committed".to_owned()),
            ("statement_timeout", timeout.clone()),
            ("lock_timeout", "0".to_owned()),
            ("idle_in_transaction_session_timeout", timeout),
            ("idle_session_timeout", "0".to_owned()),
            ("TimeZone", "UTC".to_owned()),
        ]
    }

    /// What a transaction through a transaction pooler sets with `SET LOCAL` (the search
    /// path apart, which the pooled path sets first): the session pins that are a
    /// transaction's to set. `default_transaction_isolation` becomes the transaction's own
    /// isolation level; `idle_session_timeout` is a session's, and the pooler's server
    /// sessions are its own.
    pub fn transaction_pins(&self) -> Vec<(&'static str, String)> {
        self.session_pins()
            .into_iter()
            .filter_map(|(name, value)| match name {
                "search_path" | "idle_session_timeout" => None,
                "default_transaction_isolation" => Some(("transaction_isolation", value)),
                _ => Some((name, value)),
            })
            .collect()
    }

    fn pin_schema(&self, options: PgConnectOptions) -> PgConnectOptions {
        // The startup packet's `options` is split at spaces unless escaped with a backslash.
        let escaped = self
            .session_pins()
            .into_iter()
            .map(|(name, value)| (name, value.replace('\\', "\\\\").replace(' ', "\\ ")));
        options.options(escaped)
    }

    /// The pooler setting and the direct URLs' schemes (`url`'s is checked with the others).
    pub(super) fn validate_pooling(&self) -> Result<(), ConfigError> {
        if Pooler::parse(&self.pooler).is_none() {
            return Err(ConfigError::Invalid {
                key: "database.pooler",
                problem: format!("is {:?}; it must be auto, none or transaction", self.pooler),
            });
        }
        optional("database.listen_url", &self.listen_url)?;
        optional("database.direct_url", &self.direct_url)?;
        Ok(())
    }
}

fn parse(key: &'static str, url: &SecretString) -> Result<PgConnectOptions, ConfigError> {
    let url = url.expose_secret();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // Nothing of the URL is quoted: it may hold a password.
        return Err(ConfigError::Invalid {
            key,
            problem: "must be a postgres:// URL (nothing of it is shown: it may hold a password)"
                .to_owned(),
        });
    }
    url.parse().map_err(|_| ConfigError::Invalid {
        key,
        problem: "is not a PostgreSQL URL".to_owned(),
    })
}

/// An optional URL: empty (or blank) is none.
fn optional(
    key: &'static str,
    url: &SecretString,
) -> Result<Option<PgConnectOptions>, ConfigError> {
    if url.expose_secret().trim().is_empty() {
        return Ok(None);
    }
    parse(key, url).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DatabaseSettings {
        crate::config::Settings::defaults().database
    }

    #[test]
    fn the_pooler_setting_takes_three_words_and_names_itself_otherwise() {
        for word in ["auto", "none", "transaction"] {
            assert_eq!(Pooler::parse(word).map(Pooler::as_str), Some(word));
        }
        let mut s = settings();
        s.pooler = "session".into();
        let e = s.validate_pooling().unwrap_err().to_string();
        assert!(
            e.contains("database.pooler") && e.contains("auto, none or transaction"),
            "{e}"
        );
    }

    #[test]
    fn a_direct_url_that_is_not_postgres_is_refused_without_quoting_it() {
        let mut s = settings();
        s.direct_url = "mysql://root:hunter2@db/x".to_owned().into();
        let e = s.validate_pooling().unwrap_err().to_string();
        assert!(e.contains("database.direct_url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn migrations_take_the_direct_url_then_the_listen_url() {
        let mut s = settings();
        assert!(s.direct_options().unwrap().is_none());
        s.listen_url = "postgres://u@listen:5432/db".to_owned().into();
        let (o, key) = s.direct_options().unwrap().unwrap();
        assert_eq!((o.get_host(), key), ("listen", "database.listen_url"));
        s.direct_url = "postgres://u@direct:5432/db".to_owned().into();
        let (o, key) = s.direct_options().unwrap().unwrap();
        assert_eq!((o.get_host(), key), ("direct", "database.direct_url"));
    }

    #[test]
    fn only_a_session_of_its_own_gets_the_pins_as_startup_options() {
        let mut s = settings();
        s.schema = "ticketing".into();
        let options = s.connect_options().unwrap();
        let options = options.get_options().unwrap();
        assert!(
            options.starts_with(
                "-c search_path=ticketing -c default_transaction_isolation=read\\ committed "
            ),
            "{options}"
        );
        assert_eq!(s.url_options().unwrap().get_options(), None);
    }
}
