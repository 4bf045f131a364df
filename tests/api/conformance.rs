//! Where ATRIP's own published client and its fixtures are the reference (rules P4h, P6,
//! F1): the answer shapes here are the ones its tests and documented samples use
//! (tests/fixtures/atrip/README.md).

use std::time::Duration;

use atrip_simulator::SimConfig;
use serde_json::{json, Value};

use crate::bad_input::rogue::Reply;
use crate::bad_input::world::{World, BAD};
use crate::support::app::{vcc_card, TestApp};

/// A fixture body with its order number replaced by `order_no`.
fn fixture(name: &str, order_no: &str) -> Value {
    let path = format!("{}/tests/fixtures/atrip/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    body["orderNo"] = json!(order_no);
    body
}

/// Rule P4h: codes not documented for pay.do (604, 616, 100, 901) are an unknown outcome; the
/// order query settles them, whichever way the payment went. Never a failure without a query.
#[tokio::test]
async fn pay_codes_not_documented_for_pay_are_settled_by_the_order_query() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.unpaid_settle_s = 5;
    let worker = app.worker_with(&settings, "conformance");
    // 604 from the sandbox's "Reject" card holder: ATRIP cancels the order with errorCode 604.
    let mut reject = vcc_card();
    reject["cardHolderFirstName"] = json!("Reject");
    let declined = app.order_and_enqueue(3, Some(reject), json!({})).await;
    // 901 and 100 with nothing charged: the order stays unpaid.
    let illegal = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&illegal, json!({"pay_status": 901})).await;
    let missing = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&missing, json!({"pay_status": 100})).await;
    // 616 on an order that is in fact paid: the query shows it, and it is followed.
    let paid = app.create_order(json!({})).await;
    app.pay_directly(&paid).await;
    app.scenario(&paid, json!({"pay_status": 616})).await;
    app.enqueue(&paid, 1, None).await;

    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 4);
    for outcome in &round.outcomes {
        assert_eq!(
            outcome.to,
            Some(ticketing_tracker::domain::State::Paying),
            "{outcome:?}"
        );
    }
    app.settle(&worker, 300).await;

    let row = app.job(&declined).await;
    assert_eq!(row.state, "failed", "{:?}", row.last_error);
    assert!(row.last_error.unwrap().contains("errorCode 604"));
    for order_no in [&illegal, &missing] {
        let row = app.job(order_no).await;
        assert_eq!(
            row.state, "needs_review",
            "{order_no}: {:?}",
            row.last_error
        );
        assert_eq!(app.pay_requests(order_no), 1, "never paid again");
    }
    app.assert_ticketed_once(&paid, 2).await;
    assert_eq!(app.pay_requests(&declined), 1);
}

/// Rules P4h and P6 again, with nothing but ATRIP's own answer shapes: its client's
/// `pay_response` fixture (status swapped for each code outside pay.do's table), its three
/// success shapes, and the documentation's Retrieve Booking samples. Every unclear code is
/// settled by the query (here: the order is ticketed); 411 then unpaid asks a person to check
/// the balance; no order sees a second pay.do.
#[tokio::test]
async fn pay_answers_in_atrips_own_shapes_are_settled_by_its_documented_query_answers() {
    let w = World::new().await;
    let ticketed =
        |order_no: &str| vec![Reply::json(fixture("docs_query_ticketed.json", order_no))];
    let mut followed = Vec::new();
    for code in [604, 616, 100, 901] {
        let order_no = format!("CONFCODE{code}00000001");
        let mut pay = fixture("pay_error_411.json", &order_no);
        pay["status"] = json!(code);
        w.rogue.on_pay(&order_no, vec![Reply::json(pay)]);
        w.rogue.on_query(&order_no, ticketed(&order_no));
        followed.push(order_no);
    }
    for (i, sample) in [
        "docs_pay_success.json",
        "pay_success.json",
        "pay_success_minimal.json",
    ]
    .into_iter()
    .enumerate()
    {
        let order_no = format!("CONFPAID{i}000000001");
        w.rogue
            .on_pay(&order_no, vec![Reply::json(fixture(sample, &order_no))]);
        w.rogue.on_query(&order_no, ticketed(&order_no));
        followed.push(order_no);
    }
    let balance = "CONFBALANCE000000001";
    w.rogue.on_pay(
        balance,
        vec![Reply::json(fixture("pay_error_411.json", balance))],
    );
    w.rogue.on_query(
        balance,
        vec![Reply::json(fixture("query_unpaid.json", balance))],
    );
    for order_no in followed.iter().map(String::as_str).chain([balance]) {
        w.enqueue(order_no, 1, None).await;
    }
    w.app.settle(&w.worker, 300).await;

    for order_no in &followed {
        let row = w.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{order_no}: {:?}", row.last_error);
        assert_eq!(row.pnr.as_deref(), Some("S77182"), "{order_no}");
        assert_eq!(w.rogue.pays(order_no), 1, "{order_no}: one pay.do");
        assert!(
            w.rogue.queries(order_no) >= 1,
            "{order_no}: settled by the query"
        );
    }
    let row = w.job(balance).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(row.last_error.unwrap_or_default().contains("balance"));
    assert_eq!(w.rogue.pays(balance), 1, "411: never paid again");
}

