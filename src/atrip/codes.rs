//! The one table of ATRIP's codes and order states, shared by the client (to classify answers)
//! and the simulator (to produce them), so the two can never disagree.
//!
//! Sources (`docs/atrip.md` lists them with what each one says):
//! - the apifox export of ATRIP's OpenAPI description, "Atlas API" project
//!   (<https://a7wgayos1a.apifox.cn/payment-294989771e0> for `pay.do`,
//!   <https://a7wgayos1a.apifox.cn/retrieve-booking-295201827e0> for `queryOrderDetails.do`),
//!   schemas `PaymentResponseStatus`, `RetrieveBookingResponseStatus`, `TicketErrorCodes`;
//! - the GitBook API reference at resources.atriptech.com ("Payment and Ticketing",
//!   "Query Order", "Errors handling / Payment errors", "402 vs 404 vs 406 vs 615");
//! - ATRIP's own CLI `atlas-doc/atlas-flight-booking` (`business_status.py`, `ticketing.py`),
//!   which treats 411 and unknown codes as "outcome unknown" and never pays again.
//!
//! Re-checked for this table on 2026-11-25 in ATRIP's own client,
//! `atlas-doc/atlas-flight-booking` `src/atlas_cli/ticketing.py` @ `7fd77449626f`: it accepts
//! exactly `orderStatus` in {"0", "1", "2", "-3"} and `ticketStatus` in {"0", "1"} (strings),
//! reads ticket numbers and airline PNRs from every `paxTicketInfos[i].ticketNos` /
//! `.airlinePNRs`, refuses an answer whose `orderNo` is not the one asked for, and calls an
//! order ticketed only when `"2"`, `"1"` and a ticket for every passenger — the predicate of
//! [`crate::atrip::OrderView::final_tickets`].
//!
//! What the sources confirm: `orderStatus` is a *string* holding `"0"`, `"1"`, `"2"` or `"-3"` in
//! the query answer (an integer in webhooks); `ticketStatus` is `"0"`/`"1"`; ticket numbers sit
//! per passenger in `paxTicketInfos[i].ticketNos` (and `airlinePNRs`), one element per passenger
//! (two for a round trip split in two bookings). What they leave open (is 604/616 answered by
//! `pay.do` itself or only later as `errorCode` of a cancelled order; does a re-pay of a paid
//! order answer 402 or 404; does an expired unpaid order show `"0"` or `"-3"`) is a knob of the
//! simulator, and the worker handles every variant.

/// What a `pay.do` answer means for the pay-once protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayClass {
    /// `0`: ATRIP accepted the payment (this is not ticketing).
    Accepted,
    /// `615`: paid, the airline PNR is not obtained yet; ATRIP pursues it by hand.
    PaidPnrPending,
    /// `402`, `404`, `406`: the order is paid, not payable, or a payment is running.
    /// Never pay again: the order query decides.
    NeverPayAgain,
    /// A definitive refusal: nothing was charged, the order fails with this code.
    Refused,
    /// `900`, `902`: our credentials are wrong; the order is not at fault.
    Unauthorized,
    /// `411`: a generic payment error (deposit balance, card gateway). ATRIP's own client
    /// queries the order and never pays again; its newer versions tell the user to check the
    /// balance. Only an order query can tell, and if it does not show the order paid, a person
    /// checks the balance or card before any second payment (docs/design.md, rule P6).
    PaymentError,
    /// `-1`, `2`, `9999`, the codes documented for other endpoints (`604`, `616`, `100`,
    /// `901`) and every code not in this table: a charge may or may not have happened. Only an
    /// order query can tell.
    OutcomeUnknown,
}

/// One documented `pay.do` status code.
#[derive(Clone, Copy, Debug)]
pub struct PayCode {
    pub status: i64,
    pub class: PayClass,
    /// ATRIP's message, as documented (the simulator sends it; the worker never reads `msg`).
    pub msg: &'static str,
}

