//! The worker: claims due rows, pays each order once, follows it to final tickets.
//!
//! One round claims up to the free concurrency slots in one statement and runs one step per
//! claimed row as a task: a pending row (its pay intent just committed by the claim) is paid;
//! a paying row is recovered with an order query; a ticketing row is polled. Every step ends
//! with one fenced write that records what happened and when the row is due again.
//! [`Worker::step`] runs one round to completion (tests drive the worker with it);
//! [`Worker::run`] loops, woken by `LISTEN` with a polling fallback, until shutdown.

mod pay;
mod poll;
pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use crate::atrip::Client;
use crate::config::WorkerSettings;
use crate::domain::State;
use crate::jobs::{self, Change, ClaimedJob, JobStore, Lease};
pub use schedule::{next_poll_delay, Clock, RateLimiter};

/// The channel the insert trigger (and the webhook) notify.
pub const CHANNEL: &str = "ticketing_jobs";

/// What one step did to one row (the stepping API's report).
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub job_id: i64,
    pub order_no: String,
    /// The state the row was claimed in.
    pub from: String,
    /// The state the step left it in; `None` when the step could not record (lease lost,
    /// database down, shutdown): the row stays as the last write left it.
    pub to: Option<State>,
    /// Whether this step sent `pay.do`.
    pub pay_sent: bool,
    pub note: String,
}

/// What one round did.
#[derive(Debug, Default)]
pub struct RoundReport {
    pub claimed: usize,
    pub outcomes: Vec<StepOutcome>,
}

/// Step failures: only these two stop a step before its recorded end.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] jobs::Error),
    /// Our lease is too close to its end to start a call that must finish inside it.
    #[error("lease of job {0} about to expire; not starting a call")]
    LeaseExpiring(i64),
}

/// The lease this process holds on a row, as the heartbeat sees it.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    expires_at: DateTime<Utc>,
}

pub(crate) struct Inner {
    pub store: JobStore,
    pub atrip: Client,
    pub settings: WorkerSettings,
    pub id: String,
    pub clock: Clock,
    pub limiter: RateLimiter,
    held: Mutex<HashMap<i64, Held>>,
    /// Set when ATRIP refuses our credentials: no claims until then.
    paused_until: Mutex<Option<DateTime<Utc>>>,
    /// Signalled when a step ends (a slot is free).
    slot_freed: Notify,
    /// Opens sealed card data; `None`: sealed cards go to needs_review.
    pub card_key: Option<crate::sealed::CardKey>,
    /// Cancelled when shutdown begins: steps that have not sent anything yet give their row
    /// back instead of starting a call.
    stopping: CancellationToken,
}

