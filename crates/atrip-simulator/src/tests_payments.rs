//! Tests of how payments are taken and settled: the processing time, the duplicate guard on and
//! off, `paymentAttempted`, and the ledger's overlap and double-charge counters.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::tests::{fast_config, visa, Harness};
use super::SimConfig;

impl Harness {
    /// Polls the ledger until the order has received `n` pay.do requests (a spawned pay.do is
    /// then being processed), without a fixed sleep.
    pub(super) async fn wait_pay_requests(&self, order_no: &str, n: u64) {
        for _ in 0..200 {
            let seen = self.sim.order_ledger(order_no).expect("order exists")["pay_requests"]
                .as_u64()
                .unwrap_or_default();
            if seen >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{order_no} never received {n} pay.do");
    }
}

fn processing(ms: u64, duplicate_guard: bool) -> SimConfig {
    SimConfig {
        payment_processing: Duration::from_millis(ms),
        duplicate_guard,
        ..fast_config()
    }
}

#[tokio::test]
async fn with_the_guard_a_pay_during_processing_answers_406_and_charges_nothing() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    // The per-order scenario field overrides the simulator's processing time (0 here).
    h.scenario(&order_no, json!({"payment_processing_ms": 400}))
        .await;
    let started = Instant::now();
    let (first, second) = tokio::join!(h.pay(&order_no, 3, visa("JANE")), async {
        h.wait_pay_requests(&order_no, 1).await;
        let during = h.query(&order_no).await;
        assert_eq!(during["orderStatus"], "0", "unpaid while processing");
        assert_eq!(during["paymentAttempted"], true, "the VCC pay.do was taken");
        assert!(during["payTime"].is_null());
        assert_eq!(h.sim.order_ledger(&order_no).unwrap()["charges"], 0);
        h.pay(&order_no, 3, visa("JANE")).await
    });
    assert_eq!(second["status"], 406, "{second}");
    assert_eq!(first["status"], 0, "{first}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered when settled"
    );
    assert_eq!(h.query(&order_no).await["orderStatus"], "1");
    assert_eq!(h.pay(&order_no, 3, visa("JANE")).await["status"], 404);
    let entry = h.sim.order_ledger(&order_no).unwrap();
    assert_eq!(entry["charges"], 1);
    assert_eq!(entry["max_overlapping_payments"], 1);
    assert_eq!(entry["pay_statuses"], json!([406, 0, 404]));
    let totals = &h.ledger().await["totals"];
    assert_eq!(totals["pay_requests_over_one"], 2);
    assert_eq!(totals["double_charges"], 0);
}

#[tokio::test]
async fn without_the_guard_overlapping_payments_each_charge() {
    let h = Harness::new(processing(300, false)).await;
    let order_no = h.order(json!({})).await;
    let (first, second) = tokio::join!(h.pay(&order_no, 1, Value::Null), async {
        h.wait_pay_requests(&order_no, 1).await;
        let during = h.query(&order_no).await;
        assert_eq!(during["orderStatus"], "0");
        assert!(
            during["paymentAttempted"].is_null(),
            "deposit: VCC only field"
        );
        h.pay(&order_no, 1, Value::Null).await
    });
    assert_eq!(
        (first["status"].as_i64(), second["status"].as_i64()),
        (Some(0), Some(0))
    );
    // Only overlapping requests double-charge: once a payment settled the order is paid.
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 404);
    let ledger = h.ledger().await;
    let entry = &ledger["orders"][&order_no];
    assert_eq!(entry["charges"], 2);
    assert_eq!(entry["max_overlapping_payments"], 2);
    assert_eq!(entry["pay_requests"], 3);
    assert_eq!(ledger["totals"]["charges"], 2);
    assert_eq!(ledger["totals"]["double_charges"], 1);
    assert_eq!(ledger["totals"]["pay_requests_over_one"], 2);
    // The first payment to settle is the one the order shows; ticketing goes on as usual.
    let ticketed = h.wait_for(&order_no, "2").await;
    assert_eq!(ticketed["paymentMethod"], 1);
}

