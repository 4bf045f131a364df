//! "Needs a person" for an operator with a few hundred orders: grouped by the kind of reason
//! (`machine::kinds`), with counts, a short reason per row and the time left before its payment
//! deadline computed from the database's time on every render; filters (state, reason, payment
//! method, waiting time, deadline, time range), sorts (deadline first by default, age, order
//! number), a whole group ticked at once for the bulk retry and cancel (`bulk`), each order
//! checked on its own by the job store (rules P7, P7a, P8). As CSV with `&format=csv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::actions::Fits;
use super::html::{self, Refresh, E};
use super::listing::{kind, parse_span, parse_time, short_reason};
use super::{store_error, Console, Role, Who};
use crate::domain::State as JobState;
use crate::jobs::{DeadlineFilter, JobRow, ReviewFilter, ReviewSort};
use crate::machine::ReasonKind;

/// The most rows the list reads (and so groups and counts): past this it says so.
pub const REVIEW_CAP: i64 = 1000;

/// The longest a query parameter may be.
const MAX_PARAM: usize = 64;

#[derive(Deserialize, Default)]
pub struct ReviewQuery {
    state: Option<String>,
    reason: Option<String>,
    method: Option<String>,
    age: Option<String>,
    deadline: Option<String>,
    sort: Option<String>,
    from: Option<String>,
    until: Option<String>,
    select: Option<String>,
    format: Option<String>,
}

/// The list's filters as parsed, and the canonical query string that gives them back.
struct Parsed {
    filter: ReviewFilter,
    sort: ReviewSort,
    reason: Option<ReasonKind>,
    select: Option<ReasonKind>,
    /// `key=value&…` of the filters and sort (not `select`), for links.
    query: String,
    raw: BTreeMap<&'static str, String>,
}

/// A parameter's value: bounded, no NUL, empty as absent. `Err` is the 400's text.
fn param<'a>(field: &str, v: &'a Option<String>) -> Result<Option<&'a str>, String> {
    let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.contains('\0') {
        return Err(format!("The {field} holds a NUL character."));
    }
    if v.len() > MAX_PARAM {
        return Err(format!(
            "The {field} is longer than {MAX_PARAM} characters."
        ));
    }
    Ok(Some(v))
}

