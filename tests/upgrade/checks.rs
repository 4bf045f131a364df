//! The invariants, checked once every order is terminal (or the bound passed), from the job
//! table, its events, the simulator's ledger and request log, and the workers' logs; and the
//! report of whatever the previous release tripped on in the new schema.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use atrip_simulator::LoggedRequest;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::procs::{Release, Worker};
use super::records::{Event, Job, TERMINAL};

pub struct Data {
    pub jobs: Vec<Job>,
    /// Oldest first.
    pub events: Vec<Event>,
    pub ledger: Value,
    pub requests: Vec<LoggedRequest>,
}

/// What the checks need of a worker process.
pub struct WorkerInfo {
    pub id: String,
    pub release: Release,
    pub lines: Vec<Value>,
    pub exit: Option<String>,
    pub exit_ok: bool,
    pub terminated: bool,
    /// `/readyz` right after start (old workers only).
    pub ready: Option<String>,
}

impl WorkerInfo {
    pub fn of(w: &Worker, ready: Option<String>) -> WorkerInfo {
        WorkerInfo {
            id: w.id.clone(),
            release: w.release,
            lines: w.log_lines(),
            exit: w.exit.map(|s| s.to_string()),
            exit_ok: w.exit.is_some_and(|s| s.success()),
            terminated: w.term_sent.is_some(),
            ready,
        }
    }
}

#[derive(Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub notes: Vec<String>,
    /// What the previous release tripped on in the new schema, and what it cost: not an
    /// invariant broken, but what the lead decides on.
    pub findings: Vec<String>,
    pub states: BTreeMap<String, usize>,
    pub double_charges: usize,
    pub lost: usize,
    pub stranded: usize,
    pub pay_requests_over_one: u64,
}

impl Report {
    pub fn state(&self, s: &str) -> usize {
        self.states.get(s).copied().unwrap_or(0)
    }
}

fn message(line: &Value) -> &str {
    line["fields"]["message"]
        .as_str()
        .or_else(|| line["raw"].as_str())
        .unwrap_or("")
}

