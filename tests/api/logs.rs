//! Logs: JSON lines with `APP_LOG__FORMAT=json`, every line of a step naming its order and job.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::app::TestApp;

#[tokio::test]
async fn json_logs_carry_the_order_and_job_on_every_step_line() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let log_path = std::env::temp_dir().join(format!(
        "tt-logs-{}-{}.log",
        std::process::id(),
        rand::random::<u32>()
    ));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketing-tracker"))
        .arg("run")
        .env("DATABASE_URL", app.db.url())
        .env("APP_ATRIP__BASE_URL", app.sim.base_url())
        .env("APP_HTTP__PORT", "0")
        .env("APP_HTTP__HOST", "127.0.0.1")
        .env("APP_LOG__FORMAT", "json")
        .env("APP_WORKER__FIRST_POLL_MS", "100")
        .env("APP_WORKER__CLAIM_INTERVAL_MS", "100")
        .env("RUST_LOG", "debug,sqlx=warn,hyper_util=warn,reqwest=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.store.unfinished().await.unwrap() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().expect("running");
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(app.job(&order_no).await.state, "ticketed");

    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let step_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "step")
        .collect();
    assert!(step_lines.len() >= 3, "the steps logged: {text}");
    for line in &step_lines {
        assert_eq!(line["span"]["order_no"], order_no.as_str(), "{line}");
        assert!(line["span"]["job_id"].is_number(), "{line}");
    }
    assert!(
        step_lines
            .iter()
            .any(|l| l["fields"]["message"] == "sending pay.do"),
        "{text}"
    );
    assert!(!text.contains("sim-secret"), "no secret in the logs");
}
