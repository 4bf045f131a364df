//! The pay-once protocol against the ways a second `pay.do` was once sent (rules T1, T3, P3a, W2,
//! P5e): skewed clocks, a rate-limit pause, a worker frozen at the send, operator retries, retention,
//! answers that broke a write, and "order does not exist" while the outcome is unknown. The
//! simulator runs without its duplicate guard where it matters, so that a second `pay.do`
//! arriving while the first is processed is charged, as an ATRIP without that guard would.

use std::time::Duration;

use atrip_simulator::SimConfig;
use serde_json::json;
use ticketing_tracker::domain::State;

use crate::bad_input::rogue::{order_answer, Reply};
use crate::bad_input::world::{World, BAD};
use crate::support::app::{vcc_card, wait_until, TestApp};
use crate::support::binary::WorkerProcess;

/// An ATRIP that takes every pay.do arriving while the order is unpaid, and takes 1.5 s to
/// process a payment, during which its query shows the order unpaid.
fn unguarded() -> SimConfig {
    SimConfig {
        duplicate_guard: false,
        // Inside the tests' 2 s pay timeout.
        payment_processing: Duration::from_millis(1500),
        ticketing_delay: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

/// Leases, due times and intents are the database's; a replica whose clock is off by
/// up to 10 minutes either way takes no live lease and sends no second pay.do.
/// Rule T1 and assumption A8: the database's clock decides.
#[tokio::test]
async fn replicas_whose_clocks_are_off_by_minutes_take_no_live_lease_and_send_no_second_pay() {
    let app = TestApp::with_sim(unguarded()).await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let honest = app.worker_with(&app.settings, "honest");
    let paying = tokio::spawn(async move { honest.step().await });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "the pay.do to arrive",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;

    // While the payment is processed (the query would say "0"), replicas with wrong clocks
    // look for work: the lease is live in the database's time, whatever theirs says.
    for skew_ms in [60_000, 600_000, -600_000] {
        let skewed = app.skewed_worker(&format!("skewed{skew_ms}"), skew_ms);
        for _ in 0..3 {
            assert_eq!(skewed.step().await.unwrap().claimed, 0, "skew {skew_ms} ms");
        }
    }
    let round = paying.await.unwrap().unwrap();
    assert_eq!(round.outcomes[0].to, Some(State::Ticketing), "{round:?}");

    // A skewed replica follows the order to its end, without another pay.do.
    let skewed = app.skewed_worker("skewed-ahead", 600_000);
    app.settle(&skewed, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// Rules T1 and T3, with the lease taken over for real: once the lease has passed (in the database's
/// time), a replica whose clock runs 60 s ahead recovers the row with a query, and, the
/// order showing unpaid while the payment is processed, does not pay again.
#[tokio::test]
async fn a_replica_with_a_fast_clock_that_recovers_a_row_mid_payment_does_not_pay_again() {
    let app = TestApp::with_sim(unguarded()).await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let honest = app.worker_with(&app.settings, "honest");
    let paying = tokio::spawn(async move { honest.step().await });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "the pay.do to arrive",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;
    app.advance(app.settings.worker.lease() + Duration::from_secs(1))
        .await;
    let fast = app.skewed_worker("fast", 60_000);
    let round = fast.step().await.unwrap();
    assert_eq!(round.claimed, 1);
    assert!(!round.outcomes[0].pay_sent, "{:?}", round.outcomes[0]);
    assert_eq!(app.job(&order_no).await.order_status.as_deref(), Some("0"));
    let first = paying.await.unwrap().unwrap();
    assert_eq!(
        first.outcomes[0].to, None,
        "its lease was lost: nothing recorded"
    );
    app.settle(&fast, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// A rate-limit pause on queries (here 30 s) delays no pay.do: while it lasts the
/// worker claims only rows that need pay.do, and sends it at once.
#[tokio::test]
async fn a_rate_limit_pause_on_queries_never_delays_a_pay_do() {
    let w = World::new().await;
    let limited = json!({"code": 429, "message": "Too many requests", "limitType": "QPS",
                         "limit": 10, "retryAfter": 30});
    w.rogue
        .on_query(BAD, vec![Reply::json(limited).with_status(429)]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;
    w.step().await;
    // BAD's query gets the 429: every query of this process now waits 30 s.
    w.app.advance(Duration::from_secs(1)).await;
    let round = w.worker.step().await.unwrap();
    assert!(round.claimed >= 1);

    let fresh = "FRESHORDER20261130000003";
    w.enqueue(fresh, 3, Some(vcc_card())).await;
    w.app.advance(Duration::from_secs(1)).await;
    let round = tokio::time::timeout(Duration::from_secs(10), w.worker.step())
        .await
        .expect("a pay.do waited for the query pause")
        .unwrap();
    let claimed: Vec<&str> = round.outcomes.iter().map(|o| o.order_no.as_str()).collect();
    assert_eq!(
        claimed,
        [fresh],
        "only pay.do rows are claimed during the pause"
    );
    assert!(round.outcomes[0].pay_sent);
    assert_eq!(w.rogue.pays(fresh), 1);
}

/// Rules T3 and P3a: a worker frozen (SIGSTOP, every thread) between its last lease check and the send.
/// Another worker takes the row over and finds it unpaid; the frozen one then wakes and sends
/// its pay.do. Only the rule "never pay again on our own" keeps this to one pay.do.
#[tokio::test]
async fn a_worker_frozen_at_the_send_and_another_taking_over_make_one_pay_do_between_them() {
    let app = TestApp::with_sim(unguarded()).await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let frozen = WorkerProcess::start(
        &app,
        &[
            ("TICKETING_FAILPOINTS", "stop-before-pay".into()),
            ("APP_WORKER__LEASE_MS", "3000".into()),
            ("APP_ATRIP__PAY_TIMEOUT_MS", "1500".into()),
            ("APP_ATRIP__QUERY_TIMEOUT_MS", "1500".into()),
        ],
    );
    wait_until(
        Duration::from_secs(30),
        "the worker to stop itself",
        || async { frozen.is_stopped() },
    )
    .await;
    let row = app.job(&order_no).await;
    assert_eq!((row.state.as_str(), row.pay_attempts), ("paying", 1));
    assert_eq!(app.pay_requests(&order_no), 0, "stopped before the send");

    app.advance(Duration::from_secs(10)).await;
    let other = app.worker_with(&app.settings, "other");
    let round = other.step().await.unwrap();
    assert_eq!(round.claimed, 1, "the frozen worker's lease is over");
    assert!(!round.outcomes[0].pay_sent, "{:?}", round.outcomes[0]);

    frozen.signal("CONT");
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(10),
        "the woken pay.do",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;
    // The recovering worker keeps asking; it finds the payment once processed.
    wait_until(Duration::from_secs(20), "the order to be ticketed", || async {
        sqlx::query("UPDATE ticketing_jobs SET run_at = ticketing_now() WHERE order_no = $1 AND state IN ('paying', 'ticketing')")
            .bind(&order_no)
            .execute(app.pool())
            .await
            .unwrap();
        other.step().await.unwrap();
        app.job(&order_no).await.state == "ticketed"
    })
    .await;
    let log = frozen.stop().await;
    assert!(
        log.contains("lease lost"),
        "the woken worker recorded nothing: {log}"
    );
    app.assert_ticketed_once(&order_no, 1).await;
}

/// The test hooks are inert in production: a stray `TICKETING_FAILPOINTS` or
/// `TICKETING_CLOCK_SKEW_MS` on a production worker neither freezes it nor skews it; it says
/// so and pays the order.
#[tokio::test]
async fn the_test_hooks_are_ignored_in_production() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_ENVIRONMENT", "production".into()),
            ("APP_ATRIP__CLIENT_ID", "sim-client".into()),
            ("APP_ATRIP__CLIENT_SECRET", "sim-secret".into()),
            // The simulator stands in for a TLS-terminating sidecar on the loopback.
            ("APP_ATRIP__ALLOW_PLAIN_HTTP", "true".into()),
            ("TICKETING_FAILPOINTS", "stop-before-pay".into()),
            ("TICKETING_CLOCK_SKEW_MS", "600000".into()),
        ],
    );
    let done = worker.wait_until_done(&app, Duration::from_secs(60)).await;
    assert!(!worker.is_stopped(), "the failpoint did not stop it");
    let log = worker.stop().await;
    assert!(done, "{log}");
    assert!(log.contains("test-only and ignored in production"), "{log}");
    assert!(!log.contains("test hooks are on"), "{log}");
    assert!(!log.contains("clock differs"), "no skew was applied: {log}");
    app.assert_ticketed_once(&order_no, 1).await;
}

/// Rules P7 and F5: pay.do answered 0, the query kept showing "0", the ticketing deadline
/// passed. The operator's retry follows the order again with a fresh deadline, never pays it
/// again, refuses `--repay`, and reaches `ticketed` once ATRIP shows the tickets.
#[tokio::test]
async fn an_operator_retry_of_a_paid_order_never_pays_again_and_reaches_ticketed() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.ticketing_deadline_s = 3;
    let worker = app.worker_with(&settings, "deadline-worker");
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"payment_in_progress_ms": 4000}))
        .await;
    app.enqueue(&order_no, 1, None).await;
    app.settle(&worker, 200).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(row.last_error.unwrap().contains("ticketing deadline"));
    assert_eq!(
        row.order_status.as_deref(),
        Some("0"),
        "ATRIP still shows unpaid"
    );
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));

    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(10),
        "ATRIP to show the tickets",
        move || {
            let status = sim.ledger(order)["order_status"].clone();
            async move { status == "2" }
        },
    )
    .await;

    assert_repay_refused_as_paid(&app, &order_no).await;
    // The deadline counts again from the retry: the row reaches ticketed, not review.
    let retried = app
        .store
        .retry(&order_no, None, false, "test")
        .await
        .unwrap();
    assert_eq!((retried.state, retried.may_pay), (State::Ticketing, false));
    app.settle(&worker, 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// Retention: the prune re-checks state and age on the row it deletes. An operator's retry that
/// commits while the prune waits for its lock keeps the row and its history.
#[tokio::test]
async fn a_row_retried_while_the_prune_waits_for_it_is_not_deleted() {
    let app = TestApp::new().await;
    let order_no = app
        .order_and_enqueue(1, None, json!({"paymentDeadlineSeconds": -60}))
        .await;
    app.settle(&app.worker(), 50).await;
    assert_eq!(app.job(&order_no).await.state, "failed");
    sqlx::query("UPDATE ticketing_jobs SET finalized_at = finalized_at - interval '40 days'")
        .execute(app.pool())
        .await
        .unwrap();

    // The retry holds the row's lock, its change not committed yet.
    let mut retry = app.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'paying', finalized_at = NULL, last_error = NULL,
                run_at = ticketing_now() WHERE order_no = $1",
    )
    .bind(&order_no)
    .execute(&mut *retry)
    .await
    .unwrap();
    let store = app.store.clone();
    let prune = tokio::spawn(async move { store.prune(30, 500).await });
    // Let the prune reach the row (it skips or waits for the lock), then commit the retry.
    wait_until(Duration::from_secs(5), "the prune to reach the row", || async {
        prune.is_finished()
            || sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM ticketing_jobs%'",
            )
            .fetch_one(app.pool())
            .await
            .unwrap()
                > 0
    })
    .await;
    retry.commit().await.unwrap();
    assert_eq!(prune.await.unwrap().unwrap(), 0, "nothing pruned");
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "paying");
    assert!(!app.store.events(&order_no).await.unwrap().is_empty());
}

