//! The worker: claims due rows, pays each order once, follows it to final tickets.
//!
//! One round claims up to the free concurrency slots in one statement and runs one step per
//! claimed row as a task: a row claimed from `pending` (its pay intent just committed by the
//! claim) is paid; a `paying` row is recovered with an order query; a `ticketing` row is
//! followed with one. Every step asks [`crate::machine::next`] what comes next and ends with
//! one fenced write. [`Worker::step`] runs one round to completion (tests drive the worker with
//! it); [`Worker::run`] loops, woken by `LISTEN` with a polling fallback, until shutdown.
//!
//! Files: `pay` (the pay step), `query` (recovery and following), `conclude` (how every step
//! ends: the decision, its write, giving a row back), `lease` (the leases as this
//! process's monotonic clock sees them), `schedule` (poll delays, rate limit, the wall clock),
//! `failpoint` (test-only hooks).

pub mod after;
mod conclude;
mod durable;
mod evidence;
mod failpoint;
mod lease;
mod pay;
mod precheck;
mod query;
pub mod schedule;
mod scope;
mod sent;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::atrip::Client;
use crate::config::WorkerSettings;
use crate::domain::State;
use crate::jobs::{self, ClaimedJob, JobStore, Lease, Writer};
use crate::machine;
pub use durable::{Gate, Level};
pub use evidence::{Keeper, Kept};
pub use failpoint::{Point, TestHooks, CLOCK_SKEW_VAR, FAILPOINTS_VAR, PAUSE_MS_VAR};
use lease::LeaseBook;
pub use schedule::{Clock, RateLimiter};

/// The channel the insert trigger (and the webhook) notify.
pub const CHANNEL: &str = "ticketing_jobs";

/// What one step did to one row (the stepping API's report).
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub job_id: i64,
    pub order_no: String,
    /// The state the row was claimed in.
    pub from: State,
    /// The state the step left it in; `None` when the step could not record (lease lost,
    /// database down): the row stays as the last write left it.
    pub to: Option<State>,
    /// Whether this step sent `pay.do` (a request that may have reached ATRIP).
    pub pay_sent: bool,
    pub note: String,
}

/// What one round did.
#[derive(Debug, Default)]
pub struct RoundReport {
    pub claimed: usize,
    pub outcomes: Vec<StepOutcome>,
}

/// What stops a step before its recorded end.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] jobs::Error),
    /// A test-only failpoint made the step fail here (see [`TestHooks`]).
    #[error("failpoint error at {0:?}")]
    Failpoint(Point),
}

/// One claimed row being worked on: the claim, its lease, and the database's time.
pub(crate) struct Step {
    pub job: ClaimedJob,
    pub lease: Lease,
    /// When the claim's answer arrived: the database's time now is `job.db_now` plus the
    /// monotonic time since.
    pub claimed_at: Instant,
    /// When the claim statement was sent and answered (wall clock: for the trace only).
    pub claim_times: (std::time::SystemTime, std::time::SystemTime),
    /// Whether an intent of this step is open (recorded, its pay.do not sent yet): giving the
    /// row back then records the intent as never sent.
    pub intent_open: bool,
    pub pay_sent: bool,
}

impl Step {
    /// The database's time now (rule T1), never this process's wall clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.job.db_now + chrono::Duration::from_std(self.claimed_at.elapsed()).unwrap_or_default()
    }

    /// What the state machine may look at.
    pub fn facts(&self) -> machine::Facts {
        let mut facts = self.job.facts(self.now());
        facts.state = self.lease.state();
        facts
    }
}

