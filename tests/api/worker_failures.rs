//! Every way ATRIP refuses a payment or fails an order ends in the state docs/design.md prescribes,
//! and none of them leads the worker to send a second `pay.do`.

use std::time::Duration;

use atrip_simulator::SimConfig;
use serde_json::{json, Value};
use ticketing_tracker::atrip::PayAnswer;
use ticketing_tracker::domain::State;

use crate::support::app::{mor_card, vcc_card, wait_until, TestApp};

/// One definitive refusal: how to provoke it, and the code it must end with.
struct Refusal {
    case: &'static str,
    code: i32,
    method: i16,
    card: Value,
    order: Value,
    scenario: Option<Value>,
}

#[tokio::test]
async fn each_definitive_pay_refusal_fails_the_order_with_its_code_and_erases_the_card() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let refusals = [
        Refusal {
            case: "invalid request data",
            code: 400,
            method: 3,
            card: vcc_card(),
            order: json!({}),
            scenario: Some(json!({"pay_status": 400})),
        },
        Refusal {
            case: "past the payment deadline",
            code: 401,
            method: 3,
            card: vcc_card(),
            order: json!({"paymentDeadlineSeconds": -60}),
            scenario: None,
        },
        Refusal {
            case: "payment method not supported",
            code: 403,
            method: 3,
            card: vcc_card(),
            order: json!({"supportPaymentMethods": [1]}),
            scenario: None,
        },
        Refusal {
            case: "passenger data missing",
            code: 407,
            method: 3,
            card: vcc_card(),
            order: json!({"missingPassengerData": true}),
            scenario: None,
        },
        Refusal {
            case: "card brand not supported",
            code: 413,
            method: 3,
            card: vcc_card(),
            order: json!({"acceptedCardBrands": ["MasterCard"]}),
            scenario: None,
        },
        Refusal {
            case: "card does not match the order's card type",
            code: 414,
            method: 5,
            card: mor_card(),
            order: json!({"payment": {"cardType": "MasterCard"}}),
            scenario: None,
        },
        Refusal {
            case: "FR flow order never confirmed",
            code: 415,
            method: 3,
            card: vcc_card(),
            order: json!({"frFlow": true}),
            scenario: None,
        },
    ];
    let mut orders = Vec::new();
    for r in &refusals {
        let order_no = app.create_order(r.order.clone()).await;
        if let Some(s) = &r.scenario {
            app.scenario(&order_no, s.clone()).await;
        }
        app.enqueue(&order_no, r.method, Some(r.card.clone())).await;
        orders.push(order_no);
    }

    app.settle(&worker, 20).await;
    // Hours later, nothing is due: a definitive refusal is never retried automatically.
    app.advance(Duration::from_secs(6 * 3600)).await;
    assert_eq!(worker.step().await.unwrap().claimed, 0);

    for (r, order_no) in refusals.iter().zip(&orders) {
        let case = r.case;
        let row = app.job(order_no).await;
        assert_eq!(row.state, "failed", "{case}: {:?}", row.last_error);
        assert_eq!(row.atrip_status, Some(r.code), "{case}");
        let error = row.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(order_no.as_str()) && error.contains(&format!("status {}", r.code)),
            "{case}: last_error must name the order and the code: {error}"
        );
        assert!(!row.card_plain, "{case}: card data erased");
        let number = r.card["cardNumber"].as_str().unwrap();
        assert_eq!(row.card_brand.as_deref(), Some("Visa"), "{case}");
        assert_eq!(row.card_last4.as_deref(), Some(&number[12..]), "{case}");
        assert!(!error.contains(number), "{case}: the card number leaked");
        assert_eq!((row.pay_attempts, row.lease_owner), (1, None), "{case}");
        let ledger = app.ledger(order_no);
        assert_eq!(ledger["pay_requests"], 1, "{case}: {ledger}");
        assert_eq!(ledger["charges"], 0, "{case}: {ledger}");
        let states = app.event_states(order_no).await;
        assert_eq!(states, ["paying", "failed"], "{case}");
    }
}