/// Rule F4: complete ticket numbers but no airline PNR (ATRIP's own `pnrCode` is none) keep the
/// order followed (not stuck, not ticketed) until the ticketing deadline sends it to a person.
#[tokio::test]
async fn tickets_without_any_pnr_are_followed_until_the_ticketing_deadline() {
    let w = World::tuned(|s| s.worker.ticketing_deadline_s = 3).await;
    let mut answer = order_answer(
        BAD,
        json!("2"),
        json!([{"name": "DOE/JANE", "ticketNos": ["S12345"], "airlinePNRs": []}]),
    );
    answer["pnrCode"] = json!("OPLGS4");
    w.rogue.on_query(BAD, vec![Reply::json(answer)]);
    w.enqueue(BAD, 1, None).await;
    w.enqueue_good(1).await;
    w.settle().await;
    let row = w
        .bad_row_saying(&["ticketing deadline", "no airline PNR yet"])
        .await;
    assert_eq!(row.state, "needs_review");
    assert!(row.ticket_numbers.is_none() && row.pnr.is_none());
    assert!(w.rogue.queries(BAD) >= 3);
    w.assert_good_ticketed().await;
}

/// Rule W2: a write the table's CHECKs refuse is a bug reported on that row
/// (needs_review naming the constraint), never retried as if the database were down.
#[tokio::test]
async fn a_write_the_table_refuses_sends_the_row_to_review_naming_the_constraint() {
    let app = TestApp::new().await;
    app.add_check("test_refuses_ticketing", "state <> 'ticketing'")
        .await;
    let order_no = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    let round = tokio::time::timeout(Duration::from_secs(5), app.worker().step())
        .await
        .expect("a refused write is not retried for the lease's length")
        .unwrap();
    assert_eq!(round.outcomes[0].to, Some(State::NeedsReview));
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review");
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("test_refuses_ticketing") && error.contains(&order_no),
        "{error}"
    );
    assert!(row.lease_owner.is_none());
    let last = app.store.events(&order_no).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "constraint_violated");
    assert_eq!(last.detail["constraint"], "test_refuses_ticketing");
    assert_eq!(
        app.charges(&order_no),
        1,
        "paid once, reported, never paid again"
    );
    // The refused write was the one that said "paid": that is kept on the row (no permit
    // left), the card goes with it, and no operator retry can pay the order again.
    assert!(row.paid_at.is_some(), "the payment evidence is kept");
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));
    assert_eq!(row.pay_permits, row.pay_sends);
    assert!(!row.card_plain && !row.card_sealed, "card erased");
    assert_eq!(row.card_last4.as_deref(), Some("0366"));
    assert_eq!(last.detail["paid_evidence"], "pay_accepted");
    assert_eq!(last.detail["card_erased"], true);
    assert_repay_refused_as_paid(&app, &order_no).await;
}

