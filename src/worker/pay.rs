//! The pay step and the recovery of `paying` rows: the pay-once protocol of design.md.
//!
//! A row claimed from `pending` already carries its committed pay intent (the claim wrote it
//! under the row lock). This step checks the order's data, sends `pay.do` once, outside any
//! transaction, and records the answer in one fenced write. A row claimed from `paying` is a
//! recovery: its outcome is unknown, so the order query comes first, and a new intent (and a
//! second `pay.do`) only when the order is proven unpaid and every bound allows it.

use serde_json::json;
use tracing::{info, warn};

use super::schedule::after;
use super::{answer_detail, Done, Inner, StepError};
use crate::atrip::codes::OrderStatus;
use crate::atrip::{PayAnswer, PayRequest, QueryAnswer};
use crate::card::CreditCard;
use crate::domain::{PaymentMethod, State};
use crate::jobs::{Change, ClaimedJob, Lease};
use crate::sealed::SealError;

pub(super) async fn step(w: &Inner, job: &ClaimedJob) -> Result<Done, StepError> {
    let mut lease = Lease {
        id: job.id,
        token: job.lease_token,
        order_no: job.order_no.clone(),
        state: State::Paying,
    };
    if job.claimed_from == "pending" {
        return pay(w, job, &mut lease).await;
    }
    recover(w, job, &mut lease).await
}

/// A refusal before anything was sent: the row fails with the reason, and its card data goes.
fn refuse_before_sending(w: &Inner, job: &ClaimedJob, reason: String) -> Change {
    let mut c = Change::new("pay_not_sent", State::Failed);
    c.error = Some(format!(
        "order {}: {reason}; pay.do was not sent",
        job.order_no
    ));
    c.erase_card = true;
    c.detail = json!({ "reason": reason, "pay_sent": false });
    keep_card_summary(w, &mut c, job);
    c
}

/// Checks the row, then sends `pay.do` once and records the answer.
async fn pay(w: &Inner, job: &ClaimedJob, lease: &mut Lease) -> Result<Done, StepError> {
    let now = w.clock.now();
    let Some(method) = PaymentMethod::from_code(i64::from(job.payment_method)) else {
        let reason = format!(
            "payment_method {} is not one of 1, 3, 4, 5",
            job.payment_method
        );
        w.record(lease, refuse_before_sending(w, job, reason.clone()))
            .await?;
        return Ok(w.ends(State::Failed, false, reason));
    };
    if let Some(deadline) = job.pay_deadline.filter(|d| *d <= now) {
        let reason = format!("the payment deadline {deadline} passed before payment");
        w.record(lease, refuse_before_sending(w, job, reason.clone()))
            .await?;
        return Ok(w.ends(State::Failed, false, reason));
    }
    let raw_card = match &job.card_sealed {
        None => job.card.clone(),
        Some(sealed) => {
            let opened = match &w.card_key {
                Some(key) => key.open(&job.order_no, &sealed.0),
                None => Err(SealError::NoKey),
            };
            match opened {
                Ok(card) => Some(crate::jobs::CardJson(card)),
                Err(e @ (SealError::WrongOrder { .. } | SealError::Malformed)) => {
                    let reason = e.to_string();
                    w.record(lease, refuse_before_sending(w, job, reason.clone()))
                        .await?;
                    return Ok(w.ends(State::Failed, false, reason));
                }
                // The data may be fine and this worker's key wrong or missing: a person
                // looks, and the sealed card stays for the retry.
                Err(e) => {
                    let reason = e.to_string();
                    let mut c = Change::new("pay_not_sent", State::NeedsReview);
                    c.error = Some(format!(
                        "order {}: {reason}; pay.do was not sent",
                        job.order_no
                    ));
                    c.detail = json!({ "reason": reason, "pay_sent": false });
                    w.record(lease, c).await?;
                    return Ok(w.ends(State::NeedsReview, false, reason));
                }
            }
        }
    };
    let card = match (method.needs_card(), &raw_card) {
        (false, _) => None,
        (true, None) => {
            let reason = format!(
                "payment method {} needs card data and the row has none (card data is erased once a payment resolves; a retry needs fresh card data)",
                method.code()
            );
            w.record(lease, refuse_before_sending(w, job, reason.clone()))
                .await?;
            return Ok(w.ends(State::Failed, false, reason));
        }
        (true, Some(raw)) => match CreditCard::from_json(&raw.0, method, now) {
            Ok(card) => Some(card),
            Err(e) => {
                let reason = e.to_string();
                w.record(lease, refuse_before_sending(w, job, reason.clone()))
                    .await?;
                return Ok(w.ends(State::Failed, false, reason));
            }
        },
    };
    let mut request = PayRequest::new(&job.order_no, method, card.as_ref());
    request.client_order_no = job.client_order_no.as_deref();

    w.limiter.acquire().await;
    if let Some(done) = w.released_for_shutdown(lease).await? {
        return Ok(done);
    }
    // The last check before the one call that cannot be taken back.
    w.ensure_lease_covers(job.id, w.atrip.pay_timeout())?;
    info!(
        method = method.code(),
        attempt = job.pay_attempts,
        "sending pay.do"
    );
    let answer = w.atrip.pay(&request).await;
    crate::metrics::global().pay_outcome(answer.class_name());
    let mut change = pay_answer_change(w, &job.order_no, &answer);
    keep_card_summary(w, &mut change, job);
    let to = change.to;
    w.record(lease, change).await?;
    Ok(w.ends(to, true, format!("{answer:?}")))
}

