//! The transition table: one function from (state, what ATRIP answered, the row, the bounds) to
//! what happens next. Each arm cites its rule in `docs/design.md`; `src/machine/rule_tests.rs` has one
//! test per arm.
//!
//! The arrows, by who draws them:
//! - `pending → paying` is the claim's, before any answer (rule P1): taking a `pending` row
//!   records its pay intent in the same statement ([`super::claim::on_claim`]);
//! - `paying → ticketing | failed | needs_review | paying` and `ticketing → ticketed | failed
//!   | needs_review | ticketing` are this table's ([`next`]), from ATRIP's answers; `paying →
//!   paying` with a new intent ([`Next::NewIntent`]) is an unpaid answer to a row a permit is
//!   left for (rules P5, P7);
//! - `failed | needs_review → paying | ticketing` and `pending | needs_review → cancelled` are
//!   the operator's ([`super::operator`], rules P7, P8).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::facts::{Bounds, Facts};
use super::reasons::{Evidence, FailReason, PayOutcome, ReviewReason, Waiting};
use crate::atrip::codes::OrderStatus;
use crate::atrip::{OrderView, PayAnswer, QueryAnswer};
use crate::domain::{State, TicketSet};

/// What the step met.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The pay step refused to send (the row's own data), rule P1a.
    NotSent(&'a NotSentReason),
    /// The answer to our `pay.do`.
    Pay(&'a PayAnswer),
    /// The answer to an order query.
    Query(&'a QueryAnswer),
    /// ATRIP refused this order with 900/902 (to `pay.do` when `on_pay`) while its start
    /// probe shows it takes our credentials: the order alone is out of our scope (rule P4f).
    OutOfScope { status: i64, on_pay: bool },
}

impl Event<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::NotSent(_) => "a refusal before sending",
            Event::Pay(_) => "a pay.do answer",
            Event::Query(_) => "an order query answer",
            Event::OutOfScope { .. } => "a refusal of this order alone",
        }
    }
}

/// Why the pay step did not send `pay.do` for a row.
#[derive(Debug, Clone, PartialEq)]
pub enum NotSentReason {
    /// The row's data can never be paid as it is (method, deadline, card): the row fails.
    BadInput(String),
    /// Sealed card data this worker cannot open: a person gives the right key.
    CardUnreadable(String),
}

/// What the worker does next with the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// An answer showed the order paid: follow it (→ `ticketing`).
    Paid {
        evidence: Evidence,
        poll_in: Duration,
    },
    /// Still `paying`: ask ATRIP again later.
    StillPaying {
        why: Waiting,
        query_in: Duration,
    },
    /// The order shows unpaid and a permit is left (the previous attempt provably never left,
    /// or an operator granted one): record a new intent, then send `pay.do`.
    NewIntent,
    /// A complete ticket set, seen once: confirm it on the next answer.
    SeenOnce {
        tickets: TicketSet,
        pnr: String,
        poll_in: Duration,
    },
    /// The same complete ticket set twice: done (→ `ticketed`).
    Ticketed {
        tickets: TicketSet,
        pnr: String,
    },
    /// Still `ticketing`: follow on.
    Following {
        why: Waiting,
        poll_in: Duration,
    },
    Failed(FailReason),
    Review(ReviewReason),
}

impl Next {
    /// The state this leads to.
    pub fn state(&self) -> State {
        match self {
            Next::Paid { .. } | Next::SeenOnce { .. } | Next::Following { .. } => State::Ticketing,
            Next::StillPaying { .. } | Next::NewIntent => State::Paying,
            Next::Ticketed { .. } => State::Ticketed,
            Next::Failed(_) => State::Failed,
            Next::Review(_) => State::NeedsReview,
        }
    }

    /// Whether this answer told us nothing (it counts towards `max_error_streak`).
    pub fn is_unclear(&self) -> bool {
        match self {
            Next::StillPaying { why, .. } | Next::Following { why, .. } => why.is_unclear(),
            _ => false,
        }
    }
}