/// A write refused when no `pay.do` can have left (a sealed card this worker has no key for)
/// keeps the card and counts the intent as not sent: the order may still be paid once a
/// person has looked, and can be cancelled.
#[tokio::test]
async fn a_refused_write_before_any_send_keeps_the_card_and_records_no_payment() {
    let app = TestApp::new().await;
    app.add_check(
        "test_refuses_no_key_review",
        "state <> 'needs_review' OR last_error NOT LIKE '%no card key%'",
    )
    .await;
    let key = ticketing_tracker::sealed::CardKey::generate();
    let order_no = app.create_order(json!({})).await;
    let sealed =
        ticketing_tracker::sealed::seal(&key.public_base64(), &order_no, &vcc_card()).unwrap();
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, card_sealed) VALUES ($1, 3, $2)",
    )
    .bind(&order_no)
    .bind(&sealed)
    .execute(app.pool())
    .await
    .unwrap();
    app.settle(&app.worker(), 50).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review");
    let error = row.last_error.clone().unwrap_or_default();
    assert!(error.contains("test_refuses_no_key_review"), "{error}");
    assert_eq!(
        (row.pay_attempts, row.pay_sends),
        (1, 0),
        "counted as not sent"
    );
    assert!(row.paid_at.is_none());
    assert!(row.card_sealed, "nothing left: the card stays");
    assert_eq!(app.pay_requests(&order_no), 0);
    let cancelled = app.store.cancel(&order_no, "test").await;
    assert!(
        cancelled.is_ok(),
        "no pay.do left, so it may be cancelled: {cancelled:?}"
    );
}

