//! Starting up, below the commands: the pool (how `database.url` is reached, through a pooler
//! or not), the migrations, the worker with its hooks, where it listens for new rows, and the
//! stop signal. The commands (`crate::commands`: `run`, the dispatch, the operator commands)
//! and the development tools' demo build on it; it builds on none of them.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Pooler, Settings};
use crate::jobs::{pooler, Db, JobStore};
use crate::worker::{Clock, Listen, TestHooks, Worker};

/// The configured database: how the job store reaches it, and why.
pub struct Database {
    pub db: Db,
    /// Whether `database.url` goes through a transaction pooler.
    pub pooled: bool,
    /// How that was decided, for the start line: the setting, or what the start saw.
    pub how: String,
}

impl Database {
    /// The start line's words.
    pub fn mode(&self) -> &'static str {
        if self.pooled {
            "through a transaction pooler: every statement in a transaction of its own, no named prepared statements, search_path set in each transaction, nothing kept in the session"
        } else {
            "a session of its own per connection (direct, or a session pooler)"
        }
    }
}

/// How long `run` keeps trying to reach the database at start when the failure may pass (the
/// server restarting or failing over, a pooler's `server_login_retry`, a connection cut),
/// saying each failure at `warn`; a failure that will not pass by waiting (credentials, a
/// database that does not exist, a read-only server, a session setting not in force) ends
/// the start at once.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// Why the start could not reach the database: whether waiting may help.
enum Unreached {
    Passing(anyhow::Error),
    Lasting(anyhow::Error),
}

/// Whether a connection error may pass by waiting: the server unreachable, restarting or full,
/// a connection cut, a pooler that cannot log in to the server for now.
fn passing(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 57014: a statement cancelled, by a role's or database's statement timeout of a
            // few milliseconds before the session's own is in force (a slow moment passes).
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "57014"
                )
        }),
        _ => false,
    }
}

