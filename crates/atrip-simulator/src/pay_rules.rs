//! The pure decision of what `pay.do` answers for one order and one request, checked in the
//! order ATRIP documents, before anything is charged.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::card::{check_expiry, valid_pan, CardBrand, ExpiryError};
use super::order::Order;
use super::SimConfig;
use ticketing_tracker::atrip::codes::{pay_class, OrderStatus, PayClass};

// The pay.do statuses the rules answer. Numbers only: messages and classes come from the
// shared table in `codes.rs` (a test checks each of these is documented there).
pub(super) const ILLEGAL_PARAMETER: i64 = 400;
pub(super) const DEADLINE_PASSED: i64 = 401;
pub(super) const NOT_PAYABLE: i64 = 402;
pub(super) const METHOD_NOT_SUPPORTED: i64 = 403;
pub(super) const IN_PROGRESS: i64 = 406;
pub(super) const PASSENGER_ELEMENT_MISSING: i64 = 407;
pub(super) const CARD_NOT_SUPPORTED: i64 = 413;
pub(super) const CARD_MISMATCH: i64 = 414;
pub(super) const NOT_CONFIRMED: i64 = 415;
pub(super) const PNR_PENDING: i64 = 615;
pub(super) const DECLINED_BY_AIRLINE: i64 = 604;
pub(super) const NEEDS_3DS: i64 = 616;
/// The documented methods: 1 deposit, 3 VCC pass-through, 4 BYOA, 5 MoR (there is no 2).
pub(super) const METHODS: [i64; 4] = [1, 3, 4, 5];

/// What pay.do does for this request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Answer this status; nothing charged. The detail (naming the field) goes after ATRIP's
    /// message in `msg`.
    Refuse(i64, Option<String>),
    /// Take the payment: it settles (is charged) after the processing time, and then pay.do
    /// answers `status` (0, or 615 when the PNR is pending). `decline` is set when the card is
    /// declined *after* the charge (card_decline_sync off): the order later ends `"-3"` with
    /// that code.
    Take {
        status: i64,
        method: i64,
        decline: Option<i64>,
        card_tail: Option<String>,
    },
    /// The sandbox's "Reject"/"Three DS" card holder with card_decline_sync on: answer 604/616,
    /// nothing charged; with `decline_cancels_order` the order is cancelled with that code.
    Decline(i64),
    /// FR flow without the traveller's confirmation: answer 415 and cancel the order.
    CancelUnconfirmed,
}

fn refuse(status: i64, detail: impl Into<String>) -> Decision {
    Decision::Refuse(status, Some(detail.into()))
}

/// The effective method, or the refusal. ATRIP's Postman kit pays deposit without the field,
/// so a missing method is taken as 1.
fn method_of(req: &Value) -> Result<i64, Decision> {
    match req.get("paymentMethod") {
        None | Some(Value::Null) => Ok(1),
        Some(v) => v
            .as_i64()
            .filter(|m| METHODS.contains(m))
            .ok_or_else(|| refuse(ILLEGAL_PARAMETER, "paymentMethod must be one of 1, 3, 4, 5")),
    }
}

/// Whether this ATRIP would take one more payment for the order, judging by its payments alone:
/// with the duplicate guard only the first; without it any arriving before one has settled.
fn may_take(config: &SimConfig, order: &Order, now: Instant) -> bool {
    if config.duplicate_guard {
        order.payments.is_empty()
    } else {
        order.payments.paying(now).is_none()
    }
}

/// A test's forced `pay_status`: it takes a payment only when the code means the money was
/// taken, and only when the order would take one (never a second with the guard on).
pub(super) fn forced(
    config: &SimConfig,
    order: &Order,
    req: &Value,
    status: i64,
    now: Instant,
) -> Decision {
    let takes_money = matches!(
        pay_class(status),
        PayClass::Accepted | PayClass::PaidPnrPending
    );
    if takes_money && order.cancelled.is_none() && may_take(config, order, now) {
        let method = method_of(req).unwrap_or(1);
        Decision::Take {
            status,
            method,
            decline: None,
            card_tail: card_tail(req),
        }
    } else {
        Decision::Refuse(status, None)
    }
}

fn card_tail(req: &Value) -> Option<String> {
    req.pointer("/creditCard/cardNumber")
        .and_then(Value::as_str)
        .and_then(super::card::last4)
}