/// Every `pay.do` status code ATRIP documents (and the few other codes ATRIP is known to answer
/// on `pay.do`), with the worker's reading of it.
pub const PAY_CODES: &[PayCode] = &[
    PayCode {
        status: 0,
        class: PayClass::Accepted,
        msg: "success",
    },
    PayCode {
        status: 400,
        class: PayClass::Refused,
        msg: "Illegal request parameter",
    },
    PayCode {
        status: 401,
        class: PayClass::Refused,
        msg: "Payment deadline has passed",
    },
    PayCode {
        status: 402,
        class: PayClass::NeverPayAgain,
        msg: "Order status does not support payment",
    },
    PayCode {
        status: 403,
        class: PayClass::Refused,
        msg: "Payment method not supported",
    },
    PayCode {
        status: 404,
        class: PayClass::NeverPayAgain,
        msg: "Order already paid",
    },
    PayCode {
        status: 406,
        class: PayClass::NeverPayAgain,
        msg: "Payment operation is in progress",
    },
    PayCode {
        status: 407,
        class: PayClass::Refused,
        msg: "Mandatory passenger element missing",
    },
    PayCode {
        status: 408,
        class: PayClass::Refused,
        msg: "Passenger cannot travel alone",
    },
    PayCode {
        status: 409,
        class: PayClass::Refused,
        msg: "Baggage does not match segment",
    },
    PayCode {
        status: 410,
        class: PayClass::Refused,
        msg: "Contact information format is wrong",
    },
    PayCode {
        status: 411,
        class: PayClass::PaymentError,
        msg: "Payment error",
    },
    PayCode {
        status: 412,
        class: PayClass::Refused,
        msg: "No payment method available",
    },
    PayCode {
        status: 413,
        class: PayClass::Refused,
        msg: "Card not supported",
    },
    PayCode {
        status: 414,
        class: PayClass::Refused,
        msg: "Card mismatch",
    },
    PayCode {
        status: 415,
        class: PayClass::Refused,
        msg: "Order not confirmed by the user",
    },
    PayCode {
        status: 615,
        class: PayClass::PaidPnrPending,
        msg: "Payment completed but failed to get PNR",
    },
    // Not documented as pay.do codes: 604 and 616 are ticket-stage codes (the sandbox's
    // "Reject" and "Three DS" card holders produce them, synchronously or later as the
    // `errorCode` of a cancelled order), 100 and 901 are generic API codes. ATRIP's own client
    // reads every code outside its pay.do table as "outcome unknown" and queries the order; so
    // do we. They are listed only so that the simulator can answer them with ATRIP's message.
    PayCode {
        status: 604,
        class: PayClass::OutcomeUnknown,
        msg: "Payment declined by airline",
    },
    PayCode {
        status: 616,
        class: PayClass::OutcomeUnknown,
        msg: "3DS Authentication",
    },
    PayCode {
        status: 100,
        class: PayClass::OutcomeUnknown,
        msg: "Missing required request data",
    },
    PayCode {
        status: 901,
        class: PayClass::OutcomeUnknown,
        msg: "Illegal request data",
    },
    PayCode {
        status: 900,
        class: PayClass::Unauthorized,
        msg: "Unauthorized",
    },
    PayCode {
        status: 902,
        class: PayClass::Unauthorized,
        msg: "Access denied",
    },
    PayCode {
        status: -1,
        class: PayClass::OutcomeUnknown,
        msg: "System error",
    },
    PayCode {
        status: 2,
        class: PayClass::OutcomeUnknown,
        msg: "System error",
    },
    PayCode {
        status: 9999,
        class: PayClass::OutcomeUnknown,
        msg: "Unexpected system error",
    },
];

/// The class of a `pay.do` status; a code ATRIP never documented is an unknown outcome.
pub fn pay_class(status: i64) -> PayClass {
    pay_code(status).map_or(PayClass::OutcomeUnknown, |c| c.class)
}

/// The documented entry for a `pay.do` status, if any.
pub fn pay_code(status: i64) -> Option<&'static PayCode> {
    PAY_CODES.iter().find(|c| c.status == status)
}

/// ATRIP's message for a `pay.do` status (the simulator's answer text).
pub fn pay_msg(status: i64) -> &'static str {
    pay_code(status).map_or("error", |c| c.msg)
}

/// `queryOrderDetails.do` status codes.
pub mod query_status {
    pub const OK: i64 = 0;
    /// Several orders match (airline-PNR lookups only).
    pub const SEVERAL_ORDERS: i64 = 701;
    pub const PNR_AND_CARRIER_REQUIRED: i64 = 702;
    /// No order found.
    pub const NO_ORDER_FOUND: i64 = 703;
    pub const PARAMETERS_DO_NOT_MATCH: i64 = 704;
    /// ATRIP timed out internally: retry later.
    pub const TIMEOUT: i64 = 705;
    /// The order does not exist.
    pub const ORDER_DOES_NOT_EXIST: i64 = 800;

