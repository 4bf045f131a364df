//! Shutdown while `pay.do` calls are in flight: no new claims, in-flight steps reach their
//! recorded end within the grace, and no row is ever left half-written.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::app::{wait_until, TestApp};

/// Creates `n` orders whose every request takes `delay_ms`, and enqueues them (deposit).
async fn slow_orders(app: &TestApp, n: usize, delay_ms: u64) -> Vec<String> {
    let mut orders = Vec::new();
    for _ in 0..n {
        let order_no = app.create_order(json!({})).await;
        app.scenario(&order_no, json!({"delay_ms": delay_ms})).await;
        app.enqueue(&order_no, 1, None).await;
        orders.push(order_no);
    }
    orders
}

/// Every row's columns agree with its state, and its last event with the row.
async fn assert_consistent(app: &TestApp, order_no: &str) {
    let row = app.job(order_no).await;
    match row.state.as_str() {
        "paying" => {
            assert!(row.pay_started_at.is_some(), "{order_no}: {row:?}");
            assert_eq!(row.pay_attempts, 1, "{order_no}");
            assert!(row.paid_at.is_none(), "{order_no}");
        }
        "ticketing" => {
            assert!(row.paid_at.is_some(), "{order_no}: {row:?}");
            assert_eq!(row.pay_attempts, 1, "{order_no}");
            assert_eq!(row.atrip_status, Some(0), "{order_no}");
        }
        "pending" => assert_eq!(app.charges(order_no), 0, "{order_no} pending but charged"),
        other => panic!("{order_no}: unexpected state {other}"),
    }
    let states = app.event_states(order_no).await;
    assert_eq!(
        states.last().map(String::as_str),
        Some(row.state.as_str()),
        "{order_no}: history disagrees with the row"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_pay_calls_record_their_answers_and_claims_nothing_new() {
    let app = TestApp::new().await;
    let orders = slow_orders(&app, 4, 1000).await;
    let worker = app.worker_with(&app.settings, "stopping-worker");
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let sim = &app;
    wait_until(Duration::from_secs(5), "4 pay.do in flight", move || {
        let n = sim.totals()["pay_requests"].as_u64();
        async move { n == Some(4) }
    })
    .await;

    stop.cancel();
    let cancelled = Instant::now();
    // An order that arrives after the stop signal (and after the claim loop saw it) is left
    // for the next process.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = app.order_and_enqueue(1, None, json!({})).await;
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run() returns within the grace")
        .unwrap()
        .unwrap();
    assert!(
        cancelled.elapsed() >= Duration::from_millis(700),
        "run() returned before the in-flight calls were answered"
    );

    for order_no in &orders {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "ticketing", "{order_no}: answer recorded");
        assert_eq!(row.lease_owner, None, "{order_no}: lease released");
        assert_consistent(&app, order_no).await;
        assert_eq!(app.pay_requests(order_no), 1);
        assert_eq!(app.charges(order_no), 1);
    }
    let row = app.job(&late).await;
    assert_eq!((row.state.as_str(), row.lease_token), ("pending", 0));
    assert_eq!(app.pay_requests(&late), 0);
}

#[tokio::test]
async fn a_grace_period_shorter_than_the_pay_calls_leaves_rows_paying_and_consistent() {
    let app = TestApp::new().await;
    // Answers after 3 s, inside a 4 s pay timeout, long after a 200 ms grace.
    let orders = slow_orders(&app, 3, 3000).await;
    let mut settings = app.settings.clone();
    settings.atrip.pay_timeout_ms = 4000;
    settings.worker.shutdown_grace_ms = 200;
    let worker = app.worker_with(&settings, "hasty-worker");
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let sim = &app;
    wait_until(Duration::from_secs(5), "3 pay.do in flight", move || {
        let n = sim.totals()["pay_requests"].as_u64();
        async move { n == Some(3) }
    })
    .await;
    for order_no in &orders {
        // The calls in flight keep their delay; later requests are prompt.
        app.scenario(order_no, json!({})).await;
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run() returns once the grace is over")
        .unwrap()
        .unwrap();
    for order_no in &orders {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "paying", "{order_no}: the answer is not in yet");
        assert_eq!(row.lease_owner.as_deref(), Some("hasty-worker"));
        assert_consistent(&app, order_no).await;
    }

    // The abandoned calls still record their answers when they come (nothing is lost between
    // send and record), and a fresh worker finishes the orders without paying again.
    let (sim, list) = (&app, &orders);
    wait_until(
        Duration::from_secs(5),
        "the late answers",
        move || async move {
            let mut all = true;
            for order_no in list {
                all &= sim.job(order_no).await.state == "ticketing";
            }
            all
        },
    )
    .await;
    let next = app.worker_with(&app.settings, "next-worker");
    app.settle(&next, 200).await;
    for order_no in &orders {
        assert_eq!(app.job(order_no).await.state, "ticketed");
        assert_eq!(app.pay_requests(order_no), 1);
        assert_eq!(app.charges(order_no), 1);
    }
}
