//! Scheduling (docs/design.md, S1–S3): payments before follow-ups, earliest deadline first
//! within a priority, read from an index in claim order whatever the statistics say; a step
//! that waits gives its slot to a due payment; a payment that cannot be answered before its
//! deadline is not sent, and says why.

use std::time::Duration;

use atrip_simulator::SimConfig;
use serde_json::json;
use ticketing_tracker::domain::State;
use ticketing_tracker::jobs::JobStore;
use tokio_util::sync::CancellationToken;

use crate::claim_rule::columns;
use crate::support::app::{wait_until, TestApp};

async fn sql(app: &TestApp, q: &str) {
    sqlx::raw_sql(q)
        .execute(app.pool())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

/// A due `pending` row (method 1: no card) with this priority, deadline (seconds from now)
/// and due time (seconds before now).
async fn pending(
    app: &TestApp,
    order_no: &str,
    priority: i16,
    deadline_s: Option<i64>,
    due_s: i64,
) {
    let deadline = deadline_s.map_or("NULL".to_owned(), |s| {
        format!("ticketing_now() + interval '{s} seconds'")
    });
    sql(
        app,
        &format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, priority, pay_deadline, run_at) \
             VALUES ('{order_no}', 1, {priority}, {deadline}, ticketing_now() - interval '{due_s} seconds')"
        ),
    )
    .await;
}

/// A due row in `state` (paid, being followed).
async fn followed(app: &TestApp, order_no: &str, state: State, priority: i16) {
    sql(
        app,
        &format!("INSERT INTO ticketing_jobs (order_no, payment_method, priority) VALUES ('{order_no}', 1, {priority})"),
    )
    .await;
    sql(
        app,
        &format!(
            "UPDATE ticketing_jobs SET state = '{}', run_at = ticketing_now() - interval '100 seconds'{} WHERE order_no = '{order_no}'",
            state.as_str(),
            columns(state)
        ),
    )
    .await;
}

/// An order created at the simulator and enqueued (method 1) with this deadline and due
/// time, given as SQL expressions.
async fn order_with(app: &TestApp, deadline: &str, run_at: &str) -> String {
    let order_no = app.create_order(json!({})).await;
    sql(
        app,
        &format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline, run_at) \
             VALUES ('{order_no}', 1, {deadline}, {run_at})"
        ),
    )
    .await;
    order_no
}

#[tokio::test]
async fn s1_s2_claims_take_payments_first_earliest_deadline_first_within_priority() {
    let app = TestApp::new().await;
    // Followed rows long due, one with the lowest priority of all: still after every payment.
    followed(&app, "FOLLOW01", State::Ticketing, -5).await;
    followed(&app, "FOLLOW02", State::Paying, 0).await;
    pending(&app, "NODEADLINE", 0, None, 90).await;
    pending(&app, "LATE50", 0, Some(50), 80).await;
    pending(&app, "SOON6A", 0, Some(6), 10).await;
    pending(&app, "SOON6B", 0, Some(6), 5).await;
    pending(&app, "URGENTPRIO", -1, Some(100), 1).await;
    pending(&app, "HIGHPRIO1", 1, Some(1), 1).await;
    sql(
        &app,
        "INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline, run_at) \
         VALUES ('NOTDUEYET', 1, ticketing_now() + interval '1 second', ticketing_now() + interval '1 hour')",
    )
    .await;
    // (An equal deadline ties on the due time: SOON6B has been due since 5 s ago, SOON6A
    // since 10 s ago.)
    sql(&app, "UPDATE ticketing_jobs SET pay_deadline = (SELECT pay_deadline FROM ticketing_jobs WHERE order_no = 'SOON6A') WHERE order_no = 'SOON6B'").await;
    let mut order = Vec::new();
    for _ in 0..12 {
        let claimed = app
            .store
            .claim("s1", 1, Duration::from_secs(60), true, true, "s1")
            .await
            .unwrap();
        assert!(claimed.len() <= 1);
        let Some(job) = claimed.first() else { break };
        order.push(job.order_no.clone());
    }
    assert_eq!(
        order,
        [
            "URGENTPRIO",
            "SOON6A",
            "SOON6B",
            "LATE50",
            "NODEADLINE",
            "HIGHPRIO1",
            "FOLLOW01",
            "FOLLOW02"
        ]
    );
    // A batch is the same: payments fill it before any follow-up.
    sql(&app, "UPDATE ticketing_jobs SET lease_expires_at = NULL, lease_owner = NULL WHERE state IN ('ticketing', 'paying') AND order_no LIKE 'FOLLOW%'").await;
    pending(&app, "BATCH1", 3, Some(30), 1).await;
    pending(&app, "BATCH2", 3, None, 1).await;
    let batch: Vec<_> = app
        .store
        .claim("s1", 3, Duration::from_secs(60), true, true, "s1b")
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.order_no)
        .collect();
    assert_eq!(batch, ["BATCH1", "BATCH2", "FOLLOW01"]);
}