/// The table. `(state, event)` → next.
pub fn next(event: Event<'_>, f: &Facts, b: &Bounds<'_>) -> Next {
    use State::{Paying, Ticketing};
    match (f.state, event) {
        (Paying, Event::NotSent(NotSentReason::BadInput(why))) => {
            Next::Failed(FailReason::NotSent(why.clone())) // P1a, S3, S4
        }
        (Paying, Event::NotSent(NotSentReason::CardUnreadable(why))) => {
            Next::Review(ReviewReason::CardUnreadable(why.clone())) // P1a
        }
        (Paying, Event::Pay(answer)) => bounded_paying(pay_answered(answer, b), f, b),
        (Paying, Event::Query(answer)) => bounded_paying(recover(answer, f, b), f, b),
        (Ticketing, Event::Query(answer)) => bounded_ticketing(follow(answer, f, b), f, b),
        (Paying | Ticketing, Event::OutOfScope { status, on_pay }) => {
            Next::Review(ReviewReason::OutOfScope { status, on_pay }) // P4f
        }
        (state, event) => Next::Review(ReviewReason::NoSuchTransition {
            state: state.to_string(),
            event: event.kind(),
        }),
    }
}

/// The evidence of payment an event carries (rule P3): an accepted `pay.do` (0, or 615 with
/// the airline PNR pending), "already paid" (404), or an order query showing the order paid.
/// What [`next`] records as `paid_at`, and what the worker holds on to until it is written
/// (rule P3a).
pub fn evidence_in(event: Event<'_>) -> Option<Evidence> {
    match event {
        Event::Pay(PayAnswer::Accepted { status: 615, .. }) => Some(Evidence::PnrPending),
        Event::Pay(PayAnswer::Accepted { .. }) => Some(Evidence::PayAccepted),
        Event::Pay(PayAnswer::NeverPayAgain { status: 404, .. }) => Some(Evidence::AlreadyPaid),
        Event::Query(QueryAnswer::Order(v)) if v.shows_paid() => Some(Evidence::QueryPaid),
        _ => None,
    }
}

/// Rule P4: the answer to our `pay.do`.
fn pay_answered(answer: &PayAnswer, b: &Bounds<'_>) -> Next {
    let still = |why| Next::StillPaying {
        why,
        query_in: b.recheck(),
    };
    if let Some(evidence) = evidence_in(Event::Pay(answer)) {
        return Next::Paid {
            evidence, // P4a (0, 615), P4b (404)
            poll_in: b.first_poll(),
        };
    }
    match answer {
        PayAnswer::NeverPayAgain { status, .. } => {
            still(Waiting::NeverPayAgain { status: *status }) // P4c
        }
        PayAnswer::Refused { status, msg } => Next::Failed(FailReason::PayRefused {
            status: *status, // P4d
            msg: msg.clone(),
        }),
        PayAnswer::PaymentError { status, .. } => {
            still(Waiting::PaymentError { status: *status }) // P4e
        }
        PayAnswer::Unauthorized { status, .. } => Next::StillPaying {
            why: Waiting::CredentialsRefused { status: *status }, // P4f
            query_in: b.credentials_pause(),
        },
        PayAnswer::NotSent { reason } => still(Waiting::PayNotSent(reason.clone())), // P4g
        PayAnswer::OutcomeUnknown { reason, .. } => still(Waiting::PayUnclear(reason.clone())), // P4h
        // evidence_in took every accepted answer above.
        PayAnswer::Accepted { .. } => Next::Review(ReviewReason::NoSuchTransition {
            state: State::Paying.to_string(),
            event: "an accepted pay.do without evidence",
        }),
    }
}

/// Rule P5: a `paying` row is recovered by the order query, never by `pay.do`.
fn recover(answer: &QueryAnswer, f: &Facts, b: &Bounds<'_>) -> Next {
    match answer {
        QueryAnswer::Order(v) if v.shows_paid() => Next::Paid {
            evidence: Evidence::QueryPaid, // P5a (evidence_in)
            poll_in: b.first_poll(),
        },
        QueryAnswer::Order(v) if v.order_status == OrderStatus::Cancelled => {
            Next::Failed(cancelled(v, f.paid)) // P5b
        }
        QueryAnswer::Order(v) if v.order_status == OrderStatus::Unpaid => unpaid(v, f, b), // P5c, P5d
        QueryAnswer::Order(v) => unclear_paying(
            f,
            b,
            format!("unknown orderStatus {:?}", v.order_status.wire()), // P5e
        ),
        other => Next::StillPaying {
            why: Waiting::Unclear(describe(other)), // P5e (800/703 included)
            query_in: after_unclear(other, f, b),
        },
    }
}

