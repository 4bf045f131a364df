//! The ATRIP client against the simulator, with no database ([`TestAtrip`]): every `pay.do` code the simulator produces through
//! real order conditions reaches the worker as the right `PayAnswer`, every order state reads
//! correctly, and every transport fault after a charge is an unknown outcome, never a refusal.

use std::time::{Duration, Instant};

use atrip_simulator::SimConfig;
use chrono::Utc;
use serde_json::{json, Value};
use ticketing_tracker::atrip::codes::OrderStatus;
use ticketing_tracker::atrip::{Client, OrderView, PayAnswer, PayRequest, QueryAnswer};
use ticketing_tracker::card::CreditCard;
use ticketing_tracker::domain::PaymentMethod;

use crate::support::app::{mor_card, vcc_card, TestAtrip};

/// How long a test waits for the simulator's ticketing to reach a state, polling.
const STATE_DEADLINE: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(50);

fn card(json: &Value, method: PaymentMethod) -> CreditCard {
    CreditCard::from_json(json, method, Utc::now()).expect("a valid card")
}

fn vcc() -> CreditCard {
    card(&vcc_card(), PaymentMethod::Vcc)
}

fn mor() -> CreditCard {
    card(&mor_card(), PaymentMethod::Mor)
}

/// The VCC test card with another first name (the sandbox's magic names).
fn vcc_named(first_name: &str) -> CreditCard {
    let mut json = vcc_card();
    json["cardHolderFirstName"] = json!(first_name);
    card(&json, PaymentMethod::Vcc)
}

async fn pay(
    app: &TestAtrip,
    order_no: &str,
    method: PaymentMethod,
    card: Option<&CreditCard>,
) -> PayAnswer {
    app.atrip
        .pay(&PayRequest::new(order_no, method, card))
        .await
}

/// Asserts a refusal with `status` that reached the order and charged nothing; returns `msg`.
fn assert_refused(app: &TestAtrip, order_no: &str, answer: &PayAnswer, status: i64) -> String {
    let PayAnswer::Refused { status: got, msg } = answer else {
        panic!("expected Refused {status}, got {answer:?}");
    };
    assert_eq!(*got, status, "{answer:?}");
    assert_eq!(app.pay_requests(order_no), 1, "{}", app.ledger(order_no));
    assert_eq!(app.charges(order_no), 0, "{}", app.ledger(order_no));
    msg.clone().unwrap_or_default()
}

fn assert_accepted(app: &TestAtrip, order_no: &str, answer: &PayAnswer, status: i64) {
    let PayAnswer::Accepted {
        status: got,
        pnr_code,
        ..
    } = answer
    else {
        panic!("expected Accepted {status}, got {answer:?}");
    };
    assert_eq!(*got, status, "{answer:?}");
    assert!(pnr_code.is_some(), "an accepted pay.do names the pnrCode");
    assert_eq!(app.charges(order_no), 1, "{}", app.ledger(order_no));
}

fn order_of(answer: QueryAnswer) -> OrderView {
    match answer {
        QueryAnswer::Order(view) => view,
        other => panic!("expected an order, got {other:?}"),
    }
}

