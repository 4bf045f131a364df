//! The operator's command line, driven as the real binary: each subcommand's exit code and
//! output, and every refusal naming what is wrong without ever echoing card data.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::process::Command;

use crate::support::app::{vcc_card, TestApp};

pub(crate) use test_support::cli::{finish, Run};

/// The binary with a clean environment: no `APP_*` variable of the developer's shell, no
/// `RUST_LOG`, quiet logs, run from a directory holding no `config/`.
pub(crate) fn command(database_url: Option<&str>) -> Command {
    let mut cmd = Command::from(std_command(database_url));
    cmd.kill_on_drop(true);
    cmd
}

/// [`command`] as a `std` command, for a test that reaps the process itself (to read its
/// resource usage).
pub(crate) fn std_command(database_url: Option<&str>) -> std::process::Command {
    test_support::cli::clean_command(env!("CARGO_BIN_EXE_ticketing-tracker"), database_url)
}

/// `ticketing-tracker ARGS` against this test's database.
pub(crate) async fn cli(app: &TestApp, args: &[&str]) -> Run {
    let mut cmd = command(Some(&app.db.url()));
    cmd.args(args);
    finish(cmd, None).await
}

/// [`cli`] with `stdin` as the process's standard input.
async fn cli_stdin(app: &TestApp, args: &[&str], stdin: &str) -> Run {
    let mut cmd = command(Some(&app.db.url()));
    cmd.args(args);
    finish(cmd, Some(stdin)).await
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn json(value: &Value) -> TempFile {
        let path = std::env::temp_dir().join(format!("tt-cli-{:016x}.json", rand::random::<u64>()));
        std::fs::write(&path, value.to_string()).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A made-up order number of the right shape (the CLI never asks the simulator).
fn order_no(prefix: &str) -> String {
    format!("{prefix}{:012}", rand::random::<u64>() % 1_000_000_000_000)
}

async fn row_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ticketing_jobs")
        .fetch_one(app.pool())
        .await
        .unwrap()
}

/// A VCC card whose number fails the Luhn check (the last digit of [`vcc_card`]'s, changed).
const BAD_LUHN_NUMBER: &str = "4532015112830367";

fn bad_luhn_card() -> Value {
    let mut card = vcc_card();
    card["cardNumber"] = json!(BAD_LUHN_NUMBER);
    card
}

#[tokio::test]
async fn migrate_applies_every_migration_to_an_empty_database_and_a_second_run_changes_nothing() {
    let app = TestApp::new().await;
    // Make this test's database empty, as a new deployment's is.
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(app.pool())
        .await
        .unwrap();
    let applied = || async {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(app.pool())
                .await
                .unwrap();
        if table.is_none() {
            return 0;
        }
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(app.pool())
            .await
            .unwrap()
    };
    assert_eq!(applied().await, 0);
    let expected = ticketing_tracker::MIGRATOR.iter().count() as i64;

    for _ in 0..2 {
        let run = cli(&app, &["migrate"]).await;
        run.assert_code(0);
        assert!(run.stdout.contains("migrations applied"), "{run:#?}");
        assert_eq!(applied().await, expected);
    }
    let jobs: Option<String> = sqlx::query_scalar("SELECT to_regclass('ticketing_jobs')::text")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(jobs.as_deref(), Some("ticketing_jobs"));
}

#[tokio::test]
async fn enqueue_inserts_a_pending_row_for_a_deposit_order() {
    let app = TestApp::new().await;
    let order = order_no("CLIDEP");

    let run = cli(&app, &["enqueue", "--order-no", &order, "--method", "1"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains(&order) && run.stdout.contains("pending"),
        "{run:#?}"
    );
    let row = app.job(&order).await;
    assert_eq!(row.state, "pending");
    assert_eq!(row.payment_method, 1);
    assert!(!row.card_plain);
    assert_eq!(row.pay_attempts, 0);

    let other = order_no("CLIJSO");
    let run = cli(
        &app,
        &[
            "enqueue",
            "--order-no",
            &other,
            "--method",
            "4",
            "--client-order-no",
            "AGENCY-7",
            "--json",
        ],
    )
    .await;
    run.assert_code(0);
    let out: Value = serde_json::from_str(run.stdout.trim()).expect("--json is JSON");
    let row = app.job(&other).await;
    assert_eq!(out["order_no"], other.as_str());
    assert_eq!(out["state"], "pending");
    assert_eq!(out["id"], row.id);
    assert_eq!(row.client_order_no.as_deref(), Some("AGENCY-7"));
}

#[tokio::test]
async fn enqueue_takes_card_data_from_a_file_or_stdin_and_never_prints_it() {
    let app = TestApp::new().await;
    let number = vcc_card()["cardNumber"].as_str().unwrap().to_owned();

    let from_file = order_no("CLIVCF");
    let card = TempFile::json(&vcc_card());
    let run = cli(
        &app,
        &[
            "enqueue",
            "--order-no",
            &from_file,
            "--method",
            "3",
            "--card-file",
            card.path(),
        ],
    )
    .await;
    run.assert_code(0);
    assert!(
        !run.all().contains(&number),
        "card number printed: {run:#?}"
    );
    let row = app.job(&from_file).await;
    assert_eq!(row.state, "pending");
    assert_eq!(app.plain_card(&from_file).await, Some(vcc_card()));

    let from_stdin = order_no("CLIVCS");
    let run = cli_stdin(
        &app,
        &[
            "enqueue",
            "--order-no",
            &from_stdin,
            "--method",
            "3",
            "--card-file",
            "-",
        ],
        &vcc_card().to_string(),
    )
    .await;
    run.assert_code(0);
    assert!(
        !run.all().contains(&number),
        "card number printed: {run:#?}"
    );
    assert_eq!(app.job(&from_stdin).await.state, "pending");
    assert_eq!(app.plain_card(&from_stdin).await, Some(vcc_card()));

    // No flag takes card data from argv, where the process list would show it to anyone.
    let from_argv = order_no("CLIVCA");
    let run = cli(
        &app,
        &[
            "enqueue",
            "--order-no",
            &from_argv,
            "--method",
            "3",
            "--card",
            &vcc_card().to_string(),
        ],
    )
    .await;
    run.assert_code(2);
    assert!(run.stderr.contains("--card"), "{run:#?}");
    assert!(app.store.job(&from_argv).await.unwrap().is_none());
    assert_eq!(row_count(&app).await, 2);
}

#[tokio::test]
async fn enqueue_takes_a_whole_row_from_a_json_file() {
    let app = TestApp::new().await;
    let order = order_no("CLIROW");
    let deadline = chrono::Utc::now() + chrono::Duration::hours(1);
    let file = TempFile::json(&json!({
        "order_no": order,
        "payment_method": 3,
        "card": vcc_card(),
        "client_order_no": "AGENCY-42",
        "pay_deadline": deadline.to_rfc3339(),
    }));

    let run = cli(&app, &["enqueue", "--from-json", file.path()]).await;
    run.assert_code(0);
    let row = app.job(&order).await;
    assert_eq!(row.state, "pending");
    assert_eq!(row.payment_method, 3);
    assert_eq!(app.plain_card(&order).await, Some(vcc_card()));
    assert_eq!(row.client_order_no.as_deref(), Some("AGENCY-42"));
    let stored = row.pay_deadline.expect("pay_deadline stored");
    assert!((stored - deadline).num_milliseconds().abs() < 1, "{stored}");

    // The same from stdin.
    let other = order_no("CLIRWS");
    let run = cli_stdin(
        &app,
        &["enqueue", "--from-json", "-"],
        &json!({"order_no": other, "payment_method": 1}).to_string(),
    )
    .await;
    run.assert_code(0);
    assert_eq!(app.job(&other).await.payment_method, 1);

    // Priority and run_at are the enqueuer's too; an unknown key is refused, not dropped.
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let scheduled = order_no("CLIRWP");
    let file = TempFile::json(&json!({
        "order_no": scheduled, "payment_method": 1, "priority": -5, "run_at": later.to_rfc3339(),
    }));
    cli(&app, &["enqueue", "--from-json", file.path()])
        .await
        .assert_code(0);
    let row = app.job(&scheduled).await;
    assert_eq!(row.priority, -5);
    assert!(
        (row.run_at - later).num_milliseconds().abs() < 1,
        "{}",
        row.run_at
    );
    let typo = order_no("CLIRWT");
    let file = TempFile::json(&json!({"order_no": typo, "payment_method": 1, "priorty": 1}));
    let run = cli(&app, &["enqueue", "--from-json", file.path()]).await;
    run.assert_code(1);
    assert!(run.all().contains("unknown key \"priorty\""), "{run:#?}");
    assert!(app.store.job(&typo).await.unwrap().is_none());
}

#[tokio::test]
async fn enqueue_refuses_bad_input_naming_what_is_wrong_and_inserts_nothing() {
    let app = TestApp::new().await;
    let existing = order_no("CLIDUP");
    cli(&app, &["enqueue", "--order-no", &existing, "--method", "1"])
        .await
        .assert_code(0);
    let bad_card = TempFile::json(&bad_luhn_card());
    let not_json = TempFile::json(&json!(null));
    std::fs::write(
        &not_json.0,
        format!("{{\"cardNumber\": \"{BAD_LUHN_NUMBER}\","),
    )
    .unwrap();
    let fresh = order_no("CLIBAD");

    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["--order-no", &fresh, "--method", "2"],
            &["payment method 2"],
        ),
        (
            vec!["--order-no", &fresh, "--method", "3"],
            &["payment method 3", "card"],
        ),
        (
            vec![
                "--order-no",
                &fresh,
                "--method",
                "3",
                "--card-file",
                bad_card.path(),
            ],
            &["cardNumber", "Luhn"],
        ),
        (
            vec![
                "--order-no",
                &fresh,
                "--method",
                "3",
                "--card-file",
                not_json.path(),
            ],
            &["card JSON is not valid JSON"],
        ),
        (
            vec![
                "--order-no",
                &fresh,
                "--method",
                "1",
                "--card-file",
                bad_card.path(),
            ],
            &["payment method 1 takes no card"],
        ),
        (
            vec!["--order-no", &existing, "--method", "1"],
            &["is already in the table (state pending)"],
        ),
        (
            vec!["--order-no", "not-an-order", "--method", "1"],
            &["order_no", "not-an-order"],
        ),
    ];
    for (args, expected) in cases {
        let run = cli(&app, &[&["enqueue"][..], &args].concat()).await;
        assert_eq!(run.code, 1, "enqueue {args:?}: {run:#?}");
        for word in expected {
            assert!(
                run.stderr.contains(word),
                "enqueue {args:?}: the error must name {word:?}: {run:#?}"
            );
        }
        assert!(
            !run.all().contains(BAD_LUHN_NUMBER),
            "enqueue {args:?} printed the card number: {run:#?}"
        );
    }
    assert_eq!(row_count(&app).await, 1, "a refused enqueue inserted a row");
}

