//! Wiring: turns a subcommand and the settings into running parts, and errors into exit codes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Command, SimulateArgs};
use crate::config::Settings;
use crate::jobs::JobStore;
use crate::simulator::{self, SimConfig};
use crate::worker::{Clock, TestHooks, Worker};

/// Runs a subcommand; 0 ok, 1 error (printed with its cause chain). Usage errors (2) are
/// clap's.
pub async fn main(command: Command) -> ExitCode {
    let result = match command {
        Command::Simulate(args) => simulate(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Keygen(args) => crate::sealed::write_key_pair(&args.out).map(|key| {
            println!(
                "wrote {0}/card_key.secret (keep it secret: give it to the workers as APP_CARD__SECRET_KEY) and {0}/card_key.pub\npublic key (enqueuers seal cards to it): {1}",
                args.out.display(),
                key.public_base64()
            );
        }),
        Command::ConsoleHash(args) => console_hash(args.iterations),
        other => match Settings::load() {
            Ok(settings) => {
                crate::telemetry::init(&settings.log);
                dispatch(other, settings).await
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", say_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause whose text the message already holds
/// (libraries often repeat their source in their own message) is left out; a missing table
/// gets the command that creates it.
pub fn say_once(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    if said.contains("relation \"ticketing_jobs\" does not exist")
        || said.contains("relation \"ticketing_events\" does not exist")
    {
        said.push_str(" (the database has no job table yet: run `ticketing-tracker migrate`)");
    }
    said
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Run => run(settings).await,
        Command::Migrate => {
            let pool = connect(&settings).await?;
            migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        other => crate::ops::dispatch(other, settings).await,
    }
}

/// A pool for the configured database. One connection is opened first, so that a database
/// that cannot be reached is reported at once, with its address and the reason, rather than as
/// a pool timing out.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    use sqlx::ConnectOptions;
    let options = settings
        .database
        .connect_options()
        .context("database.url (DATABASE_URL)")?;
    let at = format!("{}:{}", options.get_host(), options.get_port());
    let first = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to PostgreSQL at {at} (database.url / DATABASE_URL): no answer within 10 s"))?
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {at} (database.url / DATABASE_URL): {}", db_reason(&e)))?;
    drop(first);
    Ok(PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // No ping before every use: that is a round trip per statement on the hot path. A
        // connection that broke fails its statement, which the worker retries like any
        // database error.
        .test_before_acquire(false)
        .connect_lazy_with(options))
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

/// Applies the embedded migrations (idempotent; safe with several replicas starting at once,
/// sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    crate::MIGRATOR
        .run(pool)
        .await
        .context("applying the migrations failed")
}

/// A worker for these settings, with the test-only hooks of the environment (inert when unset).
pub fn worker(settings: &Settings, pool: PgPool) -> anyhow::Result<Worker> {
    let hooks = TestHooks::from_env();
    let clock = Clock::skewed(hooks.clock_skew_ms);
    let id = Worker::default_id();
    // Every request names this process, so ATRIP-side logs (and the simulator's request log)
    // can tell which replica sent it.
    let atrip = crate::atrip::Client::new(&settings.atrip)?.with_worker(&id);
    let key = settings.card.key()?;
    Ok(Worker::new(
        JobStore::new(pool),
        atrip,
        settings.worker.clone(),
        settings.atrip.rate_limit_per_s,
        id,
        clock,
    )
    .with_card_key(key)
    .with_hooks(hooks))
}

/// `run`: the worker and its HTTP endpoints until SIGTERM or Ctrl-C.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let pool = connect(&settings).await?;
    if settings.database.migrate_on_start {
        migrate(&pool).await?;
    }
    let worker = worker(&settings, pool.clone())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let store = JobStore::new(pool.clone());
    let http = crate::http::serve(&settings, store.clone(), shutdown.clone()).await?;
    tokio::spawn(prune_loop(
        store,
        settings.worker.retention_days,
        shutdown.clone(),
    ));
    let route = crate::atrip::Client::new(&settings.atrip)?
        .route()
        .to_owned();
    let tls = if settings.atrip.base_url.starts_with("https://") {
        "over TLS"
    } else if settings.atrip.allow_plain_http {
        "in clear to a loopback sidecar that must terminate TLS (atrip.allow_plain_http)"
    } else {
        "in clear (not production)"
    };
    info!(worker = worker.id(), atrip = %settings.atrip.base_url, "running; ATRIP is reached {route}, {tls}");
    // Readiness is about the database; whether ATRIP answers is said in the log, the
    // `ticketing_atrip_up` metric and the console.
    let probe = crate::atrip::Client::new(&settings.atrip)?;
    tokio::spawn(async move { probe.probe().await });
    worker.run(shutdown.clone()).await?;
    shutdown.cancel();
    let _ = http.await;
    Ok(())
}

/// Deletes finished rows older than the retention, in small batches, every few minutes, so
/// the hot table stays small. Several replicas may do this at once; each batch is independent.
async fn prune_loop(store: JobStore, retention_days: u64, stop: CancellationToken) {
    if retention_days == 0 {
        return;
    }
    loop {
        let days = u32::try_from(retention_days).unwrap_or(u32::MAX);
        loop {
            match store.prune(days, 500).await {
                Ok(n) if n > 0 => info!(deleted = n, "pruned finished rows"),
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning failed");
                    break;
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
    }
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

/// `console-hash`: a password from stdin (its first line; not echoed on a terminal) to the hash
/// the console's settings take.
fn console_hash(iterations: u32) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password (not shown): ");
    }
    let mut line = String::new();
    {
        let _quiet = terminal.then(crate::console::EchoOff::new);
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
    }
    if terminal {
        eprintln!();
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.chars().count() < 12 {
        anyhow::bail!("the password must have at least 12 characters");
    }
    println!(
        "{}",
        crate::console::PasswordHash::create(password, iterations)
    );
    Ok(())
}

/// `simulate`: the ATRIP simulator as a server until SIGTERM or Ctrl-C.
async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    crate::telemetry::init(&crate::config::Settings::defaults().log);
    let listen = args.listen;
    let config = sim_config(args);
    let handle = simulator::start(config, listen)
        .await
        .with_context(|| format!("the simulator cannot listen on {listen} (--listen)"))?;
    println!("ATRIP simulator listening on {}", handle.base_url());
    let token = handle.shutdown_token();
    tokio::spawn(stop_on_signal(token));
    handle.stopped().await;
    Ok(())
}

/// The simulator's configuration from `simulate`'s flags.
pub(crate) fn sim_config(args: SimulateArgs) -> SimConfig {
    SimConfig {
        client_id: args.client_id,
        client_secret: args.client_secret,
        auto_create: args.auto_create,
        ticketing_delay: Duration::from_millis(args.ticketing_delay_ms),
        one_passenger_at_a_time: args.one_passenger_at_a_time,
        repay_status: args.repay_status,
        duplicate_guard: !args.no_duplicate_guard,
        payment_processing: Duration::from_millis(args.payment_processing_ms),
        card_decline_sync: !args.card_decline_async,
        decline_cancels_order: !args.decline_keeps_order,
        error_echoes_order_no: !args.error_order_no_null,
        expired_order_status: args.expired_order_status,
        webhook_url: args.webhook_url,
        webhook_secret: args.webhook_secret,
        fault_rate: args.fault_rate,
        fault_seed: args.fault_seed,
        latency_mean: Duration::from_millis(args.latency_ms.unwrap_or_default()),
        latency_jitter: Duration::from_millis(args.latency_jitter_ms.unwrap_or_default()),
        ..SimConfig::default()
    }
}
