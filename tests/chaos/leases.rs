//! The lease invariants: every write fenced by the row's latest lease token, and frozen
//! workers (SIGSTOPped past their lease by this program, or stopped by their failpoint right
//! before a pay.do) silent once their leases ran out, except for the one late pay.do rule P2
//! allows.
//!
//! Claims of `paying` and `ticketing` rows write no event, so the tokens the events carry are
//! the only record of the lease sequence: a claim bumps the row's token, a fenced write carries
//! the token of the lease it holds, so in the order the events were written (their ids: every
//! write locks the row first) the tokens never go down.

use super::checks::{Data, Event, EventExt, Expect, Limits, Pause, PauseKind, Report};
use super::orders::Order;

/// Tokens never go down in an order's history; a claim's token is above every earlier one;
/// one token (one lease) is written under by one worker only, except for evidence of payment:
/// the keeper writes it without a lease (rule P3a: "a worker whose lease expired writes
/// nothing but evidence of payment"), and its evidence events carry the token of
/// the step that saw the evidence, however stale. That the keeper's worker was handed an answer
/// showing the order paid is checked in `paid.rs` (`evidence_came_from_atrip`).
pub fn fencing(r: &mut Report, o: &Order, evs: &[&Event]) {
    let mut latest: Option<&Event> = None;
    let mut holder: std::collections::HashMap<i64, &Event> = Default::default();
    for e in evs {
        let Some(token) = e.lease_token else { continue };
        if e.is_evidence() {
            continue;
        }
        let top = latest.and_then(|l| l.lease_token);
        if e.is_claim() && top.is_some_and(|t| token <= t) {
            r.fail(
                "claim_tokens_increase",
                Some(&o.no),
                format!(
                    "claim #{} by {:?} with token {token}, not above #{}'s {top:?}",
                    e.id,
                    e.worker,
                    latest.map_or(0, |l| l.id)
                ),
            );
        } else if top.is_some_and(|t| token < t) {
            r.fail(
                "fenced_writes",
                Some(&o.no),
                format!(
                    "event #{} {} by {:?} with stale token {token}, after #{} {} by {:?} with token {top:?}",
                    e.id,
                    e.kind,
                    e.worker,
                    latest.map_or(0, |l| l.id),
                    latest.map_or("", |l| l.kind.as_str()),
                    latest.and_then(|l| l.worker.as_deref())
                ),
            );
        }
        if !e.is_operator() {
            match holder.get(&token) {
                Some(first) if first.worker != e.worker => r.fail(
                    "one_writer_per_lease",
                    Some(&o.no),
                    format!(
                        "event #{} {} by {:?} under token {token}, which #{} was written under by {:?}",
                        e.id, e.kind, e.worker, first.id, first.worker
                    ),
                ),
                Some(_) => {}
                None => {
                    holder.insert(token, e);
                }
            }
        }
        if top.is_none_or(|t| token >= t) {
            latest = Some(e);
        }
    }
}

