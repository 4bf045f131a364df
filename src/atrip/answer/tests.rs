//! Every documented status code and the garbled bodies ATRIP (or a proxy) can send.

use super::*;
use crate::atrip::codes::PAY_CODES;
use serde_json::json;

fn pay(body: Value) -> PayAnswer {
    classify_pay("TESTA20260824171418381", 200, body.to_string().as_bytes())
}

fn query(body: Value) -> QueryAnswer {
    classify_query("TESTA20260824171418381", 200, body.to_string().as_bytes())
}

#[test]
fn every_documented_pay_code_is_classified_as_the_table_says() {
    for code in PAY_CODES {
        let answer = pay(json!({"status": code.status, "msg": code.msg}));
        let ok = match code.class {
            PayClass::Accepted | PayClass::PaidPnrPending => {
                matches!(answer, PayAnswer::Accepted { .. })
            }
            PayClass::NeverPayAgain => matches!(answer, PayAnswer::NeverPayAgain { .. }),
            PayClass::Refused => matches!(answer, PayAnswer::Refused { .. }),
            PayClass::Unauthorized => matches!(answer, PayAnswer::Unauthorized { .. }),
            PayClass::PaymentError => matches!(answer, PayAnswer::PaymentError { .. }),
            PayClass::OutcomeUnknown => matches!(answer, PayAnswer::OutcomeUnknown { .. }),
        };
        assert!(ok, "status {} classified as {answer:?}", code.status);
        assert_eq!(answer.status(), Some(code.status));
    }
}

#[test]
fn pay_codes_that_must_never_lead_to_a_second_payment() {
    for status in [402, 404, 406] {
        assert!(matches!(
            pay(json!({"status": status})),
            PayAnswer::NeverPayAgain { .. }
        ));
    }
    assert!(matches!(
        pay(json!({"status": 411})),
        PayAnswer::PaymentError { status: 411, .. }
    ));
    // Codes ATRIP documents for other endpoints, never for pay.do: ATRIP's own client reads
    // them as "outcome unknown" and queries (issue 8, item 9).
    for status in [604, 616, 100, 901, -1, 2, 9999, 12345] {
        assert!(
            matches!(
                pay(json!({"status": status})),
                PayAnswer::OutcomeUnknown { .. }
            ),
            "{status}"
        );
    }
    let accepted = pay(json!({"status": 615, "msg": "x", "pnrCode": "ABC123"}));
    assert!(matches!(accepted, PayAnswer::Accepted { status: 615, .. }));
}

#[test]
fn a_pay_answer_for_another_order_is_an_unknown_outcome() {
    let a = pay(json!({"status": 0, "orderNo": "TESTB20260824171418381"}));
    assert!(
        matches!(&a, PayAnswer::OutcomeUnknown { reason, .. } if reason.contains("another order")),
        "{a:?}"
    );
    assert!(matches!(
        pay(json!({"status": 406, "orderNo": null})),
        PayAnswer::NeverPayAgain { .. }
    ));
}

#[test]
fn the_message_never_decides() {
    // A success message on an error status is an error; an error message on 0 is success.
    assert!(matches!(
        pay(json!({"status": 413, "msg": "success"})),
        PayAnswer::Refused { .. }
    ));
    assert!(matches!(
        pay(json!({"status": 0, "msg": "failed"})),
        PayAnswer::Accepted { .. }
    ));
}