/// Rules P5c and P5d: the order shows unpaid.
fn unpaid(v: &OrderView, f: &Facts, b: &Bounds<'_>) -> Next {
    let deadline = earliest(f.pay_deadline, v.pay_deadline);
    if f.may_send() {
        if v.payment_attempted == Some(true) {
            return Next::Review(ReviewReason::PaymentAttempted); // P5c
        }
        if let Some(deadline) = deadline.filter(|d| *d <= f.now) {
            return Next::Failed(FailReason::UnpaidPastDeadline { deadline }); // P5c
        }
        if f.pay_not_sent >= b.max_pay_attempts() {
            return Next::Review(ReviewReason::TooManyAttempts {
                attempts: f.pay_not_sent, // P5c
            });
        }
        if let Some(paused) = &f.paying_paused {
            // S4: asked again with backoff; a resume makes the row due at once.
            return Next::StillPaying {
                why: Waiting::PayingPaused(paused.clone()), // S4
                query_in: b.backoff(f.poll_attempts),
            };
        }
        if !f.intents_durable {
            return Next::StillPaying {
                why: Waiting::IntentsNotDurable, // P1b
                query_in: b.recheck().max(Duration::from_secs(1)),
            };
        }
        return Next::NewIntent; // P5c
    }
    match f.last_pay_outcome {
        Some(PayOutcome::PaymentError) => Next::Review(ReviewReason::PaymentError {
            deadline, // P6
            now: f.now,
            balance: None,
        }),
        Some(PayOutcome::Unauthorized) => Next::Review(ReviewReason::CredentialsRefused), // P4f
        _ => {
            let settled = f.in_phase() >= b.unpaid_settle();
            if settled || too_close(deadline, f.now, b) {
                return Next::Review(ReviewReason::UnpaidAfterSend {
                    sent_at: f.pay_started_at, // P5d
                    deadline,
                    now: f.now,
                });
            }
            let until_settled = b.unpaid_settle().saturating_sub(f.in_phase());
            Next::StillPaying {
                why: Waiting::UnpaidAfterSend {
                    sent_at: f.pay_started_at, // P5d
                },
                query_in: b.backoff(f.poll_attempts).min(until_settled) + b.recheck(),
            }
        }
    }
}

fn unclear_paying(f: &Facts, b: &Bounds<'_>, why: String) -> Next {
    Next::StillPaying {
        why: Waiting::Unclear(why),
        query_in: b.backoff(f.error_streak),
    }
}

/// The backoff after an unclear answer, never shorter than ATRIP's own `retryAfter`.
fn after_unclear(answer: &QueryAnswer, f: &Facts, b: &Bounds<'_>) -> Duration {
    match answer {
        QueryAnswer::RateLimited { retry_after } => b.backoff(f.error_streak).max(*retry_after),
        _ => b.backoff(f.error_streak),
    }
}

/// Rule P5e: bounds on a row that stays `paying` on unclear answers.
fn bounded_paying(next: Next, f: &Facts, b: &Bounds<'_>) -> Next {
    let Next::StillPaying { why, .. } = &next else {
        return next;
    };
    if !why.is_unclear() {
        return next;
    }
    let streak = f.error_streak + 1;
    if let Some(deadline) = f.pay_deadline.filter(|d| too_close(Some(*d), f.now, b)) {
        return Next::Review(ReviewReason::DeadlineNear {
            deadline,
            now: f.now,
            last: why.to_string(),
        });
    }
    if streak >= b.max_error_streak() || f.in_phase() >= b.paying_deadline() {
        return Next::Review(ReviewReason::Unclear {
            answers: streak,
            since: f.phase_started_at,
            last: why.to_string(),
        });
    }
    next
}

