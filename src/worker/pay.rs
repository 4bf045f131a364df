//! The pay step (docs/design.md, rules P1 and P4).
//!
//! A row claimed from `pending` already carries its committed pay intent (the claim wrote it
//! under the row lock, in the database's time). This step checks the row's data, sends
//! `pay.do` once, outside any transaction and without waiting on the query rate limiter, and
//! records the answer with one fenced write. What comes after an unclear answer is the order
//! query (`query.rs`), never another `pay.do`.

use tracing::info;

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
    let card = match prepare(w, &step.job, step.now()) {
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
    // From here the pay.do may leave: a panic no longer counts the intent as not sent.
    w.intent_closed(step.job.id, step.job.lease_token);
    let answer = w.atrip.pay(&request).await;
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
            w.conclude(step, event, Said::pay(&answer)).await?;
            return Ok(format!("{answer:?}: this order alone"));
        }
    }
    w.conclude(step, Event::Pay(&answer), Said::pay(&answer))
        .await?;
    Ok(format!("{answer:?}"))
}

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
    if let Some(deadline) = job.pay_deadline.filter(|d| *d <= now) {
        return Err(bad(format!(
            "the payment deadline {deadline} passed before payment"
        )));
    }
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
