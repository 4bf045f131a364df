//! The pay-once protocol under crashes and lost requests (rules P2, P4g, P5): a `paying` row
//! is always recovered with the order query first. Once a `pay.do` may have reached ATRIP the
//! worker never sends another by itself, however long the order shows unpaid (P5d: a person
//! is asked); a new intent needs a permit, which only a `pay.do` that provably never left
//! (P4g) or an operator's `retry --repay` gives, within `max_pay_attempts`.

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
    app.advance(app.settings.worker.lease() + Duration::from_secs(1))
        .await;
    let round = second.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    let outcome = &round.outcomes[0];
    assert_eq!(outcome.from, State::Paying);
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

/// Rule P5 (P5a): recovery of a `paying` row starts with the order query.
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
async fn a_pay_lost_in_transit_is_never_sent_again_by_the_worker_only_after_an_operators_repay() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // The connection breaks after the request was written: ATRIP may or may not have it.
    app.scenario(&order_no, json!({"reset_before_charge": 1}))
        .await;

    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent);
    assert_eq!(round.outcomes[0].to, Some(State::Paying));
    assert_eq!(
        (app.pay_requests(&order_no), app.charges(&order_no)),
        (1, 0)
    );

    // Recovery reads "0" again and again, however old the attempt: never a second pay.do.
    for _ in 0..5 {
        sqlx::query("UPDATE ticketing_jobs SET run_at = ticketing_now() WHERE order_no = $1")
            .bind(&order_no)
            .execute(app.pool())
            .await
            .unwrap();
        let round = worker.step().await.unwrap();
        assert_eq!(round.claimed, 1);
        assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
        assert_eq!(round.outcomes[0].to, Some(State::Paying));
        app.advance(Duration::from_secs(20)).await;
    }
    assert_eq!(app.job(&order_no).await.order_status.as_deref(), Some("0"));
    // Past the settle time a person is asked, with what to do.
    app.advance(Duration::from_secs(app.settings.worker.unpaid_settle_s))
        .await;
    app.settle(&worker, 20).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&order_no)
            && error.contains("will not pay again")
            && error.contains("retry --repay"),
        "{error}"
    );
    assert_eq!(
        (row.pay_attempts, row.pay_sends, row.pay_permits),
        (1, 1, 1)
    );

    // A plain retry queries again and still never pays.
    let retried = app
        .store
        .retry(&order_no, None, false, "test")
        .await
        .unwrap();
    assert_eq!((retried.state, retried.may_pay), (State::Paying, false));
    let round = worker.step().await.unwrap();
    assert!(!round.outcomes[0].pay_sent);
    app.advance(Duration::from_secs(app.settings.worker.unpaid_settle_s))
        .await;
    app.settle(&worker, 20).await;
    assert_eq!(app.job(&order_no).await.state, "needs_review");
    assert_eq!(app.pay_requests(&order_no), 1);

    // The operator checked ATRIP: `retry --repay` allows exactly one more pay.do, sent only
    // after the query shows the order unpaid, its intent recorded before it leaves.
    let repaid = app
        .store
        .retry(&order_no, None, true, "test")
        .await
        .unwrap();
    assert_eq!((repaid.state, repaid.may_pay), (State::Paying, true));
    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    assert_eq!(round.outcomes[0].to, Some(State::Ticketing));
    let kinds: Vec<String> = app
        .store
        .events(&order_no)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["operator_repay", "pay_intent", "pay_answered"],
        "{kinds:?}"
    );

    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 2).await;
    assert_eq!(
        (row.pay_attempts, row.pay_sends, row.pay_permits),
        (2, 2, 2)
    );
    assert_eq!(app.ledger(&order_no)["pay_after_paid_shown"], 0);
}

