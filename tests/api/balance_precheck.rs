//! The balance pre-check (rule P1e): with `worker.balance_precheck_s` set, pending deposit
//! orders the balance cannot cover wait, saying why, and no `pay.do` is sent for them; once
//! the deposit is topped up they are paid once. A balance that cannot be read holds nothing.

use std::time::Duration;

use atrip_simulator::SimConfig;
use serde_json::{json, Value};
use ticketing_tracker::config::Settings;

use crate::support::app::TestApp;

async fn app(balance: f64) -> TestApp {
    TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::ZERO,
        deposit_balance: balance,
        ..SimConfig::default()
    })
    .await
}

fn with_precheck(app: &TestApp) -> Settings {
    let mut s = app.settings.clone();
    s.worker.balance_precheck_s = 60;
    s
}

async fn set_balance(app: &TestApp, body: Value) {
    reqwest::Client::new()
        .post(format!("{}/sim/balance", app.sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// An order on the simulator, enqueued for the deposit with the price ATRIP gave.
async fn priced_order(app: &TestApp) -> (String, f64) {
    let created = app
        .atrip
        .create_order(&json!({"passengers": [{"name": "DOE/JANE", "passengerType": 0}]}))
        .await
        .unwrap();
    let price = created.body["totalPrice"]
        .as_f64()
        .expect("order.do gives totalPrice");
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, price)
         VALUES ($1, 1, $2::float8::numeric(14, 2))",
    )
    .bind(&created.order_no)
    .bind(price)
    .execute(app.pool())
    .await
    .unwrap();
    (created.order_no, price)
}

#[tokio::test]
async fn p1e_deposit_orders_the_balance_cannot_cover_wait_unsent_and_are_paid_once_after_a_top_up()
{
    let app = app(0.0).await;
    let (first, price) = priced_order(&app).await;
    let (second, _) = priced_order(&app).await;
    // Enough for the first order, not for both.
    set_balance(&app, json!({"amount": price * 1.5})).await;
    let worker = app.worker_with(&with_precheck(&app), "precheck");

    let held = worker.check_balance().await.unwrap();
    assert_eq!(held, vec![second.clone()], "the one the claim takes second");
    let report = worker.step().await.unwrap();
    assert_eq!(report.claimed, 1, "only the covered order is claimed");
    let row = app.job(&second).await;
    assert_eq!(row.state, "pending");
    let why = row.last_error.clone().unwrap();
    assert!(
        why.contains("waits for the deposit") && why.contains(&second) && why.contains("USD"),
        "{why}"
    );
    assert_eq!(app.pay_requests(&second), 0, "no pay.do while it waits");

    // The first is paid; the balance is now short of the second: it waits again, unsent.
    for _ in 0..20 {
        if app.job(&first).await.state == "ticketed" {
            break;
        }
        worker.step().await.unwrap();
        app.advance(Duration::from_secs(1)).await;
    }
    app.assert_ticketed_once(&first, 1).await;
    app.advance(Duration::from_secs(61)).await;
    assert_eq!(worker.check_balance().await.unwrap(), vec![second.clone()]);
    assert_eq!(worker.step().await.unwrap().claimed, 0);
    assert_eq!(app.pay_requests(&second), 0);

    // Topped up: the next check holds nothing and the order is paid, once.
    set_balance(&app, json!({"amount": price * 10.0})).await;
    app.advance(Duration::from_secs(61)).await;
    assert!(worker.check_balance().await.unwrap().is_empty());
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&second, 1).await;
    app.assert_ticketed_once(&first, 1).await;
}

#[tokio::test]
async fn p1e_an_unreadable_balance_holds_nothing_back_and_the_check_is_off_by_default() {
    let app = app(0.0).await;
    let (order, price) = priced_order(&app).await;
    set_balance(&app, json!({"amount": price * 2.0, "mode": "garbled"})).await;
    let worker = app.worker_with(&with_precheck(&app), "precheck");
    assert!(worker.check_balance().await.unwrap().is_empty());
    // Off (the default): nothing is asked, nothing held, whatever the balance.
    set_balance(&app, json!({"amount": 0.0, "mode": "ok"})).await;
    assert!(app.worker().check_balance().await.unwrap().is_empty());
    assert_eq!(app.job(&order).await.last_error, None);
    set_balance(&app, json!({"amount": price * 2.0})).await;
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&order, 1).await;
}

#[tokio::test]
async fn p1e_rows_without_a_price_and_other_methods_are_never_held() {
    let app = app(0.0).await;
    let unpriced = app.order_and_enqueue(1, None, json!({})).await;
    let byoa = app.order_and_enqueue(4, None, json!({})).await;
    let worker = app.worker_with(&with_precheck(&app), "precheck");
    assert!(worker.check_balance().await.unwrap().is_empty());
    for order in [&unpriced, &byoa] {
        assert_eq!(app.job(order).await.last_error, None);
    }
}

#[tokio::test]
async fn p1e_while_the_check_runs_a_new_deposit_order_waits_for_it_and_a_stopped_check_holds_nothing(
) {
    let app = app(0.0).await;
    let (first, price) = priced_order(&app).await;
    set_balance(&app, json!({"amount": price * 10.0})).await;
    let worker = app.worker_with(&with_precheck(&app), "precheck");
    assert!(worker.check_balance().await.unwrap().is_empty());

    // Enqueued after the check: not claimed until a check has weighed it, however the
    // balance stands; an order without a price, or of another method, is not held.
    let (late, _) = priced_order(&app).await;
    let unpriced = app.order_and_enqueue(1, None, json!({})).await;
    let report = worker.step().await.unwrap();
    assert_eq!(report.claimed, 2, "the cleared one and the unpriced one");
    assert_eq!(app.job(&late).await.state, "pending");
    assert_eq!(app.pay_requests(&late), 0);
    assert!(app.pay_requests(&first) + app.pay_requests(&unpriced) == 2);

    // The next check clears it, and it is paid once.
    assert!(worker.check_balance().await.unwrap().is_empty());
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&late, 1).await;

    // A check that stopped (no beat for three of its intervals) holds nothing back.
    let (after, _) = priced_order(&app).await;
    assert_eq!(
        worker.step().await.unwrap().claimed,
        0,
        "the check still counts"
    );
    app.advance(Duration::from_secs(181)).await;
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&after, 1).await;
}
