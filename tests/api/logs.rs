//! Logs: JSON lines with `APP_LOG__FORMAT=json`, every line of a step naming its order and job.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::TestApp;
use crate::support::binary::WorkerProcess;

#[tokio::test]
async fn json_logs_carry_the_order_and_job_on_every_step_line() {
    let app = TestApp::new().await;
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_LOG__FORMAT", "json".into()),
            (
                "RUST_LOG",
                "debug,sqlx=warn,hyper_util=warn,reqwest=warn".into(),
            ),
        ],
    );
    assert!(worker.wait_until_done(&app, Duration::from_secs(120)).await);
    let text = worker.stop().await;
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
