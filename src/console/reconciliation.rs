//! The reconciliation in the console (docs/design.md, R1-R6): the last runs (daily or asked
//! for) with their counts by kind, and what the last finished one found, each order linked to
//! its page. Read only: a run is started by the worker's daily loop or by `ticketing-tracker
//! reconcile`, never from a page.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::html::{self, Refresh, E};
use super::{store_error, Console, Who};
use crate::reconcile::Kind;

/// The runs the page lists, newest first.
const RUNS_SHOWN: i64 = 10;
/// The findings of the last run shown (its record keeps more; `reconcile --last` prints them).
const FINDINGS_SHOWN: usize = 500;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => E(s).to_string(),
        Some(Value::Null) | None => "—".into(),
        Some(other) => E(&other.to_string()).to_string(),
    }
}

/// `GET /console/reconcile`.
pub async fn page(State(c): State<Console>, who: Who) -> Response {
    let runs = match c.store.reconcile_runs(RUNS_SHOWN).await {
        Ok(runs) => runs,
        Err(e) => return store_error(&who, &e),
    };
    let mut body = String::from(
        r#"<p>Each run compares the job table with ATRIP's order list (<code>orderList.do</code>) for the orders ATRIP created in its window. Rows waiting in paying or needs_review that ATRIP shows paid get that evidence recorded and are followed again; nothing is ever paid from here. The other kinds need a person.</p>"#,
    );
    if runs.is_empty() {
        body.push_str(r#"<p id="no-runs">No reconciliation has run yet (<code>ticketing-tracker reconcile --since DAY</code>, or <code>reconcile.daily</code> on the workers).</p>"#);
        return html::page("Reconciliation", Some(&who), Refresh::Off, &body).into_response();
    }
    body.push_str(r#"<table id="runs"><thead><tr><th>Run</th><th>Started</th><th>By</th><th>Window (ATRIP's creation times)</th><th>Outcome</th><th>Orders</th>"#);
    for kind in Kind::ALL {
        let _ = write!(body, "<th>{}</th>", kind.as_str());
    }
    body.push_str("</tr></thead><tbody>");
    for run in &runs {
        let _ = write!(
            body,
            r#"<tr class="{outcome}"><td>{id} ({trigger})</td><td>{started}</td><td>{by}</td><td>{from} – {to}</td><td>{outcome}{error}</td><td>{orders} in {pages} pages</td>"#,
            id = run.id,
            trigger = E(&run.trigger),
            started = html::time(run.started_at),
            by = E(&run.run_by),
            from = html::time(run.window_from),
            to = html::time(run.window_to),
            outcome = E(&run.outcome),
            error = run
                .error
                .as_deref()
                .map(|e| format!(": {}", E(e)))
                .unwrap_or_default(),
            orders = run.atrip_orders,
            pages = run.pages,
        );
        for kind in Kind::ALL {
            let n = crate::reconcile::count(run, kind);
            let _ = write!(body, r#"<td class="count">{n}</td>"#);
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    if let Some(last) = runs.iter().find(|r| r.outcome != "running") {
        let findings: Vec<&Value> = last
            .findings
            .as_array()
            .map(|a| a.iter().filter(|f| f.get("kind").is_some()).collect())
            .unwrap_or_default();
        let _ = write!(body, r#"<h2>What run {} found</h2>"#, last.id);
        if findings.is_empty() {
            body.push_str(r#"<p id="no-findings">Nothing: the table and ATRIP agree on every order of the window.</p>"#);
        } else {
            body.push_str(r#"<table id="findings"><thead><tr><th>Kind</th><th>Order</th><th>Row's state</th><th>ATRIP status</th><th>ATRIP paid at</th><th>What</th></tr></thead><tbody>"#);
            for f in findings.iter().take(FINDINGS_SHOWN) {
                let order = f.get("order_no").and_then(Value::as_str).unwrap_or("");
                let order_cell = if f.get("table_state").is_some_and(|s| !s.is_null()) {
                    format!(
                        r#"<a href="/console/orders/{}">{}</a>"#,
                        html::url_part(order),
                        E(order)
                    )
                } else {
                    E(order).to_string()
                };
                let _ = write!(
                    body,
                    r#"<tr class="finding"><td>{}</td><td>{order_cell}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>"#,
                    text(f, "kind"),
                    text(f, "table_state"),
                    text(f, "atrip_status"),
                    f.get("atrip_error_code")
                        .and_then(Value::as_str)
                        .map(|c| format!(" ({})", E(c)))
                        .unwrap_or_default(),
                    text(f, "atrip_paid_at"),
                    text(f, "detail"),
                );
            }
            body.push_str("</tbody></table>");
            if findings.len() > FINDINGS_SHOWN {
                let _ = write!(
                    body,
                    "<p>{} more: <code>ticketing-tracker reconcile --last</code> prints them all.</p>",
                    findings.len() - FINDINGS_SHOWN
                );
            }
        }
    }
    html::page("Reconciliation", Some(&who), Refresh::Off, &body).into_response()
}
