//! What operators do: retry, retry allowing a second `pay.do` (behind a page that repeats the
//! warning), cancel, and retry several at once. Each goes through `JobStore::retry` or
//! `JobStore::cancel`, which enforce the rules (docs/design.md, P7 and P8) whatever the page
//! offered, and each is recorded as an event naming the operator (`console:operator:NAME`).

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tracing::info;

use super::html::{self, Refresh, E};
use super::{store_error, Console, Form, Role, Who};
use crate::domain::{OrderNo, PaymentMethod};
use crate::jobs::ConsoleOrder;
use crate::machine::PayOutcome;

/// The warning of `retry --repay`, word for word on the confirmation page.
pub const REPAY_WARNING: &str =
    "Send a second pay.do only if you checked in ATRIP that the order is unpaid.";

/// Bulk retries take at most this many orders (ten full pages).
const MAX_SELECTED: usize = 500;

/// The actions that fit a row, and the advice that says why.
pub struct Fits {
    pub retry: bool,
    /// A retry that grants one more `pay.do`: only when a plain retry would not.
    pub repay: bool,
    pub cancel: bool,
    pub advice: String,
}

impl Fits {
    /// Mirrors `JobStore::retry` and `cancel`: what they would accept. (They decide; this only
    /// chooses the buttons.)
    pub fn of(row: &ConsoleOrder) -> Fits {
        let retry = row.state == "failed" || row.state == "needs_review";
        let charged_nothing = row
            .last_pay_outcome
            .as_deref()
            .and_then(PayOutcome::parse)
            .is_some_and(PayOutcome::charged_nothing);
        let paid = row.paid_at.is_some();
        let repay = retry && !paid && row.pay_sends > 0 && !charged_nothing;
        let cancel = (row.state == "needs_review" || row.state == "pending")
            && !paid
            && row.pay_sends == 0
            && row.lease_owner.is_none();
        let mut advice = if !retry {
            if cancel {
                "Waiting to be paid: Cancel stops it before any pay.do.".into()
            } else {
                String::new()
            }
        } else if paid {
            format!(
                "An answer showed this order paid ({}). Retry follows it to its tickets; it is never paid again.",
                row.paid_evidence.as_deref().unwrap_or("evidence recorded")
            )
        } else if row.pay_sends == 0 {
            let mut text =
                String::from("No pay.do reached ATRIP. Retry pays it (after an order query).");
            if cancel {
                text.push_str(" Cancel stops it.");
            }
            text
        } else if charged_nothing {
            "ATRIP said nothing was charged. Fix the cause (the card, the credentials), then Retry pays again.".into()
        } else {
            "A pay.do may have reached ATRIP: check the order in ATRIP. Paid or ticketed there: Retry (follows it, never pays again). Unpaid there and no payment in progress: Retry and allow a second pay.do.".into()
        };
        let needs_card = PaymentMethod::from_code(i64::from(row.payment_method))
            .is_some_and(PaymentMethod::needs_card);
        if retry && !paid && needs_card && !row.card_held {
            advice.push_str(" Its card data was erased: a retry that pays needs fresh card data, which only the command line takes (ticketing-tracker retry --card-file).");
        }
        Fits {
            retry,
            repay,
            cancel,
            advice,
        }
    }
}

/// The order page after an action, saying what was done.
fn back_to(order_no: &str, done: &str) -> Response {
    Redirect::to(&format!("/console/orders/{order_no}?done={done}")).into_response()
}

/// The order an action on one order is for, once the person may act (an operator, with the
/// form's CSRF token) and the number is one.
#[allow(clippy::result_large_err)]
fn acting_on(who: &Who, form: &Form, raw: &str) -> Result<String, Response> {
    who.may_act(form)?;
    order_no(who, raw)
}

/// A path's order number, or a 404: anything else is no order of ours.
#[allow(clippy::result_large_err)]
fn order_no(who: &Who, raw: &str) -> Result<String, Response> {
    OrderNo::parse(raw).map(String::from).map_err(|_| {
        html::message(
            StatusCode::NOT_FOUND,
            Some(who),
            "No such order",
            "That is not an order number.",
        )
    })
}