/// Queries until `done` holds, every 50 ms, for at most `STATE_DEADLINE`. Every answer must be a
/// readable order, and `seen` gets each one (to check what comes before the end).
async fn query_until(
    app: &TestAtrip,
    order_no: &str,
    mut seen: impl FnMut(&OrderView),
    done: impl Fn(&OrderView) -> bool,
) -> OrderView {
    let deadline = Instant::now() + STATE_DEADLINE;
    loop {
        let view = order_of(app.atrip.query(order_no).await);
        seen(&view);
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{order_no} did not get there within {STATE_DEADLINE:?}; last: {view:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn total(app: &TestAtrip, counter: &str) -> i64 {
    app.sim.ledger()["totals"][counter]
        .as_i64()
        .unwrap_or_else(|| panic!("no total {counter}: {}", app.sim.ledger()))
}

/// The client with a shorter pay timeout (so a held answer ends the call quickly).
fn client_with_pay_timeout(app: &TestAtrip, ms: u64) -> Client {
    let mut settings = app.settings.clone();
    settings.atrip.pay_timeout_ms = ms;
    Client::new(&settings.atrip).unwrap()
}

// ---------------------------------------------------------------------------------------------
// pay.do: every code from a real order condition
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_payable_order_is_accepted_with_status_0_for_every_payment_method() {
    let app = TestAtrip::new().await;
    let (vcc, mor) = (vcc(), mor());
    for (method, card) in [
        (PaymentMethod::Deposit, None),
        (PaymentMethod::Vcc, Some(&vcc)),
        (PaymentMethod::Byoa, None),
        (PaymentMethod::Mor, Some(&mor)),
    ] {
        let order_no = app.create_order(json!({})).await;
        let answer = pay(&app, &order_no, method, card).await;
        assert_accepted(&app, &order_no, &answer, 0);
        let sent = &app.ledger(&order_no)["last_pay_request"];
        assert_eq!(sent["paymentMethod"], method.code(), "{sent}");
        assert_eq!(sent["has_credit_card"], method.needs_card(), "{sent}");
    }
}

#[tokio::test]
async fn illegal_parameters_are_refused_with_400_naming_the_field_and_charge_nothing() {
    let app = TestAtrip::new().await;
    let vcc = vcc();

    // A card with deposit: ATRIP wants creditCard null. PayRequest::new would drop the card,
    // so the request is built by hand, as a buggy caller would.
    let order_no = app.create_order(json!({})).await;
    let request = PayRequest {
        credit_card: Some(&vcc),
        ..PayRequest::new(&order_no, PaymentMethod::Deposit, None)
    };
    let answer = app.atrip.pay(&request).await;
    let msg = assert_refused(&app, &order_no, &answer, 400);
    assert!(msg.contains("creditCard"), "{msg}");

    // VCC without a card.
    let order_no = app.create_order(json!({})).await;
    let answer = pay(&app, &order_no, PaymentMethod::Vcc, None).await;
    let msg = assert_refused(&app, &order_no, &answer, 400);
    assert!(msg.contains("creditCard"), "{msg}");

    // A card that expired: parsed as of a date before its expiry, refused by ATRIP now.
    let mut expired = vcc_card();
    expired["cardExpireYear"] = json!("2021");
    let then = "2021-01-15T00:00:00Z".parse().unwrap();
    let expired = CreditCard::from_json(&expired, PaymentMethod::Vcc, then).unwrap();
    let order_no = app.create_order(json!({})).await;
    let answer = pay(&app, &order_no, PaymentMethod::Vcc, Some(&expired)).await;
    let msg = assert_refused(&app, &order_no, &answer, 400);
    assert!(msg.contains("cardExpire"), "{msg}");

    // threeDS is for MoR only: a MoR card sent as VCC.
    let order_no = app.create_order(json!({})).await;
    let mor = mor();
    let request = PayRequest {
        payment_method: PaymentMethod::Vcc.code(),
        ..PayRequest::new(&order_no, PaymentMethod::Mor, Some(&mor))
    };
    let answer = app.atrip.pay(&request).await;
    let msg = assert_refused(&app, &order_no, &answer, 400);
    assert!(msg.contains("threeDS"), "{msg}");

    // An order ATRIP does not have.
    let answer = pay(&app, "TESTA20990101000000000", PaymentMethod::Deposit, None).await;
    assert!(
        matches!(answer, PayAnswer::Refused { status: 400, .. }),
        "{answer:?}"
    );
    assert_eq!(total(&app, "charges"), 0);
}

#[tokio::test]
async fn an_order_past_its_payment_deadline_is_refused_with_401() {
    let app = TestAtrip::new().await;
    let order_no = app
        .create_order(json!({"paymentDeadlineSeconds": -60}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_refused(&app, &order_no, &answer, 401);
}

#[tokio::test]
async fn a_payment_method_the_order_does_not_support_is_refused_with_403() {
    let app = TestAtrip::new().await;
    let vcc = vcc();
    for (method, card) in [
        (PaymentMethod::Byoa, None),
        (PaymentMethod::Vcc, Some(&vcc)),
    ] {
        let order_no = app
            .create_order(json!({"supportPaymentMethods": [1]}))
            .await;
        let answer = pay(&app, &order_no, method, card).await;
        assert_refused(&app, &order_no, &answer, 403);
    }
}

#[tokio::test]
async fn paying_a_paid_order_again_answers_404_never_pay_again() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    let first = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &first, 0);

    let again = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(again, PayAnswer::NeverPayAgain { status: 404, .. }),
        "{again:?}"
    );
    assert_eq!(app.charges(&order_no), 1);
    assert_eq!(app.pay_requests(&order_no), 2);
}

#[tokio::test]
async fn paying_a_paid_order_again_answers_402_never_pay_again_when_atrip_reads_it_so() {
    let app = TestAtrip::with_sim(SimConfig {
        repay_status: 402,
        ticketing_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let order_no = app.create_order(json!({})).await;
    let first = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &first, 0);

    let again = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(again, PayAnswer::NeverPayAgain { status: 402, .. }),
        "{again:?}"
    );
    assert_eq!(app.charges(&order_no), 1);
}

#[tokio::test]
async fn paying_while_a_payment_is_in_progress_answers_406_never_pay_again() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"payment_in_progress_ms": 60_000}))
        .await;
    let first = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &first, 0);

    let again = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(again, PayAnswer::NeverPayAgain { status: 406, .. }),
        "{again:?}"
    );
    assert_eq!(app.charges(&order_no), 1);
}

