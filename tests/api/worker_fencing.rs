//! Fencing: once a lease has passed to another worker, nothing the old holder writes lands,
//! and the old holder sends nothing more.

use std::time::Duration;

use serde_json::json;
use ticketing_tracker::domain::State;
use ticketing_tracker::jobs::{self, Write};

use crate::support::app::{wait_until, TestApp};

/// Rule W1 and assumption A4: the fence compares the row's own token, state and counters.
#[tokio::test]
async fn a_write_with_a_lease_token_taken_over_by_another_worker_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let lease = app.settings.worker.lease();

    let a = app
        .store
        .claim("worker-a", 10, lease, true, true, "test")
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].claimed_from, State::Pending);
    assert!(app
        .store
        .claim("worker-b", 10, lease, true, true, "test")
        .await
        .unwrap()
        .is_empty());

    app.advance(lease + Duration::from_millis(1)).await;
    let b = app
        .store
        .claim("worker-b", 10, lease, true, true, "test")
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].claimed_from, State::Paying, "B recovers A's intent");
    assert!(b[0].lease_token > a[0].lease_token);
    assert_eq!(
        b[0].pay_attempts, 1,
        "taking a paying row over is no new intent"
    );

    let before = app.job(&order_no).await;
    let events_before = app.store.events(&order_no).await.unwrap().len();
    let mut stale = a[0].lease();
    // What A would write: its row given back, its intent recorded as never sent.
    let give_back = Write::give_back(State::Paying, true, "test");
    let refused = app.store.apply(&mut stale, "worker-a", &give_back).await;
    assert!(
        matches!(refused, Err(jobs::Error::LeaseLost { job_id, .. }) if job_id == a[0].id),
        "{refused:?}"
    );
    assert_eq!(stale.state(), State::Paying, "the lease did not move on");
    let renewed = app
        .store
        .renew("worker-a", &[(a[0].id, a[0].lease_token)], lease)
        .await
        .unwrap();
    assert_eq!(
        renewed,
        jobs::Renewed::default(),
        "A's heartbeat cannot win the row back"
    );

    let after = app.job(&order_no).await;
    assert_eq!(after.state, "paying");
    assert_eq!(after.lease_token, before.lease_token);
    assert_eq!(after.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(after.lease_expires_at, before.lease_expires_at);
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(after.pay_not_sent, 0);
    assert_eq!(
        app.store.events(&order_no).await.unwrap().len(),
        events_before
    );

    // The current holder's write goes through.
    let mut current = b[0].lease();
    let give_back = Write::give_back(State::Paying, false, "test");
    app.store
        .apply(&mut current, "worker-b", &give_back)
        .await
        .unwrap();
    let row = app.job(&order_no).await;
    assert_eq!((row.state.as_str(), row.lease_owner), ("paying", None));
}

