//! Behind a real PgBouncer in transaction mode (skipped, saying so, when the binary is absent
//! and `CI` is not `true`): the start tells a transaction pooler from a direct connection, and
//! worker processes of the real binary pay every order once with no statement landing on
//! another client's prepared statement.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use atrip_simulator::SimConfig;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use ticketing_tracker::config::Settings;
use ticketing_tracker::jobs::{pooler, Db};

use crate::support::app::TestApp;
use crate::support::binary::WorkerProcess;
use crate::support::db::TestDb;
use crate::support::pgbouncer::{self, PgBouncer};

/// What a statement that reached another client's prepared statement (or none) says, in the
/// forms sqlx and PostgreSQL give it.
const STATEMENT_ERRORS: [&str; 6] = [
    "prepared statement",
    "bind message",
    "number of array dimensions",
    "unnamed portal",
    "unexpected message",
    "insufficient data left in message",
];

/// Two statements with different parameter counts, `rounds` times from each of `clients`
/// tasks on `db`: the errors they got.
async fn hammer(db: &Db, clients: usize, rounds: usize) -> Vec<String> {
    let tasks = (0..clients).map(|c| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for r in 0..rounds as i64 {
                let sum: Result<i64, _> = sqlx::query_scalar("SELECT $1::bigint + $2::bigint")
                    .bind(c as i64)
                    .bind(r)
                    .fetch_one(&db)
                    .await;
                match sum {
                    Ok(sum) if sum == c as i64 + r => {}
                    Ok(sum) => errors.push(format!("wrong sum {sum}")),
                    Err(e) => errors.push(e.to_string()),
                }
                let text: Result<String, _> =
                    sqlx::query_scalar("SELECT $1::text || $2::text || $3::text || $4::text")
                        .bind("a")
                        .bind("b")
                        .bind("c")
                        .bind("d")
                        .fetch_one(&db)
                        .await;
                match text {
                    Ok(t) if t == "abcd" => {}
                    Ok(t) => errors.push(format!("wrong text {t}")),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            errors
        })
    });
    let mut all = Vec::new();
    for t in futures_util::future::join_all(tasks).await {
        all.extend(t.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_tells_a_transaction_pooler_from_a_direct_connection() {
    let Some(bin) =
        pgbouncer::binary_or_skip("the_start_tells_a_transaction_pooler_from_a_direct_connection")
    else {
        return;
    };
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(&bin, &db.url(), 4);

    let through: PgConnectOptions = bouncer.url().parse().unwrap();
    let seen = pooler::look(&through).await.unwrap();
    assert!(seen.pooled, "{}", seen.how);
    let direct: PgConnectOptions = db.url().parse().unwrap();
    let seen = pooler::look(&direct).await.unwrap();
    assert!(!seen.pooled, "{}", seen.how);

    // The way the binary starts: auto finds the pooler, a statement goes through it with the
    // schema as its search_path, and migrations are refused, naming the setting.
    let mut settings = Settings::defaults();
    settings.database.url = bouncer.url().into();
    let database = ticketing_tracker::startup::connect(&settings)
        .await
        .unwrap();
    assert!(database.pooled);
    assert!(
        database.how.contains("auto, detected")
            && database
                .how
                .contains("search_path in each transaction: public"),
        "{}",
        database.how
    );
    let refused = ticketing_tracker::startup::migrate(&settings, &database)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("database.direct_url"),
        "{refused:#}"
    );
    settings.database.url = db.url().into();
    let database = ticketing_tracker::startup::connect(&settings)
        .await
        .unwrap();
    assert!(!database.pooled, "{}", database.how);
}

/// PgBouncer as installed, refusing the `extra_float_digits` the driver sends: the start
/// ends at once (waiting would not help), naming PgBouncer's setting, whatever
/// `database.pooler` says. Rule E1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_a_pgbouncer_refusing_the_drivers_startup_parameter_ends_the_start_naming_its_setting() {
    let Some(bin) = pgbouncer::binary_or_skip(
        "e1_a_pgbouncer_refusing_the_drivers_startup_parameter_ends_the_start_naming_its_setting",
    ) else {
        return;
    };
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start_ignoring(&bin, &db.url(), 2, "");
    for pooler in ["auto", "transaction"] {
        let mut settings = Settings::defaults();
        settings.database.url = bouncer.url().into();
        settings.database.pooler = pooler.into();
        let began = Instant::now();
        let refused =
            ticketing_tracker::startup::connect_within(&settings, Duration::from_secs(30))
                .await
                .err()
                .unwrap_or_else(|| panic!("{pooler}: connected"));
        let said = format!("{refused:#}");
        assert!(
            said.contains("ignore_startup_parameters = extra_float_digits"),
            "{pooler}: {said}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{pooler}: tried again for {:?} as if it could pass: {said}",
            began.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_through_a_transaction_pooler_never_meet_another_clients_prepared_statement() {
    let Some(bin) = pgbouncer::binary_or_skip(
        "statements_through_a_transaction_pooler_never_meet_another_clients_prepared_statement",
    ) else {
        return;
    };
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(&bin, &db.url(), 2);
    let pool = || {
        PgPoolOptions::new()
            .max_connections(8)
            .connect_lazy(&bouncer.url())
            .unwrap()
    };

    // sqlx's named statements through the pooler: the failure this is about, so that this
    // test would see it.
    let named = hammer(&Db::from(pool()), 8, 50).await;
    assert!(
        named.iter().any(|e| e.contains("prepared statement")),
        "named statements through PgBouncer should have failed: {named:?}"
    );
    let pooled = hammer(&Db::pooled(pool(), "public", &[]), 8, 50).await;
    assert_eq!(pooled, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listen_url_behind_a_transaction_pooler_the_worker_says_it_polls_and_pays() {
    let test = "without_a_listen_url_behind_a_transaction_pooler_the_worker_says_it_polls_and_pays";
    let Some(bin) = pgbouncer::binary_or_skip(test) else {
        return;
    };
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        ticketing_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let bouncer = PgBouncer::start(&bin, &app.db.url(), 2);
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_DATABASE__URL", bouncer.url()),
            ("APP_DATABASE__MIGRATE_ON_START", "false".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ],
    );
    enqueue(&app, 0, 4).await;
    assert!(
        worker.wait_until_done(&app, Duration::from_secs(60)).await,
        "{}",
        worker.log()
    );
    let log = worker.stop().await;
    let said: Vec<&str> = log.lines().filter(|l| l.contains("no LISTEN")).collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("WARN")
            && said[0].contains("database.listen_url")
            && said[0].contains("polling every worker.claim_interval_ms (100 ms)"),
        "{}",
        said[0]
    );
    assert_eq!(
        app.store.count_by_state().await.unwrap(),
        [("ticketed".to_owned(), 4)]
    );
}

const ORDERS: u64 = 300;
const WORKERS: usize = 3;
/// The workers' poll interval: without LISTEN, a new row waits for it.
const CLAIM_INTERVAL_MS: u64 = 1000;
/// Orders enqueued one by one while the workers are idle, to time their wake-ups.
const LATE_ORDERS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_behind_a_transaction_pooler_pay_300_orders_once_with_no_statement_errors() {
    let test =
        "three_workers_behind_a_transaction_pooler_pay_300_orders_once_with_no_statement_errors";
    let Some(bin) = pgbouncer::binary_or_skip(test) else {
        return;
    };
    let seed = rand::random::<u64>();
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        duplicate_guard: false,
        ticketing_delay: Duration::from_millis(300),
        fault_rate: 0.1,
        fault_seed: Some(seed),
        gzip: false,
        ..SimConfig::default()
    })
    .await;
    // Fewer server sessions than the workers' client connections (3 x 8): every session
    // serves several clients in turn, as in production.
    let bouncer = PgBouncer::start(&bin, &app.db.url(), 6);
    let started = Instant::now();
    enqueue(&app, 0, ORDERS).await;

    let env = [
        ("APP_DATABASE__URL", bouncer.url()),
        ("APP_DATABASE__POOLER", "auto".to_owned()),
        // LISTEN, and the migrations (no direct_url: listen_url serves), on the server itself.
        ("APP_DATABASE__LISTEN_URL", app.db.url()),
        ("APP_DATABASE__MIGRATE_ON_START", "true".to_owned()),
        ("APP_DATABASE__MAX_CONNECTIONS", "8".to_owned()),
        (
            "APP_WORKER__CLAIM_INTERVAL_MS",
            CLAIM_INTERVAL_MS.to_string(),
        ),
        ("APP_WORKER__LEASE_MS", "10000".to_owned()),
        ("APP_WORKER__UNPAID_SETTLE_S", "3".to_owned()),
        ("APP_WORKER__POLL_MAX_MS", "1000".to_owned()),
        ("APP_ATRIP__PAY_TIMEOUT_MS", "2000".to_owned()),
        ("APP_ATRIP__QUERY_TIMEOUT_MS", "2000".to_owned()),
        ("APP_ATRIP__CONNECT_TIMEOUT_MS", "1000".to_owned()),
        ("APP_ATRIP__RATE_LIMIT_PER_S", "10000".to_owned()),
        ("APP_LOG__LEVEL", "info".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ];
    // All at once, each migrating on start.
    let mut workers: Vec<WorkerProcess> = (0..WORKERS)
        .map(|_| WorkerProcess::start(&app, &env))
        .collect();
    wait_until_finished(&app, &mut workers, Duration::from_secs(300), &bouncer).await;
    let elapsed = started.elapsed();

    // Wake-ups: orders enqueued one at a time while the workers are idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..LATE_ORDERS {
        enqueue(&app, ORDERS + i, 1).await;
        tokio::time::sleep(Duration::from_millis(150 + rand::random::<u64>() % 300)).await;
    }
    wait_until_finished(&app, &mut workers, Duration::from_secs(120), &bouncer).await;
    let mut wakeups: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM min(e.at) - j.created_at) * 1000)::float8
         FROM ticketing_jobs j JOIN ticketing_events e ON e.job_id = j.id AND e.kind = 'pay_intent'
         WHERE j.order_no = ANY($1) GROUP BY j.id",
    )
    .bind(order_numbers(ORDERS, LATE_ORDERS))
    .fetch_all(app.pool())
    .await
    .unwrap();
    wakeups.sort_by(f64::total_cmp);

    let mut logs = Vec::new();
    for w in workers {
        logs.push(w.stop().await);
    }
    let log = logs.join("\n");
    let statement_errors: Vec<&str> = log
        .lines()
        // The start line says "no named prepared statements".
        .filter(|l| !l.contains("database reached"))
        .filter(|l| STATEMENT_ERRORS.iter().any(|e| l.contains(e)))
        .collect();
    let database_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database error"))
        .collect();
    let states: BTreeMap<String, i64> = app
        .store
        .count_by_state()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let ledger = app.sim.ledger();
    let charged_twice: Vec<(&String, &Value)> = ledger["orders"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, o)| o["charges"].as_i64().unwrap_or(0) > 1)
        .collect();
    eprintln!(
        "{test}: {} orders, {WORKERS} workers through PgBouncer (transaction mode, 6 server sessions), fault rate 0.1 (seed {seed}): finished in {elapsed:.1?}; states {states:?}; statement errors {}; database errors {}; double charges {}; wake-ups of {LATE_ORDERS} late orders: median {:.0} ms, max {:.0} ms (poll interval {CLAIM_INTERVAL_MS} ms)",
        ORDERS + LATE_ORDERS,
        statement_errors.len(),
        database_errors.len(),
        charged_twice.len(),
        wakeups[wakeups.len() / 2],
        wakeups[wakeups.len() - 1],
    );

    for (i, l) in logs.iter().enumerate() {
        let start = l
            .lines()
            .find(|l| l.contains("database reached"))
            .unwrap_or_else(|| panic!("worker {i} said nothing of the database:\n{l}"));
        assert!(
            start.contains("transaction pooler") && start.contains("detected"),
            "worker {i}: {start}"
        );
        assert!(
            l.contains("LISTEN on database.listen_url"),
            "worker {i}:\n{l}"
        );
        assert!(!l.contains("migrations failed"), "worker {i}:\n{l}");
    }
    assert_eq!(statement_errors, Vec::<&str>::new());
    assert_eq!(database_errors, Vec::<&str>::new());
    assert_eq!(charged_twice, Vec::new(), "orders charged twice");
    let terminal = ["ticketed", "failed", "needs_review", "cancelled"];
    assert!(
        states.keys().all(|s| terminal.contains(&s.as_str())),
        "{states:?}"
    );
    assert_eq!(states.values().sum::<i64>(), (ORDERS + LATE_ORDERS) as i64);
    assert_eq!(wakeups.len(), LATE_ORDERS as usize);
    // Every late order was claimed well within the poll interval: the LISTEN on listen_url woke
    // a worker, not its next poll.
    assert!(
        wakeups[wakeups.len() - 1] < CLAIM_INTERVAL_MS as f64,
        "{wakeups:?}"
    );
    assert!(
        wakeups[wakeups.len() / 2] < CLAIM_INTERVAL_MS as f64 / 4.0,
        "{wakeups:?}"
    );
}

fn order_numbers(from: u64, n: u64) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("TESTA{}", 2026120400000001u64 + i))
        .collect()
}

/// Enqueues `n` orders numbered from `from`, the four payment methods in turn.
async fn enqueue(app: &TestApp, from: u64, n: u64) {
    app.enqueue_methods_in_turn(&order_numbers(from, n), from)
        .await;
}

/// Waits (bounded: a loaded machine, not a timing claim) until no row is unfinished, every
/// worker still running.
async fn wait_until_finished(
    app: &TestApp,
    workers: &mut [WorkerProcess],
    bound: Duration,
    bouncer: &PgBouncer,
) {
    let deadline = Instant::now() + bound;
    loop {
        let unfinished = app.store.unfinished().await.unwrap();
        if unfinished == 0 {
            return;
        }
        for w in workers.iter_mut() {
            assert!(w.is_running(), "a worker exited:\n{}", w.log());
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} unfinished after {bound:?}: {:?}\npgbouncer:\n{}",
            app.store.count_by_state().await.unwrap(),
            bouncer.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