#[tokio::test]
async fn s1_the_claim_reads_its_index_in_claim_order_whatever_the_statistics_say() {
    let app = TestApp::new().await;
    // Statistics taken while the table was empty, then a burst that nothing analyzes: the
    // planner believes there is nothing to read.
    sql(&app, "ANALYZE ticketing_jobs").await;
    sql(
        &app,
        "INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline, run_at) \
         SELECT 'BURST' || lpad(g::text, 8, '0'), 1, ticketing_now() + g * interval '1 second', ticketing_now() - interval '1 second' \
         FROM generate_series(1, 20000) g",
    )
    .await;
    let stats = |q: &'static str| {
        let pool = app.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(q)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    const IDX: &str = "SELECT COALESCE(idx_scan, 0) FROM pg_stat_user_indexes WHERE indexrelname = 'ticketing_jobs_pay_due'";
    const READ: &str = "SELECT COALESCE(idx_tup_read, 0) FROM pg_stat_user_indexes WHERE indexrelname = 'ticketing_jobs_pay_due'";
    let (idx0, read0) = (stats(IDX).await, stats(READ).await);
    // The claim runs on a connection of its own, closed afterwards: a backend reports its
    // counters when it exits. A sequential scan would never count here (the wait fails); a
    // bitmap scan reads every due entry.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.url())
        .await
        .unwrap();
    let claimed = JobStore::new(own.clone())
        .claim("s1", 8, Duration::from_secs(60), true, true, "s1")
        .await
        .unwrap();
    own.close().await;
    let names: Vec<_> = claimed.iter().map(|j| j.order_no.as_str()).collect();
    assert_eq!(
        names,
        (1..=8).map(|g| format!("BURST{g:08}")).collect::<Vec<_>>()
    );
    wait_until(
        Duration::from_secs(10),
        "the claim's statistics",
        || async { stats(IDX).await > idx0 },
    )
    .await;
    let read = stats(READ).await - read0;
    assert!(
        read <= 64,
        "the claim read {read} entries of ticketing_jobs_pay_due for 8 rows (20,000 due)"
    );
}

#[tokio::test]
async fn s2_a_step_waiting_to_confirm_tickets_gives_its_slot_to_a_payment_that_becomes_due() {
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    // Two paid orders with their tickets issued, due for their follow-up.
    let mut paid = Vec::new();
    for _ in 0..2 {
        let order_no = app.create_order(json!({})).await;
        app.pay_directly(&order_no).await;
        followed(&app, &order_no, State::Ticketing, 0).await;
        paid.push(order_no);
    }
    // Two slots; a confirmation waits 30 s (F2), within a lease that allows it.
    let mut settings = app.settings.clone();
    settings.worker.concurrency = 2;
    settings.worker.first_poll_ms = 30_000;
    settings.worker.lease_ms = 120_000;
    let worker = app.worker_with(&settings, "s2");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (worker, stop) = (worker.clone(), stop.clone());
        async move { worker.run(stop).await }
    });
    wait_until(
        Duration::from_secs(10),
        "both follow-ups asked once",
        || async {
            paid.iter()
                .all(|o| app.ledger(o)["queries"].as_i64() == Some(1))
        },
    )
    .await;
    // Both slots now wait in F2's confirmation. A payment becomes due.
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    wait_until(
        Duration::from_secs(5),
        "the new payment sent while the confirmations wait (30 s)",
        || async { app.pay_requests(&order_no) == 1 },
    )
    .await;
    // The confirmations gave their slots up with what they saw: due again, asked later.
    for o in &paid {
        let row = app.job(o).await;
        assert_eq!(row.state, "ticketing", "{o}");
        assert!(row.tickets_seen.is_some(), "{o}: the set seen once is kept");
    }
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn s3_a_payment_past_its_deadline_is_not_sent_and_says_how_long_it_waited_and_behind_what() {
    let app = TestApp::new().await;
    let order_no = order_with(
        &app,
        "ticketing_now() - interval '1 second'",
        "ticketing_now() - interval '30 seconds'",
    )
    .await;
    // A backlog behind it, not due before it (later deadlines), that this claim leaves.
    for i in 0..3 {
        pending(&app, &format!("BEHIND{i:02}"), 0, Some(3600), 1).await;
    }
    let worker = app.worker();
    worker.step_up_to(1).await.unwrap();
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "failed");
    let why = row.last_error.unwrap();
    assert!(why.contains("passed before payment"), "{why}");
    assert!(why.contains("waited 30."), "{why}");
    assert!(
        why.contains("3 orders were still due and unclaimed"),
        "{why}"
    );
    assert_eq!(app.pay_requests(&order_no), 0);
}