/// [`connect`], tried again for up to `patience` while the failure may pass.
pub async fn connect_within(settings: &Settings, patience: Duration) -> anyhow::Result<Database> {
    let until = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(250);
    loop {
        match connect_once(settings).await {
            Ok(database) => return Ok(database),
            Err(Unreached::Lasting(e)) => return Err(e),
            Err(Unreached::Passing(e)) if tokio::time::Instant::now() + pause > until => {
                return Err(e)
            }
            Err(Unreached::Passing(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "the database cannot be reached yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A pool for the configured database, used as `database.pooler` says or, with `auto`, as
/// the start finds out (see [`crate::jobs::pooler`]). One connection is opened first, so that a
/// database that cannot be reached is reported at once, with its address and the reason,
/// rather than as a pool timing out.
pub async fn connect(settings: &Settings) -> anyhow::Result<Database> {
    connect_within(settings, Duration::ZERO).await
}

async fn connect_once(settings: &Settings) -> Result<Database, Unreached> {
    use sqlx::ConnectOptions;
    let d = &settings.database;
    let url = d
        .url_options()
        .context("database.url (DATABASE_URL)")
        .map_err(Unreached::Lasting)?;
    let at = format!("{}:{}", url.get_host(), url.get_port());
    let cannot = |why: String| {
        anyhow::anyhow!("cannot connect to PostgreSQL at {at} (database.url / DATABASE_URL): {why}")
    };
    let (pooled, how) = match d.pooler() {
        Pooler::None => (false, "set by database.pooler".to_owned()),
        Pooler::Transaction => (true, "set by database.pooler".to_owned()),
        Pooler::Auto => {
            let seen = tokio::time::timeout(Duration::from_secs(10), pooler::look(&url))
                .await
                .map_err(|_| Unreached::Passing(cannot("no answer within 10 s".into())))?
                .map_err(|e| connect_failed(&e, &cannot))?;
            (seen.pooled, format!("database.pooler = auto, {}", seen.how))
        }
    };
    // A transaction pooler gets no startup options: PgBouncer before 1.20 refuses them, and
    // one told to ignore them would drop them silently. They are set in every transaction
    // instead (`SET LOCAL`), and the session checks look only at what a session is.
    let (options, pins) = if pooled {
        (url, Vec::new())
    } else {
        (
            d.connect_options()
                .map_err(|e| Unreached::Lasting(e.into()))?,
            d.session_pins(),
        )
    };
    let mut first = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| Unreached::Passing(cannot("no answer within 10 s".into())))?
        .map_err(|e| connect_failed(&e, &cannot))?;
    // The surroundings a promise depends on (docs/design.md, E1): checked here once, so that
    // the worker refuses to start with the reason, then on every connection the pool makes.
    let checked = tokio::time::timeout(
        Duration::from_secs(10),
        crate::surroundings::check_connection(&mut first, &pins),
    )
    .await;
    drop(first);
    let refused =
        |why: String| anyhow::anyhow!("PostgreSQL at {at} (database.url / DATABASE_URL): {why}");
    match checked {
        Err(_) => {
            return Err(Unreached::Passing(refused(
                "the checks of the session got no answer within 10 s".into(),
            )))
        }
        Ok(Err(crate::surroundings::Refusal::Unread(why))) => {
            return Err(Unreached::Passing(refused(why)))
        }
        Ok(Err(refusal)) => return Err(Unreached::Lasting(refused(refusal.to_string()))),
        Ok(Ok(())) => {}
    }
    let pool = crate::surroundings::checked_pool(
        PgPoolOptions::new()
            .max_connections(d.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before every use: that is a round trip per statement on the hot path. A
            // connection that broke fails its statement, which the worker retries like any
            // database error.
            .test_before_acquire(false),
        options,
        pins,
    );
    let (db, how) = if pooled {
        let db = crate::surroundings::pooled_db(pool, d);
        // Fails at start if the pooler refuses transactions (PgBouncer's statement mode).
        let path = pooler::check(&db).await.map_err(|e| {
            sorted(
                &e,
                cannot(format!(
                    "a transaction through the pooler failed: {}",
                    db_reason(&e)
                )),
            )
        })?;
        let how = format!("{how}; search_path in each transaction: {path}");
        (db, how)
    } else {
        (Db::from(pool), how)
    };
    Ok(Database { db, pooled, how })
}

/// `error`, as one that may pass by waiting or not.
/// A connection that failed, in words, sorted: a pooler that refuses a startup parameter
/// (PgBouncer names it) refuses it again however long the start waits, so that is lasting,
/// with what to change.
fn connect_failed(e: &sqlx::Error, cannot: &dyn Fn(String) -> anyhow::Error) -> Unreached {
    let mut why = db_reason(e);
    let Some(at) = why.find("unsupported startup parameter") else {
        return sorted(e, cannot(why));
    };
    if why[at..].contains("extra_float_digits") {
        why.push_str(" (a pooler refusing a parameter the PostgreSQL driver always sends: for PgBouncer, add `ignore_startup_parameters = extra_float_digits` to its [pgbouncer] section)");
    } else {
        why.push_str(" (a pooler refusing the startup options that pin the worker's session settings: if it pools by transaction, set database.pooler = transaction)");
    }
    Unreached::Lasting(cannot(why))
}

fn sorted(e: &sqlx::Error, error: anyhow::Error) -> Unreached {
    if passing(e) {
        Unreached::Passing(error)
    } else {
        Unreached::Lasting(error)
    }
}

/// Why a connection failed, in words: the I/O error's kind (connection refused, ...) or
/// the server's message.
fn db_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// How long a migration's statement waits for a lock (a table's, or the migrations' advisory
/// lock) before its migration is rolled back and tried again. A migration waiting for a table
/// lock behind a long transaction (a row an operator holds locked, a long report) would make
/// every worker's query queue behind it; this way they go on meanwhile.
const MIGRATION_LOCK_TIMEOUT: &str = "3s";

/// How long the migrations are tried again after lock timeouts before the start fails.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(600);

/// Whether a migration failed because a lock could not be had in time (SQLSTATE 55P03).
fn lock_timed_out(e: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(sqlx::Error::Database(db))
        | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
            db.code().as_deref() == Some("55P03")
        }
        _ => false,
    }
}

/// Applies the embedded migrations (idempotent; safe with several replicas starting at once,
/// sqlx takes an advisory lock). That lock is a session's, and sqlx prepares named statements:
/// through a transaction pooler they run on `database.direct_url` (or `listen_url`), or not at
/// all. Each try has a session of its own, closed afterwards (so that a failed try leaves no
/// advisory lock held), with no statement timeout (an index on a large table may take
/// minutes) and a lock timeout of [`MIGRATION_LOCK_TIMEOUT`]: a migration that cannot have
/// its lock is rolled back (each runs in its own transaction) and tried again, for up to
/// [`MIGRATION_PATIENCE`], saying so.
pub async fn migrate(settings: &Settings, database: &Database) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match migrate_once(settings, database).await {
            Err(MigrationTry::LockTimedOut(e)) if started.elapsed() < MIGRATION_PATIENCE => {
                warn!(
                    tries,
                    error = %e,
                    "a migration waited {MIGRATION_LOCK_TIMEOUT} for a lock (a long transaction holds the table, or another replica is migrating): rolled back, trying again"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(MigrationTry::LockTimedOut(e)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "applying the migrations failed: no lock within {MIGRATION_LOCK_TIMEOUT} in {tries} tries over {} s (see pg_locks for the transaction holding the table)",
                    MIGRATION_PATIENCE.as_secs()
                )))
            }
            Err(MigrationTry::Failed(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

/// How one try at the migrations ended badly.
enum MigrationTry {
    LockTimedOut(sqlx::migrate::MigrateError),
    Failed(anyhow::Error),
}

/// The migration session's settings: no statement timeout, a lock timeout; and a UTF-8 database.
fn migration_session(
    conn: &mut sqlx::PgConnection,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'"))
            .execute(&mut *conn)
            .await?;
        // The schema and what the worker writes (ATRIP's messages, names) are UTF-8 text; a
        // database in another encoding fails a migration half-way, on its first character
        // outside ASCII, or later an order's write.
        let encoding: String =
            sqlx::query_scalar("SELECT pg_catalog.current_setting('server_encoding')")
                .fetch_one(&mut *conn)
                .await?;
        if encoding != "UTF8" {
            return Err(sqlx::Error::Configuration(
                format!("the database's encoding is {encoding}, and the job table needs UTF8: create the database with ENCODING 'UTF8' (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0) and point database.url at it").into(),
            ));
        }
        Ok(())
    })
}

/// What to change when migrations fail for want of the schema or of the right to create in
/// it (a least-privilege role left with `database.migrate_on_start` on).
fn migration_hint(error: &str, schema: &str) -> String {
    if error.contains("no schema has been selected to create in") {
        format!(
            " (database.schema = {schema:?} does not exist, or this role may not use it: CREATE SCHEMA {schema} as its owner, or GRANT USAGE, CREATE ON SCHEMA {schema})"
        )
    } else if error.contains("permission denied for schema") {
        format!(" (this role may not create in schema {schema:?}: run `ticketing-tracker migrate` as the schema's owner, then start the worker with database.migrate_on_start = false)")
    } else {
        String::new()
    }
}

async fn migrate_once(settings: &Settings, database: &Database) -> Result<(), MigrationTry> {
    let schema = &settings.database.schema;
    let ran = |r: Result<(), sqlx::migrate::MigrateError>, what: String| match r {
        Ok(()) => Ok(()),
        Err(e) if lock_timed_out(&e) => Err(MigrationTry::LockTimedOut(e)),
        Err(e) => {
            let hint = migration_hint(&e.to_string(), schema);
            Err(MigrationTry::Failed(
                anyhow::Error::new(e).context(format!("{what}{hint}")),
            ))
        }
    };
    if !database.pooled {
        let conn = database
            .db
            .pool()
            .acquire()
            .await
            .context("applying the migrations failed")
            .map_err(MigrationTry::Failed)?;
        let mut conn = conn.detach();
        if let Err(e) = migration_session(&mut conn).await {
            let _ = sqlx::Connection::close(conn).await;
            return Err(MigrationTry::Failed(
                anyhow::Error::new(e).context("applying the migrations failed"),
            ));
        }
        let migrated = crate::MIGRATOR.run(&mut conn).await;
        let _ = sqlx::Connection::close(conn).await;
        return ran(migrated, "applying the migrations failed".to_owned());
    }
    let Some((options, key)) = settings
        .database
        .direct_options()
        .map_err(|e| MigrationTry::Failed(e.into()))?
    else {
        return Err(MigrationTry::Failed(anyhow::anyhow!(
            "migrations are not run through a transaction pooler (database.url goes through one: {}); they hold a session's advisory lock and prepare named statements. Set database.direct_url (APP_DATABASE__DIRECT_URL) to the PostgreSQL server itself, or run `ticketing-tracker migrate` with database.url pointing at the server and set database.migrate_on_start = false",
            database.how
        )));
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| migration_session(conn))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {key} for the migrations"))
        .map_err(MigrationTry::Failed)?;
    let migrated = crate::MIGRATOR.run(&pool).await;
    pool.close().await;
    ran(migrated, format!("applying the migrations on {key} failed"))
}

/// A worker for these settings, with the test-only hooks of the environment (inert when unset).
pub fn worker(settings: &Settings, db: Db) -> anyhow::Result<Worker> {
    let hooks = TestHooks::from_env();
    let clock = Clock::skewed(hooks.clock_skew_ms);
    let id = Worker::default_id();
    // Every request names this process, so ATRIP-side logs (and the simulator's request log)
    // can tell which replica sent it.
    let atrip = crate::atrip::Client::new(&settings.atrip)?.with_worker(&id);
    let key = settings.card.key()?;
    Ok(Worker::new(
        JobStore::new(db),
        atrip,
        settings.worker.clone(),
        settings.atrip.rate_limit_per_s,
        id,
        clock,
    )
    .with_card_key(key)
    .with_hooks(hooks))
}

/// Where the worker listens for new rows: on its own session of `database.url`, on
/// `database.listen_url` when `url` goes through a transaction pooler, or nowhere (said once,
/// here: new rows are then found by polling).
pub fn listen_on(settings: &Settings, database: &Database) -> anyhow::Result<Listen> {
    if !database.pooled {
        return Ok(Listen::Pool);
    }
    let every = settings.worker.claim_interval_ms;
    Ok(match settings.database.listen_options()? {
        Some(options) => {
            info!("LISTEN on database.listen_url: database.url goes through a transaction pooler, which does not keep a session's LISTEN");
            Listen::On(Box::new(options))
        }
        None => {
            warn!("no LISTEN: database.url goes through a transaction pooler, which does not keep a session's LISTEN, and database.listen_url is not set; new rows are picked up by polling every worker.claim_interval_ms ({every} ms)");
            Listen::Off
        }
    })
}

/// Cancels `token` on SIGTERM (what container runtimes send) or Ctrl-C.
pub async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("stop signal received");
    token.cancel();
}
