//! Several worker replicas on one database share 500 orders without ever paying one twice.

use std::time::{Duration, Instant};

use atrip_simulator::SimConfig;
use tokio_util::sync::CancellationToken;

use crate::support::app::TestApp;

const ORDERS: u64 = 500;

/// Runs `replicas` workers (each with its own pool, as separate processes have) with
/// `Worker::run` on the real clock until all `ORDERS` orders are finished, then checks the
/// simulator's ledger.
async fn replicas_pay_every_order_exactly_once(replicas: usize) {
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        ticketing_delay: Duration::from_millis(50),
        // Compression costs CPU on both sides and is not what this test is about.
        gzip: false,
        ..SimConfig::default()
    })
    .await;
    let numbers: Vec<String> = (0..ORDERS)
        .map(|i| format!("TESTA{}", 2026112500000001u64 + i))
        .collect();
    app.enqueue_methods_in_turn(&numbers, 0).await;

    let stop = CancellationToken::new();
    let mut running = Vec::new();
    let ids: Vec<String> = (0..replicas).map(|n| format!("replica-{n}")).collect();
    for id in &ids {
        let worker = app.replica(&app.settings, id, 8).await;
        let stop = stop.clone();
        running.push(tokio::spawn(async move { worker.run(stop).await }));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    while app.store.unfinished().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "unfinished after 120 s: {:?}",
            app.store.count_by_state().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    for run in running {
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("run() returns after shutdown")
            .unwrap()
            .unwrap();
    }

    assert_eq!(
        app.store.count_by_state().await.unwrap(),
        [("ticketed".to_owned(), ORDERS as i64)],
        "every order ticketed"
    );
    let ledger = app.sim.ledger();
    let orders = ledger["orders"].as_object().unwrap();
    assert_eq!(orders.len(), ORDERS as usize);
    for (order_no, entry) in orders {
        assert_eq!(entry["charges"], 1, "{order_no}: {entry}");
        assert_eq!(entry["pay_requests"], 1, "{order_no}: {entry}");
        assert_eq!(entry["pay_after_paid_shown"], 0, "{order_no}: {entry}");
    }
    assert_eq!(ledger["totals"]["pay_requests"], ORDERS, "{ledger:?}");
    assert_eq!(ledger["totals"]["charges"], ORDERS);
    // Every replica took part; the claim kept them apart.
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT worker FROM ticketing_events ORDER BY worker")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(owners, ids);
    let sent = [
        (1, false, false),
        (3, true, false),
        (4, false, false),
        (5, true, true),
    ];
    for (i, (method, card, three_ds)) in sent.into_iter().enumerate() {
        let request = &orders[&numbers[i]]["last_pay_request"];
        assert_eq!(request["paymentMethod"], method);
        assert_eq!(request["has_credit_card"], card, "method {method}");
        assert_eq!(request["has_three_ds"], three_ds, "method {method}");
    }
    eprintln!("{replicas} replicas finished {ORDERS} orders in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_pay_500_orders_exactly_once_each() {
    replicas_pay_every_order_exactly_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_pay_500_orders_exactly_once_each() {
    replicas_pay_every_order_exactly_once(4).await;
}