#[tokio::test]
async fn a_worker_whose_lease_expired_during_pay_records_only_its_evidence_and_sends_nothing_more()
{
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // Every request for this order takes 1.5 s (inside the 2 s timeouts): A's pay.do is in
    // flight long enough for its lease to pass to B.
    app.scenario(&order_no, json!({"delay_ms": 1500})).await;
    let a = app.worker_with(&app.settings, "worker-a");
    let b = app.worker_with(&app.settings, "worker-b");

    let slow = tokio::spawn(async move { a.step().await });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "A's pay.do to arrive",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;
    let claimed_by_a = app.job(&order_no).await.lease_token;
    app.advance(app.settings.worker.lease() + Duration::from_secs(1))
        .await;

    let round_b = b.step().await.unwrap();
    assert_eq!(round_b.claimed, 1);
    let outcome_b = &round_b.outcomes[0];
    assert_eq!(outcome_b.from, State::Paying);
    assert!(!outcome_b.pay_sent, "B starts with the order query");

    let round_a = slow.await.unwrap().unwrap();
    let outcome_a = &round_a.outcomes[0];
    assert_eq!(outcome_a.to, None, "A's write under its lease is refused");
    assert!(
        outcome_a.note.contains("lease lost"),
        "note: {}",
        outcome_a.note
    );
    assert_eq!(app.pay_requests(&order_no), 1);
    // A's accepted answer is evidence of payment: it is written without the lease (rule
    // P3a), and nothing else of A's is.
    let events = app.store.events(&order_no).await.unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.worker.as_deref() == Some("worker-a"))
            .all(
                |e| (e.kind == "pay_intent" && e.lease_token == Some(claimed_by_a))
                    || e.kind == "evidence_recorded"
                    // Noted, when A's write of it was still waiting for the row (B held it).
                    || e.kind == "evidence_seen"
            ),
        "only A's intent and its evidence are in the history: {events:?}"
    );
    wait_until(
        Duration::from_secs(5),
        "the evidence to be written",
        || async { app.job(&order_no).await.paid_at.is_some() },
    )
    .await;
    app.settle(&b, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// Rule T3: a heartbeat renews the lease.
#[tokio::test]
async fn a_heartbeat_keeps_the_lease_of_a_pay_in_flight_so_no_other_worker_takes_over() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // A's pay.do takes 1.5 s (inside its 2 s timeout).
    app.scenario(&order_no, json!({"delay_ms": 1500})).await;
    let a = app.worker_with(&app.settings, "worker-a");
    let b = app.worker_with(&app.settings, "worker-b");
    let lease = app.settings.worker.lease();

    let slow = tokio::spawn({
        let a = a.clone();
        async move { a.step().await }
    });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "A's pay.do to arrive",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;
    let claimed = app.job(&order_no).await;
    app.advance(lease * 6 / 10).await;
    a.heartbeat().await.unwrap();
    let renewed = app.job(&order_no).await;
    assert!(renewed.lease_expires_at > claimed.lease_expires_at);
    assert_eq!(renewed.lease_token, claimed.lease_token);
    // Past the first lease, inside the renewed one.
    app.advance(lease * 6 / 10).await;
    assert_eq!(b.step().await.unwrap().claimed, 0, "A still holds the row");

    let round = slow.await.unwrap().unwrap();
    assert_eq!(
        round.outcomes[0].to,
        Some(State::Ticketing),
        "{}",
        round.outcomes[0].note
    );
    assert_eq!(app.job(&order_no).await.lease_owner, None);
    assert_eq!(
        (app.pay_requests(&order_no), app.charges(&order_no)),
        (1, 1)
    );
}

/// A write retried after its commit's answer was lost (or after a batch that failed once some
/// of it had landed) lands at most once: the fence includes the pay counters the lease last
/// wrote, so a second "intent never sent" cannot hand out a permit the first already gave
/// back (the road to an automatic second pay.do).
#[tokio::test]
async fn a_write_applied_again_after_it_landed_changes_nothing() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let lease = app.settings.worker.lease();
    let claimed = app
        .store
        .claim("worker-a", 10, lease, true, true, "test")
        .await
        .unwrap();
    let mut held = claimed[0].lease();
    let mut retried = held.clone();
    let give_back = Write::give_back(State::Paying, true, "test");
    app.store
        .apply(&mut held, "worker-a", &give_back)
        .await
        .unwrap();
    let events = app.store.events(&order_no).await.unwrap().len();

    let again = app.store.apply(&mut retried, "worker-a", &give_back).await;
    assert!(
        matches!(again, Err(jobs::Error::LeaseLost { .. })),
        "{again:?}"
    );
    let row = app.job(&order_no).await;
    assert_eq!((row.pay_attempts, row.pay_not_sent), (1, 1));
    assert_eq!(app.store.events(&order_no).await.unwrap().len(), events);
}

