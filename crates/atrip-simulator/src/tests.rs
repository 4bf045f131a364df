//! End-to-end tests of the simulator's business behaviour over real HTTP: the happy path, every
//! refusal code with no charge, the configuration knobs and the tickets' timing.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::{start, SimConfig, SimHandle};

/// A simulator and a client that speaks to it like the worker does.
pub(super) struct Harness {
    pub sim: SimHandle,
    pub http: reqwest::Client,
}

pub(super) fn fast_config() -> SimConfig {
    SimConfig {
        ticketing_delay: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

/// A Luhn-valid Visa test card with the given holder first name.
pub(super) fn visa(first_name: &str) -> Value {
    json!({
        "cardNumber": "4532015112830366", "cardCVV": "123",
        "cardExpireMonth": "07", "cardExpireYear": "2099",
        "cardHolderFirstName": first_name, "cardHolderLastName": "DOE",
        "cardHolderCountry": "PH", "reusable": false, "paymentLimit": 120, "threeDS": null
    })
}

impl Harness {
    pub(super) async fn new(config: SimConfig) -> Harness {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let sim = start(config, addr).await.expect("simulator starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Harness { sim, http }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.sim.base_url())
    }

    /// An authenticated ATRIP call answered with HTTP 200 and a JSON body.
    pub(super) async fn call(&self, endpoint: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(endpoint))
            .header("x-atlas-client-id", "sim-client")
            .header("x-atlas-client-secret", "sim-secret")
            .json(&body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200, "{endpoint} {body}");
        response.json().await.expect("JSON answer")
    }

    pub(super) async fn order(&self, extra: Value) -> String {
        let answer = self.call("order.do", extra).await;
        assert_eq!(answer["status"], 0, "{answer}");
        answer["orderNo"].as_str().expect("orderNo").to_owned()
    }

    pub(super) async fn pay(&self, order_no: &str, method: i64, card: Value) -> Value {
        self.call(
            "pay.do",
            json!({"orderNo": order_no, "paymentMethod": method, "creditCard": card}),
        )
        .await
    }

    pub(super) async fn query(&self, order_no: &str) -> Value {
        let answer = self
            .call("queryOrderDetails.do", json!({"orderNo": order_no}))
            .await;
        assert_eq!(answer["status"], 0, "{answer}");
        answer
    }

    pub(super) async fn scenario(&self, order_no: &str, scenario: Value) {
        let url = self.url(&format!("sim/orders/{order_no}/scenario"));
        let answer: Value = self
            .http
            .post(url)
            .json(&scenario)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer, json!({"ok": true}));
    }

    pub(super) async fn ledger(&self) -> Value {
        self.http
            .get(self.url("sim/ledger"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Queries until `orderStatus` is `want`, for at most two seconds (ticketing takes 100 ms).
    pub(super) async fn wait_for(&self, order_no: &str, want: &str) -> Value {
        for _ in 0..100 {
            let answer = self.query(order_no).await;
            if answer["orderStatus"] == want {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("order {order_no} never reached orderStatus {want}");
    }
}

#[tokio::test]
async fn a_deposit_order_is_charged_once_then_ticketed() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    assert!(
        order_no.starts_with("TESTA") && order_no.len() == 22,
        "{order_no}"
    );
    let unpaid = h.query(&order_no).await;
    assert_eq!(
        (unpaid["orderStatus"].as_str(), unpaid["payTime"].is_null()),
        (Some("0"), true)
    );

    let paid = h.pay(&order_no, 1, Value::Null).await;
    assert_eq!(paid["status"], 0);
    assert_eq!(paid["airlines"], json!(["5J"]));
    let ticketing = h.query(&order_no).await;
    assert_eq!(ticketing["orderStatus"], "1");
    assert_eq!(ticketing["ticketStatus"], "0");
    assert!(ticketing["payTime"].is_string());
    assert_eq!(ticketing["paymentMethod"], 1);

    let ticketed = h.wait_for(&order_no, "2").await;
    assert_eq!(ticketed["ticketStatus"], "1");
    let pax = &ticketed["paxTicketInfos"][0];
    let ticket = pax["ticketNos"][0].as_str().expect("ticket number");
    assert!(ticket.starts_with('S') && ticket.len() == 6, "{ticket}");
    assert_eq!(pax["airlinePNRs"][0], ticket);
    assert_eq!(ticketed["airlineBookings"][0]["airlinePnr"], ticket);
    assert_eq!(
        h.query(&order_no).await,
        ticketed,
        "a final order answers identically"
    );

    let ledger = h.ledger().await;
    let entry = &ledger["orders"][&order_no];
    assert_eq!(entry["charges"], 1);
    assert_eq!(entry["pay_statuses"], json!([0]));
    assert_eq!(entry["order_status"], "2");
    assert_eq!(entry["pay_after_paid_shown"], 0);
    assert_eq!(ledger["totals"]["charges"], 1);
}

/// Creates an order with `order`, pays it with `pay`, and checks the status and that nothing
/// was charged.
async fn refused(h: &Harness, order: Value, pay: Value, want: i64) -> String {
    let order_no = h.order(order).await;
    let mut body = pay;
    body["orderNo"] = json!(order_no);
    let answer = h.call("pay.do", body.clone()).await;
    assert_eq!(answer["status"], want, "{body} -> {answer}");
    assert!(answer["msg"].is_string());
    assert_eq!(
        h.ledger().await["orders"][&order_no]["charges"],
        0,
        "{body}"
    );
    order_no
}

#[tokio::test]
async fn each_refusal_answers_its_code_and_charges_nothing() {
    let h = Harness::new(fast_config()).await;
    let card = |f: &dyn Fn(&mut Value)| {
        let mut c = visa("JANE");
        f(&mut c);
        c
    };
    let cases: Vec<(Value, Value, i64)> = vec![
        (json!({}), json!({"paymentMethod": 2}), 400),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": null}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 1, "creditCard": ""}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 1, "creditCard": visa("JANE")}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["cardNumber"] = json!("4532015112830367"))}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["cardExpireMonth"] = json!("13"))}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["cardExpireYear"] = json!("202"))}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["cardExpireYear"] = json!("2001"))}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["cardCVV"] = Value::Null)}),
            400,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": card(&|c| c["threeDS"] = json!({"ip": "203.0.113.7"}))}),
            400,
        ),
        (
            json!({"paymentDeadlineSeconds": -5}),
            json!({"paymentMethod": 1}),
            401,
        ),
        (
            json!({"supportPaymentMethods": [1]}),
            json!({"paymentMethod": 3, "creditCard": visa("JANE")}),
            403,
        ),
        (
            json!({"missingPassengerData": true}),
            json!({"paymentMethod": 1}),
            407,
        ),
        (
            json!({"acceptedCardBrands": ["MasterCard"]}),
            json!({"paymentMethod": 3, "creditCard": visa("JANE")}),
            413,
        ),
        (
            json!({"payment": {"cardType": "Amex"}}),
            json!({"paymentMethod": 5, "creditCard": visa("JANE")}),
            414,
        ),
        (
            json!({}),
            json!({"paymentMethod": 3, "creditCard": visa("Reject")}),
            604,
        ),
        (
            json!({}),
            json!({"paymentMethod": 5, "creditCard": visa("Three DS")}),
            616,
        ),
    ];
    for (order, pay, want) in cases {
        refused(&h, order, pay, want).await;
    }

    let unknown = h
        .call(
            "pay.do",
            json!({"orderNo": "TESTA00000000000000000", "paymentMethod": 1}),
        )
        .await;
    assert_eq!(unknown["status"], 400);
    assert!(unknown["msg"].as_str().unwrap().contains("orderNo"));

    // FR without confirmation: 415, the order is cancelled, and paying again is 402.
    let fr = refused(
        &h,
        json!({"frFlow": true}),
        json!({"paymentMethod": 1}),
        415,
    )
    .await;
    assert_eq!(h.query(&fr).await["orderStatus"], "-3");
    assert_eq!(h.pay(&fr, 1, Value::Null).await["status"], 402);
    assert_eq!(h.ledger().await["totals"]["charges"], 0);
}

#[tokio::test]
async fn paying_a_paid_order_answers_404_and_counts_the_repay() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    assert_eq!(h.pay(&order_no, 3, visa("JANE")).await["status"], 0);
    assert_eq!(h.pay(&order_no, 3, visa("JANE")).await["status"], 404);
    let entry = &h.ledger().await["orders"][&order_no];
    assert_eq!(entry["charges"], 1);
    assert_eq!(entry["pay_statuses"], json!([0, 404]));
    assert_eq!(entry["pay_after_paid_shown"], 1);
    let last = &entry["last_pay_request"];
    assert_eq!(last["card_last4"], "0366");
    assert_eq!(last["card_brand"], "Visa");
    assert_eq!(last["paymentMethod"], 3);
    assert!(
        !h.ledger().await.to_string().contains("4532015112830366"),
        "no full card number"
    );
}

#[tokio::test]
async fn a_payment_in_progress_answers_406_and_looks_unpaid() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"payment_in_progress_ms": 300}))
        .await;
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 0);
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 406);
    assert_eq!(h.query(&order_no).await["orderStatus"], "0");
    h.wait_for(&order_no, "2").await;
    assert_eq!(h.ledger().await["orders"][&order_no]["charges"], 1);
}

