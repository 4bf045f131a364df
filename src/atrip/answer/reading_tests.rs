//! Every documented status code and the garbled bodies ATRIP (or a proxy) can send.

use super::*;
use crate::atrip::codes::PAY_CODES;
use serde_json::json;

/// A pay.do answer as ATRIP sends it: naming the order unless the body says otherwise.
fn pay(mut body: Value) -> PayAnswer {
    if let Some(m) = body.as_object_mut() {
        m.entry("orderNo")
            .or_insert_with(|| json!("TESTA20260824171418381"));
    }
    classify_pay("TESTA20260824171418381", 200, body.to_string().as_bytes())
}

#[test]
fn an_acceptance_that_does_not_name_the_order_is_no_evidence_of_payment() {
    for status in [0, 615] {
        for body in [
            json!({"status": status, "msg": "success"}),
            json!({"status": status, "msg": "success", "orderNo": null}),
        ] {
            let a = classify_pay("TESTA20260824171418381", 200, body.to_string().as_bytes());
            assert!(
                matches!(a, PayAnswer::OutcomeUnknown { status: Some(s), .. } if s == status),
                "{body}: {a:?}"
            );
        }
        assert!(matches!(
            pay(json!({"status": status})),
            PayAnswer::Accepted { .. }
        ));
    }
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
    // them as "outcome unknown" and queries (rule P4h).
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
    // That order's number is another booking's reference: never kept (it would reach
    // last_error), as ATRIP's own client tests.
    assert!(!format!("{a:?}").contains("TESTB"), "{a:?}");
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
    let (tickets, pnr) = v.final_tickets(None).unwrap();
    assert_eq!(tickets.len(), 2);
    assert_eq!(pnr, "S77182");

    let one_missing = json!([
        {"name": "DOE/JANE", "ticketNos": ["S77182"]},
        {"name": "DOE/JOHN", "ticketNos": []}
    ]);
    let QueryAnswer::Order(v) = query(order(json!("2"), one_missing)) else {
        panic!()
    };
    assert!(v.final_tickets(None).is_none());

    let ticketing = json!([{"name": "DOE/JANE", "ticketNos": ["S77182"]}]);
    let QueryAnswer::Order(v) = query(order(json!("1"), ticketing)) else {
        panic!()
    };
    assert!(
        v.final_tickets(None).is_none(),
        "orderStatus 1 is never final"
    );
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
            order(
                json!("2"),
                json!([{"name": "A/B", "ticketNos": ["<script>"]}]),
            ),
            "malformed",
        ),
    ];
    for (body, expect) in cases {
        match query(body) {
            QueryAnswer::Invalid { reason, .. } => {
                assert!(reason.contains(expect), "{reason}");
                assert!(
                    !reason.contains("TESTB"),
                    "another order's number kept: {reason}"
                );
            }
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
    // A passenger listed without a name pairs with an entry by position.
    let mut nameless = order(
        json!("2"),
        json!([{"name": "DOE/JANE", "ticketNos": ["S1"], "airlinePNRs": ["P1"]}]),
    );
    nameless["passengers"] = json!([{"passengerType": 0}]);
    let QueryAnswer::Order(v) = query(nameless) else {
        panic!("a passenger listed without a name is not a reason to distrust the answer")
    };
    assert!(v.final_tickets(None).is_some(), "{v:?}");
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
    assert!(v.final_tickets(None).is_none());
    // Names compare without regard to case, and the full set is final.
    let mut full = order(
        json!("2"),
        json!([{"name": "doe/john", "ticketNos": ["S2"], "airlinePNRs": ["P1"]},
               {"name": "Doe/Jane", "ticketNos": ["S1"], "airlinePNRs": ["P1"]}]),
    );
    full["passengers"] = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN"}]);
    let QueryAnswer::Order(v) = query(full) else {
        panic!()
    };
    assert_eq!(v.final_tickets(None).map(|(t, _)| t.len()), Some(2));
}

/// An answer body from ATRIP's own client or documentation (tests/fixtures/atrip/README.md).
fn fixture(name: &str) -> (String, Value) {
    let path = format!("{}/tests/fixtures/atrip/{name}", env!("CARGO_MANIFEST_DIR"));
    let body: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let order_no = body["orderNo"].as_str().unwrap().to_owned();
    (order_no, body)
}

fn fixture_view(name: &str) -> OrderView {
    let (order_no, body) = fixture(name);
    match classify_query(&order_no, 200, body.to_string().as_bytes()) {
        QueryAnswer::Order(v) => v,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_ticketed_answer_whose_entries_carry_no_name_is_final_as_atrips_own_client_reads_it() {
    // Rule F1: ATRIP's client fixture has no `name` and no `passengers` array.
    let v = fixture_view("query_ticketed_no_name.json");
    let (tickets, pnr) = v.final_tickets(None).expect("ticketed");
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].passenger, "passenger 1");
    assert_eq!(tickets[0].ticket_numbers, ["7811234567890"]);
    assert_eq!(pnr, "PNR001");
}

#[test]
fn ticket_numbers_differing_only_by_whitespace_are_one_ticket() {
    // Rule F1: one ticket, however ATRIP pads its number.
    let v = fixture_view("query_ticketed_whitespace_duplicate.json");
    let (tickets, _) = v.final_tickets(None).expect("ticketed");
    assert_eq!(tickets[0].ticket_numbers, ["7811234567890"]);
    let mut pnrs = order(
        json!("2"),
        json!([{"name": "A/B", "ticketNos": [" S1", "S1 ", "S2"], "airlinePNRs": ["P1", " P1"]}]),
    );
    pnrs["pnrCode"] = Value::Null;
    let QueryAnswer::Order(v) = query(pnrs) else {
        panic!()
    };
    assert_eq!(v.tickets[0].ticket_numbers, ["S1", "S2"]);
    assert_eq!(v.tickets[0].airline_pnrs, ["P1"]);
}

#[test]
fn atrips_documented_samples_read_as_final_tickets() {
    for (name, tickets) in [
        ("docs_query_ticketed.json", vec!["S77182"]),
        ("docs_query_ticketed_separate_bookings.json", vec![]),
        ("query_ticketed_with_name.json", vec!["7811234567890"]),
        ("query_ticketed_two_tickets_one_entry.json", vec![]),
    ] {
        let v = fixture_view(name);
        let (set, pnr) = v
            .final_tickets(None)
            .unwrap_or_else(|| panic!("{name}: {v:?}"));
        assert!(!pnr.is_empty(), "{name}");
        if !tickets.is_empty() {
            assert_eq!(set[0].ticket_numbers, tickets, "{name}");
        }
        if name.starts_with("docs_") {
            assert!(v.pay_deadline.is_some(), "{name}: tktLimitTime");
        }
    }
    assert_eq!(
        fixture_view("query_ticketing_in_process.json").order_status,
        OrderStatus::Ticketing
    );
    assert_eq!(
        fixture_view("query_unpaid.json").order_status,
        OrderStatus::Unpaid
    );
    let cancelled = fixture_view("query_cancelled_no_errorcode.json");
    assert_eq!(cancelled.order_status, OrderStatus::Cancelled);
    assert_eq!(cancelled.error_code, None);
}

#[test]
fn tickets_without_any_airline_pnr_are_not_final_whatever_pnrcode_says() {
    // Rule F4: ticket numbers but no airline PNR (per passenger or per booking) are not final,
    // and ATRIP's own booking reference is no airline PNR (ATRIP's FAQ: "Is pnrCode the airline
    // PNR? No."): it is kept as `atrip_pnr` only.
    let mut body = order(json!("2"), json!([{"name": "A/B", "ticketNos": ["S1"]}]));
    for pnr_code in [Value::Null, json!("OPLGS4")] {
        body["pnrCode"] = pnr_code.clone();
        let QueryAnswer::Order(v) = query(body.clone()) else {
            panic!()
        };
        assert!(v.tickets_complete(None));
        assert_eq!(v.pnr(), None, "pnrCode {pnr_code}");
        assert!(v.final_tickets(None).is_none(), "{v:?}");
    }
    body["airlineBookings"] = json!([{"airlineCode": "5J", "airlinePnr": "ABC123"}]);
    let QueryAnswer::Order(v) = query(body) else {
        panic!()
    };
    assert_eq!(v.pnr_code.as_deref(), Some("OPLGS4"));
    assert_eq!(
        v.final_tickets(None).map(|(_, pnr)| pnr),
        Some("ABC123".into())
    );
}

#[test]
fn an_answer_listing_fewer_passengers_than_the_order_holds_is_not_final() {
    // Rule F1b: two passengers booked; the answer lists one, ticketed.
    let body = order(
        json!("2"),
        json!([{"name": "A/B", "ticketNos": ["S1"], "airlinePNRs": ["P1"]}]),
    );
    let QueryAnswer::Order(v) = query(body) else {
        panic!()
    };
    assert!(v.final_tickets(None).is_some(), "one listed, one known");
    assert!(v.final_tickets(Some(1)).is_some());
    assert!(v.final_tickets(Some(2)).is_none(), "{v:?}");
    assert!(!v.tickets_complete(Some(2)));
}

#[test]
fn the_payment_deadline_is_read_from_singapore_time() {
    let mut body = order(json!("0"), json!([]));
    body["tktLimitTime"] = json!("2026-08-24 18:34:18");
    body["paymentAttempted"] = json!(true);
    let QueryAnswer::Order(v) = query(body) else {
        panic!()
    };
    assert_eq!(
        v.pay_deadline.unwrap().to_rfc3339(),
        "2026-08-24T10:34:18+00:00"
    );
    assert_eq!(v.payment_attempted, Some(true));
}

#[test]
fn card_data_and_terminal_controls_echoed_by_atrip_never_reach_a_column() {
    let echo = "declined card 4532015112830366 cvv 987 raw={\"creditCard\":{\"cardNumber\":\"4532015112830366\",\"cardCVV\":\"987\"}} \u{1b}[2J\r\nORDER OK\u{202e}";
    let PayAnswer::Refused { msg: Some(msg), .. } = pay(json!({"status": 413, "msg": echo})) else {
        panic!("a 413 is a refusal");
    };
    assert!(
        !msg.contains("4532015112830366") && !msg.contains("987"),
        "{msg}"
    );
    assert!(
        !msg.contains('\u{1b}') && !msg.contains('\r') && !msg.contains('\u{202e}'),
        "{msg}"
    );
    let QueryAnswer::Order(view) = query(json!({
        "status": 0, "orderNo": "TESTA20260824171418381", "orderStatus": "-3",
        "errorCode": "604", "errorMessage": "card 4532.0151.1283.0366 CVV 987 declined"
    })) else {
        panic!("a readable order");
    };
    let said = view.error_message.unwrap();
    assert!(!said.contains("4532") && !said.contains("987"), "{said}");
}
