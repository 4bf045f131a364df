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
    // A line inside a step (or inside its pay.do, order query or write) carries the step's
    // span in its list.
    let step_of = |l: &Value| -> Option<Value> {
        l["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "step")
            .cloned()
    };
    let step_lines: Vec<&Value> = lines.iter().filter(|l| step_of(l).is_some()).collect();
    assert!(step_lines.len() >= 3, "the steps logged: {text}");
    for line in &step_lines {
        let step = step_of(line).unwrap();
        assert_eq!(step["order_no"], order_no.as_str(), "{line}");
        assert!(step["job_id"].is_number(), "{line}");
    }
    assert!(
        step_lines
            .iter()
            .any(|l| l["fields"]["message"] == "sending pay.do"),
        "{text}"
    );
    assert!(!text.contains("sim-secret"), "no secret in the logs");
}

/// The JSON log lines of a run, parsed.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Off the happy path at the default `info` level: a failed order and one handed to a person
/// each get a `warn` line naming the order and saying why.
#[tokio::test]
async fn failed_and_review_orders_are_logged_at_warn_with_the_order_at_the_default_level() {
    let app = TestApp::new().await;
    let refused = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&refused, json!({"pay_status": 413})).await;
    let unpaid = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&unpaid, json!({"pay_status": 411})).await;
    let mut worker = WorkerProcess::start(&app, &[("APP_LOG__FORMAT", "json".into())]);
    assert!(worker.wait_until_done(&app, Duration::from_secs(120)).await);
    let text = worker.stop().await;
    assert_eq!(app.job(&refused).await.state, "failed");
    assert_eq!(app.job(&unpaid).await.state, "needs_review");

    let lines = json_lines(&text);
    let warned = |order_no: &str, message: &str| {
        lines.iter().find(|l| {
            l["level"] == "WARN"
                && l["fields"]["order_no"] == order_no
                && l["fields"]["message"] == message
        })
    };
    let failed = warned(&refused, "order failed").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["fields"]["state"], "failed");
    assert!(
        failed["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("413")),
        "{failed}"
    );
    let review = warned(&unpaid, "order needs a person").unwrap_or_else(|| panic!("{text}"));
    assert!(
        review["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("balance")),
        "{review}"
    );
}

/// ATRIP unreachable: said at start and at `error` at most once a minute however many orders
/// meet it; `/readyz` stays about the database (ready); the metric and the console's overview
/// say that this process cannot reach ATRIP.
#[tokio::test]
async fn an_unreachable_atrip_is_said_at_start_and_once_a_minute_while_readyz_stays_ready() {
    let app = TestApp::new().await;
    // A port nothing listens on: the connection is refused, so no pay.do can leave.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let orders = ["TESTUNREACH00001", "TESTUNREACH00002", "TESTUNREACH00003"];
    for order_no in orders {
        app.enqueue(order_no, 1, None).await;
    }
    let (_, viewer_hash) = crate::console::hashes();
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_LOG__FORMAT", "json".into()),
            ("APP_ATRIP__BASE_URL", format!("http://{closed}")),
            ("APP_WORKER__RECOVERY_DELAY_MS", "100".into()),
            ("APP_CONSOLE__ENABLED", "true".into()),
            ("APP_CONSOLE__VIEWER_PASSWORD_HASH", viewer_hash),
        ],
    );
    let started = std::time::Instant::now();
    let base = worker.http_base().await;
    // Every order met the closed port at least once (its intent counted as not sent).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let tried: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ticketing_jobs WHERE pay_not_sent > 0")
                .fetch_one(app.pool())
                .await
                .unwrap();
        if tried == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{tried} of 3 orders tried within 40 s; the rows: {:?}\nthe worker's log:\n{}",
            sqlx::query_as::<_, (String, String, i32, i32, Option<String>)>(
                "SELECT order_no, state, pay_attempts, pay_not_sent, last_error FROM ticketing_jobs ORDER BY order_no"
            )
            .fetch_all(app.pool())
            .await
            .unwrap(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "readiness is about the database");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "ticketing_atrip_up 0"),
        "{metrics}"
    );
    let (viewer, _) =
        crate::console::Client::logged_in(&base, "desk", crate::console::VIEWER_PASSWORD).await;
    let overview = viewer.get("/console").await.body;
    assert!(
        overview.contains("This process cannot reach ATRIP"),
        "{overview}"
    );

    // The start probe asks three times, a second apart, before it says ATRIP does not answer.
    worker
        .wait_log(
            "ATRIP does not answer; orders will wait until it does",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let text = worker.stop().await;
    let lines = json_lines(&text);
    let said = |message: &str| {
        lines
            .iter()
            .filter(|l| l["level"] == "ERROR" && l["fields"]["message"] == message)
            .count()
    };
    assert_eq!(
        said("ATRIP does not answer; orders will wait until it does"),
        1,
        "{text}"
    );
    // At least four requests met the closed port (the probe and three orders): said once a
    // minute, so once, or once more for each minute a slow machine took.
    let minutes = started.elapsed().as_secs() / 60;
    let unreachable = said("ATRIP is unreachable; orders wait (said once a minute while it lasts)");
    assert!(
        (1..=1 + minutes as usize).contains(&unreachable),
        "said {unreachable} times in {minutes} whole minutes: {text}"
    );
}
