//! The query step: recovery of `paying` rows (rule P5) and following of `ticketing` rows
//! (rule F). Both ask ATRIP the same question, `queryOrderDetails.do`, and let the state
//! machine decide; a `paying` row the machine allows a new intent for is then paid in the same
//! step (its intent written, fenced, before the `pay.do` leaves).

use super::failpoint::Point;
use super::{Inner, Step, StepError};
use crate::atrip::QueryAnswer;
use crate::domain::State;
use crate::jobs::Said;
use crate::machine::{self, Event, Next};

/// One order query; a rate-limit answer pauses every query of this process. An answer
/// that shows a `paying` row paid is held as evidence until written (rule P3a).
async fn ask(w: &Inner, step: &Step) -> QueryAnswer {
    let answer = w.atrip.query(&step.job.order_no).await;
    if let QueryAnswer::RateLimited { retry_after } = &answer {
        w.limiter.pause_for(*retry_after);
    }
    if step.job.paid_at.is_none() {
        if let Some(evidence) = machine::evidence_in(Event::Query(&answer)) {
            w.saw(step, evidence);
        }
    }
    answer
}

pub(super) async fn step(w: &Inner, step: &mut Step) -> Result<String, StepError> {
    w.limiter.acquire().await;
    if let Some(why) = w.give_back_if_needed(step, w.atrip.query_timeout()).await? {
        return Ok(why);
    }
    // A rolling upgrade: an intent the previous release gave back at its shutdown, before
    // sending, is counted as not sent here, as this release counts its own.
    let legacy_unsent = step.job.claimed_from == State::Paying
        && step.job.last_pay_outcome.is_none()
        && step.job.pay_attempts > step.job.pay_not_sent
        && w.store
            .intent_given_back_by_previous_release(step.job.id)
            .await?;
    if legacy_unsent {
        step.job.pay_not_sent += 1;
    }
    w.hooks.at(Point::AfterClaim).await?;
    let answer = ask(w, step).await;
    w.hooks.at(Point::AfterAnswer).await?;
    if let QueryAnswer::Unauthorized { status, .. } = &answer {
        if w.refused_for_this_order_alone(*status).await {
            let event = Event::OutOfScope {
                status: *status,
                on_pay: false,
            };
            w.conclude(step, event, Said::query(&answer)).await?;
            return Ok(format!("{answer:?}: this order alone"));
        }
    }
    let (facts, mut next) = w.decide(step, Event::Query(&answer));
    let mut said = Said::query(&answer);
    if legacy_unsent {
        said = said.with_intent_not_sent();
    }
    if let Next::SeenOnce {
        tickets, poll_in, ..
    } = &next
    {
        // Rule F2: complete tickets are confirmed by a second answer. When the lease allows,
        // this step waits and asks again itself: one claim and one write instead of two.
        let poll_in = *poll_in;
        if !w.limiter.paused() && w.may_wait(step, poll_in + w.atrip.query_timeout() * 2) {
            step.job.tickets_seen = serde_json::to_value(tickets).ok();
            step.job.poll_attempts += 1;
            tokio::time::sleep(poll_in).await;
            w.limiter.acquire().await;
            let again = ask(w, step).await;
            let (facts, confirmed) = w.decide(step, Event::Query(&again));
            said = Said::query(&again).after(said);
            w.write_next(step, &facts, confirmed, said).await?;
            return Ok(format!("{answer:?}, then {again:?}"));
        }
    }
    next = w.write_next(step, &facts, next, said).await?;
    if next != Next::NewIntent {
        return Ok(format!("{answer:?}"));
    }
    // The intent is recorded; this step now holds it like a claim from `pending` does.
    let now = step.now();
    let job = &mut step.job;
    job.pay_attempts += 1;
    job.poll_attempts += 1;
    job.error_streak = 0;
    job.pay_started_at = Some(now);
    job.phase_started_at = now;
    job.last_pay_outcome = None;
    step.intent_open = true;
    w.intent_opened(step.job.id, step.job.lease_token);
    super::pay::step(w, step).await
}
