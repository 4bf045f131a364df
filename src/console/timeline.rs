//! An order's page: its row (the card only as brand and last four digits), the actions that
//! fit, and its whole history, one line per event with the delay since the one before.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::actions::Fits;
use super::html::{self, duration, opt, opt_time, Refresh, E};
use super::{store_error, Console, Role, Who};
use crate::domain::{PaymentMethod, State as JobState};
use crate::jobs::{EventRow, JobRow};

/// The most recent events shown (an order followed for a day has a few hundred).
const EVENTS_SHOWN: i64 = 1000;

/// `GET /console/orders/{order_no}`.
pub async fn order(State(c): State<Console>, who: Who, Path(order_no): Path<String>) -> Response {
    if let Err(refused) = super::refuse_nul(Some(&who), "order number in the path", &order_no) {
        return refused;
    }
    let row = match c.store.console_order(&order_no).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return html::message(
                StatusCode::NOT_FOUND,
                Some(&who),
                "No such order",
                &format!("No order {order_no} in the job table."),
            )
        }
        Err(e) => return store_error(&who, &e),
    };
    let (events, now) = match tokio::try_join!(
        c.store.console_events(row.id, EVENTS_SHOWN),
        c.store.console_now()
    ) {
        Ok(found) => found,
        Err(e) => return store_error(&who, &e),
    };
    let mut body = String::new();
    // Only what this session's own action left for this page (never the URL's say-so).
    if let Some(done) = c
        .sessions
        .take_flash(&who, &format!("/console/orders/{order_no}"))
    {
        let _ = write!(body, r#"<p class="done" id="done">{}</p>"#, E(done));
    }
    facts(&mut body, &row, now);
    actions(&mut body, &row, &who);
    timeline(&mut body, &events);
    let at_work = JobState::parse(&row.state).is_some_and(|s| !s.is_finished());
    let refresh = if at_work {
        Refresh::Always(c.refresh_s)
    } else {
        Refresh::Off
    };
    let title = format!("Order {}", row.order_no);
    html::page(&title, Some(&who), refresh, &body).into_response()
}

fn facts(body: &mut String, row: &JobRow, now: chrono::DateTime<chrono::Utc>) {
    let method = PaymentMethod::from_code(i64::from(row.payment_method));
    let card = match (&row.card_brand, &row.card_last4) {
        (None, None) if !method.is_some_and(PaymentMethod::needs_card) => {
            "none (this method takes no card)".to_owned()
        }
        (brand, last4) => format!(
            "{} •••• {}; card data {}",
            opt(brand.as_deref()),
            opt(last4.as_deref()),
            if row.card_held() {
                "held (needed to pay)"
            } else {
                "erased"
            }
        ),
    };
    let paid = match row.paid_at {
        Some(at) => format!("{} ({})", html::time(at), opt(row.paid_evidence.as_deref())),
        None => "no answer showed it paid".into(),
    };
    let lease = match (&row.lease_owner, row.lease_expires_at) {
        (Some(owner), Some(until)) => format!("{} until {}", E(owner), html::time(until)),
        _ => "—".into(),
    };
    // The reason as stored, less any count of minutes an older release wrote into it (the
    // time left is the deadline's line, computed now).
    let why = opt(row
        .last_error
        .as_deref()
        .map(crate::machine::kinds::without_stale_minutes)
        .as_deref());
    let reason_kind = if matches!(row.state.as_str(), "failed" | "needs_review") {
        E(super::listing::kind(row).label()).to_string()
    } else {
        "—".into()
    };
    let deadline = match row.pay_deadline {
        Some(d) => format!("{} ({})", html::time(d), html::time_left(now, Some(d))),
        None => "none given when the order was enqueued".into(),
    };
    // A needs_review row is not finished: it waits for a person (its finalized_at is when it
    // was handed over).
    let (finished_label, finished) = match row.state.as_str() {
        "needs_review" => (
            "waiting for a person since",
            match row.finalized_at {
                Some(at) => format!("{} ({})", html::time(at), html::ago(now, at)),
                None => "—".into(),
            },
        ),
        _ if JobState::parse(&row.state).is_some_and(JobState::is_finished) => {
            ("finished", opt_time(row.finalized_at))
        }
        _ => ("finished", "— (still followed)".into()),
    };
    let _ = write!(
        body,
        r#"<dl class="facts" id="facts"><dt>state</dt><dd id="state">{}</dd><dt>reason</dt><dd id="reason-kind">{}</dd><dt>why</dt><dd id="why">{}</dd><dt>client order no</dt><dd>{}</dd><dt>payment method</dt><dd>{}</dd><dt>card</dt><dd id="card">{card}</dd><dt>payment deadline</dt><dd id="pay-deadline">{}</dd><dt>priority</dt><dd>{}</dd><dt>enqueued</dt><dd>{} ({})</dd><dt>updated</dt><dd>{} ({})</dd><dt>next look</dt><dd>{}</dd><dt>lease</dt><dd>{lease}</dd><dt>pay.do</dt><dd>{} sent of {} permitted; {} intents, {} provably never sent</dd><dt>paid</dt><dd>{paid}</dd><dt>last pay.do answer</dt><dd>{}</dd><dt>ATRIP's last answer</dt><dd>{}</dd><dt>order queries</dt><dd>{}</dd><dt>ATRIP reference</dt><dd>{}</dd><dt>airline PNR</dt><dd>{}</dd><dt>tickets</dt><dd>{}</dd><dt>ticketed</dt><dd>{}</dd><dt>{finished_label}</dt><dd id="finished">{finished}</dd></dl>"#,
        html::state(&row.state),
        reason_kind,
        why,
        opt(row.client_order_no.as_deref()),
        html::method(row.payment_method),
        deadline,
        row.priority,
        html::time(row.created_at),
        html::ago(now, row.created_at),
        html::time(row.updated_at),
        html::ago(now, row.updated_at),
        if JobState::parse(&row.state).is_some_and(|s| !s.is_finished()) {
            format!(
                "{} ({})",
                html::time(row.run_at),
                html::ago(now, row.run_at)
            )
        } else {
            "—".into()
        },
        row.pay_sends,
        row.pay_permits,
        row.pay_attempts,
        row.pay_not_sent,
        opt(row.last_pay_outcome.as_deref()),
        super::pages::last_answer(row),
        row.poll_attempts,
        opt(row.atrip_pnr.as_deref()),
        opt(row.pnr.as_deref()),
        tickets(row.ticket_numbers.as_ref()),
        opt_time(row.ticketed_at),
    );
}