    /// ATRIP's message for a query status (the simulator's answer text).
    pub fn msg(status: i64) -> &'static str {
        match status {
            OK => "success",
            SEVERAL_ORDERS => "Multiple orders match",
            PNR_AND_CARRIER_REQUIRED => "airlinePNR and carrier are mandatory",
            NO_ORDER_FOUND => "No order found",
            PARAMETERS_DO_NOT_MATCH => "Parameters do not match",
            TIMEOUT => "Timeout, please retry later",
            ORDER_DOES_NOT_EXIST => "Order does not exist",
            _ => "error",
        }
    }
}

/// The credential errors any endpoint can answer.
pub const UNAUTHORIZED: i64 = 900;
pub const ACCESS_DENIED: i64 = 902;
/// The rate-limit answer, carried in `code` (not `status`) with `retryAfter` seconds.
pub const RATE_LIMITED: i64 = 429;

/// The order's state as `queryOrderDetails.do` reports it in `orderStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    /// `"0"`: unpaid, payable until `tktLimitTime`.
    Unpaid,
    /// `"1"`: paid (or a payment is running); ticketing in process.
    Ticketing,
    /// `"2"`: ticketed; final only with a ticket number for every passenger.
    Ticketed,
    /// `"-3"`: cancelled; `errorCode`/`errorMessage` say why.
    Cancelled,
    /// Anything else: recorded and followed, never taken for success.
    Unknown(String),
}

/// The documented `orderStatus` values, in wire form.
pub const ORDER_STATUSES: &[(&str, OrderStatus)] = &[
    ("0", OrderStatus::Unpaid),
    ("1", OrderStatus::Ticketing),
    ("2", OrderStatus::Ticketed),
    ("-3", OrderStatus::Cancelled),
];

impl OrderStatus {
    /// Reads the wire value (a string in the query, an integer in webhooks; both arrive here
    /// as their decimal text).
    pub fn from_wire(value: &str) -> Self {
        let value = value.trim();
        ORDER_STATUSES
            .iter()
            .find(|(wire, _)| *wire == value)
            .map_or_else(
                || OrderStatus::Unknown(value.to_owned()),
                |(_, s)| s.clone(),
            )
    }

    /// The wire value (what the simulator sends).
    pub fn wire(&self) -> &str {
        match self {
            OrderStatus::Unknown(v) => v,
            known => ORDER_STATUSES
                .iter()
                .find(|(_, s)| s == known)
                .map(|(w, _)| *w)
                .unwrap_or_default(),
        }
    }
}

/// `ticketStatus "1"`: tickets issued.
pub const TICKET_ISSUED: &str = "1";
/// `ticketStatus "0"`: not issued yet.
pub const TICKET_NOT_ISSUED: &str = "0";

/// Ticket-stage `errorCode`s (string on the wire) that mean the payment itself failed; a
/// cancelled order carrying one of these failed for a payment reason (card declined,
/// deadline, balance), which the operator fixes with another card or method.
pub const PAYMENT_ERROR_CODES: &[&str] = &["604", "611", "613", "616", "617", "619", "623", "633"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_pay_code_has_one_class() {
        for code in PAY_CODES {
            assert_eq!(
                PAY_CODES.iter().filter(|c| c.status == code.status).count(),
                1
            );
        }
        assert_eq!(pay_class(0), PayClass::Accepted);
        assert_eq!(pay_class(404), PayClass::NeverPayAgain);
        assert_eq!(pay_class(411), PayClass::PaymentError);
        for undocumented_for_pay in [604, 616, 100, 901] {
            assert_eq!(pay_class(undocumented_for_pay), PayClass::OutcomeUnknown);
        }
        assert_eq!(pay_class(12345), PayClass::OutcomeUnknown);
        assert_eq!(pay_class(900), PayClass::Unauthorized);
    }

    #[test]
    fn order_status_round_trips_and_keeps_unknown_values() {
        for (wire, status) in ORDER_STATUSES {
            assert_eq!(&OrderStatus::from_wire(wire), status);
            assert_eq!(status.wire(), *wire);
        }
        assert_eq!(
            OrderStatus::from_wire("3"),
            OrderStatus::Unknown("3".into())
        );
        assert_eq!(OrderStatus::from_wire(" 2 "), OrderStatus::Ticketed);
    }
}
