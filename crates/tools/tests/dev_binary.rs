//! The development binary (`cargo run -- …`), run as a new user runs it: the demo, the
//! simulator as a server, and every command of the product beside them.

use test_support::cli::{clean_command, finish, Run};
use test_support::TestDb;
use tokio::net::TcpListener;
use tokio::process::Command;

/// `ticketing-tracker-dev ARGS`, with `DATABASE_URL` when given.
async fn dev(database_url: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::from(clean_command(
        env!("CARGO_BIN_EXE_ticketing-tracker-dev"),
        database_url,
    ));
    cmd.kill_on_drop(true).args(args);
    finish(cmd, None).await
}

#[tokio::test]
async fn help_lists_the_tools_and_every_command_of_the_product() {
    let run = dev(None, &["--help"]).await;
    run.assert_code(0).assert_lists_commands(&[
        "demo",
        "simulate",
        "bench",
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
    ]);
}

#[tokio::test]
async fn a_simulator_that_cannot_listen_names_the_address() {
    let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let run = dev(None, &["simulate", "--listen", &addr]).await;
    run.assert_code(1);
    assert!(run.stderr.contains(&addr), "{run:#?}");
}

#[tokio::test]
async fn a_product_command_runs_through_the_development_binary() {
    let db = TestDb::new().await;
    let run = dev(Some(&db.url()), &["list"]).await;
    run.assert_code(0);
    let run = dev(Some(&db.url()), &["status", "NOSUCHORDER00001"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("NOSUCHORDER00001"), "{run:#?}");
}

#[tokio::test]
async fn the_demo_says_what_it_does_with_a_database_url_and_where_a_refund_goes() {
    let db = TestDb::new().await;
    let run = dev(Some(&db.url()), &["demo", "--orders", "5"]).await;
    // The demo's own database is left for the user; this test removes it.
    let name = run
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("ticketing_demo_"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        });
    if let Some(name) = &name {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(db.pool())
            .await;
    }
    run.assert_code(0);
    assert!(
        run.stdout.contains("creates a database of its own")
            && run
                .stdout
                .contains("the database the URL names is not touched"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("ATRIP's refund process") && run.stdout.contains("AIRLINE PNR"),
        "{run:#?}"
    );
}
