//! `order.do`: creates the held, unpaid orders the worker will pay, with the simulator's
//! extension fields that shape how each order later answers `pay.do`.
//!
//! Request fields read (all optional; anything else is ignored, as ATRIP ignores extras):
//! - `passengers[]`: `name` ("LAST/FIRST"), `passengerType`, `gender`, `birthday` (default one
//!   passenger `TEST/TRAVELLER`);
//! - `payment.cardType`: the MoR brand (`Amex`, `Visa`, `MasterCard`, `JCB`, `Discover`,
//!   `DinersClub`); a method-5 card of another brand is refused with 414.
//!
//! Simulator extensions (the real API has no such fields; they stand in for the airline, fare
//! and flow that decide these things on the sandbox):
//! - `supportPaymentMethods` (int[], default `[1,3,4,5]`): other methods answer 403;
//! - `acceptedCardBrands` (string[], default all six): other card brands answer 413;
//! - `paymentDeadlineSeconds` (int, default 1800, may be negative = already expired): after it,
//!   pay.do answers 401;
//! - `frFlow` (bool): Ryanair flow the traveller never confirmed: pay.do answers 415 and the
//!   order is cancelled;
//! - `missingPassengerData` (bool): pay.do answers 407;
//! - `totalPrice` (number, default 100.0);
//! - `orderNo` (string): force this order number; 307 if it exists already.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::card::CardBrand;
use super::faults::Scenario;
use super::ledger::OrderLedger;
use super::order::{sgt, Order, Passenger, CURRENCY};
use super::reply::{wants_gzip, Reply};
use super::state::{new_pnr_code, Sim, Store};
use ticketing_tracker::atrip::codes::pay_msg;

/// `order.do`'s "illegal booking param" (the code the sandbox answers for a bad field). It is
/// not in `codes.rs` because the worker never calls `order.do`.
const ORDER_PARAM_ERROR: i64 = 307;
/// ATRIP holds an unpaid order 30 minutes in the standard flow.
const DEFAULT_DEADLINE_SECONDS: i64 = 1800;
const ALL_METHODS: [i64; 4] = [1, 3, 4, 5];

/// The shape of an order before it exists.
#[derive(Clone, Debug)]
pub(super) struct OrderSpec {
    pub passengers: Vec<Passenger>,
    pub total_price: f64,
    pub deadline_seconds: i64,
    pub support_payment_methods: Vec<i64>,
    pub accepted_brands: Vec<CardBrand>,
    pub mor_card_type: Option<String>,
    pub fr_flow: bool,
    pub missing_passenger_data: bool,
}

impl Default for OrderSpec {
    fn default() -> Self {
        OrderSpec {
            passengers: vec![Passenger::default_traveller()],
            total_price: 100.0,
            deadline_seconds: DEFAULT_DEADLINE_SECONDS,
            support_payment_methods: ALL_METHODS.to_vec(),
            accepted_brands: CardBrand::ALL.to_vec(),
            mor_card_type: None,
            fr_flow: false,
            missing_passenger_data: false,
        }
    }
}

/// Reads a field that must be an array of `T` when present; the error names the field.
fn array_of<T>(
    req: &Value,
    field: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, String> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(&item)
            .collect::<Option<Vec<T>>>()
            .map(Some)
            .ok_or_else(|| field.to_owned()),
        Some(_) => Err(field.to_owned()),
    }
}

fn bool_field(req: &Value, field: &str) -> Result<bool, String> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| field.to_owned()),
    }
}

