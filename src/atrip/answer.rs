//! Reading ATRIP's answers: every body is classified by its `status` (never by the HTTP code
//! or `msg`) into what the worker will do about it.
//!
//! An answer is untrusted input of any size and shape (a broken ATRIP, a proxy on the path): it
//! is read keeping only the fields used, every list bounded ([`MAX_PASSENGERS`],
//! [`MAX_PASSENGER_LIST`], [`MAX_BOOKINGS`]), and every step on it is linear, so that no answer
//! the client accepted (at most `atrip.max_answer_bytes`) holds the runtime for long, and none
//! can make the worker panic: every date and number from ATRIP is read with checked arithmetic.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::codes::{self, OrderStatus, PayClass};
use crate::domain::TicketSet;
use prune::{Beyond, Keep, Unreadable};

mod order;
pub mod order_list;
mod prune;

/// What a `pay.do` answer means for the pay-once protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum PayAnswer {
    /// `0` (or `615`, paid with the airline PNR pending): the payment was accepted.
    Accepted {
        status: i64,
        msg: Option<String>,
        pnr_code: Option<String>,
    },
    /// `402`/`404`/`406`: the order is paid, not payable, or a payment is running.
    /// Never pay again; the order query decides.
    NeverPayAgain { status: i64, msg: Option<String> },
    /// A definitive refusal; nothing was charged.
    Refused { status: i64, msg: Option<String> },
    /// Our credentials were refused (`900`/`902`); nothing was done, the order is not at fault.
    Unauthorized { status: i64, msg: Option<String> },
    /// `411`: a generic payment error (balance, gateway). The outcome is not certain: the order
    /// query decides, and if it does not show the order paid, a person checks the balance or
    /// the card before any second payment.
    PaymentError { status: i64, msg: Option<String> },
    /// A charge may or may not have happened (rule P4h: a timeout, a reset, HTTP other than
    /// 200, an unparsable or oversized body, an answer naming another order, a code not
    /// documented for `pay.do`). Only an order query can tell; never pay again blindly.
    OutcomeUnknown { status: Option<i64>, reason: String },
    /// The request never left this machine (rule P4g: connection refused, DNS, the TLS
    /// handshake): nothing was sent.
    /// The worker still checks with an order query before any new intent.
    NotSent { reason: String },
}

impl PayAnswer {
    /// The class's name, for metrics and events.
    pub fn class_name(&self) -> &'static str {
        match self {
            PayAnswer::Accepted { .. } => "accepted",
            PayAnswer::NeverPayAgain { .. } => "never_pay_again",
            PayAnswer::Refused { .. } => "refused",
            PayAnswer::Unauthorized { .. } => "unauthorized",
            PayAnswer::PaymentError { .. } => "payment_error",
            PayAnswer::OutcomeUnknown { .. } => "outcome_unknown",
            PayAnswer::NotSent { .. } => "not_sent",
        }
    }

    /// The status code ATRIP answered, if it answered one.
    pub fn status(&self) -> Option<i64> {
        match self {
            PayAnswer::Accepted { status, .. }
            | PayAnswer::NeverPayAgain { status, .. }
            | PayAnswer::Refused { status, .. }
            | PayAnswer::Unauthorized { status, .. }
            | PayAnswer::PaymentError { status, .. } => Some(*status),
            PayAnswer::OutcomeUnknown { status, .. } => *status,
            PayAnswer::NotSent { .. } => None,
        }
    }
}

/// What an order query answered.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryAnswer {
    /// `status 0` with a readable order.
    Order(OrderView),
    /// `800`/`703`: ATRIP has no such order.
    NotFound { status: i64, msg: Option<String> },
    /// Try again later: `705`, 5xx, timeout, reset, a refused connection.
    Retry { reason: String },
    /// ATRIP's rate limit: wait this long.
    RateLimited { retry_after: Duration },
    /// Our credentials were refused.
    Unauthorized { status: i64, msg: Option<String> },
    /// An answer that cannot be trusted (garbled body, wrong types, another order, an
    /// impossible ticket set, an error code this request should never get).
    Invalid { status: Option<i64>, reason: String },
}

