//! The surroundings a deployment brings (docs/design.md, rules E1-E4 and C3), each against
//! the real component: a private server whose WAL files the test reads and which it crashes,
//! a hot standby, a role a DBA tuned with hostile settings, the real binary in production.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use atrip_simulator::{self as simulator, SimConfig};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use ticketing_tracker::sealed::CardKey;

use crate::cli::{command, finish};
use crate::pgpair_harness::{alone, pair};
use crate::support::app::{vcc_card, TestApp};
use crate::support::binary::WorkerProcess;
use crate::support::pgpair::{self, Replication};
use crate::support::tcpproxy::TcpProxy;

/// Bounds for a loaded machine, not timing claims.
const START: Duration = Duration::from_secs(60);
const DONE: Duration = Duration::from_secs(120);

/// The line a production worker writes when the database refuses plain cards.
const REFUSING: &str = "plain cards refused by the database";

/// The environment of a production worker (or CLI) against the simulator on the loopback.
fn production() -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENVIRONMENT", "production".into()),
        ("APP_ATRIP__CLIENT_ID", "sim-client".into()),
        ("APP_ATRIP__CLIENT_SECRET", "sim-secret".into()),
        ("APP_ATRIP__ALLOW_PLAIN_HTTP", "true".into()),
    ]
}

fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy(url)
        .unwrap()
}