/// `DOE/JANE 6181234567890` per passenger, from `ticket_numbers`.
fn tickets(v: Option<&Value>) -> String {
    let Some(Value::Array(passengers)) = v else {
        return "—".into();
    };
    let lines: Vec<String> = passengers
        .iter()
        .map(|p| {
            let numbers: Vec<&str> = p["ticket_numbers"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{} {}",
                E(p["passenger"].as_str().unwrap_or("?")),
                E(&numbers.join(", "))
            )
        })
        .collect();
    lines.join("<br>")
}

fn actions(body: &mut String, row: &JobRow, who: &Who) {
    let fits = Fits::of(row);
    let waiting = matches!(row.state.as_str(), "failed" | "needs_review");
    if !fits.retry && !fits.cancel && !waiting {
        return;
    }
    let _ = write!(
        body,
        r#"<h2>What fits</h2><p id="advice">{}</p>"#,
        E(&fits.advice)
    );
    // What is not offered, and why (the same decisions the store makes: machine::operator).
    let mut not = String::new();
    for (id, what, why) in [
        ("no-retry", "Retry", &fits.no_retry),
        ("no-repay", "Retry allowing a second pay.do", &fits.no_repay),
        ("no-cancel", "Cancel", &fits.no_cancel),
    ] {
        if let Some(why) = why.as_deref().filter(|_| waiting) {
            let _ = write!(not, r#"<li id="{id}">{what}: {}</li>"#, E(why));
        }
    }
    if !not.is_empty() {
        let _ = write!(
            body,
            r#"<details id="not-offered"><summary>Not offered, and why</summary><ul>{not}</ul></details>"#
        );
    }
    if !fits.retry && !fits.cancel {
        return;
    }
    if who.role != Role::Operator {
        body.push_str(r#"<p class="muted">Viewers cannot act; an operator can.</p>"#);
        return;
    }
    let no = E(&row.order_no);
    let csrf = E(&who.csrf);
    body.push_str(r#"<div class="actions">"#);
    if fits.retry {
        let _ = write!(
            body,
            r#"<form method="post" action="/console/orders/{no}/retry"><input type="hidden" name="csrf" value="{csrf}"><button id="retry">Retry</button></form>"#
        );
    }
    if fits.repay {
        let _ = write!(
            body,
            r#"<a id="repay-link" href="/console/orders/{no}/repay">Retry and allow a second pay.do…</a>"#
        );
    }
    if fits.cancel {
        let _ = write!(
            body,
            r#"<form method="post" action="/console/orders/{no}/cancel"><input type="hidden" name="csrf" value="{csrf}"><button class="danger" id="cancel">Cancel</button></form>"#
        );
    }
    body.push_str("</div>");
}

/// An event's kind in words.
fn what(kind: &str) -> &str {
    match kind {
        "pay_intent" => "pay intent recorded (a pay.do may leave from here on)",
        "pay_not_sent" => "pay.do not sent",
        "pay_answered" => "pay.do answered",
        "query_answered" => "order query answered",
        "released" => "given back without sending anything",
        "constraint_violated" => "the table refused a write",
        "operator_retry" => "operator: retry",
        "operator_repay" => "operator: retry allowing a second pay.do",
        "operator_cancel" => "operator: cancel",
        "webhook_received" => "webhook from ATRIP",
        "after_ticketing_checked" => "order query after a report of a change after ticketing",
        other => other,
    }
}

/// An event's detail as `key value` pairs (nulls left out), each value cut short.
fn detail(v: &Value) -> String {
    let Value::Object(map) = v else {
        return E(&crate::domain::truncate(&v.to_string(), 300)).to_string();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "{} <b>{}</b>",
                E(k),
                E(&crate::domain::truncate(&text, 300))
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn timeline(body: &mut String, events: &[EventRow]) {
    let _ = write!(body, r#"<h2>Timeline</h2>"#);
    if events.len() as i64 >= EVENTS_SHOWN {
        let _ = write!(
            body,
            r#"<p class="muted">The {EVENTS_SHOWN} most recent events.</p>"#
        );
    }
    body.push_str(r#"<table id="timeline"><tr><th>at (UTC)</th><th class="num">after</th><th>what happened</th><th>state after</th><th>by</th><th>detail</th></tr>"#);
    let mut previous = None;
    for e in events {
        let after = previous.map_or(String::new(), |p: chrono::DateTime<chrono::Utc>| {
            duration((e.at - p).num_milliseconds() as f64 / 1000.0)
        });
        previous = Some(e.at);
        let _ = write!(
            body,
            r#"<tr class="ev-{kind}"><td class="nowrap">{}</td><td class="num nowrap">{after}</td><td>{}</td><td>{}</td><td>{}</td><td class="detail">{}</td></tr>"#,
            html::time_ms(e.at),
            E(what(&e.kind)),
            html::state(&e.state),
            opt(e.worker.as_deref()),
            detail(&e.detail),
            kind = E(&e.kind),
        );
    }
    body.push_str("</table>");
}