impl QueryAnswer {
    /// The kind of answer, for metrics and traces.
    pub fn class_name(&self) -> &'static str {
        match self {
            QueryAnswer::Order(_) => "order",
            QueryAnswer::NotFound { .. } => "not_found",
            QueryAnswer::Retry { .. } => "retry",
            QueryAnswer::RateLimited { .. } => "rate_limited",
            QueryAnswer::Unauthorized { .. } => "unauthorized",
            QueryAnswer::Invalid { .. } => "invalid",
        }
    }

    /// The status code ATRIP answered, if it answered one (0 for a readable order).
    pub fn status(&self) -> Option<i64> {
        match self {
            QueryAnswer::Order(_) => Some(0),
            QueryAnswer::NotFound { status, .. } | QueryAnswer::Unauthorized { status, .. } => {
                Some(*status)
            }
            QueryAnswer::Invalid { status, .. } => *status,
            QueryAnswer::Retry { .. } | QueryAnswer::RateLimited { .. } => None,
        }
    }
}

/// The order as one query answer shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    pub order_no: String,
    pub pnr_code: Option<String>,
    pub order_status: OrderStatus,
    pub ticket_status: Option<String>,
    /// One entry per passenger (`paxTicketInfos` is the passenger list), ticket numbers and
    /// airline PNRs trimmed and de-duplicated.
    pub tickets: TicketSet,
    /// `airlineBookings[].airlinePnr` (null until the airline generated it).
    pub booking_pnrs: Vec<String>,
    /// `tktLimitTime` (SGT on the wire): the order's payment deadline.
    pub pay_deadline: Option<DateTime<Utc>>,
    /// `paymentAttempted` (VCC): ATRIP already tried to charge the card. Says nothing of the
    /// result, and is a reason never to pay again.
    pub payment_attempted: Option<bool>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub msg: Option<String>,
}

impl OrderView {
    /// An answer that shows the order paid: ticketing in process, or ticketed.
    pub fn shows_paid(&self) -> bool {
        matches!(
            self.order_status,
            OrderStatus::Ticketing | OrderStatus::Ticketed
        )
    }

    /// Every passenger has a ticket number: ticketed, tickets issued, and a ticket number in
    /// every `paxTicketInfos` entry, with an entry for each of the order's `passengers` (rule
    /// F1b: ATRIP's own client counts passengers from the order it booked, and so do we when
    /// the row knows them; else the entries this answer lists count).
    pub fn tickets_complete(&self, passengers: Option<usize>) -> bool {
        self.order_status == OrderStatus::Ticketed
            && self.ticket_status.as_deref() == Some(codes::TICKET_ISSUED)
            && !self.tickets.is_empty()
            && self.tickets.len() >= passengers.unwrap_or(0)
            && self.tickets.iter().all(|p| !p.ticket_numbers.is_empty())
    }

    /// The final ticket set and its airline PNR: every passenger has a ticket number and an
    /// airline PNR is known. Tickets without any airline PNR are not final (rule F4): the order
    /// is followed until one shows (or the ticketing deadline passes). ATRIP's `pnrCode` is its
    /// own booking reference, never the airline's: it is kept as `atrip_pnr` only.
    pub fn final_tickets(&self, passengers: Option<usize>) -> Option<(&TicketSet, String)> {
        if !self.tickets_complete(passengers) {
            return None;
        }
        Some((&self.tickets, self.pnr()?))
    }

    /// The airline PNR(s): per passenger first (where ATRIP fills them for every passenger),
    /// then the airline bookings; de-duplicated, in order. Never `pnrCode` (ATRIP's FAQ: "Is
    /// pnrCode the airline PNR? No.").
    pub fn pnr(&self) -> Option<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let pnrs: Vec<&str> = self
            .tickets
            .iter()
            .flat_map(|p| &p.airline_pnrs)
            .chain(&self.booking_pnrs)
            .map(String::as_str)
            .filter(|pnr| seen.insert(pnr))
            .collect();
        (!pnrs.is_empty()).then(|| pnrs.join(" "))
    }
}

