//! The one place where a transition becomes columns: [`Write::step`] maps a [`Next`] (and what
//! ATRIP said) to the fields of one fenced UPDATE, which [`super::JobStore::apply`] runs. The
//! other constructors are the writes that are not answers to ATRIP: a new intent, giving a row
//! back, and a refused write reported on the row.

use std::time::Duration;

use serde_json::{json, Value};

use crate::atrip::{PayAnswer, QueryAnswer};
use crate::domain::{EventKind, State};
use crate::machine::{Evidence, Facts, Next, NotSentReason, PayOutcome};

/// What ATRIP said (or why nothing was sent), as the row and the event keep it. Never a
/// request body, never card data.
#[derive(Debug, Clone)]
pub struct Said {
    kind: EventKind,
    pay_outcome: Option<PayOutcome>,
    /// This intent provably never reached ATRIP.
    not_sent: bool,
    /// Order queries made.
    polls: i32,
    atrip_status: Option<i64>,
    atrip_message: Option<String>,
    order_status: Option<String>,
    atrip_pnr: Option<String>,
    /// How many passengers the answer listed (rule F1b: kept if the row has no count yet).
    passengers: Option<i16>,
    detail: Value,
}

impl Said {
    /// The pay step refused to send.
    pub fn not_sent(reason: &NotSentReason) -> Said {
        let why = match reason {
            NotSentReason::BadInput(why) | NotSentReason::CardUnreadable(why) => why,
        };
        Said {
            kind: EventKind::PayNotSent,
            pay_outcome: Some(PayOutcome::NotSent),
            not_sent: true,
            polls: 0,
            atrip_status: None,
            atrip_message: None,
            order_status: None,
            atrip_pnr: None,
            passengers: None,
            detail: json!({ "reason": why, "pay_sent": false }),
        }
    }

    /// The answer to a `pay.do`.
    pub fn pay(answer: &PayAnswer) -> Said {
        let (msg, reason, pnr) = match answer {
            PayAnswer::Accepted { msg, pnr_code, .. } => (msg.clone(), None, pnr_code.clone()),
            PayAnswer::NeverPayAgain { msg, .. }
            | PayAnswer::Refused { msg, .. }
            | PayAnswer::Unauthorized { msg, .. }
            | PayAnswer::PaymentError { msg, .. } => (msg.clone(), None, None),
            PayAnswer::OutcomeUnknown { reason, .. } | PayAnswer::NotSent { reason } => {
                (None, Some(reason.clone()), None)
            }
        };
        let outcome = PayOutcome::parse(answer.class_name());
        Said {
            kind: EventKind::PayAnswered,
            pay_outcome: outcome,
            not_sent: matches!(answer, PayAnswer::NotSent { .. }),
            polls: 0,
            atrip_status: answer.status(),
            atrip_message: msg.clone(),
            order_status: None,
            atrip_pnr: pnr,
            passengers: None,
            detail: compact(
                json!({ "answer": answer.class_name(), "status": answer.status(),
                                    "msg": msg, "reason": reason }),
            ),
        }
    }

