//! The checks checked: before each run, a clean synthetic history must pass and a history with
//! every kind of violation must fail on each of them, so that "all invariants hold" can only
//! mean the run was clean, not that a check had gone blind.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use atrip_simulator::LoggedRequest;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::atrip_proxy::{AtripAnswer, Exchange, Hostile, When};
use super::checks::{check, Data, Done, Event, Expect, Job, Limits, Pause, PauseKind};
use super::orders::Order;

fn order(no: &str, lost_pay: bool) -> Order {
    Order {
        no: no.into(),
        method: 1,
        card: None,
        passengers: 1,
        fails_ticketing: false,
        slow: false,
        lost_pay,
    }
}

fn job(no: &str, state: &str, attempts: i32, not_sent: i32) -> Job {
    Job {
        order_no: no.into(),
        state: state.into(),
        pay_attempts: attempts,
        pay_not_sent: not_sent,
        pay_permits: 1,
        paid: state == "ticketed",
        tickets: (state == "ticketed").then_some(1),
        last_error: None,
    }
}

struct History {
    t0: DateTime<Utc>,
    events: Vec<Event>,
    requests: Vec<LoggedRequest>,
    exchanges: Vec<Exchange>,
}

const PAY: &str = "pay.do";
const QUERY: &str = "queryOrderDetails.do";

/// ATRIP's answer to a pay.do with `status`.
fn paid(status: i64) -> Option<AtripAnswer> {
    Some(AtripAnswer {
        http: 200,
        status: Some(status),
        order_status: None,
    })
}

/// ATRIP's answer to a query showing `order_status`.
fn shows(order_status: &str) -> Option<AtripAnswer> {
    Some(AtripAnswer {
        http: 200,
        status: Some(0),
        order_status: Some(order_status.into()),
    })
}

impl History {
    fn new() -> History {
        History {
            t0: Utc::now(),
            events: Vec::new(),
            requests: Vec::new(),
            exchanges: Vec::new(),
        }
    }

    /// One exchange through the ATRIP proxy: `(order, ms, endpoint, worker, hostile, ATRIP's
    /// answer)`; delivered 50 ms after its arrival when it was not hostile and ATRIP answered.
    fn exchange(
        &mut self,
        no: &str,
        ms: i64,
        endpoint: &str,
        worker: &str,
        hostile: Option<(Hostile, When)>,
        atrip: Option<AtripAnswer>,
    ) {
        let delivered = (hostile.is_none() && atrip.is_some()).then_some(Duration::from_millis(50));
        self.exchanges.push(Exchange {
            at: self.at(ms),
            endpoint: endpoint.into(),
            order_no: Some(no.into()),
            worker: Some(worker.into()),
            forwarded: !matches!(hostile, Some((_, When::Before))),
            hostile,
            atrip,
            delivered,
        });
    }

    fn at(&self, ms: i64) -> DateTime<Utc> {
        self.t0 + chrono::Duration::milliseconds(ms)
    }

    /// One event: `(order, ms, kind, token, worker, state after it, detail)`.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        no: &str,
        ms: i64,
        kind: &str,
        token: i64,
        worker: &str,
        state: &str,
        detail: Value,
    ) {
        let id = self.events.len() as i64 + 1;
        let at = self.at(ms);
        self.events.push(Event {
            id,
            job_id: i64::from(no.as_bytes()[5]),
            order_no: no.into(),
            at,
            kind: kind.into(),
            state: state.into(),
            lease_token: Some(token),
            worker: Some(worker.into()),
            detail,
        });
    }

    /// The last event was written holding no lease (a sweep's write of noted evidence).
    fn leaseless(&mut self) {
        if let Some(last) = self.events.last_mut() {
            last.lease_token = None;
        }
    }

    fn request(&mut self, no: &str, ms: i64, endpoint: &'static str, worker: &str) {
        self.requests.push(LoggedRequest {
            at: self.at(ms),
            endpoint,
            order_no: Some(no.into()),
            worker: Some(worker.into()),
        });
    }

    fn pause(
        &self,
        kind: PauseKind,
        worker: &str,
        from: i64,
        to: i64,
        held: &[(&str, i64)],
    ) -> Pause {
        Pause {
            kind,
            worker: worker.into(),
            log: "/nonexistent".into(),
            stopped_at: self.at(from),
            resumed_at: self.at(to),
            held: held
                .iter()
                .map(|(no, token)| (i64::from(no.as_bytes()[5]), (*no).into(), *token))
                .collect(),
            reclaimed: held
                .iter()
                .map(|(no, _)| i64::from(no.as_bytes()[5]))
                .collect::<HashSet<_>>(),
            order: (kind == PauseKind::StopBeforePay).then(|| held[0].0.into()),
        }
    }
}