/// A give-back (shutdown, or too little lease left) is no answer from ATRIP: the row keeps
/// what the last answer said and its streak of unclear answers, so an operator still reads
/// why, and the streak's bound is not pushed back by restarts.
#[tokio::test]
async fn a_give_back_keeps_the_last_answer_and_the_unclear_streak() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let lease = app.settings.worker.lease();
    let first = app
        .store
        .claim("worker-a", 10, lease, true, true, "test")
        .await
        .unwrap();
    let mut held = first[0].lease();
    app.store
        .apply(
            &mut held,
            "worker-a",
            &Write::give_back(State::Paying, false, "test"),
        )
        .await
        .unwrap();
    sqlx::query(
        "UPDATE ticketing_jobs SET last_error = 'order X: outcome of pay.do unknown', error_streak = 2 WHERE order_no = $1",
    )
    .bind(&order_no)
    .execute(app.pool())
    .await
    .unwrap();
    let again = app
        .store
        .claim("worker-a", 10, lease, true, true, "test")
        .await
        .unwrap();
    let mut held = again[0].lease();
    app.store
        .apply(
            &mut held,
            "worker-a",
            &Write::give_back(State::Paying, false, "test"),
        )
        .await
        .unwrap();
    let row = app.job(&order_no).await;
    assert_eq!(
        (row.last_error.as_deref(), row.error_streak),
        (Some("order X: outcome of pay.do unknown"), 2)
    );
}

/// Steps that finish together share one statement, and each row in it is still fenced by its
/// own lease: in a batch with a live lease and one another worker has taken, the live write
/// lands and the stale one matches nothing (its step's "lease lost"), never a silent skip.
/// When the table refuses one item, the statement fails as a whole; the items are then applied
/// one by one, so the refused one is named and the others land.
#[tokio::test]
async fn a_batch_fences_each_row_by_its_own_lease_and_names_the_one_the_table_refuses() {
    let app = TestApp::new().await;
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(app.order_and_enqueue(1, None, json!({})).await);
    }
    let claimed = app.claim_as("worker-a").await;
    assert_eq!(claimed.len(), 4);
    let by_order = |order_no: &str| {
        claimed
            .iter()
            .find(|c| c.order_no == order_no)
            .unwrap()
            .lease()
    };

    // Live and stale in one statement.
    sqlx::query("UPDATE ticketing_jobs SET lease_token = lease_token + 1 WHERE order_no = $1")
        .bind(&orders[1])
        .execute(app.pool())
        .await
        .unwrap();
    let (live, stale) = (by_order(&orders[0]), by_order(&orders[1]));
    let results = give_back_together(&app, &[&live, &stale]).await;
    assert!(matches!(results[0], Ok(jobs::Landed::At(_))), "{results:?}");
    assert!(
        matches!(results[1], Ok(jobs::Landed::Fenced)),
        "the stale one is reported: {results:?}"
    );
    assert_eq!(app.job(&orders[0]).await.lease_owner, None, "given back");
    let untouched = app.job(&orders[1]).await;
    assert_eq!(untouched.lease_owner.as_deref(), Some("worker-a"));
    assert!(app
        .store
        .events(&orders[1])
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != "released"));

    // One item the table refuses, one that it takes.
    app.add_check(
        "test_refuses_one",
        &format!("order_no <> '{}' OR lease_owner IS NOT NULL", orders[3]),
    )
    .await;
    let (taken, refused) = (by_order(&orders[2]), by_order(&orders[3]));
    let results = give_back_together(&app, &[&taken, &refused]).await;
    assert!(matches!(results[0], Ok(jobs::Landed::At(_))), "{results:?}");
    assert!(
        matches!(&results[1], Err(jobs::Error::ConstraintViolated { constraint, order_no, .. })
            if constraint == "test_refuses_one" && *order_no == orders[3]),
        "{results:?}"
    );
    assert_eq!(app.job(&orders[2]).await.lease_owner, None, "given back");
    assert_eq!(
        app.job(&orders[3]).await.lease_owner.as_deref(),
        Some("worker-a"),
        "the refused write changed nothing"
    );
}

