//! The pay step (docs/design.md, rules P1 and P4).
//!
//! A row claimed from `pending` already carries its committed pay intent (the claim wrote it
//! under the row lock, in the database's time). This step checks the row's data, sends
//! `pay.do` once, outside any transaction and without waiting on the query rate limiter, and
//! records the answer with one fenced write. What comes after an unclear answer is the order
//! query (`query.rs`), never another `pay.do`.

use tracing::{info, Instrument};

use super::failpoint::Point;
use super::{Inner, Step, StepError};
use crate::atrip::{PayAnswer, PayRequest};
use crate::card::CreditCard;
use crate::domain::PaymentMethod;
use crate::jobs::{CardJson, CardSummary, ClaimedJob, Said};
use crate::machine::{self, Event, NotSentReason};
use crate::sealed::SealError;

/// Pays the row whose intent this step holds; returns a note for the report.
pub(super) async fn step(w: &Inner, step: &mut Step) -> Result<String, StepError> {
    w.hooks.at(Point::AfterClaim).await?;
    let checked = match too_late(w, &step.job, step.now()).await {
        Some(why) => Err(NotSentReason::BadInput(why)),
        None => prepare(w, &step.job, step.now()),
    };
    let card = match checked {
        Ok(card) => card,
        Err(reason) => {
            let next = w
                .conclude(step, Event::NotSent(&reason), Said::not_sent(&reason))
                .await?;
            step.intent_open = false;
            w.intent_closed(step.job.id, step.job.lease_token);
            return Ok(format!("not sent: {next:?}"));
        }
    };
    // Rule P1b: the intent must be durable where a failover would find it before its pay.do
    // may leave; if it is not (within worker.replication_wait_ms), the row goes back unsent.
    w.hooks.at(Point::BeforeGate).await?;
    if let Err(why) = w.gate.confirm(step.lease.server()).await {
        let why = format!(
            "the pay intent is not yet durable where a failover would find it ({why}); nothing was sent"
        );
        // Due again once a standby may have caught up, not at once: the next try would meet
        // the same lag.
        w.give_back(step, &why, w.settings.replication_wait())
            .await?;
        step.intent_open = false;
        return Ok(why);
    }
    // The last checks before the one call that cannot be taken back. Nothing waits between
    // here and the send: pay.do is not rate-limited (rule P1).
    if let Some(why) = w.give_back_if_needed(step, w.atrip.pay_timeout()).await? {
        step.intent_open = false;
        return Ok(why);
    }
    let method = PaymentMethod::from_code(i64::from(step.job.payment_method))
        .expect("prepare checked the method");
    let mut request = PayRequest::new(&step.job.order_no, method, card.as_ref());
    request.client_order_no = step.job.client_order_no.as_deref();
    w.hooks.at(Point::BeforePay).await?;
    w.hooks.before_pay(&step.job.order_no);
    info!(
        method = method.code(),
        attempt = step.job.pay_attempts,
        "sending pay.do"
    );
    // From here the pay.do may leave: a panic no longer counts the intent as not sent, and
    // this process never sends another for the order by itself (rule P1d).
    w.sent_here.record(&step.job.order_no);
    w.intent_closed(step.job.id, step.job.lease_token);
    let sent_at = std::time::Instant::now();
    let span = tracing::info_span!(
        "pay.do",
        order_no = %step.job.order_no,
        attempt = step.job.pay_attempts,
        method = method.code(),
        status = tracing::field::Empty,
        answer = tracing::field::Empty,
    );
    let crate::atrip::Answered { answer, request_id } = w
        .atrip
        .pay_answered(&request)
        .instrument(span.clone())
        .await;
    span.record("answer", answer.class_name());
    if let Some(status) = answer.status() {
        span.record("status", status);
    }
    if answer.status().is_some() {
        w.pay_round_trip.observe(sent_at.elapsed());
    }
    step.pay_sent = !matches!(answer, PayAnswer::NotSent { .. });
    step.intent_open = false;
    // Said before anything is written, so that the log keeps it whatever happens next.
    info!(
        answer = answer.class_name(),
        status = answer.status(),
        "pay.do answered"
    );
    if let Some(evidence) = machine::evidence_in(Event::Pay(&answer)) {
        w.saw(step, evidence);
    }
    crate::metrics::global().pay_outcome(answer.class_name());
    w.hooks.at(Point::AfterAnswer).await?;
    if let PayAnswer::Unauthorized { status, .. } = &answer {
        if w.refused_for_this_order_alone(*status).await {
            let event = Event::OutOfScope {
                status: *status,
                on_pay: true,
            };
            let said = Said::pay(&answer).with_request_id(request_id.as_deref());
            w.conclude(step, event, said).await?;
            return Ok(format!("{answer:?}: this order alone"));
        }
    }
    let said = Said::pay(&answer).with_request_id(request_id.as_deref());
    w.conclude(step, Event::Pay(&answer), said).await?;
    Ok(format!("{answer:?}"))
}