/// Rule F: a paid order is followed until its tickets are final.
fn follow(answer: &QueryAnswer, f: &Facts, b: &Bounds<'_>) -> Next {
    let poll_in = b.backoff(f.poll_attempts);
    // Rule F1b: the order's passenger count, when the row knows it (enqueued, or the first
    // answer that listed them); an answer listing fewer is not final.
    let passengers = f.passengers;
    match answer {
        // ATRIP's own client refuses an answer without a ticketStatus as invalid: whether
        // tickets were issued is unclear, and unclear answers count toward a person (F4).
        QueryAnswer::Order(v)
            if v.ticket_status.is_none() && v.order_status != OrderStatus::Cancelled =>
        {
            Next::Following {
                why: Waiting::Unclear(format!(
                    "orderStatus {:?} without a ticketStatus",
                    v.order_status.wire()
                )),
                poll_in: b.backoff(f.error_streak),
            }
        }
        QueryAnswer::Order(v) => match v.final_tickets(passengers) {
            Some((tickets, pnr)) => {
                let seen = serde_json::to_value(tickets).ok();
                if seen.is_some() && f.tickets_seen == seen {
                    Next::Ticketed {
                        tickets: tickets.clone(), // F1
                        pnr,
                    }
                } else {
                    Next::SeenOnce {
                        tickets: tickets.clone(), // F2 (the wait gives its slot to a payment: S2)
                        pnr,
                        poll_in: b.first_poll(),
                    }
                }
            }
            None if v.order_status == OrderStatus::Cancelled => {
                Next::Failed(cancelled(v, true)) // F3
            }
            None if v.tickets_complete(None) && passengers.is_some_and(|n| v.tickets.len() < n) => {
                Next::Following {
                    why: Waiting::PassengersLeftOut {
                        listed: v.tickets.len(),
                        passengers: passengers.unwrap_or_default(),
                    },
                    poll_in,
                }
            }
            None if v.tickets_complete(passengers) => Next::Following {
                why: Waiting::TicketsWithoutPnr, // F4
                poll_in,
            },
            None => match &v.order_status {
                OrderStatus::Unknown(s) => Next::Following {
                    why: Waiting::Unclear(format!("unknown orderStatus {s:?}")), // F4
                    poll_in: b.backoff(f.error_streak),
                },
                // Ticketing, ticketed without every ticket, or a lagging "unpaid".
                status => Next::Following {
                    why: Waiting::Ticketing {
                        order_status: status.wire().to_owned(), // F4
                        ticketed: v
                            .tickets
                            .iter()
                            .filter(|p| !p.ticket_numbers.is_empty())
                            .count(),
                        passengers: v.tickets.len().max(passengers.unwrap_or(0)),
                    },
                    poll_in,
                },
            },
        },
        other => Next::Following {
            why: Waiting::Unclear(describe(other)), // F4 (800/703 included: the order is paid)
            poll_in: after_unclear(other, f, b),
        },
    }
}

/// Rule F5: bounds on a row that stays `ticketing`.
fn bounded_ticketing(next: Next, f: &Facts, b: &Bounds<'_>) -> Next {
    let last = match &next {
        Next::Following { why, .. } => why.to_string(),
        Next::SeenOnce { .. } => "complete tickets seen once".to_owned(),
        _ => return next,
    };
    let deadline = chrono::Duration::from_std(b.ticketing_deadline())
        .ok()
        .and_then(|d| f.phase_started_at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if f.now > deadline {
        return Next::Review(ReviewReason::TicketingDeadline { deadline, last });
    }
    if next.is_unclear() && f.error_streak + 1 >= b.max_error_streak() {
        return Next::Review(ReviewReason::Unclear {
            answers: f.error_streak + 1,
            since: f.phase_started_at,
            last,
        });
    }
    next
}

fn cancelled(v: &OrderView, paid: bool) -> FailReason {
    FailReason::Cancelled {
        error_code: v.error_code.clone(),
        error_message: v.error_message.clone(),
        paid,
    }
}

/// Whether less than the review margin is left before the payment deadline.
fn too_close(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>, b: &Bounds<'_>) -> bool {
    let margin = chrono::Duration::from_std(b.review_margin()).unwrap_or_default();
    // Checked: a deadline from ATRIP may be near the calendar's ends; one that cannot have the
    // margin taken off is as good as past (rule W5: no answer may panic a step).
    deadline.is_some_and(|d| {
        d.checked_sub_signed(margin)
            .is_none_or(|start| start <= now)
    })
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A query answer that says nothing about the order, in words.
fn describe(answer: &QueryAnswer) -> String {
    match answer {
        QueryAnswer::Retry { reason } => reason.clone(),
        QueryAnswer::RateLimited { retry_after } => format!(
            "ATRIP rate limit; retrying after {} ms",
            retry_after.as_millis()
        ),
        QueryAnswer::Unauthorized { status, .. } => {
            format!("ATRIP refused our credentials (status {status})")
        }
        QueryAnswer::Invalid { reason, .. } => reason.clone(),
        QueryAnswer::NotFound { status, .. } => format!(
            "ATRIP answered {status} (no such order); it may lag behind a payment, asking again"
        ),
        QueryAnswer::Order(_) => "an order answer".to_owned(),
    }
}