async fn sim() -> simulator::SimHandle {
    simulator::start(
        SimConfig {
            duplicate_guard: false,
            ticketing_delay: Duration::from_millis(200),
            ..SimConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

/// Every byte of the server's WAL files.
fn wal(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data.join("pg_wal")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Rule P9a.
#[tokio::test]
async fn in_production_a_plain_card_is_refused_before_any_of_it_reaches_the_wal() {
    let Some(pg) = alone().await else {
        return;
    };
    pg.create_database("cards").await.unwrap();
    let url = pgpair::url_at(pg.primary_addr(), "cards");
    let db = pool(&url);
    ticketing_tracker::MIGRATOR.run(&db).await.unwrap();
    let sim = sim().await;
    let mut worker = WorkerProcess::start_at(&url, &sim.base_url(), &production());
    let line = worker
        .wait_log(REFUSING, START)
        .await
        .unwrap_or_else(|log| panic!("no start line saying {REFUSING:?}:\n{log}"));
    assert!(line.contains("every database session pins"), "{line}");

    let refused_number = vcc_card()["cardNumber"].as_str().unwrap().to_owned();
    let insert = "INSERT INTO ticketing_jobs (order_no, payment_method, card) VALUES ($1, 3, $2)";
    let e = sqlx::query(insert)
        .bind("TESTREFUSED1")
        .bind(vcc_card())
        .execute(&db)
        .await
        .expect_err("a plain card must be refused in production");
    let e = e.as_database_error().expect("the database refused it");
    assert_eq!(e.code().as_deref(), Some("23514"), "{e}");
    assert!(
        e.message().contains("TESTREFUSED1") && e.message().contains("plain card data is refused"),
        "{e}"
    );
    assert!(!e.message().contains(&refused_number), "{e}");
    // Writing a card into an existing row is refused the same way.
    sqlx::query("INSERT INTO ticketing_jobs (order_no, payment_method, card_sealed) VALUES ('TESTSEALED1', 3, $1)")
        .bind(vec![7u8; 64])
        .execute(&db)
        .await
        .unwrap();
    let e = sqlx::query(
        "UPDATE ticketing_jobs SET card = $1, card_sealed = NULL WHERE order_no = 'TESTSEALED1'",
    )
    .bind(vcc_card())
    .execute(&db)
    .await
    .expect_err("an update writing a plain card must be refused");
    assert_eq!(
        e.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23514")
    );
    worker.stop().await;

    // The control: where plain cards are allowed, the same insert does reach the WAL, and
    // this test finds its card number there.
    sqlx::query(
        "UPDATE ticketing_card_policy SET plain_cards_allowed = true, decided_by = 'the test'",
    )
    .execute(&db)
    .await
    .unwrap();
    let mut control = vcc_card();
    control["cardNumber"] = json!("4111111111111111");
    sqlx::query(insert)
        .bind("TESTCONTROL1")
        .bind(&control)
        .execute(&db)
        .await
        .unwrap();
    let wal = wal(pg.primary_data());
    assert!(
        holds(&wal, "4111111111111111"),
        "the control card number should be in the WAL: the test reads the right files"
    );
    assert!(
        !holds(&wal, &refused_number),
        "the refused card number is in the WAL"
    );
}

#[tokio::test]
async fn in_production_the_cli_seals_card_data_and_refuses_a_card_it_cannot_seal() {
    let app = TestApp::new().await;
    let key = CardKey::generate();
    let mut env = production();
    env.push(("APP_CARD__SECRET_KEY", key.secret_base64()));
    let mut worker = WorkerProcess::start(&app, &env);
    worker
        .wait_log(REFUSING, START)
        .await
        .unwrap_or_else(|log| panic!("no start line saying {REFUSING:?}:\n{log}"));
    let order_no = app.create_order(json!({})).await;
    let card = std::env::temp_dir().join(format!("tt-card-{:016x}.json", rand::random::<u64>()));
    std::fs::write(&card, vcc_card().to_string()).unwrap();
    let args = [
        "enqueue",
        "--order-no",
        &order_no,
        "--method",
        "3",
        "--card-file",
        card.to_str().unwrap(),
    ];

    // Without the key, the CLI cannot seal the card and refuses it; nothing reaches the table.
    let mut cmd = command(Some(&app.db.url()));
    cmd.envs(production()).args(args);
    let run = finish(cmd, None).await;
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.all().contains(UNSEALABLE) && run.all().contains(&order_no),
        "{run:#?}"
    );
    assert!(!run.all().contains("4532015112830366"), "{run:#?}");
    assert!(app.store.job(&order_no).await.unwrap().is_none());

    // With it, the CLI seals the card, and the worker pays it.
    let mut cmd = command(Some(&app.db.url()));
    cmd.envs(env.clone()).args(args);
    let run = finish(cmd, None).await;
    let _ = std::fs::remove_file(&card);
    run.assert_code(0);
    let row = app.job(&order_no).await;
    assert!(!row.card_plain, "no plain card in the row");
    assert!(worker.wait_until_done(&app, DONE).await, "{}", worker.log());
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!(app.ledger(&order_no)["charges"], 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_production_worker_refuses_to_start_when_the_plain_card_guard_is_disabled() {
    let app = TestApp::new().await;
    sqlx::query("ALTER TABLE ticketing_jobs DISABLE TRIGGER plain_cards_refused_on_insert")
        .execute(app.pool())
        .await
        .unwrap();
    let mut worker = WorkerProcess::start(&app, &production());
    let (code, log) = worker.wait_exit(START).await;
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("plain-card guard is missing or disabled")
            && log.contains("plain_cards_refused_on_insert"),
        "{log}"
    );
}

/// What the CLI says when it has a card and no key to seal it with, in production.
const UNSEALABLE: &str =
    "no card.secret_key (APP_CARD__SECRET_KEY): the card cannot be sealed; nothing was sent";

/// A `DATABASE_URL` where nothing listens.
fn nowhere() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("postgres://postgres@127.0.0.1:{port}/nowhere")
}

/// A server that logs every statement would write a card sent in clear into its log before
/// refusing it: the CLI refuses a card it cannot seal before it connects at all (the database
/// here is a port where nothing listens, so any attempt would be a connection error).
#[tokio::test]
async fn in_production_the_cli_refuses_a_card_it_cannot_seal_before_connecting() {
    let dir = std::env::temp_dir().join(format!("tt-unsealed-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let card = dir.join("card.json");
    std::fs::write(&card, vcc_card().to_string()).unwrap();
    let order = dir.join("order.json");
    let body = json!({"order_no": "TESTUNSEALED2", "payment_method": 3, "card": vcc_card()});
    std::fs::write(&order, body.to_string()).unwrap();
    let (card, order) = (card.to_str().unwrap(), order.to_str().unwrap());
    let url = nowhere();
    let runs: [(&str, Vec<&str>); 3] = [
        (
            "TESTUNSEALED1",
            vec![
                "enqueue",
                "--order-no",
                "TESTUNSEALED1",
                "--method",
                "3",
                "--card-file",
                card,
            ],
        ),
        ("TESTUNSEALED2", vec!["enqueue", "--from-json", order]),
        (
            "TESTUNSEALED3",
            vec!["retry", "TESTUNSEALED3", "--card-file", card],
        ),
    ];
    let number = vcc_card()["cardNumber"].as_str().unwrap().to_owned();
    let cvv = vcc_card()["cardCVV"].as_str().unwrap().to_owned();
    for (order_no, args) in runs {
        let mut cmd = command(Some(&url));
        cmd.envs(production()).args(&args);
        let run = finish(cmd, None).await;
        assert_ne!(run.code, 0, "{args:?}: {run:#?}");
        assert!(
            run.all().contains(UNSEALABLE) && run.all().contains(order_no),
            "{args:?}: {run:#?}"
        );
        assert!(!run.all().contains("cannot connect"), "{args:?}: {run:#?}");
        assert!(
            !run.all().contains(&number) && !run.all().contains(&format!("\"{cvv}\"")),
            "{args:?}: {run:#?}"
        );
    }
    // The control: a command that does connect says it cannot, so the refusals above came
    // before any connection.
    let mut cmd = command(Some(&url));
    cmd.envs(production()).args(["status", "TESTUNSEALED1"]);
    let run = finish(cmd, None).await;
    assert!(run.all().contains("cannot connect"), "{run:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// GETs `path` from the worker; the status and the body.
async fn get(base: &str, path: &str) -> (u16, String) {
    let answer = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// Polls `path` until its answer satisfies `done` (bounded); the last answer.
async fn until(base: &str, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = std::time::Instant::now() + START;
    loop {
        let (status, body) = get(base, path).await;
        if done(status, &body) || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The guard was there at start; a DBA then disables every trigger of the job table. The
/// worker is not ready, names the triggers and the statement to run, says so at error and in
/// a gauge, and is ready again once they are enabled.
#[tokio::test]
async fn a_production_worker_whose_plain_card_guard_is_disabled_later_is_not_ready_and_says_what_to_run(
) {
    let app = TestApp::new().await;
    let mut worker = WorkerProcess::start(&app, &production());
    let base = worker.http_base().await;
    let (status, body) = until(&base, "/readyz", |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}\n{}", worker.log());
    let (_, metrics) = get(&base, "/metrics").await;
    assert!(
        metrics.contains("\nticketing_card_guard_ok 1\n"),
        "{metrics}"
    );

    sqlx::query("ALTER TABLE ticketing_jobs DISABLE TRIGGER ALL")
        .execute(app.pool())
        .await
        .unwrap();
    let (status, body) = until(&base, "/readyz", |s, _| s == 503).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("plain-card guard is missing or disabled")
            && body.contains("plain_cards_refused_on_insert")
            && body.contains("ENABLE ALWAYS TRIGGER")
            && body.trim_end().lines().count() == 1,
        "{body}"
    );
    let (_, metrics) = get(&base, "/metrics").await;
    assert!(
        metrics.contains("\nticketing_card_guard_ok 0\n"),
        "{metrics}"
    );
    worker
        .wait_log("the plain-card guard is not in force", START)
        .await
        .unwrap_or_else(|log| panic!("no error line:\n{log}"));

    for trigger in [
        "plain_cards_refused_on_insert",
        "plain_cards_refused_on_update",
    ] {
        sqlx::query(&format!(
            "ALTER TABLE ticketing_jobs ENABLE ALWAYS TRIGGER {trigger}"
        ))
        .execute(app.pool())
        .await
        .unwrap();
    }
    let (status, body) = until(&base, "/readyz", |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(&base, "/metrics").await;
    assert!(
        metrics.contains("\nticketing_card_guard_ok 1\n"),
        "{metrics}"
    );
    worker.stop().await;
}

/// A second replica started with card.allow_plain = true allows plain cards at its start; the
/// first (allow_plain = false) sets the policy back to refused within seconds, naming who set it.
#[tokio::test]
async fn a_production_worker_sets_plain_cards_back_to_refused_after_another_replica_allowed_them() {
    let app = TestApp::new().await;
    let mut first = WorkerProcess::start(&app, &production());
    first
        .wait_log(REFUSING, START)
        .await
        .unwrap_or_else(|log| panic!("no start line saying {REFUSING:?}:\n{log}"));
    let mut env = production();
    env.push(("APP_CARD__ALLOW_PLAIN", "true".into()));
    let mut second = WorkerProcess::start(&app, &env);
    second
        .wait_log("plain cards ALLOWED", START)
        .await
        .unwrap_or_else(|log| panic!("the second replica did not allow plain cards:\n{log}"));
    second.stop().await;

    let deadline = std::time::Instant::now() + START;
    loop {
        let allowed: bool =
            sqlx::query_scalar("SELECT plain_cards_allowed FROM ticketing_card_policy")
                .fetch_one(app.pool())
                .await
                .unwrap();
        if !allowed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy stayed allowed:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let line = first
        .wait_log("set back to refused", START)
        .await
        .unwrap_or_else(|log| panic!("no error line:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("card.allow_plain = true"),
        "{line}"
    );
    first.stop().await;
}

/// A role the worker logs in as, with what the job table needs, and settings a DBA chose.
async fn role_with(app: &TestApp, settings: &[(&str, &str)]) -> String {
    let role = format!("tt_dba_{:08x}", rand::random::<u32>());
    let db = app.db.url();
    let name = db.rsplit('/').next().unwrap().split('?').next().unwrap();
    let mut sql = vec![
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ];
    for (setting, value) in settings {
        // A list (search_path) is one quoted item each: quoted whole, it would be one name.
        let value = value
            .split(", ")
            .map(|item| format!("'{item}'"))
            .collect::<Vec<_>>()
            .join(", ");
        sql.push(format!(
            "ALTER ROLE {role} IN DATABASE \"{name}\" SET {setting} = {value}"
        ));
    }
    for statement in sql {
        sqlx::query(&statement).execute(app.pool()).await.unwrap();
    }
    db.replacen("postgres@", &format!("{role}@"), 1)
}

/// Settings a DBA may choose for the server, a database or a role, each of which broke a
/// promise of the worker before it pinned its own (issue text: serializable claims, timeouts
/// of a millisecond, idle sessions cut, asynchronous commits, another schema first).
const HOSTILE: [(&str, &str); 8] = [
    ("default_transaction_isolation", "serializable"),
    ("statement_timeout", "1ms"),
    ("lock_timeout", "1ms"),
    ("idle_in_transaction_session_timeout", "1ms"),
    ("idle_session_timeout", "200ms"),
    ("synchronous_commit", "off"),
    ("TimeZone", "Pacific/Chatham"),
    ("search_path", "nowhere, public"),
];

#[tokio::test]
async fn a_worker_whose_role_a_dba_tuned_with_hostile_settings_pays_every_order_once() {
    let app = TestApp::new().await;
    let url = role_with(&app, &HOSTILE).await;
    let mut orders = Vec::new();
    for _ in 0..12 {
        let order_no = app.create_order(json!({})).await;
        app.store.enqueue(&order_no, 1, None, None).await.unwrap();
        orders.push(order_no);
    }
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("DATABASE_URL", url),
            ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
            ("APP_WORKER__CONCURRENCY", "4".into()),
        ],
    );
    let line = worker
        .wait_log("every database session pins", START)
        .await
        .unwrap_or_else(|log| panic!("no start line:\n{log}"));
    for pin in [
        "statement_timeout=15000",
        "default_transaction_isolation=read committed",
        "idle_session_timeout=0",
    ] {
        assert!(line.contains(pin), "{pin} not in {line}");
    }
    assert!(worker.wait_until_done(&app, DONE).await, "{}", worker.log());
    // Idle for longer than the role's idle_session_timeout: the pool's connections stay.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = app.create_order(json!({})).await;
    app.store.enqueue(&late, 1, None, None).await.unwrap();
    orders.push(late);
    assert!(worker.wait_until_done(&app, DONE).await, "{}", worker.log());
    let log = worker.stop().await;
    for order_no in &orders {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{order_no}: {:?}", row.last_error);
        assert_eq!(app.ledger(order_no)["charges"], 1, "{order_no}");
    }
    let worked = after_start(&log);
    for symptom in [
        "canceling statement",
        "could not serialize",
        "terminating connection",
        "idle-session timeout",
        "lock timeout",
    ] {
        assert!(!worked.contains(symptom), "{symptom} in the log:\n{log}");
    }
}

/// The log from the line that says the worker runs: before it, the start may have met the
/// role's timeouts of a millisecond on a loaded machine (they time its first statement on a
/// connection with no pins yet, `BEGIN` included) and said so in a `trying again` line, by
/// design (rule E1: the start's patience); after it, the worker's own sessions must never.
fn after_start(log: &str) -> &str {
    let at = log
        .find("HTTP endpoints listening")
        .unwrap_or_else(|| panic!("the worker never said it runs:\n{log}"));
    &log[at..]
}

/// The statements a connection runs before its pins are known to be in force (whether a
/// pooler stands between, whether the server takes writes) run with the role's settings: a
/// statement timeout of a millisecond, and a schema the role puts before `pg_catalog` whose
/// functions of the same names are slow and lie (a standby, always the same backend). The
/// worker starts all the same, on what the server says, and pays every order once.
/// Rule E1 standing for assumption A1.
#[tokio::test]
async fn a_role_whose_search_path_shadows_pg_catalog_with_slow_lies_starts_and_pays_once() {
    let app = TestApp::new().await;
    for statement in [
        "CREATE SCHEMA shadow",
        "CREATE FUNCTION shadow.pg_backend_pid() RETURNS integer LANGUAGE sql \
         AS 'SELECT 1 FROM pg_catalog.pg_sleep(0.05)'",
        "CREATE FUNCTION shadow.pg_is_in_recovery() RETURNS boolean LANGUAGE sql \
         AS 'SELECT true FROM pg_catalog.pg_sleep(0.05)'",
        "GRANT USAGE ON SCHEMA shadow TO PUBLIC",
    ] {
        sqlx::query(statement).execute(app.pool()).await.unwrap();
    }
    let mut settings: Vec<(&str, &str)> = HOSTILE
        .into_iter()
        .filter(|(name, _)| *name != "search_path")
        .collect();
    settings.push(("search_path", "shadow, pg_catalog, public"));
    let url = role_with(&app, &settings).await;
    let order_no = app.create_order(json!({})).await;
    app.store.enqueue(&order_no, 1, None, None).await.unwrap();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("DATABASE_URL", url),
            ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
        ],
    );
    let line = worker
        .wait_log("every database session pins", START)
        .await
        .unwrap_or_else(|log| panic!("no start line:\n{log}"));
    assert!(line.contains("statement_timeout=15000"), "{line}");
    assert!(worker.wait_until_done(&app, DONE).await, "{}", worker.log());
    let log = worker.stop().await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketed", "{:?}\n{log}", row.last_error);
    assert_eq!(app.ledger(&order_no)["charges"], 1);
    // The lies are never believed, at start or after.
    for symptom in ["in recovery", "transaction pooler"] {
        assert!(!log.contains(symptom), "{symptom} in the log:\n{log}");
    }
    let worked = after_start(&log);
    assert!(
        !worked.contains("canceling statement"),
        "a statement cancelled after the start:\n{log}"
    );
}

/// What a pooler that drops the startup options would give: a connection without the pins,
/// with the role's settings in force. The check names the setting.
/// Rule E1 standing for assumption A1 (isolation, search_path and timeouts pinned).
#[tokio::test]
async fn a_connection_whose_pins_are_not_in_force_is_refused_naming_the_setting() {
    let app = TestApp::new().await;
    let url = role_with(
        &app,
        &[("search_path", "public"), ("statement_timeout", "1ms")],
    )
    .await;
    let settings = crate::support::app::test_settings(&url, &app.sim.base_url());
    let pins = settings.database.session_pins();
    let mut bare = sqlx::PgConnection::connect(&url).await.unwrap();
    let refusal = ticketing_tracker::surroundings::check_connection(&mut bare, &pins)
        .await
        .expect_err("a connection without the pins must be refused");
    let why = refusal.to_string();
    assert!(
        why.contains("statement_timeout")
            && why.contains("\"1\"")
            && why.contains("dropped the startup options"),
        "{why}"
    );
    // With the options sent, the same role's connection passes.
    let mut pinned = sqlx::ConnectOptions::connect(&settings.database.connect_options().unwrap())
        .await
        .unwrap();
    ticketing_tracker::surroundings::check_connection(&mut pinned, &pins)
        .await
        .unwrap();
}

/// A worker logging in with `url` (a role [`role_with`] made), which runs no migrations.
fn start_as(app: &TestApp, url: String) -> WorkerProcess {
    start_as_with(app, url, &[])
}

/// [`start_as`] with `settings` (environment variables) on top.
fn start_as_with(app: &TestApp, url: String, settings: &[(&str, &str)]) -> WorkerProcess {
    let mut env = vec![
        ("DATABASE_URL", url),
        ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
    ];
    env.extend(settings.iter().map(|&(k, v)| (k, v.to_owned())));
    WorkerProcess::start(app, &env)
}

/// The role's login name in a URL [`role_with`] made.
fn role_of(url: &str) -> String {
    let login = url.split("://").nth(1).unwrap();
    login.split('@').next().unwrap().to_owned()
}

/// A worker started as a fresh role after `revoke` (given the role's name) ran: it must
/// refuse to start. Its role and log.
async fn refused_start_after(app: &TestApp, revoke: impl Fn(&str) -> String) -> (String, String) {
    refused_start_with(app, revoke, &[]).await
}

/// [`refused_start_after`] with `settings` (environment variables) on top.
async fn refused_start_with(
    app: &TestApp,
    revoke: impl Fn(&str) -> String,
    settings: &[(&str, &str)],
) -> (String, String) {
    let url = role_with(app, &[]).await;
    let role = role_of(&url);
    sqlx::query(&revoke(&role))
        .execute(app.pool())
        .await
        .unwrap();
    let mut worker = start_as_with(app, url, settings);
    let (code, log) = worker.wait_exit(START).await;
    assert_ne!(code, Some(0), "{log}");
    (role, log)
}

#[tokio::test]
async fn a_worker_whose_role_lacks_a_privilege_it_needs_refuses_to_start_naming_the_grant() {
    let app = TestApp::new().await;
    let (role, log) = refused_start_after(&app, |role| {
        format!("REVOKE UPDATE ON ticketing_jobs FROM {role}")
    })
    .await;
    assert!(
        log.contains("lacks UPDATE on ticketing_jobs")
            && log.contains(&format!("GRANT UPDATE ON ticketing_jobs TO {role};")),
        "{log}"
    );
}

/// The reconciliation's runs (rules R5, R6): SELECT always (`/metrics` reads them), INSERT
/// and UPDATE with the daily run (its row is its claim and its heartbeat). A role without
/// them is refused at start, naming the GRANT, not met later as a daily run that never lands.
#[tokio::test]
async fn a_worker_whose_role_lacks_a_privilege_on_the_reconcile_runs_refuses_to_start_naming_the_grant(
) {
    let app = TestApp::new().await;
    let (role, log) = refused_start_after(&app, |role| {
        format!("REVOKE SELECT ON ticketing_reconcile_runs FROM {role}")
    })
    .await;
    assert!(
        log.contains("lacks SELECT on ticketing_reconcile_runs")
            && log.contains(&format!(
                "GRANT SELECT ON ticketing_reconcile_runs TO {role};"
            )),
        "{log}"
    );
    // The daily run writes its row: UPDATE is needed with `reconcile.daily`.
    let (role, log) = refused_start_with(
        &app,
        |role| format!("REVOKE UPDATE ON ticketing_reconcile_runs FROM {role}"),
        &[("APP_RECONCILE__DAILY", "true")],
    )
    .await;
    assert!(
        log.contains(&format!(
            "GRANT UPDATE ON ticketing_reconcile_runs TO {role};"
        )),
        "{log}"
    );
}

/// Rules L2, L3 and E1: with the console on, a login reads the named account and counts its
/// wrong passwords; a role without UPDATE on the accounts is refused at start, naming the
/// GRANT, not met later as a login that cannot lock an account.
#[tokio::test]
async fn a_console_whose_role_cannot_update_the_accounts_refuses_to_start_naming_the_grant() {
    let app = TestApp::new().await;
    let (role, log) = refused_start_with(
        &app,
        |role| format!("REVOKE UPDATE ON ticketing_console_users FROM {role}"),
        &[("APP_CONSOLE__ENABLED", "true")],
    )
    .await;
    assert!(
        log.contains(&format!(
            "GRANT UPDATE ON ticketing_console_users TO {role};"
        )),
        "{log}"
    );
}

/// A hardening script that revoked EXECUTE on functions from PUBLIC: the claim's function is
/// named, with the GRANT, before any claim fails.
#[tokio::test]
async fn a_worker_that_may_not_execute_the_claims_function_refuses_to_start_naming_the_grant() {
    let app = TestApp::new().await;
    let (role, log) = refused_start_after(&app, |_| {
        "REVOKE EXECUTE ON FUNCTION ticketing_due(boolean, boolean, integer) FROM PUBLIC".into()
    })
    .await;
    assert!(
        log.contains(&format!(
            "GRANT EXECUTE ON FUNCTION ticketing_due(boolean, boolean, integer) TO {role};"
        )),
        "{log}"
    );
}

/// A privilege revoked after the start: every claim fails. After a few rounds the worker is
/// not ready, naming the error (and not the database), counts the failures, and is ready again
/// once a claim succeeds.
#[tokio::test]
async fn a_worker_whose_claims_keep_failing_is_not_ready_naming_the_error() {
    let app = TestApp::new().await;
    let url = role_with(&app, &[]).await;
    let role = role_of(&url);
    let mut worker = start_as(&app, url);
    let base = worker.http_base().await;
    let (status, body) = until(&base, "/readyz", |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}\n{}", worker.log());

    sqlx::query(&format!("REVOKE UPDATE ON ticketing_jobs FROM {role}"))
        .execute(app.pool())
        .await
        .unwrap();
    let (status, body) = until(&base, "/readyz", |s, _| s == 503).await;
    assert_eq!(status, 503, "{body}\n{}", worker.log());
    let db = app.db.url();
    let name = db.rsplit('/').next().unwrap().split('?').next().unwrap();
    assert!(
        body.contains("claim rounds failed")
            && body.contains("permission denied for table ticketing_jobs")
            && !body.contains(name)
            && !body.contains("postgres://")
            && body.trim_end().lines().count() == 1,
        "{body}"
    );
    let (_, metrics) = get(&base, "/metrics").await;
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ticketing_claim_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 5.0, "{metrics}");

    sqlx::query(&format!("GRANT UPDATE ON ticketing_jobs TO {role}"))
        .execute(app.pool())
        .await
        .unwrap();
    let (status, body) = until(&base, "/readyz", |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}");
    worker.stop().await;
}

#[tokio::test]
async fn a_worker_refuses_to_start_on_a_database_a_dba_made_read_only() {
    let app = TestApp::new().await;
    let url = role_with(&app, &[("default_transaction_read_only", "on")]).await;
    let mut worker = start_as(&app, url);
    let (code, log) = worker.wait_exit(START).await;
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("default_transaction_read_only = on"), "{log}");
}

#[tokio::test]
async fn a_worker_refuses_to_start_on_a_hot_standby() {
    let Some(pair) = pair(Replication::Asynchronous).await else {
        return;
    };
    pair.create_database("standby").await.unwrap();
    ticketing_tracker::MIGRATOR
        .run(&pool(&pgpair::url_at(pair.primary_addr(), "standby")))
        .await
        .unwrap();
    let standby = pgpair::url_at(pair.standby_addr().unwrap(), "standby");
    // Until the standby has replayed the database and its migrations.
    let deadline = std::time::Instant::now() + START;
    loop {
        let migrated = sqlx::PgConnection::connect(&standby).await;
        if let Ok(mut conn) = migrated {
            let done: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM ticketing_card_policy")
                    .fetch_one(&mut conn)
                    .await;
            if done.is_ok() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never replayed the migrations"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sim = sim().await;
    let mut worker = WorkerProcess::start_at(
        &standby,
        &sim.base_url(),
        &[("APP_DATABASE__MIGRATE_ON_START", "false".into())],
    );
    let (code, log) = worker.wait_exit(START).await;
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("standby in recovery"), "{log}");
}

/// Rule E3: a database a DBA fenced makes the worker not ready, and `/readyz` and `/metrics`
/// say why, in time for a probe and a scraper.
#[tokio::test]
async fn a_database_that_turns_read_only_makes_the_worker_not_ready_and_says_why() {
    let app = TestApp::new().await;
    let url = role_with(&app, &[]).await;
    let role = role_of(&url);
    let mut worker = start_as(&app, url);
    let base = worker.http_base().await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", worker.log());

    // A DBA fences the database (or a DNS name now points at a replica): new sessions are
    // read-only, and the old ones are cut.
    let db = app.db.url();
    let name = db
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    for sql in [
        format!("ALTER ROLE {role} IN DATABASE \"{name}\" SET default_transaction_read_only = on"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    ] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
    let mut answer = String::new();
    let deadline = std::time::Instant::now() + START;
    while std::time::Instant::now() < deadline {
        let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
        answer = ready.text().await.unwrap();
        if answer.contains("read-only") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answer.contains("not ready") && answer.contains("default_transaction_read_only"),
        "{answer}"
    );
    // A scraper gives up after its timeout (Prometheus: 10 s by default); the figures that
    // say why must reach it within that, not after the pool's acquire timeout.
    let asked = std::time::Instant::now();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "/metrics took {:?} on a database that refuses new connections",
        asked.elapsed()
    );
    assert!(
        metrics.contains("\nticketing_database_writable 0"),
        "{metrics}"
    );
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ticketing_database_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{metrics}");
    let log = worker.stop().await;
    assert!(
        log.contains("a new database connection was refused"),
        "{log}"
    );
}

/// A server that archives its WAL may feed a standby the worker cannot see (log shipping:
/// `restore_command`, no `primary_conninfo`); promoted, it lacks the intents the archive had
/// not received. With `archive_mode` on and no standby seen, the start says so at `warn` and
/// in its durability line. Rules P1b and P1d (what a process's memory cannot cover).
#[tokio::test]
async fn p1b_a_server_that_archives_its_wal_with_no_standby_seen_is_named_at_start() {
    let Some(mut pg) = alone().await else {
        return;
    };
    let admin = pgpair::url_at(pg.primary_addr(), "postgres");
    for sql in [
        "ALTER SYSTEM SET archive_mode = on",
        "ALTER SYSTEM SET archive_command = '/bin/true'",
    ] {
        sqlx::query(sql).execute(&pool(&admin)).await.unwrap();
    }
    // archive_mode takes a restart.
    pg.crash_and_restart_primary().await.unwrap();
    pg.create_database("archiving").await.unwrap();
    let url = pgpair::url_at(pg.primary_addr(), "archiving");
    let sim = sim().await;
    let mut worker = WorkerProcess::start_at(&url, &sim.base_url(), &[]);
    let warning = worker
        .wait_log("archive_mode is on and no standby is seen", START)
        .await
        .unwrap_or_else(|log| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("log shipping"),
        "{warning}"
    );
    let line = worker
        .wait_log("pay intents are durable when local", START)
        .await
        .unwrap_or_else(|log| panic!("no start line:\n{log}"));
    assert!(line.contains("archive_mode is on"), "{line}");
    worker.stop().await;
}

/// `synchronous_commit = off` for the database (a common throughput tweak) and a crash of the
/// server right after the claim: the intent survives, because the claim's commit is flushed
/// whatever the session's setting. The control commit, made with the database's setting at
/// the same moment, is lost, so the crash is one that loses unflushed commits.
/// Rule E1 standing for assumption A2: a flushed commit survives the crash.
#[tokio::test]
async fn an_intent_survives_a_crash_of_a_server_tuned_for_asynchronous_commits() {
    let Some(mut pg) = alone().await else {
        return;
    };
    pg.create_database("crash").await.unwrap();
    let admin = pgpair::url_at(pg.primary_addr(), "postgres");
    for sql in [
        "ALTER SYSTEM SET wal_writer_delay = '10s'",
        "SELECT pg_reload_conf()",
        "ALTER DATABASE crash SET synchronous_commit = off",
    ] {
        sqlx::query(sql).execute(&pool(&admin)).await.unwrap();
    }
    let proxy = TcpProxy::start(pg.primary_addr()).unwrap();
    let url = pgpair::url_at(proxy.addr(), "crash");
    let db = pool(&url);
    ticketing_tracker::MIGRATOR.run(&db).await.unwrap();
    sqlx::query("CREATE TABLE control (id int)")
        .execute(&db)
        .await
        .unwrap();
    let sim = sim().await;
    let atrip = ticketing_tracker::atrip::Client::new(
        &crate::support::app::test_settings(&url, &sim.base_url()).atrip,
    )
    .unwrap();
    let body = json!({ "passengers": [{ "name": "DOE/JANE", "passengerType": 0 }] });
    let order_no = atrip.create_order(&body).await.unwrap().order_no;
    ticketing_tracker::jobs::JobStore::new(db.clone())
        .enqueue(&order_no, 1, None, None)
        .await
        .unwrap();
    let worker = WorkerProcess::start_at(
        &url,
        &sim.base_url(),
        &[("TICKETING_FAILPOINTS", "stop-before-pay".into())],
    );
    let deadline = std::time::Instant::now() + START;
    while !worker.is_stopped() {
        assert!(std::time::Instant::now() < deadline, "{}", worker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The worker stopped itself right before the pay.do: its intent's commit has returned.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO control VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    pg.crash_and_restart_primary().await.unwrap();
    proxy.switch_to(pg.primary_addr());

    let db = pool(&url);
    let control: i64 = sqlx::query_scalar("SELECT count(*) FROM control")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        control, 0,
        "the control commit survived: this crash did not lose unflushed commits, so it proves nothing"
    );
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, pay_attempts FROM ticketing_jobs WHERE order_no = $1")
            .bind(&order_no)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("paying", 1),
        "the pay intent was lost in the crash: a second pay.do would follow"
    );
    worker.signal("KILL");
    let ledger = sim.ledger();
    assert_eq!(
        ledger["orders"][&order_no]["pay_requests"]
            .as_i64()
            .unwrap_or(0),
        0
    );
}

/// A database created in LATIN1 (a DBA's template): migrations are refused before the first
/// one runs, naming the encoding and what to create instead; nothing is left half-applied.
/// Rule E1.
#[tokio::test]
async fn e1_migrations_refuse_a_database_not_in_utf8_naming_the_encoding() {
    let app = TestApp::new().await;
    let name = format!("tt_latin1_{:08x}", rand::random::<u32>());
    sqlx::query(&format!(
        "CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    ))
    .execute(app.pool())
    .await
    .unwrap();
    let url = format!("{}/{name}", app.db.url().rsplit_once('/').unwrap().0);
    let mut cmd = command(Some(&url));
    cmd.arg("migrate");
    let run = finish(cmd, None).await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename LIKE 'ticketing%' OR tablename = '_sqlx_migrations'")
        .fetch_one(&pool(&url))
        .await
        .unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(app.pool())
        .await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("encoding is LATIN1") && run.stderr.contains("ENCODING 'UTF8'"),
        "{run:#?}"
    );
    assert_eq!(tables, 0, "a migration ran: {run:#?}");
}

/// `migrate` for a schema that does not exist, and as a role that may not create in the
/// schema: each refusal says what to change. Rule E1.
#[tokio::test]
async fn e1_migrations_without_their_schema_or_the_right_to_create_in_it_say_what_to_change() {
    let app = TestApp::new().await;
    let mut cmd = command(Some(&app.db.url()));
    cmd.env("APP_DATABASE__SCHEMA", "nosuchschema")
        .arg("migrate");
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("CREATE SCHEMA nosuchschema"),
        "{run:#?}"
    );

    let role = format!("tt_nocreate_{:08x}", rand::random::<u32>());
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        "CREATE SCHEMA owned_elsewhere".to_owned(),
        format!("GRANT USAGE ON SCHEMA owned_elsewhere TO {role}"),
    ] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
    let url = app.db.url().replacen("postgres@", &format!("{role}@"), 1);
    let mut cmd = command(Some(&url));
    cmd.env("APP_DATABASE__SCHEMA", "owned_elsewhere")
        .arg("migrate");
    let run = finish(cmd, None).await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("run `ticketing-tracker migrate` as the schema's owner")
            && run.stderr.contains("migrate_on_start = false"),
        "{run:#?}"
    );
}

/// The enqueuer's role as the README grants it (INSERT on the job table, SELECT on three of
/// its columns, SELECT on the clock and the card policy that the defaults and the card guard
/// read with the caller's privileges): a row with a card and one without are enqueued, and
/// the card column stays unreadable to it.
#[tokio::test]
async fn an_enqueuer_with_the_readmes_grants_enqueues_and_cannot_read_the_card() {
    let app = TestApp::new().await;
    let role = format!("tt_enqueuer_{:08x}", rand::random::<u32>());
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT INSERT ON ticketing_jobs TO {role}"),
        format!("GRANT SELECT (id, order_no, state) ON ticketing_jobs TO {role}"),
        format!("GRANT SELECT ON ticketing_test_clock, ticketing_card_policy TO {role}"),
    ] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
    let url = app.db.url().replacen("postgres@", &format!("{role}@"), 1);
    let enqueuer = pool(&url);
    sqlx::query("INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ('TESTGRANT1', 1)")
        .execute(&enqueuer)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, card) VALUES ('TESTGRANT2', 3, $1)",
    )
    .bind(vcc_card())
    .execute(&enqueuer)
    .await
    .unwrap();
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM ticketing_jobs ORDER BY order_no")
            .fetch_all(&enqueuer)
            .await
            .unwrap();
    assert_eq!(states, ["pending", "pending"]);
    let refused = sqlx::query("SELECT card FROM ticketing_jobs")
        .fetch_all(&enqueuer)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    enqueuer.close().await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(&sql).execute(app.pool()).await.unwrap();
    }
}

/// An enqueuer whose session puts another schema first, one that holds a table named like the
/// job table's clock: the job table's defaults still take the database's time from its own
/// schema's clock.
#[tokio::test]
async fn the_tables_own_functions_ignore_the_callers_search_path() {
    let app = TestApp::new().await;
    let mut conn = app.pool().acquire().await.unwrap();
    for sql in [
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE elsewhere.ticketing_test_clock (only_row boolean PRIMARY KEY DEFAULT true, shift interval NOT NULL)",
        "INSERT INTO elsewhere.ticketing_test_clock (shift) VALUES (interval '1 day')",
        "SET search_path = elsewhere, public",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    sqlx::query("INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ('TESTPATH1', 1)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let ahead: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM run_at - now())::float8 FROM public.ticketing_jobs WHERE order_no = 'TESTPATH1'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::query("RESET search_path")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(
        ahead < 3600.0,
        "run_at is {ahead} s ahead: ticketing_now() read the caller's schema's clock"
    );
}

/// A worker that starts while its database refuses connections (restarting, failing over, a
/// pooler waiting out `server_login_retry`) keeps trying, saying so, and runs once the
/// database is back; a failure waiting cannot mend ends the start at once (the tests above).
#[tokio::test]
async fn a_worker_started_while_the_database_is_away_waits_for_it_and_runs() {
    let app = TestApp::new().await;
    let proxy = TcpProxy::start(crate::faults::db_socket(&app.db.url())).unwrap();
    proxy.refuse();
    let path = app.db.url();
    let path = path.rsplit('/').next().unwrap();
    let url = format!("postgres://postgres@{}/{path}", proxy.addr());
    let mut worker = WorkerProcess::start(&app, &[("DATABASE_URL", url)]);
    worker
        .wait_log("the database cannot be reached yet; trying again", START)
        .await
        .unwrap_or_else(|log| panic!("no line saying it waits:\n{log}"));
    proxy.release();
    worker
        .wait_log("every database session pins", START)
        .await
        .unwrap_or_else(|log| panic!("never ran:\n{log}"));
    let order_no = app.create_order(json!({})).await;
    app.store.enqueue(&order_no, 1, None, None).await.unwrap();
    assert!(worker.wait_until_done(&app, DONE).await, "{}", worker.log());
    assert_eq!(app.job(&order_no).await.state, "ticketed");
    worker.stop().await;
}

/// The start line names what the promises depend on: the durability pay intents get (and the
/// metric says it too), and the proxy the environment puts between the worker and ATRIP,
/// without the proxy's credentials.
#[tokio::test]
async fn the_start_says_the_intents_durability_and_the_environments_proxy_without_its_password() {
    let app = TestApp::new().await;
    let mut worker = WorkerProcess::start(
        &app,
        &[(
            "HTTP_PROXY",
            "http://proxyuser:proxypass@127.0.0.1:9".to_owned(),
        )],
    );
    let base = worker.http_base().await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log = worker.stop().await;
    assert!(
        log.contains("pay intents are durable when local (worker.intent_durability = auto; 0 physical standby(s) connected"),
        "{log}"
    );
    assert!(
        metrics.contains("ticketing_intent_durability{level=\"local\"} 1")
            && metrics.contains("ticketing_intent_durability{level=\"replicated\"} 0")
            && metrics.contains("ticketing_paying_held 0"),
        "{metrics}"
    );
    assert!(
        log.contains("through the proxy http://***@127.0.0.1:9 (from HTTP_PROXY"),
        "{log}"
    );
    assert!(
        !log.contains("proxypass"),
        "the proxy's password was logged:\n{log}"
    );
}