/// At most this many passengers in `paxTicketInfos` (and in `passengers`). An ATRIP order holds
/// at most 9 passengers; counting a lap infant beside each of them as an entry of its own makes
/// 18. 32 leaves room for what we cannot foresee in ATRIP's counting, and no more: a longer
/// list is not an order ATRIP can hold, and the answer is refused as soon as it passes 32.
pub const MAX_PASSENGERS: usize = 32;

/// At most this many items in one passenger's `ticketNos` or `airlinePNRs`, as sent (before
/// trimming and de-duplication). A passenger holds one ticket number, two for a round trip
/// split in two bookings, and ATRIP may repeat one padded with spaces: 8 is four times the most
/// a passenger can hold.
pub const MAX_PASSENGER_LIST: usize = 8;

/// At most this many `airlineBookings` (one per airline booking of the order: one or two in
/// practice, one per passenger at worst). Beyond it the block is skipped, as a malformed one is:
/// ATRIP's own client never reads it.
pub const MAX_BOOKINGS: usize = MAX_PASSENGERS;

/// The fields of a `pay.do` answer the worker reads (the rate-limit body's `code` and
/// `retryAfter` included); the rest of the body is read through and dropped.
static PAY_FIELDS: Keep = Keep::Object(&[
    ("status", Keep::Scalar),
    ("msg", Keep::Scalar),
    ("orderNo", Keep::Scalar),
    ("pnrCode", Keep::Scalar),
    ("code", Keep::Scalar),
    ("retryAfter", Keep::Scalar),
]);

const PASSENGER_LIST: Keep = Keep::List {
    max: MAX_PASSENGER_LIST,
    item: &Keep::Scalar,
    beyond: Beyond::Refuse,
};

/// The fields of an order query answer the worker reads, every list bounded.
static QUERY_FIELDS: Keep = Keep::Object(&[
    ("status", Keep::Scalar),
    ("msg", Keep::Scalar),
    ("orderNo", Keep::Scalar),
    ("pnrCode", Keep::Scalar),
    ("code", Keep::Scalar),
    ("retryAfter", Keep::Scalar),
    ("orderStatus", Keep::Scalar),
    ("ticketStatus", Keep::Scalar),
    (
        "paxTicketInfos",
        Keep::List {
            max: MAX_PASSENGERS,
            item: &Keep::Object(&[
                ("name", Keep::Scalar),
                ("ticketNos", PASSENGER_LIST),
                ("airlinePNRs", PASSENGER_LIST),
            ]),
            beyond: Beyond::Refuse,
        },
    ),
    (
        "passengers",
        Keep::List {
            max: MAX_PASSENGERS,
            item: &Keep::Object(&[("name", Keep::Scalar)]),
            beyond: Beyond::Refuse,
        },
    ),
    (
        "airlineBookings",
        Keep::List {
            max: MAX_BOOKINGS,
            item: &Keep::Object(&[("airlinePnr", Keep::Scalar)]),
            beyond: Beyond::Drop,
        },
    ),
    ("tktLimitTime", Keep::Scalar),
    ("paymentAttempted", Keep::Scalar),
    ("errorCode", Keep::Scalar),
    ("errorMessage", Keep::Scalar),
]);

/// Reads a body as a JSON object, keeping only `fields` (see [`prune`]). NUL characters
/// (`\u0000`) are dropped from every string: PostgreSQL's text and jsonb refuse them, and one
/// would make every write of the order fail.
fn json_object(
    body: &[u8],
    fields: &'static Keep,
) -> Result<serde_json::Map<String, Value>, Unreadable> {
    let mut m = prune::object(body, fields)?;
    m.values_mut().for_each(drop_nul);
    Ok(m)
}

fn drop_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(drop_nul),
        Value::Object(m) => m.values_mut().for_each(drop_nul),
        _ => {}
    }
}

