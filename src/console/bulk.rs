//! Bulk actions from "Needs a person": a plain retry or a cancel of every ticked order, each
//! on its own through the job store, which checks the rules (P7, P7a, P8) per order whatever
//! the page offered; the result lists what was done and what was refused, and why.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::html::{self, Refresh, E};
use super::{Console, Form, Who};
use crate::domain::OrderNo;

/// Bulk actions take at most this many orders.
pub const MAX_SELECTED: usize = 1000;

/// `POST /console/bulk` (and `/console/retry`, a retry): a plain retry or a cancel of every
/// ticked order, each on its own through the job store (one refused does not stop the others);
/// the page lists what was done and what was refused, and why.
pub async fn bulk(State(c): State<Console>, who: Who, form: Form) -> Response {
    if let Err(refused) = who.may_act(&form) {
        return refused;
    }
    let bad = |m: &str| html::message(StatusCode::BAD_REQUEST, Some(&who), "Bad request", m);
    let action = form.get("action").unwrap_or("retry");
    if action.contains('\0') {
        return bad("The action holds a NUL character.");
    }
    let cancel = match action {
        "retry" => false,
        "cancel" => true,
        _ => return bad("The action must be retry or cancel."),
    };
    let mut selected: Vec<&str> = form.all("order_no").collect();
    if selected.iter().any(|o| o.contains('\0')) {
        return bad("An order_no holds a NUL character.");
    }
    selected.sort_unstable();
    selected.dedup();
    if selected.is_empty() {
        return html::message(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "Nothing selected",
            &format!("Tick at least one order to {action}."),
        );
    }
    if selected.len() > MAX_SELECTED {
        return html::message(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "Too many",
            &format!(
                "{} at most {MAX_SELECTED} orders at once.",
                if cancel { "Cancel" } else { "Retry" }
            ),
        );
    }
    let (did, didnt) = if cancel {
        ("cancelled", "not cancelled")
    } else {
        ("retried", "not retried")
    };
    let mut done_rows = String::new();
    let mut refused_rows = String::new();
    let (mut ok, mut refused) = (0, 0);
    for raw in selected {
        let no = E(raw);
        let result = match OrderNo::parse(raw) {
            Err(_) => Err("not an order number".to_owned()),
            Ok(o) if cancel => c
                .store
                .cancel(o.as_str(), &who.by())
                .await
                .map(|()| "cancelled".to_owned())
                .map_err(words),
            Ok(o) => c
                .store
                .retry(o.as_str(), None, false, &who.by())
                .await
                .map(|done| {
                    format!(
                        "retried: back to {}{}",
                        done.state,
                        if done.may_pay {
                            "; may pay once the order query shows it unpaid"
                        } else {
                            ""
                        }
                    )
                })
                .map_err(words),
        };
        match result {
            Ok(what) => {
                ok += 1;
                info!(order_no = raw, by = %who.by(), action, "console: bulk");
                let _ = write!(
                    done_rows,
                    r#"<tr><th scope="row"><a href="/console/orders/{no}">{no}</a></th><td class="ok">{}</td></tr>"#,
                    E(&what)
                );
            }
            Err(why) => {
                refused += 1;
                let _ = write!(
                    refused_rows,
                    r#"<tr><th scope="row"><a href="/console/orders/{no}">{no}</a></th><td class="bad">{didnt}: {}</td></tr>"#,
                    E(&why)
                );
            }
        }
    }
    let mut body = format!(r#"<p id="summary">{ok} {did}, {refused} {didnt}.</p>"#);
    let head = r#"<tr><th scope="col">order</th><th scope="col">result</th></tr>"#;
    if ok > 0 {
        let _ = write!(
            body,
            r#"<h2>Done</h2><table id="done-list">{head}{done_rows}</table>"#
        );
    }
    if refused > 0 {
        let _ = write!(
            body,
            r#"<h2>Refused</h2><table id="refused-list">{head}{refused_rows}</table>"#
        );
    }
    body.push_str(r#"<p><a href="/console/review">Back to the orders that need a person</a></p>"#);
    let title = if cancel {
        "Cancel selected"
    } else {
        "Retry selected"
    };
    html::page(title, Some(&who), Refresh::Off, &body).into_response()
}

/// A store error in words for one row of the result.
fn words(e: crate::jobs::Error) -> String {
    match e {
        crate::jobs::Error::Database(_) => "the database did not answer; try again".to_owned(),
        other => other.to_string(),
    }
}