/// An order paid before the worker got to it: pay.do answers `repay_status` (ATRIP's sources
/// disagree between 404 "already paid" and 402 "status does not support payment").
async fn an_order_paid_elsewhere_is_followed_to_ticketed_without_paying_again(repay_status: i32) {
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::from_millis(200),
        repay_status: i64::from(repay_status),
        ..SimConfig::default()
    })
    .await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    let direct = app.pay_directly(&order_no).await;
    assert!(
        matches!(direct, PayAnswer::Accepted { status: 0, .. }),
        "{direct:?}"
    );
    app.enqueue(&order_no, 3, Some(vcc_card())).await;

    let round = worker.step().await.unwrap();
    let outcome = &round.outcomes[0];
    assert!(outcome.pay_sent);
    let row = app.job(&order_no).await;
    if repay_status == 404 {
        // "Already paid" is evidence of payment: followed at once, card erased.
        assert_eq!(outcome.to, Some(State::Ticketing), "{}", outcome.note);
        assert_eq!(row.paid_evidence.as_deref(), Some("already_paid"));
        assert!(!row.card_plain);
    } else {
        // "Not payable" is not: the order query decides.
        assert_eq!(outcome.to, Some(State::Paying), "{}", outcome.note);
        assert!(row.card_plain, "the payment is not resolved yet");
    }
    assert_eq!(row.atrip_status, Some(repay_status));

    app.settle(&worker, 200).await;
    // The direct payment and the worker's single attempt; one charge.
    let row = app.assert_ticketed_once(&order_no, 2).await;
    assert!(!row.card_plain && row.card_last4.as_deref() == Some("0366"));
    assert_eq!(row.pay_attempts, 1);
}

#[tokio::test]
async fn an_order_already_paid_elsewhere_answers_404_and_is_followed_to_ticketed_without_paying_again(
) {
    an_order_paid_elsewhere_is_followed_to_ticketed_without_paying_again(404).await;
}

#[tokio::test]
async fn an_order_already_paid_elsewhere_answers_402_and_is_followed_to_ticketed_without_paying_again(
) {
    an_order_paid_elsewhere_is_followed_to_ticketed_without_paying_again(402).await;
}

#[tokio::test]
async fn a_payment_in_progress_406_is_never_paid_again_even_while_the_query_still_shows_unpaid() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    // Someone else's payment is running for the next 3 s (real time); meanwhile the order
    // query shows "0", as the sandbox does.
    app.scenario(&order_no, json!({"payment_in_progress_ms": 3000}))
        .await;
    assert!(matches!(
        app.pay_directly(&order_no).await,
        PayAnswer::Accepted { .. }
    ));
    app.enqueue(&order_no, 1, None).await;

    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent);
    assert_eq!(app.job(&order_no).await.atrip_status, Some(406));

    // Inside the window the query says "0"; after a 406 the worker never pays again, it waits
    // for the query to show the payment.
    app.advance(app.settings.worker.recovery_delay() + Duration::from_millis(50))
        .await;
    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let outcome = &round.outcomes[0];
    assert!(!outcome.pay_sent, "{}", outcome.note);
    assert_eq!(outcome.to, Some(State::Paying), "{}", outcome.note);
    let row = app.job(&order_no).await;
    assert_eq!(
        row.order_status.as_deref(),
        Some("0"),
        "the query showed unpaid"
    );
    assert_eq!(app.pay_requests(&order_no), 2);

    wait_until(
        Duration::from_secs(10),
        "the payment window to close",
        || {
            let status = app.ledger(&order_no)["order_status"].clone();
            async move { status != "0" }
        },
    )
    .await;
    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 2).await;
    assert_eq!(row.pay_attempts, 1);
}

#[tokio::test]
async fn an_order_that_answered_406_and_stays_unpaid_goes_to_review_without_a_second_pay() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.unpaid_settle_s = 3;
    let worker = app.worker_with(&settings, "review-worker");
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // ATRIP says a payment is running, but none ever completes: the query shows "0" forever.
    app.scenario(&order_no, json!({"pay_status": 406})).await;

    app.settle(&worker, 200).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no)
            && error.contains("will not pay again")
            && error.contains("retry --repay"),
        "last_error must name the order and say what to do: {error}"
    );
    assert_eq!(row.last_pay_outcome.as_deref(), Some("never_pay_again"));
    let events = app.store.events(&order_no).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "pay_answered" && e.detail["status"] == 406),
        "the 406 is in the history: {events:?}"
    );
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["pay_requests"], 1, "{ledger}");
    assert_eq!(ledger["charges"], 0, "{ledger}");
    assert_eq!(row.pay_attempts, 1);
}

