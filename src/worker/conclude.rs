//! How every step ends: the table's decision, its one fenced write (retried while the database
//! is away, reported on the row when the table refuses it), or the row given back before a
//! call; and the pauses a step may impose on the process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

use super::evidence::Kept;
use super::failpoint::Point;
use super::scope::Scope;
use super::{pay, Inner, Step, StepError};
use crate::domain::State;
use crate::jobs::{self, Applied, CardSummary, Lease, Said, Write};
use crate::machine::{self, Bounds, Event, Evidence, Next, ReviewReason};

impl Inner {
    pub fn bounds(&self) -> Bounds<'_> {
        Bounds {
            settings: &self.settings,
        }
    }

    /// What the table says comes next after `event`, on the step's row as it is now.
    pub fn decide(&self, step: &Step, event: Event<'_>) -> (machine::Facts, Next) {
        let mut facts = step.facts();
        facts.intents_durable = self.gate.may_pay().is_ok();
        let next = machine::next(event, &facts, &self.bounds());
        (facts, next)
    }

    /// Asks the table what comes next after `event`, writes it, and says what happened. The
    /// one end of every step (a `NewIntent` is written here too; the caller then pays).
    pub async fn conclude(
        &self,
        step: &mut Step,
        event: Event<'_>,
        said: Said,
    ) -> Result<Next, StepError> {
        let (facts, next) = self.decide(step, event);
        self.write_next(step, &facts, next, said).await
    }

    /// Writes a decided `next` with what ATRIP said.
    pub async fn write_next(
        &self,
        step: &mut Step,
        facts: &machine::Facts,
        next: Next,
        said: Said,
    ) -> Result<Next, StepError> {
        // Rule P6: a 411 review says the deposit balance, when balance.do can tell it (a read
        // only, after the pay.do was answered: it delays and causes no payment).
        let next = match next {
            Next::Review(ReviewReason::PaymentError {
                deadline,
                now,
                balance: None,
            }) => Next::Review(ReviewReason::PaymentError {
                deadline,
                now,
                balance: self.balance_words(step).await,
            }),
            other => other,
        };
        let card = if matches!(next, Next::NewIntent) {
            CardSummary::default()
        } else {
            pay::card_summary(self, &step.job)
        };
        let write = Write::step(&next, said, facts, card);
        let span = tracing::info_span!(
            "write",
            order_no = %step.job.order_no,
            state_from = step.lease.state().as_str(),
            state_to = tracing::field::Empty,
            lease_token = step.lease.token(),
        );
        let applied = self
            .record(&mut step.lease, &write)
            .instrument(span.clone())
            .await?;
        span.record("state_to", step.lease.state().as_str());
        step.job.landed(&write, applied.at);
        match &next {
            // Off the happy path: said at warn, with the order, whatever the span filter.
            Next::Failed(reason) => warn!(
                order_no = %step.job.order_no, state = %State::Failed, reason = %reason,
                "order failed"
            ),
            Next::Review(reason) => warn!(
                order_no = %step.job.order_no, state = %State::NeedsReview, reason = %reason,
                "order needs a person"
            ),
            Next::Ticketed { .. } => {
                let waited = (applied.at - step.job.created_at)
                    .to_std()
                    .unwrap_or_default();
                crate::metrics::global().enqueue_to_ticketed.observe(waited);
            }
            _ => {}
        }
        Ok(next)
    }

    /// Whether this step may wait `d` more and still finish a call inside its lease (and
    /// the worker is not shutting down).
    pub fn may_wait(&self, step: &Step, d: Duration) -> bool {
        !self.stopping.is_cancelled() && self.leases.covers(step.job.id, d)
    }

    /// Records a write, retrying while the database is unreachable or the row is locked by
    /// another session (a restart must not cost a recorded answer), as long as the lease can
    /// last. A lost lease is final. A write the table refuses is a bug: the row goes to
    /// `needs_review` naming the constraint (rule W2), never retried as an outage. Evidence of
    /// payment in a write that did not land stays held for the step ([`Inner::saw`]), and
    /// goes to the keeper when the step ends (rule P3a).
    pub async fn record(&self, lease: &mut Lease, write: &Write) -> Result<Applied, StepError> {
        let applied = self.record_fenced(lease, write).await?;
        // The evidence is in the table and, once the gate says a failover would find it there
        // too (rule P1b, applied to evidence), nothing is left for the keeper; otherwise the
        // keeper writes it again where a failover lost it.
        if write.evidence().is_some() && self.gate.confirm(lease.server()).await.is_ok() {
            self.unsee(lease.id(), lease.token());
        }
        Ok(applied)
    }

    /// An answer showed the order paid: from here until a write of it lands, the evidence is
    /// held for this step, and whatever ends the step hands it to the keeper (rule P3a).
    pub fn saw(&self, step: &Step, evidence: Evidence) {
        let card = pay::card_summary(self, &step.job);
        let kept = Kept {
            job_id: step.job.id,
            order_no: step.job.order_no.clone(),
            evidence,
            card_brand: card.brand,
            card_last4: card.last4,
            release_token: Some(step.job.lease_token),
        };
        self.seen
            .lock()
            .unwrap()
            .insert(step.job.id, (step.job.lease_token, kept));
    }

    /// An intent of the step of `(id, token)` is recorded and its `pay.do` not begun.
    pub fn intent_opened(&self, id: i64, token: i64) {
        self.open_intents.lock().unwrap().insert(id, token);
    }

    /// That intent's send begins, or the intent is closed otherwise: it is no longer one a
    /// panic may count as not sent. Returns whether it was open.
    pub fn intent_closed(&self, id: i64, token: i64) -> bool {
        let mut open = self.open_intents.lock().unwrap();
        if open.get(&id) == Some(&token) {
            open.remove(&id);
            return true;
        }
        false
    }

    /// The evidence held for the step of `(id, token)`, taken out.
    pub fn unsee(&self, id: i64, token: i64) -> Option<Kept> {
        let mut seen = self.seen.lock().unwrap();
        if seen.get(&id).is_some_and(|(t, _)| *t == token) {
            return seen.remove(&id).map(|(_, kept)| kept);
        }
        None
    }

    async fn record_fenced(&self, lease: &mut Lease, write: &Write) -> Result<Applied, StepError> {
        let mut pause = Duration::from_millis(100);
        let deadline = Instant::now() + self.settings.lease() / 2;
        let mut noted = false;
        loop {
            self.hooks.at(Point::BeforeWrite).await?;
            match self.writer.apply(lease, write).await {
                Ok(applied) => {
                    debug!(kind = %write.kind(), to = %write.to(), "recorded");
                    return Ok(applied);
                }
                Err(jobs::Error::ConstraintViolated {
                    job_id,
                    order_no,
                    constraint,
                }) => {
                    self.store
                        .review_refused_write(lease, &self.id, &constraint, write)
                        .await?;
                    return Err(jobs::Error::ConstraintViolated {
                        job_id,
                        order_no,
                        constraint,
                    }
                    .into());
                }
                Err(e @ (jobs::Error::Database(_) | jobs::Error::RowBusy { .. }))
                    if Instant::now() < deadline =>
                {
                    if matches!(e, jobs::Error::RowBusy { .. }) {
                        crate::metrics::global()
                            .rows_busy
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    warn!(order_no = %lease.order_no(), error = %e, "recording failed; retrying");
                    // Evidence of payment waiting on this write is noted where no row lock
                    // holds it up, so that a crash meanwhile does not lose it (rule P3a).
                    if let (Some(evidence), false) = (write.evidence(), noted) {
                        let note = self.store.note_evidence(
                            lease.id(),
                            lease.order_no(),
                            lease.state().as_str(),
                            lease.token(),
                            &self.id,
                            evidence.as_str(),
                        );
                        match note.await {
                            Ok(()) => {
                                noted = true;
                                warn!(order_no = %lease.order_no(), evidence = evidence.as_str(), "evidence of payment noted in the events while its write waits; any worker writes it from there");
                            }
                            Err(e) => {
                                debug!(error = %e, "noting evidence of payment failed; tried again with the write")
                            }
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Before a step's call to ATRIP: during shutdown, or with too little of our lease left to
    /// finish `call`, gives the row back (due now, lease cleared, state unchanged; an open
    /// intent recorded as never sent) so that another worker takes it at once.
    pub async fn give_back_if_needed(
        &self,
        step: &mut Step,
        call: Duration,
    ) -> Result<Option<String>, StepError> {
        let why = if self.stopping.is_cancelled() {
            "worker shutting down before this step sent anything"
        } else if !self.leases.covers(step.job.id, call) {
            "too little of the lease left to finish the call; nothing was sent"
        } else {
            return Ok(None);
        };
        self.give_back(step, why, Duration::ZERO).await?;
        Ok(Some(why.to_owned()))
    }

    /// Gives the row back before this step sent anything: due `after` from now, lease cleared,
    /// state unchanged, an open intent recorded as never sent.
    pub async fn give_back(
        &self,
        step: &mut Step,
        why: &str,
        after: Duration,
    ) -> Result<(), StepError> {
        let write = Write::give_back(step.lease.state(), step.intent_open, why).due_after(after);
        self.record(&mut step.lease, &write).await?;
        self.intent_closed(step.job.id, step.job.lease_token);
        info!(reason = why, "row given back");
        Ok(())
    }

    /// The deposit balance in words for a 411 review, or `None` when the order is not a
    /// deposit one or the balance could not be read.
    async fn balance_words(&self, step: &Step) -> Option<String> {
        if step.job.payment_method != crate::domain::PaymentMethod::Deposit.code() {
            return None;
        }
        match self.atrip.balance(&self.settings.balance_currency).await {
            b @ crate::atrip::balance::Balance::Read { .. } => Some(format!(
                "{} at {}",
                b.words(),
                step.now().format("%Y-%m-%d %H:%M:%S UTC")
            )),
            crate::atrip::balance::Balance::Unread { reason } => {
                warn!(
                    reason,
                    "the deposit balance could not be read for a 411 review"
                );
                None
            }
        }
    }

    /// ATRIP answered 900/902 for this step's order: whether the order alone is refused
    /// (`true`: the caller sends it to a person), or our credentials are (`false`: claims
    /// pause for everyone, as after a refused start probe). Rule P4f.
    pub async fn refused_for_this_order_alone(&self, status: i64) -> bool {
        match self.scope.of_refusal(&self.atrip).await {
            Scope::Order => {
                crate::metrics::global()
                    .orders_out_of_scope
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    status,
                    "ATRIP refused this order alone (it takes our credentials for others)"
                );
                true
            }
            Scope::Credentials | Scope::Unknown => {
                self.pause_for_credentials(status);
                false
            }
        }
    }

    /// A claim whose answer never arrived (rule P1): its intents, if it committed, are
    /// withdrawn in the background, tried until the lease it gave them would have run out
    /// (after that another worker recovers those rows by order query, and the fence keeps
    /// this from touching them).
    pub fn withdraw_lost_claim(&self, nonce: String, lease: Duration) {
        let (store, owner) = (self.store.clone(), self.id.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + lease;
            let mut pause = Duration::from_millis(100);
            while Instant::now() < deadline {
                match store.withdraw_lost_claim(&owner, &nonce).await {
                    Ok(0) => return,
                    Ok(n) => {
                        warn!(rows = n, claim = %nonce, "a claim's answer was lost after its commit: its pay intents were withdrawn (nothing was sent) and the rows are pending again");
                        return;
                    }
                    Err(e) => {
                        debug!(error = %e, claim = %nonce, "withdrawing a lost claim's intents failed; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// Our credentials were refused: stop claiming for a while, loudly. The order is not at
    /// fault and stays as it is.
    pub fn pause_for_credentials(&self, status: i64) {
        let pause = self.settings.credentials_pause();
        *self.paused_until.lock().unwrap() = Some(Instant::now() + pause);
        crate::metrics::global().atrip_refused_credentials();
        error!(status, pause_ms = pause.as_millis() as u64, "ATRIP refused our credentials; no new claims for a while (check atrip.client_id / atrip.client_secret)");
    }

    /// Compares this process's wall clock with the database's (the metric
    /// `ticketing_worker_clock_skew_seconds`); decisions never use it, but an operator should
    /// know.
    pub(super) fn report_skew(&self, db_now: DateTime<Utc>) {
        let skew = self.clock.now() - db_now;
        let m = crate::metrics::global();
        m.clock_skew_ms
            .store(skew.num_milliseconds(), Ordering::Relaxed);
        if skew.num_seconds().abs() >= 5 && !m.skew_warned.swap(true, Ordering::Relaxed) {
            warn!(skew_ms = skew.num_milliseconds(), "this machine's clock differs from the database's; leases and deadlines use the database's time, so nothing breaks, but check NTP");
        }
    }
}
