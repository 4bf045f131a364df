//! Reading ATRIP's answers: every body is classified by its `status` (never by the HTTP code
//! or `msg`) into what the worker will do about it.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::codes::{self, OrderStatus, PayClass};
use crate::card::mask_card_numbers;
use crate::domain::{truncate, PassengerTickets, TicketSet};

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
    /// A charge may or may not have happened (timeout, reset, 5xx, unparsable body, `411`,
    /// unknown code). Only an order query can tell; never pay again blindly.
    OutcomeUnknown { status: Option<i64>, reason: String },
    /// The request never left this machine (connection refused, DNS): nothing was sent.
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
    /// every `paxTicketInfos` entry (ATRIP's own client uses the same predicate, counting
    /// passengers from the order it booked; we count the entries).
    pub fn tickets_complete(&self) -> bool {
        self.order_status == OrderStatus::Ticketed
            && self.ticket_status.as_deref() == Some(codes::TICKET_ISSUED)
            && !self.tickets.is_empty()
            && self.tickets.iter().all(|p| !p.ticket_numbers.is_empty())
    }

    /// The final ticket set and its PNR: every passenger has a ticket number and a PNR is
    /// known. Tickets without any PNR are not final: the order is followed until one shows
    /// (or the ticketing deadline passes).
    pub fn final_tickets(&self) -> Option<(&TicketSet, String)> {
        if !self.tickets_complete() {
            return None;
        }
        Some((&self.tickets, self.pnr()?))
    }

    /// The airline PNR(s): per passenger first (where ATRIP fills them for every passenger),
    /// then the airline bookings, then ATRIP's own booking reference; de-duplicated, in order.
    pub fn pnr(&self) -> Option<String> {
        let mut pnrs: Vec<&str> = Vec::new();
        for pnr in self
            .tickets
            .iter()
            .flat_map(|p| &p.airline_pnrs)
            .chain(&self.booking_pnrs)
        {
            if !pnrs.contains(&pnr.as_str()) {
                pnrs.push(pnr);
            }
        }
        if pnrs.is_empty() {
            return self.pnr_code.clone();
        }
        Some(pnrs.join(" "))
    }
}

/// Reads a body as JSON: `None` when it is not a JSON object. NUL characters (`\u0000`) are
/// dropped from every string: PostgreSQL's text and jsonb refuse them, and one would make
/// every write of the order fail.
fn json_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.values_mut().for_each(drop_nul);
            Some(m)
        }
        _ => None,
    }
}

fn drop_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(drop_nul),
        Value::Object(m) => m.values_mut().for_each(drop_nul),
        _ => {}
    }
}

fn text(m: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key) {
        // ATRIP's own words are stored and logged: a card number it echoes is masked first.
        Some(Value::String(s)) => Some(truncate(&mask_card_numbers(s), 200)),
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
        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
        .min(300.0);
    Some(Duration::from_secs_f64(secs))
}

/// Classifies a `pay.do` HTTP answer (code and body) to the payment of `order_no`.
pub fn classify_pay(order_no: &str, http: u16, body: &[u8]) -> PayAnswer {
    let obj = json_object(body);
    if rate_limit(http, obj.as_ref()).is_some() {
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
            reason: format!("pay.do answered HTTP {http}"),
        };
    }
    let Some(m) = obj else {
        return PayAnswer::OutcomeUnknown {
            status: None,
            reason: describe_garbled(body),
        };
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
                reason: format!(
                    "pay.do answered for another order ({})",
                    truncate(&mask_card_numbers(other), 40)
                ),
            };
        }
    }
    let msg = text(&m, "msg");
    match codes::pay_class(status) {
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
    let obj = json_object(body);
    if let Some(retry_after) = rate_limit(http, obj.as_ref()) {
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
            reason: format!("order query answered HTTP {http}"),
        };
    }
    let Some(m) = obj else {
        return QueryAnswer::Invalid {
            status: None,
            reason: describe_garbled(body),
        };
    };
    let Some(status) = m.get("status").and_then(Value::as_i64) else {
        return QueryAnswer::Invalid {
            status: None,
            reason: "order query answer has no integer status".into(),
        };
    };
    let msg = text(&m, "msg");
    match status {
        codes::query::OK => match read_order(order_no, &m) {
            Ok(view) => QueryAnswer::Order(view),
            Err(reason) => QueryAnswer::Invalid {
                status: Some(status),
                reason,
            },
        },
        codes::query::ORDER_DOES_NOT_EXIST | codes::query::NO_ORDER_FOUND => {
            QueryAnswer::NotFound { status, msg }
        }
        codes::query::TIMEOUT | -1 | 2 | 9999 => QueryAnswer::Retry {
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

/// A status field that ATRIP sends as a string in queries and as an integer in webhooks.
fn status_text(v: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(truncate(s.trim(), 20))),
        Some(Value::Number(n)) if n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{key} is neither a string nor an integer")),
    }
}

