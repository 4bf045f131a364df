//! What ATRIP (or a proxy before it) can answer that the worker must not believe: bodies that
//! are empty, HTML, cut, of the wrong types, about another order or another passenger. Each is
//! recorded on its order (`last_error`, `error_streak`), never makes an order `ticketed`, never
//! fails an order whose payment outcome is unknown, and never leads to a second `pay.do`; the
//! good order next to it is ticketed.

use serde_json::{json, Value};
use ticketing_tracker::domain::State;

use super::rogue::{order_answer, pay_accepted, ticketed, Call, Reply, PASSENGER, TICKET};
use super::world::{World, BAD, CARD_DIGITS};

/// `vcc_card()`'s number.
const CARD_NUMBER: &str = "4532015112830366";
use crate::support::app::vcc_card;

const HTML_ERROR_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
                               <body><h1>502 Bad Gateway</h1><hr>nginx</body></html>";

fn html(http: u16) -> Reply {
    Reply::raw(http, HTML_ERROR_PAGE).with_header("content-type", "text/html")
}

/// The well-formed ticketed answer for `BAD`, with `edit` applied.
fn ticketed_but(edit: impl FnOnce(&mut Value)) -> Reply {
    let mut body = ticketed(BAD);
    edit(&mut body);
    Reply::json(body)
}

/// `pay.do` answers `reply`; the order query then shows the order paid and ticketed.
/// The outcome was unknown, so the row stays `paying` (card kept) and the next request is
/// the order query, never a second `pay.do`; the query moves it on.
async fn unknown_pay_outcome_settled_by_the_query(reply: Reply, says: &[&str]) {
    let w = World::new().await;
    w.rogue.on_pay(BAD, vec![reply]);
    w.enqueue(BAD, 3, Some(vcc_card())).await;
    w.enqueue_good(3).await;

    let round = w.step().await;
    let bad = round.outcomes.iter().find(|o| o.order_no == BAD).unwrap();
    assert_eq!(
        (bad.to, bad.pay_sent),
        (Some(State::Paying), true),
        "{}",
        bad.note
    );
    let mut says = says.to_vec();
    says.push("outcome of pay.do unknown");
    let row = w.bad_row_saying(&says).await;
    assert_eq!(row.error_streak, 1, "the unclear answer is counted");
    assert!(row.card_plain, "card kept while the outcome is unknown");
    assert!(
        row.paid_at.is_none(),
        "not paid on the strength of a bad answer"
    );

    w.settle().await;
    let row = w.job(BAD).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!((row.pay_attempts, row.error_streak), (1, 0));
    assert!(!row.card_plain, "card erased once the payment resolved");
    let calls = w.rogue.calls(BAD);
    assert_eq!(calls[..2], [Call::Pay, Call::Query], "query first");
    assert_eq!(w.rogue.pays(BAD), 1, "a second pay.do: {calls:?}");
    assert!(!w.app.event_states(BAD).await.contains(&"failed".to_owned()));
    w.assert_good_ticketed().await;
}

/// Stamps one test per bad `pay.do` answer: `name: reply => [phrases of last_error]`.
macro_rules! unknown_pay_outcome {
    ($($name:ident: $reply:expr => [$($says:literal),+];)+) => {$(
        #[tokio::test]
        async fn $name() {
            unknown_pay_outcome_settled_by_the_query($reply, &[$($says),+]).await;
        }
    )+};
}

