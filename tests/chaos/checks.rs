//! The invariants of docs/design.md, checked once every order is terminal, from four
//! independent records: the job table, the events table, the simulator's ledger (what ATRIP
//! charged and answered) and its request log (who sent what, when). Every time compared here
//! is the database's (`ticketing_now()`, which writes every event) or the simulator's, both
//! this machine's clock; no worker's wall clock is read (one of them is skewed on purpose).
//!
//! Claims of `paying` and `ticketing` rows write no event any more (only a claim of a
//! `pending` row does, as its `pay_intent`), so who held a lease when is read off the lease
//! tokens the events carry (`leases.rs`), never off claim events.
//!
//! A fifth record, when the workers reach ATRIP through the hostile proxy (`atrip_proxy.rs`):
//! every exchange, what ATRIP answered, and whether that answer reached the worker. What a
//! worker sent is read there (the proxy saw every request, also those it never forwarded);
//! what a worker could know about a payment, and what it must therefore have recorded, is
//! checked in `paid.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use atrip_simulator::LoggedRequest;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::atrip_proxy::Exchange;
use super::leases;
use super::orders::Order;
use super::paid;
use super::records::{self, TERMINAL};

pub use super::records::{Event, Job};

/// What the checks read off an event.
pub trait EventExt {
    /// Written by a claim statement (which bumps the lease token): the claim of a `pending`
    /// row, its pay intent. Claims of other rows write nothing.
    fn is_claim(&self) -> bool;
    /// Written by an operator (or a webhook), not by a worker's fenced write.
    fn is_operator(&self) -> bool;
    /// `orderStatus` of the query answer this event records (in place, or inside a new
    /// intent's event).
    fn order_status(&self) -> Option<&str>;
    /// The class of the pay.do answer this event records.
    fn pay_answer(&self) -> Option<&str>;
    /// Evidence of payment written without a lease (rule P3a): recorded in the row
    /// (`evidence_recorded`) or noted while the step's write of it waited (`evidence_seen`).
    /// Either carries the token of the step that saw the evidence, however stale.
    fn is_evidence(&self) -> bool;
}

impl EventExt for Event {
    fn is_claim(&self) -> bool {
        self.kind == "pay_intent" && self.detail.get("claimed_from").is_some()
    }

    fn is_operator(&self) -> bool {
        self.kind.starts_with("operator_") || self.kind == "webhook_received"
    }

    fn order_status(&self) -> Option<&str> {
        self.detail
            .get("orderStatus")
            .or_else(|| self.detail.get("answer")?.get("orderStatus"))
            .and_then(Value::as_str)
    }

    fn pay_answer(&self) -> Option<&str> {
        (self.kind == "pay_answered")
            .then(|| self.detail.get("answer").and_then(Value::as_str))
            .flatten()
    }

    fn is_evidence(&self) -> bool {
        self.kind == "evidence_recorded" || self.kind == "evidence_seen"
    }
}

/// How a worker came to be frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseKind {
    /// SIGSTOPped by this program, preferably while waiting on a slow ATRIP call.
    Frozen,
    /// Stopped itself (failpoint `stop-before-pay`) right before a pay.do left.
    StopBeforePay,
}

/// A frozen worker: who, when, and the leases it held when it froze.
#[derive(Debug, Clone)]
pub struct Pause {
    pub kind: PauseKind,
    pub worker: String,
    pub log: std::path::PathBuf,
    /// When this program saw it stopped (a self-stop happened up to one tick earlier).
    pub stopped_at: DateTime<Utc>,
    pub resumed_at: DateTime<Utc>,
    /// `(job id, order, lease token)` of every row it held when stopped.
    pub held: Vec<(i64, String, i64)>,
    /// Of those, the rows another worker claimed while it was stopped.
    pub reclaimed: std::collections::HashSet<i64>,
    /// A stop before pay.do: the order it was about to pay (from its log).
    pub order: Option<String>,
}

