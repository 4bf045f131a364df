//! `orderList.do`: ATRIP's orders by creation time, a page at a time, as `Atlas API _other
//! functions.md` ("POST Order List") documents it: filters `createTimeRangeFrom`/`To` (UTC,
//! `yyyy-MM-dd'T'HH:mm:ss'Z'`, both ends included), `orderStatus[]`, `orderNo`, `page`,
//! `pageSize`; rows with `orderNo`, `pnrCode`, `airlinePNRs`, `orderStatus` as an integer,
//! `orderCreateTimestamp`, `paymentTimestamp` (UTC), `paxNames`, `errorCode`/`errorMessage`
//! (cancelled orders only) and the other documented fields. Rows come oldest first (then by
//! order number), so a page holds the same orders however often it is asked while the set the
//! filters match stays the same.
//!
//! What the documentation leaves open is a knob ([`super::SimConfig`]): whether pages count
//! from 1 (documented) or 0 (`list_first_page`), the total's name (`list_total_field`: the
//! documented `totalRecords`, another, or none), counts as integers (the example) or strings
//! (the schema: `list_counts_as_strings`), and the largest page served (`list_max_page_size`).
//!
//! Tests seed orders of any age and state with [`SeedOrder`] (`SimHandle::seed_orders`), so
//! that a reconciliation over thousands of orders needs no thousands of `pay.do`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};

use super::create::OrderSpec;
use super::order::{Order, AIRLINE_CODE};
use super::payment::Cancellation;
use super::payment::{Outcome, Payment};
use super::reply::{wants_gzip, Reply};
use super::state::Sim;
use ticketing_tracker::atrip::codes::OrderStatus;

/// ATRIP's "illegal request parameter" (`msg` names the field).
const ILLEGAL_PARAMETER: i64 = 400;
/// ATRIP's documented time format for this endpoint.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// The page size when the request gives none.
const DEFAULT_PAGE_SIZE: u64 = 20;

/// An order as a test wants ATRIP to hold it, whatever happened before.
#[derive(Clone, Debug)]
pub struct SeedOrder {
    pub order_no: String,
    pub created_at: DateTime<Utc>,
    pub state: Seeded,
}

/// Where a seeded order stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Seeded {
    /// `0`: never paid.
    Unpaid,
    /// `1`: paid at this time, ticketing for a long while yet.
    Ticketing { paid_at: DateTime<Utc> },
    /// `2`: paid at this time and ticketed.
    Ticketed { paid_at: DateTime<Utc> },
    /// `-3` after a payment (a ticketed order voided, ticketing stopped): with this code.
    CancelledAfterPayment {
        paid_at: DateTime<Utc>,
        error_code: String,
        error_message: String,
    },
    /// `-3` without a payment.
    CancelledUnpaid { error_code: String },
}

impl SeedOrder {
    pub(super) fn build(&self) -> Order {
        let mut order = OrderSpec::default().build(self.order_no.clone(), self.created_at);
        let payment = |paid_at: DateTime<Utc>, delay: Duration, outcome: Outcome| Payment {
            settles_at: Instant::now(),
            pay_time: paid_at,
            method: 1,
            in_progress: Duration::ZERO,
            ticketing_delay: delay,
            outcome,
            card_tail: None,
        };
        let ticket = || {
            Outcome::Tickets(vec![format!(
                "S{}",
                &self.order_no[self.order_no.len().saturating_sub(5)..]
            )])
        };
        match &self.state {
            Seeded::Unpaid => {}
            Seeded::Ticketing { paid_at } => order.payments.push(payment(
                *paid_at,
                Duration::from_secs(86_400 * 365),
                ticket(),
            )),
            Seeded::Ticketed { paid_at } => {
                order
                    .payments
                    .push(payment(*paid_at, Duration::ZERO, ticket()))
            }
            Seeded::CancelledAfterPayment {
                paid_at,
                error_code,
                error_message,
            } => order.payments.push(payment(
                *paid_at,
                Duration::ZERO,
                Outcome::Fails(Cancellation {
                    error_code: Some(error_code.clone()),
                    error_message: Some(error_message.clone()),
                    airline_message: None,
                }),
            )),
            Seeded::CancelledUnpaid { error_code } => {
                order.cancelled = Some(Cancellation {
                    error_code: Some(error_code.clone()),
                    error_message: Some("Order cancelled".into()),
                    airline_message: None,
                })
            }
        }
        // Far from its deadline: an unpaid seeded order stays "0", whatever the knobs say.
        order.deadline = Utc::now() + chrono::Duration::days(1);
        order
    }
}

/// `POST /orderList.do`.
pub(super) async fn list_do(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.requests.record("orderList.do", &headers, &body);
    let gzip = wants_gzip(&sim, &headers);
    let reply = match super::reply::admit(&sim, &headers, &body) {
        Ok(req) => answer(&sim, &req),
        Err(refusal) => refusal,
    };
    sim.answer_latency().await;
    reply.render(&sim, gzip).await
}

