//! The pay-once protocol under crashes and lost requests: a `paying` row is always recovered
//! with the order query first, and a second `pay.do` goes out only when the order is proven
//! unpaid after the previous attempt had time to land, within `max_pay_attempts`.

use std::time::Duration;

use serde_json::json;
use ticketing_tracker::domain::State;

use crate::support::app::{wait_until, TestApp};

#[tokio::test]
async fn an_order_is_charged_once_when_the_worker_dies_after_sending_pay() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // ATRIP charges, then never answers: the worker is stuck between send and record.
    app.scenario(&order_no, json!({"timeout_after_charge": 1}))
        .await;
    let first = app.worker_with(&app.settings, "worker-a");
    let dying = tokio::spawn(async move { first.step().await });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(Duration::from_secs(5), "the charge", move || async move {
        sim.charges(order) == 1
    })
    .await;
    // The process dies here, before the answer could be recorded.
    dying.abort();
    assert!(dying.await.unwrap_err().is_cancelled());

    let row = app.job(&order_no).await;
    assert_eq!(
        row.state, "paying",
        "the intent was committed before the send"
    );
    assert_eq!(row.pay_attempts, 1);
    assert!(row.pay_started_at.is_some());
    assert_eq!(row.lease_owner.as_deref(), Some("worker-a"));

    let second = app.worker_with(&app.settings, "worker-b");
    assert_eq!(
        second.step().await.unwrap().claimed,
        0,
        "the dead worker's lease still holds"
    );
    app.clock
        .advance(app.settings.worker.lease() + Duration::from_secs(1));
    let round = second.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let outcome = &round.outcomes[0];
    assert_eq!(outcome.from, "paying");
    assert!(!outcome.pay_sent, "recovery starts with the order query");
    assert_eq!(outcome.to, Some(State::Ticketing), "{}", outcome.note);

    app.settle(&second, 200).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(row.pay_attempts, 1);
    let workers: Vec<Option<String>> = app
        .store
        .events(&order_no)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.worker)
        .collect();
    assert_eq!(workers.first(), Some(&Some("worker-a".to_owned())));
    assert_eq!(workers.last(), Some(&Some("worker-b".to_owned())));
}

#[tokio::test]
async fn a_pay_answer_lost_after_the_charge_is_recovered_by_query_without_paying_again() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"drop_after_charge": 1}))
        .await;

    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent);
    assert_eq!(round.outcomes[0].to, Some(State::Paying));
    let row = app.job(&order_no).await;
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("unknown"),
        "{error}"
    );
    assert_eq!(app.charges(&order_no), 1);

    app.settle(&worker, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

#[tokio::test]
async fn a_pay_lost_before_the_charge_is_sent_again_only_after_the_timeout_and_grace() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"reset_before_charge": 1}))
        .await;

    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent);
    assert_eq!(round.outcomes[0].to, Some(State::Paying));
    assert_eq!(
        (app.pay_requests(&order_no), app.charges(&order_no)),
        (1, 0)
    );
    let intent = app.job(&order_no).await.pay_started_at.unwrap();
    let settled = intent
        + chrono::Duration::milliseconds(
            (app.settings.atrip.pay_timeout_ms + app.settings.worker.pay_grace_ms) as i64,
        );

    // Recovery: the query says "0", but the first pay.do could still land.
    app.clock
        .advance(app.settings.worker.recovery_delay() + Duration::from_millis(50));
    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(round.outcomes[0].to, Some(State::Paying));
    let row = app.job(&order_no).await;
    assert_eq!(row.order_status.as_deref(), Some("0"));
    assert_eq!(
        row.run_at, settled,
        "due again when the first attempt settled"
    );

    // Even when made due early, a step before that point sends nothing.
    sqlx::query("UPDATE ticketing_jobs SET run_at = $1 WHERE order_no = $2")
        .bind(app.clock.now() - chrono::Duration::seconds(1))
        .bind(&order_no)
        .execute(app.pool())
        .await
        .unwrap();
    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    assert!(app.clock.now() < settled);
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(app.pay_requests(&order_no), 1);

    // Past it: a new intent, recorded before the one new pay.do.
    let now = app.clock.now();
    app.clock
        .advance((settled - now).to_std().unwrap() + Duration::from_millis(50));
    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let outcome = &round.outcomes[0];
    assert!(outcome.pay_sent, "{}", outcome.note);
    assert_eq!(outcome.to, Some(State::Ticketing), "{}", outcome.note);
    let row = app.job(&order_no).await;
    assert_eq!(row.pay_attempts, 2);
    assert!(row.pay_started_at.unwrap() > intent);
    let kinds: Vec<String> = app
        .store
        .events(&order_no)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let intents: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| *k == "pay_intent")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(intents.len(), 2, "{kinds:?}");
    assert_eq!(
        kinds.get(intents[1] + 1).map(String::as_str),
        Some("pay_answered"),
        "the second intent is recorded before its pay.do is answered: {kinds:?}"
    );

    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 2).await;
    assert_eq!(row.pay_attempts, 2);
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["pay_after_paid_shown"], 0, "{ledger}");
}

#[tokio::test]
async fn an_order_still_unpaid_after_max_pay_attempts_goes_to_review_without_another_pay() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.max_pay_attempts = 2;
    let worker = app.worker_with(&settings, "attempts-worker");
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"reset_before_charge": 5}))
        .await;

    app.settle(&worker, 200).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("max_pay_attempts"),
        "{error}"
    );
    assert_eq!(row.pay_attempts, 2);
    assert_eq!(row.order_status.as_deref(), Some("0"));
    // A day later nothing is due, and nothing more was sent.
    app.clock.advance(Duration::from_secs(86_400));
    assert_eq!(worker.step().await.unwrap().claimed, 0);
    let ledger = app.ledger(&order_no);
    assert_eq!(ledger["pay_requests"], 2, "{ledger}");
    assert_eq!(ledger["charges"], 0, "{ledger}");
}

#[tokio::test]
async fn a_payment_still_landing_at_the_rows_deadline_is_found_by_the_query_instead_of_failed() {
    let app = TestApp::new().await;
    let order_no = app.create_order(json!({})).await;
    // The enqueuer wants it paid within 1 s. ATRIP takes the money but never answers, and for
    // 4 s (real time) its query still shows the order unpaid.
    app.store
        .enqueue(
            &order_no,
            1,
            None,
            Some(app.clock.now() + chrono::Duration::seconds(1)),
        )
        .await
        .unwrap();
    app.scenario(
        &order_no,
        json!({"timeout_after_charge": 1, "payment_in_progress_ms": 4000}),
    )
    .await;
    let worker = app.worker();
    let round = worker.step().await.unwrap();
    assert_eq!(
        round.outcomes[0].to,
        Some(State::Paying),
        "timed out: unknown"
    );

    // Past the row's deadline the query says "0", but the attempt has not settled yet.
    app.clock
        .advance(app.settings.worker.recovery_delay() + Duration::from_millis(50));
    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let row = app.job(&order_no).await;
    assert!(row.pay_deadline.unwrap() < app.clock.now());
    assert_eq!(row.order_status.as_deref(), Some("0"));
    assert_eq!(row.state, "paying", "{:?}", row.last_error);
    assert!(row.finalized_at.is_none());

    // The payment shows; the next query finds it.
    let (sim, order) = (&app, order_no.as_str());
    wait_until(Duration::from_secs(6), "the payment to show", move || {
        let status = sim.ledger(order)["order_status"].clone();
        async move { status != "0" }
    })
    .await;
    app.settle(&worker, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}