/// The protocol's time bounds, as the workers were configured.
pub struct Limits {
    pub lease: Duration,
    /// `worker.unpaid_settle_s`: no order goes to review for showing unpaid after a send
    /// sooner than this after its phase began.
    pub unpaid_settle: Duration,
    /// `atrip.pay_timeout_ms` and `atrip.query_timeout_ms`: an answer written to a worker
    /// later than this after its request arrived may have found the worker gone.
    pub pay_timeout: Duration,
    pub query_timeout: Duration,
}

/// What the run did and so what must show in the records.
#[derive(Default)]
pub struct Expect {
    /// Stops before pay.do the run had to see (`--stops`).
    pub stops: usize,
    /// Storms started.
    pub storms: usize,
    /// Prefix of the skewed worker processes' ids, if any ran.
    pub skewed: Option<String>,
    /// Failovers, cuts of the workers' database longer than the lease, and outside row locks
    /// the run had to make (the ones made are in [`Data::done`]).
    pub failovers: usize,
    pub db_cuts: usize,
    pub row_locks: usize,
    /// The workers ran with the `panic` failpoint: some step must have panicked.
    pub panics: bool,
    /// The workers went through the hostile proxy: every kind of hostile answer must have
    /// been given, and `pay.do` must have met one before and one after ATRIP took it.
    pub hostile: bool,
}

/// What the schedule did, beside what the records show.
#[derive(Debug, Default, Clone)]
pub struct Done {
    pub failovers: usize,
    pub db_cuts: usize,
    pub row_locks: usize,
}

pub struct Data {
    pub jobs: Vec<Job>,
    pub events: Vec<Event>,
    pub ledger: Value,
    /// What the workers sent: the proxy's log when they went through it (requests it never
    /// forwarded included, at their arrival there), else the simulator's.
    pub requests: Vec<LoggedRequest>,
    /// The ATRIP proxy's exchanges (empty without the proxy).
    pub exchanges: Vec<Exchange>,
    /// Worker processes that ended during the run (killed, or on their own), and when.
    pub ended: Vec<(String, DateTime<Utc>)>,
    pub done: Done,
}