/// A list of ticket numbers or PNRs: trimmed, and de-duplicated in order (ATRIP may repeat a
/// number, padded with spaces, and its own client counts it once).
fn string_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{what} is not a list")),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let value = match item {
            Value::String(s) if is_ticket_like(s) => s.trim(),
            Value::String(s) => {
                return Err(format!(
                    "{what} holds a malformed value {:?}",
                    truncate(s, 30)
                ))
            }
            _ => return Err(format!("{what} holds a non-string")),
        };
        if !out.iter().any(|seen| seen == value) {
            out.push(value.to_owned());
        }
    }
    Ok(out)
}

/// `airlineBookings[].airlinePnr`, where readable. ATRIP's own client never reads this block,
/// so a malformed one is skipped, not a reason to distrust the answer.
fn booking_pnrs(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(bookings)) = v else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for pnr in bookings
        .iter()
        .filter_map(|b| b.get("airlinePnr")?.as_str())
        .filter(|s| is_ticket_like(s))
        .map(str::trim)
    {
        if !out.iter().any(|seen| seen == pnr) {
            out.push(pnr.to_owned());
        }
    }
    out
}

/// `tktLimitTime`: `yyyy-MM-dd HH:mm:ss` in Singapore time (UTC+8), as ATRIP writes every time.
fn sgt_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    let local = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(local.and_utc() - chrono::Duration::hours(8))
}

