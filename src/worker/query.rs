//! The query step: recovery of `paying` rows (rule P5) and following of `ticketing` rows
//! (rule F). Both ask ATRIP the same question, `queryOrderDetails.do`, and let the state
//! machine decide; a `paying` row the machine allows a new intent for is then paid in the same
//! step (its intent written, fenced, before the `pay.do` leaves).

use tracing::Instrument;

use super::failpoint::Point;
use super::{Inner, Step, StepError};
use crate::atrip::{Answered, QueryAnswer};
use crate::domain::State;
use crate::jobs::Said;
use crate::machine::{self, Event, Next};

/// One order query; a rate-limit answer pauses every query of this process. An answer
/// that shows a `paying` row paid is held as evidence until written (rule P3a).
async fn ask(w: &Inner, step: &Step) -> Answered<QueryAnswer> {
    let span = tracing::info_span!(
        "order query",
        order_no = %step.job.order_no,
        status = tracing::field::Empty,
        answer = tracing::field::Empty,
        order_status = tracing::field::Empty,
    );
    let answered = w
        .atrip
        .query_answered(&step.job.order_no)
        .instrument(span.clone())
        .await;
    let answer = &answered.answer;
    span.record("answer", answer.class_name());
    if let Some(status) = answer.status() {
        span.record("status", status);
    }
    if let QueryAnswer::Order(order) = answer {
        span.record("order_status", tracing::field::debug(&order.order_status));
    }
    if let QueryAnswer::RateLimited { retry_after } = answer {
        w.limiter.pause_for(*retry_after);
    }
    if step.job.paid_at.is_none() {
        if let Some(evidence) = machine::evidence_in(Event::Query(answer)) {
            w.saw(step, evidence);
        }
    }
    answered
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
    let Answered { answer, request_id } = ask(w, step).await;
    w.hooks.at(Point::AfterAnswer).await?;
    if let QueryAnswer::Unauthorized { status, .. } = &answer {
        if w.refused_for_this_order_alone(*status).await {
            let event = Event::OutOfScope {
                status: *status,
                on_pay: false,
            };
            let said = Said::query(&answer).with_request_id(request_id.as_deref());
            w.conclude(step, event, said).await?;
            return Ok(format!("{answer:?}: this order alone"));
        }
    }
    let (mut facts, mut next) = w.decide(step, Event::Query(&answer));
    if next == Next::NewIntent {
        // Rule S4: no new intent while paying this method is paused; the row waits, its
        // permit kept. Asked here only, where the table would record one (an operator's
        // retry, a pay.do that never left): the claim leaves paused `pending` rows itself.
        if let Some(paused) = w.store.paused_for(step.job.payment_method).await? {
            facts.paying_paused = Some(paused);
            next = machine::next(Event::Query(&answer), &facts, &w.bounds());
        }
    }
    let mut said = Said::query(&answer).with_request_id(request_id.as_deref());
    if legacy_unsent {
        said = said.with_intent_not_sent();
    }
    if let Next::SeenOnce {
        tickets, poll_in, ..
    } = &next
    {
        // Rule F2: complete tickets are confirmed by a second answer. When the lease allows,
        // this step waits and asks again itself: one claim and one write instead of two.
        // The wait gives the slot up to a payment that becomes due (rule S2): the step then
        // writes what it saw, and a later claim asks again.
        let poll_in = *poll_in;
        if !w.limiter.paused()
            && w.may_wait(step, poll_in + w.atrip.query_timeout() * 2)
            && w.wait_in_step(poll_in).await
        {
            step.job.tickets_seen = serde_json::to_value(tickets).ok();
            step.job.poll_attempts += 1;
            // Rule F1b: the count the first answer listed holds for the second.
            if let QueryAnswer::Order(v) = &answer {
                step.job.passengers = step
                    .job
                    .passengers
                    .or_else(|| i16::try_from(v.tickets.len()).ok());
            }
            w.limiter.acquire().await;
            let again = ask(w, step).await;
            let (facts, confirmed) = w.decide(step, Event::Query(&again.answer));
            said = Said::query(&again.answer)
                .with_request_id(again.request_id.as_deref())
                .after(said);
            let again = again.answer;
            w.write_next(step, &facts, confirmed, said).await?;
            return Ok(format!("{answer:?}, then {again:?}"));
        }
    }
    next = w.write_next(step, &facts, next, said).await?;
    if next != Next::NewIntent {
        return Ok(format!("{answer:?}"));
    }
    // The intent is recorded (the write brought `step.job` up to the row: `ClaimedJob::landed`);
    // this step now holds it like a claim from `pending` does.
    step.intent_open = true;
    w.intent_opened(step.job.id, step.job.lease_token);
    super::pay::step(w, step).await
}