#[tokio::test]
async fn status_shows_the_row_and_its_history_as_text_and_as_json() {
    let app = TestApp::new().await;
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    let events = app.store.events(&order).await.unwrap();
    assert!(events.len() >= 3, "{events:?}");

    let run = cli(&app, &["status", &order]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("state") && l.trim_end().ends_with("ticketed")),
        "{run:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("order") && l.trim_end().ends_with(order.as_str())),
        "{run:#?}"
    );
    let history: Vec<&str> = lines
        .iter()
        .skip_while(|l| **l != "history:")
        .skip(1)
        .copied()
        .collect();
    assert_eq!(history.len(), events.len(), "one line per event: {run:#?}");
    for (line, event) in history.iter().zip(&events) {
        assert!(
            line.contains(&event.kind) && line.contains(&event.state),
            "{line:?} should show {} -> {}",
            event.kind,
            event.state
        );
    }

    let run = cli(&app, &["status", &order, "--json"]).await;
    run.assert_code(0);
    let doc: Value = serde_json::from_str(run.stdout.trim()).expect("status --json is JSON");
    assert_eq!(doc["job"]["state"], "ticketed");
    assert_eq!(doc["job"]["order_no"], order.as_str());
    let kinds: Vec<&str> = doc["events"]
        .as_array()
        .expect("events is an array")
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, expected);

    let run = cli(&app, &["status", "NOSUCHORDER1"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("NOSUCHORDER1") && run.stderr.contains("not in the job table"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn status_and_list_never_show_the_card_data_of_a_waiting_card_order() {
    let app = TestApp::new().await;
    let order = order_no("CLISEC");
    app.enqueue(&order, 3, Some(vcc_card())).await;
    let card = vcc_card();
    let secrets = [
        card["cardNumber"].as_str().unwrap(),
        "cardCVV",
        "cardNumber",
    ];
    for args in [
        vec!["status", &order],
        vec!["status", &order, "--json"],
        vec!["list"],
        vec!["list", "--json"],
    ] {
        let run = cli(&app, &args).await;
        run.assert_code(0);
        assert!(run.stdout.contains(&order), "{args:?}: {run:#?}");
        for secret in secrets {
            assert!(
                !run.all().contains(secret),
                "{args:?} shows {secret}: {run:#?}"
            );
        }
    }
}

#[tokio::test]
async fn list_shows_a_table_and_filters_by_state() {
    let app = TestApp::new().await;
    let ticketed = [
        app.order_and_enqueue(1, None, json!({})).await,
        app.order_and_enqueue(4, None, json!({})).await,
    ];
    app.settle(&app.worker(), 200).await;
    let pending = order_no("CLIPEN");
    app.enqueue(&pending, 1, None).await;

    let run = cli(&app, &["list"]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and one line per row: {run:#?}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        &header[..6],
        ["ORDER", "METHOD", "STATE", "PAY.DO", "POLLS", "AIRLINE"]
    );
    // Newest first.
    assert!(lines[1].starts_with(&pending), "{run:#?}");
    assert_eq!(lines[1].split_whitespace().nth(2), Some("pending"));
    for line in &lines[2..] {
        assert_eq!(line.split_whitespace().nth(2), Some("ticketed"), "{line}");
    }

    let run = cli(&app, &["list", "--state", "ticketed", "--json"]).await;
    run.assert_code(0);
    let rows: Value = serde_json::from_str(run.stdout.trim()).expect("list --json is JSON");
    let rows = rows.as_array().expect("an array");
    let mut listed: Vec<&str> = rows
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "ticketed", "{r}");
            r["order_no"].as_str().unwrap()
        })
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ticketed.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);

    let run = cli(
        &app,
        &["list", "--state", "pending", "--limit", "1", "--json"],
    )
    .await;
    run.assert_code(0);
    let rows: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["order_no"], pending.as_str());

    // A usage error: exit code 2, as the README promises.
    let run = cli(&app, &["list", "--state", "bogus"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("bogus") && run.stderr.contains("needs_review"),
        "the error names the state and the known ones: {run:#?}"
    );
}