/// A write refused after a pay.do may have reached ATRIP, though the write itself would not
/// have erased the card (an unclear answer: the order stays `paying`): the review erases it
/// (rule P9) and keeps its brand and last four.
#[tokio::test]
async fn a_refused_write_after_a_send_erases_the_card_and_keeps_brand_and_last_four() {
    let app = TestApp::new().await;
    app.add_check(
        "test_refuses_unclear",
        "last_pay_outcome IS DISTINCT FROM 'outcome_unknown'",
    )
    .await;
    let order_no = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    app.scenario(&order_no, json!({"fail_before_charge": 1}))
        .await;
    let round = app.worker().step().await.unwrap();
    assert_eq!(round.outcomes[0].to, Some(State::NeedsReview));
    let row = app.job(&order_no).await;
    assert!(row
        .last_error
        .unwrap_or_default()
        .contains("test_refuses_unclear"));
    assert_eq!(row.pay_sends, 1, "the pay.do may have reached ATRIP");
    assert!(!row.card_plain && !row.card_sealed, "card erased");
    assert_eq!(row.card_brand.as_deref(), Some("Visa"));
    assert_eq!(row.card_last4.as_deref(), Some("0366"));
    assert!(row.paid_at.is_none());
    let last = app.store.events(&order_no).await.unwrap().pop().unwrap();
    assert_eq!(last.detail["card_erased"], true);
    assert_eq!(app.pay_requests(&order_no), 1);
}

