//! What people read in lists: one state's orders (with a time range, and as CSV) and the
//! search. Every list is newest first and paged by keyset (the last row's `updated_at, id`),
//! never by OFFSET, so the hundredth page costs what the first does. The orders that need a
//! person are `review`'s.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{self, Refresh, E};
use super::{store_error, Console, Who};
use crate::domain::State as JobState;
use crate::jobs::{Cursor, JobRow};
use chrono::{DateTime, Utc};

type Page = Result<Response, Response>;

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    before: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
}

/// The most rows one CSV export holds.
pub const CSV_CAP: i64 = 10_000;

/// An optional `from`/`until` parameter: bounded, no NUL, a date or a time. `Err` is the 400.
fn time_param(field: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.contains('\0') {
        return Err(format!("The {field} holds a NUL character."));
    }
    if v.len() > 64 {
        return Err(format!("The {field} is longer than 64 characters."));
    }
    super::listing::parse_time(field, v).map(Some)
}

/// A time range's `from` and `until`, the latter after the former.
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn range(from: Option<&str>, until: Option<&str>) -> Result<Range, String> {
    let from = time_param("from", from)?;
    let until = time_param("until", until)?;
    if let (Some(f), Some(u)) = (from, until) {
        if u <= f {
            return Err("The until must be after the from.".into());
        }
    }
    Ok((from, until))
}

impl ListQuery {
    fn cursor(&self) -> Result<Cursor, String> {
        match self.before.as_deref().filter(|b| !b.is_empty()) {
            None => Ok(Cursor::first()),
            Some(b) => Cursor::parse(b).ok_or_else(|| "That page link is malformed.".into()),
        }
    }
}

/// `GET /console/orders?state=…[&from=…][&until=…][&format=csv]`: one state's orders, newest
/// first, optionally last changed within a time range; `format=csv` (or `/console/orders.csv`)
/// the same as CSV, up to [`CSV_CAP`] rows.
pub async fn in_state(State(c): State<Console>, who: Who, Query(q): Query<ListQuery>) -> Page {
    let bad = |m: &str| html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad request", m);
    for (field, v) in [
        ("state", &q.state),
        ("before", &q.before),
        ("format", &q.format),
    ] {
        if let Some(v) = v {
            super::refuse_nul(Some(&who), field, v)?;
        }
    }
    let cursor = q.cursor().map_err(|m| bad(&m))?;
    let Some(state) = q.state.as_deref().and_then(JobState::parse) else {
        return Err(bad("Name a state: pending, paying, ticketing, ticketed, failed, needs_review or cancelled."));
    };
    let (from, until) = range(q.from.as_deref(), q.until.as_deref()).map_err(|m| bad(&m))?;
    let csv = match q.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("html") => false,
        Some("csv") => true,
        Some(_) => return Err(bad("The format must be html or csv.")),
    };
    let limit = if csv { CSV_CAP } else { c.page_size };
    let rows = c
        .store
        .console_in_state_between(state, from, until, cursor, limit)
        .await
        .map_err(|e| store_error(&who, &e))?;
    if csv {
        return Ok(super::listing::csv_response(
            &format!("orders-{state}.csv"),
            &rows,
        ));
    }
    let now = c
        .store
        .console_now()
        .await
        .map_err(|e| store_error(&who, &e))?;
    let mut filter = format!("state={state}&");
    for (k, v) in [("from", &q.from), ("until", &q.until)] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            let _ = write!(filter, "{k}={}&", html::url_part(v));
        }
    }
    let mut body = format!(
        r#"<form method="get" action="/console/orders" id="range"><input type="hidden" name="state" value="{state}"><p><label for="r-from">changed from</label> <input id="r-from" name="from" type="date" value="{}"> <label for="r-until">until</label> <input id="r-until" name="until" type="date" value="{}"> <button>Show</button> <a id="csv" href="/console/orders.csv?{}">CSV</a></p></form>"#,
        E(q.from.as_deref().unwrap_or_default()),
        E(q.until.as_deref().unwrap_or_default()),
        E(filter.trim_end_matches('&')),
    );
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No order in this state.</p>"#);
    } else {
        orders_table(&mut body, &rows, now);
    }
    pager(
        &mut body,
        "/console/orders",
        &filter,
        &rows,
        c.page_size,
        q.before.is_some(),
    );
    let refresh = if q.before.is_none() {
        Refresh::Always(c.refresh_s)
    } else {
        Refresh::Off
    };
    let title = format!("Orders {state}");
    Ok(html::page(&title, Some(&who), refresh, &body).into_response())
}

/// `GET /console/orders.csv?state=…`: [`in_state`] as CSV.
pub async fn in_state_csv(state: State<Console>, who: Who, Query(mut q): Query<ListQuery>) -> Page {
    q.format = Some("csv".into());
    in_state(state, who, Query(q)).await
}

#[derive(Deserialize)]
pub struct FindQuery {
    q: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
}

/// The most orders a search lists.
const FOUND_CAP: i64 = 200;