unknown_pay_outcome! {
    an_empty_pay_answer_is_an_unknown_outcome_settled_by_the_query:
        Reply::raw(200, "") => ["empty"];
    an_html_error_page_from_pay_is_an_unknown_outcome_settled_by_the_query:
        html(200) => ["HTML"];
    an_http_502_from_pay_is_an_unknown_outcome_settled_by_the_query:
        html(502) => ["HTTP 502"];
    a_pay_answer_cut_mid_json_is_an_unknown_outcome_settled_by_the_query:
        Reply::raw(200, r#"{"status": 0, "msg": "succ"#) => ["not a JSON object"];
    a_pay_status_sent_as_a_string_is_an_unknown_outcome_settled_by_the_query:
        Reply::json(json!({"status": "0", "msg": "success", "orderNo": BAD}))
        => ["no integer status"];
    a_truncated_gzip_pay_answer_is_an_unknown_outcome_settled_by_the_query:
        Reply::truncated_gzip(pay_accepted(BAD)) => ["could not be decoded"];
    an_unknown_pay_status_is_an_unknown_outcome_settled_by_the_query:
        Reply::json(json!({"status": 12345, "msg": "new in 2027", "orderNo": BAD}))
        => ["status 12345"];
    a_pay_status_9999_is_an_unknown_outcome_settled_by_the_query:
        Reply::json(json!({"status": 9999, "msg": "System error", "orderNo": BAD}))
        => ["status 9999"];
}

/// `pay.do` is accepted; every order query then answers `reply`. Three unclear answers in a
/// row send the paid order to review; it is never ticketed, never paid twice.
async fn garbled_query_sends_the_paid_order_to_review(reply: Reply, says: &[&str]) {
    let w = World::new().await;
    w.rogue.on_query(BAD, vec![reply]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;

    w.settle().await;
    let mut says = says.to_vec();
    says.push("3 unclear answers in a row");
    w.assert_reviewed_after_three_unclear_answers(&says).await;
    let row = w.job(BAD).await;
    assert!(row.paid_at.is_some(), "paid: pay.do said so");
    // Another agency order's number never reaches our record (ATRIP's client tests this).
    assert!(
        !format!("{:?}", row.last_error).contains("OTHERORDER"),
        "{:?}",
        row.last_error
    );
    assert_eq!(w.rogue.queries(BAD), 3, "{:?}", w.rogue.calls(BAD));
    assert!(!w
        .app
        .event_states(BAD)
        .await
        .contains(&"ticketed".to_owned()));
    w.assert_good_ticketed().await;
}

/// Stamps one test per bad query answer: `name: reply => [phrases of last_error]`.
macro_rules! garbled_query {
    ($($name:ident: $reply:expr => [$($says:literal),+];)+) => {$(
        #[tokio::test]
        async fn $name() {
            garbled_query_sends_the_paid_order_to_review($reply, &[$($says),+]).await;
        }
    )+};
}

garbled_query! {
    empty_query_answers_send_a_paid_order_to_review:
        Reply::raw(200, "") => ["order query failed", "empty"];
    html_error_pages_on_the_query_send_a_paid_order_to_review:
        html(200) => ["order query failed", "HTML"];
    an_http_404_page_on_the_query_sends_a_paid_order_to_review:
        html(404) => ["order query failed", "HTTP 404"];
    a_json_array_on_the_query_sends_a_paid_order_to_review:
        Reply::json(json!([ticketed(BAD)])) => ["order query failed", "not a JSON object"];
    a_query_status_sent_as_a_string_sends_a_paid_order_to_review:
        ticketed_but(|b| b["status"] = json!("0")) => ["order query failed", "no integer status"];
    an_order_status_sent_as_an_object_sends_a_paid_order_to_review:
        ticketed_but(|b| b["orderStatus"] = json!({"code": "2"}))
        => ["order query failed", "orderStatus is neither a string nor an integer"];
    ticket_numbers_that_are_not_a_list_send_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"][0]["ticketNos"] = json!(TICKET))
        => ["order query failed", "paxTicketInfos[0].ticketNos is not a list"];
    a_ticket_list_that_is_not_a_list_sends_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"] = json!({"DOE/JANE": [TICKET]}))
        => ["order query failed", "paxTicketInfos is not a list"];
    a_markup_ticket_number_sends_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"][0]["ticketNos"] = json!(["<b>S12345</b>"]))
        => ["order query failed", "malformed value"];
    three_ticket_numbers_for_one_passenger_send_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"][0]["ticketNos"] = json!(["S1", "S2", "S3"]))
        => ["order query failed", "at most 2 per passenger"];
    more_ticket_entries_than_passengers_send_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"] = json!([
            {"name": PASSENGER, "ticketNos": [TICKET]},
            {"name": "DOE/JOHN", "ticketNos": ["S12346"]},
        ]))
        => ["order query failed", "paxTicketInfos has 2 entries for 1 passengers"];
    a_ticket_for_someone_who_is_not_a_passenger_sends_a_paid_order_to_review:
        ticketed_but(|b| b["paxTicketInfos"][0]["name"] = json!("SMITH/JOHN"))
        => ["order query failed", "\"SMITH/JOHN\"", "not among the order's passengers"];
    a_ticketed_answer_for_another_order_sends_a_paid_order_to_review:
        Reply::json(ticketed("OTHERORDER2026112500009"))
        => ["order query failed", "another order", "its number is not kept"];
    a_truncated_gzip_query_answer_sends_a_paid_order_to_review:
        Reply::truncated_gzip(ticketed(BAD)) => ["order query failed", "could not be decoded"];
    a_query_stuck_on_status_9999_sends_a_paid_order_to_review:
        Reply::json(json!({"status": 9999, "msg": "System error"}))
        => ["order query failed", "status 9999"];
    an_unknown_order_status_sends_a_paid_order_to_review:
        Reply::json(order_answer(BAD, json!("7"), json!([])))
        => ["unknown orderStatus \"7\""];
}