/// The refused write said both "paid" and "the previous intent never left" (a row taken over
/// from the previous release): both are kept, consistently (no permit left, the intent not
/// sent), so the review itself is never refused. And when the review is refused after all (a
/// value the step got wrong), a plainer one lands instead of leaving the row in flight.
#[tokio::test]
async fn the_review_of_a_refused_write_keeps_its_payment_facts_and_falls_back_to_a_plainer_one() {
    use ticketing_tracker::atrip::QueryAnswer;
    use ticketing_tracker::jobs::{CardSummary, Said, Write};
    use ticketing_tracker::machine::{Evidence, Facts, Next};

    let app = TestApp::new().await;
    let paid = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    let unsent = app.order_and_enqueue(1, None, json!({})).await;
    let claimed = app.claim_as("worker-a").await;
    assert_eq!(claimed.len(), 2);
    let now = app.db_now().await;
    let job = claimed.iter().find(|c| c.order_no == paid).unwrap();
    let facts = Facts {
        state: State::Paying,
        order_no: paid.clone(),
        pay_attempts: 1,
        pay_not_sent: 0,
        pay_permits: 1,
        paid: false,
        last_pay_outcome: None,
        error_streak: 0,
        poll_attempts: 0,
        tickets_seen: None,
        passengers: None,
        pay_started_at: now,
        pay_deadline: None,
        phase_started_at: now,
        now,
        intents_durable: true,
        paying_paused: None,
    };
    let said = Said::query(&QueryAnswer::Retry {
        reason: "test".into(),
    })
    .with_intent_not_sent();
    let next = Next::Paid {
        evidence: Evidence::QueryPaid,
        poll_in: Duration::from_secs(1),
    };
    let card = CardSummary {
        brand: Some("VISA".into()),
        last4: Some("0366".into()),
    };
    let write = Write::step(&next, said, &facts, card);
    let mut lease = job.lease();
    app.store
        .review_refused_write(&mut lease, "worker-a", "test_constraint", &write)
        .await
        .unwrap();
    let row = app.job(&paid).await;
    assert_eq!(row.state, "needs_review");
    assert_eq!(
        (row.pay_attempts, row.pay_not_sent, row.pay_permits),
        (1, 1, 0)
    );
    assert_eq!(row.paid_evidence.as_deref(), Some("query_paid"));
    assert!(!row.card_plain);
    assert_eq!(row.card_last4.as_deref(), Some("0366"));

    // A review whose not-sent count the table refuses: the plainer review lands.
    app.add_check(
        "test_no_unsent_here",
        &format!("pay_not_sent = 0 OR order_no <> '{unsent}'"),
    )
    .await;
    let job = claimed.iter().find(|c| c.order_no == unsent).unwrap();
    let mut lease = job.lease();
    let give_back = Write::give_back(State::Paying, true, "test");
    app.store
        .review_refused_write(&mut lease, "worker-a", "test_constraint", &give_back)
        .await
        .unwrap();
    let row = app.job(&unsent).await;
    assert_eq!(row.state, "needs_review", "never left in flight");
    assert_eq!(row.pay_not_sent, 0, "the refused count is not forced in");
    assert_eq!(row.pay_sends, 1);
    let last = app.store.events(&unsent).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "constraint_violated");
    assert_eq!(last.detail["fallback"], 1);
}

