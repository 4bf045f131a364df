//! Faults of the worker's own process and of its way to the database: a step that panics
//! (rule W5), evidence of payment whose write cannot land under its lease (rule P3a), and a
//! pool of one connection.

use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use ticketing_tracker::atrip::Client;
use ticketing_tracker::domain::State;
use ticketing_tracker::jobs::JobStore;
use ticketing_tracker::worker::{TestHooks, Worker};
use tokio_util::sync::CancellationToken;

use crate::support::app::{wait_until, TestApp};
use crate::support::tcpproxy::TcpProxy;

/// Rule W5: a step that panics ends like any other. Its lease ends, in the table and in the
/// worker's book (before, the lease stayed in the book and was renewed for as long as the
/// process lived, so nobody could take the row), with an event naming the internal error; an
/// intent whose send had not begun counts as not sent. The row is asked again by order query,
/// as after any unclear answer; if that step panics too, the order goes to a person. The
/// worker goes on with the next order meanwhile.
#[tokio::test]
async fn a_step_that_panics_holds_no_lease_and_a_second_panic_sends_its_row_to_review() {
    let app = TestApp::new().await;
    let worker = app
        .worker()
        .with_hooks(TestHooks::parse("panic@after-claim"));
    let order_no = app.order_and_enqueue(1, None, json!({})).await;

    let round = worker.step().await.unwrap();
    let outcome = &round.outcomes[0];
    assert_eq!(outcome.to, Some(State::Paying), "{}", outcome.note);
    assert!(outcome.note.contains("panicked"), "{}", outcome.note);
    let row = app.job(&order_no).await;
    assert_eq!((row.state.as_str(), row.error_streak), ("paying", 1));
    assert_eq!(
        row.pay_not_sent, 1,
        "it panicked before the send began: the intent counts as not sent"
    );
    assert_eq!((row.lease_owner, row.lease_expires_at), (None, None));
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&order_no) && error.contains("internal error") && error.contains("panicked"),
        "{error}"
    );
    let events = app.store.events(&order_no).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "step_panicked"),
        "{events:?}"
    );
    assert_eq!(
        app.pay_requests(&order_no),
        0,
        "it panicked before the send"
    );
    worker.heartbeat().await.unwrap();

    app.advance(Duration::from_secs(1)).await;

    // The panicked order's next step panics too: a person looks.
    let round = worker.step().await.unwrap();
    assert!(
        round.outcomes.iter().all(|o| o.note.contains("panicked")),
        "{round:?}"
    );
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(
        row.last_error.unwrap_or_default().contains("retry --repay"),
        "the intent counts as sent: the operator checks ATRIP"
    );
    let retried = app
        .store
        .retry(&order_no, None, true, "test")
        .await
        .unwrap();
    assert!(retried.may_pay);
    // The worker goes on: this order and another are paid by a worker without the failpoint.
    let other = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
    app.assert_ticketed_once(&other, 1).await;
}

