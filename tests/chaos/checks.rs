//! The invariants, checked once every order is terminal, from four independent records: the
//! job table, the events table, the simulator's ledger (what ATRIP charged and answered) and its
//! request log (who sent what, when).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};
use ticketing_tracker::simulator::LoggedRequest;

use crate::leases;
use crate::orders::Order;

/// One event, as the job store reads it.
pub use ticketing_tracker::jobs::EventRow as Event;

/// What the checks read off an event.
pub trait EventExt {
    /// Written by the claim statement (which bumps the lease token), not by a fenced write.
    fn is_claim(&self) -> bool;
    fn order_status(&self) -> Option<&str>;
}

impl EventExt for Event {
    fn is_claim(&self) -> bool {
        self.kind == "claimed"
            || (self.kind == "pay_intent" && self.detail.get("claimed_from").is_some())
    }

    fn order_status(&self) -> Option<&str> {
        self.detail.get("orderStatus").and_then(Value::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub order_no: String,
    pub state: String,
    pub pay_attempts: i32,
    pub tickets: Option<i32>,
    pub last_error: Option<String>,
}

/// The SIGSTOPped worker: who, when, and the leases it held when it froze.
#[derive(Debug, Clone)]
pub struct Pause {
    pub worker: String,
    pub log: std::path::PathBuf,
    pub stopped_at: DateTime<Utc>,
    pub resumed_at: DateTime<Utc>,
    /// `(job id, order, lease token)` of every row it held when stopped.
    pub held: Vec<(i64, String, i64)>,
    /// Of those, the rows another worker claimed while it was stopped.
    pub reclaimed: HashSet<i64>,
}

/// The protocol's time bounds, as the workers were configured.
pub struct Limits {
    pub lease: Duration,
    /// Pay timeout plus pay grace: the earliest a new intent may follow the previous one.
    pub settle: Duration,
    /// How late after another worker's claim a request may still be logged by the simulator
    /// (its handler runs on this busy process) before it counts as sent after the lease.
    pub request_slack: Duration,
}

pub struct Data {
    pub jobs: Vec<Job>,
    pub events: Vec<Event>,
    pub ledger: Value,
    pub requests: Vec<LoggedRequest>,
}

pub async fn load_db(pool: &PgPool) -> Result<(Vec<Job>, Vec<Event>), sqlx::Error> {
    let jobs = sqlx::query(
        "SELECT order_no, state, pay_attempts, jsonb_array_length(ticket_numbers) AS tickets,
                last_error
         FROM ticketing_jobs ORDER BY id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Job {
        order_no: r.get("order_no"),
        state: r.get("state"),
        pay_attempts: r.get("pay_attempts"),
        tickets: r.get("tickets"),
        last_error: r.get("last_error"),
    })
    .collect();
    let events = sqlx::query(
        "SELECT id, job_id, order_no, at, kind, state, lease_token, worker, detail
         FROM ticketing_events ORDER BY id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Event {
        id: r.get("id"),
        job_id: r.get("job_id"),
        order_no: r.get("order_no"),
        at: r.get("at"),
        kind: r.get("kind"),
        state: r.get("state"),
        lease_token: r.get("lease_token"),
        worker: r.get("worker"),
        detail: r.get("detail"),
    })
    .collect();
    Ok((jobs, events))
}

#[derive(Debug)]
pub struct Violation {
    pub check: &'static str,
    pub order: Option<String>,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub states: BTreeMap<String, usize>,
    pub lost: usize,
    pub stranded: usize,
    pub double_charges: usize,
    /// Pay intents after an order's first (each a second pay.do, allowed by an unpaid answer).
    pub repays: usize,
    /// Of those, the ones whose justifying unpaid answer is recorded in the intent's own event
    /// (the query that found it unpaid and the new intent are one statement), not before it.
    pub repays_justified_in_place: usize,
    pub violations: Vec<Violation>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn fail(&mut self, check: &'static str, order: Option<&str>, what: String) {
        self.violations.push(Violation {
            check,
            order: order.map(str::to_owned),
            what,
        });
    }
}

const TERMINAL: [&str; 4] = ["ticketed", "failed", "needs_review", "cancelled"];

pub fn check(orders: &[Order], data: &Data, pause: Option<&Pause>, limits: &Limits) -> Report {
    let mut r = Report::default();
    let jobs: HashMap<&str, &Job> = data.jobs.iter().map(|j| (j.order_no.as_str(), j)).collect();
    let mut events: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in &data.events {
        events.entry(e.order_no.as_str()).or_default().push(e);
    }
    let mut requests: HashMap<&str, Vec<&LoggedRequest>> = HashMap::new();
    for q in &data.requests {
        if let Some(no) = &q.order_no {
            requests.entry(no.as_str()).or_default().push(q);
        }
    }
    let no_events = Vec::new();
    let no_requests = Vec::new();
    for o in orders {
        let evs = events.get(o.no.as_str()).unwrap_or(&no_events);
        let reqs = requests.get(o.no.as_str()).unwrap_or(&no_requests);
        rows_and_ledger(&mut r, o, jobs.get(o.no.as_str()).copied(), &data.ledger);
        if let Some(job) = jobs.get(o.no.as_str()) {
            intents(&mut r, o, job, evs, reqs, limits);
        }
        leases::fencing(&mut r, o, evs);
        leases::lease_overlap(&mut r, o, evs, reqs, limits);
    }
    if data.jobs.len() != orders.len() {
        r.fail(
            "rows",
            None,
            format!(
                "{} rows in ticketing_jobs for {} orders enqueued",
                data.jobs.len(),
                orders.len()
            ),
        );
    }
    match pause {
        Some(p) => leases::paused_worker(&mut r, p, data, limits),
        None => r.fail(
            "paused_worker",
            None,
            "no worker was paused (none held a lease at any moment tried)".into(),
        ),
    }
    r
}

/// Terminal, not lost, charged at most once, never paid after being shown paid, and no more
/// pay.do than unpaid answers can justify.
fn rows_and_ledger(r: &mut Report, o: &Order, job: Option<&Job>, ledger: &Value) {
    let no = o.no.as_str();
    let Some(job) = job else {
        r.lost += 1;
        r.fail("lost", Some(no), "no row in ticketing_jobs".into());
        return;
    };
    *r.states.entry(job.state.clone()).or_default() += 1;
    if !TERMINAL.contains(&job.state.as_str()) {
        r.stranded += 1;
        r.fail("stranded", Some(no), format!("still {}", job.state));
    }
    let entry = &ledger["orders"][no];
    let n = |k: &str| entry[k].as_u64().unwrap_or(0);
    let (charges, pays, unpaid) = (n("charges"), n("pay_requests"), n("unpaid_answers"));
    if charges > 1 {
        r.double_charges += 1;
        r.fail(
            "double_charge",
            Some(no),
            format!("charged {charges} times"),
        );
    }
    if job.state == "ticketed" && charges != 1 {
        r.fail(
            "ticketed_charged_once",
            Some(no),
            format!("ticketed with {charges} charges"),
        );
    }
    if n("pay_after_paid_shown") > 0 {
        r.fail(
            "pay_after_paid_shown",
            Some(no),
            format!(
                "{} pay.do after an answer showed it paid",
                n("pay_after_paid_shown")
            ),
        );
    }
    if pays > 1 + unpaid {
        r.fail(
            "pay_bounded_by_unpaid_answers",
            Some(no),
            format!("{pays} pay.do but only {unpaid} unpaid answers"),
        );
    }
    // What the row says happened must be what ATRIP says happened.
    let sim_status = entry["order_status"].as_str().unwrap_or("?");
    let agrees = match job.state.as_str() {
        "ticketed" => sim_status == "2" && job.tickets == Some(o.passengers as i32),
        "failed" => sim_status != "2" && sim_status != "1",
        _ => true,
    };
    if !agrees {
        r.fail(
            "row_matches_atrip",
            Some(no),
            format!(
                "row {} ({} ticket sets for {} passengers) but ATRIP shows orderStatus {sim_status}; last_error {:?}",
                job.state, job.tickets.unwrap_or(0), o.passengers, job.last_error
            ),
        );
    }
    if job.state == "ticketed" && o.fails_ticketing {
        r.fail(
            "row_matches_atrip",
            Some(no),
            "ticketed although its ticketing was set to fail".into(),
        );
    }
}

/// Every pay.do had its own intent recorded before it arrived; every intent after the first
/// was justified by an unpaid answer and came after the previous attempt had settled.
fn intents(
    r: &mut Report,
    o: &Order,
    job: &Job,
    evs: &[&Event],
    reqs: &[&LoggedRequest],
    limits: &Limits,
) {
    let no = o.no.as_str();
    let intents: Vec<&Event> = evs
        .iter()
        .copied()
        .filter(|e| e.kind == "pay_intent")
        .collect();
    if intents.len() != job.pay_attempts as usize {
        r.fail(
            "intents_match_attempts",
            Some(no),
            format!(
                "{} pay_intent events, pay_attempts {}",
                intents.len(),
                job.pay_attempts
            ),
        );
    }
    for pair in intents.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        let answered_before = evs.iter().any(|e| {
            e.id > prev.id
                && e.id < next.id
                && e.kind == "query_answered"
                && e.order_status() == Some("0")
        });
        let in_place = next.order_status() == Some("0");
        r.repays += 1;
        if in_place && !answered_before {
            r.repays_justified_in_place += 1;
        }
        let justified = answered_before || in_place;
        if !justified {
            r.fail(
                "repay_needs_unpaid_answer",
                Some(no),
                format!(
                    "pay_intent #{} with no unpaid answer since #{}",
                    next.id, prev.id
                ),
            );
        }
        let gap = (next.at - prev.at).to_std().unwrap_or_default();
        if gap < limits.settle {
            r.fail(
                "repay_after_settle",
                Some(no),
                format!(
                    "pay_intent #{} only {} ms after #{} (pay timeout + grace is {} ms)",
                    next.id,
                    gap.as_millis(),
                    prev.id,
                    limits.settle.as_millis()
                ),
            );
        }
    }
    let pays: Vec<&LoggedRequest> = reqs
        .iter()
        .copied()
        .filter(|q| q.endpoint == "pay.do")
        .collect();
    for (k, q) in pays.iter().enumerate() {
        let before = intents.iter().filter(|i| i.at <= q.at).count();
        if before <= k {
            r.fail(
                "intent_before_pay",
                Some(no),
                format!(
                    "pay.do #{} at {} from {:?} with only {before} intents recorded before it",
                    k + 1,
                    q.at,
                    q.worker
                ),
            );
        }
    }
}

/// Writes, for each order named by a violation, its row, events, ledger entry and requests.
pub fn dump(report: &Report, data: &Data, path: &std::path::Path) -> std::io::Result<()> {
    let named: BTreeSet<&str> = report
        .violations
        .iter()
        .filter_map(|v| v.order.as_deref())
        .collect();
    let mut out = String::new();
    for v in &report.violations {
        let _ = writeln!(out, "VIOLATION {} {:?}: {}", v.check, v.order, v.what);
    }
    for no in named.iter().take(50) {
        let _ = writeln!(out, "\n=== {no}");
        for j in data.jobs.iter().filter(|j| j.order_no == *no) {
            let _ = writeln!(out, "row: {j:?}");
        }
        let _ = writeln!(out, "ledger: {}", data.ledger["orders"][*no]);
        for e in data.events.iter().filter(|e| e.order_no == *no) {
            let _ = writeln!(
                out,
                "event #{} {} {} -> {} token={:?} worker={:?} {}",
                e.id, e.at, e.kind, e.state, e.lease_token, e.worker, e.detail
            );
        }
        for q in data
            .requests
            .iter()
            .filter(|q| q.order_no.as_deref() == Some(*no))
        {
            let _ = writeln!(out, "request {} {} from {:?}", q.at, q.endpoint, q.worker);
        }
    }
    std::fs::write(path, out)
}