/// The same for a value the database refuses whatever the row (SQLSTATE class 22, here a
/// text too long for its column): retrying would fail the same way, so the row goes to
/// needs_review naming the SQLSTATE, at once, instead of staying `paying` for ever.
#[tokio::test]
async fn a_value_the_database_refuses_sends_the_row_to_review_naming_the_sqlstate() {
    let app = TestApp::new().await;
    sqlx::query("ALTER TABLE ticketing_jobs ALTER COLUMN atrip_message TYPE varchar(3)")
        .execute(app.pool())
        .await
        .unwrap();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let round = tokio::time::timeout(Duration::from_secs(5), app.worker().step())
        .await
        .expect("a refused value is not retried for the lease's length")
        .unwrap();
    assert_eq!(round.outcomes[0].to, Some(State::NeedsReview));
    let row = app.job(&order_no).await;
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("SQLSTATE 22001") && error.contains(&order_no),
        "{error}"
    );
    let last = app.store.events(&order_no).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "constraint_violated");
    assert_eq!(last.detail["constraint"], "data exception, SQLSTATE 22001");
    assert_eq!(app.charges(&order_no), 1, "paid once, never paid again");
}

/// Rule P5e: one "order does not exist" (800) while the payment outcome is unknown proves
/// nothing: ATRIP may lag behind a payment it took. The order is asked again, and followed.
#[tokio::test]
async fn one_order_does_not_exist_while_the_outcome_is_unknown_does_not_fail_the_order() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    app.scenario(
        &order_no,
        json!({"drop_after_charge": 1, "query_status": 1, "query_status_code": 800}),
    )
    .await;
    app.settle(&worker, 200).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    let events = app.store.events(&order_no).await.unwrap();
    assert!(
        events.iter().any(|e| e.detail["answer"] == "not_found"),
        "the 800 was seen: {events:?}"
    );
    assert!(!app
        .event_states(&order_no)
        .await
        .contains(&"failed".to_owned()));
    assert!(!row.card_plain && row.card_last4.as_deref() == Some("0366"));
}

/// `retry --repay` of `order_no` is refused because an answer showed the order paid.
async fn assert_repay_refused_as_paid(app: &TestApp, order_no: &str) {
    let repay = app.store.retry(order_no, None, true, "test").await;
    assert!(
        repay
            .as_ref()
            .is_err_and(|e| e.to_string().contains("shows it paid")),
        "{repay:?}"
    );
}