#[test]
fn garbled_pay_answers_are_outcome_unknown() {
    let bodies: [&[u8]; 6] = [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"{\"status\": 0, \"msg\": \"succ",
        b"{\"status\": \"0\"}",
        b"[1,2,3]",
        b"{\"msg\": \"no status\"}",
    ];
    for body in bodies {
        let a = classify_pay("X", 200, body);
        assert!(
            matches!(a, PayAnswer::OutcomeUnknown { status: None, .. }),
            "{a:?}"
        );
    }
    for http in [500, 502, 503, 504, 404, 429] {
        let a = classify_pay("X", http, br#"{"status":0}"#);
        assert!(
            matches!(a, PayAnswer::OutcomeUnknown { .. }),
            "HTTP {http}: {a:?}"
        );
    }
}

fn order(status: Value, tickets: Value) -> Value {
    json!({
        "status": 0, "msg": "success", "orderNo": "TESTA20260824171418381", "pnrCode": "OPLGS4",
        "orderStatus": status, "ticketStatus": if status == json!("2") { "1" } else { "0" },
        "paxTicketInfos": tickets,
    })
}

#[test]
fn order_states_are_read_as_strings_or_integers() {
    for (wire, expect) in [
        (json!("0"), OrderStatus::Unpaid),
        (json!("1"), OrderStatus::Ticketing),
        (json!("2"), OrderStatus::Ticketed),
        (json!("-3"), OrderStatus::Cancelled),
        (json!(-3), OrderStatus::Cancelled),
        (json!("7"), OrderStatus::Unknown("7".into())),
    ] {
        let QueryAnswer::Order(v) = query(order(wire.clone(), json!([]))) else {
            panic!("{wire}")
        };
        assert_eq!(v.order_status, expect);
    }
}

#[test]
fn tickets_are_final_only_when_every_passenger_has_one() {
    let both = json!([
        {"name": "DOE/JANE", "ticketNos": ["S77182"], "airlinePNRs": ["S77182"]},
        {"name": "DOE/JOHN", "ticketNos": ["S77183"], "airlinePNRs": ["S77182"]}
    ]);
    let QueryAnswer::Order(v) = query(order(json!("2"), both)) else {
        panic!()
    };
    assert_eq!(v.final_tickets().unwrap().len(), 2);
    assert_eq!(v.airline_pnr().as_deref(), Some("S77182"));

    let one_missing = json!([
        {"name": "DOE/JANE", "ticketNos": ["S77182"]},
        {"name": "DOE/JOHN", "ticketNos": []}
    ]);
    let QueryAnswer::Order(v) = query(order(json!("2"), one_missing)) else {
        panic!()
    };
    assert!(v.final_tickets().is_none());

    let ticketing = json!([{"name": "DOE/JANE", "ticketNos": ["S77182"]}]);
    let QueryAnswer::Order(v) = query(order(json!("1"), ticketing)) else {
        panic!()
    };
    assert!(v.final_tickets().is_none(), "orderStatus 1 is never final");
}

#[test]
fn query_codes_are_classified() {
    assert!(matches!(
        query(json!({"status": 800})),
        QueryAnswer::NotFound { status: 800, .. }
    ));
    assert!(matches!(
        query(json!({"status": 703})),
        QueryAnswer::NotFound { status: 703, .. }
    ));
    assert!(matches!(
        query(json!({"status": 705})),
        QueryAnswer::Retry { .. }
    ));
    assert!(matches!(
        query(json!({"status": 9999})),
        QueryAnswer::Retry { .. }
    ));
    assert!(matches!(
        query(json!({"status": 900})),
        QueryAnswer::Unauthorized { .. }
    ));
    for other in [701, 702, 704, 400] {
        assert!(
            matches!(query(json!({"status": other})), QueryAnswer::Invalid { .. }),
            "{other}"
        );
    }
    let limited = classify_query("X", 429, br#"{"code":429,"message":"m","retryAfter":3}"#);
    assert_eq!(
        limited,
        QueryAnswer::RateLimited {
            retry_after: Duration::from_secs(3)
        }
    );
    let body_only = classify_query("X", 200, br#"{"code":429,"retryAfter":2}"#);
    assert_eq!(
        body_only,
        QueryAnswer::RateLimited {
            retry_after: Duration::from_secs(2)
        }
    );
    assert!(matches!(
        classify_query("X", 503, b"busy"),
        QueryAnswer::Retry { .. }
    ));
}

#[test]
fn untrustworthy_query_answers_are_invalid_with_a_reason() {
    let cases = [
        (
            json!({"status": 0, "orderNo": "TESTB20260824171418381", "orderStatus": "2"}),
            "another order",
        ),
        (
            json!({"status": 0, "orderNo": "TESTA20260824171418381"}),
            "no orderStatus",
        ),
        (
            json!({"status": 0, "orderNo": "TESTA20260824171418381", "orderStatus": true}),
            "orderStatus",
        ),
        (order(json!("2"), json!({"a": 1})), "not a list"),
        (
            order(json!("2"), json!([{"name": "A/B", "ticketNos": [1]}])),
            "non-string",
        ),
        (
            order(
                json!("2"),
                json!([{"name": "A/B", "ticketNos": ["1", "2", "3"]}]),
            ),
            "at most 2",
        ),
        (
            order(json!("2"), json!([{"ticketNos": ["S1"]}])),
            "no passenger name",
        ),
        (
            order(
                json!("2"),
                json!([{"name": "A/B", "ticketNos": ["<script>"]}]),
            ),
            "malformed",
        ),
    ];
    for (body, expect) in cases {
        match query(body) {
            QueryAnswer::Invalid { reason, .. } => assert!(reason.contains(expect), "{reason}"),
            other => panic!("{expect}: {other:?}"),
        }
    }
    let mut more = order(
        json!("2"),
        json!([{"name": "A/B", "ticketNos": ["S1"]}, {"name": "C/D", "ticketNos": ["S2"]}]),
    );
    more["passengers"] = json!([{"name": "A/B"}]);
    assert!(matches!(query(more), QueryAnswer::Invalid { .. }));
    for body in [
        &b""[..],
        b"<html>oops</html>",
        b"{\"status\":",
        b"\x1f\x8b\x08\x00",
    ] {
        assert!(matches!(
            classify_query("X", 200, body),
            QueryAnswer::Invalid { .. }
        ));
    }
}

#[test]
fn a_ticket_for_someone_who_is_not_a_listed_passenger_is_invalid() {
    let mut stranger = order(
        json!("2"),
        json!([{"name": "SMITH/JOHN", "ticketNos": ["S1"], "airlinePNRs": ["S1"]}]),
    );
    stranger["passengers"] = json!([{"name": "DOE/JANE"}]);
    match query(stranger) {
        QueryAnswer::Invalid { reason, .. } => {
            assert!(
                reason.contains("not among the order's passengers"),
                "{reason}"
            );
            assert!(reason.contains("SMITH/JOHN"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Two entries for one passenger while the other has none: never final.
    let mut twice = order(
        json!("2"),
        json!([{"name": "DOE/JANE", "ticketNos": ["S1"]}, {"name": "DOE/JANE", "ticketNos": ["S2"]}]),
    );
    twice["passengers"] = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN"}]);
    assert!(matches!(query(twice), QueryAnswer::Invalid { .. }));
    // A passenger listed without a name cannot be paired with a ticket.
    let mut nameless = order(
        json!("2"),
        json!([{"name": "DOE/JANE", "ticketNos": ["S1"]}]),
    );
    nameless["passengers"] = json!([{"passengerType": 0}]);
    match query(nameless) {
        QueryAnswer::Invalid { reason, .. } => {
            assert!(reason.contains("passengers[0]"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_listed_passenger_without_a_ticket_entry_keeps_the_tickets_from_being_final() {
    let mut short = order(
        json!("2"),
        json!([{"name": "doe/jane", "ticketNos": ["S1"], "airlinePNRs": ["S1"]}]),
    );
    short["passengers"] = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN"}]);
    let QueryAnswer::Order(v) = query(short) else {
        panic!("a short ticket list is readable, only not final")
    };
    assert_eq!(v.tickets.len(), 2, "{:?}", v.tickets);
    assert_eq!(v.tickets[1].passenger, "DOE/JOHN");
    assert!(v.tickets[1].ticket_numbers.is_empty());
    assert!(v.final_tickets().is_none());
    // Names compare without regard to case, and the full set is final.
    let mut full = order(
        json!("2"),
        json!([{"name": "doe/john", "ticketNos": ["S2"]}, {"name": "Doe/Jane", "ticketNos": ["S1"]}]),
    );
    full["passengers"] = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN"}]);
    let QueryAnswer::Order(v) = query(full) else {
        panic!()
    };
    assert_eq!(v.final_tickets().map(Vec::len), Some(2));
}
