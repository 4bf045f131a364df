//! `pay.do`: registers the request, applies its faults, and charges at most once per order; the
//! decision and the charge happen under one lock so concurrent requests cannot both charge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use serde_json::{json, Value};

use super::card::{last4, CardBrand};
use super::create::find_or_create;
use super::faults::{After, Before, PayPlan};
use super::ledger::PayRequestSummary;
use super::order::{Cancellation, Outcome, Payment, AIRLINE_CODE};
use super::pay_rules::{decide, forced, Decision, ILLEGAL_PARAMETER, NOT_CONFIRMED, PNR_PENDING};
use super::reply::{wants_gzip, Reply};
use super::state::Sim;
use crate::atrip::codes::{pay_class, pay_code, pay_msg, PayClass};

/// A PNR-pending order (615) is chased by hand at ATRIP: it stays "1" much longer.
const PNR_PENDING_SLOWDOWN: u32 = 5;

/// `POST /pay.do`.
pub(super) async fn pay_do(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.requests.record("pay.do", &headers, &body);
    let gzip = wants_gzip(&sim, &headers);
    let reply = match sim.admit(&headers, &body) {
        Ok(req) => pay(&sim, &req).await,
        Err(refusal) => refusal,
    };
    reply.render(&sim, gzip).await
}

fn answer(status: i64, detail: Option<String>) -> Value {
    let msg = detail.map_or_else(
        || pay_msg(status).to_owned(),
        |d| format!("{}: {d}", pay_msg(status)),
    );
    json!({"orderNo": null, "pnrCode": null, "paymentMethod": null, "airlines": null, "status": status, "msg": msg})
}

async fn pay(sim: &Sim, req: &Value) -> Reply {
    let order_no = req
        .get("orderNo")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    let plan = match register(sim, order_no, req) {
        Some(plan) => plan,
        None => {
            let detail = if order_no.is_empty() {
                "orderNo is required".to_owned()
            } else {
                format!("orderNo {order_no:?} does not exist")
            };
            return Reply::Json(answer(ILLEGAL_PARAMETER, Some(detail)));
        }
    };
    sim.pause(plan.delay).await;
    if let Some(before) = plan.before {
        record(sim, order_no, None);
        return match before {
            Before::Reset => Reply::Drop,
            Before::ServerError => Reply::ServerError,
        };
    }
    let (status, body) = settle(sim, order_no, req, &plan);
    match plan.after {
        None => {
            record(sim, order_no, Some(status));
            Reply::Json(body)
        }
        Some(after) => {
            // The payment is settled either way; only the client does not learn how.
            record(sim, order_no, None);
            match after {
                After::Drop => Reply::Drop,
                After::Hold(limit) => Reply::Hold(limit),
                After::Garble => Reply::Garbled,
            }
        }
    }
}

/// Counts the request and picks its faults; `None` when the order does not exist.
fn register(sim: &Sim, order_no: &str, req: &Value) -> Option<PayPlan> {
    let mut store = sim.lock();
    let store = &mut *store;
    store.totals.pay_requests += 1;
    let order = find_or_create(sim, store, order_no)?;
    order.ledger.pay_requests += 1;
    order
        .ledger
        .first_pay_at_ms
        .get_or_insert_with(|| chrono::Utc::now().timestamp_millis());
    if order.shown_paid {
        order.ledger.pay_after_paid_shown += 1;
    }
    order.ledger.last_pay_request = Some(summarize(req));
    let mut plan = order.scenario.take_pay_plan();
    sim.chaos.roll_pay(&mut plan);
    store.totals.faults_injected += plan.faults;
    Some(plan)
}

