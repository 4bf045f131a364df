//! The `atrip-simulator` binary, as the image smoke test and a developer start it.

use std::time::Duration;

use test_support::cli::{clean_command, finish};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

fn simulator() -> Command {
    let mut cmd = Command::from(clean_command(env!("CARGO_BIN_EXE_atrip-simulator"), None));
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_simulator_that_cannot_listen_names_the_address() {
    let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut cmd = simulator();
    cmd.args(["--listen", &addr]);
    let run = finish(cmd, None).await;
    run.assert_code(1);
    assert!(run.stderr.contains(&addr), "{run:#?}");
}

#[tokio::test]
async fn it_says_where_it_listens_and_answers_there_with_its_ledger() {
    let mut cmd = simulator();
    cmd.args(["--listen", "127.0.0.1:0", "--auto-create"]);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30 s")
        .unwrap()
        .expect("a line before the end");
    let base = line
        .strip_prefix("ATRIP simulator listening on ")
        .unwrap_or_else(|| panic!("not the listening line: {line}"))
        .trim()
        .to_owned();
    let ledger: serde_json::Value = reqwest::get(format!("{base}/sim/ledger"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["totals"]["charges"], 0, "{ledger}");
    assert_eq!(ledger["orders"], serde_json::json!({}), "{ledger}");
    child.kill().await.unwrap();
}