/// Why a row claimed from `pending` is not sent at all (rule S3): paying its method is paused
/// (only a row whose deadline has passed is claimed then), or its deadline will have passed
/// before a `pay.do` could be answered (this worker's recent `pay.do` round trip). The reason
/// says since when the order was due and the backlog it waited behind. `now` is the
/// database's time.
async fn too_late(
    w: &Inner,
    job: &ClaimedJob,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let deadline = job.pay_deadline;
    if job.defect.is_some() {
        return None;
    }
    // Only a row whose deadline has passed is claimed while its method is paused. The claim's
    // statement and `ticketing_due()` read the pauses at moments a little apart, so a resume
    // committed while the claim ran can show a pause on a row chosen as payable: that row is
    // paid as usual.
    if let (Some(paused), Some(deadline)) = (&job.paused, deadline.filter(|d| *d <= now)) {
        return Some(format!(
            "its payment deadline {deadline} passed while paying was paused ({paused}); nothing was sent"
        ));
    }
    // Never more than the pay.do's own timeout: a call ends within it, whatever the estimate.
    let round_trip = w
        .pay_round_trip
        .estimate()
        .min(chrono::Duration::from_std(w.atrip.pay_timeout()).unwrap_or(chrono::Duration::MAX));
    let deadline = deadline.filter(|d| *d <= now + round_trip)?;
    let when = if deadline <= now {
        format!("the payment deadline {deadline} passed before payment")
    } else {
        format!(
            "the payment deadline {deadline} would pass before a pay.do could be answered (this worker's pay.do are answered within about {} ms)",
            round_trip.num_milliseconds()
        )
    };
    if job.run_at > now {
        return Some(format!(
            "{when}; nothing was sent. Its run_at {} (not to be paid before) was after its deadline",
            job.run_at
        ));
    }
    let waited = (now - job.run_at).num_milliseconds().max(0);
    let backlog = match w.store.due_payments(BACKLOG_CAP).await {
        Ok(n) if n >= BACKLOG_CAP => format!("over {} orders", BACKLOG_CAP - 1),
        Ok(n) => format!("{n} orders"),
        Err(_) => "an unknown number of orders (the count failed)".to_owned(),
    };
    Some(format!(
        "{when}; nothing was sent. The order was due from {} and waited {}.{:03} s; {backlog} were still due and unclaimed when it was claimed",
        job.run_at,
        waited / 1000,
        waited % 1000
    ))
}

/// The backlog in a missed deadline's reason is counted up to this (a bounded index read: a
/// mass of missed deadlines in a backlog of millions must not become a storm of counts).
const BACKLOG_CAP: i64 = 1_001;

/// The card to send (if the method takes one), or why the row cannot be paid as it is. `now`
/// is the database's time.
fn prepare(
    w: &Inner,
    job: &ClaimedJob,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<CreditCard>, NotSentReason> {
    let bad = |why: String| NotSentReason::BadInput(why);
    if let Some(defect) = &job.defect {
        return Err(bad(defect.clone()));
    }
    let Some(method) = PaymentMethod::from_code(i64::from(job.payment_method)) else {
        return Err(bad(format!(
            "payment_method {} is not one of 1, 3, 4, 5",
            job.payment_method
        )));
    };
    if !method.needs_card() {
        return Ok(None);
    }
    let raw = match &job.card_sealed {
        None => job.card.clone(),
        Some(sealed) => {
            let opened = match &w.card_key {
                Some(key) => key.open(&job.order_no, &sealed.0),
                None => Err(SealError::NoKey),
            };
            match opened {
                Ok(card) => Some(CardJson(card)),
                Err(e @ (SealError::WrongOrder { .. } | SealError::Malformed)) => {
                    return Err(bad(e.to_string()))
                }
                // The data may be fine and this worker's key wrong or missing: a person
                // looks, and the sealed card stays for the retry.
                Err(e) => return Err(NotSentReason::CardUnreadable(e.to_string())),
            }
        }
    };
    let Some(raw) = raw else {
        return Err(bad(format!(
            "payment method {} needs card data and the row has none (card data is erased once a payment resolves; a retry needs fresh card data)",
            method.code()
        )));
    };
    CreditCard::from_json(&raw.0, method, now)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// The brand and last four digits of the row's card, kept when the card is erased.
pub(super) fn card_summary(w: &Inner, job: &ClaimedJob) -> CardSummary {
    let card = match (&job.card, &job.card_sealed, &w.card_key) {
        (Some(raw), _, _) => Some(raw.0.clone()),
        (None, Some(sealed), Some(key)) => key.open(&job.order_no, &sealed.0).ok(),
        _ => None,
    };
    let (brand, last4) = card.map(|c| crate::card::summary(&c)).unwrap_or_default();
    CardSummary { brand, last4 }
}