#[tokio::test]
async fn a_status_9999_on_the_query_is_retried_and_the_order_ticketed_once_atrip_recovers() {
    let w = World::new().await;
    let busy = Reply::json(json!({"status": 9999, "msg": "System error"}));
    let fine = Reply::json(ticketed(BAD));
    w.rogue.on_query(BAD, vec![busy.clone(), busy, fine]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;

    w.settle().await;
    let row = w.job(BAD).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(row.error_streak, 0, "a clear answer resets the streak");
    assert_eq!(w.rogue.queries(BAD), 4, "two retried, two agreeing");
    assert_eq!(w.rogue.pays(BAD), 1);
    let retried: Vec<String> = w
        .app
        .store
        .events(BAD)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail["answer"] == "retry")
        .map(|e| e.detail["reason"].to_string())
        .collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(
        retried.iter().all(|r| r.contains("status 9999")),
        "{retried:?}"
    );
    w.assert_good_ticketed().await;
}

#[tokio::test]
async fn a_paid_order_that_atrip_says_does_not_exist_goes_to_review_not_to_failed() {
    let w = World::new().await;
    w.rogue.on_query(
        BAD,
        vec![Reply::json(
            json!({"status": 800, "msg": "Order does not exist"}),
        )],
    );
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;

    w.settle().await;
    // One 800 proves nothing about a paid order (it may lag): asked again, a person after
    // the streak.
    let row = w
        .bad_row_saying(&["3 unclear answers in a row", "800", "no such order"])
        .await;
    assert_eq!(row.state, "needs_review");
    assert!(row.paid_at.is_some() && row.ticket_numbers.is_none());
    assert_eq!(row.atrip_status, Some(800));
    assert_eq!(
        w.rogue.calls(BAD),
        [Call::Pay, Call::Query, Call::Query, Call::Query]
    );
    w.assert_good_ticketed().await;
}

/// Rule P5e: "order does not exist" while the payment outcome is unknown may be ATRIP
/// lagging behind a payment it took: it never fails the order, and never leads to a second
/// pay.do.
#[tokio::test]
async fn an_order_that_atrip_says_does_not_exist_after_a_garbled_pay_answer_goes_to_review_never_to_failed(
) {
    let w = World::new().await;
    w.rogue.on_pay(BAD, vec![Reply::raw(200, "")]);
    w.rogue.on_query(
        BAD,
        vec![Reply::json(
            json!({"status": 800, "msg": "Order does not exist"}),
        )],
    );
    w.enqueue(BAD, 3, Some(vcc_card())).await;
    w.enqueue_good(3).await;

    w.settle().await;
    let row = w
        .bad_row_saying(&["3 unclear answers in a row", "800", "no such order"])
        .await;
    assert_eq!(row.state, "needs_review");
    assert!(row.paid_at.is_none());
    assert!(
        !row.card_plain,
        "card erased: a pay.do may have reached ATRIP and a person has the order now"
    );
    assert_eq!(
        w.rogue.calls(BAD),
        [Call::Pay, Call::Query, Call::Query],
        "no second pay.do"
    );
    let states = w.app.event_states(BAD).await;
    assert!(!states.contains(&"failed".to_owned()), "{states:?}");
    w.assert_good_ticketed().await;
}