#[tokio::test]
async fn without_the_guard_a_lost_answer_still_charges_when_processing_ends() {
    let h = Harness::new(processing(200, false)).await;
    let order_no = h.order(json!({})).await;
    h.scenario(&order_no, json!({"drop_after_charge": 1})).await;
    let dropped = h
        .http
        .post(h.url("pay.do"))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "sim-secret")
        .json(&json!({"orderNo": order_no, "paymentMethod": 1}))
        .send()
        .await;
    assert!(dropped.is_err(), "no answer: {dropped:?}");
    let entry = h.sim.order_ledger(&order_no).unwrap();
    assert_eq!(entry["charges"], 1, "the drop comes after the charge");
    assert_eq!(entry["pay_statuses"], json!([null]));
}

#[tokio::test]
async fn payment_attempted_is_shown_for_vcc_only() {
    let h = Harness::new(fast_config()).await;
    let vcc = h.order(json!({})).await;
    assert!(h.query(&vcc).await["paymentAttempted"].is_null());
    assert_eq!(h.pay(&vcc, 3, visa("JANE")).await["status"], 0);
    assert_eq!(h.query(&vcc).await["paymentAttempted"], true);
    assert_eq!(h.wait_for(&vcc, "2").await["paymentAttempted"], true);

    // MoR follows the documentation ("VCC only"): never filled.
    let mor = h.order(json!({})).await;
    assert_eq!(h.pay(&mor, 5, visa("JANE")).await["status"], 0);
    assert!(h.query(&mor).await["paymentAttempted"].is_null());
}

#[tokio::test]
async fn pay_do_refusals_echo_the_order_number_unless_told_not_to() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({"supportPaymentMethods": [1]})).await;
    let refused = h.pay(&order_no, 3, visa("JANE")).await;
    assert_eq!(
        refused,
        json!({
            "orderNo": order_no, "pnrCode": null, "paymentMethod": null, "airlines": null,
            "status": 403, "msg": refused["msg"].clone(),
        })
    );
    assert!(refused["msg"].is_string());
    let unknown = h
        .call(
            "pay.do",
            json!({"orderNo": "TESTA00000000000000000", "paymentMethod": 1}),
        )
        .await;
    assert_eq!(unknown["orderNo"], "TESTA00000000000000000");

    let h = Harness::new(SimConfig {
        error_echoes_order_no: false,
        ..fast_config()
    })
    .await;
    let order_no = h.order(json!({"supportPaymentMethods": [1]})).await;
    let refused = h.pay(&order_no, 3, visa("JANE")).await;
    assert_eq!(
        (refused["status"].as_i64(), refused["orderNo"].is_null()),
        (Some(403), true)
    );
}

#[tokio::test]
async fn a_synchronous_card_decline_cancels_the_order_for_the_query_to_settle() {
    let h = Harness::new(fast_config()).await;
    for (holder, code) in [("Reject", "604"), ("Three DS", "616")] {
        let order_no = h.order(json!({})).await;
        let declined = h.pay(&order_no, 3, visa(holder)).await;
        assert_eq!(declined["status"].to_string(), code);
        let cancelled = h.query(&order_no).await;
        assert_eq!(cancelled["orderStatus"], "-3", "{cancelled}");
        assert_eq!(cancelled["errorCode"], code);
        assert!(cancelled["errorMessage"].is_string() && cancelled["airlineMessage"].is_string());
        assert!(cancelled["payTime"].is_null());
        assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 402);
        assert_eq!(h.sim.order_ledger(&order_no).unwrap()["charges"], 0);
    }

    let h = Harness::new(SimConfig {
        decline_cancels_order: false,
        ..fast_config()
    })
    .await;
    let order_no = h.order(json!({})).await;
    assert_eq!(h.pay(&order_no, 3, visa("Reject")).await["status"], 604);
    let unpaid = h.query(&order_no).await;
    assert_eq!(
        (
            unpaid["orderStatus"].as_str(),
            unpaid["errorCode"].is_null()
        ),
        (Some("0"), true)
    );
}