/// Every frozen worker: nothing written or sent while it was stopped past its lease; after
/// SIGCONT, nothing written under a lease taken over meanwhile. A worker stopped before a
/// pay.do sends that pay.do after SIGCONT (its intent's one send, rule P2), never before.
/// The run saw the stops it was asked for, and the one frozen pause.
pub fn pauses(r: &mut Report, pauses: &[Pause], data: &Data, limits: &Limits, expect: &Expect) {
    for p in pauses {
        paused_worker(r, p, data, limits);
    }
    let stops: Vec<&Pause> = pauses
        .iter()
        .filter(|p| p.kind == PauseKind::StopBeforePay)
        .collect();
    if stops.len() < expect.stops {
        r.fail(
            "stops",
            None,
            format!(
                "{} workers stopped before a pay.do; the run asked for {}",
                stops.len(),
                expect.stops
            ),
        );
    }
    if !pauses.iter().any(|p| p.kind == PauseKind::Frozen) {
        r.fail(
            "paused_worker",
            None,
            "no worker was paused (none held a lease at any moment tried)".into(),
        );
    }
    let mut ends: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in &stops {
        let Some(no) = p.order.as_deref() else {
            continue;
        };
        let late = data.requests.iter().any(|q| {
            q.endpoint == "pay.do"
                && q.order_no.as_deref() == Some(no)
                && q.worker.as_deref() == Some(p.worker.as_str())
                && q.at >= p.resumed_at
        });
        if late {
            r.late_sends += 1;
        } else {
            r.fail(
                "stop_before_pay_sends_late",
                Some(no),
                format!(
                    "{} stopped before its pay.do and was resumed at {}, but that pay.do never arrived",
                    p.worker, p.resumed_at
                ),
            );
        }
        let state = data
            .jobs
            .iter()
            .find(|j| j.order_no == no)
            .map_or("missing", |j| j.state.as_str());
        *ends.entry(state).or_default() += 1;
    }
    let taken = stops.iter().filter(|p| stop_row_taken(p)).count();
    r.notes.push(format!(
        "{} stops before pay.do: {} rows taken over while stopped, {} late pay.do arrived after SIGCONT; those orders ended {ends:?}",
        stops.len(),
        taken,
        r.late_sends
    ));
}

/// Whether the row a stopped worker was about to pay was claimed by another worker meanwhile.
fn stop_row_taken(p: &Pause) -> bool {
    p.held
        .iter()
        .any(|(id, no, _)| Some(no) == p.order.as_ref() && p.reclaimed.contains(id))
}

/// One frozen worker.
fn paused_worker(r: &mut Report, p: &Pause, data: &Data, limits: &Limits) {
    let expired = p.stopped_at + chrono::Duration::from_std(limits.lease).unwrap_or_default();
    let mine = |w: &Option<String>| w.as_deref() == Some(p.worker.as_str());
    // Evidence of payment is written without a lease (rule P3a): a worker that woke with an
    // answer showing the order paid writes it whatever became of its lease.
    for e in data
        .events
        .iter()
        .filter(|e| mine(&e.worker) && !e.is_evidence())
    {
        if e.at > expired && e.at < p.resumed_at {
            r.fail(
                "paused_worker_writes",
                Some(&e.order_no),
                format!(
                    "event #{} {} while {} was stopped past its lease",
                    e.id, e.kind, p.worker
                ),
            );
        }
        let held = p
            .held
            .iter()
            .any(|(job, _, token)| *job == e.job_id && Some(*token) == e.lease_token);
        if e.at >= p.resumed_at && held && p.reclaimed.contains(&e.job_id) {
            r.fail(
                "paused_worker_writes",
                Some(&e.order_no),
                format!(
                    "event #{} {} by {} after SIGCONT, under the lease it held before it stopped (taken over meanwhile)",
                    e.id, e.kind, p.worker
                ),
            );
        }
    }
    for q in data.requests.iter().filter(|q| mine(&q.worker)) {
        if q.at > expired && q.at < p.resumed_at {
            r.fail(
                "paused_worker_requests",
                q.order_no.as_deref(),
                format!(
                    "{} at {} while {} was stopped past its lease",
                    q.endpoint, q.at, p.worker
                ),
            );
        }
        let stop_order = p.kind == PauseKind::StopBeforePay && q.order_no == p.order;
        if stop_order && q.endpoint == "pay.do" && q.at >= p.stopped_at && q.at < p.resumed_at {
            r.fail(
                "stop_before_pay_sends_late",
                q.order_no.as_deref(),
                format!(
                    "pay.do at {} from {} while it was stopped before that pay.do",
                    q.at, p.worker
                ),
            );
        }
    }
    if p.kind == PauseKind::Frozen {
        let lost_lines = super::procs::grep(&p.log, "lease lost").len();
        r.notes.push(format!(
            "paused worker {}: held {} leases when stopped, {} taken over during the pause; its log shows {lost_lines} \"lease lost\"",
            p.worker,
            p.held.len(),
            p.reclaimed.len()
        ));
    }
}