/// A worker process's engine. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl Worker {
    pub fn new(
        store: JobStore,
        atrip: Client,
        settings: WorkerSettings,
        rate_limit_per_s: f64,
        id: String,
        clock: Clock,
    ) -> Self {
        Worker {
            inner: Arc::new(Inner {
                store,
                atrip,
                settings,
                id,
                clock,
                limiter: RateLimiter::new(rate_limit_per_s),
                held: Mutex::new(HashMap::new()),
                paused_until: Mutex::new(None),
                slot_freed: Notify::new(),
                card_key: None,
                stopping: CancellationToken::new(),
            }),
        }
    }

    /// Gives the worker the key that opens sealed card data (before it starts).
    pub fn with_card_key(mut self, key: Option<crate::sealed::CardKey>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_card_key is called before the worker is shared")
            .card_key = key;
        self
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// A worker id that tells an operator which process holds a lease.
    pub fn default_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    }

    /// Claims up to `limit` due rows (at most the concurrency) and runs their steps to their
    /// recorded ends, concurrently. The stepping API: tests call it instead of sleeping.
    pub async fn step_up_to(&self, limit: usize) -> Result<RoundReport, jobs::Error> {
        let jobs = self.claim(limit).await?;
        let claimed = jobs.len();
        let outcomes =
            futures_util::future::join_all(jobs.into_iter().map(|j| self.clone().execute(j))).await;
        Ok(RoundReport { claimed, outcomes })
    }

    /// [`Worker::step_up_to`] with the configured concurrency.
    pub async fn step(&self) -> Result<RoundReport, jobs::Error> {
        self.step_up_to(self.inner.settings.concurrency).await
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedJob>, jobs::Error> {
        let i = &self.inner;
        let now = i.clock.now();
        if i.paused_until.lock().unwrap().is_some_and(|t| t > now) {
            return Ok(Vec::new());
        }
        let lease = i.settings.lease();
        let jobs = i.store.claim(&i.id, limit as i64, lease, now).await?;
        let mut held = i.held.lock().unwrap();
        for j in &jobs {
            held.insert(
                j.id,
                Held {
                    token: j.lease_token,
                    expires_at: schedule::after(now, lease),
                },
            );
        }
        Ok(jobs)
    }

    /// Runs one claimed row's step and forgets its lease afterwards.
    async fn execute(self, job: ClaimedJob) -> StepOutcome {
        let span = tracing::info_span!("step", order_no = %job.order_no, job_id = job.id);
        let (id, token) = (job.id, job.lease_token);
        let outcome = async {
            let result = match job.claimed_from.as_str() {
                "pending" | "paying" => pay::step(&self.inner, &job).await,
                "ticketing" => poll::step(&self.inner, &job).await,
                other => Err(StepError::Store(jobs::Error::Refused {
                    order_no: job.order_no.clone(),
                    reason: format!("claimed in unexpected state {other}"),
                })),
            };
            let outcome = StepOutcome {
                job_id: job.id,
                order_no: job.order_no.clone(),
                from: job.claimed_from.clone(),
                to: None,
                pay_sent: false,
                note: String::new(),
            };
            match result {
                Ok(done) => StepOutcome {
                    to: Some(done.to),
                    pay_sent: done.pay_sent,
                    note: done.note,
                    ..outcome
                },
                Err(e) => {
                    match &e {
                        StepError::Store(jobs::Error::LeaseLost { .. }) => {
                            crate::metrics::global()
                                .lease_losses
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            warn!(error = %e, "step stopped: lease lost")
                        }
                        StepError::LeaseExpiring(_) => warn!(
                            error = %e,
                            "step stopped before calling ATRIP: too little lease left; the row is recovered once the lease expires"
                        ),
                        StepError::Store(_) => error!(
                            error = %e,
                            "step could not record its result; the lease will expire and the row be recovered"
                        ),
                    }
                    StepOutcome {
                        note: e.to_string(),
                        ..outcome
                    }
                }
            }
        }
        .instrument(span)
        .await;
        {
            // Only our own lease: the row may already have been claimed again (its next step
            // due at once) under a new token, which is not ours to forget.
            let mut held = self.inner.held.lock().unwrap();
            if held.get(&id).is_some_and(|h| h.token == token) {
                held.remove(&id);
            }
        }
        self.inner.slot_freed.notify_one();
        outcome
    }

    /// Renews every lease this process holds; steps whose lease was lost find out at their
    /// next (fenced) write.
    pub async fn heartbeat(&self) -> Result<(), jobs::Error> {
        let i = &self.inner;
        let leases: Vec<(i64, i64)> = i
            .held
            .lock()
            .unwrap()
            .iter()
            .map(|(id, h)| (*id, h.token))
            .collect();
        if leases.is_empty() {
            return Ok(());
        }
        let now = i.clock.now();
        let kept = i
            .store
            .renew(&i.id, &leases, i.settings.lease(), now)
            .await?;
        let mut held = i.held.lock().unwrap();
        for id in kept {
            if let Some(h) = held.get_mut(&id) {
                h.expires_at = schedule::after(now, i.settings.lease());
            }
        }
        Ok(())
    }

    /// Runs until `shutdown`: claims into free slots, wakes on NOTIFY or every claim interval,
    /// renews leases, and on shutdown lets in-flight steps finish within the grace period.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let i = &self.inner;
        let concurrency = i.settings.concurrency;
        let tracker = TaskTracker::new();
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            i.store.pool().clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        let heartbeat = {
            let me = self.clone();
            let stop = shutdown.clone();
            let every = i.settings.lease() / 3;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = me.heartbeat().await {
                        warn!(error = %e, "lease renewal failed");
                    }
                }
            })
        };
        info!(worker = %i.id, concurrency, "worker started");
        let mut db_backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let in_flight = i.held.lock().unwrap().len();
            let free = concurrency.saturating_sub(in_flight);
            // Claim in batches: with work in flight, wait until a quarter of the slots are
            // free rather than paying one claim round trip per finished step.
            let worth_claiming = free > 0 && (in_flight == 0 || free >= (concurrency / 4).max(1));
            let mut claimed = 0;
            if worth_claiming {
                match self.claim(free).await {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        db_backoff = Duration::from_millis(100);
                        for job in jobs {
                            tracker.spawn(self.clone().execute(job));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "claim failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(db_backoff) => {}
                        }
                        db_backoff = (db_backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if !worth_claiming || (claimed > 0 && claimed == free) {
                // More may be due: claim again as soon as a slot frees.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = i.slot_freed.notified() => {}
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = i.slot_freed.notified(), if free == 0 => {}
                _ = tokio::time::sleep(i.settings.claim_interval()) => {}
            }
        }
        info!(
            in_flight = i.held.lock().unwrap().len(),
            "shutting down: no more claims"
        );
        i.stopping.cancel();
        tracker.close();
        if tokio::time::timeout(i.settings.shutdown_grace(), tracker.wait())
            .await
            .is_err()
        {
            warn!("grace period over; steps still running are abandoned, their rows will be recovered by order query");
        }
        heartbeat.abort();
        listener.abort();
        info!("worker stopped");
        Ok(())
    }
}