/// Rules W5 and P3a: a step that panics after `pay.do` was accepted keeps what it learned.
/// The evidence is written and the order followed to its tickets: no person is asked to look
/// at an order that is paid.
#[tokio::test]
async fn a_step_that_panics_after_an_accepted_pay_keeps_the_evidence_and_follows_the_order() {
    let app = TestApp::new().await;
    let worker = app
        .worker()
        .with_hooks(TestHooks::parse("panic@after-answer"));
    let order_no = app.order_and_enqueue(1, None, json!({})).await;

    let round = worker.step().await.unwrap();
    assert!(
        round.outcomes[0].note.contains("panicked"),
        "{:?}",
        round.outcomes
    );
    wait_until(
        Duration::from_secs(5),
        "the evidence to be written",
        || async { app.job(&order_no).await.paid_at.is_some() },
    )
    .await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketing", "{:?}", row.last_error);
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));
    assert_eq!(row.lease_owner, None, "the panicked step's lease ended");
    app.settle(&app.worker(), 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// Rule P3a: the database is away for longer than half the lease while an accepted `pay.do`
/// answer is being recorded. Before, the write gave up and the answer was gone: no `paid_at`,
/// the order later showed unpaid, went to a person advising `retry --repay`, and was charged
/// again. Now the evidence is kept and written as soon as the database is back, whatever
/// became of the lease, so `--repay` is refused.
#[tokio::test]
async fn an_accepted_answer_survives_a_database_away_longer_than_half_the_lease() {
    let app = TestApp::new().await;
    let db_addr = db_socket(&app.db.url());
    let proxy = TcpProxy::start(db_addr).unwrap();
    let url = with_host(&app.db.url(), proxy.addr());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&url)
        .unwrap();
    let worker = Worker::new(
        JobStore::new(pool),
        Client::new(&app.settings.atrip).unwrap(),
        app.settings.worker.clone(),
        app.settings.atrip.rate_limit_per_s,
        "cut-off-worker".to_owned(),
        app.clock.clone(),
    );
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    // The pay.do takes a second: the database goes away while it is in flight.
    app.scenario(&order_no, json!({"delay_ms": 1000})).await;

    let step = tokio::spawn({
        let worker = worker.clone();
        async move { worker.step().await }
    });
    let (sim, order) = (&app, order_no.as_str());
    wait_until(
        Duration::from_secs(5),
        "the pay.do to arrive",
        move || async move { sim.pay_requests(order) == 1 },
    )
    .await;
    proxy.hold();
    proxy.cut_all();
    let round = step.await.unwrap().unwrap();
    assert_eq!(round.outcomes[0].to, None, "the step could not record");
    assert!(
        app.job(&order_no).await.paid_at.is_none(),
        "not written yet"
    );

    // Away for longer than the whole lease, then back.
    tokio::time::sleep(app.settings.worker.lease() / 4).await;
    proxy.release();
    wait_until(
        Duration::from_secs(15),
        "the evidence to be written",
        || async { app.job(&order_no).await.paid_at.is_some() },
    )
    .await;
    let row = app.job(&order_no).await;
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));
    assert_eq!(row.state, "ticketing");
    let events = app.store.events(&order_no).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "evidence_recorded"),
        "{events:?}"
    );
    let repay = app.store.retry(&order_no, None, true, "test").await;
    assert!(
        repay.is_err(),
        "a paid order is never paid again: {repay:?}"
    );
    app.settle(&app.worker(), 200).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