#[tokio::test]
async fn retry_refuses_an_order_that_is_not_failed_or_needs_review() {
    let app = TestApp::new().await;
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    let before = app.job(&order).await;
    assert_eq!(before.state, "ticketed");

    let run = cli(&app, &["retry", &order]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("retry is only for failed or needs_review orders")
            && run.stderr.contains("ticketed"),
        "{run:#?}"
    );
    let after = app.job(&order).await;
    assert_eq!(after.state, "ticketed");
    assert_eq!(after.updated_at, before.updated_at);

    let run = cli(&app, &["retry", "NOSUCHORDER2"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("NOSUCHORDER2"), "{run:#?}");
}

#[tokio::test]
async fn retry_of_a_paid_order_resumes_with_an_order_query_and_never_pays_again() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.ticketing_deadline_s = 1;
    let worker = app.worker_with(&settings, "deadline-worker");
    let order = app.create_order(json!({})).await;
    // Paid, then ticketing outlasts the ticketing deadline: needs_review, paid.
    app.scenario(&order, json!({"ticketing_delay_ms": 600_000}))
        .await;
    app.enqueue(&order, 1, None).await;
    app.settle(&worker, 200).await;
    let row = app.job(&order).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert!(row.paid_at.is_some());
    let queries = app.ledger(&order)["queries"].as_i64().unwrap();

    // --repay is refused: the history shows the order paid.
    let repay = cli(&app, &["retry", "--repay", &order]).await;
    assert_ne!(repay.code, 0, "{repay:#?}");
    assert!(repay.stderr.contains("shows it paid"), "{repay:#?}");
    let run = cli(&app, &["retry", &order]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("ticketing") && run.stdout.contains("never paid twice"),
        "{run:#?}"
    );
    let row = app.job(&order).await;
    assert_eq!(
        row.state, "ticketing",
        "an answer showed it paid: followed again, never paid"
    );
    assert_eq!(row.pay_attempts, 1);
    assert!(row.finalized_at.is_none() && row.last_error.is_none());
    let last = app.store.events(&order).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.state.as_str()),
        ("operator_retry", "ticketing")
    );
    assert_eq!(last.detail["from"], "needs_review");

    let report = worker.step().await.unwrap();
    assert_eq!(report.claimed, 1, "{report:?}");
    assert!(!report.outcomes[0].pay_sent, "{report:?}");
    let ledger = app.ledger(&order);
    assert_eq!(ledger["queries"].as_i64(), Some(queries + 1), "{ledger}");
    assert_eq!(ledger["pay_requests"], 1, "no second pay.do: {ledger}");
    assert_eq!(ledger["charges"], 1, "{ledger}");
}