#[tokio::test]
async fn a_ticketing_failure_fails_the_paid_order_with_atrips_error_code() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"fail_ticketing": "605"}))
        .await;
    app.enqueue(&order_no, 1, None).await;

    app.settle(&worker, 200).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "failed", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("errorCode 605"),
        "{error}"
    );
    assert_eq!(row.order_status.as_deref(), Some("-3"));
    assert!(row.paid_at.is_some() && row.ticket_numbers.is_none());
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["pay_requests"], 1, "{ledger}");
    assert_eq!(ledger["charges"], 1, "{ledger}");
}

#[tokio::test]
async fn a_ticketing_that_outlasts_the_ticketing_deadline_goes_to_review() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.ticketing_deadline_s = 1;
    let worker = app.worker_with(&settings, "deadline-worker");
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"ticketing_delay_ms": 600_000}))
        .await;
    app.enqueue(&order_no, 1, None).await;

    app.settle(&worker, 200).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("ticketing deadline"),
        "{error}"
    );
    assert_eq!(
        row.order_status.as_deref(),
        Some("1"),
        "still ticketing at ATRIP"
    );
    assert!(row.poll_attempts >= 1);
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["pay_requests"], 1, "{ledger}");
    assert_eq!(ledger["charges"], 1, "{ledger}");
}

/// Rule P4f: credentials ATRIP refuses (the start probe's question is refused too) pause
/// every claim of the process for a while; the order is not at fault. Once a worker with good
/// credentials looks, the order (900 reached ATRIP, which documents that nothing was done) goes
/// to a person, and a plain retry pays it.
#[tokio::test]
async fn refused_credentials_pause_all_claims_and_never_fail_the_order() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.credentials_pause_ms = 1000;
    let good = app.worker_with(&settings, "good-worker");
    settings.atrip.client_secret = "not-the-secret".to_owned().into();
    let worker = app.worker_with(&settings, "paused-worker");
    let order_no = app.order_and_enqueue(1, None, json!({})).await;

    let round = worker.step().await.unwrap();
    assert_eq!(round.outcomes[0].to, Some(State::Paying));
    let row = app.job(&order_no).await;
    assert_eq!(row.atrip_status, Some(900));
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("credentials"),
        "{error}"
    );

    // Nothing is claimed while paused, not even a new order that is due.
    let other = app.order_and_enqueue(1, None, json!({})).await;
    assert_eq!(worker.step().await.unwrap().claimed, 0);
    assert_eq!(app.job(&other).await.state, "pending");
    app.settle(&good, 200).await;
    assert_eq!(app.job(&other).await.state, "ticketed");
    assert_eq!(app.charges(&other), 1);

    // 900 reached ATRIP, so the worker does not pay again by itself; ATRIP documents that
    // nothing was done, so once the credentials are fixed a plain retry pays.
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("then `retry`"),
        "{:?}",
        row.last_error
    );
    let retried = app
        .store
        .retry(&order_no, None, false, "test")
        .await
        .unwrap();
    assert!(retried.may_pay);
    app.settle(&good, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(app.job(&order_no).await.pay_attempts, 2);
}

/// Rule P4f: ATRIP also answers 900 for "the request targets data outside your scope". A 900
/// for one order while ATRIP takes our credentials (the probe is answered) sends that order
/// alone to a person, naming the code, and pauses nothing: the next order is paid at once.
#[tokio::test]
async fn a_900_for_one_order_alone_sends_it_to_review_and_pauses_no_claim() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"pay_status": 900})).await;

    let round = worker.step().await.unwrap();
    assert_eq!(
        round.outcomes[0].to,
        Some(State::NeedsReview),
        "{}",
        round.outcomes[0].note
    );
    let row = app.job(&order_no).await;
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("900") && error.contains("this order only"),
        "{error}"
    );

    let other = app.order_and_enqueue(1, None, json!({})).await;
    let round = worker.step().await.unwrap();
    assert_eq!(
        round.claimed, 1,
        "no pause: the next order is claimed at once"
    );
    app.settle(&worker, 200).await;
    app.assert_ticketed_once(&other, 1).await;

    // The query of a followed order answered 900 likewise: that order alone goes to a person.
    let third = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(
        &third,
        json!({"query_status": 100, "query_status_code": 900}),
    )
    .await;
    app.settle(&worker, 200).await;
    let row = app.job(&third).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("order query"),
        "{:?}",
        row.last_error
    );
    assert_eq!(app.charges(&third), 1, "paid once, then refused");
}
