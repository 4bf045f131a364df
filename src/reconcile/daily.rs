//! The daily run (rule R5): every worker with `reconcile.daily` looks every few minutes
//! whether a run of a day within the lookback waits to be taken over or tried again, or
//! today's run is due and unclaimed; the one whose insert of the day's row lands runs
//! it. The day, the hour and every staleness are the database's time, so replicas whose clocks
//! differ still run it once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Bounds;
use crate::atrip::Client;
use crate::config::ReconcileSettings;
use crate::jobs::{DailyClaim, JobStore};

/// How often a worker looks whether the day's run is due.
const LOOK_EVERY: Duration = Duration::from_secs(300);
/// A day is tried this many times in all (a failed run tried again, an hour apart, or a stale
/// one taken over); a run left stale after that is marked abandoned.
pub const MAX_ATTEMPTS: i32 = 3;
const RETRY_AFTER_S: i64 = 3600;

/// Runs the daily reconciliation until `stop`. `stale_after_s`: `reconcile::stale_after_s` of
/// the worker's settings.
pub async fn daily_loop(
    store: JobStore,
    atrip: Client,
    settings: ReconcileSettings,
    stale_after_s: i64,
    run_by: String,
    stop: CancellationToken,
) {
    let claim = DailyClaim {
        after_hour_utc: settings.daily_after_hour_utc,
        lookback_days: settings.lookback_days,
        stale_after_s,
        max_attempts: MAX_ATTEMPTS,
        retry_after_s: RETRY_AFTER_S,
    };
    let bounds = Bounds::from(&settings);
    tracing::info!(
        after_hour_utc = settings.daily_after_hour_utc,
        lookback_days = settings.lookback_days,
        stale_after_s,
        "reconcile: the daily run with ATRIP's order list is on (one replica a day runs it)"
    );
    loop {
        match store.reconcile_claim_daily(&run_by, claim).await {
            Ok(Some(run)) => {
                tracing::info!(run = run.id, from = %run.window_from, to = %run.window_to, "reconcile: daily run claimed");
                let ran = super::run(
                    &store,
                    &atrip,
                    &bounds,
                    run.id,
                    &run_by,
                    run.window_from,
                    run.window_to,
                );
                tokio::select! {
                    _ = ran => {}
                    // Stopped mid-run: recorded failed at once, so that it is tried again (by
                    // any replica, an hour on); a process that dies leaves it `running`, taken
                    // over once its heartbeat is stale.
                    _ = stop.cancelled() => {
                        if let Err(e) = store.reconcile_stopped(run.id, &run_by).await {
                            tracing::warn!(run = run.id, error = %e, "reconcile: the stopped run could not be recorded; it is taken over once its heartbeat is stale");
                        }
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: whether a day's run is due could not be read (the table ticketing_reconcile_runs, its privileges?)")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}