/// ATRIP's words (an echoed order number, a message) cut to `max` characters for a reason or a
/// column, any card number in them masked: [`crate::card::outside_words`].
pub(super) fn quote(s: &str, max: usize) -> String {
    crate::card::outside_words(s, max)
}

fn text(m: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key) {
        // ATRIP's own words are stored and logged: a card number it echoes is masked first.
        Some(Value::String(s)) => Some(quote(s, 200)),
        _ => None,
    }
}

/// ATRIP's rate-limit body carries `code` (not `status`) and `retryAfter` seconds.
fn rate_limit(http: u16, m: Option<&serde_json::Map<String, Value>>) -> Option<Duration> {
    let body_says = m.is_some_and(|m| {
        m.get("code").and_then(Value::as_i64) == Some(codes::RATE_LIMITED)
            && !m.contains_key("status")
    });
    if http != 429 && !body_says {
        return None;
    }
    let secs = m
        .and_then(|m| m.get("retryAfter"))
        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
        .min(300.0);
    Some(Duration::from_secs_f64(secs))
}

/// How an HTTP code other than 200 reads in a reason. A redirect is never followed: the
/// request (and a `pay.do`'s card and our credentials) goes to the configured ATRIP only, and
/// what a redirected request did there is not known.
fn http_code(endpoint: &str, http: u16) -> String {
    if (300..400).contains(&http) {
        format!("{endpoint} answered HTTP {http} (a redirect, not followed)")
    } else {
        format!("{endpoint} answered HTTP {http}")
    }
}

/// Classifies a `pay.do` HTTP answer (code and body) to the payment of `order_no`.
pub fn classify_pay(order_no: &str, http: u16, body: &[u8]) -> PayAnswer {
    let obj = json_object(body, &PAY_FIELDS);
    if rate_limit(http, obj.as_ref().ok()).is_some() {
        // pay.do is outside ATRIP's rate limits; a 429 here is unexplained: we cannot know
        // whether the payment ran.
        return PayAnswer::OutcomeUnknown {
            status: None,
            reason: "pay.do answered with a rate limit (not expected for pay.do)".into(),
        };
    }
    if http != 200 {
        return PayAnswer::OutcomeUnknown {
            status: None,
            reason: http_code("pay.do", http),
        };
    }
    let m = match obj {
        Ok(m) => m,
        Err(Unreadable::Garbled) => {
            return PayAnswer::OutcomeUnknown {
                status: None,
                reason: describe_garbled(body),
            }
        }
        Err(Unreadable::Bound(why)) => {
            return PayAnswer::OutcomeUnknown {
                status: None,
                reason: format!("pay.do answer refused: {why}"),
            }
        }
    };
    let Some(status) = m.get("status").and_then(Value::as_i64) else {
        return PayAnswer::OutcomeUnknown {
            status: None,
            reason: "pay.do answer has no integer status".into(),
        };
    };
    // An answer naming another order says nothing about ours (ATRIP's error answers carry
    // `orderNo: null`, which is fine).
    if let Some(Value::String(other)) = m.get("orderNo") {
        if other != order_no {
            return PayAnswer::OutcomeUnknown {
                status: Some(status),
                // Never that order's number: it is another agency order's reference, and
                // last_error is read by people who may not see it (ATRIP's client tests this).
                reason: "pay.do answered for another order (its number is not kept)".into(),
            };
        }
    }
    let msg = text(&m, "msg");
    let class = codes::pay_class(status);
    // An acceptance is evidence of payment (rule P3): only one that names this order counts.
    // Every acceptance ATRIP documents, and every one its own client's tests build, echoes
    // `orderNo`; a bare `{"status": 0}` (a mock left in the configuration, a gateway's stub)
    // says nothing about this order, and taken as evidence it would make the order unpayable
    // for good. The order query decides instead.
    if matches!(class, PayClass::Accepted | PayClass::PaidPnrPending)
        && !matches!(m.get("orderNo"), Some(Value::String(echo)) if echo == order_no)
    {
        return PayAnswer::OutcomeUnknown {
            status: Some(status),
            reason: format!(
                "pay.do answered status {status} without naming this order (no orderNo): not taken as a payment; the order query decides"
            ),
        };
    }
    match class {
        PayClass::Accepted | PayClass::PaidPnrPending => PayAnswer::Accepted {
            status,
            msg,
            pnr_code: text(&m, "pnrCode"),
        },
        PayClass::NeverPayAgain => PayAnswer::NeverPayAgain { status, msg },
        PayClass::Refused => PayAnswer::Refused { status, msg },
        PayClass::Unauthorized => PayAnswer::Unauthorized { status, msg },
        PayClass::PaymentError => PayAnswer::PaymentError { status, msg },
        PayClass::OutcomeUnknown => PayAnswer::OutcomeUnknown {
            status: Some(status),
            reason: format!(
                "pay.do answered status {status} ({}): outcome unknown",
                msg.as_deref().unwrap_or("no message")
            ),
        },
    }
}