/// What the answer to a `pay.do` does to the row.
fn pay_answer_change(w: &Inner, order_no: &str, answer: &PayAnswer) -> Change {
    let now = w.clock.now();
    let recheck = after(now, w.settings.recovery_delay());
    let mut c = match answer {
        PayAnswer::Accepted {
            status,
            msg,
            pnr_code,
        } => {
            let mut c = Change::new("pay_answered", State::Ticketing);
            c.run_at = Some(after(now, w.settings.first_poll()));
            c.atrip_pnr = pnr_code.clone();
            c.erase_card = true;
            c.detail = answer_detail("accepted", Some(*status), msg.as_deref());
            c
        }
        PayAnswer::NeverPayAgain { status, msg } => {
            // 402/404/406: paid, not payable, or a payment running. Only a query decides.
            let mut c = Change::new("pay_answered", State::Paying);
            c.run_at = Some(recheck);
            c.detail = answer_detail("never_pay_again", Some(*status), msg.as_deref());
            c
        }
        PayAnswer::Refused { status, msg } => {
            let mut c = Change::new("pay_answered", State::Failed);
            c.error = Some(format!(
                "order {order_no}: ATRIP refused the payment with status {status} ({})",
                msg.as_deref().unwrap_or("no message")
            ));
            c.erase_card = true;
            c.detail = answer_detail("refused", Some(*status), msg.as_deref());
            c
        }
        PayAnswer::Unauthorized { status, msg } => {
            w.pause_for_credentials(*status);
            let mut c = Change::new("pay_answered", State::Paying);
            c.run_at = Some(after(now, std::time::Duration::from_secs(60)));
            c.error = Some(format!(
                "order {order_no}: ATRIP refused our credentials (status {status}); the order is not at fault"
            ));
            c.detail = answer_detail("unauthorized", Some(*status), msg.as_deref());
            c
        }
        PayAnswer::PaymentError { status, msg } => {
            let mut c = Change::new("pay_answered", State::Paying);
            c.run_at = Some(recheck);
            c.unclear = true;
            c.error = Some(format!(
                "order {order_no}: pay.do answered {status} ({}); the order query decides",
                msg.as_deref().unwrap_or("no message")
            ));
            c.detail = answer_detail("payment_error", Some(*status), msg.as_deref());
            c
        }
        PayAnswer::OutcomeUnknown { status, reason } => {
            let mut c = Change::new("pay_answered", State::Paying);
            c.run_at = Some(recheck);
            c.unclear = true;
            c.error = Some(format!(
                "order {order_no}: outcome of pay.do unknown ({reason}); the order query decides"
            ));
            c.detail = json!({ "answer": "outcome_unknown", "status": status, "reason": reason });
            c
        }
        PayAnswer::NotSent { reason } => {
            let mut c = Change::new("pay_answered", State::Paying);
            c.run_at = Some(recheck);
            c.unclear = true;
            c.error = Some(format!(
                "order {order_no}: {reason}; the order query decides"
            ));
            c.detail = json!({ "answer": "not_sent", "reason": reason });
            c
        }
    };
    c.atrip_status = answer.status();
    if let PayAnswer::Accepted { msg, .. }
    | PayAnswer::NeverPayAgain { msg, .. }
    | PayAnswer::Refused { msg, .. }
    | PayAnswer::Unauthorized { msg, .. } = answer
    {
        c.atrip_message = msg.clone();
    }
    c
}

