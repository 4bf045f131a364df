//! What a worker could know about a payment, and what it must therefore have recorded, read
//! off the hostile ATRIP proxy's log (`atrip_proxy.rs`): every answer ATRIP gave, and whether
//! it reached the worker whole and unchanged. And whether the run made the faults it promised.
//!
//! - `answers_came_from_atrip`: every ATRIP status and `orderStatus` an event records was
//!   handed, whole, to that worker by ATRIP. A worker that read a redirect's body, half a
//!   body, or an oversized or endless one (each says "accepted" or "ticketed") records what
//!   ATRIP never said.
//! - `evidence_came_from_atrip`: the keeper's lease-less write of evidence (rule P3a, event
//!   `evidence_recorded`) comes from a worker that ATRIP handed an answer showing the order
//!   paid, or from a note of it (`evidence_seen`) by such a worker, which any worker's sweep
//!   writes.
//! - `evidence_matches_atrip`: a row that records the order paid (`paid_at`) was charged.
//! - `evidence_reaches_row` (rule P3a): an answer showing the order paid, handed to a worker
//!   in time for it to read it, reaches the row, unless that worker process ended (a SIGKILL
//!   takes what it held in memory with it; the order query then finds the payment again,
//!   when ATRIP still shows it).
//! - `paid_order_not_in_review`: see [`order`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::atrip_proxy::{self, Exchange, Hostile, When};
use super::checks::{Data, Event, EventExt, Expect, Job, Limits, Pause, Report};
use super::orders::Order;

/// An answer written to a worker this close to its call's timeout may have found the worker
/// gone (its timer runs from before the request reached the proxy).
const MARGIN: Duration = Duration::from_millis(300);

/// The checks of one order.
#[allow(clippy::too_many_arguments)]
pub fn order(
    r: &mut Report,
    o: &Order,
    job: &Job,
    evs: &[&Event],
    xs: &[&Exchange],
    data: &Data,
    pauses: &[Pause],
    limits: &Limits,
) {
    let no = o.no.as_str();
    let charges = data.ledger["orders"][no]["charges"].as_u64().unwrap_or(0);
    if job.paid && charges == 0 {
        r.fail(
            "evidence_matches_atrip",
            Some(no),
            format!(
                "the row records the order paid, ATRIP never charged it (state {})",
                job.state
            ),
        );
    }
    if !data.exchanges.is_empty() {
        answers_came_from_atrip(r, no, evs, xs);
        evidence_reaches_row(r, no, job, xs, data, pauses, limits);
    }
    // No needs_review row for an order whose payment a worker knew of.
    //
    // A person is asked (rules P5d, P5e) only about an order the worker could not see paid.
    // Once an answer showed it paid (a pay.do answered 0, 615 or 404; a query "1" or "2"), the
    // evidence closes the payment (P3, P3a) and the row is only followed: it can come back to
    // `needs_review` from `ticketing` only past the ticketing deadline (a day, never in a
    // run), after `max_error_streak` (20) unclear answers in a row, or when two steps in a row
    // panicked (W5), and the run retries every `needs_review` row once, which sends a paid
    // one back to `ticketing`. So an order ATRIP charged that ENDS in `needs_review` is a
    // violation when a worker could know it was paid: its row records the payment, an event
    // recorded an answer showing it paid, or the proxy handed a worker such an answer from
    // ATRIP, whole and unchanged.
    //
    // A charged order no answer ever showed paid to any worker is allowed, and listed: its
    // pay.do was charged and its answer lost (garbage from the proxy after ATRIP took it, a
    // reset or timeout after the charge, a killed worker) and every later query was answered
    // before the charge settled, or met a fault. The worker then cannot know, and a person
    // must look. In practice ATRIP's queries show a charged order paid within its processing
    // and in-progress windows (under 5 s, well inside `unpaid_settle_s`), so this only happens
    // when the charge itself came after the last query: a pay.do held back by a stop or a
    // failpoint pause past the run's one retry of the row.
    if job.state == "needs_review" && charges >= 1 {
        let recorded = evs.iter().find(|e| shows_paid(e));
        let shown = xs.iter().find(|x| {
            x.delivered.is_some() && x.atrip.as_ref().is_some_and(|a| a.shows_paid(&x.endpoint))
        });
        if job.paid || recorded.is_some() || shown.is_some() {
            let why = match (recorded, shown) {
                (Some(e), _) => format!(
                    "event #{} {} by {:?} recorded it paid",
                    e.id, e.kind, e.worker
                ),
                (None, Some(x)) => format!(
                    "ATRIP's answer to {} at {} showing it paid ({:?}) reached {:?} whole",
                    x.endpoint, x.at, x.atrip, x.worker
                ),
                (None, None) => "its row records the payment (paid_at)".into(),
            };
            r.fail(
                "paid_order_not_in_review",
                Some(no),
                format!(
                    "charged {charges} time(s) and ended in needs_review although {why}; last_error {:?}",
                    job.last_error
                ),
            );
        } else {
            r.charged_unknown_reviews.push(no.to_owned());
        }
    }
}

