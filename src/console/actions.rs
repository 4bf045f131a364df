//! What operators do to one order: retry, retry allowing a second `pay.do` (behind a page that
//! repeats the warning), cancel (several at once: `review::bulk`). Each goes through `JobStore::retry` or
//! `JobStore::cancel`, which enforce the rules (docs/design.md, P7 and P8) whatever the page
//! offered, and each is recorded as an event naming the operator (`console:operator:NAME`).

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tracing::info;

use super::html::{self, Refresh, E};
use super::{store_error, Console, Form, Role, Who};
use crate::domain::{self, OrderNo};
use crate::jobs::JobRow;
use crate::machine::PayOutcome;

/// The warning of `retry --repay`, word for word on the confirmation page.
pub const REPAY_WARNING: &str =
    "Send a second pay.do only if you checked in ATRIP that the order is unpaid.";

/// The actions that fit a row, and the advice that says why (and why the others do not).
pub struct Fits {
    pub retry: bool,
    /// A retry that grants one more `pay.do`: only when a plain retry would not.
    pub repay: bool,
    pub cancel: bool,
    pub advice: String,
    /// Why a retry is not offered (for a `failed` or `needs_review` row).
    pub no_retry: Option<String>,
    /// Why a second `pay.do` is not offered.
    pub no_repay: Option<String>,
    /// Why cancel is not offered.
    pub no_cancel: Option<String>,
}

impl Fits {
    /// What `machine::operator::offers` allows for the row (the store decides with the same
    /// functions, whatever the page offered), and why in words.
    pub fn of(row: &JobRow) -> Fits {
        let offers = row.offers();
        let (retry, repay, cancel) = (
            offers.retry.is_ok(),
            offers.repay.is_ok(),
            offers.cancel.is_ok(),
        );
        let waiting = matches!(
            domain::State::parse(&row.state),
            Some(domain::State::Failed | domain::State::NeedsReview)
        );
        let charged_nothing = row
            .last_pay_outcome
            .as_deref()
            .and_then(PayOutcome::parse)
            .is_some_and(PayOutcome::charged_nothing);
        let paid = row.paid_at.is_some();
        let mut advice = if !waiting {
            if cancel {
                "Waiting to be paid: Cancel stops it before any pay.do.".into()
            } else {
                String::new()
            }
        } else if let Err(why) = &offers.retry {
            let mut text = format!("Retry is not offered: {why}.");
            if why.contains("--card-file") {
                text.push_str(" The console takes no card data: the command line does (ticketing-tracker retry --card-file FILE).");
            }
            if cancel {
                text.push_str(" Cancel stops it.");
            }
            text
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
        } else if repay {
            "A pay.do may have reached ATRIP: check the order in ATRIP. Paid or ticketed there: Retry (follows it, never pays again). Unpaid there and no payment in progress: Retry and allow a second pay.do.".into()
        } else {
            "A pay.do may have reached ATRIP: check the order in ATRIP. Paid or ticketed there: Retry (follows it, never pays again).".into()
        };
        if waiting && retry && !repay && row.needs_card() && !row.card_held() && !paid {
            if let Err(why) = &offers.repay {
                if why.contains("card data was erased") {
                    advice.push_str(" Its card data was erased: a second pay.do needs fresh card data, which only the command line takes (ticketing-tracker retry --repay --card-file FILE).");
                }
            }
        }
        Fits {
            retry,
            repay,
            cancel,
            advice,
            no_retry: offers.retry.err().filter(|_| waiting),
            no_repay: offers.repay.err().filter(|_| waiting),
            no_cancel: offers.cancel.err(),
        }
    }
}

/// The order page after an action, which says what was done: the message is the session's,
/// set here, never the URL's.
fn back_to(c: &Console, who: &Who, order_no: &str, done: &'static str) -> Response {
    let page = format!("/console/orders/{order_no}");
    c.sessions.flash(who, page.clone(), done);
    Redirect::to(&page).into_response()
}

/// What the order page says after each action.
pub const RETRIED: &str =
    "Retried. The order resumes with an order query; its timeline below shows what follows.";
pub const REPAID: &str = "Retried with one more pay.do allowed. The worker queries first and pays only if ATRIP shows the order unpaid.";
pub const CANCELLED: &str = "Cancelled.";

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
    super::refuse_nul(Some(who), "order number in the path", raw)?;
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
    retried(&c, &who, &order_no, false, None).await
}

/// `retry` (or `retry --repay`) of one order, then back to its page or the store's refusal.
async fn retried(
    c: &Console,
    who: &Who,
    order_no: &str,
    repay: bool,
    seen_attempts: Option<i32>,
) -> Response {
    let (action, what) = if repay {
        (REPAID, "console: retry --repay")
    } else {
        (RETRIED, "console: retry")
    };
    match c
        .store
        .retry_seen(order_no, None, repay, &who.by(), seen_attempts)
        .await
    {
        Ok(done) => {
            info!(order_no, by = %who.by(), to = %done.state, may_pay = done.may_pay, "{what}");
            back_to(c, who, order_no, action)
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
        html::opt(
            row.last_error
                .as_deref()
                .map(crate::machine::kinds::without_stale_minutes)
                .as_deref()
        ),
        html::opt_time(row.pay_deadline),
    );
    if let Some(problem) = problem {
        let _ = write!(body, r#"<p class="message">{}</p>"#, E(problem));
    }
    if fits.repay {
        let _ = write!(
            body,
            r#"<form method="post" action="/console/orders/{no}/repay"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="seen" value="{}"><p><label><input type="checkbox" name="confirm" value="unpaid-in-atrip" required id="confirm"> I checked in ATRIP that order {no} is unpaid and that no payment is in progress.</label></p><p><button class="danger" id="repay">Retry and allow a second pay.do</button> <a href="/console/orders/{no}">Back</a></p></form>"#,
            E(&who.csrf),
            row.pay_attempts
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
    // The pay intents the confirmation page showed: a form from an older page (another
    // operator allowed a pay.do since) allows nothing.
    let Some(seen) = form.get("seen").and_then(|s| s.parse::<i32>().ok()) else {
        return confirm_page(
            &c,
            &who,
            &order_no,
            StatusCode::BAD_REQUEST,
            Some("This form does not say what the page you confirmed on showed; confirm on this page."),
        )
        .await;
    };
    retried(&c, &who, &order_no, true, Some(seen)).await
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
            back_to(&c, &who, &order_no, CANCELLED)
        }
        Err(e) => store_error(&who, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, pay_sends: i32, outcome: Option<&str>, paid: bool) -> JobRow {
        JobRow {
            state: state.into(),
            payment_method: 1,
            pay_sends,
            pay_attempts: pay_sends.max(1),
            last_pay_outcome: outcome.map(str::to_owned),
            paid_at: paid.then(chrono::Utc::now),
            ..JobRow::default()
        }
    }

    fn offered(r: &JobRow) -> (bool, bool, bool) {
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