/// Rules P4g and P5c.
#[tokio::test]
async fn a_pay_whose_connection_could_not_be_opened_is_sent_once_the_query_shows_unpaid() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // Nothing listens there: the connection is refused before any byte of pay.do is written.
    let mut unreachable = app.settings.clone();
    unreachable.atrip.base_url = "http://127.0.0.1:9".into();
    let cut_off = app.worker_with(&unreachable, "cut-off");
    let round = cut_off.step().await.unwrap();
    assert!(!round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "paying");
    assert_eq!(
        (row.pay_attempts, row.pay_not_sent, row.pay_sends),
        (1, 1, 0)
    );
    assert_eq!(row.last_pay_outcome.as_deref(), Some("not_sent"));
    assert_eq!(app.pay_requests(&order_no), 0);

    // The query comes first; it shows "0" and the permit is back: one new intent, one pay.do.
    let worker = app.worker();
    app.advance(app.settings.worker.recovery_delay() + Duration::from_millis(50))
        .await;
    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent, "{}", round.outcomes[0].note);
    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(
        (row.pay_attempts, row.pay_not_sent, row.pay_sends),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_payment_still_landing_at_the_rows_deadline_goes_to_a_person_not_to_failed() {
    let app = TestApp::new().await;
    let order_no = app.create_order(json!({})).await;
    // The enqueuer wants it paid within 1 s. ATRIP takes the money but never answers, and for
    // 4 s (real time) its query still shows the order unpaid.
    let deadline = app.db_now().await + chrono::Duration::seconds(1);
    app.store
        .enqueue(&order_no, 1, None, Some(deadline))
        .await
        .unwrap();
    app.scenario(
        &order_no,
        json!({"timeout_after_charge": 1, "payment_in_progress_ms": 4000}),
    )
    .await;
    let worker = app.worker();
    let round = worker.step().await.unwrap();
    // The pay.do timed out (unknown outcome) past the row's deadline: the worker cannot know
    // whether the payment is landing, so it asks a person at once, never fails the order.
    assert_eq!(round.outcomes[0].to, Some(State::NeedsReview));
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("deadline"),
        "{:?}",
        row.last_error
    );

    // The payment shows; the operator's retry finds it and follows it to its tickets.
    let (sim, order) = (&app, order_no.as_str());
    wait_until(Duration::from_secs(6), "the payment to show", move || {
        let status = sim.ledger(order)["order_status"].clone();
        async move { status != "0" }
    })
    .await;
    app.store
        .retry(&order_no, None, false, "test")
        .await
        .unwrap();
    app.settle(&worker, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// What a worker of the previous release writes when it gives a freshly claimed row back at
/// its shutdown, before sending: a `released` event under the intent's lease token, and no
/// count of the intent as not sent.
async fn release_as_the_previous_release_did(app: &TestApp, order_no: &str, token: i64) {
    sqlx::query(
        "WITH u AS (UPDATE ticketing_jobs SET lease_owner = NULL, lease_expires_at = NULL,
                           run_at = ticketing_now(), updated_at = ticketing_now()
                    WHERE order_no = $1 RETURNING id, order_no, state)
         INSERT INTO ticketing_events (job_id, order_no, kind, state, lease_token, worker, detail)
         SELECT id, order_no, 'released', state, $2, 'old-worker',
                '{\"reason\": \"worker shutting down before this step sent anything\"}' FROM u",
    )
    .bind(order_no)
    .bind(token)
    .execute(app.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn an_intent_the_previous_release_gave_back_unsent_is_paid_after_the_query() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let claimed = app
        .store
        .claim(
            "old-worker",
            10,
            app.settings.worker.lease(),
            true,
            true,
            "test",
        )
        .await
        .unwrap();
    release_as_the_previous_release_did(&app, &order_no, claimed[0].lease_token).await;

    let worker = app.worker();
    let round = worker.step().await.unwrap();
    assert!(round.outcomes[0].pay_sent, "{:?}", round.outcomes[0]);
    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(
        (row.pay_attempts, row.pay_not_sent, row.pay_sends),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_recovery_the_previous_release_gave_back_is_no_proof_that_nothing_was_sent() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let lease = app.settings.worker.lease();
    app.store
        .claim("old-worker", 10, lease, true, true, "test")
        .await
        .unwrap();
    // The intent's pay.do may have left; a later recovery claim was given back.
    app.advance(lease + Duration::from_secs(1)).await;
    let recovery = app
        .store
        .claim("old-worker-2", 10, lease, true, true, "test")
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ticketing_events (job_id, order_no, kind, state, lease_token, worker, detail)
         SELECT id, order_no, 'claimed', 'paying', $2, 'old-worker-2', '{}' FROM ticketing_jobs
         WHERE order_no = $1",
    )
    .bind(&order_no)
    .bind(recovery[0].lease_token)
    .execute(app.pool())
    .await
    .unwrap();
    release_as_the_previous_release_did(&app, &order_no, recovery[0].lease_token).await;

    let round = app.worker().step().await.unwrap();
    assert!(!round.outcomes[0].pay_sent, "{:?}", round.outcomes[0]);
    let row = app.job(&order_no).await;
    assert_eq!((row.state.as_str(), row.pay_not_sent), ("paying", 0));
    assert_eq!(app.pay_requests(&order_no), 0);
}