/// Gives the rows of `leases` back, as worker-a, in one batched statement.
async fn give_back_together(app: &TestApp, leases: &[&jobs::Lease]) -> Vec<jobs::ItemResult> {
    let give_back = Write::give_back(State::Paying, false, "test");
    let items: Vec<_> = leases
        .iter()
        .map(|lease| (*lease, "worker-a", &give_back))
        .collect();
    app.store.apply_many(&items).await.unwrap()
}

/// Rule W4: one row another session holds locked (a person's `SELECT … FOR UPDATE`) never
/// holds up a batch. The batch's other rows land at once, the locked one is reported busy
/// (nothing written), and the lease renewal skips it without waiting or losing it; once the
/// lock is gone the same write lands. Results are matched by row id and lease token: a stale
/// write of the same row in the same batch is reported as fenced, not as landed.
#[tokio::test]
async fn a_row_locked_by_another_session_is_skipped_and_reported_while_the_batch_lands() {
    let app = TestApp::new().await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(app.order_and_enqueue(1, None, json!({})).await);
    }
    let claimed = app.claim_as("worker-a").await;
    let by_order = |order_no: &str| {
        claimed
            .iter()
            .find(|c| c.order_no == order_no)
            .unwrap()
            .lease()
    };
    let mut outsider = app.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ticketing_jobs WHERE order_no = $1 FOR UPDATE")
        .bind(&orders[1])
        .execute(&mut *outsider)
        .await
        .unwrap();

    let (free, locked) = (by_order(&orders[0]), by_order(&orders[1]));
    let both = [&free, &locked];
    let batch = give_back_together(&app, &both);
    let results = tokio::time::timeout(std::time::Duration::from_secs(5), batch)
        .await
        .expect("the batch does not wait for the locked row");
    assert!(matches!(results[0], Ok(jobs::Landed::At(_))), "{results:?}");
    assert!(matches!(results[1], Ok(jobs::Landed::Busy)), "{results:?}");
    assert_eq!(app.job(&orders[0]).await.lease_owner, None, "given back");
    assert_eq!(
        app.job(&orders[1]).await.lease_owner.as_deref(),
        Some("worker-a"),
        "nothing was written to the locked row"
    );

    let held = [by_order(&orders[1]), by_order(&orders[2])];
    let tokens: Vec<(i64, i64)> = held.iter().map(|l| (l.id(), l.token())).collect();
    let renewal = app
        .store
        .renew("worker-a", &tokens, app.settings.worker.lease());
    let renewed = tokio::time::timeout(std::time::Duration::from_secs(5), renewal)
        .await
        .expect("the renewal does not wait for the locked row")
        .unwrap();
    assert_eq!(
        renewed,
        jobs::Renewed {
            kept: vec![held[1].id()],
            busy: vec![held[0].id()]
        }
    );

    outsider.rollback().await.unwrap();
    let results = give_back_together(&app, &[&locked]).await;
    assert!(matches!(results[0], Ok(jobs::Landed::At(_))), "{results:?}");

    // The same row twice in one batch: under the lease of an earlier claim (stale) and of the
    // claim that holds it now.
    let first = by_order(&orders[2]);
    let results = give_back_together(&app, &[&first]).await;
    assert!(matches!(results[0], Ok(jobs::Landed::At(_))), "{results:?}");
    let again = app.claim_as("worker-a").await;
    let second = again
        .iter()
        .find(|c| c.order_no == orders[2])
        .expect("claimed again")
        .lease();
    let results = give_back_together(&app, &[&first, &second]).await;
    assert!(
        matches!(
            results[..],
            [Ok(jobs::Landed::Fenced), Ok(jobs::Landed::At(_))]
        ),
        "each item answered for its own lease: {results:?}"
    );
}