/// Ticket numbers and PNRs: letters, digits and dashes, at most 20 characters.
fn is_ticket_like(s: &str) -> bool {
    let s = s.trim();
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Reads the fields the worker uses from a `status 0` query answer, refusing what cannot be
/// trusted: another order's answer, wrong types, more ticket numbers than a passenger can hold
/// (one, or two for a round trip split in two bookings).
///
/// `paxTicketInfos` is the passenger list (ATRIP's documented answers carry no `passengers`
/// array, and an entry's `name` may be absent: ATRIP's own client accepts such answers). When an
/// answer does carry a `passengers` array too, the ticket list may not be longer than it, a named
/// entry must be one of the listed passengers, and a listed passenger without an entry is kept
/// with no ticket, so that the set is not final without them.
fn read_order(order_no: &str, m: &serde_json::Map<String, Value>) -> Result<OrderView, String> {
    match m.get("orderNo") {
        Some(Value::String(s)) if s == order_no => {}
        Some(Value::String(s)) => {
            return Err(format!(
                "the answer is for another order ({})",
                truncate(s, 40)
            ))
        }
        _ => return Err("the answer has no orderNo".into()),
    }
    let order_status =
        status_text(m.get("orderStatus"), "orderStatus")?.ok_or("the answer has no orderStatus")?;
    let ticket_status = status_text(m.get("ticketStatus"), "ticketStatus")?;
    let pax = match m.get("paxTicketInfos") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("paxTicketInfos is not a list".into()),
    };
    let mut listed = match m.get("passengers") {
        Some(Value::Array(passengers)) => {
            if pax.len() > passengers.len() {
                return Err(format!(
                    "paxTicketInfos has {} entries for {} passengers",
                    pax.len(),
                    passengers.len()
                ));
            }
            Some(passenger_names(passengers))
        }
        _ => None,
    };
    let mut tickets = Vec::with_capacity(pax.len());
    for (i, p) in pax.iter().enumerate() {
        let p = p
            .as_object()
            .ok_or_else(|| format!("paxTicketInfos[{i}] is not an object"))?;
        let name = match p.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(truncate(s.trim(), 80)),
            _ => None,
        };
        if let Some(listed) = listed.as_mut() {
            match_passenger(listed, name.as_deref(), i)?;
        }
        let ticket_numbers = string_list(
            p.get("ticketNos"),
            &format!("paxTicketInfos[{i}].ticketNos"),
        )?;
        let airline_pnrs = string_list(
            p.get("airlinePNRs"),
            &format!("paxTicketInfos[{i}].airlinePNRs"),
        )?;
        if ticket_numbers.len() > 2 {
            return Err(format!(
                "paxTicketInfos[{i}] has {} ticket numbers (at most 2 per passenger)",
                ticket_numbers.len()
            ));
        }
        tickets.push(PassengerTickets {
            passenger: name.unwrap_or_else(|| format!("passenger {}", i + 1)),
            ticket_numbers,
            airline_pnrs,
        });
    }
    // A listed passenger without an entry has no ticket: the set is then never final.
    for (i, passenger) in listed.unwrap_or_default().into_iter().enumerate() {
        tickets.push(PassengerTickets {
            passenger: passenger.unwrap_or_else(|| format!("listed passenger {}", i + 1)),
            ticket_numbers: Vec::new(),
            airline_pnrs: Vec::new(),
        });
    }
    Ok(OrderView {
        order_no: order_no.to_owned(),
        pnr_code: text(m, "pnrCode"),
        order_status: OrderStatus::from_wire(&order_status),
        ticket_status,
        tickets,
        booking_pnrs: booking_pnrs(m.get("airlineBookings")),
        pay_deadline: sgt_time(m.get("tktLimitTime")),
        payment_attempted: m.get("paymentAttempted").and_then(Value::as_bool),
        error_code: status_text(m.get("errorCode"), "errorCode")?,
        error_message: text(m, "errorMessage"),
        msg: text(m, "msg"),
    })
}

/// The names of the order's passengers (`passengers[].name`), as `paxTicketInfos` names them;
/// `None` for a passenger listed without a name.
fn passenger_names(passengers: &[Value]) -> Vec<Option<String>> {
    passengers
        .iter()
        .map(|p| match p.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(truncate(s.trim(), 80)),
            _ => None,
        })
        .collect()
}

/// Pairs ticket entry `i` with a listed passenger not paired yet: by name when the entry has
/// one (names compare without regard to case: ATRIP's examples mix `DOE/JANE` and `zhang/lisi`),
/// else the first one left. A ticket for someone who is not on the order, or a second entry for
/// one passenger (while another may have none), is an answer the worker cannot trust: it must
/// never make an order look ticketed.
fn match_passenger(
    listed: &mut Vec<Option<String>>,
    name: Option<&str>,
    i: usize,
) -> Result<(), String> {
    let at = match name {
        Some(name) => {
            let upper = name.to_uppercase();
            listed
                .iter()
                .position(|p| p.as_deref().is_some_and(|p| p.to_uppercase() == upper))
                .or_else(|| listed.iter().position(Option::is_none))
                .ok_or_else(|| {
                    format!(
                        "paxTicketInfos[{i}] names {:?}, who is not among the order's passengers (or has an entry already)",
                        truncate(name, 40)
                    )
                })?
        }
        None => 0,
    };
    if at < listed.len() {
        listed.remove(at);
    }
    Ok(())
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
            truncate(&mask_card_numbers(head.trim()), 20)
        )
    }
}

#[cfg(test)]
mod tests;
