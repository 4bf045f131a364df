//! `pay.do`: registers the request, applies its faults, and takes the payment when the rules
//! say so; the decision and the payment it takes happen under one lock, so concurrent requests
//! cannot both take one unless the simulated ATRIP has no duplicate guard. A taken payment
//! settles (is charged) after the processing time, and the request is answered then.

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
use super::order::AIRLINE_CODE;
use super::pay_rules::{decide, forced, Decision, ILLEGAL_PARAMETER, NOT_CONFIRMED, PNR_PENDING};
use super::payment::Cancellation;
use super::payment::{Outcome, Payment};
use super::reply::{wants_gzip, Reply};
use super::state::Sim;
use ticketing_tracker::atrip::codes::{pay_class, pay_code, pay_msg, PayClass};

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
    let reply = match super::reply::admit(&sim, &headers, &body) {
        Ok(req) => pay(&sim, &req).await,
        Err(refusal) => refusal,
    };
    sim.answer_latency().await;
    reply.render(&sim, gzip).await
}

/// A refusal's body: the success shape with nulls. Whether `orderNo` echoes the request is
/// unsure (ATRIP's apifox example shows `null`; its client reads the number from every pay.do
/// answer), hence `SimConfig::error_echoes_order_no`.
fn answer(sim: &Sim, order_no: &str, status: i64, detail: Option<String>) -> Value {
    let msg = detail.map_or_else(
        || pay_msg(status).to_owned(),
        |d| format!("{}: {d}", pay_msg(status)),
    );
    let echoed = (sim.config.error_echoes_order_no && !order_no.is_empty()).then_some(order_no);
    json!({"orderNo": echoed, "pnrCode": null, "paymentMethod": null, "airlines": null, "status": status, "msg": msg})
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
            return Reply::Json(answer(sim, order_no, ILLEGAL_PARAMETER, Some(detail)));
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
    let settled = settle(sim, order_no, req, &plan);
    if let Some(settles_at) = settled.settles_at {
        // Processing: the request is answered when its payment settles. Shutdown cuts the wait
        // short; the payment settles all the same, only the client never hears of it.
        if !sim.pause_until(settles_at).await {
            record(sim, order_no, None);
            return Reply::Drop;
        }
    }
    match plan.after {
        None => {
            record(sim, order_no, Some(settled.status));
            Reply::Json(settled.body)
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
        request_source: req.get("requestSource").cloned().unwrap_or(Value::Null),
    }
}

/// What [`settle`] decided: the status, the answer's body, and when the payment it took (if it
/// took one) settles, which is when the request is answered.
struct Settled {
    status: i64,
    body: Value,
    settles_at: Option<Instant>,
}

impl Settled {
    fn now(status: i64, body: Value) -> Settled {
        Settled {
            status,
            body,
            settles_at: None,
        }
    }
}

/// Decides and applies, under the lock: a payment taken here is the whole decision (whether it
/// is charged follows from the clock), so two requests can never both decide on one state.
fn settle(sim: &Sim, order_no: &str, req: &Value, plan: &PayPlan) -> Settled {
    let (now, now_utc) = (Instant::now(), Utc::now());
    let mut store = sim.lock();
    let store = &mut *store;
    let Some(order) = store.orders.get(order_no) else {
        // Orders are never removed, so this is unreachable; answer as for an unknown order.
        let detail = format!("orderNo {order_no:?} does not exist");
        return Settled::now(
            ILLEGAL_PARAMETER,
            answer(sim, order_no, ILLEGAL_PARAMETER, Some(detail)),
        );
    };
    let decision = match plan.pay_status {
        Some(status) => forced(&sim.config, order, req, status, now),
        None => decide(&sim.config, order, req, now, now_utc),
    };
    let passengers = order.passengers.len();
    match decision {
        Decision::Refuse(status, detail) => {
            Settled::now(status, answer(sim, order_no, status, detail))
        }
        Decision::Decline(code) => {
            // The sandbox's synchronous decline: nothing charged. ATRIP's client (and ours)
            // reads 604/616 on pay.do as "outcome unknown" and queries, so the order is
            // cancelled with that errorCode for the query to settle it. Only when no payment
            // was taken: without the duplicate guard another one may be processing, and a
            // cancelled order must not then be charged.
            if sim.config.decline_cancels_order {
                if let Some(order) = store.orders.get_mut(order_no) {
                    if order.payments.is_empty() {
                        order.cancelled = Some(failure_reason(&code.to_string()));
                    }
                }
            }
            Settled::now(code, answer(sim, order_no, code, None))
        }
        Decision::CancelUnconfirmed => {
            if let Some(order) = store.orders.get_mut(order_no) {
                order.cancelled = Some(Cancellation {
                    error_code: None,
                    error_message: Some(pay_msg(NOT_CONFIRMED).to_owned()),
                    airline_message: None,
                });
            }
            Settled::now(NOT_CONFIRMED, answer(sim, order_no, NOT_CONFIRMED, None))
        }
        Decision::Take {
            status,
            method,
            decline,
            card_tail,
        } => {
            // A deposit payment draws on the balance; one dearer than the balance is ATRIP's
            // 411 and charges nothing.
            if method == 1 {
                let price = store.orders.get(order_no).map_or(0.0, |o| o.total_price);
                if store.balance < price {
                    let detail = format!("insufficient deposit balance for {price:.2}");
                    return Settled::now(
                        PAYMENT_ERROR,
                        answer(sim, order_no, PAYMENT_ERROR, Some(detail)),
                    );
                }
                store.balance -= price;
            }
            let tickets: Vec<String> = (0..passengers).map(|_| store.next_ticket_no()).collect();
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
            let processing = scenario
                .payment_processing_ms
                .map_or(sim.config.payment_processing, Duration::from_millis);
            let failure = decline
                .map(|code| code.to_string())
                .or_else(|| scenario.fail_ticketing.clone());
            let payment = Payment {
                settles_at: now + processing,
                pay_time: now_utc + chrono::Duration::from_std(processing).unwrap_or_default(),
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
            };
            // This one, and those still processing: only the guard-off ATRIP gets above 1.
            let overlapping = order.payments.processing(now) as u64 + 1;
            let ledger = &mut order.ledger;
            ledger.max_overlapping_payments = ledger.max_overlapping_payments.max(overlapping);
            let settles_at = payment.settles_at;
            order.payments.push(payment);
            let body = json!({
                "status": status,
                "msg": pay_msg(status),
                "orderNo": order.order_no,
                "pnrCode": order.pnr_code,
                "paymentMethod": method,
                "airlines": [AIRLINE_CODE],
            });
            Settled {
                status,
                body,
                settles_at: Some(settles_at),
            }
        }
    }
}

/// `pay.do`'s generic payment error (balance, gateway).
const PAYMENT_ERROR: i64 = 411;

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
