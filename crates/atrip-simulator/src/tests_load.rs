//! Tests of the simulator under load: the answer latency (every ATRIP endpoint, many requests at
//! once, cut short by shutdown) and query rate-limit storms.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::tests::{fast_config, Harness};
use super::SimConfig;

fn slow(mean_ms: u64, jitter_ms: u64) -> SimConfig {
    SimConfig {
        latency_mean: Duration::from_millis(mean_ms),
        latency_jitter: Duration::from_millis(jitter_ms),
        ..fast_config()
    }
}

/// How long `call` takes.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = call.await;
    (out, started.elapsed())
}

#[tokio::test]
async fn latency_delays_every_atrip_answer_but_not_the_control_endpoints() {
    let h = Harness::new(slow(300, 100)).await;
    let (order_no, took) = timed(h.order(json!({}))).await;
    assert!(took >= Duration::from_millis(200), "order.do {took:?}");
    let (paid, took) = timed(h.pay(&order_no, 1, Value::Null)).await;
    assert_eq!(paid["status"], 0);
    assert!(took >= Duration::from_millis(200), "pay.do {took:?}");
    let (_, took) = timed(h.query(&order_no)).await;
    assert!(took >= Duration::from_millis(200), "query {took:?}");
    let (_, took) = timed(h.ledger()).await;
    assert!(took < Duration::from_millis(200), "/sim/ledger {took:?}");
}

#[tokio::test]
async fn latency_scales_to_thousands_of_requests_in_flight() {
    let h = Harness::new(slow(500, 0)).await;
    let order_no = h.order(json!({})).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = h.url("queryOrderDetails.do");
    let started = Instant::now();
    let queries = (0..2000).map(|_| {
        http.post(&url)
            .header("x-atlas-client-id", "sim-client")
            .header("x-atlas-client-secret", "sim-secret")
            .json(&json!({"orderNo": order_no}))
            .send()
    });
    let answers = futures_util::future::join_all(queries).await;
    let took = started.elapsed();
    assert!(answers
        .iter()
        .all(|a| a.as_ref().is_ok_and(|r| r.status() == 200)));
    // One after the other this would take 1000 s; waiting together, about one latency.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(h.ledger().await["totals"]["queries"], 2000);
}

#[tokio::test]
async fn shutdown_cuts_the_latency_short() {
    let h = Harness::new(slow(60_000, 0)).await;
    let request = tokio::spawn({
        let http = h.http.clone();
        let url = h.url("order.do");
        async move {
            http.post(url)
                .header("x-atlas-client-id", "sim-client")
                .header("x-atlas-client-secret", "sim-secret")
                .json(&json!({}))
                .send()
                .await
        }
    });
    for _ in 0..200 {
        if h.ledger().await["orders"]
            .as_object()
            .is_some_and(|o| !o.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.sim.shutdown();
    tokio::time::timeout(Duration::from_secs(3), h.sim.stopped())
        .await
        .expect("server stops promptly");
    // Whether the client got the answer or a closed connection, it did not wait a minute.
    let _ = tokio::time::timeout(Duration::from_secs(3), request)
        .await
        .expect("the request ended");
}

#[tokio::test]
async fn a_storm_rate_limits_queries_but_never_pay_do() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    let storm = h
        .http
        .post(h.url("sim/storm"))
        .json(&json!({"ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(storm.status(), 200);
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
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["code"], 429);
    assert_eq!(body["retryAfter"], 1);
    assert!(body["message"].is_string() && body["limitType"].is_string());
    assert!(body["limit"].is_number() && body.get("status").is_none());
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    h.query(&order_no).await; // asserts HTTP 200 and status 0: the storm is over

    // The in-process form, and the count in the totals.
    h.sim.storm(Duration::from_secs(60));
    let during = h
        .http
        .post(h.url("queryOrderDetails.do"))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "sim-secret")
        .json(&json!({"orderNo": order_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 429);
    h.sim.storm(Duration::ZERO);
    h.query(&order_no).await;
    let totals = &h.ledger().await["totals"];
    assert_eq!(totals["storm_answers"], 2);
    assert_eq!(totals["queries"], 4);
    let bad = h
        .http
        .post(h.url("sim/storm"))
        .json(&json!({"seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
