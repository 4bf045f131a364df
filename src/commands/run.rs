//! `run`: the worker and its HTTP endpoints until SIGTERM or Ctrl-C, with the daily
//! reconciliation and pruning beside them.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Settings;
use crate::jobs::JobStore;
use crate::startup::{connect_within, listen_on, migrate, stop_on_signal, worker, START_PATIENCE};

/// `run`: the worker and its HTTP endpoints until SIGTERM or Ctrl-C.
pub(super) async fn command(settings: Settings) -> anyhow::Result<()> {
    // First, before the database: a client that cannot be built (a CA bundle that cannot be
    // read, a proxy URL that does not parse) stops the start with its setting named.
    let atrip = crate::atrip::Client::new(&settings.atrip)?;
    let database = connect_within(&settings, START_PATIENCE).await?;
    info!(pooler = if database.pooled { "transaction" } else { "none" }, decided = %database.how, "database reached {}", database.mode());
    if settings.database.migrate_on_start {
        migrate(&settings, &database).await?;
    }
    let checked = JobStore::new(database.db.clone());
    crate::surroundings::privileges(&checked, &settings).await?;
    let cards = crate::surroundings::card_policy(&checked, &settings).await?;
    let listen = listen_on(&settings, &database)?;
    let worker = worker(&settings, database.db.clone())?.with_listen(listen);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let store = JobStore::new(database.db.clone());
    let http = crate::http::serve(&settings, store.clone(), shutdown.clone()).await?;
    if settings.production {
        tokio::spawn(crate::surroundings::watch_card_guard(
            store.clone(),
            settings.card.allow_plain,
            shutdown.clone(),
        ));
    }
    if settings.reconcile.daily {
        tokio::spawn(crate::reconcile::daily_loop(
            store.clone(),
            atrip.clone().with_worker(worker.id()),
            settings.reconcile.clone(),
            crate::reconcile::stale_after_s(&settings),
            format!("worker:{}", worker.id()),
            shutdown.clone(),
        ));
    }
    tokio::spawn(prune_loop(
        store,
        settings.worker.retention_days,
        shutdown.clone(),
    ));
    let tls = if settings.atrip.base_url.starts_with("https://") {
        "over TLS"
    } else if settings.atrip.allow_plain_http {
        "in clear to a loopback sidecar that must terminate TLS (atrip.allow_plain_http)"
    } else {
        "in clear (not production)"
    };
    let pinned = settings
        .database
        .session_pins()
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let keys = match settings.card.key()? {
        Some(keys) if keys.rotating() => "sealed cards opened with card.secret_key, then card.previous_secret_key (a key rotation)",
        Some(_) => "sealed cards opened with card.secret_key",
        None => "no card key: sealed cards cannot be paid",
    };
    // The trusted CAs are said whatever the URL's scheme: an https:// proxy is checked
    // against them too.
    info!(
        worker = worker.id(), atrip = %settings.atrip.base_url,
        "running; ATRIP is reached {}, {tls}, {}; {cards}; {keys}; every database session pins {pinned}",
        atrip.route(), atrip.trust()
    );
    // Readiness is about the database; whether ATRIP answers is said in the log, the
    // `ticketing_atrip_up` metric and the console.
    tokio::spawn(async move { atrip.probe().await });
    let ran = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    let _ = http.await;
    crate::telemetry::shutdown().await;
    ran
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