fn ledger(orders: &[(&str, u64, u64, u64, &str)], over_one: u64, storm_answers: u64) -> Value {
    let mut all = serde_json::Map::new();
    for (no, pays, charges, after_shown, status) in orders {
        all.insert(
            (*no).into(),
            json!({"pay_requests": pays, "charges": charges,
                   "pay_after_paid_shown": after_shown, "order_status": status}),
        );
    }
    json!({"orders": all, "totals": {"pay_requests_over_one": over_one, "storm_answers": storm_answers}})
}

const LIMITS: Limits = Limits {
    lease: Duration::from_millis(3000),
    unpaid_settle: Duration::from_secs(10),
    pay_timeout: Duration::from_millis(2500),
    query_timeout: Duration::from_millis(2500),
};

fn q(status: &str) -> Value {
    json!({"answer": "order", "orderStatus": status})
}

fn claim() -> Value {
    json!({"claimed_from": "pending", "pay_attempts": 1})
}

/// Five orders. A: w1 stops before its pay.do, w2 takes the row over and finds it unpaid, w1
/// sends its pay.do late after SIGCONT (its write is refused: no event; its keeper writes the
/// evidence, under w2's token), w2 finds it paid and ticketed. C: its one pay.do is lost before the
/// charge (and the proxy's answer oversized); unpaid until `unpaid_settle`, a plain retry,
/// unpaid again. D: an intent given back unsent, then a second one that pays. E: its pay.do
/// redirected by the proxy before ATRIP saw it, a step panics, unpaid until a person; its
/// queries meet the other hostile answers. F: charged by a pay.do whose answer never came, and
/// no query ever showed it paid: a person (allowed). w3 is frozen for a while holding nothing.
fn clean() -> (Vec<Order>, Data, Vec<Pause>, Expect) {
    let mut h = History::new();
    h.event("CHAOSA", 0, "pay_intent", 1, "w1", "paying", claim());
    h.event("CHAOSA", 6000, "query_answered", 2, "w2", "paying", q("0"));
    // w1, resumed after its lease was taken over, notes the evidence under the lease it held
    // (its write of it waits), then w3's sweep records it from the note, which ATRIP never
    // told w3: both lease-free (rule P3a).
    let seen = json!({"paid_evidence": "pay_accepted", "why": "the step's write of it waits"});
    h.event("CHAOSA", 8050, "evidence_seen", 1, "w1", "paying", seen);
    let kept = json!({"paid_evidence": "pay_accepted", "why": "the step that saw it could not write it under its lease"});
    h.event(
        "CHAOSA",
        8100,
        "evidence_recorded",
        2,
        "w3",
        "ticketing",
        kept,
    );
    h.leaseless();
    h.event(
        "CHAOSA",
        9500,
        "query_answered",
        3,
        "w2",
        "ticketing",
        q("1"),
    );
    h.event(
        "CHAOSA",
        10500,
        "query_answered",
        4,
        "w2",
        "ticketed",
        q("2"),
    );
    h.request("CHAOSA", 5950, "queryOrderDetails.do", "w2");
    h.request("CHAOSA", 8010, "pay.do", "w1");
    h.request("CHAOSA", 9450, "queryOrderDetails.do", "w2");
    h.exchange("CHAOSA", 5950, QUERY, "w2", None, shows("0"));
    h.exchange("CHAOSA", 8010, PAY, "w1", None, paid(0));
    h.exchange("CHAOSA", 9450, QUERY, "w2", None, shows("1"));
    h.exchange("CHAOSA", 10450, QUERY, "w2", None, shows("2"));

    h.event("CHAOSC", 100, "pay_intent", 1, "w2", "paying", claim());
    let unknown = json!({"answer": "outcome_unknown"});
    h.event(
        "CHAOSC",
        200,
        "pay_answered",
        1,
        "w2",
        "paying",
        unknown.clone(),
    );
    h.event("CHAOSC", 600, "query_answered", 2, "w2", "paying", q("0"));
    h.event(
        "CHAOSC",
        10200,
        "query_answered",
        3,
        "w2",
        "needs_review",
        q("0"),
    );
    let retry = json!({"from": "needs_review", "may_pay": false, "pay_permits": 1});
    h.event(
        "CHAOSC",
        11000,
        "operator_retry",
        3,
        "chaos",
        "paying",
        retry,
    );
    h.event("CHAOSC", 11500, "query_answered", 4, "w2", "paying", q("0"));
    h.event(
        "CHAOSC",
        21100,
        "query_answered",
        5,
        "w2",
        "needs_review",
        q("0"),
    );
    h.request("CHAOSC", 150, "pay.do", "w2");
    let oversized = Some((Hostile::OversizedDeclared, When::After));
    h.exchange("CHAOSC", 150, PAY, "w2", oversized, None);
    for ms in [550, 10150, 11450, 21050] {
        h.exchange("CHAOSC", ms, QUERY, "w2", None, shows("0"));
    }

    h.event("CHAOSD", 300, "pay_intent", 1, "w2", "paying", claim());
    let back = json!({"reason": "too little of the lease left", "pay_sent": false});
    h.event("CHAOSD", 310, "released", 1, "w2", "paying", back);
    // Its query step panics a second time: a person looks. No pay.do may have reached ATRIP,
    // so a plain retry may pay; the query that resumes it and the new intent after its
    // unpaid answer are one event (rule P7).
    let twice =
        json!({"error": "internal error: the worker's step panicked again", "not_sent": false});
    h.event(
        "CHAOSD",
        600,
        "step_panicked",
        2,
        "w2",
        "needs_review",
        twice,
    );
    let retry = json!({"from": "needs_review", "may_pay": true, "pay_permits": 2});
    h.event("CHAOSD", 700, "operator_retry", 2, "chaos", "paying", retry);
    let again = json!({"answer": q("0"), "pay_attempts": 2});
    h.event("CHAOSD", 900, "pay_intent", 3, "w2", "paying", again);
    let ok = json!({"answer": "accepted", "status": 0});
    h.event("CHAOSD", 1000, "pay_answered", 3, "w2", "ticketing", ok);
    h.event(
        "CHAOSD",
        2000,
        "query_answered",
        4,
        "w2",
        "ticketed",
        q("2"),
    );
    h.request("CHAOSD", 850, "queryOrderDetails.do", "w2");
    h.request("CHAOSD", 950, "pay.do", "w2");
    h.exchange("CHAOSD", 850, QUERY, "w2", None, shows("0"));
    h.exchange("CHAOSD", 950, PAY, "w2", None, paid(0));
    h.exchange("CHAOSD", 1950, QUERY, "w2", None, shows("2"));

    h.event("CHAOSE", 400, "pay_intent", 1, "w2", "paying", claim());
    h.event(
        "CHAOSE",
        450,
        "pay_answered",
        1,
        "w2",
        "paying",
        unknown.clone(),
    );
    h.event("CHAOSE", 1000, "query_answered", 2, "w2", "paying", q("0"));
    let panicked = json!({"error": "internal error: the worker's step panicked (failpoint)"});
    h.event("CHAOSE", 5500, "step_panicked", 3, "w2", "paying", panicked);
    h.event(
        "CHAOSE",
        10500,
        "query_answered",
        4,
        "w2",
        "needs_review",
        q("0"),
    );
    h.request("CHAOSE", 420, "pay.do", "w2");
    let redirect = Some((Hostile::RedirectSelf, When::Before));
    h.exchange("CHAOSE", 420, PAY, "w2", redirect, None);
    h.exchange("CHAOSE", 950, QUERY, "w2", None, shows("0"));
    for (ms, kind, when) in [
        (5000, Hostile::GzipBomb, When::Before),
        (6000, Hostile::Endless, When::After),
        (7000, Hostile::OversizedStreamed, When::Before),
        (8000, Hostile::RedirectRefused, When::After),
        (9000, Hostile::ResetMidBody, When::After),
    ] {
        let atrip = (when == When::After).then(|| shows("0")).flatten();
        h.exchange("CHAOSE", ms, QUERY, "w2", Some((kind, when)), atrip);
    }
    h.exchange("CHAOSE", 10450, QUERY, "w2", None, shows("0"));

    h.event("CHAOSF", 500, "pay_intent", 1, "w2", "paying", claim());
    h.event("CHAOSF", 3000, "pay_answered", 1, "w2", "paying", unknown);
    h.event("CHAOSF", 3500, "query_answered", 2, "w2", "paying", q("0"));
    h.event(
        "CHAOSF",
        11000,
        "query_answered",
        3,
        "w2",
        "needs_review",
        q("0"),
    );
    h.request("CHAOSF", 520, "pay.do", "w2");
    h.exchange("CHAOSF", 520, PAY, "w2", None, None);
    h.exchange("CHAOSF", 3450, QUERY, "w2", None, shows("0"));
    h.exchange("CHAOSF", 10950, QUERY, "w2", None, shows("0"));

    let pauses = vec![
        h.pause(PauseKind::StopBeforePay, "w1", 5, 8000, &[("CHAOSA", 1)]),
        h.pause(PauseKind::Frozen, "w3", 12000, 22000, &[]),
    ];
    let data = Data {
        jobs: vec![
            job("CHAOSA", "ticketed", 1, 0),
            job("CHAOSC", "needs_review", 1, 0),
            job("CHAOSD", "ticketed", 2, 1),
            job("CHAOSE", "needs_review", 1, 0),
            job("CHAOSF", "needs_review", 1, 0),
        ],
        ledger: ledger(
            &[
                ("CHAOSA", 1, 1, 0, "2"),
                ("CHAOSC", 1, 0, 0, "0"),
                ("CHAOSD", 1, 1, 0, "2"),
                ("CHAOSE", 0, 0, 0, "0"),
                ("CHAOSF", 1, 1, 0, "1"),
            ],
            0,
            3,
        ),
        events: h.events,
        requests: h.requests,
        exchanges: h.exchanges,
        ended: vec![("w9".into(), h.t0)],
        done: Done {
            failovers: 1,
            db_cuts: 1,
            row_locks: 2,
        },
    };
    let orders = vec![
        order("CHAOSA", false),
        order("CHAOSC", true),
        order("CHAOSD", false),
        order("CHAOSE", false),
        order("CHAOSF", false),
    ];
    let expect = Expect {
        stops: 1,
        storms: 1,
        skewed: Some("w2".into()),
        failovers: 1,
        db_cuts: 1,
        row_locks: 2,
        panics: true,
        hostile: true,
    };
    (orders, data, pauses, expect)
}

