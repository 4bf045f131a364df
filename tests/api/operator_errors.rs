//! What a new operator met trying the project as the README describes: each
//! mistake is said once, names what is wrong and what to do, and exits with the README's code.

use serde_json::json;
use tokio::net::TcpListener;

use crate::cli::{cli, command, finish};
use crate::support::app::TestApp;

/// How many times `needle` appears in `text`.
fn times(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[tokio::test]
async fn a_misspelled_setting_is_refused_naming_it_and_the_closest_known_one() {
    let app = TestApp::new().await;
    let mut cmd = command(Some(&app.db.url()));
    cmd.env("APP_WORKER__CONCURENCY", "4").args(["list"]);
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("APP_WORKER__CONCURENCY")
            && run.stderr.contains("did you mean APP_WORKER__CONCURRENCY"),
        "{run:#?}"
    );

    let dir = std::env::temp_dir().join(format!("tt-config-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("local.toml"), "[worker]\nconcurency = 4\n").unwrap();
    let mut cmd = command(Some(&app.db.url()));
    cmd.env("APP_CONFIG_DIR", &dir).args(["list"]);
    let run = finish(cmd, None).await;
    std::fs::remove_dir_all(&dir).unwrap();
    run.assert_code(1);
    assert!(
        run.stderr.contains("local.toml")
            && run.stderr.contains("unknown setting worker.concurency")
            && run.stderr.contains("did you mean worker.concurrency"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn a_setting_of_the_wrong_type_is_said_once() {
    let mut cmd = command(None);
    cmd.env("APP_HTTP__PORT", "abc").args(["migrate"]);
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(run.stderr.contains("http.port"), "{run:#?}");
    assert_eq!(times(&run.stderr, "\"abc\""), 1, "said once: {run:#?}");
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused() {
    let run = finish(
        {
            let mut cmd = command(Some("mysql://root@127.0.0.1:3306/test"));
            cmd.arg("list");
            cmd
        },
        None,
    )
    .await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("database.url") && run.stderr.contains("\"mysql\""),
        "{run:#?}"
    );
}

#[tokio::test]
async fn a_database_that_refuses_connections_is_named_with_its_address_at_once() {
    // A port nothing listens on: taken and released.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut cmd = command(Some(&url));
    cmd.arg("list");
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{port}"))
            && run.stderr.to_lowercase().contains("refused")
            && !run.stderr.contains("pool timed out"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn a_database_without_the_job_table_says_to_run_migrate_once() {
    let app = TestApp::new().await;
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(app.pool())
        .await
        .unwrap();
    let run = cli(&app, &["list"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("run `ticketing-tracker migrate`"),
        "{run:#?}"
    );
    assert_eq!(
        times(&run.stderr, "does not exist"),
        1,
        "said once: {run:#?}"
    );
}

#[tokio::test]
async fn a_duplicate_enqueue_says_once_that_the_order_is_there_and_in_which_state() {
    let app = TestApp::new().await;
    app.enqueue("DUPLICATE0000001", 1, None).await;
    let run = cli(
        &app,
        &["enqueue", "--order-no", "DUPLICATE0000001", "--method", "1"],
    )
    .await;
    run.assert_code(1);
    assert_eq!(
        times(
            &run.stderr,
            "order DUPLICATE0000001 is already in the table (state pending)"
        ),
        1,
        "{run:#?}"
    );
    assert!(!run.stderr.contains("duplicate key"), "{run:#?}");
}

#[tokio::test]
async fn json_means_print_json_on_every_command_and_cancel_takes_no_card() {
    let app = TestApp::new().await;
    let run = cli(
        &app,
        &[
            "enqueue",
            "--order-no",
            "JSONOUT000000001",
            "--method",
            "1",
            "--json",
        ],
    )
    .await;
    run.assert_code(0);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["state"], "pending");
    let help = cli(&app, &["cancel", "--help"]).await;
    assert!(!help.stdout.contains("--card-file"), "{help:#?}");
    let help = cli(&app, &["retry", "--help"]).await;
    assert!(
        help.stdout.contains("--repay") && help.stdout.contains("--card-file"),
        "{help:#?}"
    );
}

#[tokio::test]
async fn after_a_retry_the_list_says_what_comes_next_not_an_empty_status() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&order_no, json!({"pay_status": 406})).await;
    let mut settings = app.settings.clone();
    settings.worker.unpaid_settle_s = 2;
    app.settle(&app.worker_with(&settings, "w"), 100).await;
    assert_eq!(app.job(&order_no).await.state, "needs_review");
    cli(&app, &["retry", &order_no]).await.assert_code(0);
    let run = cli(&app, &["list"]).await;
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&order_no))
        .unwrap();
    assert!(line.contains("next: order query"), "{run:#?}");
}