/// When a change erases the card, it keeps the brand and last four digits for the operator.
pub(super) fn keep_card_summary(w: &Inner, c: &mut Change, job: &ClaimedJob) {
    if !c.erase_card {
        return;
    }
    let card = match (&job.card, &job.card_sealed, &w.card_key) {
        (Some(raw), _, _) => Some(raw.0.clone()),
        (None, Some(sealed), Some(key)) => key.open(&job.order_no, &sealed.0).ok(),
        _ => None,
    };
    if let Some(card) = card {
        (c.card_brand, c.card_last4) = crate::card::summary(&card);
    }
}

/// Recovery of a `paying` row: the order query first, always.
async fn recover(w: &Inner, job: &ClaimedJob, lease: &mut Lease) -> Result<Done, StepError> {
    w.limiter.acquire().await;
    if let Some(done) = w.released_for_shutdown(lease).await? {
        return Ok(done);
    }
    w.ensure_lease_covers(job.id, w.settings.recovery_delay())?;
    let answer = w.atrip.query(&job.order_no).await;
    let now = w.clock.now();
    let order_no = &job.order_no;
    let mut c = match &answer {
        QueryAnswer::Order(view) => {
            let mut c = match &view.order_status {
                OrderStatus::Ticketing | OrderStatus::Ticketed => {
                    let mut c = Change::new("query_answered", State::Ticketing);
                    c.run_at = Some(after(now, w.settings.first_poll()));
                    c.erase_card = true;
                    c
                }
                OrderStatus::Cancelled => {
                    let mut c = Change::new("query_answered", State::Failed);
                    c.error = Some(format!(
                        "order {order_no}: ATRIP cancelled the order (errorCode {}: {})",
                        view.error_code.as_deref().unwrap_or("none"),
                        view.error_message.as_deref().unwrap_or("no message")
                    ));
                    c.erase_card = true;
                    c
                }
                OrderStatus::Unpaid => return unpaid(w, job, lease).await,
                OrderStatus::Unknown(s) => {
                    let mut c = Change::new("query_answered", State::Paying);
                    c.run_at = Some(after(
                        now,
                        super::next_poll_delay(&w.settings, job.error_streak as u32),
                    ));
                    c.unclear = true;
                    c.error = Some(format!(
                        "order {order_no}: ATRIP reported an unknown orderStatus {s:?}; still checking"
                    ));
                    c
                }
            };
            c.poll = true;
            c.order_status = Some(view.order_status.wire().to_owned());
            c.atrip_pnr = view.pnr_code.clone();
            c.atrip_status = Some(0);
            c.atrip_message = view.msg.clone();
            c.detail = json!({ "answer": "order", "orderStatus": view.order_status.wire(),
                               "errorCode": view.error_code });
            c
        }
        QueryAnswer::NotFound { status, msg } => {
            let mut c = Change::new("query_answered", State::Failed);
            c.error = Some(format!(
                "order {order_no}: ATRIP has no such order (status {status}); check the order number and the ATRIP environment"
            ));
            c.erase_card = true;
            c.atrip_status = Some(*status);
            c.atrip_message = msg.clone();
            c.detail = answer_detail("not_found", Some(*status), msg.as_deref());
            c
        }
        other => super::poll::unclear_change(w, job, State::Paying, other),
    };
    review_when_unclear_too_long(w, job, &mut c, now);
    keep_card_summary(w, &mut c, job);
    let to = c.to;
    w.record(lease, c).await?;
    Ok(w.ends(to, false, format!("{answer:?}")))
}

/// An outcome that stays unclear past every bound (the paying deadline, or
/// `max_error_streak` unclear answers in a row) goes to a person.
fn review_when_unclear_too_long(
    w: &Inner,
    job: &ClaimedJob,
    c: &mut Change,
    now: chrono::DateTime<chrono::Utc>,
) {
    let unclear_since = job.pay_started_at.unwrap_or(job.created_at);
    if c.to == State::Paying
        && c.unclear
        && (now - unclear_since
            > chrono::Duration::from_std(w.settings.paying_deadline()).unwrap_or_default()
            || job.error_streak + 1 >= w.settings.max_error_streak)
    {
        c.to = State::NeedsReview;
        c.run_at = None;
        c.error = Some(format!(
            "order {}: payment outcome still unclear after {} checks since {unclear_since}; last: {}",
            job.order_no,
            job.error_streak + 1,
            c.error.as_deref().unwrap_or("no error")
        ));
    }
}

