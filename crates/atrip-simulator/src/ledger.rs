//! The simulator's ledger: what each order was asked and charged, read by tests through
//! `GET /sim/ledger` to prove the worker paid every order exactly once.

use serde_json::{json, Map, Value};

/// What one `pay.do` request carried, without the card itself: enough for a test to check the
/// worker sent the right method and card, never a full number or a CVV.
#[derive(Clone, Debug, Default)]
pub(super) struct PayRequestSummary {
    /// As sent (`null` when the request left it out).
    pub payment_method: Value,
    pub has_credit_card: bool,
    pub has_three_ds: bool,
    pub card_last4: Option<String>,
    pub card_brand: Option<&'static str>,
    pub client_order_no: Option<String>,
    /// `requestSource` as sent (`null` when left out or null).
    pub request_source: Value,
}

impl PayRequestSummary {
    fn to_json(&self) -> Value {
        json!({
            "paymentMethod": self.payment_method,
            "has_credit_card": self.has_credit_card,
            "has_three_ds": self.has_three_ds,
            "card_last4": self.card_last4,
            "card_brand": self.card_brand,
            "client_order_no": self.client_order_no,
            "request_source": self.request_source,
        })
    }
}

/// Per-order counters. The order's `charges` (settled payments; anything above 1 is the bug the
/// worker must never have) are not a counter: they follow from the clock, like the order's
/// state, and are computed when the ledger is read.
#[derive(Clone, Debug, Default)]
pub(super) struct OrderLedger {
    pub pay_requests: u64,
    pub queries: u64,
    /// The most payments processing at once (each taken one counts from pay.do's decision to
    /// its settling). 1 with ATRIP's duplicate guard; 2 or more means overlapping pay.do
    /// requests were each taken, which without the guard is a double charge.
    pub max_overlapping_payments: u64,
    /// Every pay.do status answered, `None` when no answer reached the client (dropped, held,
    /// 5xx page, garbled body): the worker's view of the outcome was "unknown" for those.
    pub pay_statuses: Vec<Option<i64>>,
    /// pay.do requests received after an answer had shown the order paid: a worker that reads
    /// answers correctly keeps this at 0.
    pub pay_after_paid_shown: u64,
    /// Query answers delivered with `orderStatus` "0" (unpaid): each one is what may justify
    /// one more pay.do, so `pay_requests <= 1 + unpaid_answers` must hold for every order.
    pub unpaid_answers: u64,
    pub last_pay_request: Option<PayRequestSummary>,
    /// When the first pay.do arrived (Unix ms): the benchmark's pickup latency ends here.
    pub first_pay_at_ms: Option<i64>,
}

/// Counters over every request, including those for orders that do not exist.
#[derive(Clone, Debug, Default)]
pub(super) struct Totals {
    pub pay_requests: u64,
    pub queries: u64,
    /// Faults injected by chaos mode and by scenarios alike.
    pub faults_injected: u64,
    /// Requests refused with 900: the only thing they change is this counter.
    pub unauthorized: u64,
    /// Queries answered 429 by a `/sim/storm` (also counted in `queries`, not per order: the
    /// rate limit stands in front of the order lookup).
    pub storm_answers: u64,
    /// `balance.do` calls.
    pub balance_queries: u64,
}

/// Totals computed over the orders when the ledger is read.
#[derive(Clone, Debug, Default)]
pub(super) struct Derived {
    /// Settled payments over all orders.
    pub charges: u64,
    /// Over all orders, `max(0, pay_requests - 1)`: every pay.do beyond an order's first.
    pub pay_requests_over_one: u64,
    /// Orders charged more than once.
    pub double_charges: u64,
}

impl Derived {
    pub(super) fn add(&mut self, ledger: &OrderLedger, charges: u64) {
        self.charges += charges;
        self.pay_requests_over_one += ledger.pay_requests.saturating_sub(1);
        self.double_charges += u64::from(charges > 1);
    }
}

impl OrderLedger {
    /// The order's entry, with what the clock says now: its `orderStatus` and its charges.
    pub(super) fn to_json(&self, order_status: &str, charges: u64) -> Value {
        json!({
            "pay_requests": self.pay_requests,
            "charges": charges,
            "max_overlapping_payments": self.max_overlapping_payments,
            "queries": self.queries,
            "pay_statuses": self.pay_statuses,
            "pay_after_paid_shown": self.pay_after_paid_shown,
            "unpaid_answers": self.unpaid_answers,
            "order_status": order_status,
            "last_pay_request": self.last_pay_request.as_ref().map(PayRequestSummary::to_json),
            "first_pay_at_ms": self.first_pay_at_ms,
        })
    }
}

impl Totals {
    pub(super) fn to_json(&self, derived: &Derived) -> Value {
        json!({
            "pay_requests": self.pay_requests,
            "charges": derived.charges,
            "pay_requests_over_one": derived.pay_requests_over_one,
            "double_charges": derived.double_charges,
            "queries": self.queries,
            "faults_injected": self.faults_injected,
            "unauthorized": self.unauthorized,
            "storm_answers": self.storm_answers,
            "balance_queries": self.balance_queries,
        })
    }
}

/// The whole ledger document from per-order entries already rendered.
pub(super) fn document(orders: Map<String, Value>, totals: &Totals, derived: &Derived) -> Value {
    json!({ "orders": orders, "totals": totals.to_json(derived) })
}