/// Every violation the checks know, each at least once.
fn broken() -> (Vec<Order>, Data, Vec<Pause>, Expect) {
    let mut h = History::new();
    // A: a second intent with nothing marking the first unsent and no unpaid answer; writes by
    // the stopped w1 past its lease and after SIGCONT under its old token; a token written by
    // two workers; a claim that does not raise the token; a refused write.
    h.event("CHAOSA", 0, "pay_intent", 1, "w1", "paying", claim());
    h.event("CHAOSA", 100, "pay_intent", 1, "w1", "paying", json!({}));
    h.event("CHAOSA", 4000, "query_answered", 1, "w1", "paying", q("0"));
    h.event("CHAOSA", 5000, "pay_intent", 2, "w2", "paying", claim());
    h.event("CHAOSA", 5100, "query_answered", 2, "w3", "paying", q("0"));
    h.event("CHAOSA", 5200, "pay_intent", 2, "w2", "paying", claim());
    h.event("CHAOSA", 9100, "query_answered", 1, "w1", "paying", q("0"));
    let refused = json!({"constraint": "pay_sends_within_permits"});
    h.event(
        "CHAOSA",
        9200,
        "constraint_violated",
        2,
        "w2",
        "needs_review",
        refused,
    );
    h.request("CHAOSA", 10, "pay.do", "w1");
    h.request("CHAOSA", 50, "pay.do", "w1");
    h.request("CHAOSA", 4000, "queryOrderDetails.do", "w1");
    h.request("CHAOSA", 5300, "pay.do", "w3");
    h.request("CHAOSA", 6000, "pay.do", "w1");
    // C: its pay.do lost, yet sent to review at its first unpaid answer, then a plain retry
    // that may pay and goes straight to a new intent (its event carries an answer, but ATRIP
    // was never asked after the retry).
    h.event("CHAOSC", 100, "pay_intent", 1, "w2", "paying", claim());
    h.event(
        "CHAOSC",
        1000,
        "query_answered",
        2,
        "w2",
        "needs_review",
        q("0"),
    );
    let retry = json!({"from": "needs_review", "may_pay": true, "pay_permits": 2});
    h.event(
        "CHAOSC",
        1500,
        "operator_retry",
        2,
        "chaos",
        "paying",
        retry,
    );
    let again = json!({"answer": q("0"), "pay_attempts": 2});
    h.event("CHAOSC", 1600, "pay_intent", 3, "w2", "paying", again);
    // Evidence of payment from w3, which ATRIP never told so.
    let kept = json!({"paid_evidence": "query_paid"});
    h.event("CHAOSC", 1700, "evidence_recorded", 3, "w3", "paying", kept);
    h.request("CHAOSC", 150, "pay.do", "w2");
    // G: the oversized (never delivered) answer to its pay.do read as accepted: recorded paid,
    // never charged.
    h.event("CHAOSG", 100, "pay_intent", 1, "w2", "paying", claim());
    let accepted = json!({"answer": "accepted", "status": 0});
    h.event(
        "CHAOSG",
        300,
        "pay_answered",
        1,
        "w2",
        "ticketing",
        accepted,
    );
    h.request("CHAOSG", 150, "pay.do", "w2");
    let streamed = Some((Hostile::OversizedStreamed, When::Before));
    h.exchange("CHAOSG", 150, PAY, "w2", streamed, None);
    // H: charged, a query showing it paid reached w2 (which lived on), and nothing recorded
    // it; it ends with a person.
    h.event("CHAOSH", 0, "pay_intent", 1, "w2", "paying", claim());
    h.event(
        "CHAOSH",
        11000,
        "query_answered",
        2,
        "w2",
        "needs_review",
        q("0"),
    );
    h.request("CHAOSH", 10, "pay.do", "w2");
    h.exchange("CHAOSH", 10, PAY, "w2", None, None);
    h.exchange("CHAOSH", 500, QUERY, "w2", None, shows("1"));
    h.exchange("CHAOSH", 10950, QUERY, "w2", None, shows("0"));

    let mut a = job("CHAOSA", "ticketed", 3, 1);
    a.tickets = Some(2);
    let mut g = job("CHAOSG", "ticketing", 1, 0);
    g.paid = true;
    let pauses = vec![h.pause(PauseKind::StopBeforePay, "w1", 5, 8000, &[("CHAOSA", 1)])];
    let data = Data {
        jobs: vec![
            a,
            job("CHAOSC", "paying", 2, 0),
            g,
            job("CHAOSH", "needs_review", 1, 0),
        ],
        ledger: ledger(
            &[
                ("CHAOSA", 3, 2, 1, "2"),
                ("CHAOSC", 1, 0, 0, "0"),
                ("CHAOSG", 0, 0, 0, "0"),
                ("CHAOSH", 1, 1, 0, "1"),
            ],
            0,
            0,
        ),
        events: h.events,
        requests: h.requests,
        exchanges: h.exchanges,
        ended: Vec::new(),
        done: Done {
            failovers: 1,
            db_cuts: 0,
            row_locks: 1,
        },
    };
    let orders = vec![
        order("CHAOSA", false),
        order("CHAOSB", false), // enqueued, never in the table
        order("CHAOSC", true),
        order("CHAOSG", false),
        order("CHAOSH", false),
    ];
    let expect = Expect {
        stops: 2,
        storms: 1,
        skewed: Some("w9".into()),
        failovers: 2,
        db_cuts: 1,
        row_locks: 2,
        panics: true,
        hostile: true,
    };
    (orders, data, pauses, expect)
}

