//! Tests of the injected faults: lost answers after a charge, failures before one, garbage,
//! query errors, chaos mode and shutdown, always checking the ledger's charge count.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::tests::{fast_config, visa, Harness};
use super::SimConfig;

impl Harness {
    /// A pay.do whose transport outcome matters more than its body.
    async fn raw_pay(
        &self,
        order_no: &str,
        timeout: Duration,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url("pay.do"))
            .timeout(timeout)
            .header("x-atlas-client-id", "sim-client")
            .header("x-atlas-client-secret", "sim-secret")
            .json(&json!({"orderNo": order_no, "paymentMethod": 1, "creditCard": null}))
            .send()
            .await
    }

    async fn charges(&self, order_no: &str) -> Value {
        self.ledger().await["orders"][order_no]["charges"].clone()
    }
}

/// The whole exchange as the worker sees it: an error anywhere (head or body) is "no answer".
async fn outcome(response: reqwest::Result<reqwest::Response>) -> Result<Value, reqwest::Error> {
    response?.json::<Value>().await
}

#[tokio::test]
async fn a_dropped_answer_after_the_charge_leaves_exactly_one_charge() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"drop_after_charge": 1})).await;
    let error = h.raw_pay(&order_no, Duration::from_secs(2)).await;
    assert!(
        error.is_err(),
        "the client gets no response at all: {error:?}"
    );
    assert_eq!(h.charges(&order_no).await, 1);
    assert_eq!(
        h.ledger().await["orders"][&order_no]["pay_statuses"],
        json!([null])
    );
    // The worker's recovery: query, see the order paid, never pay again.
    assert_ne!(h.query(&order_no).await["orderStatus"], "0");
    assert_eq!(
        h.ledger().await["orders"][&order_no]["pay_after_paid_shown"],
        0
    );
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 404);
    assert_eq!(h.charges(&order_no).await, 1);
}

#[tokio::test]
async fn failures_before_the_charge_charge_nothing() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(
        &order_no,
        json!({"reset_before_charge": 1, "fail_before_charge": 1}),
    )
    .await;
    assert!(outcome(h.raw_pay(&order_no, Duration::from_secs(2)).await)
        .await
        .is_err());
    let page = h.raw_pay(&order_no, Duration::from_secs(2)).await.unwrap();
    assert_eq!(page.status(), 502);
    assert!(page.text().await.unwrap().starts_with("<html>"));
    assert_eq!(h.charges(&order_no).await, 0);
    assert_eq!(
        h.pay(&order_no, 1, Value::Null).await["status"],
        0,
        "the third attempt goes through"
    );
    assert_eq!(
        h.ledger().await["orders"][&order_no]["pay_statuses"],
        json!([null, null, 0])
    );
}

#[tokio::test]
async fn a_held_answer_times_the_client_out_after_the_charge() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"timeout_after_charge": 1}))
        .await;
    let error = h
        .raw_pay(&order_no, Duration::from_millis(300))
        .await
        .expect_err("held");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(h.charges(&order_no).await, 1);
}

#[tokio::test]
async fn garbled_answers_are_never_valid_atrip_json() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"garbled": 4})).await;
    for _ in 0..4 {
        let response = h.raw_pay(&order_no, Duration::from_secs(2)).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let parsed = serde_json::from_str::<Value>(&body).ok();
        let status = parsed
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_i64);
        assert!(
            status.is_none(),
            "garbled body carries an integer status: {body}"
        );
    }
    // The first garbled pay.do still charged: the client simply cannot tell.
    assert_eq!(h.charges(&order_no).await, 1);
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 404);
}

#[tokio::test]
async fn scripted_query_errors_and_outcomes() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(
        &order_no,
        json!({"rate_limit_queries": 1, "query_status": 1, "query_status_code": 705, "fail_ticketing": "605"}),
    )
    .await;
    let limited = h
        .http
        .post(h.url("queryOrderDetails.do"))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "sim-secret")
        .json(&json!({"orderNo": order_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.json::<Value>().await.unwrap()["retryAfter"], 1);
    assert_eq!(
        h.call("queryOrderDetails.do", json!({"orderNo": order_no}))
            .await["status"],
        705
    );
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 0);
    let cancelled = h.wait_for(&order_no, "-3").await;
    assert_eq!(cancelled["errorCode"], "605");
    assert!(cancelled["errorMessage"].is_string());

    let pending = h.order(json!({})).await;
    h.scenario(&pending, json!({"pnr_pending": true, "delay_ms": 150}))
        .await;
    let started = Instant::now();
    assert_eq!(h.pay(&pending, 1, Value::Null).await["status"], 615);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(h.charges(&pending).await, 1);

    let forced = h.order(json!({})).await;
    h.scenario(&forced, json!({"pay_status": 411})).await;
    assert_eq!(h.pay(&forced, 1, Value::Null).await["status"], 411);
    assert_eq!(
        h.charges(&forced).await,
        0,
        "411 is not an accepted class: no charge"
    );

    let bad = h
        .http
        .post(h.url("sim/orders/NOPE/scenario"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let typo = h
        .http
        .post(h.url(&format!("sim/orders/{forced}/scenario")))
        .body("{\"dropp\":1}")
        .send()
        .await;
    assert_eq!(typo.unwrap().status(), 400);
}

#[tokio::test]
async fn concurrent_payments_of_one_order_charge_once() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    let attempts = (0..10).map(|_| h.pay(&order_no, 3, visa("JANE")));
    let statuses: Vec<i64> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 0).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(h.charges(&order_no).await, 1);
}

#[tokio::test]
async fn chaos_never_charges_an_order_twice() {
    let h = Harness::new(SimConfig {
        fault_rate: 0.6,
        fault_seed: Some(42),
        ..fast_config()
    })
    .await;
    let mut orders = Vec::new();
    for _ in 0..12 {
        orders.push(h.order(json!({})).await);
    }
    // A careless client that re-pays after every failure: chaos must still never double-charge.
    let rounds = orders.iter().map(|order_no| async {
        for _ in 0..3 {
            let _ = outcome(h.raw_pay(order_no, Duration::from_millis(600)).await).await;
        }
    });
    futures_util::future::join_all(rounds).await;
    let ledger = h.ledger().await;
    assert!(ledger["totals"]["faults_injected"].as_u64().unwrap() > 0);
    for order_no in &orders {
        assert!(
            ledger["orders"][order_no]["charges"].as_u64().unwrap() <= 1,
            "{order_no}"
        );
    }
}

#[tokio::test]
async fn shutdown_ends_the_server_even_with_a_held_request() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"timeout_after_charge": 1}))
        .await;
    let held = tokio::spawn({
        let http = h.http.clone();
        let url = h.url("pay.do");
        async move {
            http.post(url)
                .header("x-atlas-client-id", "sim-client")
                .header("x-atlas-client-secret", "sim-secret")
                .json(&json!({"orderNo": order_no, "paymentMethod": 1}))
                .send()
                .await
        }
    });
    // Wait until the request is being held (charged), without a fixed sleep.
    for _ in 0..100 {
        if h.sim.ledger()["totals"]["charges"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let base = h.sim.base_url();
    h.sim.shutdown();
    tokio::time::timeout(Duration::from_secs(3), h.sim.stopped())
        .await
        .expect("server stops promptly");
    assert!(
        held.await.unwrap().is_err(),
        "the held request ends without an answer"
    );
    let after = reqwest::Client::new()
        .get(format!("{base}/sim/ledger"))
        .send()
        .await;
    assert!(after.is_err(), "nothing listens any more");
}