#[tokio::test]
async fn missing_passenger_data_is_refused_with_407() {
    let app = TestAtrip::new().await;
    let order_no = app
        .create_order(json!({"missingPassengerData": true}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_refused(&app, &order_no, &answer, 407);
}

#[tokio::test]
async fn a_card_brand_the_order_does_not_accept_is_refused_with_413() {
    let app = TestAtrip::new().await;
    let order_no = app
        .create_order(json!({"acceptedCardBrands": ["MasterCard"]}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Vcc, Some(&vcc())).await;
    assert_refused(&app, &order_no, &answer, 413);
}

#[tokio::test]
async fn a_mor_card_of_another_brand_than_the_order_was_made_for_is_refused_with_414() {
    let app = TestAtrip::new().await;
    let order_no = app
        .create_order(json!({"payment": {"cardType": "MasterCard"}}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Mor, Some(&mor())).await;
    assert_refused(&app, &order_no, &answer, 414);
}

#[tokio::test]
async fn an_fr_flow_order_the_traveller_never_confirmed_is_refused_with_415_and_cancelled() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({"frFlow": true})).await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_refused(&app, &order_no, &answer, 415);
    let view = order_of(app.atrip.query(&order_no).await);
    assert_eq!(view.order_status, OrderStatus::Cancelled);
}

/// 604 and 616 are ticket-stage codes, not documented for pay.do: the client reads them as an
/// unknown outcome (as ATRIP's own client does), and the order query settles it: the order
/// shows cancelled with that errorCode, nothing charged.
#[tokio::test]
async fn a_card_declined_by_the_airline_or_needing_3ds_is_an_unknown_outcome_the_query_settles() {
    let app = TestAtrip::new().await;
    for (first_name, status) in [("Reject", 604), ("Three DS", 616)] {
        let order_no = app.create_order(json!({})).await;
        let card = vcc_named(first_name);
        let answer = pay(&app, &order_no, PaymentMethod::Vcc, Some(&card)).await;
        assert!(
            matches!(answer, PayAnswer::OutcomeUnknown { status: Some(s), .. } if s == status),
            "{answer:?}"
        );
        assert_eq!(app.charges(&order_no), 0, "{}", app.ledger(&order_no));
        let view = order_of(app.atrip.query(&order_no).await);
        assert_eq!(view.order_status, OrderStatus::Cancelled);
        assert_eq!(view.error_code, Some(status.to_string()));
    }
}

#[tokio::test]
async fn a_paid_order_whose_airline_pnr_is_pending_is_accepted_with_status_615() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"pnr_pending": true})).await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &answer, 615);
    assert_eq!(answer.status(), Some(615));
}

