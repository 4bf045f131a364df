//! The query step: recovery of `paying` rows (rule P5) and following of `ticketing` rows
//! (rule F). Both ask ATRIP the same question, `queryOrderDetails.do`, and let the state
//! machine decide; a `paying` row the machine allows a new intent for is then paid in the same
//! step (its intent written, fenced, before the `pay.do` leaves).

use super::{Inner, Step, StepError};
use crate::atrip::QueryAnswer;
use crate::jobs::Said;
use crate::machine::{Event, Next};

pub(super) async fn step(w: &Inner, step: &mut Step) -> Result<String, StepError> {
    w.limiter.acquire().await;
    if let Some(why) = w.give_back_if_needed(step, w.atrip.query_timeout()).await? {
        return Ok(why);
    }
    let answer = w.atrip.query(&step.job.order_no).await;
    match &answer {
        // Every query of this process waits, not only this order's.
        QueryAnswer::RateLimited { retry_after } => w.limiter.pause_for(*retry_after),
        QueryAnswer::Unauthorized { status, .. } => w.pause_for_credentials(*status),
        _ => {}
    }
    let next = w
        .conclude(step, Event::Query(&answer), Said::query(&answer))
        .await?;
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
    super::pay::step(w, step).await
}