#[tokio::test]
async fn knobs_change_the_documented_ambiguities() {
    let h = Harness::new(SimConfig {
        repay_status: 402,
        card_decline_sync: false,
        expired_order_status: "-3".into(),
        auto_create: true,
        ..fast_config()
    })
    .await;
    // A late decline: charged and 0 now, cancelled with errorCode 604 after ticketing.
    let declined = h.order(json!({})).await;
    assert_eq!(h.pay(&declined, 3, visa("Reject")).await["status"], 0);
    let cancelled = h.wait_for(&declined, "-3").await;
    assert_eq!(cancelled["errorCode"], "604");
    assert_eq!(h.ledger().await["orders"][&declined]["charges"], 1);

    let expired = h.order(json!({"paymentDeadlineSeconds": -1})).await;
    assert_eq!(h.query(&expired).await["orderStatus"], "-3");
    assert_eq!(h.pay(&expired, 1, Value::Null).await["status"], 401);

    // auto_create: an order nobody created is payable, and a re-pay is 402 here.
    let made_up = "TESTA20990101000000000";
    assert_eq!(
        h.call("pay.do", json!({"orderNo": made_up})).await["status"],
        0,
        "no paymentMethod = deposit"
    );
    assert_eq!(h.pay(made_up, 1, Value::Null).await["status"], 402);
}

