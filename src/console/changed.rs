//! `GET /console/changed`: ticketed orders ATRIP reported voided, cancelled by the airline or
//! rescheduled (rule W6), newest report first, each with what the order query made of it:
//! `reported` (the query is pending), `confirmed`, or `unconfirmed` (for a person to look).

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::IntoResponse;

use super::html::{self, Refresh, E};
use super::{store_error, Console, Who};
use crate::jobs::Change;

/// The list shows the latest reports only: changes after ticketing are rare.
const SHOWN: i64 = 200;

pub async fn changed(
    State(c): State<Console>,
    who: Who,
) -> Result<axum::response::Response, axum::response::Response> {
    let rows = c
        .store
        .changed_after_ticketing(SHOWN)
        .await
        .map_err(|e| store_error(&who, &e))?;
    let mut body = String::from(
        "<p>Orders ATRIP had ticketed and later reported voided, cancelled by the airline, or with a schedule change (by webhook). The worker asks ATRIP's order query about each; only the query confirms a void or a cancellation (it shows the order cancelled). Nothing here changes the order's state or pays anything.</p>",
    );
    if rows.is_empty() {
        body.push_str(r#"<p id="empty">No order was reported changed after ticketing.</p>"#);
    } else {
        body.push_str(
            r#"<table id="changed"><tr><th>order</th><th>change</th><th>order query</th><th>reported</th><th>checked</th><th>PNR</th><th>what the query showed</th></tr>"#,
        );
        for r in &rows {
            let change: String =
                Change::parse(&r.change).map_or_else(|| r.change.clone(), |c| c.words().to_owned());
            let check = match r.check.as_str() {
                "reported" => "pending",
                "confirmed" => "confirmed",
                _ => "not shown: look in ATRIP",
            };
            let _ = write!(
                body,
                r#"<tr><td><a href="/console/orders/{}">{}</a></td><td>{}</td><td class="{}">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                html::url_part(&r.order_no),
                E(&r.order_no),
                E(&change),
                E(&r.check),
                E(check),
                r.reported_at.format("%Y-%m-%d %H:%M:%S"),
                r.checked_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                E(r.pnr.as_deref().unwrap_or("")),
                E(r.note.as_deref().unwrap_or("")),
            );
        }
        body.push_str("</table>");
    }
    Ok(html::page("Changed after ticketing", Some(&who), Refresh::Off, &body).into_response())
}