fn refuse(field: &str) -> Reply {
    Reply::Json(json!({
        "status": ILLEGAL_PARAMETER,
        "msg": format!("Illegal request parameter: {field}"),
    }))
}

/// A count sent as an integer or a string holding one (the schema says string).
fn count(req: &Value, key: &str) -> Result<Option<i64>, ()> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn time(req: &Value, key: &str) -> Result<Option<DateTime<Utc>>, ()> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => NaiveDateTime::parse_from_str(s, FORMAT)
            .map(|t| Some(t.and_utc()))
            .map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn answer(sim: &Sim, req: &Value) -> Reply {
    let config = &sim.config;
    let (Ok(from), Ok(to)) = (
        time(req, "createTimeRangeFrom"),
        time(req, "createTimeRangeTo"),
    ) else {
        return refuse("createTimeRange (yyyy-MM-dd'T'HH:mm:ss'Z')");
    };
    let statuses: Option<Vec<String>> = match req.get("orderStatus") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            match items
                .iter()
                .map(|v| v.as_i64().map(|n| n.to_string()))
                .collect()
            {
                Some(s) => Some(s),
                None => return refuse("orderStatus"),
            }
        }
        Some(_) => return refuse("orderStatus"),
    };
    let order_no = req
        .get("orderNo")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Ok(page) = count(req, "page") else {
        return refuse("page");
    };
    let page = page.unwrap_or(config.list_first_page);
    let Some(index) = page
        .checked_sub(config.list_first_page)
        .and_then(|i| u64::try_from(i).ok())
    else {
        return refuse("page");
    };
    let Ok(size) = count(req, "pageSize") else {
        return refuse("pageSize");
    };
    let size = match size {
        None => DEFAULT_PAGE_SIZE,
        Some(n) if n >= 1 => u64::try_from(n)
            .unwrap_or(u64::MAX)
            .min(config.list_max_page_size),
        Some(_) => return refuse("pageSize"),
    };
    let (now, now_utc) = (Instant::now(), Utc::now());
    let store = sim.lock();
    let mut matched: Vec<(&Order, super::order::View)> = store
        .orders
        .values()
        .filter(|o| from.is_none_or(|f| o.created_at >= f) && to.is_none_or(|t| o.created_at <= t))
        .filter(|o| order_no.is_none_or(|n| o.order_no == n))
        .map(|o| (o, o.view(config, now, now_utc)))
        .filter(|(_, v)| {
            statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|w| w == v.status.wire()))
        })
        .collect();
    matched.sort_by(|a, b| (a.0.created_at, &a.0.order_no).cmp(&(b.0.created_at, &b.0.order_no)));
    let total = matched.len();
    let skip = usize::try_from(index.saturating_mul(size)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let orders: Vec<Value> = matched
        .iter()
        .skip(skip)
        .take(take)
        .map(|(o, v)| row(o, v))
        .collect();
    let number = |n: i64| {
        if config.list_counts_as_strings {
            Value::String(n.to_string())
        } else {
            Value::from(n)
        }
    };
    let mut body = json!({
        "status": 0,
        "msg": null,
        "page": number(page),
        "pageSize": number(i64::try_from(size).unwrap_or(i64::MAX)),
    });
    if !config.list_total_field.is_empty() {
        body[config.list_total_field.as_str()] = number(i64::try_from(total).unwrap_or(i64::MAX));
    }
    body["orders"] = Value::Array(orders);
    Reply::Json(body)
}

/// One order as `orderList.do` lists it.
fn row(order: &Order, view: &super::order::View) -> Value {
    let paid = view
        .paid
        .filter(|_| view.shows_payment)
        .and_then(|i| order.payments.get(i));
    let tickets: Vec<&str> = view.tickets.iter().flatten().map(String::as_str).collect();
    let cancelled = view.status == OrderStatus::Cancelled;
    let cancel = view.cancellation.clone().unwrap_or_default();
    let status: i64 = view.status.wire().parse().unwrap_or(0);
    json!({
        "orderNo": order.order_no,
        "pnrCode": order.pnr_code,
        // The documented sample joins a passenger's two PNRs with "|".
        "airlinePNRs": if tickets.is_empty() { Value::Null } else { json!([tickets.join("|")]) },
        "orderStatus": status,
        "depDate": (order.created_at + chrono::Duration::days(30)).format("%Y%m%d").to_string(),
        "airlines": [AIRLINE_CODE],
        "orderCreateTimestamp": order.created_at.format(FORMAT).to_string(),
        "paymentTimestamp": paid.map(|p| p.pay_time.format(FORMAT).to_string()),
        "paxNames": order.passengers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        "contactEmail": "test@test.com",
        "fromCity": "MNL",
        "toCity": "CEB",
        "errorCode": if cancelled { cancel.error_code } else { None },
        "errorMessage": if cancelled { cancel.error_message } else { None },
    })
}
