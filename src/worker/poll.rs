//! The follow step: query a paid order until its tickets are final (seen identically twice),
//! it definitively failed, or its ticketing deadline passed.

use serde_json::json;

use super::schedule::after;
use super::{answer_detail, next_poll_delay, Done, Inner, StepError};
use crate::atrip::codes::OrderStatus;
use crate::atrip::QueryAnswer;
use crate::domain::State;
use crate::jobs::{Change, ClaimedJob, Lease};

pub(super) async fn step(w: &Inner, job: &ClaimedJob) -> Result<Done, StepError> {
    let mut lease = Lease {
        id: job.id,
        token: job.lease_token,
        order_no: job.order_no.clone(),
        state: State::Ticketing,
    };
    w.limiter.acquire().await;
    if let Some(done) = w.released_for_shutdown(&mut lease).await? {
        return Ok(done);
    }
    w.ensure_lease_covers(job.id, w.settings.recovery_delay())?;
    let answer = w.atrip.query(&job.order_no).await;
    let now = w.clock.now();
    let order_no = &job.order_no;
    let next_poll = after(now, next_poll_delay(&w.settings, job.poll_attempts as u32));
    let mut c = match &answer {
        QueryAnswer::Order(view) => {
            let mut c = if let Some(tickets) = view.final_tickets() {
                let seen = serde_json::to_value(tickets).unwrap_or_default();
                if job.tickets_seen.as_ref() == Some(&seen) {
                    let mut c = Change::new("query_answered", State::Ticketed);
                    c.pnr = view.airline_pnr().or_else(|| view.pnr_code.clone());
                    c.tickets = Some(seen);
                    c
                } else {
                    // Final once seen identically on the next answer too.
                    let mut c = Change::new("query_answered", State::Ticketing);
                    c.tickets_seen = Some(seen);
                    c.run_at = Some(after(now, w.settings.first_poll()));
                    c
                }
            } else {
                match &view.order_status {
                    OrderStatus::Cancelled => {
                        let mut c = Change::new("query_answered", State::Failed);
                        c.error = Some(format!(
                            "order {order_no}: ticketing failed, ATRIP cancelled the order (errorCode {}: {})",
                            view.error_code.as_deref().unwrap_or("none"),
                            view.error_message.as_deref().unwrap_or("no message")
                        ));
                        c
                    }
                    OrderStatus::Unknown(s) => {
                        let mut c = Change::new("query_answered", State::Ticketing);
                        c.run_at = Some(next_poll);
                        c.unclear = true;
                        c.error = Some(format!(
                            "order {order_no}: ATRIP reported an unknown orderStatus {s:?}; still following"
                        ));
                        c
                    }
                    // Ticketing, ticketed without every ticket, or a lagging "unpaid": follow on.
                    _ => {
                        let mut c = Change::new("query_answered", State::Ticketing);
                        c.run_at = Some(next_poll);
                        c
                    }
                }
            };
            c.order_status = Some(view.order_status.wire().to_owned());
            c.atrip_pnr = view.pnr_code.clone();
            c.atrip_status = Some(0);
            c.atrip_message = view.msg.clone();
            c.detail = json!({
                "answer": "order", "orderStatus": view.order_status.wire(),
                "ticketStatus": view.ticket_status, "errorCode": view.error_code,
                "passengers": view.tickets.len(),
                "ticketed_passengers": view.tickets.iter().filter(|p| !p.ticket_numbers.is_empty()).count(),
            });
            c
        }
        QueryAnswer::NotFound { status, msg } => {
            let mut c = Change::new("query_answered", State::NeedsReview);
            c.error = Some(format!(
                "order {order_no}: paid, but ATRIP now says it has no such order (status {status})"
            ));
            c.atrip_status = Some(*status);
            c.atrip_message = msg.clone();
            c.detail = answer_detail("not_found", Some(*status), msg.as_deref());
            c
        }
        other => unclear_change(w, job, State::Ticketing, other),
    };
    c.poll = true;
    if c.to == State::Ticketing {
        let paid_at = job.paid_at.unwrap_or(job.created_at);
        let deadline = after(paid_at, w.settings.ticketing_deadline());
        if now > deadline {
            c.to = State::NeedsReview;
            c.run_at = None;
            c.tickets_seen = None;
            c.error = Some(format!(
                "order {order_no}: not ticketed by {deadline} (ticketing deadline after payment at {paid_at}); last orderStatus {}",
                c.order_status.as_deref().unwrap_or("unknown")
            ));
        } else if c.unclear && job.error_streak + 1 >= w.settings.max_error_streak {
            c.to = State::NeedsReview;
            c.run_at = None;
            c.error = Some(format!(
                "order {order_no}: {} unclear answers in a row; last: {}",
                job.error_streak + 1,
                c.error.as_deref().unwrap_or("none")
            ));
        } else if c.unclear && c.tickets_seen.is_none() {
            // An unclear answer between two final ones does not break "seen twice".
            c.tickets_seen = job.tickets_seen.clone();
        }
    }
    let to = c.to;
    w.record(&mut lease, c).await?;
    if to == State::Ticketed {
        let waited = (now - job.created_at).to_std().unwrap_or_default();
        crate::metrics::global().enqueue_to_ticketed.observe(waited);
    }
    Ok(w.ends(to, false, format!("{answer:?}")))
}

/// A query answer that says nothing about the order (transport error, 5xx, 705, rate limit,
/// a garbled or untrustworthy body, refused credentials): the row stays in `state`, records
/// the error, and is due again after a backoff.
pub(super) fn unclear_change(
    w: &Inner,
    job: &ClaimedJob,
    state: State,
    answer: &QueryAnswer,
) -> Change {
    let now = w.clock.now();
    let order_no = &job.order_no;
    let mut c = Change::new("query_answered", state);
    c.unclear = true;
    c.poll = true;
    c.run_at = Some(after(
        now,
        next_poll_delay(&w.settings, job.error_streak as u32),
    ));
    let (what, reason, status) = match answer {
        QueryAnswer::Retry { reason } => ("retry", reason.clone(), None),
        QueryAnswer::RateLimited { retry_after } => {
            // Every request of this process waits, not only this order's.
            w.limiter.pause_for(*retry_after);
            c.run_at = Some(after(now, *retry_after));
            (
                "rate_limited",
                format!(
                    "ATRIP rate limit; retrying after {} ms",
                    retry_after.as_millis()
                ),
                Some(429),
            )
        }
        QueryAnswer::Unauthorized { status, .. } => {
            w.pause_for_credentials(*status);
            (
                "unauthorized",
                format!("ATRIP refused our credentials (status {status})"),
                Some(*status),
            )
        }
        QueryAnswer::Invalid { status, reason } => ("invalid", reason.clone(), *status),
        QueryAnswer::Order(_) | QueryAnswer::NotFound { .. } => {
            ("unexpected", "unexpected answer".to_owned(), None)
        }
    };
    c.error = Some(format!("order {order_no}: order query failed: {reason}"));
    c.atrip_status = status;
    c.detail = json!({ "answer": what, "status": status, "reason": reason });
    c
}