/// Whether an event records an answer that showed the order paid.
fn shows_paid(e: &Event) -> bool {
    if e.is_evidence() {
        return true;
    }
    if let Some(answer) = e.pay_answer() {
        let status = e.detail.get("status").and_then(Value::as_i64);
        return answer == "accepted" || status == Some(404) && answer == "never_pay_again";
    }
    matches!(e.order_status(), Some("1" | "2"))
}

/// Every ATRIP status a `pay_answered` event records, and every `orderStatus` an event
/// records, was in an answer ATRIP gave that worker for that order, delivered whole before the
/// event.
fn answers_came_from_atrip(r: &mut Report, no: &str, evs: &[&Event], xs: &[&Exchange]) {
    let delivered =
        |e: &Event, endpoint: &str, fits: &dyn Fn(&atrip_proxy::AtripAnswer) -> bool| {
            xs.iter().any(|x| {
                x.endpoint == endpoint
                    && x.worker == e.worker
                    && x.delivered.is_some()
                    && x.at <= e.at
                    && x.atrip.as_ref().is_some_and(fits)
            })
        };
    for e in evs.iter().filter(|e| !e.is_operator()) {
        if e.is_evidence() {
            let handed_paid = |by: &Event| {
                xs.iter().any(|x| {
                    x.worker == by.worker
                        && x.delivered.is_some()
                        && x.at <= by.at
                        && x.atrip.as_ref().is_some_and(|a| a.shows_paid(&x.endpoint))
                })
            };
            // Any worker's sweep writes the evidence another one noted (rule P3a), holding no
            // lease (a keeper's write carries the lease of the step that saw it): the note's
            // worker is the one ATRIP must have told.
            let evidence = e.detail.get("paid_evidence");
            let from_a_note = e.kind == "evidence_recorded"
                && e.lease_token.is_none()
                && evidence.is_some()
                && evs.iter().any(|n| {
                    n.kind == "evidence_seen"
                        && n.id < e.id
                        && n.detail.get("paid_evidence") == evidence
                        && handed_paid(n)
                });
            if !handed_paid(e) && !from_a_note {
                r.fail(
                    "evidence_came_from_atrip",
                    Some(no),
                    format!(
                        "event #{} {} ({}) by {:?}, which ATRIP never handed an answer showing the order paid",
                        e.id, e.kind, e.detail, e.worker
                    ),
                );
            }
        }
        if e.kind == "pay_answered" {
            if let Some(status) = e.detail.get("status").and_then(Value::as_i64) {
                if !delivered(e, "pay.do", &|a| a.http == 200 && a.status == Some(status)) {
                    r.fail(
                        "answers_came_from_atrip",
                        Some(no),
                        format!(
                            "event #{} pay_answered ({}) records status {status}, but no pay.do answer with that status reached {:?} from ATRIP",
                            e.id,
                            e.pay_answer().unwrap_or("?"),
                            e.worker
                        ),
                    );
                }
            }
        }
        if let Some(status) = e.order_status() {
            if !delivered(e, "queryOrderDetails.do", &|a| {
                a.order_status.as_deref() == Some(status)
            }) {
                r.fail(
                    "answers_came_from_atrip",
                    Some(no),
                    format!(
                        "event #{} {} records orderStatus {status:?}, but no query answer with it reached {:?} from ATRIP",
                        e.id, e.kind, e.worker
                    ),
                );
            }
        }
    }
}