/// What the ledger keeps of a request: never the card number or the CVV.
fn summarize(req: &Value) -> PayRequestSummary {
    let card = req.get("creditCard").filter(|c| c.is_object());
    let number = card
        .and_then(|c| c.get("cardNumber"))
        .and_then(Value::as_str);
    let digits = number.map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>());
    PayRequestSummary {
        payment_method: req.get("paymentMethod").cloned().unwrap_or(Value::Null),
        has_credit_card: card.is_some(),
        has_three_ds: card
            .and_then(|c| c.get("threeDS"))
            .is_some_and(|t| !t.is_null()),
        card_last4: number.and_then(last4),
        card_brand: digits
            .as_deref()
            .and_then(CardBrand::detect)
            .map(CardBrand::name),
        client_order_no: req
            .get("clientOrderNo")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// Decides and applies, under the lock: the status answered and its body.
fn settle(sim: &Sim, order_no: &str, req: &Value, plan: &PayPlan) -> (i64, Value) {
    let (now, now_utc) = (Instant::now(), Utc::now());
    let mut store = sim.lock();
    let store = &mut *store;
    let Some(order) = store.orders.get(order_no) else {
        // Orders are never removed, so this is unreachable; answer as for an unknown order.
        return (
            ILLEGAL_PARAMETER,
            answer(
                ILLEGAL_PARAMETER,
                Some(format!("orderNo {order_no:?} does not exist")),
            ),
        );
    };
    let decision = match plan.pay_status {
        Some(status) => forced(order, req, status),
        None => decide(&sim.config, order, req, now, now_utc),
    };
    let passengers = order.passengers.len();
    match decision {
        Decision::Refuse(status, detail) => (status, answer(status, detail)),
        Decision::CancelUnconfirmed => {
            if let Some(order) = store.orders.get_mut(order_no) {
                order.cancelled = Some(Cancellation {
                    error_code: None,
                    error_message: Some(pay_msg(NOT_CONFIRMED).to_owned()),
                    airline_message: None,
                });
            }
            (NOT_CONFIRMED, answer(NOT_CONFIRMED, None))
        }
        Decision::Charge {
            status,
            method,
            decline,
            card_tail,
        } => {
            let tickets: Vec<String> = (0..passengers).map(|_| store.next_ticket_no()).collect();
            store.totals.charges += 1;
            let Some(order) = store.orders.get_mut(order_no) else {
                unreachable!("checked above")
            };
            let scenario = &order.scenario;
            let pnr_pending = scenario.pnr_pending || status == PNR_PENDING;
            let status = if pnr_pending && pay_class(status) == PayClass::Accepted {
                PNR_PENDING
            } else {
                status
            };
            let base = scenario
                .ticketing_delay_ms
                .map_or(sim.config.ticketing_delay, Duration::from_millis);
            let failure = decline
                .map(|code| code.to_string())
                .or_else(|| scenario.fail_ticketing.clone());
            order.payment = Some(Payment {
                charged_at: now,
                pay_time: now_utc,
                method,
                in_progress: Duration::from_millis(scenario.payment_in_progress_ms)
                    .max(plan.in_progress.unwrap_or_default()),
                ticketing_delay: if pnr_pending {
                    base * PNR_PENDING_SLOWDOWN
                } else {
                    base
                },
                outcome: match failure {
                    Some(code) => Outcome::Fails(failure_reason(&code)),
                    None => Outcome::Tickets(tickets),
                },
                card_tail,
            });
            order.ledger.charges += 1;
            let body = json!({
                "status": status,
                "msg": pay_msg(status),
                "orderNo": order.order_no,
                "pnrCode": order.pnr_code,
                "paymentMethod": method,
                "airlines": [AIRLINE_CODE],
            });
            (status, body)
        }
    }
}

/// The cancellation a ticketing failure shows: the documented message when the shared table
/// has the code, a generic one otherwise.
fn failure_reason(code: &str) -> Cancellation {
    let documented = code
        .parse::<i64>()
        .ok()
        .and_then(pay_code)
        .map(|c| c.msg.to_owned());
    Cancellation {
        error_code: Some(code.to_owned()),
        error_message: Some(
            documented.unwrap_or_else(|| format!("Ticket issuance failed ({code})")),
        ),
        airline_message: Some("Simulated airline rejection".to_owned()),
    }
}

/// Writes the answer the client received into the ledger (`None`: it received none).
fn record(sim: &Sim, order_no: &str, status: Option<i64>) {
    let mut store = sim.lock();
    if let Some(order) = store.orders.get_mut(order_no) {
        order.ledger.pay_statuses.push(status);
        // 0, 615, 402, 404, 406 all tell the client "paid, or not payable": re-paying after
        // one of them is what the ledger is there to catch.
        let shows_paid = status.is_some_and(|s| {
            matches!(
                pay_class(s),
                PayClass::Accepted | PayClass::PaidPnrPending | PayClass::NeverPayAgain
            )
        });
        order.shown_paid |= shows_paid;
    }
}