/// Wakes the claim loop on every notification; reconnects with a pause on errors (the
/// claim interval keeps the worker going meanwhile).
async fn listen(pool: sqlx::PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let attempt = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            loop {
                l.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = attempt => if let Err(e) = r { debug!(error = %e, "LISTEN connection lost") },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// How a step ended, for the report.
pub(crate) struct Done {
    pub to: State,
    pub pay_sent: bool,
    pub note: String,
}

impl Inner {
    /// Records a change, retrying while the database is unreachable (a restart must not cost
    /// a recorded answer); a lost lease is final.
    pub async fn record(&self, lease: &mut Lease, change: Change) -> Result<(), StepError> {
        let mut pause = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + self.settings.lease() / 2;
        loop {
            let now = self.clock.now();
            match self.store.apply(lease, &self.id, &change, now).await {
                Ok(()) => {
                    debug!(kind = change.kind, to = %change.to, "recorded");
                    return Ok(());
                }
                Err(jobs::Error::Database(e)) if tokio::time::Instant::now() < deadline => {
                    warn!(error = %e, "recording failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Before a step's first call: during shutdown, gives the row back (due now, lease
    /// cleared, state unchanged) so another worker takes it at once, and ends the step.
    pub async fn released_for_shutdown(
        &self,
        lease: &mut Lease,
    ) -> Result<Option<Done>, StepError> {
        if !self.stopping.is_cancelled() {
            return Ok(None);
        }
        let mut c = Change::new("released", lease.state);
        c.run_at = Some(self.clock.now());
        c.detail = json!({ "reason": "worker shutting down before this step sent anything" });
        self.record(lease, c).await?;
        Ok(Some(self.ends(lease.state, false, "released at shutdown")))
    }

    /// Refuses to start a call that might outlive our lease (a paused or slow process must not
    /// send anything once another worker may own the row).
    pub fn ensure_lease_covers(&self, job_id: i64, call: Duration) -> Result<(), StepError> {
        let held = self.held.lock().unwrap().get(&job_id).copied();
        let now = self.clock.now();
        match held {
            Some(h) if schedule::after(now, call) < h.expires_at => Ok(()),
            _ => Err(StepError::LeaseExpiring(job_id)),
        }
    }

    /// Our credentials were refused: stop claiming for a while, loudly. The order is not at
    /// fault and stays as it is.
    pub fn pause_for_credentials(&self, status: i64) {
        let until = schedule::after(self.clock.now(), Duration::from_secs(60));
        *self.paused_until.lock().unwrap() = Some(until);
        error!(status, "ATRIP refused our credentials; no new claims for 60 s (check atrip.client_id / atrip.client_secret)");
    }

    pub fn ends(&self, to: State, pay_sent: bool, note: impl Into<String>) -> Done {
        Done {
            to,
            pay_sent,
            note: note.into(),
        }
    }
}

/// The event detail of an ATRIP answer: status and message, never a request body.
pub(crate) fn answer_detail(
    what: &str,
    status: Option<i64>,
    msg: Option<&str>,
) -> serde_json::Value {
    json!({ "answer": what, "status": status, "msg": msg })
}