/// Rules P4e and P6: 411 followed by "0": never paid again; a person is asked to check the balance.
#[tokio::test]
async fn a_411_then_unpaid_asks_a_person_to_check_the_balance_and_never_pays_again() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"pay_status": 411})).await;
    app.settle(&worker, 50).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("deposit balance") && error.contains("retry --repay"),
        "{error}"
    );
    assert_eq!(row.last_pay_outcome.as_deref(), Some("payment_error"));
    assert_eq!(app.pay_requests(&order_no), 1);
}

/// Rule F1: ATRIP's own client fixture: a ticketed answer whose `paxTicketInfos` entry has no
/// `name` (and no `passengers` array) is final.
#[tokio::test]
async fn a_ticketed_answer_without_passenger_names_reaches_ticketed() {
    let w = World::new().await;
    w.rogue.on_query(
        BAD,
        vec![Reply::json(fixture("query_ticketed_no_name.json", BAD))],
    );
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;
    w.settle().await;
    let row = w.job(BAD).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(row.pnr.as_deref(), Some("PNR001"));
    assert_eq!(
        row.ticket_numbers.unwrap()[0]["ticket_numbers"],
        json!(["7811234567890"])
    );
    w.assert_good_ticketed().await;
}

/// Rule F1: ticket numbers that differ only by surrounding whitespace are one ticket.
#[tokio::test]
async fn ticket_numbers_padded_with_spaces_are_trimmed_and_stored_once() {
    let w = World::new().await;
    w.rogue.on_query(
        BAD,
        vec![Reply::json(fixture(
            "query_ticketed_whitespace_duplicate.json",
            BAD,
        ))],
    );
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;
    w.settle().await;
    let row = w.job(BAD).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(
        row.ticket_numbers.unwrap(),
        json!([{"passenger": "PRIVATE/NAME", "ticket_numbers": ["7811234567890"],
                "airline_pnrs": ["PNR123"]}])
    );
}

/// The simulator's order.do answer carries what ATRIP's own client reads
/// (`totalTransactionFee`, `paymentOptions` with a deposit option, `currency`, an SGT
/// `tktLimitTime`), and its pay.do refusals echo the order number as the documentation does.
#[tokio::test]
async fn the_simulator_answers_order_do_and_pay_do_refusals_as_atrip_documents() {
    let app = TestApp::new().await;
    let created = app
        .atrip
        .create_order(&json!({"passengers": [{"name": "DOE/JANE"}]}))
        .await
        .unwrap();
    let body = &created.body;
    assert!(body["totalTransactionFee"].is_number(), "{body}");
    assert!(
        body["totalPrice"].is_number() && body["currency"].is_string(),
        "{body}"
    );
    assert!(
        body["paymentOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["paymentMethod"] == 1)),
        "{body}"
    );
    // Every key of the documentation's sample and of ATRIP's client's fixture is there, with
    // the same JSON type where both give a value; so are the keys of a payment option.
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    for sample in ["docs_order_create.json", "order_create.json"] {
        let want = fixture(sample, &created.order_no);
        for (key, value) in want.as_object().unwrap() {
            let got = body
                .get(key)
                .unwrap_or_else(|| panic!("{sample}: order.do lacks {key}: {body}"));
            if !value.is_null() && !got.is_null() {
                assert_eq!(kind(got), kind(value), "{sample}: {key}: {body}");
            }
        }
        let option = &want["paymentOptions"][0];
        for key in option.as_object().unwrap().keys() {
            assert!(
                body["paymentOptions"][0].get(key).is_some(),
                "{sample}: a payment option lacks {key}: {body}"
            );
        }
    }
    let deadline = body["tktLimitTime"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(deadline, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{deadline}"
    );

    let refused = reqwest::Client::new()
        .post(format!("{}/pay.do", app.sim.base_url()))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "sim-secret")
        .json(&json!({"orderNo": created.order_no, "paymentMethod": 3, "creditCard": null}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["orderNo"], json!(created.order_no), "{refused}");
}

/// The documentation's other reading of a refusal (`orderNo: null`) is read the same way.
#[tokio::test]
async fn a_pay_refusal_that_carries_no_order_number_is_still_a_refusal() {
    let app = TestApp::with_sim(SimConfig {
        error_echoes_order_no: false,
        ticketing_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let order_no = app
        .order_and_enqueue(
            3,
            Some(vcc_card()),
            json!({"acceptedCardBrands": ["MasterCard"]}),
        )
        .await;
    app.settle(&app.worker(), 20).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "failed", "{:?}", row.last_error);
    assert_eq!(row.atrip_status, Some(413));
}