/// A pool of one connection: LISTEN has a connection of its own, so the one in the pool is
/// free for claims and writes (before, LISTEN took it and no order was ever paid while
/// `/healthz` said 200). A new order is paid on NOTIFY.
#[tokio::test]
async fn a_pool_of_one_connection_pays_orders_and_wakes_on_notify() {
    let app = TestApp::new().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&app.db.url())
        .unwrap();
    let mut settings = app.settings.clone();
    // Polling alone would take this long: the order must come sooner, by NOTIFY.
    settings.worker.claim_interval_ms = 60_000;
    let worker = Worker::new(
        JobStore::new(pool),
        Client::new(&settings.atrip).unwrap(),
        settings.worker.clone(),
        settings.atrip.rate_limit_per_s,
        "one-connection".to_owned(),
        app.clock.clone(),
    );
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (worker, stop) = (worker.clone(), stop.clone());
        async move { worker.run(stop).await }
    });
    wait_until(Duration::from_secs(10), "the worker to LISTEN", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(app.pool())
        .await
        .unwrap()
            > 0
    })
    .await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    wait_until(Duration::from_secs(20), "the order to be paid", || async {
        app.job(&order_no).await.paid_at.is_some()
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(app.pay_requests(&order_no), 1);
}

/// The host and port of a PostgreSQL URL, as a socket address.
pub(crate) fn db_socket(url: &str) -> std::net::SocketAddr {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let host = match options.get_host() {
        "localhost" => "127.0.0.1",
        other => other,
    };
    format!("{host}:{}", options.get_port()).parse().unwrap()
}

/// `url` with its host and port replaced by `addr`.
fn with_host(url: &str, addr: std::net::SocketAddr) -> String {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let rest = url.split_once('@').map_or(url, |(_, rest)| rest);
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    format!("postgres://{}@{addr}/{path}", options.get_username())
}

/// Rule P1: a claim's answer lost after its commit (the connection broke on the way back)
/// leaves rows `paying` with intents no step will ever send. The worker withdraws them by the
/// claim's name: they go back to `pending` as if never claimed, with an event saying nothing
/// was sent, and are paid once. Before, each such order later showed unpaid "after a pay.do"
/// and went to a person. Rows another claim has taken since are not touched.
#[tokio::test]
async fn the_intents_of_a_claim_whose_answer_was_lost_are_withdrawn_and_paid_once() {
    let app = TestApp::new().await;
    let lost = [
        app.order_and_enqueue(1, None, json!({})).await,
        app.order_and_enqueue(1, None, json!({})).await,
    ];
    let lease = app.settings.worker.lease();
    // The claim commits; its answer is dropped, as a broken connection would.
    let claimed = app
        .store
        .claim("w1", 10, lease, true, true, "0123456789abcdef")
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    drop(claimed);
    // Another worker's claim of the same name is not this one.
    assert_eq!(
        app.store
            .withdraw_lost_claim("w2", "0123456789abcdef")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        app.store
            .withdraw_lost_claim("w1", "0123456789abcdef")
            .await
            .unwrap(),
        2
    );
    for order_no in &lost {
        let row = app.job(order_no).await;
        assert_eq!(
            (row.state.as_str(), row.pay_attempts, row.lease_owner),
            ("pending", 0, None)
        );
        let events = app.store.events(order_no).await.unwrap();
        assert_eq!(events.last().map(|e| e.kind.as_str()), Some("released"));
    }
    assert_eq!(
        app.store
            .withdraw_lost_claim("w1", "0123456789abcdef")
            .await
            .unwrap(),
        0,
        "once"
    );
    app.settle(&app.worker(), 200).await;
    for order_no in &lost {
        app.assert_ticketed_once(order_no, 1).await;
    }
}

/// The worker reads the live table whatever the role's `search_path`: PostgreSQL's default
/// `"$user", public` puts a schema named after the role first, and this role's schema holds an
/// old copy of `ticketing_jobs`. Before, the worker read the copy (and created its tables
/// there with `migrate_on_start`) and never paid the order waiting in the live table, while
/// `/readyz` said 200. Every connection's `search_path` is `database.schema` alone now.
#[tokio::test]
async fn a_schema_named_after_the_role_never_shadows_the_job_table() {
    let app = TestApp::new().await;
    let role = format!("shadow_{}", rand::random::<u32>());
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE SCHEMA {role} AUTHORIZATION {role}"),
        format!("CREATE TABLE {role}.ticketing_jobs (LIKE public.ticketing_jobs INCLUDING ALL)"),
        format!("ALTER TABLE {role}.ticketing_jobs OWNER TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let url = app.db.url().replacen("postgres@", &format!("{role}@"), 1);
    let mut worker = crate::support::binary::WorkerProcess::start(
        &app,
        &[
            ("DATABASE_URL", url),
            ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
        ],
    );
    let done = worker.wait_until_done(&app, Duration::from_secs(60)).await;
    let log = worker.stop().await;
    assert!(done, "{log}");
    app.assert_ticketed_once(&order_no, 1).await;
    let copy: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {role}.ticketing_jobs"))
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(copy, 0, "the copy was never written");
    for sql in [
        format!("DROP SCHEMA {role} CASCADE"),
        format!("DROP OWNED BY {role}"),
        format!("DROP ROLE {role}"),
    ] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
}

/// The database forgets a claim while its pay.do is on the wire (a failover to a standby
/// that had not received the intent, or a restore: the row reads `pending` again). The same
/// process claims it again at its next round; it must not start a second step, which would
/// send a second pay.do. Before, it did: ATRIP received two.
/// Rule P1d: one step per row per process.
#[tokio::test]
async fn a_claim_the_database_forgot_while_its_pay_do_is_on_the_wire_is_never_stepped_twice() {
    let app = TestApp::with_sim(atrip_simulator::SimConfig {
        duplicate_guard: false,
        latency_mean: Duration::from_millis(1500),
        ticketing_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let worker = app.worker_with(&app.settings, "forgotten");
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (worker, stop) = (worker.clone(), stop.clone());
        async move { worker.run(stop).await }
    });
    wait_until(Duration::from_secs(20), "the pay intent", || async {
        app.job(&order_no).await.pay_attempts == 1
    })
    .await;
    // The row as it was before the claim, as a promoted standby without the intent has it.
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'pending', pay_attempts = 0, pay_started_at = NULL,
                lease_owner = NULL, lease_expires_at = NULL, run_at = ticketing_now()
          WHERE order_no = $1",
    )
    .bind(&order_no)
    .execute(app.pool())
    .await
    .unwrap();
    // Claimed again (the rolled-back row is due): the claim's new intent shows it.
    wait_until(Duration::from_secs(20), "the second claim", || async {
        app.job(&order_no).await.pay_attempts == 1
    })
    .await;
    wait_until(Duration::from_secs(60), "the order to end", || async {
        let row = app.job(&order_no).await;
        State::parse(&row.state).is_some_and(State::is_finished)
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(app.pay_requests(&order_no), 1, "{}", app.ledger(&order_no));
    assert_eq!(app.charges(&order_no), 1);
}

/// The database goes back to before an order's intent after its step has ended (a failover
/// to a standby that had not received it, a restore; here the row is deleted and enqueued
/// again): the row reads `pending`, and the process that sent its pay.do claims it again. It
/// must not send a second one: the claim runs out and the order query finds the payment.
/// Before, it sent one (an adversary found it with a log-shipping standby promoted).
/// Rule P1d: no second pay.do from a process for an order it sent one for.
#[tokio::test]
async fn an_order_whose_paid_row_the_database_forgot_is_never_paid_again_by_the_process_that_paid_it(
) {
    let app = TestApp::with_sim(atrip_simulator::SimConfig {
        duplicate_guard: false,
        ticketing_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let worker = app.worker_with(&app.settings, "forgetful-db");
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (worker, stop) = (worker.clone(), stop.clone());
        async move { worker.run(stop).await }
    });
    wait_until(Duration::from_secs(20), "the payment recorded", || async {
        app.job(&order_no).await.paid_at.is_some()
    })
    .await;
    for sql in [
        "DELETE FROM ticketing_events WHERE order_no = $1",
        "DELETE FROM ticketing_jobs WHERE order_no = $1",
    ] {
        sqlx::query(sql)
            .bind(&order_no)
            .execute(app.pool())
            .await
            .unwrap();
    }
    app.enqueue(&order_no, 1, None).await;
    wait_until(Duration::from_secs(90), "the order to end", || async {
        let row = app.job(&order_no).await;
        State::parse(&row.state).is_some_and(State::is_finished)
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(app.pay_requests(&order_no), 1, "{}", app.ledger(&order_no));
    assert_eq!(app.charges(&order_no), 1);
}

/// Rule P3a across a crash: ATRIP accepts the pay.do while another session holds the row
/// locked, so the write of the acceptance waits; the worker is killed then. The evidence was
/// noted in the events (which the lock does not hold up), and another worker writes it: the
/// row shows the order paid, although ATRIP's order query still shows it unpaid, and no
/// person is told it is unpaid (with a `retry --repay` to follow).
#[tokio::test]
async fn an_acceptance_whose_write_waits_on_a_locked_row_survives_the_workers_crash() {
    use crate::support::binary::WorkerProcess;
    let app = TestApp::new().await;
    let order_no = app.create_order(json!({})).await;
    // Paid, but shown unpaid by the order query for minutes; the answer takes a second.
    app.scenario(
        &order_no,
        json!({"payment_in_progress_ms": 600000, "delay_ms": 1000}),
    )
    .await;
    let fast = [
        ("APP_WORKER__LEASE_MS", "6000".to_owned()),
        ("APP_ATRIP__PAY_TIMEOUT_MS", "3000".to_owned()),
        ("APP_ATRIP__QUERY_TIMEOUT_MS", "3000".to_owned()),
        ("APP_WORKER__UNPAID_SETTLE_S", "600".to_owned()),
    ];
    let first = WorkerProcess::start(&app, &fast);
    app.enqueue(&order_no, 1, None).await;
    wait_until(Duration::from_secs(10), "the pay.do", || async {
        assert!(!first.log().contains("error:"), "{}", first.log());
        app.pay_requests(&order_no) == 1
    })
    .await;
    // Another session locks the row while the answer is on its way back.
    let mut locker = app.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM ticketing_jobs WHERE order_no = $1 FOR UPDATE")
        .bind(&order_no)
        .execute(&mut *locker)
        .await
        .unwrap();
    wait_until(Duration::from_secs(15), "the evidence noted", || async {
        first
            .log()
            .contains("evidence of payment noted in the events")
    })
    .await;
    first.signal("KILL");
    locker.commit().await.unwrap();
    assert!(
        app.job(&order_no).await.paid_at.is_none(),
        "the killed worker wrote it after all"
    );
    let second = WorkerProcess::start(&app, &fast);
    wait_until(
        Duration::from_secs(20),
        "the evidence in the row",
        || async { app.job(&order_no).await.paid_at.is_some() },
    )
    .await;
    let row = app.job(&order_no).await;
    assert_eq!(row.paid_evidence.as_deref(), Some("pay_accepted"));
    assert_ne!(row.state, "needs_review");
    assert_eq!(app.charges(&order_no), 1);
    assert_eq!(app.pay_requests(&order_no), 1);
    second.stop().await;
}
