//! The lease invariants: writes fenced by the latest claim, no request for a row another worker
//! has claimed, and the paused worker silent once its leases ran out.

use ticketing_tracker::simulator::LoggedRequest;

use crate::checks::{Data, Event, EventExt, Limits, Pause, Report};
use crate::orders::Order;

/// Every write after a claim carries the lease token of the latest claim, by the worker that
/// made it: a write with an older token would be a write after the lease was lost.
pub fn fencing(r: &mut Report, o: &Order, evs: &[&Event]) {
    let mut current: Option<(i64, Option<&str>)> = None;
    for e in evs {
        let Some(token) = e.lease_token else { continue };
        if e.is_claim() {
            if current.is_some_and(|(t, _)| token <= t) {
                r.fail(
                    "claim_tokens_increase",
                    Some(&o.no),
                    format!("claim #{} with token {token} not above the last", e.id),
                );
            }
            current = Some((token, e.worker.as_deref()));
        } else if current.map(|(t, _)| t) != Some(token) {
            r.fail(
                "fenced_writes",
                Some(&o.no),
                format!(
                    "event #{} {} by {:?} with stale token {token} (latest claim {:?})",
                    e.id,
                    e.kind,
                    e.worker,
                    current.map(|(t, _)| t)
                ),
            );
        } else if current.and_then(|(_, w)| w) != e.worker.as_deref() {
            r.fail(
                "fenced_writes",
                Some(&o.no),
                format!(
                    "event #{} {} by {:?} under a lease claimed by {:?}",
                    e.id,
                    e.kind,
                    e.worker,
                    current.and_then(|(_, w)| w)
                ),
            );
        }
    }
}

/// No worker sends a request for an order after another worker has claimed it.
pub fn lease_overlap(
    r: &mut Report,
    o: &Order,
    evs: &[&Event],
    reqs: &[&LoggedRequest],
    limits: &Limits,
) {
    let claims: Vec<&Event> = evs.iter().copied().filter(|e| e.is_claim()).collect();
    for q in reqs {
        let Some(sender) = q.worker.as_deref() else {
            continue;
        };
        let latest = claims.iter().filter(|c| c.at <= q.at).max_by_key(|c| c.at);
        match latest {
            None => r.fail(
                "requests_under_a_lease",
                Some(&o.no),
                format!("{} from {sender} at {} before any claim", q.endpoint, q.at),
            ),
            Some(c) if c.worker.as_deref() != Some(sender) => {
                let late = (q.at - c.at).to_std().unwrap_or_default();
                if late > limits.request_slack {
                    r.fail(
                        "requests_under_a_lease",
                        Some(&o.no),
                        format!(
                            "{} from {sender} at {}, {} ms after {:?} claimed it (event #{})",
                            q.endpoint,
                            q.at,
                            late.as_millis(),
                            c.worker,
                            c.id
                        ),
                    );
                }
            }
            Some(_) => {}
        }
    }
}

/// The paused worker changed nothing and sent nothing once its leases had expired; after
/// SIGCONT, it sent nothing for the rows it had claimed before, and its writes to the rows
/// taken over meanwhile failed (no event).
pub fn paused_worker(r: &mut Report, p: &Pause, data: &Data, limits: &Limits) {
    let expired = p.stopped_at + chrono::Duration::from_std(limits.lease).unwrap_or_default();
    let mine = |w: &Option<String>| w.as_deref() == Some(p.worker.as_str());
    for e in data.events.iter().filter(|e| mine(&e.worker)) {
        if e.at > expired && e.at < p.resumed_at {
            r.fail(
                "paused_worker_writes",
                Some(&e.order_no),
                format!("event #{} {} while paused past its lease", e.id, e.kind),
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
                    "event #{} {} after resuming, under the lease it held before the pause",
                    e.id, e.kind
                ),
            );
        }
    }
    let claims: Vec<&Event> = data
        .events
        .iter()
        .filter(|e| mine(&e.worker) && e.is_claim())
        .collect();
    for q in data.requests.iter().filter(|q| mine(&q.worker)) {
        if q.at > expired && q.at < p.resumed_at {
            r.fail(
                "paused_worker_requests",
                q.order_no.as_deref(),
                format!("{} at {} while paused past its lease", q.endpoint, q.at),
            );
        }
        if q.at >= p.resumed_at {
            let own_claim = claims
                .iter()
                .filter(|c| Some(&c.order_no) == q.order_no.as_ref() && c.at <= q.at)
                .map(|c| c.at)
                .max();
            if own_claim.is_none_or(|at| at < p.resumed_at) {
                r.fail(
                    "paused_worker_requests",
                    q.order_no.as_deref(),
                    format!(
                        "{} at {} after resuming, for a row it had not claimed since (last claim {:?})",
                        q.endpoint, q.at, own_claim
                    ),
                );
            }
        }
    }
    let lost_lines = crate::procs::grep(&p.log, "lease lost").len();
    let expiring_lines = crate::procs::grep(&p.log, "about to expire").len();
    r.notes.push(format!(
        "paused worker {}: held {} leases when stopped, {} taken over during the pause; its log shows {lost_lines} \"lease lost\" and {expiring_lines} \"about to expire\" step ends",
        p.worker,
        p.held.len(),
        p.reclaimed.len()
    ));
}