pub(crate) struct Inner {
    pub store: JobStore,
    /// Steps' results go through it: steps that finish together share one statement and one
    /// commit.
    writer: Writer,
    pub atrip: Client,
    pub settings: WorkerSettings,
    pub id: String,
    /// This process's wall clock: only compared with the database's, to report skew.
    pub clock: Clock,
    /// Spaces order queries; `pay.do` never waits on it (ATRIP does not rate-limit pay.do,
    /// and nothing may delay a pay.do once its intent is committed: rule P1).
    pub limiter: RateLimiter,
    leases: LeaseBook,
    /// Set when ATRIP refuses our credentials: no claims until then.
    paused_until: Mutex<Option<Instant>>,
    /// Signalled when a step ends (a slot is free).
    slot_freed: Notify,
    /// Opens sealed card data; `None`: sealed cards go to needs_review.
    pub card_key: Option<crate::sealed::CardKeys>,
    pub hooks: TestHooks,
    /// Confirms intents durable where a failover would find them before their pay.do leaves.
    pub gate: Gate,
    /// Writes evidence of payment that a step could not write under its lease.
    keeper: Keeper,
    /// Evidence of payment seen by a step whose write of it has not landed yet, by job id
    /// (with the step's lease token): whatever ends the step (an error, a panic), what is
    /// left here goes to the keeper (rule P3a).
    seen: Mutex<std::collections::HashMap<i64, (i64, Kept)>>,
    /// Intents recorded whose `pay.do` has not begun, by job id (with the lease token): what a
    /// panic may count as not sent (rule W5). Taken out right before the send, and when the
    /// intent is closed otherwise.
    open_intents: Mutex<std::collections::HashMap<i64, i64>>,
    /// The orders this process has let a `pay.do` leave for (rule P1d).
    pub sent_here: sent::SentHere,
    /// Tells a 900/902 for one order from refused credentials (rule P4f).
    scope: scope::ScopeCheck,
    /// Cancelled when shutdown begins: steps that have not sent anything yet give their row
    /// back instead of starting a call.
    stopping: CancellationToken,
    /// Where [`Worker::run`] listens for new rows.
    listen: Listen,
    /// How long this worker's `pay.do` take to be answered (rule S3).
    pub pay_round_trip: schedule::RoundTrip,
    /// Told (to every step waiting in it) when a payment is due that no slot is free for: a
    /// step that waits gives its slot up then (rule S2).
    payments_due: Notify,
    /// Steps waiting in [`Inner::wait_in_step`] now.
    waiting: std::sync::atomic::AtomicUsize,
}

impl Inner {
    /// Waits `d` inside a step, holding its lease, unless a payment that needs the slot
    /// becomes due, or shutdown begins: then it returns `false` at once and the step writes
    /// what it has and frees the slot (rule S2). `true` when `d` has passed.
    pub(crate) async fn wait_in_step(&self, d: Duration) -> bool {
        let told = self.payments_due.notified();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = told => false,
            () = self.stopping.cancelled() => false,
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        waited
    }

    fn steps_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Frees the slots of waiting steps when a payment is due and unclaimed (rule S2).
    async fn free_waiting_slots_for_payments(&self) {
        if !self.steps_waiting() {
            return;
        }
        match self.store.due_payments(1).await {
            Ok(n) if n > 0 => self.payments_due.notify_waiters(),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not look for due payments"),
        }
    }
}