fn line_time(line: &Value) -> Option<DateTime<Utc>> {
    line["timestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn short(v: &Value, n: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= n {
        s
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub fn check(orders: &[String], data: &Data, workers: &[WorkerInfo]) -> Report {
    let mut r = Report::default();
    let jobs: HashMap<&str, &Job> = data.jobs.iter().map(|j| (j.order_no.as_str(), j)).collect();
    let ledger = &data.ledger["orders"];
    let release_of = |worker: &str| -> Option<Release> {
        workers.iter().find(|w| w.id == worker).map(|w| w.release)
    };

    // ---- None lost, none stranded ----
    for no in orders {
        match jobs.get(no.as_str()) {
            None => {
                r.lost += 1;
                r.violations.push(format!("lost: {no} has no row"));
            }
            Some(j) => {
                *r.states.entry(j.state.clone()).or_default() += 1;
                if !TERMINAL.contains(&j.state.as_str()) {
                    r.stranded += 1;
                    r.violations.push(format!(
                        "stranded: {no} still {} (pay_attempts={} pay_not_sent={} pay_permits={}; last_error: {})",
                        j.state,
                        j.pay_attempts,
                        j.pay_not_sent,
                        j.pay_permits,
                        j.last_error.as_deref().unwrap_or("none")
                    ));
                }
            }
        }
    }
    for j in &data.jobs {
        if !orders.contains(&j.order_no) {
            r.violations
                .push(format!("unexpected row {} ({})", j.order_no, j.state));
        }
    }

    // ---- Charges and pay.do, from ATRIP's side ----
    let mut pay_senders: HashMap<&str, Vec<&str>> = HashMap::new();
    for q in data.requests.iter().filter(|q| q.endpoint == "pay.do") {
        if let Some(no) = q.order_no.as_deref() {
            pay_senders
                .entry(no)
                .or_default()
                .push(q.worker.as_deref().unwrap_or("?"));
        }
    }
    let mut old_repays = 0u64;
    for no in orders {
        let entry = &ledger[no.as_str()];
        let charges = entry["charges"].as_u64().unwrap_or(0);
        let pay_requests = entry["pay_requests"].as_u64().unwrap_or(0);
        let after_paid = entry["pay_after_paid_shown"].as_u64().unwrap_or(0);
        let state = jobs.get(no.as_str()).map_or("-", |j| j.state.as_str());
        if charges > 1 {
            r.double_charges += 1;
            r.violations.push(format!(
                "double charge: {no} charged {charges} times ({pay_requests} pay.do from {:?}; state {state})",
                pay_senders.get(no.as_str())
            ));
        }
        if after_paid > 0 {
            r.violations.push(format!(
                "pay.do after paid: {no} got {after_paid} pay.do after an answer showed it paid (from {:?})",
                pay_senders.get(no.as_str())
            ));
        }
        if state == "ticketed" && charges != 1 {
            r.violations.push(format!(
                "ticketed without one charge: {no} charged {charges} times"
            ));
        }
        if pay_requests > 1 {
            r.pay_requests_over_one += pay_requests - 1;
            let senders = pay_senders.get(no.as_str()).cloned().unwrap_or_default();
            // Which release sent the pay.do beyond the first.
            let extra: Vec<&str> = senders.iter().skip(1).copied().collect();
            let by_old = extra.iter().all(|w| release_of(w) == Some(Release::Old));
            if by_old {
                old_repays += extra.len() as u64;
                r.findings.push(format!(
                    "{no}: the previous release sent {} more pay.do by its own re-pay path (senders in order: {senders:?}); the new schema's CHECK pay_sends_within_permits did not refuse its intent (row: pay_attempts={} pay_not_sent={} pay_permits={})",
                    extra.len(),
                    jobs.get(no.as_str()).map_or(0, |j| j.pay_attempts),
                    jobs.get(no.as_str()).map_or(0, |j| j.pay_not_sent),
                    jobs.get(no.as_str()).map_or(0, |j| j.pay_permits),
                ));
            } else {
                r.violations.push(format!(
                    "more than one pay.do: {no} got {pay_requests} (senders in order: {senders:?}; state {state})"
                ));
            }
        }
    }
    let totals = &data.ledger["totals"];
    if totals["double_charges"].as_u64().unwrap_or(0) as usize != r.double_charges {
        r.violations.push(format!(
            "the ledger counts {} double charges over all orders, {} over ours",
            totals["double_charges"], r.double_charges
        ));
    }
    if old_repays > 0 {
        r.notes.push(format!(
            "{old_repays} pay.do beyond an order's first came from the previous release's re-pay path"
        ));
    }

    // ---- The workers: started, stopped, did work ----
    let mut by_worker: HashMap<&str, BTreeMap<&str, usize>> = HashMap::new();
    for e in &data.events {
        if let Some(w) = e.worker.as_deref() {
            *by_worker
                .entry(w)
                .or_default()
                .entry(e.kind.as_str())
                .or_default() += 1;
        }
    }
    // The previous release's recovery decisions (its events say why), to show which of its
    // paths ran against the new schema.
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    for e in &data.events {
        let by_old = e
            .worker
            .as_deref()
            .is_some_and(|w| release_of(w) == Some(Release::Old));
        if let (true, Some(d)) = (by_old, e.detail["decision"].as_str()) {
            *decisions.entry(d.to_owned()).or_default() += 1;
        }
    }
    r.notes.push(format!(
        "old workers' decisions on unpaid orders: {}",
        if decisions.is_empty() {
            "none".to_owned()
        } else {
            decisions
                .iter()
                .map(|(d, n)| format!("{n} x \"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    for release in [Release::Old, Release::New] {
        let mine: Vec<&WorkerInfo> = workers.iter().filter(|w| w.release == release).collect();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for w in &mine {
            for (k, n) in by_worker.get(w.id.as_str()).into_iter().flatten() {
                *kinds.entry(k).or_default() += n;
            }
        }
        r.notes.push(format!(
            "{} workers wrote: {}",
            release.name(),
            kinds
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        for needed in ["pay_intent", "pay_answered"] {
            if kinds.get(needed).copied().unwrap_or(0) == 0 {
                r.violations.push(format!(
                    "the {} workers wrote no {needed} event: the run did not exercise them",
                    release.name()
                ));
            }
        }
    }
    for w in workers {
        let started = w.lines.iter().any(|l| message(l) == "worker started");
        if !started {
            r.violations
                .push(format!("{} never logged \"worker started\"", w.id));
        }
        // main's own error print (`error: ...`) is how the binary says it could not run.
        for l in &w.lines {
            if let Some(raw) = l["raw"].as_str() {
                if raw.starts_with("error:") || raw.contains("panicked") {
                    r.violations.push(format!("{}: {raw}", w.id));
                }
            }
        }
        if !w.terminated {
            r.violations.push(format!(
                "{} exited on its own ({}), before any SIGTERM",
                w.id,
                w.exit.as_deref().unwrap_or("?")
            ));
        } else if !w.exit_ok {
            r.violations.push(format!(
                "{} did not exit 0 after SIGTERM ({})",
                w.id,
                w.exit.as_deref().unwrap_or("still running, killed")
            ));
        }
        if let Some(ready) = &w.ready {
            if ready != "200" {
                r.violations
                    .push(format!("{}: /readyz against the new schema: {ready}", w.id));
            }
        }
        // Errors logged while starting (before the first claim could have run).
        let start_errors: Vec<String> = w
            .lines
            .iter()
            .take_while(|l| message(l) != "worker started")
            .filter(|l| l["level"].as_str() == Some("ERROR"))
            .map(|l| short(l, 400))
            .collect();
        for e in start_errors {
            r.violations
                .push(format!("{} logged an error while starting: {e}", w.id));
        }
    }

    // ---- This release's own writes refused by its own schema (W2) ----
    for e in &data.events {
        if e.kind == "constraint_violated" {
            r.violations.push(format!(
                "{}: a write by {} was refused by the table: {}",
                e.order_no,
                e.worker.as_deref().unwrap_or("?"),
                short(&e.detail, 300)
            ));
        }
    }

    // ---- What the previous release tripped on in the new schema ----
    schema_trips(&mut r, data, workers, &jobs);
    released_intents(&mut r, data, workers, &jobs);
    r
}

/// Lines of the old workers' logs naming a database error that the old release's SQL meets
/// only because of the new schema (a constraint, a column or a table): which constraint, how
/// often, which orders, the log lines, and how long those rows were held up.
fn schema_trips(r: &mut Report, data: &Data, workers: &[WorkerInfo], jobs: &HashMap<&str, &Job>) {
    // (message, constraint) -> count, orders, an example line
    let mut kinds: BTreeMap<(String, String), (usize, BTreeSet<String>, String)> = BTreeMap::new();
    // order -> (first, last) time of a refused write, and the steps given up
    let mut per_order: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>, usize)> = BTreeMap::new();
    for w in workers.iter().filter(|w| w.release == Release::Old) {
        for l in &w.lines {
            let error = l["fields"]["error"].as_str().unwrap_or("");
            let schema = error.contains("violates")
                || error.contains("does not exist")
                || error.contains("constraint");
            if !schema {
                continue;
            }
            let what = constraint_name(error).unwrap_or_else(|| error.chars().take(120).collect());
            let entry = kinds
                .entry((message(l).to_owned(), what))
                .or_insert_with(|| (0, BTreeSet::new(), format!("{}: {}", w.id, short(l, 700))));
            entry.0 += 1;
            if let Some(no) = l["span"]["order_no"].as_str() {
                entry.1.insert(no.to_owned());
                if let Some(t) = line_time(l) {
                    let e = per_order.entry(no.to_owned()).or_insert((t, t, 0));
                    e.0 = e.0.min(t);
                    e.1 = e.1.max(t);
                    if message(l).starts_with("step could not record") {
                        e.2 += 1;
                    }
                }
            }
        }
    }
    if kinds.is_empty() {
        r.notes
            .push("the previous release logged no database error caused by the new schema".into());
        return;
    }
    for ((msg, what), (n, orders, example)) in &kinds {
        r.findings.push(format!(
            "old workers logged {n} x \"{msg}\" with {what}, for {} orders; e.g. {example}",
            orders.len()
        ));
    }
    // How long each affected row was held up: from its first refused write until the first
    // event after its last one that is not an old worker's bare claim (the row moving on).
    let mut held = Vec::new();
    let mut lines = Vec::new();
    for (no, (first, last, gave_up)) in &per_order {
        let resumed = data
            .events
            .iter()
            .find(|e| e.order_no == *no && e.at > *last && e.kind != "claimed");
        let ledger = &data.ledger["orders"][no.as_str()];
        let final_state = jobs.get(no.as_str()).map_or("-", |j| j.state.as_str());
        match resumed {
            Some(e) => {
                let secs = (e.at - *first).num_milliseconds() as f64 / 1000.0;
                held.push(secs);
                lines.push(format!(
                    "{no}: refused from {} to {} ({gave_up} steps given up), moved on {secs:.1} s after the first refusal by {} ({} -> {}), final {final_state}, pay.do={} charges={}",
                    first.format("%H:%M:%S%.3f"),
                    last.format("%H:%M:%S%.3f"),
                    e.worker.as_deref().unwrap_or("?"),
                    e.kind,
                    e.state,
                    ledger["pay_requests"],
                    ledger["charges"],
                ));
            }
            None => lines.push(format!(
                "{no}: refused from {} to {}, never moved on; final {final_state}",
                first.format("%H:%M:%S%.3f"),
                last.format("%H:%M:%S%.3f")
            )),
        }
    }
    if !held.is_empty() {
        let max = held.iter().cloned().fold(0.0, f64::max);
        let mean = held.iter().sum::<f64>() / held.len() as f64;
        r.findings.push(format!(
            "rows held up by those refusals: {} orders, {mean:.1} s on average, {max:.1} s at most (lease {} s; the old worker retries the refused write for half its lease, then leaves the row leased until the lease runs out)",
            held.len(),
            super::run::LEASE.as_secs(),
        ));
    }
    for l in lines.iter().take(12) {
        r.findings.push(format!("  {l}"));
    }
}

/// Orders whose pay intent an old worker gave back at SIGTERM before sending anything: the
/// previous release records that as a plain `released` event and does not count the intent as
/// never sent (it has no `pay_not_sent`), so this release reads the row as "a pay.do may have
/// reached ATRIP" and will not pay it by itself.
fn released_intents(
    r: &mut Report,
    data: &Data,
    workers: &[WorkerInfo],
    jobs: &HashMap<&str, &Job>,
) {
    let old: BTreeSet<&str> = workers
        .iter()
        .filter(|w| w.release == Release::Old)
        .map(|w| w.id.as_str())
        .collect();
    let mut intents: HashMap<(i64, i64), ()> = HashMap::new();
    for e in &data.events {
        if e.kind == "pay_intent" {
            if let Some(t) = e.lease_token {
                intents.insert((e.job_id, t), ());
            }
        }
    }
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &data.events {
        let no = &e.order_no;
        let by_old = e.worker.as_deref().is_some_and(|w| old.contains(w));
        if by_old
            && e.kind == "released"
            && e.state == "paying"
            && e.lease_token
                .is_some_and(|t| intents.contains_key(&(e.job_id, t)))
        {
            let ledger = &data.ledger["orders"][no.as_str()];
            let job = jobs.get(no.as_str());
            found.entry(job.map_or("-".into(), |j| j.state.clone())).or_default().push(format!(
                "{no} (pay.do={} charges={} pay_attempts={} pay_not_sent={} pay_permits={}; last_error: {})",
                ledger["pay_requests"],
                ledger["charges"],
                job.map_or(0, |j| j.pay_attempts),
                job.map_or(0, |j| j.pay_not_sent),
                job.map_or(0, |j| j.pay_permits),
                job.and_then(|j| j.last_error.as_deref())
                    .map(|s| s.chars().take(160).collect::<String>())
                    .unwrap_or_default()
            ));
        }
    }
    if found.is_empty() {
        r.notes
            .push("no old worker gave back an unsent pay intent at SIGTERM".into());
        return;
    }
    let total: usize = found.values().map(Vec::len).sum();
    r.findings.push(format!(
        "{total} pay intents were given back unsent by an old worker at SIGTERM (event 'released', the intent not counted as never sent): final states {}",
        found
            .iter()
            .map(|(s, v)| format!("{s}={}", v.len()))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    for (_, list) in found {
        for l in list.iter().take(4) {
            r.findings.push(format!("  {l}"));
        }
    }
}

/// `constraint "name"` in a PostgreSQL error message.
fn constraint_name(error: &str) -> Option<String> {
    let start = error.find("constraint \"")? + "constraint \"".len();
    let end = error[start..].find('"')? + start;
    Some(format!("constraint {}", &error[start..end]))
}
