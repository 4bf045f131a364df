//! What people read in lists: the orders that need a person, one state's orders, and the
//! search. Every list is newest first and paged by keyset (the last row's `updated_at, id`),
//! never by OFFSET, so the hundredth page costs what the first does.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::actions::Fits;
use super::html::{self, Refresh, E};
use super::{store_error, Console, Role, Who};
use crate::domain::State as JobState;
use crate::jobs::{ConsoleOrder, Cursor};

type Page = Result<Response, Response>;

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    before: Option<String>,
}

impl ListQuery {
    fn cursor(&self) -> Result<Cursor, String> {
        match self.before.as_deref().filter(|b| !b.is_empty()) {
            None => Ok(Cursor::first()),
            Some(b) => Cursor::parse(b).ok_or_else(|| "That page link is malformed.".into()),
        }
    }
}

/// `GET /console/review`: `needs_review` and `failed` orders, newest first, each with its
/// reason and the actions that fit; operators tick several to retry them at once.
pub async fn review(State(c): State<Console>, who: Who, Query(q): Query<ListQuery>) -> Page {
    let bad = |m: &str| html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad link", m);
    let cursor = q.cursor().map_err(|m| bad(&m))?;
    let only = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match JobState::parse(s) {
            Some(st @ (JobState::NeedsReview | JobState::Failed)) => Some(st),
            _ => return Err(bad("Only needs_review or failed orders are listed here.")),
        },
    };
    let rows = match only {
        None => c.store.console_needs_person(cursor, c.page_size).await,
        Some(st) => c.store.console_in_state(st, cursor, c.page_size).await,
    }
    .map_err(|e| store_error(&who, &e))?;
    let now = c
        .store
        .console_now()
        .await
        .map_err(|e| store_error(&who, &e))?;
    let filter = only.map_or(String::new(), |s| format!("state={s}&"));
    let mut body = String::from(
        r#"<p>Show: <a href="/console/review">all</a> · <a href="/console/review?state=needs_review">needs_review</a> · <a href="/console/review?state=failed">failed</a></p>"#,
    );
    let operator = who.role == Role::Operator;
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No order needs a person.</p>"#);
    } else {
        if operator {
            let _ = write!(
                body,
                r#"<form method="post" action="/console/retry" id="bulk"><input type="hidden" name="csrf" value="{}"><p><button id="retry-selected">Retry selected</button> <span class="muted">A plain retry: it never allows a second pay.do.</span></p>"#,
                E(&who.csrf)
            );
        }
        orders_table(&mut body, &rows, now, Columns::Review { operator });
        if operator {
            body.push_str("</form>");
        }
    }
    pager(
        &mut body,
        "/console/review",
        &filter,
        &rows,
        c.page_size,
        q.before.is_some(),
    );
    let refresh = if q.before.is_none() {
        Refresh::UnlessBusy(c.refresh_s)
    } else {
        Refresh::Off
    };
    Ok(html::page("Needs a person", Some(&who), refresh, &body).into_response())
}

/// `GET /console/orders?state=…`: one state's orders, newest first.
pub async fn in_state(State(c): State<Console>, who: Who, Query(q): Query<ListQuery>) -> Page {
    let bad = |m: &str| html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad link", m);
    let cursor = q.cursor().map_err(|m| bad(&m))?;
    let Some(state) = q.state.as_deref().and_then(JobState::parse) else {
        return Err(bad("Name a state: pending, paying, ticketing, ticketed, failed, needs_review or cancelled."));
    };
    let rows = c
        .store
        .console_in_state(state, cursor, c.page_size)
        .await
        .map_err(|e| store_error(&who, &e))?;
    let now = c
        .store
        .console_now()
        .await
        .map_err(|e| store_error(&who, &e))?;
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No order in this state.</p>"#);
    } else {
        orders_table(&mut body, &rows, now, Columns::Plain);
    }
    let filter = format!("state={state}&");
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

#[derive(Deserialize)]
pub struct FindQuery {
    q: Option<String>,
}

/// `GET /console/find?q=…`: by order number, client order number, ATRIP's reference or an
/// airline PNR. One match opens its page.
pub async fn find(State(c): State<Console>, who: Who, Query(q): Query<FindQuery>) -> Page {
    let text = q.q.as_deref().unwrap_or_default().trim();
    let mut body = format!(
        r#"<form method="get" action="/console/find"><input name="q" value="{}" maxlength="128" aria-label="order no, client order no or PNR" autofocus> <button>Find</button></form>"#,
        E(text)
    );
    if text.is_empty() || text.len() > 128 {
        body.push_str("<p>Type an order number, a client order number, ATRIP's reference or an airline PNR.</p>");
        return Ok(html::page("Find an order", Some(&who), Refresh::Off, &body).into_response());
    }
    let rows = c
        .store
        .console_find(text, 100)
        .await
        .map_err(|e| store_error(&who, &e))?;
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
        let _ = write!(body, "<p>{} orders match.</p>", rows.len());
        orders_table(&mut body, &rows, now, Columns::Plain);
    }
    Ok(html::page("Find an order", Some(&who), Refresh::Off, &body).into_response())
}

enum Columns {
    Plain,
    /// With the reason, the actions that fit, and (for operators) the boxes to tick.
    Review {
        operator: bool,
    },
}

fn orders_table(
    body: &mut String,
    rows: &[ConsoleOrder],
    now: chrono::DateTime<chrono::Utc>,
    columns: Columns,
) {
    let review = matches!(columns, Columns::Review { .. });
    let operator = matches!(columns, Columns::Review { operator: true });
    body.push_str(r#"<table class="orders"><tr>"#);
    if operator {
        body.push_str("<th></th>");
    }
    body.push_str(r#"<th>order</th><th>state</th><th>updated</th><th>why</th><th>ATRIP's last answer</th><th class="num">pay.do sent</th>"#);
    body.push_str(if review {
        "<th>what fits</th>"
    } else {
        "<th>PNR</th>"
    });
    body.push_str("</tr>");
    for row in rows {
        let no = E(&row.order_no);
        let _ = write!(body, r#"<tr id="row-{no}">"#);
        if operator {
            let _ = write!(
                body,
                r#"<td><input type="checkbox" name="order_no" value="{no}" aria-label="select {no}"></td>"#
            );
        }
        let _ = write!(
            body,
            r#"<td><a href="/console/orders/{no}">{no}</a>{}</td><td>{}</td><td title="{}">{}</td><td>{}</td><td>{}</td><td class="num">{}</td>"#,
            row.client_order_no
                .as_deref()
                .map_or(String::new(), |c| format!(
                    r#"<br><span class="muted">{}</span>"#,
                    E(c)
                )),
            html::state(&row.state),
            html::time(row.updated_at),
            html::ago(now, row.updated_at),
            html::opt(row.last_error.as_deref()),
            last_answer(row),
            row.pay_sends,
        );
        if review {
            let fits = Fits::of(row);
            let _ = write!(body, "<td>{}", E(&fits.advice));
            if operator {
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
                        r#"<a href="/console/orders/{no}/repay">Retry and allow a second pay.do…</a>"#
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
            body.push_str("</td>");
        } else {
            let _ = write!(body, "<td>{}</td>", html::opt(row.pnr.as_deref()));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
}

/// ATRIP's last answer on the row, in words: status, message, and the order's status.
pub fn last_answer(row: &ConsoleOrder) -> String {
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
    rows: &[ConsoleOrder],
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