/// Rule P3a: an answer showing the order paid that a worker got, and could read, reaches the
/// row, unless that worker process ended after it.
fn evidence_reaches_row(
    r: &mut Report,
    no: &str,
    job: &Job,
    xs: &[&Exchange],
    data: &Data,
    pauses: &[Pause],
    limits: &Limits,
) {
    if job.paid {
        return;
    }
    for x in xs {
        let (Some(after), Some(answer)) = (x.delivered, &x.atrip) else {
            continue;
        };
        if !answer.shows_paid(&x.endpoint) {
            continue;
        }
        let timeout = if x.endpoint == "pay.do" {
            limits.pay_timeout
        } else {
            limits.query_timeout
        };
        let worker = x.worker.as_deref().unwrap_or("");
        let delivered_at = x.at + chrono::Duration::from_std(after).unwrap_or_default();
        let in_time = after + MARGIN < timeout;
        // Frozen by the run while its answer arrived: its timer may fire first on SIGCONT.
        let frozen = pauses
            .iter()
            .any(|p| p.worker == worker && p.stopped_at <= delivered_at && x.at <= p.resumed_at);
        let ended = data
            .ended
            .iter()
            .any(|(id, when)| id == worker && *when >= x.at);
        if in_time && !frozen && !ended {
            r.fail(
                "evidence_reaches_row",
                Some(no),
                format!(
                    "ATRIP's answer to {} at {} showed it paid ({answer:?}) and reached {worker} whole after {} ms, which lived on; the row never recorded the payment (state {})",
                    x.endpoint,
                    x.at,
                    after.as_millis(),
                    job.state
                ),
            );
            return;
        }
    }
}

/// A sort of hostile answer: its name, and which kinds are of it.
type Sort = (&'static str, fn(Hostile) -> bool);

/// The faults the run promised were made, and what the hostile answers came to.
pub fn faults(r: &mut Report, data: &Data, expect: &Expect) {
    let done = &data.done;
    for (check, asked, made, what) in [
        (
            "failovers",
            expect.failovers,
            done.failovers,
            "failovers of the primary",
        ),
        (
            "db_cuts_over_lease",
            expect.db_cuts,
            done.db_cuts,
            "cuts of the workers' database longer than the lease",
        ),
        (
            "row_locks",
            expect.row_locks,
            done.row_locks,
            "row locks held by an outside session",
        ),
    ] {
        if made < asked {
            r.fail(
                check,
                None,
                format!("{made} {what}; the run asked for {asked}"),
            );
        }
    }
    r.panics = data
        .events
        .iter()
        .filter(|e| e.kind == "step_panicked")
        .count();
    if expect.panics && r.panics == 0 {
        r.fail(
            "panics",
            None,
            "the workers ran with the panic failpoint, yet no step_panicked event".into(),
        );
    }
    let counts = atrip_proxy::counts(&data.exchanges);
    if expect.hostile {
        // Every sort of hostile answer, a redirect and an oversized answer to pay.do and to a
        // query each, and a pay.do answered with garbage before and after ATRIP took it.
        let sorts: [Sort; 4] = [
            ("redirect", Hostile::is_redirect),
            ("oversized answer", Hostile::is_oversized),
            ("reset mid-body", |k| k == Hostile::ResetMidBody),
            ("endless answer", |k| k == Hostile::Endless),
        ];
        for (what, is) in sorts {
            if !counts.keys().any(|(k, _, _)| is(*k)) {
                r.fail(
                    "hostile_answers",
                    None,
                    format!("the ATRIP proxy never gave a {what}"),
                );
            }
        }
        for endpoint in ["pay.do", "query"] {
            for (what, is) in &sorts[..2] {
                if !counts.keys().any(|(k, _, e)| *e == endpoint && is(*k)) {
                    r.fail(
                        "hostile_answers",
                        None,
                        format!("no {endpoint} met a {what}"),
                    );
                }
            }
        }
        for when in [When::Before, When::After] {
            if !counts.keys().any(|(_, w, e)| *w == when && *e == "pay.do") {
                r.fail(
                    "hostile_answers",
                    None,
                    format!("no pay.do met a hostile answer {when:?} ATRIP saw it"),
                );
            }
        }
    }
    // How the orders whose pay.do met a hostile answer ended.
    if !counts.is_empty() {
        let state = |no: &str| {
            data.jobs
                .iter()
                .find(|j| j.order_no == no)
                .map_or("missing", |j| j.state.as_str())
        };
        let mut ends: BTreeMap<(When, &str), usize> = BTreeMap::new();
        for x in data.exchanges.iter().filter(|x| x.endpoint == "pay.do") {
            if let (Some((_, when)), Some(no)) = (x.hostile, &x.order_no) {
                *ends.entry((when, state(no))).or_default() += 1;
            }
        }
        let summary: Vec<String> = counts
            .iter()
            .map(|((k, w, e), n)| format!("{k:?}/{w:?}/{e}={n}"))
            .collect();
        r.notes.push(format!(
            "hostile answers: {}; orders whose pay.do met one ended {ends:?}",
            summary.join(" ")
        ));
    }
    if !r.charged_unknown_reviews.is_empty() {
        r.notes.push(format!(
            "{} charged orders ended in needs_review with no answer ever showing them paid to a worker (allowed; see paid.rs): {:?}",
            r.charged_unknown_reviews.len(),
            r.charged_unknown_reviews
        ));
    }
}