impl OrderSpec {
    /// Reads `order.do`'s body loosely; a field of the wrong type is an error naming it.
    pub(super) fn from_request(req: &Value) -> Result<OrderSpec, String> {
        let mut spec = OrderSpec::default();
        let text = |p: &Value, key: &str, default: &str| {
            p.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        if let Some(passengers) = array_of(req, "passengers", |p| {
            let fallback = Passenger::default_traveller();
            p.is_object().then(|| Passenger {
                name: text(p, "name", &fallback.name),
                passenger_type: p.get("passengerType").and_then(Value::as_i64).unwrap_or(0),
                gender: text(p, "gender", &fallback.gender),
                birthday: text(p, "birthday", &fallback.birthday),
            })
        })? {
            if !passengers.is_empty() {
                spec.passengers = passengers;
            }
        }
        if let Some(card_type) = req.pointer("/payment/cardType").filter(|v| !v.is_null()) {
            let brand = card_type
                .as_str()
                .and_then(CardBrand::parse)
                .ok_or("payment.cardType")?;
            spec.mor_card_type = Some(brand.name().to_owned());
        }
        if let Some(methods) = array_of(req, "supportPaymentMethods", Value::as_i64)? {
            spec.support_payment_methods = methods;
        }
        if let Some(brands) = array_of(req, "acceptedCardBrands", |v| {
            v.as_str().and_then(CardBrand::parse)
        })? {
            spec.accepted_brands = brands;
        }
        if let Some(seconds) = req.get("paymentDeadlineSeconds").filter(|v| !v.is_null()) {
            spec.deadline_seconds = seconds
                .as_i64()
                .or_else(|| seconds.as_f64().map(|f| f as i64))
                .ok_or("paymentDeadlineSeconds")?;
        }
        if let Some(price) = req.get("totalPrice").filter(|v| !v.is_null()) {
            spec.total_price = price.as_f64().ok_or("totalPrice")?;
        }
        spec.fr_flow = bool_field(req, "frFlow")?;
        spec.missing_passenger_data = bool_field(req, "missingPassengerData")?;
        Ok(spec)
    }

    pub(super) fn build(self, order_no: String, now: DateTime<Utc>) -> Order {
        Order {
            order_no,
            pnr_code: new_pnr_code(),
            passengers: self.passengers,
            total_price: self.total_price,
            created_at: now,
            deadline: now + chrono::Duration::seconds(self.deadline_seconds),
            support_payment_methods: self.support_payment_methods,
            accepted_brands: self.accepted_brands,
            mor_card_type: self.mor_card_type,
            fr_flow: self.fr_flow,
            missing_passenger_data: self.missing_passenger_data,
            cancelled: None,
            payments: Default::default(),
            scenario: Scenario::default(),
            ledger: OrderLedger::default(),
            shown_paid: false,
            webhook_sent: false,
            changed_after_ticketing: None,
        }
    }
}

/// The order, created with the defaults when `auto_create` is on: lets a test point the worker
/// at order numbers it never created through `order.do`.
pub(super) fn find_or_create<'s>(
    sim: &Sim,
    store: &'s mut Store,
    order_no: &str,
) -> Option<&'s mut Order> {
    if !store.orders.contains_key(order_no) {
        if !sim.config.auto_create || order_no.is_empty() {
            return None;
        }
        let order = OrderSpec::default().build(order_no.to_owned(), Utc::now());
        store.orders.insert(order_no.to_owned(), order);
    }
    store.orders.get_mut(order_no)
}

/// `POST /order.do`.
pub(super) async fn order_do(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = wants_gzip(&sim, &headers);
    let reply = match super::reply::admit(&sim, &headers, &body) {
        Ok(req) => create(&sim, &req),
        Err(refusal) => refusal,
    };
    sim.answer_latency().await;
    reply.render(&sim, gzip).await
}

fn create(sim: &Sim, req: &Value) -> Reply {
    let refuse = |field: &str, why: &str| {
        Reply::Json(
            json!({"status": ORDER_PARAM_ERROR, "msg": format!("Illegal booking param: {field} {why}")}),
        )
    };
    let spec = match OrderSpec::from_request(req) {
        Ok(spec) => spec,
        Err(field) => return refuse(&field, "is not valid"),
    };
    let forced = match req.get("orderNo") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(_) => return refuse("orderNo", "must be a non-empty string"),
    };
    let now = Utc::now();
    let mut store = sim.lock();
    let order_no = match forced {
        Some(no) if store.orders.contains_key(&no) => return refuse("orderNo", "already exists"),
        Some(no) => no,
        None => store.new_order_no(now),
    };
    let order = spec.build(order_no.clone(), now);
    let view = order.view(&sim.config, std::time::Instant::now(), now);
    // What ATRIP's own client reads (`orders.py` `CreatedOrder`: orderNo, totalPrice,
    // totalTransactionFee, currency, tktLimitTime, paymentOptions) and the rest of the
    // documented answer. Vendor (airline-currency) prices come only with VCC or BYOA.
    let vendor = order
        .support_payment_methods
        .iter()
        .any(|m| matches!(m, 3 | 4));
    let answer = json!({
        "status": 0,
        "msg": pay_msg(0),
        "sessionId": req.get("sessionId").filter(|v| v.is_string()),
        "offerId": req.get("offerId").and_then(Value::as_str).unwrap_or_default(),
        "orderNo": order.order_no,
        "pnrCode": order.pnr_code,
        "totalPrice": order.total_price,
        "totalTransactionFee": order.total_transaction_fee(),
        "currency": CURRENCY,
        "vendorTotalPrice": vendor.then_some(order.total_price),
        "vendorCurrency": vendor.then_some(CURRENCY),
        "tktLimitTime": sgt(order.deadline),
        "paxTicketInfos": order.pax_ticket_infos(&view),
        "routing": {"supportPaymentMethods": order.support_payment_methods},
        "duplicateOrders": null,
        "paymentOptions": order.payment_options(),
    });
    store.orders.insert(order_no, order);
    Reply::Json(answer)
}