/// `GET /console/find?q=…[&from=…][&until=…][&format=csv]`: by the start of an order number or
/// a client order number, ATRIP's reference, an airline PNR, a ticket number, a passenger
/// (`DOE/JANE`) or ATRIP's request id, enqueued within a time range. One match opens its page.
pub async fn find(State(c): State<Console>, who: Who, Query(q): Query<FindQuery>) -> Page {
    let bad = |m: &str| html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad request", m);
    let text = q.q.as_deref().unwrap_or_default().trim();
    super::refuse_nul(Some(&who), "search text (q)", text)?;
    if let Some(f) = &q.format {
        super::refuse_nul(Some(&who), "format", f)?;
    }
    if text.chars().count() > 128 {
        return Err(bad("The search text (q) is longer than 128 characters."));
    }
    let (from, until) = range(q.from.as_deref(), q.until.as_deref()).map_err(|m| bad(&m))?;
    let csv = match q.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("html") => false,
        Some("csv") => true,
        Some(_) => return Err(bad("The format must be html or csv.")),
    };
    let mut body = format!(
        r#"<form method="get" action="/console/find" id="find"><p><label for="q">order no or its start, client order no or its start, ATRIP reference, airline PNR, ticket number, passenger (DOE/JANE) or ATRIP request id</label><br><input id="q" name="q" value="{}" maxlength="128" autofocus> <label for="find-from">enqueued from</label> <input id="find-from" name="from" type="date" value="{}"> <label for="find-until">until</label> <input id="find-until" name="until" type="date" value="{}"> <button>Find</button></p></form>"#,
        E(text),
        E(q.from.as_deref().unwrap_or_default()),
        E(q.until.as_deref().unwrap_or_default()),
    );
    if text.is_empty() {
        body.push_str("<p>Type the start of an order number or a client order number, ATRIP's reference, an airline PNR, a ticket number, a passenger or ATRIP's request id.</p>");
        return Ok(html::page("Find an order", Some(&who), Refresh::Off, &body).into_response());
    }
    let query = crate::jobs::FindQuery {
        text: text.to_owned(),
        from,
        until,
    };
    let rows = c
        .store
        .console_search(&query, FOUND_CAP)
        .await
        .map_err(|e| store_error(&who, &e))?;
    if csv {
        return Ok(super::listing::csv_response("orders-found.csv", &rows));
    }
    if let [only] = &rows[..] {
        return Ok(Redirect::to(&format!(
            "/console/orders/{}",
            html::url_part(&only.order_no)
        ))
        .into_response());
    }
    let now = c
        .store
        .console_now()
        .await
        .map_err(|e| store_error(&who, &e))?;
    if rows.is_empty() {
        let _ = write!(body, r#"<p id="empty">No order matches “{}”.</p>"#, E(text));
    } else {
        let mut link = format!("q={}", html::url_part(text));
        for (k, v) in [("from", &q.from), ("until", &q.until)] {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                let _ = write!(link, "&{k}={}", html::url_part(v));
            }
        }
        let _ = write!(
            body,
            r#"<p id="found">{} orders match{}. <a id="csv" href="/console/find?{}&amp;format=csv">CSV</a></p>"#,
            rows.len(),
            if rows.len() as i64 >= FOUND_CAP {
                " (the newest only: type more of it)"
            } else {
                ""
            },
            E(&link)
        );
        orders_table(&mut body, &rows, now);
    }
    Ok(html::page("Find an order", Some(&who), Refresh::Off, &body).into_response())
}

fn orders_table(body: &mut String, rows: &[JobRow], now: chrono::DateTime<chrono::Utc>) {
    body.push_str(r#"<table class="orders"><tr><th scope="col">order</th><th scope="col">state</th><th scope="col">updated</th><th scope="col">why</th><th scope="col">ATRIP's last answer</th><th scope="col" class="num">pay.do sent</th><th scope="col">PNR</th></tr>"#);
    for row in rows {
        let no = E(&row.order_no);
        let why = if matches!(row.state.as_str(), "failed" | "needs_review") {
            let kind = super::listing::kind(row);
            E(&super::listing::short_reason(row, kind)).to_string()
        } else {
            E(&crate::domain::truncate(
                row.last_error.as_deref().unwrap_or("—"),
                80,
            ))
            .to_string()
        };
        let _ = write!(
            body,
            r#"<tr id="row-{no}"><th scope="row"><a href="/console/orders/{no}">{no}</a>{}</th><td>{}</td><td title="{}">{}</td><td>{why}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            html::client_order_no(row.client_order_no.as_deref()),
            html::state(&row.state),
            html::time(row.updated_at),
            html::ago(now, row.updated_at),
            last_answer(row),
            row.pay_sends,
            html::opt(row.pnr.as_deref()),
        );
    }
    body.push_str("</table>");
}

/// ATRIP's last answer on the row, in words: status, message, and the order's status.
pub fn last_answer(row: &JobRow) -> String {
    let mut parts = Vec::new();
    if let Some(status) = row.atrip_status {
        parts.push(format!("status {status}"));
    }
    if let Some(msg) = row.atrip_message.as_deref().filter(|m| !m.is_empty()) {
        parts.push(format!("“{}”", E(msg)));
    }
    if let Some(s) = row.order_status.as_deref() {
        parts.push(format!("orderStatus {}", html::order_status(s)));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(", ")
    }
}

/// "Newer" back to the first page, "Older" after the last row when the page was full.
fn pager(
    body: &mut String,
    path: &str,
    filter: &str,
    rows: &[JobRow],
    page_size: i64,
    paged: bool,
) {
    body.push_str(r#"<p class="pager">"#);
    if paged {
        let _ = write!(
            body,
            r#"<a href="{path}?{}">« Newest</a> "#,
            filter.trim_end_matches('&')
        );
    }
    if rows.len() as i64 >= page_size {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                r#"<a id="older" href="{path}?{filter}before={}">Older »</a>"#,
                Cursor::after(last).to_param()
            );
        }
    }
    body.push_str("</p>");
}