/// Classifies a `queryOrderDetails.do` HTTP answer for `order_no`.
pub fn classify_query(order_no: &str, http: u16, body: &[u8]) -> QueryAnswer {
    let obj = json_object(body, &QUERY_FIELDS);
    if let Some(retry_after) = rate_limit(http, obj.as_ref().ok()) {
        return QueryAnswer::RateLimited { retry_after };
    }
    if http >= 500 || http == 408 {
        return QueryAnswer::Retry {
            reason: format!("order query answered HTTP {http}"),
        };
    }
    if http == 401 || http == 403 {
        return QueryAnswer::Unauthorized {
            status: i64::from(http),
            msg: None,
        };
    }
    if http != 200 {
        return QueryAnswer::Invalid {
            status: None,
            reason: http_code("order query", http),
        };
    }
    let m = match obj {
        Ok(m) => m,
        Err(Unreadable::Garbled) => {
            return QueryAnswer::Invalid {
                status: None,
                reason: describe_garbled(body),
            }
        }
        Err(Unreadable::Bound(why)) => {
            return QueryAnswer::Invalid {
                status: None,
                reason: format!("order query answer refused: {why}"),
            }
        }
    };
    let Some(status) = m.get("status").and_then(Value::as_i64) else {
        return QueryAnswer::Invalid {
            status: None,
            reason: "order query answer has no integer status".into(),
        };
    };
    let msg = text(&m, "msg");
    match status {
        codes::query_status::OK => match order::read(order_no, &m) {
            Ok(view) => QueryAnswer::Order(view),
            Err(reason) => QueryAnswer::Invalid {
                status: Some(status),
                reason,
            },
        },
        codes::query_status::ORDER_DOES_NOT_EXIST | codes::query_status::NO_ORDER_FOUND => {
            QueryAnswer::NotFound { status, msg }
        }
        codes::query_status::TIMEOUT | -1 | 2 | 9999 => QueryAnswer::Retry {
            reason: format!(
                "order query answered status {status} ({})",
                msg.as_deref().unwrap_or("no message")
            ),
        },
        codes::UNAUTHORIZED | codes::ACCESS_DENIED => QueryAnswer::Unauthorized { status, msg },
        other => QueryAnswer::Invalid {
            status: Some(other),
            reason: format!(
                "order query answered status {other} ({})",
                msg.as_deref().unwrap_or("no message")
            ),
        },
    }
}

/// Says what was wrong with a body that is not JSON, without quoting much of it.
fn describe_garbled(body: &[u8]) -> String {
    if body.is_empty() {
        return "the answer body is empty".into();
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(40)]).replace('\0', "");
    if head.trim_start().starts_with('<') {
        "the answer is an HTML page, not JSON".into()
    } else {
        format!(
            "the answer is not a JSON object (starts {:?})",
            quote(head.trim(), 20)
        )
    }
}

#[cfg(test)]
mod reading_tests;
#[cfg(test)]
mod tests_hostile;