#[tokio::test]
async fn generic_and_unknown_pay_codes_leave_the_outcome_unknown() {
    let app = TestAtrip::new().await;
    for code in [411, 9999, -1, 2, 12_345, 100, 901] {
        let order_no = app.create_order(json!({})).await;
        app.scenario(&order_no, json!({"pay_status": code})).await;
        let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
        if code == 411 {
            assert!(
                matches!(answer, PayAnswer::PaymentError { status: 411, .. }),
                "{answer:?}"
            );
        } else {
            assert!(
                matches!(answer, PayAnswer::OutcomeUnknown { status: Some(s), .. } if s == code),
                "{code}: {answer:?}"
            );
        }
        assert_eq!(app.pay_requests(&order_no), 1);
        assert_eq!(app.charges(&order_no), 0, "{}", app.ledger(&order_no));
    }
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_with_900_and_charge_nothing() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    let mut settings = app.settings.clone();
    settings.atrip.client_secret = "not-the-secret".to_owned().into();
    let intruder = Client::new(&settings.atrip).unwrap();

    let answer = intruder
        .pay(&PayRequest::new(&order_no, PaymentMethod::Deposit, None))
        .await;
    assert!(
        matches!(answer, PayAnswer::Unauthorized { status: 900, .. }),
        "{answer:?}"
    );
    let query = intruder.query(&order_no).await;
    assert!(
        matches!(query, QueryAnswer::Unauthorized { status: 900, .. }),
        "{query:?}"
    );
    assert_eq!(total(&app, "unauthorized"), 2);
    assert_eq!(total(&app, "charges"), 0);
    assert_eq!(app.pay_requests(&order_no), 0, "refused before the order");

    // The order itself was payable all along: only the credentials were wrong.
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &answer, 0);
}

// ---------------------------------------------------------------------------------------------
// queryOrderDetails.do
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_query_follows_an_order_from_unpaid_through_ticketing_to_final_tickets() {
    let app = TestAtrip::new().await;
    let order_no = app
        .create_order(json!({"passengers": [
            {"name": "DOE/JANE", "passengerType": 0},
            {"name": "DOE/JOHN", "passengerType": 0},
        ]}))
        .await;
    let unpaid = order_of(app.atrip.query(&order_no).await);
    assert_eq!(unpaid.order_status, OrderStatus::Unpaid);
    assert_eq!(unpaid.order_no, order_no);
    assert!(unpaid.final_tickets(None).is_none());

    app.scenario(&order_no, json!({"ticketing_delay_ms": 2500}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &answer, 0);
    let paid = order_of(app.atrip.query(&order_no).await);
    assert_eq!(paid.order_status, OrderStatus::Ticketing, "{paid:?}");
    assert_eq!(paid.ticket_status.as_deref(), Some("0"));
    assert!(paid.final_tickets(None).is_none());
    assert!(paid.tickets.iter().all(|p| p.ticket_numbers.is_empty()));

    let ticketed = query_until(
        &app,
        &order_no,
        |_| {},
        |v| v.order_status != OrderStatus::Ticketing,
    )
    .await;
    assert_eq!(ticketed.order_status, OrderStatus::Ticketed, "{ticketed:?}");
    assert_eq!(ticketed.ticket_status.as_deref(), Some("1"));
    let (tickets, pnr) = ticketed.final_tickets(None).expect("final tickets");
    let names: Vec<&str> = tickets.iter().map(|p| p.passenger.as_str()).collect();
    assert_eq!(names, ["DOE/JANE", "DOE/JOHN"]);
    for p in tickets {
        assert_eq!(p.ticket_numbers.len(), 1, "{p:?}");
        assert_eq!(p.airline_pnrs.len(), 1, "{p:?}");
    }
    assert_ne!(tickets[0].ticket_numbers, tickets[1].ticket_numbers);
    assert!(!pnr.is_empty());
    assert_eq!(
        ticketed.pnr_code, unpaid.pnr_code,
        "ATRIP's pnrCode is stable"
    );
    assert_eq!(app.charges(&order_no), 1);
}

#[tokio::test]
async fn a_query_reads_a_cancelled_order_with_its_error_code() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(
        &order_no,
        json!({"fail_ticketing": "605", "ticketing_delay_ms": 100}),
    )
    .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &answer, 0);

    let cancelled = query_until(
        &app,
        &order_no,
        |v| assert_ne!(v.order_status, OrderStatus::Ticketed, "{v:?}"),
        |v| v.order_status == OrderStatus::Cancelled,
    )
    .await;
    assert_eq!(cancelled.error_code.as_deref(), Some("605"));
    assert!(cancelled.error_message.is_some());
    assert!(cancelled.final_tickets(None).is_none());
}