#[tokio::test]
async fn a_garbled_pay_answer_followed_by_garbled_queries_goes_to_review_never_to_failed() {
    let w = World::new().await;
    w.rogue
        .on_pay(BAD, vec![Reply::raw(200, r#"{"status": 0, "ms"#)]);
    w.rogue.on_query(BAD, vec![html(200)]);
    w.enqueue(BAD, 3, Some(vcc_card())).await;
    w.enqueue_good(3).await;

    w.settle().await;
    let row = w
        .bad_row_saying(&["3 unclear answers in a row", "HTML"])
        .await;
    assert_eq!(row.state, "needs_review");
    assert_eq!(
        row.error_streak, 3,
        "one garbled pay answer, two garbled queries"
    );
    assert!(row.paid_at.is_none());
    assert_eq!(
        w.rogue.calls(BAD),
        [Call::Pay, Call::Query, Call::Query],
        "never a second pay.do while the outcome is unknown"
    );
    assert!(!w.app.event_states(BAD).await.contains(&"failed".to_owned()));
    w.assert_good_ticketed().await;
}

/// Every query shows the order ticketed but not every passenger with a ticket: the worker
/// follows it (the answer is clear, only not final) until the ticketing deadline, then
/// hands it to a person.
async fn followed_until_the_ticketing_deadline(answer: Value) {
    let w = World::tuned(|s| s.worker.ticketing_deadline_s = 3).await;
    w.rogue.on_query(BAD, vec![Reply::json(answer)]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;

    w.settle().await;
    let row = w
        .bad_row_saying(&[
            "not ticketed by",
            "ticketing deadline",
            "last orderStatus 2",
        ])
        .await;
    assert_eq!(row.state, "needs_review");
    assert!(row.ticket_numbers.is_none() && row.ticketed_at.is_none());
    assert_eq!(row.error_streak, 0, "clear answers, only never final");
    assert!(w.rogue.queries(BAD) >= 3, "{:?}", w.rogue.calls(BAD));
    assert_eq!(w.rogue.pays(BAD), 1);
    assert_eq!(row.order_status.as_deref(), Some("2"));
    w.assert_good_ticketed().await;
}

#[tokio::test]
async fn a_ticketed_answer_without_ticket_numbers_is_followed_to_review_at_the_deadline() {
    followed_until_the_ticketing_deadline(order_answer(
        BAD,
        json!("2"),
        json!([{"name": PASSENGER, "ticketNos": [], "airlinePNRs": []}]),
    ))
    .await;
}

#[tokio::test]
async fn a_ticketed_answer_missing_a_listed_passenger_is_followed_to_review_at_the_deadline() {
    let mut answer = ticketed(BAD);
    answer["passengers"] = json!([{"name": PASSENGER}, {"name": "DOE/JOHN"}]);
    followed_until_the_ticketing_deadline(answer).await;
}

/// The row, its events and its last error hold no digits of the card beyond its last four.
async fn assert_card_number_masked(w: &World) {
    let row = w.job(BAD).await;
    let events = serde_json::to_string(&w.app.store.events(BAD).await.unwrap()).unwrap();
    let held = format!("{:?} {:?} {events}", row.atrip_message, row.last_error);
    assert!(
        !held.contains(CARD_DIGITS),
        "the card number is kept: {held}"
    );
    assert!(
        held.contains("0366"),
        "its last four say which card: {held}"
    );
}

/// ATRIP's words are kept and logged (`atrip_message`, `last_error`, the events): a card
/// number a refusal's `msg` echoes is masked to its last four digits.
#[tokio::test]
async fn a_card_number_echoed_in_a_refusal_is_masked_in_the_row_and_its_events() {
    let w = World::new().await;
    w.rogue.on_pay(
        BAD,
        vec![Reply::json(json!({
            "status": 413, "orderNo": BAD,
            "msg": format!("card {CARD_NUMBER} is not supported for this order")
        }))],
    );
    w.enqueue(BAD, 3, Some(vcc_card())).await;
    w.enqueue_good(3).await;
    w.settle().await;
    assert_eq!(w.job(BAD).await.state, "failed");
    assert_card_number_masked(&w).await;
    w.assert_good_ticketed().await;
}

/// The same for a body that is not JSON and starts with the card number: the reason quotes
/// the body's start, masked.
#[tokio::test]
async fn a_card_number_at_the_start_of_a_garbled_pay_answer_is_masked() {
    let w = World::new().await;
    w.rogue.on_pay(
        BAD,
        vec![Reply::raw(
            200,
            format!("{CARD_NUMBER} declined by the gateway"),
        )],
    );
    w.enqueue(BAD, 3, Some(vcc_card())).await;
    w.enqueue_good(3).await;
    w.step().await;
    assert_eq!(w.job(BAD).await.state, "paying", "outcome unknown");
    assert_card_number_masked(&w).await;
    w.settle().await;
    w.assert_good_ticketed().await;
}

/// A NUL character (`\u0000`) in ATRIP's strings, which PostgreSQL's text refuses: dropped, so
/// the order's writes land and it is followed to `ticketed` as usual.
#[tokio::test]
async fn nul_characters_in_atrip_strings_are_dropped_and_the_order_is_ticketed() {
    let w = World::new().await;
    let mut accepted = pay_accepted(BAD);
    accepted["msg"] = json!("succ\u{0}ess");
    accepted["pnrCode"] = json!("OPL\u{0}GS4");
    w.rogue.on_pay(BAD, vec![Reply::json(accepted)]);
    // Every answer carries one: a write that failed on it would fail again on each recovery.
    let mut answer = ticketed(BAD);
    answer["msg"] = json!("ok\u{0}");
    w.rogue.on_query(BAD, vec![Reply::json(answer)]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;
    w.settle().await;
    let row = w.job(BAD).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(row.atrip_message.as_deref(), Some("ok"));
    assert_eq!(row.atrip_pnr.as_deref(), Some("OPLGS4"));
    assert_eq!(w.rogue.pays(BAD), 1);
    w.assert_good_ticketed().await;
}