    /// The answer to an order query.
    pub fn query(answer: &QueryAnswer) -> Said {
        let mut said = Said {
            kind: EventKind::QueryAnswered,
            pay_outcome: None,
            not_sent: false,
            polls: 1,
            atrip_status: None,
            atrip_message: None,
            order_status: None,
            atrip_pnr: None,
            passengers: None,
            detail: Value::Null,
        };
        said.detail = compact(match answer {
            QueryAnswer::Order(v) => {
                said.atrip_status = Some(0);
                said.atrip_message = v.msg.clone();
                said.order_status = Some(v.order_status.wire().to_owned());
                said.atrip_pnr = v.pnr_code.clone();
                said.passengers = i16::try_from(v.tickets.len()).ok().filter(|n| *n > 0);
                let ticketed = v
                    .tickets
                    .iter()
                    .filter(|p| !p.ticket_numbers.is_empty())
                    .count();
                json!({
                    "answer": "order", "orderStatus": v.order_status.wire(),
                    "ticketStatus": v.ticket_status, "errorCode": v.error_code,
                    "paymentAttempted": v.payment_attempted,
                    // Passengers with a ticket number / passengers.
                    "tickets": format!("{ticketed}/{}", v.tickets.len()),
                })
            }
            QueryAnswer::NotFound { status, msg } => {
                said.atrip_status = Some(*status);
                said.atrip_message = msg.clone();
                json!({ "answer": "not_found", "status": status, "msg": msg })
            }
            QueryAnswer::Retry { reason } => json!({ "answer": "retry", "reason": reason }),
            QueryAnswer::RateLimited { retry_after } => {
                said.atrip_status = Some(crate::atrip::codes::RATE_LIMITED);
                json!({ "answer": "rate_limited", "retry_after_ms": retry_after.as_millis() as u64 })
            }
            QueryAnswer::Unauthorized { status, msg } => {
                said.atrip_status = Some(*status);
                said.atrip_message = msg.clone();
                json!({ "answer": "unauthorized", "status": status })
            }
            QueryAnswer::Invalid { status, reason } => {
                said.atrip_status = *status;
                json!({ "answer": "invalid", "status": status, "reason": reason })
            }
        });
        said
    }
}

impl Said {
    /// The row's open intent is also recorded as never sent (given back, unsent, by a worker of
    /// the previous release).
    pub fn with_intent_not_sent(mut self) -> Said {
        self.not_sent = true;
        self.pay_outcome = Some(PayOutcome::NotSent);
        if let Value::Object(detail) = &mut self.detail {
            detail.insert(
                "intent".into(),
                json!("given back unsent by a worker of the previous release"),
            );
        }
        self
    }

    /// ATRIP's request id for this answer (a response header or the body's `requestId` /
    /// `uuid`), kept with the event for an escalation to ATRIP.
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Said {
        if let (Some(id), Value::Object(detail)) = (request_id, &mut self.detail) {
            detail.insert("request_id".into(), json!(id));
        }
        self
    }

    /// This answer confirming an `earlier` one of the same step (complete tickets asked for a
    /// second time): both queries counted, both answers in the one event.
    pub fn after(mut self, earlier: Said) -> Said {
        self.polls += earlier.polls;
        self.not_sent |= earlier.not_sent;
        self.pay_outcome = self.pay_outcome.or(earlier.pay_outcome);
        self.passengers = earlier.passengers.or(self.passengers);
        let same = earlier.detail == self.detail;
        if let Value::Object(detail) = &mut self.detail {
            if same {
                // The same answer twice (complete tickets confirmed): said once, counted twice.
                detail.insert("seen".into(), json!(2));
            } else {
                detail.insert("earlier".into(), earlier.detail);
            }
        }
        self
    }
}

