//! The checks checked: before each run, a clean synthetic history must pass and a history with
//! every kind of violation must fail on each of them, so that "all invariants hold" can only
//! mean the run was clean, not that a check had gone blind.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use ticketing_tracker::simulator::LoggedRequest;

use crate::checks::{check, Data, Event, Job, Limits, Pause};
use crate::orders::Order;

fn order(no: &str) -> Order {
    Order {
        no: no.into(),
        method: 1,
        card: None,
        passengers: 1,
        fails_ticketing: false,
        slow: false,
    }
}

fn job(no: &str, state: &str, attempts: i32) -> Job {
    Job {
        order_no: no.into(),
        state: state.into(),
        pay_attempts: attempts,
        tickets: (state == "ticketed").then_some(1),
        last_error: None,
    }
}

struct History {
    t0: DateTime<Utc>,
    events: Vec<Event>,
}

impl History {
    fn at(&self, ms: i64) -> DateTime<Utc> {
        self.t0 + chrono::Duration::milliseconds(ms)
    }

    fn event(&mut self, no: &str, ms: i64, kind: &str, token: i64, worker: &str, detail: Value) {
        let id = self.events.len() as i64 + 1;
        let at = self.at(ms);
        self.events.push(Event {
            id,
            job_id: if no == "CHAOSA" { 1 } else { 2 },
            order_no: no.into(),
            at,
            kind: kind.into(),
            state: "paying".into(),
            lease_token: Some(token),
            worker: Some(worker.into()),
            detail,
        });
    }

    fn request(&self, no: &str, ms: i64, endpoint: &'static str, worker: &str) -> LoggedRequest {
        LoggedRequest {
            at: self.at(ms),
            endpoint,
            order_no: Some(no.into()),
            worker: Some(worker.into()),
        }
    }
}

fn ledger(pays: u64, charges: u64, after_shown: u64, unpaid: u64) -> Value {
    json!({"orders": {"CHAOSA": {"pay_requests": pays, "charges": charges,
        "pay_after_paid_shown": after_shown, "unpaid_answers": unpaid, "order_status": "2"}}})
}

const LIMITS: Limits = Limits {
    lease: Duration::from_millis(3000),
    settle: Duration::from_millis(3500),
    request_slack: Duration::from_millis(250),
};

/// One order paid by w1, its lease lost while w1 was paused, then finished by w2.
fn clean() -> (Vec<Order>, Data, Pause) {
    let mut h = History {
        t0: Utc::now(),
        events: Vec::new(),
    };
    let claim = |from: &str| json!({"claimed_from": from, "pay_attempts": 1});
    h.event("CHAOSA", 0, "pay_intent", 1, "w1", claim("pending"));
    h.event("CHAOSA", 9000, "claimed", 2, "w2", claim("paying"));
    let q0 = json!({"answer": "order", "orderStatus": "0"});
    h.event("CHAOSA", 9100, "query_answered", 2, "w2", q0.clone());
    h.event("CHAOSA", 9200, "claimed", 3, "w2", claim("paying"));
    h.event("CHAOSA", 9300, "pay_intent", 3, "w2", q0);
    h.event(
        "CHAOSA",
        9500,
        "pay_answered",
        3,
        "w2",
        json!({"answer": "accepted"}),
    );
    let requests = vec![
        h.request("CHAOSA", 10, "pay.do", "w1"),
        h.request("CHAOSA", 9050, "queryOrderDetails.do", "w2"),
        h.request("CHAOSA", 9350, "pay.do", "w2"),
        h.request("CHAOSA", 9600, "queryOrderDetails.do", "w2"),
    ];
    let pause = Pause {
        worker: "w1".into(),
        log: "/nonexistent".into(),
        stopped_at: h.at(5),
        resumed_at: h.at(8000),
        held: vec![(1, "CHAOSA".into(), 1)],
        reclaimed: HashSet::from([1]),
    };
    let data = Data {
        jobs: vec![job("CHAOSA", "ticketed", 2)],
        events: h.events,
        ledger: ledger(2, 1, 0, 1),
        requests,
    };
    (vec![order("CHAOSA")], data, pause)
}

/// Runs both histories; `Err` names what the checks got wrong.
pub fn run() -> Result<(), String> {
    let (orders, data, pause) = clean();
    let report = check(&orders, &data, Some(&pause), &LIMITS);
    if !report.violations.is_empty() {
        return Err(format!(
            "a clean history was flagged: {:?}",
            report.violations
        ));
    }

    let (mut orders, mut data, pause) = clean();
    orders.push(order("CHAOSB")); // enqueued, never in the table
    data.jobs[0].pay_attempts = 3;
    data.ledger = ledger(4, 2, 1, 1);
    let mut h = History {
        t0: pause.stopped_at - chrono::Duration::milliseconds(5),
        events: std::mem::take(&mut data.events),
    };
    // A re-intent right after the first, with no unpaid answer in between.
    h.events.truncate(1);
    h.event("CHAOSA", 100, "pay_intent", 1, "w1", json!({}));
    // w1 writes while paused past its lease, and after resuming under the old lease.
    h.event("CHAOSA", 4000, "query_answered", 1, "w1", json!({}));
    h.event(
        "CHAOSA",
        9000,
        "claimed",
        2,
        "w2",
        json!({"claimed_from": "paying"}),
    );
    h.event("CHAOSA", 9100, "query_answered", 1, "w1", json!({}));
    data.requests = vec![
        h.request("CHAOSA", 10, "pay.do", "w1"),
        h.request("CHAOSA", 50, "pay.do", "w1"),
        h.request("CHAOSA", 120, "pay.do", "w1"),
        h.request("CHAOSA", 4000, "queryOrderDetails.do", "w1"),
        h.request("CHAOSA", 9500, "pay.do", "w1"),
    ];
    data.events = h.events;
    let report = check(&orders, &data, Some(&pause), &LIMITS);
    let found: BTreeSet<&str> = report.violations.iter().map(|v| v.check).collect();
    let expected = [
        "lost",
        "rows",
        "double_charge",
        "ticketed_charged_once",
        "pay_after_paid_shown",
        "pay_bounded_by_unpaid_answers",
        "intents_match_attempts",
        "repay_needs_unpaid_answer",
        "repay_after_settle",
        "intent_before_pay",
        "fenced_writes",
        "requests_under_a_lease",
        "paused_worker_writes",
        "paused_worker_requests",
    ];
    let missed: Vec<&str> = expected
        .into_iter()
        .filter(|c| !found.contains(c))
        .collect();
    if report.lost != 1 || report.double_charges != 1 || !missed.is_empty() {
        return Err(format!(
            "a broken history was not flagged by {missed:?} (lost {}, double charges {})",
            report.lost, report.double_charges
        ));
    }
    Ok(())
}