#[tokio::test]
async fn partial_tickets_are_not_final_while_passengers_are_ticketed_one_at_a_time() {
    let app = TestAtrip::with_sim(SimConfig {
        one_passenger_at_a_time: true,
        // Three passengers: the first ticket at 0.8 s, all three at 2.4 s.
        ticketing_delay: Duration::from_millis(2400),
        ..SimConfig::default()
    })
    .await;
    let order_no = app
        .create_order(json!({"passengers": [
            {"name": "DOE/JANE"}, {"name": "DOE/JOHN"}, {"name": "DOE/JUNIOR"},
        ]}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert_accepted(&app, &order_no, &answer, 0);

    let mut partial_seen = 0;
    let ticketed = query_until(
        &app,
        &order_no,
        |v| {
            let issued = v
                .tickets
                .iter()
                .filter(|p| !p.ticket_numbers.is_empty())
                .count();
            if issued < 3 {
                assert!(v.final_tickets(None).is_none(), "{v:?}");
                assert_eq!(v.order_status, OrderStatus::Ticketing, "{v:?}");
            }
            if (1..3).contains(&issued) {
                partial_seen += 1;
            }
        },
        |v| v.final_tickets(None).is_some(),
    )
    .await;
    assert!(
        partial_seen > 0,
        "never saw an order with some passengers ticketed and not others"
    );
    assert_eq!(ticketed.final_tickets(None).map(|(t, _)| t.len()), Some(3));
}

#[tokio::test]
async fn a_query_for_an_order_atrip_does_not_have_is_not_found_with_800() {
    let app = TestAtrip::new().await;
    let answer = app.atrip.query("TESTA20990101000000000").await;
    assert!(
        matches!(answer, QueryAnswer::NotFound { status: 800, .. }),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_query_answered_with_timeout_705_is_to_be_retried_later() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"query_status": 1})).await;
    let answer = app.atrip.query(&order_no).await;
    assert!(matches!(answer, QueryAnswer::Retry { .. }), "{answer:?}");
    // Only the next query was affected.
    let view = order_of(app.atrip.query(&order_no).await);
    assert_eq!(view.order_status, OrderStatus::Unpaid);
}

#[tokio::test]
async fn a_rate_limited_query_says_how_long_to_wait() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"rate_limit_queries": 1}))
        .await;
    let answer = app.atrip.query(&order_no).await;
    assert_eq!(
        answer,
        QueryAnswer::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
}

#[tokio::test]
async fn a_garbled_answer_is_invalid_for_a_query_and_an_unknown_outcome_for_pay() {
    let app = TestAtrip::new().await;
    // The simulator rotates four kinds of broken body: empty, HTML, cut JSON, status as text.
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"garbled": 4})).await;
    for turn in 0..4 {
        let answer = app.atrip.query(&order_no).await;
        assert!(
            matches!(answer, QueryAnswer::Invalid { .. }),
            "query {turn}: {answer:?}"
        );
    }

    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"garbled": 4})).await;
    for turn in 0..4 {
        let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
        assert!(
            matches!(answer, PayAnswer::OutcomeUnknown { status: None, .. }),
            "pay {turn}: {answer:?}"
        );
    }
    // The first was charged (the answer was garbled after the charge); the others were not.
    assert_eq!(app.charges(&order_no), 1, "{}", app.ledger(&order_no));
    assert_eq!(app.pay_requests(&order_no), 4);
}