/// Runs both histories; `Err` names what the checks got wrong.
pub fn run() -> Result<(), String> {
    let (orders, data, pauses, expect) = clean();
    let report = check(&orders, &data, &pauses, &LIMITS, &expect);
    if !report.violations.is_empty() {
        return Err(format!(
            "a clean history was flagged: {:?}",
            report.violations
        ));
    }
    if report.late_sends != 1 {
        return Err(format!(
            "the clean history's late pay.do was not seen ({})",
            report.late_sends
        ));
    }
    if report.charged_unknown_reviews != ["CHAOSF"] || report.panics != 2 {
        return Err(format!(
            "the clean history's charged order no worker saw paid was not listed ({:?}), or its two panics not counted ({})",
            report.charged_unknown_reviews, report.panics
        ));
    }
    super::database::selftest()?;

    let (orders, data, pauses, expect) = broken();
    let report = check(&orders, &data, &pauses, &LIMITS, &expect);
    let found: BTreeSet<&str> = report.violations.iter().map(|v| v.check).collect();
    let expected = [
        "lost",
        "rows",
        "stranded",
        "double_charge",
        "pay_requests_over_one",
        "requests_within_sends",
        "sends_within_permit",
        "ticketed_charged_once",
        "pay_after_paid_shown",
        "row_matches_atrip",
        "lost_pay_goes_to_review",
        "intents_match_attempts",
        "not_sent_matches_row",
        "second_intent_after_not_sent",
        "repay_needs_unpaid_answer",
        "intent_before_pay",
        "pay_by_intent_holder",
        "plain_retry_grants_no_permit",
        "retry_resumes_with_query",
        "review_not_early",
        "claim_tokens_increase",
        "fenced_writes",
        "one_writer_per_lease",
        "no_refused_writes",
        "storms_answered",
        "skewed_worker_worked",
        "stops",
        "paused_worker",
        "paused_worker_writes",
        "paused_worker_requests",
        "stop_before_pay_sends_late",
        "answers_came_from_atrip",
        "evidence_came_from_atrip",
        "evidence_matches_atrip",
        "evidence_reaches_row",
        "paid_order_not_in_review",
        "failovers",
        "db_cuts_over_lease",
        "row_locks",
        "panics",
        "hostile_answers",
    ];
    let missed: Vec<&str> = expected
        .into_iter()
        .filter(|c| !found.contains(c))
        .collect();
    let unknown: Vec<&str> = found
        .iter()
        .copied()
        .filter(|c| !expected.contains(c))
        .collect();
    if report.lost != 1 || report.double_charges != 1 || !missed.is_empty() || !unknown.is_empty() {
        return Err(format!(
            "a broken history was not flagged by {missed:?} (lost {}, double charges {}; checks not in the list: {unknown:?})",
            report.lost, report.double_charges
        ));
    }
    Ok(())
}