/// Rule P7a: an order ATRIP cancelled (here after payment: ATRIP refunds it) is not retried,
/// plainly or with --repay; the row, its history and ATRIP are left as they are.
#[tokio::test]
async fn retry_of_an_order_atrip_cancelled_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order = app.create_order(json!({})).await;
    // Paid, then the airline cancels the ticketing.
    app.scenario(&order, json!({"fail_ticketing": "605"})).await;
    app.enqueue(&order, 1, None).await;
    app.settle(&worker, 200).await;
    let before = app.job(&order).await;
    assert_eq!(before.state, "failed");
    assert_eq!(before.order_status.as_deref(), Some("-3"));
    let events = app.store.events(&order).await.unwrap().len();
    let ledger = app.ledger(&order);
    for args in [vec!["retry", &order], vec!["retry", "--repay", &order]] {
        let run = cli(&app, &args).await;
        assert_ne!(run.code, 0, "{run:#?}");
        assert!(
            run.stderr.contains("ATRIP cancelled this order"),
            "{run:#?}"
        );
        assert!(run.stderr.contains("refunds"), "{run:#?}");
    }
    let after = app.job(&order).await;
    assert_eq!(
        (after.state.as_str(), after.updated_at),
        ("failed", before.updated_at)
    );
    assert_eq!(app.store.events(&order).await.unwrap().len(), events);
    assert_eq!(app.ledger(&order), ledger, "nothing asked of ATRIP");
}