#[tokio::test]
async fn the_ledger_counts_exactly_the_requests_the_client_sent() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    let (queries, pays) = (3, 2);
    for _ in 0..queries {
        order_of(app.atrip.query(&order_no).await);
    }
    for _ in 0..pays {
        pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    }
    // One of each for an order the simulator does not have: counted in the totals only.
    app.atrip.query("TESTA20990101000000000").await;
    pay(&app, "TESTA20990101000000000", PaymentMethod::Deposit, None).await;

    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["queries"], queries, "{ledger}");
    assert_eq!(ledger["pay_requests"], pays, "{ledger}");
    assert_eq!(ledger["charges"], 1, "{ledger}");
    assert_eq!(ledger["pay_statuses"], json!([0, 404]), "{ledger}");
    assert_eq!(total(&app, "queries"), queries + 1);
    assert_eq!(total(&app, "pay_requests"), pays + 1);
    assert_eq!(total(&app, "charges"), 1);
    assert_eq!(total(&app, "unauthorized"), 0);
}

// ---------------------------------------------------------------------------------------------
// Transport faults around the charge
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_connection_dropped_after_the_charge_is_an_unknown_outcome_while_the_order_is_paid() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"drop_after_charge": 1}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(answer, PayAnswer::OutcomeUnknown { status: None, .. }),
        "{answer:?}"
    );
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["charges"], 1, "{ledger}");
    assert_eq!(
        ledger["pay_requests"], 1,
        "the client never re-sends: {ledger}"
    );
    assert_eq!(ledger["pay_statuses"], json!([null]), "{ledger}");
    // The order query is what tells the worker the truth.
    let view = order_of(app.atrip.query(&order_no).await);
    assert_ne!(view.order_status, OrderStatus::Unpaid, "{view:?}");
}

#[tokio::test]
async fn a_pay_timeout_after_the_charge_is_an_unknown_outcome_while_the_order_is_paid() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"timeout_after_charge": 1}))
        .await;
    let client = client_with_pay_timeout(&app, 500);
    let started = Instant::now();
    let answer = client
        .pay(&PayRequest::new(&order_no, PaymentMethod::Deposit, None))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(answer, PayAnswer::OutcomeUnknown { status: None, .. }),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "the pay timeout ended the call after {took:?}"
    );
    assert_eq!(app.charges(&order_no), 1, "{}", app.ledger(&order_no));
    assert_eq!(app.pay_requests(&order_no), 1);
}

#[tokio::test]
async fn a_connection_reset_before_the_charge_is_unknown_or_not_sent_and_charges_nothing() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"reset_before_charge": 1}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(
            answer,
            PayAnswer::OutcomeUnknown { status: None, .. } | PayAnswer::NotSent { .. }
        ),
        "{answer:?}"
    );
    assert_eq!(app.charges(&order_no), 0, "{}", app.ledger(&order_no));
    assert_eq!(app.pay_requests(&order_no), 1);
    let view = order_of(app.atrip.query(&order_no).await);
    assert_eq!(view.order_status, OrderStatus::Unpaid);
}

#[tokio::test]
async fn a_502_before_the_charge_is_an_unknown_outcome_and_charges_nothing() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"fail_before_charge": 1}))
        .await;
    let answer = pay(&app, &order_no, PaymentMethod::Deposit, None).await;
    assert!(
        matches!(answer, PayAnswer::OutcomeUnknown { status: None, .. }),
        "{answer:?}"
    );
    assert_eq!(app.charges(&order_no), 0, "{}", app.ledger(&order_no));
    assert_eq!(app.pay_requests(&order_no), 1);
}

#[tokio::test]
async fn a_server_that_refuses_the_connection_means_pay_was_not_sent() {
    let app = TestAtrip::new().await;
    // A port that was free a moment ago and has nobody listening now.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = app.settings.clone();
    settings.atrip.base_url = format!("http://{closed}");
    let client = Client::new(&settings.atrip).unwrap();
    let answer = client
        .pay(&PayRequest::new(
            "TESTA20990101000000000",
            PaymentMethod::Deposit,
            None,
        ))
        .await;
    assert!(matches!(answer, PayAnswer::NotSent { .. }), "{answer:?}");
    let query = client.query("TESTA20990101000000000").await;
    assert!(matches!(query, QueryAnswer::Retry { .. }), "{query:?}");
}

