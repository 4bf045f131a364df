//! Fuzzes the classification of ATRIP's answers: any bytes, with any HTTP code, must give an
//! answer the worker can act on safely.
//!
//! The input's first two bytes choose the HTTP code (half the inputs get 200, where bodies are
//! read; the others an arbitrary code); the rest is the body, given to both `classify_pay` and
//! `classify_query`. Invariants, for every input:
//! - no panic;
//! - `pay.do` is `Accepted` only for HTTP 200 and an integer `status` 0 or 615 in the body;
//! - an order view is the asked order's, from HTTP 200 and `status` 0; its tickets are final
//!   only when `orderStatus` is ticketed, `ticketStatus` "1" and every passenger (every listed
//!   one, when the answer lists them) has a ticket number; ticket numbers and PNRs are short
//!   and plain;
//! - every reason (the text that ends up in `last_error`) stays under 300 characters, and every
//!   message under 201.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ticketing_tracker::atrip::answer::{classify_pay, classify_query, PayAnswer, QueryAnswer};
use ticketing_tracker::atrip::codes::OrderStatus;

const ORDER_NO: &str = "TESTA20260824171418381";
const MAX_REASON: usize = 300;
const MAX_MSG: usize = 201;

fuzz_target!(|data: &[u8]| {
    let (http, body) = split(data);
    let json = serde_json::from_slice::<Value>(body).ok();
    let status = json
        .as_ref()
        .and_then(|v| v.get("status"))
        .and_then(Value::as_i64);
    check_pay(http, body, status);
    check_query(http, body, json.as_ref(), status);
});

fn split(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, body @ ..] => {
            let raw = u16::from_le_bytes([*a, *b]);
            let http = if raw & 1 == 0 { 200 } else { raw >> 1 };
            (http, body)
        }
        _ => (200, data),
    }
}

fn short(what: &str, text: &str, max: usize) {
    let n = text.chars().count();
    assert!(n <= max, "{what} has {n} characters: {text:?}");
}

fn check_pay(http: u16, body: &[u8], status: Option<i64>) {
    let answer = classify_pay(ORDER_NO, http, body);
    assert_eq!(
        answer,
        classify_pay(ORDER_NO, http, body),
        "classification is a function"
    );
    match &answer {
        PayAnswer::Accepted { status: s, msg, .. } => {
            assert_eq!(http, 200, "accepted from HTTP {http}");
            assert!(
                status == Some(*s) && matches!(s, 0 | 615),
                "accepted with status {s}, body status {status:?}"
            );
            short("msg", msg.as_deref().unwrap_or(""), MAX_MSG);
        }
        PayAnswer::NeverPayAgain { status: s, msg }
        | PayAnswer::Refused { status: s, msg }
        | PayAnswer::Unauthorized { status: s, msg }
        | PayAnswer::PaymentError { status: s, msg } => {
            assert_eq!(status, Some(*s));
            short("msg", msg.as_deref().unwrap_or(""), MAX_MSG);
        }
        PayAnswer::OutcomeUnknown { reason, .. } | PayAnswer::NotSent { reason } => {
            short("pay reason", reason, MAX_REASON)
        }
    }
}

fn check_query(http: u16, body: &[u8], json: Option<&Value>, status: Option<i64>) {
    let answer = classify_query(ORDER_NO, http, body);
    match &answer {
        QueryAnswer::Order(view) => {
            assert_eq!(http, 200, "an order from HTTP {http}");
            assert_eq!(status, Some(0));
            assert_eq!(view.order_no, ORDER_NO);
            let json = json.expect("an order from a body that is not JSON");
            assert_eq!(
                json["orderNo"].as_str(),
                Some(ORDER_NO),
                "another order's answer"
            );
            for p in &view.tickets {
                assert!(p.ticket_numbers.len() <= 2, "{p:?}");
                for t in p.ticket_numbers.iter().chain(&p.airline_pnrs) {
                    assert!(
                        (1..=20).contains(&t.len())
                            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                        "ticket number or PNR {t:?}"
                    );
                }
                short("passenger", &p.passenger, 81);
            }
            if let Some(listed) = json["passengers"].as_array() {
                assert_eq!(
                    view.tickets.len(),
                    listed.len(),
                    "one entry per listed passenger"
                );
            }
            if let Some((tickets, pnr)) = view.final_tickets() {
                assert_eq!(view.order_status, OrderStatus::Ticketed);
                assert_eq!(view.ticket_status.as_deref(), Some("1"));
                assert!(!tickets.is_empty());
                assert!(tickets.iter().all(|p| !p.ticket_numbers.is_empty()));
                assert!(!pnr.is_empty(), "a final ticket set has a PNR");
                for p in tickets {
                    let mut seen = p.ticket_numbers.clone();
                    seen.dedup();
                    assert_eq!(seen.len(), p.ticket_numbers.len(), "tickets de-duplicated");
                }
            }
            for m in [&view.msg, &view.error_message, &view.pnr_code] {
                short("text", m.as_deref().unwrap_or(""), MAX_MSG);
            }
        }
        QueryAnswer::NotFound { status: s, .. } => {
            assert!(
                matches!(s, 800 | 703) && http == 200,
                "not found: {s}, HTTP {http}"
            );
        }
        QueryAnswer::RateLimited { retry_after } => {
            assert!(retry_after.as_secs() <= 300, "{retry_after:?}");
        }
        QueryAnswer::Retry { reason } | QueryAnswer::Invalid { reason, .. } => {
            short("query reason", reason, MAX_REASON)
        }
        QueryAnswer::Unauthorized { .. } => {}
    }
}