/// A VCC order the simulator refuses for its card brand: failed after pay.do, card erased.
async fn failed_vcc_order(app: &TestApp) -> String {
    let order = app
        .order_and_enqueue(
            3,
            Some(vcc_card()),
            json!({"acceptedCardBrands": ["MasterCard"]}),
        )
        .await;
    app.settle(&app.worker(), 50).await;
    let row = app.job(&order).await;
    assert_eq!(row.state, "failed", "{:?}", row.last_error);
    assert!(
        !row.card_plain,
        "the card is erased once the payment resolved"
    );
    order
}

#[tokio::test]
async fn retry_of_a_failed_card_order_needs_fresh_card_data() {
    let app = TestApp::new().await;
    let order = failed_vcc_order(&app).await;
    let before = app.job(&order).await;

    let run = cli(&app, &["retry", &order]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("fresh card data"), "{run:#?}");
    let row = app.job(&order).await;
    assert_eq!(row.state, "failed");
    assert_eq!(row.updated_at, before.updated_at);

    let run = cli_stdin(
        &app,
        &["retry", &order, "--card-file", "-", "--json"],
        &vcc_card().to_string(),
    )
    .await;
    run.assert_code(0);
    let out: Value = serde_json::from_str(run.stdout.trim()).expect("retry --json is JSON");
    assert_eq!(out["state"], "paying");
    let row = app.job(&order).await;
    assert_eq!(row.state, "paying");
    assert_eq!(app.plain_card(&order).await, Some(vcc_card()));
}

#[tokio::test]
async fn retry_refuses_fresh_card_data_the_worker_could_not_use_and_does_not_print_it() {
    let app = TestApp::new().await;
    let order = failed_vcc_order(&app).await;
    let before = app.job(&order).await;

    let card = TempFile::json(&bad_luhn_card());
    let run = cli(&app, &["retry", &order, "--card-file", card.path()]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("cardNumber"), "{run:#?}");
    assert!(!run.all().contains(BAD_LUHN_NUMBER), "{run:#?}");

    let not_an_object = TempFile::json(&json!(["4532015112830366"]));
    let run = cli(
        &app,
        &["retry", &order, "--card-file", not_an_object.path()],
    )
    .await;
    run.assert_code(1);
    assert!(run.stderr.contains("card"), "{run:#?}");
    assert!(!run.all().contains("4532015112830366"), "{run:#?}");

    let row = app.job(&order).await;
    assert_eq!(row.state, "failed");
    assert!(!row.card_plain);
    assert_eq!(row.updated_at, before.updated_at);
}