#[tokio::test]
async fn tickets_can_arrive_one_passenger_at_a_time() {
    let h = Harness::new(SimConfig {
        one_passenger_at_a_time: true,
        ticketing_delay: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let passengers = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN", "passengerType": 1}]);
    let order_no = h.order(json!({"passengers": passengers})).await;
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 0);
    let mut saw_partial = false;
    for _ in 0..100 {
        let answer = h.query(&order_no).await;
        let issued = |i: usize| {
            answer["paxTicketInfos"][i]["ticketNos"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        };
        if answer["orderStatus"] == "2" {
            assert!(issued(0) && issued(1));
            assert!(
                saw_partial,
                "the first passenger's ticket was visible before the second's"
            );
            return;
        }
        saw_partial |= issued(0) && !issued(1) && answer["orderStatus"] == "1";
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never ticketed");
}

#[test]
fn every_pay_status_the_rules_answer_is_in_the_shared_table() {
    use super::pay_rules::*;
    use ticketing_tracker::atrip::codes::pay_code;
    for code in [
        ILLEGAL_PARAMETER,
        DEADLINE_PASSED,
        NOT_PAYABLE,
        METHOD_NOT_SUPPORTED,
        IN_PROGRESS,
        PASSENGER_ELEMENT_MISSING,
        CARD_NOT_SUPPORTED,
        CARD_MISMATCH,
        NOT_CONFIRMED,
        PNR_PENDING,
        DECLINED_BY_AIRLINE,
        NEEDS_3DS,
        901,
    ] {
        assert!(
            pay_code(code).is_some(),
            "{code} is not documented in codes.rs"
        );
    }
}