/// `POST /console/orders/{order_no}/retry`: a plain retry (never a second `pay.do` after one
/// that may have reached ATRIP).
pub async fn retry(
    State(c): State<Console>,
    who: Who,
    Path(raw): Path<String>,
    form: Form,
) -> Response {
    let order_no = match acting_on(&who, &form, &raw) {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    retried(&c, &who, &order_no, false).await
}

/// `retry` (or `retry --repay`) of one order, then back to its page or the store's refusal.
async fn retried(c: &Console, who: &Who, order_no: &str, repay: bool) -> Response {
    let (action, what) = if repay {
        ("repay", "console: retry --repay")
    } else {
        ("retry", "console: retry")
    };
    match c.store.retry(order_no, None, repay, &who.by()).await {
        Ok(done) => {
            info!(order_no, by = %who.by(), to = %done.state, may_pay = done.may_pay, "{what}");
            back_to(order_no, action)
        }
        Err(e) => store_error(who, &e),
    }
}

/// `GET /console/orders/{order_no}/repay`: the confirmation page, repeating the warning.
pub async fn repay_form(State(c): State<Console>, who: Who, Path(raw): Path<String>) -> Response {
    if who.role != Role::Operator {
        return html::message(
            StatusCode::FORBIDDEN,
            Some(&who),
            "Refused",
            "Viewers cannot retry or cancel orders.",
        );
    }
    let order_no = match order_no(&who, &raw) {
        Ok(o) => o,
        Err(r) => return r,
    };
    confirm_page(&c, &who, &order_no, StatusCode::OK, None).await
}

async fn confirm_page(
    c: &Console,
    who: &Who,
    order_no: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let row = match c.store.console_order(order_no).await {
        Ok(Some(row)) => row,
        Ok(None) => return store_error(who, &crate::jobs::Error::NotFound(order_no.to_owned())),
        Err(e) => return store_error(who, &e),
    };
    let fits = Fits::of(&row);
    let no = E(order_no);
    let mut body = format!(
        r#"<p class="warning" id="repay-warning">{}</p><p>This allows one more pay.do for order <a href="/console/orders/{no}">{no}</a>. The worker still queries the order first and pays only if ATRIP shows it unpaid. If ATRIP took the earlier payment, the order is charged twice.</p><dl class="facts"><dt>state</dt><dd>{}</dd><dt>pay.do sent</dt><dd>{}</dd><dt>last pay.do answer</dt><dd>{}</dd><dt>ATRIP's last answer</dt><dd>{}</dd><dt>why</dt><dd>{}</dd><dt>payment deadline</dt><dd>{}</dd></dl>"#,
        E(REPAY_WARNING),
        html::state(&row.state),
        row.pay_sends,
        html::opt(row.last_pay_outcome.as_deref()),
        super::pages::last_answer(&row),
        html::opt(row.last_error.as_deref()),
        html::opt_time(row.pay_deadline),
    );
    if let Some(problem) = problem {
        let _ = write!(body, r#"<p class="message">{}</p>"#, E(problem));
    }
    if fits.repay {
        let _ = write!(
            body,
            r#"<form method="post" action="/console/orders/{no}/repay"><input type="hidden" name="csrf" value="{}"><p><label><input type="checkbox" name="confirm" value="unpaid-in-atrip" required id="confirm"> I checked in ATRIP that order {no} is unpaid and that no payment is in progress.</label></p><p><button class="danger" id="repay">Retry and allow a second pay.do</button> <a href="/console/orders/{no}">Back</a></p></form>"#,
            E(&who.csrf)
        );
    } else {
        body.push_str(r#"<p class="message">A second pay.do is not offered for this order: "#);
        body.push_str(
            &E(if fits.retry {
                &fits.advice
            } else {
                "it is not failed or needs_review."
            })
            .to_string(),
        );
        body.push_str("</p>");
    }
    (
        status,
        html::page("Allow a second pay.do?", Some(who), Refresh::Off, &body),
    )
        .into_response()
}

/// `POST /console/orders/{order_no}/repay`: `retry --repay`, only with the box ticked.
pub async fn repay(
    State(c): State<Console>,
    who: Who,
    Path(raw): Path<String>,
    form: Form,
) -> Response {
    let order_no = match acting_on(&who, &form, &raw) {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    if form.get("confirm") != Some("unpaid-in-atrip") {
        return confirm_page(
            &c,
            &who,
            &order_no,
            StatusCode::BAD_REQUEST,
            Some("Tick the box to confirm that you checked the order in ATRIP."),
        )
        .await;
    }
    retried(&c, &who, &order_no, true).await
}

/// `POST /console/orders/{order_no}/cancel`.
pub async fn cancel(
    State(c): State<Console>,
    who: Who,
    Path(raw): Path<String>,
    form: Form,
) -> Response {
    let order_no = match acting_on(&who, &form, &raw) {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    match c.store.cancel(&order_no, &who.by()).await {
        Ok(()) => {
            info!(order_no, by = %who.by(), "console: cancel");
            back_to(&order_no, "cancel")
        }
        Err(e) => store_error(&who, &e),
    }
}

/// `POST /console/retry`: a plain retry of every ticked order, each on its own (one refused
/// does not stop the others); the page says what happened to each.
pub async fn retry_selected(State(c): State<Console>, who: Who, form: Form) -> Response {
    if let Err(refused) = who.may_act(&form) {
        return refused;
    }
    let mut selected: Vec<&str> = form.all("order_no").collect();
    selected.sort_unstable();
    selected.dedup();
    if selected.is_empty() {
        return html::message(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "Nothing selected",
            "Tick at least one order to retry.",
        );
    }
    if selected.len() > MAX_SELECTED {
        return html::message(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "Too many",
            &format!("Retry at most {MAX_SELECTED} orders at once."),
        );
    }
    let mut body = String::from(r#"<table id="results"><tr><th>order</th><th>result</th></tr>"#);
    let (mut ok, mut refused) = (0, 0);
    for raw in selected {
        let result = match OrderNo::parse(raw) {
            Err(_) => Err("not an order number".to_owned()),
            Ok(o) => c
                .store
                .retry(o.as_str(), None, false, &who.by())
                .await
                .map_err(|e| match e {
                    crate::jobs::Error::Database(_) => {
                        "the database did not answer; try again".to_owned()
                    }
                    other => other.to_string(),
                }),
        };
        let no = E(raw);
        match result {
            Ok(done) => {
                ok += 1;
                info!(order_no = raw, by = %who.by(), to = %done.state, may_pay = done.may_pay, "console: retry (selection)");
                let _ = write!(
                    body,
                    r#"<tr><td><a href="/console/orders/{no}">{no}</a></td><td class="ok">retried: back to {}{}</td></tr>"#,
                    done.state,
                    if done.may_pay {
                        "; may pay once the order query shows it unpaid"
                    } else {
                        ""
                    }
                );
            }
            Err(why) => {
                refused += 1;
                let _ = write!(
                    body,
                    r#"<tr><td><a href="/console/orders/{no}">{no}</a></td><td class="bad">not retried: {}</td></tr>"#,
                    E(&why)
                );
            }
        }
    }
    let _ = write!(
        body,
        r#"</table><p id="summary">{ok} retried, {refused} not retried.</p><p><a href="/console/review">Back to the orders that need a person</a></p>"#
    );
    html::page("Retry selected", Some(&who), Refresh::Off, &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, pay_sends: i32, outcome: Option<&str>, paid: bool) -> ConsoleOrder {
        ConsoleOrder {
            state: state.into(),
            payment_method: 1,
            pay_sends,
            pay_attempts: pay_sends.max(1),
            last_pay_outcome: outcome.map(str::to_owned),
            paid_at: paid.then(chrono::Utc::now),
            ..ConsoleOrder::default()
        }
    }

    fn offered(r: &ConsoleOrder) -> (bool, bool, bool) {
        let f = Fits::of(r);
        (f.retry, f.repay, f.cancel)
    }

    #[test]
    fn the_actions_offered_follow_the_rules_of_retry_and_cancel() {
        // P7: a paid order is followed again, never paid again.
        let paid = row("needs_review", 1, Some("accepted"), true);
        assert_eq!(offered(&paid), (true, false, false));
        assert!(Fits::of(&paid).advice.contains("never paid again"));
        // A pay.do may have reached ATRIP: a second one only through the confirmation.
        let unclear = row("needs_review", 1, Some("outcome_unknown"), false);
        assert_eq!(offered(&unclear), (true, true, false));
        // P8: nothing can have reached ATRIP: cancel fits.
        let never_sent = row("needs_review", 0, Some("not_sent"), false);
        assert_eq!(offered(&never_sent), (true, false, true));
        // A documented refusal charged nothing: a plain retry pays again; failed rows are not
        // cancelled.
        let refused = row("failed", 1, Some("refused"), false);
        assert_eq!(offered(&refused), (true, false, false));
        let pending = row("pending", 0, None, false);
        assert_eq!(offered(&pending), (false, false, true));
        assert!(!Fits::of(&pending).advice.contains("Retry"));
        assert_eq!(
            offered(&row("ticketed", 1, Some("accepted"), true)),
            (false, false, false)
        );
        // A card order whose card was erased is told where fresh card data goes.
        let mut card = row("failed", 1, Some("refused"), false);
        card.payment_method = 3;
        assert!(Fits::of(&card).advice.contains("--card-file"));
    }
}