/// The event detail without its null fields: less written per event, nothing lost.
fn compact(detail: Value) -> Value {
    match detail {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// Brand and last four digits of the row's card, kept when the card is erased.
#[derive(Debug, Clone, Default)]
pub struct CardSummary {
    pub brand: Option<String>,
    pub last4: Option<String>,
}

/// What a [`Write`] does to the protocol's columns (see [`Write::effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Effect {
    pub to: State,
    /// Ends the lease.
    pub release: bool,
    /// `pay_attempts + 1`.
    pub intent: bool,
    /// `pay_not_sent + 1`.
    pub not_sent: bool,
    pub pay_outcome: Option<PayOutcome>,
    /// `paid_at` (if still null) and no permit left.
    pub evidence: Option<Evidence>,
    pub erase_card: bool,
    /// `error_streak + 1` (else 0, but a give-back keeps it).
    pub unclear: bool,
    /// A give-back (event `released`): no answer, the streak and the tickets seen stay.
    pub give_back: bool,
    /// Sets `tickets_seen` (else it is cleared, unless a give-back).
    pub tickets_seen: bool,
    /// `phase_started_at = now`: the phase's bounds count afresh.
    pub new_phase: bool,
}

/// One fenced write of a claimed row. Private fields: only the constructors below make one, so
/// only the combinations they make exist.
#[derive(Debug, Clone)]
pub struct Write {
    pub(super) kind: EventKind,
    pub(super) to: State,
    /// `run_at = ticketing_now() + due_in`; `None` keeps `run_at`.
    pub(super) due_in: Option<Duration>,
    /// Ends this worker's lease (every step's last write does; a new intent does not).
    pub(super) release: bool,
    /// Records a new intent: `pay_attempts + 1`, `pay_started_at`, a new phase.
    pub(super) intent: bool,
    /// This intent provably never reached ATRIP: `pay_not_sent + 1`.
    pub(super) not_sent: bool,
    pub(super) pay_outcome: Option<PayOutcome>,
    /// A new phase begins (`phase_started_at`): deadlines count from now.
    pub(super) new_phase: bool,
    /// An answer showed the order paid: `paid_at`, `paid_evidence`, and no permit left.
    pub(super) evidence: Option<Evidence>,
    pub(super) polls: i32,
    pub(super) error: Option<String>,
    pub(super) unclear: bool,
    pub(super) atrip_status: Option<i64>,
    pub(super) atrip_message: Option<String>,
    pub(super) order_status: Option<String>,
    pub(super) atrip_pnr: Option<String>,
    /// The passenger count an answer listed: written only where the row has none (rule F1b).
    pub(super) passengers: Option<i16>,
    pub(super) pnr: Option<String>,
    pub(super) tickets: Option<Value>,
    pub(super) tickets_seen: Option<Value>,
    pub(super) erase_card: bool,
    pub(super) card: CardSummary,
    pub(super) detail: Value,
}

impl Write {
    fn base(kind: EventKind, to: State, detail: Value) -> Write {
        Write {
            kind,
            to,
            due_in: None,
            release: true,
            intent: false,
            not_sent: false,
            pay_outcome: None,
            new_phase: false,
            evidence: None,
            polls: 0,
            error: None,
            unclear: false,
            atrip_status: None,
            atrip_message: None,
            order_status: None,
            atrip_pnr: None,
            passengers: None,
            pnr: None,
            tickets: None,
            tickets_seen: None,
            erase_card: false,
            card: CardSummary::default(),
            detail,
        }
    }

    /// The state this write leads to.
    pub fn to(&self) -> State {
        self.to
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The evidence of payment this write records, if any.
    pub fn evidence(&self) -> Option<Evidence> {
        self.evidence
    }

    /// What this write does to the columns the pay-once protocol reads, as `apply`'s UPDATE
    /// does it; the model check's database (`tests/model`) applies this.
    pub fn effect(&self) -> Effect {
        Effect {
            to: self.to,
            release: self.release,
            intent: self.intent,
            not_sent: self.not_sent,
            pay_outcome: self.pay_outcome,
            evidence: self.evidence,
            erase_card: self.erase_card,
            unclear: self.unclear,
            give_back: self.kind == EventKind::Released,
            tickets_seen: self.tickets_seen.is_some(),
            new_phase: self.new_phase,
        }
    }

    /// The brand and last four digits this write keeps of the card.
    pub fn card_summary(&self) -> &CardSummary {
        &self.card
    }

    /// A step's result: the transition `next`, after ATRIP said `said`, on the row `facts`.
    pub fn step(next: &Next, said: Said, facts: &Facts, card: CardSummary) -> Write {
        let order_no = &facts.order_no;
        let mut w = Write::base(said.kind, next.state(), said.detail);
        w.pay_outcome = said.pay_outcome;
        w.not_sent = said.not_sent;
        w.polls = said.polls;
        w.atrip_status = said.atrip_status;
        w.atrip_message = said.atrip_message;
        w.order_status = said.order_status;
        w.atrip_pnr = said.atrip_pnr;
        w.passengers = said.passengers;
        // A review after a run of unclear answers keeps counting them, so the row shows how
        // many there were.
        w.unclear = next.is_unclear()
            || matches!(
                next,
                Next::Review(
                    crate::machine::ReviewReason::Unclear { .. }
                        | crate::machine::ReviewReason::DeadlineNear { .. }
                )
            );
        // Pay requests that may have reached ATRIP once this write is in (rule P9).
        let sends = facts.sends() - i32::from(w.not_sent);
        let note = |why: &dyn std::fmt::Display| Some(format!("order {order_no}: {why}"));
        match next {
            Next::Paid { evidence, poll_in } => {
                w.evidence = Some(*evidence);
                w.new_phase = true;
                w.due_in = Some(*poll_in);
                w.erase_card = true;
            }
            Next::StillPaying { why, query_in } => {
                w.due_in = Some(*query_in);
                w.error = note(why);
                if let (crate::machine::Waiting::PayingPaused(paused), Value::Object(detail)) =
                    (why, &mut w.detail)
                {
                    // The event says why no intent followed the unpaid answer (rule S4).
                    detail.insert("paused".into(), json!(paused));
                }
            }
            Next::NewIntent => {
                // The query's answer and the new intent in one write, fenced, before the
                // pay.do leaves (rule P1); the lease stays ours for the send.
                w.kind = EventKind::PayIntent;
                w.intent = true;
                w.new_phase = true;
                w.release = false;
                w.detail = json!({
                    "answer": w.detail.take(),
                    "decision": "the order shows unpaid and a permit is left: new pay intent",
                    "pay_attempts": facts.pay_attempts + 1,
                });
            }
            Next::SeenOnce {
                tickets, poll_in, ..
            } => {
                w.due_in = Some(*poll_in);
                w.tickets_seen = serde_json::to_value(tickets).ok();
            }
            Next::Ticketed { tickets, pnr } => {
                w.pnr = Some(pnr.clone());
                w.tickets = serde_json::to_value(tickets).ok();
            }
            Next::Following { why, poll_in } => {
                w.due_in = Some(*poll_in);
                if why.is_unclear() {
                    // An unclear answer between two final ones does not break "seen twice".
                    w.tickets_seen = facts.tickets_seen.clone();
                }
                if !matches!(why, crate::machine::Waiting::Ticketing { .. }) {
                    w.error = note(why);
                }
            }
            Next::Failed(reason) => {
                w.error = note(reason);
                w.erase_card = true;
            }
            Next::Review(reason) => {
                w.error = note(reason);
                // Card data goes with any resolution once a pay.do may have reached ATRIP; a
                // card no pay.do was sent for stays, for the retry.
                w.erase_card = sends > 0;
            }
        }
        // Kept whether or not this write erases the card: a refused write's review may erase
        // it (rule W2), and the brand and last four go with the row.
        w.card = card;
        w
    }

    /// The same write, with the row due `after` from now rather than at once.
    pub fn due_after(mut self, after: Duration) -> Write {
        self.due_in = Some(after);
        self
    }

    /// Gives the row back before anything was sent for this step (shutdown, or too little
    /// lease left): due now, lease cleared, state unchanged. A `paying` row's open intent is
    /// recorded as never sent, so its permit is back.
    pub fn give_back(state: State, intent_open: bool, why: &str) -> Write {
        let mut w = Write::base(
            EventKind::Released,
            state,
            json!({ "reason": why, "pay_sent": false }),
        );
        w.due_in = Some(Duration::ZERO);
        w.not_sent = intent_open;
        if intent_open {
            w.pay_outcome = Some(PayOutcome::NotSent);
        }
        w
    }
}
