//! The worker's decisions, as the product makes them: every call here goes to the product's
//! own code (`machine::next`, `machine::evidence_in`, `Write::step`, `classify_pay`,
//! `classify_query`, `pay_failed`). Only the bytes on the wire and the row's columns are the
//! model's. The functions are pure, so their results are kept by input (parsing JSON for every
//! edge of a graph of a million states would cost minutes in a debug build).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use ticketing_tracker::atrip::answer::{classify_pay, classify_query};
use ticketing_tracker::atrip::client::{pay_failed, Reached};
use ticketing_tracker::atrip::{PayAnswer, QueryAnswer};
use ticketing_tracker::config::{Settings, WorkerSettings};
use ticketing_tracker::domain::State;
use ticketing_tracker::jobs::{CardSummary, Effect, Said, Write};
use ticketing_tracker::machine::{self, Bounds, Event, Facts, PayOutcome};

use crate::explore::Fx;

pub const ORDER_NO: &str = "TESTA20261204120000000";

/// What came back for a `pay.do`, as the worker's client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayWire {
    /// `{"status": 0, "orderNo": ...}`.
    Accepted,
    /// 404: the order is already paid (ATRIP's duplicate guard).
    AlreadyPaid,
    /// 403: a documented refusal, nothing charged.
    Refused,
    /// 411: payment error (balance or card gateway), nothing charged.
    PaymentError,
    /// HTTP 302 from something between us and ATRIP (never followed).
    Redirect,
    /// No HTTP answer; the connector failed before any byte left.
    ConnectFailed,
    /// No HTTP answer after the request may have left (timeout, reset, cut mid-body).
    Lost,
}

/// What came back for an order query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryWire {
    Unpaid,
    Paid,
    Ticketed,
    /// 800: no such order (ATRIP's order query may lag behind a payment).
    NotFound,
    /// No answer (timeout, reset, 5xx).
    Lost,
}

pub enum Wire {
    Pay(PayWire),
    Query(QueryWire),
}

/// The row's columns a decision reads, as the step has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snap {
    pub state: State,
    pub attempts: u8,
    pub not_sent: u8,
    pub permits: u8,
    pub paid: bool,
    pub last: Option<PayOutcome>,
    pub streak: u8,
    pub seen_once: bool,
    /// The phase has lasted past `unpaid_settle_s` (the database's time passed).
    pub aged: bool,
    pub durable: bool,
}

/// A decision: the evidence the answer carries, and the write the step makes.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub evidence: bool,
    pub write: Effect,
}

/// Decisions by (pay or query, the wire's variant, the row).
type Memo = HashMap<(u8, u8, Snap), Decision, BuildHasherDefault<Fx>>;

pub struct Decider {
    settings: WorkerSettings,
    pay: HashMap<PayWire, PayAnswer>,
    query: HashMap<QueryWire, QueryAnswer>,
    tickets: Value,
    memo: RefCell<Memo>,
    pub calls: RefCell<u64>,
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
}