/// The ATRIP answer, since the last operator retry, that showed this order paid or its
/// payment running: a `pay.do` answered 0/615 or 402/404/406, or a query that showed
/// `orderStatus` "1"/"2". After one of these ATRIP's rule is "never pay again", so a later
/// "0" is the query lagging behind that payment, not proof that the order is unpaid.
async fn answer_that_showed_paid(w: &Inner, job: &ClaimedJob) -> Result<Option<String>, StepError> {
    let events = w.store.events(&job.order_no).await?;
    let since_retry = events
        .iter()
        .rposition(|e| e.job_id == job.id && e.kind == "operator_retry")
        .map_or(0, |i| i + 1);
    let found = events[since_retry..]
        .iter()
        .filter(|e| e.job_id == job.id)
        .find_map(|e| {
            let d = &e.detail;
            match (e.kind.as_str(), d["answer"].as_str()) {
                ("pay_answered", Some("accepted" | "never_pay_again")) => {
                    Some(format!("pay.do answered status {}", d["status"]))
                }
                ("query_answered", Some("order"))
                    if matches!(d["orderStatus"].as_str(), Some("1" | "2")) =>
                {
                    Some(format!(
                        "an order query showed orderStatus {}",
                        d["orderStatus"]
                    ))
                }
                _ => None,
            }
        });
    Ok(found)
}

/// The order is explicitly unpaid: pay again only if every bound of design.md allows it.
async fn unpaid(w: &Inner, job: &ClaimedJob, lease: &mut Lease) -> Result<Done, StepError> {
    let now = w.clock.now();
    let order_no = &job.order_no;
    let base = |kind, to| {
        let mut c = Change::new(kind, to);
        c.poll = true;
        c.order_status = Some("0".into());
        c.atrip_status = Some(0);
        c
    };
    // 402/404/406 mean "paid, not payable, or a payment is running": never pay again. Keep
    // asking, with backoff, until the query catches up; a person decides if it never does.
    if let Some(shown) = answer_that_showed_paid(w, job).await? {
        let mut c = base("query_answered", State::Paying);
        c.unclear = true;
        c.run_at = Some(after(
            now,
            super::next_poll_delay(&w.settings, job.error_streak as u32),
        ));
        c.error = Some(format!(
            "order {order_no}: {shown} earlier, yet the order query shows it unpaid; not paying again, checking later"
        ));
        c.detail = json!({ "answer": "order", "orderStatus": "0",
                           "decision": "unpaid, but an earlier answer showed it paid or in progress; not paying again",
                           "shown": shown });
        review_when_unclear_too_long(w, job, &mut c, now);
        let to = c.to;
        w.record(lease, c).await?;
        return Ok(w.ends(to, false, "unpaid after a never-pay-again answer; waiting"));
    }
    // A pay.do still travelling (or being processed) could land late: wait out the previous
    // attempt's timeout plus a grace before believing "unpaid".
    let settle = job
        .pay_started_at
        .map(|t| after(t, w.atrip.pay_timeout() + w.settings.pay_grace()));
    if let Some(settle) = settle.filter(|s| *s > now) {
        let mut c = base("query_answered", State::Paying);
        c.run_at = Some(settle);
        c.detail = json!({ "answer": "order", "orderStatus": "0",
                           "decision": "unpaid; waiting for the previous attempt to settle" });
        w.record(lease, c).await?;
        return Ok(w.ends(State::Paying, false, "unpaid; waiting"));
    }
    // Only once the previous attempt can no longer land is "unpaid past the deadline" final.
    if let Some(deadline) = job.pay_deadline.filter(|d| *d <= now) {
        let mut c = base("query_answered", State::Failed);
        c.error = Some(format!(
            "order {order_no}: still unpaid and its payment deadline {deadline} has passed"
        ));
        c.erase_card = true;
        w.record(lease, c).await?;
        return Ok(w.ends(State::Failed, false, "unpaid past deadline"));
    }
    if job.pay_attempts >= w.settings.max_pay_attempts {
        let mut c = base("query_answered", State::NeedsReview);
        c.error = Some(format!(
            "order {order_no}: still unpaid after {} pay attempts (max_pay_attempts); not paying again without a person",
            job.pay_attempts
        ));
        w.record(lease, c).await?;
        return Ok(w.ends(State::NeedsReview, false, "unpaid after max attempts"));
    }
    // Proven unpaid, previous attempt settled, attempts left: a new intent, committed (fenced)
    // before the call, exactly as the first one was.
    let mut c = base("pay_intent", State::Paying);
    c.new_intent = true;
    c.release = false;
    c.detail = json!({ "answer": "order", "orderStatus": "0",
                       "decision": "proven unpaid; new pay intent",
                       "pay_attempts": job.pay_attempts + 1 });
    w.record(lease, c).await?;
    warn!(
        attempt = job.pay_attempts + 1,
        "order proven unpaid; paying again"
    );
    let mut next = job.clone();
    next.pay_attempts += 1;
    next.pay_started_at = Some(now);
    pay(w, &next, lease).await
}