/// The job table and its events.
pub async fn load_db(pool: &PgPool) -> Result<(Vec<Job>, Vec<Event>), sqlx::Error> {
    Ok((
        records::load_jobs(pool).await?,
        records::load_events(pool).await?,
    ))
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
    /// Σ max(0, pay_requests − 1) over the orders, from the ledger's per-order counts.
    pub pay_requests_over_one: u64,
    /// Intents recorded as never sent (the row's `pay_not_sent`, summed).
    pub not_sent: i64,
    /// Stops before pay.do whose pay.do arrived after SIGCONT.
    pub late_sends: usize,
    /// Hand-overs to a person for showing unpaid after a send, and the shortest time into
    /// their phase one came (the database's time).
    pub unpaid_reviews: usize,
    pub earliest_unpaid_review: Option<Duration>,
    /// Orders ATRIP charged that ended in `needs_review` with no answer any worker got ever
    /// showing them paid (allowed, see `paid.rs`), and the orders whose row records the
    /// payment.
    pub charged_unknown_reviews: Vec<String>,
    /// Steps that panicked (events `step_panicked`).
    pub panics: usize,
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

pub fn check(
    orders: &[Order],
    data: &Data,
    pauses: &[Pause],
    limits: &Limits,
    expect: &Expect,
) -> Report {
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
    let mut exchanges: HashMap<&str, Vec<&Exchange>> = HashMap::new();
    for x in &data.exchanges {
        if let Some(no) = &x.order_no {
            exchanges.entry(no.as_str()).or_default().push(x);
        }
    }
    let no_events = Vec::new();
    let no_requests = Vec::new();
    let no_exchanges = Vec::new();
    for o in orders {
        let evs = events.get(o.no.as_str()).unwrap_or(&no_events);
        let reqs = requests.get(o.no.as_str()).unwrap_or(&no_requests);
        let xs = exchanges.get(o.no.as_str()).unwrap_or(&no_exchanges);
        let job = jobs.get(o.no.as_str()).copied();
        rows_and_ledger(&mut r, o, job, &data.ledger);
        if let Some(job) = job {
            intents(&mut r, o, job, evs, reqs);
            operator_retries(&mut r, o, evs, reqs);
            paid::order(&mut r, o, job, evs, xs, data, pauses, limits);
        }
        review_not_early(&mut r, o, evs, limits);
        leases::fencing(&mut r, o, evs);
    }
    paid::faults(&mut r, data, expect);
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
    for e in data
        .events
        .iter()
        .filter(|e| e.kind == "constraint_violated")
    {
        r.fail(
            "no_refused_writes",
            Some(&e.order_no),
            format!(
                "event #{} by {:?}: the table refused a write ({})",
                e.id, e.worker, e.detail
            ),
        );
    }
    let totals = &data.ledger["totals"];
    let ledger_over_one = totals["pay_requests_over_one"].as_u64();
    if ledger_over_one.is_some_and(|n| n != r.pay_requests_over_one) {
        r.fail(
            "pay_requests_over_one",
            None,
            format!(
                "the ledger's total says {ledger_over_one:?}, its orders add up to {}",
                r.pay_requests_over_one
            ),
        );
    }
    if expect.storms > 0 && totals["storm_answers"].as_u64().unwrap_or(0) == 0 {
        r.fail(
            "storms_answered",
            None,
            format!("{} storms started but no query met one", expect.storms),
        );
    }
    if let Some(earliest) = r.earliest_unpaid_review {
        r.notes.push(format!(
            "{} hand-overs for showing unpaid after a send, the earliest {:.1} s into its phase (unpaid_settle_s {})",
            r.unpaid_reviews,
            earliest.as_secs_f64(),
            limits.unpaid_settle.as_secs()
        ));
    }
    leases::pauses(&mut r, pauses, data, limits, expect);
    skewed_worker(&mut r, data, expect);
    r
}

/// Terminal, not lost, charged at most once, at most one pay.do per order, none after an
/// answer showed the order paid, and the row agrees with ATRIP.
fn rows_and_ledger(r: &mut Report, o: &Order, job: Option<&Job>, ledger: &Value) {
    let no = o.no.as_str();
    let Some(job) = job else {
        r.lost += 1;
        r.fail("lost", Some(no), "no row in ticketing_jobs".into());
        return;
    };
    *r.states.entry(job.state.clone()).or_default() += 1;
    r.not_sent += i64::from(job.pay_not_sent);
    if !TERMINAL.contains(&job.state.as_str()) {
        r.stranded += 1;
        r.fail("stranded", Some(no), format!("still {}", job.state));
    }
    let entry = &ledger["orders"][no];
    let n = |k: &str| entry[k].as_u64().unwrap_or(0);
    let (charges, pays) = (n("charges"), n("pay_requests"));
    if charges > 1 {
        r.double_charges += 1;
        r.fail(
            "double_charge",
            Some(no),
            format!(
                "charged {charges} times (at most {} payments processing at once)",
                n("max_overlapping_payments")
            ),
        );
    }
    // The run never says `retry --repay` and ATRIP never refuses a connection, so no order
    // may ever get a second pay.do (docs/design.md, rule P2).
    r.pay_requests_over_one += pays.saturating_sub(1);
    if pays > 1 {
        r.fail(
            "pay_requests_over_one",
            Some(no),
            format!(
                "{pays} pay.do reached ATRIP (statuses {})",
                entry["pay_statuses"]
            ),
        );
    }
    // Every pay.do that reached ATRIP is one the row counts as possibly sent: an intent
    // recorded as never sent really never left.
    let sends = i64::from(job.pay_attempts - job.pay_not_sent);
    if pays as i64 > sends {
        r.fail(
            "requests_within_sends",
            Some(no),
            format!(
                "{pays} pay.do reached ATRIP but the row counts {} intents, {} of them never sent",
                job.pay_attempts, job.pay_not_sent
            ),
        );
    }
    if sends > 1 || sends > i64::from(job.pay_permits) {
        r.fail(
            "sends_within_permit",
            Some(no),
            format!(
                "{sends} intents may have reached ATRIP, {} permits",
                job.pay_permits
            ),
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
    // Its one pay.do was reset before the charge: nothing may ever pay it again, so it can
    // only end with a person, uncharged.
    if o.lost_pay && (charges != 0 || job.state != "needs_review" || job.paid) {
        r.fail(
            "lost_pay_goes_to_review",
            Some(no),
            format!(
                "its pay.do was reset before the charge, yet it is {} with {charges} charges (paid_at set: {})",
                job.state, job.paid
            ),
        );
    }
}

/// Whether the intent `i` (an event of `evs`) was recorded as never sent: by its own claim
/// (same lease token) before the next intent, as a refusal before sending, a connection that
/// could not be opened, the row given back with the intent open, or a step that panicked
/// before its send began (rule W5).
fn not_sent(evs: &[&Event], i: &Event) -> bool {
    evs.iter()
        .skip_while(|e| e.id <= i.id)
        .take_while(|e| e.kind != "pay_intent")
        .any(|e| {
            e.lease_token == i.lease_token
                && (e.kind == "pay_not_sent"
                    || (e.kind == "released" && !withdraws(e))
                    || e.pay_answer() == Some("not_sent")
                    || (e.kind == "step_panicked"
                        && e.detail.get("not_sent").and_then(Value::as_bool) == Some(true)))
        })
}

/// A release that withdrew a claim's intent whose answer was lost (rule P1c): the row went
/// back to `pending` and its `pay_attempts` back down, as if never claimed.
fn withdraws(e: &Event) -> bool {
    e.kind == "released" && e.detail.get("withdrawn").and_then(Value::as_bool) == Some(true)
}

/// Whether the intent `i` was withdrawn (rule P1c): it counts neither as an attempt nor as a
/// send.
fn withdrawn(evs: &[&Event], i: &Event) -> bool {
    evs.iter()
        .skip_while(|e| e.id <= i.id)
        .take_while(|e| e.kind != "pay_intent")
        .any(|e| e.lease_token == i.lease_token && withdraws(e))
}

/// Intents: one event per attempt, recorded before the pay.do it allows, by the worker that
/// sends it; a second one only after the first was recorded as never sent (or an operator's
/// `--repay`), and only on an answer showing the order unpaid.
fn intents(r: &mut Report, o: &Order, job: &Job, evs: &[&Event], reqs: &[&LoggedRequest]) {
    let no = o.no.as_str();
    let intents: Vec<&Event> = evs
        .iter()
        .copied()
        .filter(|e| e.kind == "pay_intent" && !withdrawn(evs, e))
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
    let marked = intents.iter().filter(|i| not_sent(evs, i)).count();
    if marked != job.pay_not_sent as usize {
        r.fail(
            "not_sent_matches_row",
            Some(no),
            format!(
                "{marked} intents recorded as never sent in the events, pay_not_sent {}",
                job.pay_not_sent
            ),
        );
    }
    for pair in intents.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        let repay = evs
            .iter()
            .any(|e| e.id > prev.id && e.id < next.id && e.kind == "operator_repay");
        if !not_sent(evs, prev) && !repay {
            r.fail(
                "second_intent_after_not_sent",
                Some(no),
                format!(
                    "pay_intent #{} by {:?} although #{} was not recorded as never sent (and no --repay)",
                    next.id, next.worker, prev.id
                ),
            );
        }
        let unpaid_before = evs.iter().any(|e| {
            e.id > prev.id
                && e.id < next.id
                && e.kind == "query_answered"
                && e.order_status() == Some("0")
        });
        if next.order_status() != Some("0") && !unpaid_before {
            r.fail(
                "repay_needs_unpaid_answer",
                Some(no),
                format!(
                    "pay_intent #{} with no unpaid answer since #{}",
                    next.id, prev.id
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
        // Whoever sends a pay.do holds its intent: a worker frozen before the send may send
        // it late (rule P2), but never one for another worker's intent.
        let sender = q.worker.as_deref();
        let own_pays = pays[..=k]
            .iter()
            .filter(|p| p.worker.as_deref() == sender)
            .count();
        let own_intents = intents
            .iter()
            .filter(|i| i.at <= q.at && i.worker.as_deref() == sender)
            .count();
        if own_intents < own_pays {
            r.fail(
                "pay_by_intent_holder",
                Some(no),
                format!(
                    "pay.do at {} from {sender:?}, its pay.do #{own_pays} for this order, after only {own_intents} intents of its own",
                    q.at
                ),
            );
        }
    }
}

/// An operator's plain `retry` resumes with an order query and grants no new permit once a
/// pay.do may have reached ATRIP (rule P7). A query that shows the order unpaid to a row that
/// may pay is written with its new intent, as one event (`pay_intent` carrying the answer):
/// that resumes with a query too, when ATRIP's log shows the query between the two.
fn operator_retries(r: &mut Report, o: &Order, evs: &[&Event], reqs: &[&LoggedRequest]) {
    for (k, e) in evs.iter().enumerate() {
        if e.kind != "operator_retry" {
            continue;
        }
        let intents = evs[..k]
            .iter()
            .filter(|i| i.kind == "pay_intent" && !withdrawn(evs, i));
        let sends = intents.filter(|i| !not_sent(evs, i)).count();
        let charged_nothing = evs[..k]
            .iter()
            .rev()
            .find_map(|p| p.pay_answer())
            .is_some_and(|a| a == "refused" || a == "unauthorized");
        let may_pay = e.detail.get("may_pay").and_then(Value::as_bool) == Some(true);
        if may_pay && sends > 0 && !charged_nothing {
            r.fail(
                "plain_retry_grants_no_permit",
                Some(&o.no),
                format!(
                    "operator_retry #{} may pay again after {sends} intents that may have reached ATRIP",
                    e.id
                ),
            );
        }
        // A row given back, or a step that panicked, decided nothing (a panicked step's new
        // intent, if it made one, is its own event and comes first). Evidence of payment is
        // written by whoever saw it, without a lease (rule P3a): an earlier step's late answer
        // may land after the retry, and decides nothing about how the retry resumes.
        let first = evs[k + 1..].iter().find(|n| {
            !n.is_operator()
                && !n.is_evidence()
                && n.kind != "released"
                && n.kind != "step_panicked"
        });
        let asked_first = |n: &Event| {
            n.kind == "query_answered"
                || (n.kind == "pay_intent"
                    && !n.is_claim()
                    && n.detail.get("answer").is_some()
                    && reqs.iter().any(|q| {
                        q.endpoint == "queryOrderDetails.do"
                            && q.at >= e.at
                            && q.at <= n.at
                            && q.worker == n.worker
                    }))
        };
        if let Some(n) = first.filter(|n| !asked_first(n)) {
            r.fail(
                "retry_resumes_with_query",
                Some(&o.no),
                format!(
                    "operator_retry #{} followed by {} #{}, not an order query",
                    e.id, n.kind, n.id
                ),
            );
        }
    }
}

/// "Unpaid after a send" goes to a person only once `unpaid_settle` has passed since the
/// phase began, in the database's time. A worker that judged it by its own wall clock (one
/// runs a minute ahead) would hand orders over at their first unpaid answer.
fn review_not_early(r: &mut Report, o: &Order, evs: &[&Event], limits: &Limits) {
    let mut phase_start: Option<DateTime<Utc>> = None;
    let mut state = "pending";
    let mut last_pay: Option<&str> = None;
    for (k, e) in evs.iter().enumerate() {
        if e.kind == "pay_intent" || e.kind.starts_with("operator_") {
            phase_start = Some(e.at);
        }
        if e.kind == "pay_intent" {
            last_pay = None;
        }
        if let Some(a) = e.pay_answer() {
            last_pay = Some(a);
        }
        let sends = evs[..k]
            .iter()
            .filter(|i| i.kind == "pay_intent" && !not_sent(evs, i) && !withdrawn(evs, i))
            .count();
        let settle_review = state == "paying"
            && e.kind == "query_answered"
            && e.state == "needs_review"
            && e.order_status() == Some("0")
            && sends > 0
            && !matches!(last_pay, Some("payment_error" | "unauthorized"));
        if let (true, Some(start)) = (settle_review, phase_start) {
            let after = (e.at - start).to_std().unwrap_or_default();
            r.unpaid_reviews += 1;
            r.earliest_unpaid_review =
                Some(r.earliest_unpaid_review.map_or(after, |e| e.min(after)));
            if after < limits.unpaid_settle {
                r.fail(
                    "review_not_early",
                    Some(&o.no),
                    format!(
                        "event #{} by {:?} sent it to needs_review for showing unpaid {} ms into its phase (unpaid_settle_s is {} s)",
                        e.id,
                        e.worker,
                        after.as_millis(),
                        limits.unpaid_settle.as_secs()
                    ),
                );
            }
        }
        state = &e.state;
    }
}

/// The skewed worker took part: it claimed, paid and wrote like the others.
fn skewed_worker(r: &mut Report, data: &Data, expect: &Expect) {
    let Some(prefix) = expect.skewed.as_deref() else {
        return;
    };
    let skewed = |w: &Option<String>| w.as_deref().is_some_and(|w| w.starts_with(prefix));
    let events = data.events.iter().filter(|e| skewed(&e.worker)).count();
    let pays = data
        .requests
        .iter()
        .filter(|q| q.endpoint == "pay.do" && skewed(&q.worker))
        .count();
    if events == 0 || pays == 0 {
        r.fail(
            "skewed_worker_worked",
            None,
            format!("the skewed worker ({prefix}*) wrote {events} events and sent {pays} pay.do"),
        );
    }
    r.notes.push(format!(
        "skewed worker ({prefix}*, clock ahead): {events} events, {pays} pay.do"
    ));
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
    histories(&mut out, named.into_iter().take(50), data);
    std::fs::write(path, out)
}

/// Writes the history of every order that did not end ticketed (`--keep-logs`).
pub fn dump_unticketed(data: &Data, path: &std::path::Path) -> std::io::Result<()> {
    let mut out = String::new();
    let names = data
        .jobs
        .iter()
        .filter(|j| j.state != "ticketed")
        .map(|j| j.order_no.as_str());
    histories(&mut out, names, data);
    std::fs::write(path, out)
}

/// Each order's row, events, ledger entry, requests and exchanges.
fn histories<'a>(out: &mut String, names: impl Iterator<Item = &'a str>, data: &Data) {
    for no in names {
        let _ = writeln!(out, "\n=== {no}");
        for j in data.jobs.iter().filter(|j| j.order_no == no) {
            let _ = writeln!(out, "row: {j:?}");
        }
        let _ = writeln!(out, "ledger: {}", data.ledger["orders"][no]);
        for e in data.events.iter().filter(|e| e.order_no == no) {
            let _ = writeln!(
                out,
                "event #{} {} {} -> {} token={:?} worker={:?} {}",
                e.id, e.at, e.kind, e.state, e.lease_token, e.worker, e.detail
            );
        }
        for q in data
            .requests
            .iter()
            .filter(|q| q.order_no.as_deref() == Some(no))
        {
            let _ = writeln!(out, "request {} {} from {:?}", q.at, q.endpoint, q.worker);
        }
        for x in data
            .exchanges
            .iter()
            .filter(|x| x.order_no.as_deref() == Some(no))
        {
            let _ = writeln!(
                out,
                "exchange {} {} from {:?}: hostile {:?}, forwarded {}, ATRIP answered {:?}, delivered after {:?}",
                x.at, x.endpoint, x.worker, x.hostile, x.forwarded, x.atrip, x.delivered
            );
        }
    }
}