#[tokio::test]
async fn cancel_stops_a_pending_order_and_refuses_once_a_payment_may_have_been_sent() {
    let app = TestApp::new().await;
    let pending = order_no("CLICAN");
    app.enqueue(&pending, 1, None).await;

    let run = cli(&app, &["cancel", &pending]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("cancelled"), "{run:#?}");
    let row = app.job(&pending).await;
    assert_eq!(row.state, "cancelled");
    assert!(row.finalized_at.is_some());
    let last = app.store.events(&pending).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "operator_cancel");

    let worker = app.worker();
    // Ticketed.
    let ticketed = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&worker, 200).await;
    assert_eq!(app.job(&ticketed).await.state, "ticketed");
    // Paying: pay.do was sent and its answer lost (the connection reset).
    let paying = app.create_order(json!({})).await;
    app.scenario(&paying, json!({"reset_before_charge": 1}))
        .await;
    app.enqueue(&paying, 1, None).await;
    worker.step().await.unwrap();
    assert_eq!(app.job(&paying).await.state, "paying");

    for (order, state) in [(&paying, "paying"), (&ticketed, "ticketed")] {
        let before = app.job(order).await;
        let run = cli(&app, &["cancel", order]).await;
        run.assert_code(1);
        assert!(
            run.stderr
                .contains("cancel is only possible before any payment was sent"),
            "{run:#?}"
        );
        let after = app.job(order).await;
        assert_eq!(after.state, state);
        assert_eq!(after.updated_at, before.updated_at);
    }

    let run = cli(&app, &["cancel", "NOSUCHORDER3"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("NOSUCHORDER3"), "{run:#?}");
}

#[tokio::test]
async fn help_names_every_subcommand_and_an_unknown_one_is_a_usage_error() {
    let run = finish(
        {
            let mut cmd = command(None);
            cmd.arg("--help");
            cmd
        },
        None,
    )
    .await;
    run.assert_code(0).assert_lists_commands(&[
        "run",
        "migrate",
        "enqueue",
        "status",
        "list",
        "retry",
        "cancel",
        "pause",
        "resume",
        "reconcile",
        "keygen",
    ]);

    let run = finish(
        {
            let mut cmd = command(None);
            cmd.arg("frobnicate");
            cmd
        },
        None,
    )
    .await;
    run.assert_code(2);
    assert!(run.stderr.contains("frobnicate"), "{run:#?}");
}

#[tokio::test]
async fn production_without_credentials_refuses_to_start_naming_the_missing_key() {
    let mut cmd = command(None);
    cmd.arg("migrate")
        .env("APP_ENVIRONMENT", "production")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(run.stderr.contains("atrip.client_id"), "{run:#?}");
    assert!(!run.stdout.contains("migrations applied"), "{run:#?}");
}

/// Production sends card data and the client secret to ATRIP over TLS only: an `http://` URL
/// (a typo in an override, a Secret for another environment) is refused at start, naming the
/// key, before anything is sent; a TLS-terminating sidecar on the loopback needs
/// `atrip.allow_plain_http`.
#[tokio::test]
async fn production_refuses_an_atrip_url_that_is_not_https() {
    for (url, allow, says) in [
        ("http://api-sg.atriptech.com", "false", "must be https://"),
        ("http://127.0.0.1:8443", "false", "allow_plain_http"),
        ("http://10.1.2.3:8443", "true", "must be https://"),
    ] {
        let mut cmd = command(None);
        cmd.arg("migrate")
            .env("APP_ENVIRONMENT", "production")
            .env("APP_ATRIP__CLIENT_ID", "id")
            .env("APP_ATRIP__CLIENT_SECRET", "not-shown-anywhere")
            .env("APP_ATRIP__BASE_URL", url)
            .env("APP_ATRIP__ALLOW_PLAIN_HTTP", allow)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
        let run = finish(cmd, None).await;
        run.assert_code(1);
        assert!(
            run.stderr.contains("atrip.base_url") && run.stderr.contains(says),
            "{url}: {run:#?}"
        );
        assert!(!run.stderr.contains("not-shown-anywhere"), "{run:#?}");
    }
}