impl Decider {
    pub fn new() -> Self {
        let mut settings = Settings::defaults().worker;
        settings.poll_randomization = 0.0;
        // Small bounds keep the graph small; the decisions are the same at any bound.
        settings.max_error_streak = 2;
        settings.max_pay_attempts = 2;
        let pay_body = |v: Value| v.to_string().into_bytes();
        let mut pay = HashMap::new();
        for wire in [
            PayWire::Accepted,
            PayWire::AlreadyPaid,
            PayWire::Refused,
            PayWire::PaymentError,
            PayWire::Redirect,
            PayWire::ConnectFailed,
            PayWire::Lost,
        ] {
            let answer = match wire {
                PayWire::Accepted => classify_pay(
                    ORDER_NO,
                    200,
                    &pay_body(json!({"status": 0, "msg": "success", "orderNo": ORDER_NO})),
                ),
                PayWire::AlreadyPaid => classify_pay(
                    ORDER_NO,
                    200,
                    &pay_body(
                        json!({"status": 404, "msg": "order already paid", "orderNo": ORDER_NO}),
                    ),
                ),
                PayWire::Refused => classify_pay(
                    ORDER_NO,
                    200,
                    &pay_body(json!({"status": 403, "msg": "card declined", "orderNo": null})),
                ),
                PayWire::PaymentError => classify_pay(
                    ORDER_NO,
                    200,
                    &pay_body(json!({"status": 411, "msg": "payment error", "orderNo": null})),
                ),
                PayWire::Redirect => classify_pay(ORDER_NO, 302, b""),
                PayWire::ConnectFailed => {
                    pay_failed(Reached::Never, "pay.do not sent: connection refused".into())
                }
                PayWire::Lost => pay_failed(Reached::Maybe, "pay.do: timed out".into()),
            };
            pay.insert(wire, answer);
        }
        let order = |status: &str, tickets: bool| {
            let mut v = json!({
                "status": 0, "msg": "success", "orderNo": ORDER_NO, "pnrCode": "OPLGS4",
                "orderStatus": status,
            });
            if tickets {
                v["ticketStatus"] = json!("1");
                v["paxTicketInfos"] = json!([{"name": "DOE/JOHN", "ticketNos": ["618-2000000001"], "airlinePNRs": ["ABC123"]}]);
            }
            v.to_string().into_bytes()
        };
        let mut query = HashMap::new();
        for (wire, http, body) in [
            (QueryWire::Unpaid, 200, order("0", false)),
            (QueryWire::Paid, 200, order("1", false)),
            (QueryWire::Ticketed, 200, order("2", true)),
            (
                QueryWire::NotFound,
                200,
                json!({"status": 800, "msg": "order does not exist"})
                    .to_string()
                    .into_bytes(),
            ),
            (QueryWire::Lost, 504, Vec::new()),
        ] {
            query.insert(wire, classify_query(ORDER_NO, http, &body));
        }
        let tickets = match &query[&QueryWire::Ticketed] {
            QueryAnswer::Order(v) => serde_json::to_value(
                v.final_tickets(None)
                    .expect("the ticketed answer is final")
                    .0,
            )
            .unwrap(),
            other => panic!("the ticketed answer reads as {other:?}"),
        };
        Decider {
            settings,
            pay,
            query,
            tickets,
            memo: RefCell::new(HashMap::default()),
            calls: RefCell::new(0),
        }
    }

    fn facts(&self, s: &Snap) -> Facts {
        let phase = base();
        let settle = Duration::from_secs(self.settings.unpaid_settle_s + 1);
        Facts {
            state: s.state,
            order_no: ORDER_NO.into(),
            pay_attempts: i32::from(s.attempts),
            pay_not_sent: i32::from(s.not_sent),
            pay_permits: i32::from(s.permits),
            paid: s.paid,
            last_pay_outcome: s.last,
            error_streak: i32::from(s.streak),
            poll_attempts: 0,
            tickets_seen: s.seen_once.then(|| self.tickets.clone()),
            passengers: None,
            pay_started_at: phase,
            pay_deadline: None,
            phase_started_at: phase,
            now: if s.aged {
                phase + chrono::Duration::from_std(settle).unwrap()
            } else {
                phase
            },
            intents_durable: s.durable,
            // Pauses (rule S4) only delay a new intent; the model leaves them out.
            paying_paused: None,
        }
    }

    /// What the step does with `wire` on the row `snap`: `machine::next`, then `Write::step`.
    pub fn decide(&self, wire: Wire, snap: &Snap) -> Decision {
        let key = match wire {
            Wire::Pay(p) => (0, p as u8, *snap),
            Wire::Query(q) => (1, q as u8, *snap),
        };
        if let Some(d) = self.memo.borrow().get(&key) {
            return *d;
        }
        *self.calls.borrow_mut() += 1;
        let facts = self.facts(snap);
        let bounds = Bounds {
            settings: &self.settings,
        };
        let (event, said) = match wire {
            Wire::Pay(p) => {
                let a = &self.pay[&p];
                (Event::Pay(a), Said::pay(a))
            }
            Wire::Query(q) => {
                let a = &self.query[&q];
                (Event::Query(a), Said::query(a))
            }
        };
        let evidence = machine::evidence_in(event).is_some();
        let next = machine::next(event, &facts, &bounds);
        let write = Write::step(&next, said, &facts, CardSummary::default()).effect();
        let d = Decision { evidence, write };
        self.memo.borrow_mut().insert(key, d);
        d
    }

    /// A give-back before the send (the gate, or too little lease left): `Write::give_back`.
    pub fn give_back(&self, state: State, intent_open: bool) -> Effect {
        Write::give_back(state, intent_open, "model").effect()
    }

    pub fn max_error_streak(&self) -> u8 {
        self.settings.max_error_streak as u8
    }
}