/// Where the worker listens for the insert trigger's notifications.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A session of its own made with the pool's options (a pool whose connections are
    /// sessions of their own; none when the pool goes through a transaction pooler).
    Pool,
    /// A session on these options (`database.listen_url`: the server itself, when the pool
    /// goes through a transaction pooler, which does not keep a session's `LISTEN`).
    On(Box<sqlx::postgres::PgConnectOptions>),
    /// Nowhere: new rows are found by polling every claim interval.
    Off,
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
        let writer = Writer::spawn(store.clone(), id.clone(), settings.write_batch_wait());
        let gate = Gate::start(store.clone(), &settings, &id);
        let keeper = Keeper::start(store.clone(), id.clone(), gate.clone());
        Worker {
            inner: Arc::new(Inner {
                writer,
                gate,
                keeper,
                seen: Mutex::new(std::collections::HashMap::new()),
                open_intents: Mutex::new(std::collections::HashMap::new()),
                sent_here: sent::SentHere::default(),
                scope: scope::ScopeCheck::default(),
                store,
                atrip,
                settings,
                id,
                clock,
                limiter: RateLimiter::new(rate_limit_per_s),
                leases: LeaseBook::default(),
                paused_until: Mutex::new(None),
                slot_freed: Notify::new(),
                card_key: None,
                hooks: TestHooks::default(),
                stopping: CancellationToken::new(),
                listen: Listen::Pool,
                pay_round_trip: Default::default(),
                payments_due: Notify::new(),
                waiting: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configured before the worker is shared")
    }

    /// Gives the worker the key that opens sealed card data (before it starts).
    pub fn with_card_key(mut self, key: Option<crate::sealed::CardKeys>) -> Self {
        self.inner_mut().card_key = key;
        self
    }

    /// Where to listen for new rows (before it starts); [`Listen::Pool`] unless told.
    pub fn with_listen(mut self, listen: Listen) -> Self {
        self.inner_mut().listen = listen;
        self
    }

    /// Test-only hooks (before it starts); see [`TestHooks`].
    pub fn with_hooks(mut self, hooks: TestHooks) -> Self {
        self.inner_mut().hooks = hooks;
        self
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The durability gate (rule P1b): what it knows of the database's standbys.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// A worker id that tells an operator which process holds a lease.
    pub fn default_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    }

    /// Claims up to `limit` due rows (at most the concurrency) and runs their steps to their
    /// recorded ends, concurrently. The stepping API: tests call it instead of sleeping.
    pub async fn step_up_to(&self, limit: usize) -> Result<RoundReport, jobs::Error> {
        let steps = self.claim(limit).await?;
        let claimed = steps.len();
        let outcomes =
            futures_util::future::join_all(steps.into_iter().map(|s| self.clone().execute(s)))
                .await;
        Ok(RoundReport { claimed, outcomes })
    }

    /// [`Worker::step_up_to`] with the configured concurrency.
    pub async fn step(&self) -> Result<RoundReport, jobs::Error> {
        self.step_up_to(self.inner.settings.concurrency).await
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Step>, jobs::Error> {
        let i = &self.inner;
        if i.paused_until
            .lock()
            .unwrap()
            .is_some_and(|t| t > Instant::now())
        {
            return Ok(Vec::new());
        }
        let lease = i.settings.lease();
        // No pending row while its intent could not be made durable (rule P1b), no order
        // query while ATRIP asks us to slow down (pay.do is not rate-limited).
        let pay = i.gate.may_pay().is_ok();
        let follow = !i.limiter.paused();
        if !pay && !follow {
            return Ok(Vec::new());
        }
        let sent = Instant::now();
        // Names this claim in its intent events: if its answer never arrives, the intents it
        // recorded are withdrawn by that name (no step ran for them, nothing was sent).
        let nonce = format!("{:016x}", rand::random::<u64>());
        let claim_began = std::time::SystemTime::now();
        let claimed = std::panic::AssertUnwindSafe(i.store.claim(
            &i.id,
            limit as i64,
            lease,
            pay,
            follow,
            &nonce,
        ))
        .catch_unwind()
        .await;
        let jobs = match claimed {
            Ok(Ok(jobs)) => jobs,
            Ok(Err(e)) => {
                i.withdraw_lost_claim(nonce, lease);
                return Err(e);
            }
            Err(panic) => {
                i.withdraw_lost_claim(nonce, lease);
                return Err(jobs::Error::Database(sqlx::Error::Protocol(format!(
                    "the claim panicked: {}",
                    panic_message(panic.as_ref())
                ))));
            }
        };
        let claimed_at = Instant::now();
        let claim_times = (claim_began, std::time::SystemTime::now());
        if let Some(first) = jobs.first() {
            i.report_skew(first.db_now);
        }
        // A row this process already has a step for cannot be claimed again unless the
        // database forgot this process's claim: a failover to a standby that had not received
        // it, or a restore. The step still runs (its pay.do may be on the wire): a second step
        // would send a second one. Likewise a row claimed from `pending` for an order this
        // process has let a pay.do leave for, its step over: the database went back to before
        // that intent. The new claim is left to run out; the row is then asked by order
        // query, never paid blind (rule P1d).
        let (jobs, again): (Vec<ClaimedJob>, Vec<ClaimedJob>) = jobs.into_iter().partition(|job| {
            let paid_here =
                job.claimed_from == State::Pending && i.sent_here.contains(&job.order_no);
            !(i.leases.holds(job.id) || paid_here)
        });
        for job in &again {
            let what = if i.leases.holds(job.id) {
                "claimed again while this process's step for it still runs"
            } else {
                "claimed from pending although this process has sent a pay.do for it"
            };
            tracing::error!(
                order_no = %job.order_no, job_id = job.id, claimed_from = %job.claimed_from,
                "{what}: the database forgot this process's claim (a failover to a standby that had not received it, or a restore); no second step is started, the new claim runs out and the order is then asked by order query"
            );
        }
        Ok(jobs
            .into_iter()
            .map(|job| {
                i.leases.took(job.id, job.lease_token, sent, lease);
                if job.claimed_from == State::Pending {
                    i.intent_opened(job.id, job.lease_token);
                }
                Step {
                    lease: job.lease(),
                    intent_open: job.claimed_from == State::Pending,
                    job,
                    claimed_at,
                    claim_times,
                    pay_sent: false,
                }
            })
            .collect())
    }

    /// Runs one claimed row's step and forgets its lease afterwards. A step that panics ends
    /// like any other (rule W5): its lease is forgotten here and its row is asked again by
    /// order query (a second panic in a row sends it to `needs_review`), unless the step had
    /// seen evidence of payment, which the keeper then writes (the row goes on to
    /// `ticketing`).
    async fn execute(self, step: Step) -> StepOutcome {
        let span = crate::telemetry::step_span(
            &step.job.order_no,
            step.job.id,
            step.job.claimed_from.as_str(),
            step.job.pay_attempts,
            step.job.lease_token,
            step.job.traceparent.as_deref(),
            step.claim_times,
        );
        let (id, token) = (step.job.id, step.job.lease_token);
        // Every write of the lease is fenced on the server it was taken on, so that server
        // never changes while the step lives.
        let server = step.lease.server().to_owned();
        let (order_no, from) = (step.job.order_no.clone(), step.job.claimed_from);
        let ran = std::panic::AssertUnwindSafe(self.clone().run_step(step))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                drop(panic);
                self.after_panic(id, token, &server, order_no, from, what)
                    .instrument(span.clone())
                    .await
            }
        };
        if let Some(to) = outcome.to {
            span.record("state_to", to.as_str());
        }
        self.inner.intent_closed(id, token);
        // Evidence the step saw and could not write (it failed, or lost its lease).
        if let Some(kept) = self.inner.unsee(id, token) {
            self.inner.keeper.keep(kept);
        }
        self.inner.leases.release(id, token);
        self.inner.slot_freed.notify_one();
        outcome
    }

    async fn run_step(self, mut step: Step) -> StepOutcome {
        let result = match step.job.claimed_from {
            State::Pending => pay::step(&self.inner, &mut step).await,
            State::Paying | State::Ticketing => query::step(&self.inner, &mut step).await,
            other => Err(StepError::Store(jobs::Error::Refused {
                order_no: step.job.order_no.clone(),
                reason: format!("claimed in unexpected state {other}"),
            })),
        };
        let mut outcome = StepOutcome {
            job_id: step.job.id,
            order_no: step.job.order_no.clone(),
            from: step.job.claimed_from,
            to: None,
            pay_sent: step.pay_sent,
            note: String::new(),
        };
        match result {
            Ok(note) => {
                outcome.to = Some(step.lease.state());
                outcome.note = note;
            }
            Err(e) => {
                match &e {
                    StepError::Store(jobs::Error::LeaseLost { .. }) => {
                        crate::metrics::global()
                            .lease_losses
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(error = %e, "step stopped: lease lost")
                    }
                    StepError::Store(jobs::Error::ConstraintViolated { .. }) => {
                        outcome.to = Some(step.lease.state());
                        error!(error = %e, "the job table refused a write; the row is in needs_review naming the constraint")
                    }
                    StepError::Store(_) | StepError::Failpoint(_) => error!(
                        error = %e,
                        "step could not record its result; the lease will expire and the row be recovered by order query"
                    ),
                }
                outcome.note = e.to_string();
            }
        }
        outcome
    }

    /// A step panicked (rule W5): its row is asked again by order query, or goes to
    /// `needs_review` when its previous step panicked too, naming the internal error; fenced by
    /// the claim's token (a few tries while the database is away; failing that, the lease, no
    /// longer renewed, runs out and another worker recovers the row by order query).
    async fn after_panic(
        &self,
        id: i64,
        token: i64,
        server: &str,
        order_no: String,
        from: State,
        what: String,
    ) -> StepOutcome {
        let i = &self.inner;
        crate::metrics::global()
            .step_panics
            .fetch_add(1, Ordering::Relaxed);
        let mut outcome = StepOutcome {
            job_id: id,
            order_no: order_no.clone(),
            from,
            to: None,
            pay_sent: false,
            note: format!("the step panicked: {what}"),
        };
        if i.seen
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|(t, _)| *t == token)
        {
            error!(panic = %what, "the step panicked after an answer showed the order paid; the evidence is written and the order followed");
            return outcome;
        }
        // An intent whose send had not begun never left; one whose send had may have.
        let not_sent = i.intent_closed(id, token);
        let intent = if not_sent {
            "The pay intent open at the panic was never sent (counted as not sent)"
        } else {
            "A pay.do begun before the panic counts as sent"
        };
        let error = format!(
            "order {order_no}: {PANIC_MARKER} ({what}). {intent}; the order is asked again by order query, and goes to a person if it panics again. If it is in needs_review: check the order in ATRIP; if it is paid, `retry`; if it is unpaid, `retry`, or `retry --repay` if a pay.do may have reached ATRIP"
        );
        let retry_in = i64::try_from(i.settings.recovery_delay().as_millis()).unwrap_or(i64::MAX);
        let mut pause = Duration::from_millis(100);
        for _ in 0..5 {
            let ended = i
                .store
                .review_panicked(
                    id,
                    token,
                    server,
                    &i.id,
                    &error,
                    &format!("order {order_no}: {PANIC_MARKER}"),
                    i.settings.max_error_streak,
                    retry_in,
                    not_sent,
                )
                .await;
            match ended {
                Ok(Some(state)) => {
                    outcome.to = State::parse(&state);
                    error!(panic = %what, state = %state, "the step panicked; a bug, please report it");
                    return outcome;
                }
                Ok(None) => {
                    error!(panic = %what, "the step panicked; its row had moved on already");
                    return outcome;
                }
                Err(e) => {
                    warn!(error = %e, "recording a panicked step failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        error!(panic = %what, "the step panicked and its row could not be sent to needs_review; its lease runs out and another worker recovers it by order query");
        outcome
    }

    /// Evidence of payment noted in the events by a step whose write waited, in this process
    /// or one that died since, and not in the job table yet: handed to the keeper, which
    /// writes it (rule P3a). A row whose step in this process still holds it is left to that
    /// step.
    pub async fn sweep_noted_evidence(&self) -> Result<(), jobs::Error> {
        let i = &self.inner;
        let held: std::collections::HashSet<i64> =
            i.keeper.unrecorded().iter().map(|k| k.job_id).collect();
        for (job_id, order_no, evidence) in i.store.noted_evidence_unrecorded(100).await? {
            let Some(evidence) = machine::Evidence::parse(&evidence) else {
                continue;
            };
            if held.contains(&job_id) || i.leases.holds(job_id) {
                continue;
            }
            i.keeper.keep(evidence::Kept {
                job_id,
                order_no,
                evidence,
                card_brand: None,
                card_last4: None,
                release_token: None,
            });
        }
        Ok(())
    }

    /// Renews every lease this process holds; steps whose lease was lost find out at their
    /// next (fenced) write, or before their next call. Each round also sweeps the evidence
    /// notes ([`Worker::sweep_noted_evidence`]).
    pub async fn heartbeat(&self) -> Result<(), jobs::Error> {
        let i = &self.inner;
        if let Err(e) = self.sweep_noted_evidence().await {
            warn!(error = %e, "looking for evidence of payment noted in the events failed");
        }
        let held = i.leases.all();
        if held.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let renewed = i.store.renew(&i.id, &held, i.settings.lease()).await?;
        if !renewed.busy.is_empty() {
            warn!(
                jobs = ?renewed.busy,
                "lease renewal skipped rows another transaction holds locked (often this worker's own write of them, which ends their step); their leases were not extended this round"
            );
        }
        i.leases.renewed(&held, &renewed, sent, i.settings.lease());
        Ok(())
    }

    /// Runs until `shutdown`: claims into free slots, wakes on NOTIFY or every claim interval,
    /// renews leases, and on shutdown lets in-flight steps finish within the grace period.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let i = &self.inner;
        let concurrency = i.settings.concurrency;
        let tracker = TaskTracker::new();
        let wake = Arc::new(Notify::new());
        let listen_on = match &i.listen {
            // A LISTEN through a transaction pooler would hear nothing, silently.
            Listen::Pool if i.store.db().is_pooled() => None,
            Listen::Pool => Some((*i.store.pool().connect_options()).clone()),
            Listen::On(options) => Some((**options).clone()),
            Listen::Off => None,
        };
        let listener =
            listen_on.map(|options| tokio::spawn(listen(options, wake.clone(), shutdown.clone())));
        info!("{}", i.gate.look_now(&i.store).await);
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
        // Rule W6: ticketed orders ATRIP reported changed are asked about, beside the claims.
        let rechecks = {
            let me = self.clone();
            let stop = shutdown.clone();
            let every = i.settings.claim_interval();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = me.recheck_after_ticketing().await {
                        warn!(error = %e, "re-checking orders changed after ticketing failed");
                    }
                }
            })
        };
        // Rule P1e: the balance pre-check, when set, beside the claims.
        let balance_checks = (i.settings.balance_precheck_s > 0).then(|| {
            let me = self.clone();
            let stop = shutdown.clone();
            let every = Duration::from_secs(i.settings.balance_precheck_s);
            tokio::spawn(async move {
                loop {
                    if let Err(e) = me.check_balance().await {
                        warn!(error = %e, "the balance pre-check failed");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            })
        });
        // Said at start, so that a replica started during an incident says why it pays
        // nothing (rule S4); the claim itself reads the pauses in force every time.
        let paying = match i.store.pauses_in_force().await {
            Ok(pauses) if pauses.is_empty() => "not paused".to_owned(),
            Ok(pauses) => {
                let said = crate::paused::said(&pauses);
                warn!("{said}: this worker follows paid orders and records webhooks, and sends no pay.do for an order of a paused method until `ticketing-tracker resume`");
                format!("paused ({said})")
            }
            Err(e) => format!("not known: the pauses in force could not be read ({e})"),
        };
        info!(worker = %i.id, concurrency, paying = %paying, traces = %crate::telemetry::traces_line(), "worker started");
        let mut db_backoff = Duration::from_millis(100);
        // Since when a slot has been free without a claim.
        let mut free_since: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let in_flight = i.leases.len();
            let free = concurrency.saturating_sub(in_flight);
            free_since = if free == 0 {
                None
            } else {
                free_since.or_else(|| Some(Instant::now()))
            };
            let batch_by = free_since.map(|since| since + CLAIM_BATCH_WAIT);
            // Claim in batches: with work in flight, wait until a quarter of the slots are
            // free rather than paying one claim round trip per finished step, but no slot
            // waits longer than CLAIM_BATCH_WAIT for the others (with slow answers the slots
            // free one by one, and each idle slot is a payment not made: rule S2).
            let worth_claiming = free > 0
                && (in_flight == 0
                    || free >= (concurrency / 4).max(1)
                    || batch_by.is_some_and(|by| Instant::now() >= by));
            let mut claimed = 0;
            if worth_claiming {
                free_since = None;
                match self.claim(free).await {
                    Ok(steps) => {
                        crate::metrics::global().claim_succeeded();
                        claimed = steps.len();
                        // Every free slot went to a payment: more may be due, and the slots
                        // of steps that wait are theirs (rule S2).
                        if claimed == free
                            && steps.iter().all(|s| s.job.claimed_from == State::Pending)
                            && i.steps_waiting()
                        {
                            i.payments_due.notify_waiters();
                        }
                        db_backoff = Duration::from_millis(100);
                        for step in steps {
                            tracker.spawn(self.clone().execute(step));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "claim failed; retrying");
                        crate::metrics::global().claim_failed(&e);
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
                // More may be due: claim again as soon as a slot frees. A payment that
                // becomes due meanwhile takes the slot of a step that waits (rule S2).
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = i.slot_freed.notified() => {}
                    () = tokio::time::sleep_until(batch_by.unwrap_or_else(Instant::now)), if batch_by.is_some() && !worth_claiming => {}
                    // (Steps just spawned may not wait yet: looked at on every wake-up.)
                    _ = wake.notified() => i.free_waiting_slots_for_payments().await,
                    _ = tokio::time::sleep(i.settings.claim_interval()) => {
                        i.free_waiting_slots_for_payments().await;
                    }
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
        info!(in_flight = i.leases.len(), "shutting down: no more claims");
        i.stopping.cancel();
        tracker.close();
        if tokio::time::timeout(i.settings.shutdown_grace(), tracker.wait())
            .await
            .is_err()
        {
            warn!("grace period over; steps still running are abandoned, their rows will be recovered by order query");
        }
        heartbeat.abort();
        rechecks.abort();
        if let Some(checks) = balance_checks {
            checks.abort();
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        i.keeper.report_unrecorded();
        info!("worker stopped");
        Ok(())
    }
}

/// The longest a free slot waits for others to free before a claim (see [`Worker::run`]).
const CLAIM_BATCH_WAIT: Duration = Duration::from_millis(20);

/// How a panicked step's `last_error` begins: a row whose previous step panicked too goes to a
/// person (rule W5).
const PANIC_MARKER: &str = "internal error: the worker's step panicked";

/// A panic's message, masked and short enough for the row.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    crate::domain::truncate(
        &crate::domain::printable(&crate::card::mask_card_data(&what)),
        300,
    )
}

/// Wakes the claim loop on every notification; reconnects with a pause on errors (the
/// claim interval keeps the worker going meanwhile). LISTEN has a connection of its own, outside
/// the pool: it holds it for as long as it listens, and in the pool it would take a slot the
/// claims and writes need (with `max_connections = 1`, all of them).
async fn listen(
    options: sqlx::postgres::PgConnectOptions,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut said = false;
    loop {
        let attempt = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&own).await?;
            l.listen(CHANNEL).await?;
            if said {
                info!("LISTEN connection back: new orders are picked up at once again");
                said = false;
            }
            loop {
                l.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = attempt => if let Err(e) = r {
                if !said {
                    warn!(error = %e, "LISTEN connection lost: new orders are picked up by polling every worker.claim_interval_ms until it is back");
                    said = true;
                }
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