#[tokio::test]
async fn s3_a_payment_whose_deadline_falls_within_a_pay_round_trip_is_not_sent() {
    let app = TestApp::with_sim(SimConfig {
        latency_mean: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let worker = app.worker();
    // One payment answered teaches the worker how long a pay.do may take: after one answer of
    // about a second, its bound is about three (the round trip plus four times its deviation,
    // which starts at half of it). A deadline 2 s away falls within it, and leaves a loaded
    // machine two seconds to claim the row before the deadline itself has passed.
    let first = app.order_and_enqueue(1, None, json!({})).await;
    wait_until(
        Duration::from_secs(10),
        "the first payment answered",
        || async {
            worker.step_up_to(1).await.unwrap();
            app.job(&first).await.paid_at.is_some()
        },
    )
    .await;
    let order_no = order_with(
        &app,
        "ticketing_now() + interval '2 seconds'",
        "ticketing_now()",
    )
    .await;
    let mut tries = 0;
    while app.job(&order_no).await.state == "pending" && tries < 50 {
        worker.step_up_to(4).await.unwrap();
        tries += 1;
    }
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "failed");
    let why = row.last_error.unwrap();
    assert!(
        why.contains("would pass before a pay.do could be answered"),
        "{why}"
    );
    assert_eq!(app.pay_requests(&order_no), 0);
}

#[tokio::test]
async fn s1_the_claims_function_reads_its_own_schemas_tables_whatever_the_callers_search_path() {
    let app = TestApp::new().await;
    pending(&app, "REALROW001", 0, Some(60), 1).await;
    let mut conn = app.pool().acquire().await.unwrap();
    for q in [
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE elsewhere.ticketing_jobs (LIKE public.ticketing_jobs INCLUDING ALL)",
        "INSERT INTO elsewhere.ticketing_jobs (id, order_no, payment_method, pay_deadline) OVERRIDING SYSTEM VALUE \
         VALUES (999, 'SHADOWROW1', 1, now() + interval '1 second')",
        "SET search_path = elsewhere, public",
    ] {
        sqlx::raw_sql(q).execute(&mut *conn).await.unwrap();
    }
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT j.order_no FROM public.ticketing_due(true, true, 8) d \
         LEFT JOIN public.ticketing_jobs j USING (id)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql("RESET search_path")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(taken, ["REALROW001"]);
}

#[tokio::test]
async fn s3_an_order_whose_deadline_passes_before_its_run_at_fails_unsent_rather_than_waiting() {
    let app = TestApp::new().await;
    let order_no = order_with(
        &app,
        "ticketing_now() - interval '1 second'",
        "ticketing_now() + interval '1 year'",
    )
    .await;
    app.worker().step_up_to(4).await.unwrap();
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "failed");
    let why = row.last_error.unwrap();
    assert!(why.contains("was after its deadline"), "{why}");
    assert_eq!(app.pay_requests(&order_no), 0);
}