// ---------------------------------------------------------------------------------------------
// The wire: gzip and headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_simulator_gzips_an_answer_only_when_asked_and_the_client_reads_it() {
    let app = TestAtrip::new().await;
    let order_no = app.create_order(json!({})).await;
    // The client asks for gzip (reqwest's gzip feature) and decodes it.
    let view = order_of(app.atrip.query(&order_no).await);
    assert_eq!(view.order_status, OrderStatus::Unpaid);

    // A raw client that does not decode, to see what is on the wire.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let send = |gzip: bool| {
        let mut request = raw
            .post(format!("{}/queryOrderDetails.do", app.sim.base_url()))
            .header("x-atlas-client-id", "sim-client")
            .header("x-atlas-client-secret", "sim-secret")
            .json(&json!({"orderNo": order_no}));
        if gzip {
            request = request.header("Accept-Encoding", "gzip");
        }
        request.send()
    };
    let zipped = send(true).await.unwrap();
    assert_eq!(
        zipped
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let bytes = zipped.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain)
        .unwrap();
    let body: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(body["orderNo"], json!(order_no));
    assert_eq!(body["status"], 0);

    let unzipped = send(false).await.unwrap();
    assert!(unzipped.headers().get("content-encoding").is_none());
    let body: Value = unzipped.json().await.unwrap();
    assert_eq!(body["orderNo"], json!(order_no));
}

/// One request as a bare HTTP/1.1 server received it.
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-connection-at-a-time HTTP server that records each request and answers `answer`
/// gzip-encoded: shows exactly what the client puts on the wire.
async fn recording_server(
    answer: Value,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut data = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, content_length) = loop {
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed before sending its request");
                data.extend_from_slice(&chunk[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (end + 4, length);
                }
            };
            while data.len() < head_end + content_length {
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed mid-body");
                data.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&data[..head_end - 4]).into_owned();
            let mut lines = head.lines();
            let request_line = lines.next().unwrap_or_default().to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let body = serde_json::from_slice(&data[head_end..head_end + content_length])
                .unwrap_or(Value::Null);
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, answer.to_string().as_bytes()).unwrap();
            let zipped = encoder.finish().unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                zipped.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&zipped).await.unwrap();
            socket.shutdown().await.unwrap();
            let _ = sender.send(Received {
                request_line,
                headers,
                body,
            });
        }
    });
    (url, receiver)
}

#[tokio::test]
async fn the_client_sends_atrips_headers_and_reads_a_gzip_encoded_answer() {
    let app = TestAtrip::new().await;
    let order_no = "TESTA20260824171418381";
    let (url, mut received) = recording_server(json!({
        "status": 0, "msg": "success", "orderNo": order_no, "pnrCode": "ABC123",
        "orderStatus": "1", "ticketStatus": "0",
        "paxTicketInfos": [{"name": "DOE/JANE", "ticketNos": [], "airlinePNRs": []}],
    }))
    .await;
    let mut settings = app.settings.clone();
    settings.atrip.base_url = url.clone();
    let client = Client::new(&settings.atrip).unwrap();

    let view = order_of(client.query(order_no).await);
    assert_eq!(view.order_status, OrderStatus::Ticketing);
    assert_eq!(view.pnr_code.as_deref(), Some("ABC123"));
    let query = received.recv().await.unwrap();
    assert_eq!(query.request_line, "POST /queryOrderDetails.do HTTP/1.1");
    assert_eq!(query.body["orderNo"], order_no);

    // The same gzip-encoded body read as a pay.do answer: status 0 is an acceptance.
    let answer = client
        .pay(&PayRequest::new(order_no, PaymentMethod::Deposit, None))
        .await;
    assert!(
        matches!(answer, PayAnswer::Accepted { status: 0, .. }),
        "{answer:?}"
    );
    let pay = received.recv().await.unwrap();
    assert_eq!(pay.request_line, "POST /pay.do HTTP/1.1");
    assert_eq!(pay.body["paymentMethod"], 1);
    assert!(
        pay.body.get("creditCard").is_some_and(Value::is_null),
        "deposit sends creditCard: null, not \"\" and not absent: {}",
        pay.body
    );

    for request in [&query, &pay] {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert!(
            request
                .header("accept-encoding")
                .is_some_and(|v| v.contains("gzip")),
            "{:?}",
            request.headers
        );
        assert_eq!(request.header("x-atlas-client-id"), Some("sim-client"));
        assert_eq!(request.header("x-atlas-client-secret"), Some("sim-secret"));
    }
}