/// The decision for a normal request.
pub(super) fn decide(
    config: &SimConfig,
    order: &Order,
    req: &Value,
    now: Instant,
    now_utc: DateTime<Utc>,
) -> Decision {
    let method = match method_of(req) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    let view = order.view(config, now, now_utc);
    // Order state first: ATRIP's guidance puts 402/404/406 before any input check. A cancelled
    // order (including one cancelled after its charge) is "not payable", not "already paid":
    // that is what its query shows. An expired hold is 401, below, whatever the query shows.
    if view.status == OrderStatus::Cancelled && !view.expired {
        return Decision::Refuse(NOT_PAYABLE, None);
    }
    if !may_take(config, order, now) {
        // With the guard: 406 while the payment is processing or in its in-progress window,
        // then 404/402. Without it this is reached only once a payment has settled: the order
        // is paid, so 404/402; only payments that overlap one still processing double-charge.
        let status = if config.duplicate_guard && (view.processing > 0 || view.in_progress) {
            IN_PROGRESS
        } else {
            config.repay_status
        };
        return Decision::Refuse(status, None);
    }
    // Without the guard, another payment may be processing (view.expired is then false): a
    // request past the deadline is still refused as the hold is over.
    if view.expired || (view.processing > 0 && now_utc >= order.deadline) {
        return Decision::Refuse(DEADLINE_PASSED, None);
    }
    if order.fr_flow {
        return Decision::CancelUnconfirmed;
    }
    if !order.support_payment_methods.contains(&method) {
        return refuse(
            METHOD_NOT_SUPPORTED,
            format!("paymentMethod {method} is not supported for this order"),
        );
    }
    let card = match check_card(method, req.get("creditCard"), now_utc) {
        Ok(card) => card,
        Err(detail) => return refuse(ILLEGAL_PARAMETER, detail),
    };
    if order.missing_passenger_data {
        return refuse(PASSENGER_ELEMENT_MISSING, "passenger document is missing");
    }
    let mut decline = None;
    if let Some(card) = &card {
        match card.brand {
            Some(brand) if order.accepted_brands.contains(&brand) => {}
            other => {
                let name = other.map_or("unknown", CardBrand::name);
                return refuse(
                    CARD_NOT_SUPPORTED,
                    format!("card brand {name} is not supported"),
                );
            }
        }
        if let (5, Some(expected), Some(brand)) = (method, &order.mor_card_type, card.brand) {
            if brand.name() != expected {
                return refuse(
                    CARD_MISMATCH,
                    format!(
                        "card is {}, the order was created for {expected}",
                        brand.name()
                    ),
                );
            }
        }
        // The sandbox's documented magic names, matched loosely as people type them.
        let holder = card.holder_first_name.trim();
        let code = if holder.eq_ignore_ascii_case("Reject") {
            Some(DECLINED_BY_AIRLINE)
        } else if holder.eq_ignore_ascii_case("Three DS") {
            Some(NEEDS_3DS)
        } else {
            None
        };
        if let Some(code) = code {
            if config.card_decline_sync {
                return Decision::Decline(code);
            }
            decline = Some(code);
        }
    }
    Decision::Take {
        status: 0,
        method,
        decline,
        card_tail: card_tail(req),
    }
}

/// What the rules need from a valid card; the number itself is not kept.
struct CardInfo {
    brand: Option<CardBrand>,
    holder_first_name: String,
}

fn text<'a>(card: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    card.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The `creditCard` checks; the error is the 400 detail naming the field.
fn check_card(
    method: i64,
    card: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<Option<CardInfo>, String> {
    let needs_card = matches!(method, 3 | 5);
    let card = match card {
        None | Some(Value::Null) if needs_card => {
            return Err(format!("creditCard is required for paymentMethod {method}"));
        }
        None | Some(Value::Null) => return Ok(None),
        // ATRIP wants `null`, not `""`, and no card at all for deposit and BYOA.
        Some(_) if !needs_card => {
            return Err("creditCard must be null for this payment method".into())
        }
        Some(Value::Object(card)) => card,
        Some(_) => return Err("creditCard must be an object".into()),
    };
    let number = text(card, "cardNumber").ok_or("creditCard.cardNumber is missing")?;
    let digits =
        valid_pan(number).ok_or("creditCard.cardNumber is not a valid card number (Luhn check)")?;
    let month = text(card, "cardExpireMonth").ok_or("creditCard.cardExpireMonth is missing")?;
    let year = text(card, "cardExpireYear").ok_or("creditCard.cardExpireYear is missing")?;
    check_expiry(month, year, now).map_err(|e| match e {
        ExpiryError::Month => "creditCard.cardExpireMonth must be 01-12",
        ExpiryError::Year => "creditCard.cardExpireYear must have 2 or 4 digits",
        ExpiryError::Past => "creditCard.cardExpireYear/cardExpireMonth: the card has expired",
    })?;
    if method == 3 {
        text(card, "cardCVV").ok_or("creditCard.cardCVV is required for paymentMethod 3")?;
        if card.get("threeDS").is_some_and(|t| !t.is_null()) {
            return Err("creditCard.threeDS is for MoR (paymentMethod 5) only".into());
        }
    }
    Ok(Some(CardInfo {
        brand: CardBrand::detect(&digits),
        holder_first_name: text(card, "cardHolderFirstName")
            .unwrap_or_default()
            .to_owned(),
    }))
}