fn parse(q: &ReviewQuery) -> Result<Parsed, String> {
    let mut raw = BTreeMap::new();
    let mut keep = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v {
            raw.insert(k, v.to_owned());
        }
    };
    let state = match param("state", &q.state)? {
        None => None,
        Some(s) => match JobState::parse(s) {
            Some(st @ (JobState::NeedsReview | JobState::Failed)) => Some(st),
            _ => return Err("The state must be needs_review or failed.".into()),
        },
    };
    keep("state", state.map(JobState::as_str));
    let reason = match param("reason", &q.reason)? {
        None => None,
        Some(r) => Some(
            ReasonKind::parse(r)
                .ok_or_else(|| format!("The reason “{r}” is not a kind this list knows."))?,
        ),
    };
    keep("reason", reason.map(ReasonKind::as_str));
    let method = match param("method", &q.method)? {
        None => None,
        Some(m) => Some(
            m.parse::<i64>()
                .ok()
                .and_then(crate::domain::PaymentMethod::from_code)
                .ok_or_else(|| "The method must be a payment method: 1, 3, 4 or 5.".to_owned())?
                .code(),
        ),
    };
    let method_text = method.map(|m| m.to_string());
    keep("method", method_text.as_deref());
    let age = param("age", &q.age)?;
    let older_than_s = age.map(|a| parse_span("age", a)).transpose()?;
    keep("age", age);
    let deadline_text = param("deadline", &q.deadline)?;
    let deadline = match deadline_text {
        None => None,
        Some("passed") => Some(DeadlineFilter::Passed),
        Some("none") => Some(DeadlineFilter::None),
        Some(span) => Some(DeadlineFilter::Within(
            parse_span("deadline", span).map_err(|_| {
                "The deadline must be passed, none, or a span it passes within (30m, 1h, 4h)."
                    .to_owned()
            })?,
        )),
    };
    keep("deadline", deadline_text);
    let sort = match param("sort", &q.sort)? {
        None | Some("deadline") => ReviewSort::Deadline,
        Some("age") => ReviewSort::Age,
        Some("order") => ReviewSort::OrderNo,
        Some(_) => return Err("The sort must be deadline, age or order.".into()),
    };
    if sort != ReviewSort::Deadline {
        keep("sort", Some(sort.as_str()));
    }
    let from_text = param("from", &q.from)?;
    let from = from_text.map(|v| parse_time("from", v)).transpose()?;
    keep("from", from_text);
    let until_text = param("until", &q.until)?;
    let until = until_text.map(|v| parse_time("until", v)).transpose()?;
    keep("until", until_text);
    if let (Some(f), Some(u)) = (from, until) {
        if u <= f {
            return Err("The until must be after the from.".into());
        }
    }
    let select = match param("select", &q.select)? {
        None => None,
        Some(r) => Some(
            ReasonKind::parse(r)
                .ok_or_else(|| format!("The select “{r}” is not a kind this list knows."))?,
        ),
    };
    let query = raw
        .iter()
        .map(|(k, v)| format!("{k}={}", html::url_part(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(Parsed {
        filter: ReviewFilter {
            state,
            method,
            older_than_s,
            deadline,
            from,
            until,
        },
        sort,
        reason,
        select,
        query,
        raw,
    })
}

/// `GET /console/review` (`&format=csv`: the rows the filters keep, as CSV).
pub async fn review(State(c): State<Console>, who: Who, Query(q): Query<ReviewQuery>) -> Response {
    let p = match parse(&q) {
        Ok(p) => p,
        Err(m) => return html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad request", &m),
    };
    let csv = match param("format", &q.format) {
        Ok(None | Some("html")) => false,
        Ok(Some("csv")) => true,
        Ok(Some(_)) => {
            return html::message(
                StatusCode::BAD_REQUEST,
                Some(&who),
                "Bad request",
                "The format must be html or csv.",
            )
        }
        Err(m) => return html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad request", &m),
    };
    let (rows, now) = match tokio::try_join!(
        c.store.console_review(&p.filter, p.sort, REVIEW_CAP),
        c.store.console_now()
    ) {
        Ok(found) => found,
        Err(e) => return store_error(&who, &e),
    };
    let capped = rows.len() as i64 >= REVIEW_CAP;
    let kinds: Vec<ReasonKind> = rows.iter().map(kind).collect();
    if csv {
        let kept: Vec<JobRow> = rows
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| p.reason.is_none_or(|r| r == **k))
            .map(|(r, _)| r.clone())
            .collect();
        return super::listing::csv_response("needs-a-person.csv", &kept);
    }
    // Groups in the order their first row comes (with the default sort: the most urgent
    // group first), each with its count before the reason filter.
    let mut order: Vec<ReasonKind> = Vec::new();
    let mut counts: BTreeMap<ReasonKind, usize> = BTreeMap::new();
    for k in &kinds {
        if !counts.contains_key(k) {
            order.push(*k);
        }
        *counts.entry(*k).or_default() += 1;
    }
    let mut body = String::new();
    filters(&mut body, &p);
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No order needs a person.</p>"#);
        return page(&c, &who, body);
    }
    let link = |extra: &str| {
        let mut q = p.query.clone();
        if !extra.is_empty() {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(extra);
        }
        if q.is_empty() {
            "/console/review".to_owned()
        } else {
            format!("/console/review?{q}")
        }
    };
    let without_reason = {
        let mut raw = p.raw.clone();
        raw.remove("reason");
        raw.iter()
            .map(|(k, v)| format!("{k}={}", html::url_part(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let _ = write!(
        body,
        r#"<table id="groups"><caption>Why they wait{}</caption><tr><th scope="col">reason</th><th scope="col" class="num">orders</th></tr>"#,
        if capped {
            format!(" (the first {REVIEW_CAP} only: narrow the filters)")
        } else {
            String::new()
        }
    );
    for k in &order {
        let sep = if without_reason.is_empty() {
            ""
        } else {
            "&amp;"
        };
        let _ = write!(
            body,
            r#"<tr><th scope="row"><a href="/console/review?{}{sep}reason={}">{}</a></th><td class="num" id="count-{}">{}</td></tr>"#,
            E(&without_reason),
            k.as_str(),
            E(k.label()),
            k.as_str(),
            counts[k]
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        r#"<p><a id="csv" href="{}">These orders as CSV</a></p>"#,
        E(&link("format=csv"))
    );
    let operator = who.role == Role::Operator;
    if operator {
        let _ = write!(
            body,
            r#"<form method="post" action="/console/bulk" id="bulk"><input type="hidden" name="csrf" value="{}"><p class="actions"><button name="action" value="retry" id="retry-selected">Retry selected</button> <button name="action" value="cancel" class="danger" id="cancel-selected">Cancel selected</button> <span class="muted">Each order is checked on its own: a plain retry never allows a second pay.do; cancel only where no pay.do can have reached ATRIP.</span></p>"#,
            E(&who.csrf)
        );
    }
    for k in &order {
        if p.reason.is_some_and(|r| r != *k) {
            continue;
        }
        let members: Vec<&JobRow> = rows
            .iter()
            .zip(&kinds)
            .filter(|(_, rk)| *rk == k)
            .map(|(r, _)| r)
            .collect();
        let fits: Vec<Fits> = members.iter().map(|r| Fits::of(r)).collect();
        let _ = write!(
            body,
            r#"<h2 id="group-{0}">{1} <span class="muted">({2}: {3} can be retried, {4} cancelled here)</span></h2>"#,
            k.as_str(),
            E(k.label()),
            members.len(),
            fits.iter().filter(|f| f.retry).count(),
            fits.iter().filter(|f| f.cancel).count(),
        );
        if operator {
            let _ = write!(
                body,
                r##"<p><a id="select-{0}" href="{1}#group-{0}">Select all {2} in this group</a></p>"##,
                k.as_str(),
                E(&link(&format!("select={}", k.as_str()))),
                members.len()
            );
        }
        group_table(
            &mut body,
            &members,
            &fits,
            *k,
            now,
            operator,
            p.select == Some(*k),
        );
    }
    if operator {
        body.push_str("</form>");
    }
    page(&c, &who, body)
}

fn page(c: &Console, who: &Who, body: String) -> Response {
    html::page(
        "Needs a person",
        Some(who),
        Refresh::UnlessBusy(c.refresh_s),
        &body,
    )
    .into_response()
}

/// The filter form: every field labelled, the current values chosen.
fn filters(body: &mut String, p: &Parsed) {
    let cur = |k: &str| p.raw.get(k).map_or("", String::as_str);
    let select = |body: &mut String, name: &str, label: &str, options: &[(&str, &str)]| {
        let _ = write!(
            body,
            r#"<label for="f-{name}">{label}</label> <select id="f-{name}" name="{name}">"#
        );
        for (value, text) in options {
            let chosen = if cur(name) == *value { " selected" } else { "" };
            let _ = write!(
                body,
                r#"<option value="{}"{chosen}>{}</option>"#,
                E(value),
                E(text)
            );
        }
        body.push_str("</select> ");
    };
    body.push_str(r#"<form method="get" action="/console/review" id="filters"><p>"#);
    select(
        body,
        "state",
        "state",
        &[
            ("", "needs_review and failed"),
            ("needs_review", "needs_review"),
            ("failed", "failed"),
        ],
    );
    let mut reasons: Vec<(&str, &str)> = vec![("", "any")];
    reasons.extend(ReasonKind::ALL.iter().map(|k| (k.as_str(), k.label())));
    select(body, "reason", "reason", &reasons);
    select(
        body,
        "method",
        "payment method",
        &[
            ("", "any"),
            ("1", "1 · deposit"),
            ("3", "3 · VCC"),
            ("4", "4 · BYOA"),
            ("5", "5 · MoR"),
        ],
    );
    select(
        body,
        "age",
        "waiting at least",
        &[
            ("", "any time"),
            ("1h", "1 h"),
            ("4h", "4 h"),
            ("1d", "1 day"),
            ("3d", "3 days"),
        ],
    );
    select(
        body,
        "deadline",
        "payment deadline",
        &[
            ("", "any"),
            ("1h", "within 1 h"),
            ("4h", "within 4 h"),
            ("passed", "passed"),
            ("none", "none"),
        ],
    );
    select(
        body,
        "sort",
        "sort by",
        &[
            ("", "deadline, soonest first"),
            ("age", "waiting longest first"),
            ("order", "order number"),
        ],
    );
    let _ = write!(
        body,
        r#"<label for="f-from">changed from</label> <input id="f-from" name="from" type="date" value="{}" maxlength="{MAX_PARAM}"> <label for="f-until">until</label> <input id="f-until" name="until" type="date" value="{}" maxlength="{MAX_PARAM}"> <button>Show</button> <a href="/console/review">Clear</a></p></form>"#,
        E(cur("from")),
        E(cur("until"))
    );
    if p.filter.state != Some(JobState::NeedsReview) && p.filter.from.is_none() {
        let _ = write!(
            body,
            r#"<p class="muted">Failed orders of the last {} days; choose a “changed from” date for older ones.</p>"#,
            crate::jobs::FAILED_DEFAULT_WINDOW_DAYS
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn group_table(
    body: &mut String,
    rows: &[&JobRow],
    fits: &[Fits],
    kind: ReasonKind,
    now: DateTime<Utc>,
    operator: bool,
    ticked: bool,
) {
    let _ = write!(
        body,
        r#"<table class="orders review" id="table-{}"><tr>"#,
        kind.as_str()
    );
    if operator {
        body.push_str(r#"<th scope="col">select</th>"#);
    }
    body.push_str(r#"<th scope="col">order</th><th scope="col">state</th><th scope="col">method</th><th scope="col">waiting</th><th scope="col">payment deadline</th><th scope="col">reason</th><th scope="col" class="num">pay.do sent</th><th scope="col">what fits</th></tr>"#);
    for (row, fits) in rows.iter().zip(fits) {
        let no = E(&row.order_no);
        let _ = write!(body, r#"<tr id="row-{no}">"#);
        if operator {
            let _ = write!(
                body,
                r#"<td><input type="checkbox" name="order_no" value="{no}" id="pick-{no}"{}><label for="pick-{no}" class="sr-only">select {no}</label></td>"#,
                if ticked { " checked" } else { "" }
            );
        }
        let mut what = Vec::new();
        if fits.retry {
            what.push("retry");
        }
        if fits.repay {
            what.push("second pay.do (after checking ATRIP)");
        }
        if fits.cancel {
            what.push("cancel");
        }
        let _ = write!(
            body,
            r#"<th scope="row"><a href="/console/orders/{no}">{no}</a>{}</th><td>{}</td><td>{}</td><td title="{}">{}</td><td class="deadline" title="{}">{}</td><td class="reason">{}</td><td class="num">{}</td><td>{}"#,
            html::client_order_no(row.client_order_no.as_deref()),
            html::state(&row.state),
            html::method(row.payment_method),
            html::time(row.updated_at),
            html::ago(now, row.updated_at),
            html::opt_time(row.pay_deadline),
            html::time_left(now, row.pay_deadline),
            E(&short_reason(row, kind)),
            row.pay_sends,
            if what.is_empty() {
                "nothing here: see the order".to_owned()
            } else {
                what.join(", ")
            }
        );
        if operator && (fits.retry || fits.cancel) {
            body.push_str(r#"<div class="actions">"#);
            if fits.retry {
                let _ = write!(
                    body,
                    r#"<button formaction="/console/orders/{no}/retry">Retry</button>"#
                );
            }
            if fits.repay {
                let _ = write!(
                    body,
                    r#"<a href="/console/orders/{no}/repay">Second pay.do…</a>"#
                );
            }
            if fits.cancel {
                let _ = write!(
                    body,
                    r#"<button class="danger" formaction="/console/orders/{no}/cancel">Cancel</button>"#
                );
            }
            body.push_str("</div>");
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</table>");
}
