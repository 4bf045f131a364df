//! Paying paused fleet-wide (docs/design.md, rule S4): real replicas stop sending pay.do within
//! a second of `pause` while paid orders are still followed, and pay the oldest waiting order
//! within a second of `resume`; a replica started while paused pays nothing; a deadline that
//! passes while paused fails its order unsent; an operator's retry waits; the command refuses
//! what makes no sense.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atrip_simulator::{LoggedRequest, SimConfig};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use ticketing_tracker::domain::PauseScope;
use ticketing_tracker::jobs::JobStore;

use crate::cli::cli;
use crate::console::{park, Parked};
use crate::support::app::{wait_until, TestApp};
use crate::support::binary::WorkerProcess;

const PAY: &str = "pay.do";
const QUERY: &str = "queryOrderDetails.do";

/// The simulator's requests to `endpoint` that arrived after `after`.
fn arrived_after(app: &TestApp, endpoint: &str, after: DateTime<Utc>) -> Vec<LoggedRequest> {
    app.sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == endpoint && r.at > after)
        .collect()
}

/// The first pay.do for `order_no`, if one arrived.
fn pay_of(app: &TestApp, order_no: &str) -> Option<LoggedRequest> {
    app.sim
        .requests()
        .into_iter()
        .find(|r| r.endpoint == PAY && r.order_no.as_deref() == Some(order_no))
}

/// Worker processes with fast polls, LISTEN on, a short poll ceiling.
fn replica(app: &TestApp) -> WorkerProcess {
    WorkerProcess::start(
        app,
        &[
            ("APP_WORKER__POLL_MAX_MS", "1000".to_owned()),
            ("APP_LOG__LEVEL", "info".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ],
    )
}

/// Order numbers and when each went in.
type Enqueued = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// Enqueues a deposit order every 30 ms until stopped, keeping when each went in.
struct Stream {
    stop: Arc<AtomicBool>,
    enqueued: Enqueued,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn start(store: JobStore) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let enqueued = Arc::new(Mutex::new(Vec::new()));
        let (s, e) = (stop.clone(), enqueued.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u32;
            while !s.load(Ordering::Relaxed) {
                let order_no = format!("PAUSESTREAM{n:06}");
                store.enqueue(&order_no, 1, None, None).await.unwrap();
                e.lock().unwrap().push((order_no, Utc::now()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        Stream {
            stop,
            enqueued,
            task,
        }
    }

    fn enqueued_after(&self, t: DateTime<Utc>) -> usize {
        self.enqueued
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let all = self.enqueued.lock().unwrap();
        all.iter().map(|(o, _)| o.clone()).collect()
    }
}

/// Rules S4a and S4c: no intent for a paused method; paid orders still followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_no_pay_do_a_second_after_pause_keep_following_and_pay_the_oldest_within_a_second_of_resume(
) {
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        // Paid orders stay followed (queried) for a while after the pause.
        ticketing_delay: Duration::from_secs(4),
        ..SimConfig::default()
    })
    .await;
    let mut replicas = [replica(&app), replica(&app)];
    for r in &mut replicas {
        r.wait_log("worker started", Duration::from_secs(60))
            .await
            .expect("the replica starts");
    }
    let stream = Stream::start(app.store.clone());
    wait_until(Duration::from_secs(30), "a few orders paid", || async {
        app.sim
            .requests()
            .iter()
            .filter(|r| r.endpoint == PAY)
            .count()
            >= 5
    })
    .await;

    let run = cli(
        &app,
        &[
            "pause",
            "--reason",
            "card processor incident",
            "--by",
            "alice",
        ],
    )
    .await;
    let paused_at = Utc::now();
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("Paying every method paused since")
            && run.stdout.contains("by cli:alice: card processor incident"),
        "{run:#?}"
    );
    let settled = paused_at + chrono::Duration::seconds(1);
    // Orders paid before the pause (their pay.do arrived before it).
    let paid_before: Vec<String> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == PAY && r.at < paused_at)
        .filter_map(|r| r.order_no)
        .collect();
    wait_until(
        Duration::from_secs(30),
        "new orders enqueued after the pause, and paid orders still queried a second after it",
        || async {
            let followed = arrived_after(&app, QUERY, settled)
                .iter()
                .filter(|r| r.order_no.as_ref().is_some_and(|o| paid_before.contains(o)))
                .count();
            stream.enqueued_after(settled) >= 20 && followed >= 3
        },
    )
    .await;
    let late: Vec<LoggedRequest> = arrived_after(&app, PAY, settled);
    assert!(
        late.is_empty(),
        "pay.do arrived more than 1 s after the pause returned ({paused_at}): {late:#?}"
    );
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ticketing_jobs WHERE state = 'pending' AND pay_attempts = 0",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(waiting >= 20, "{waiting} orders wait");

    let oldest: String = sqlx::query_scalar(
        "SELECT order_no FROM ticketing_jobs WHERE state = 'pending'
         ORDER BY priority, pay_deadline, run_at, id LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let run = cli(&app, &["resume", "--by", "alice"]).await;
    let resumed_at = Utc::now();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("paying every method resumed by cli:alice"),
        "{run:#?}"
    );
    wait_until(
        Duration::from_secs(30),
        "the oldest waiting order's pay.do",
        || async { pay_of(&app, &oldest).is_some() },
    )
    .await;
    let paid = pay_of(&app, &oldest).unwrap();
    assert!(
        paid.at <= resumed_at + chrono::Duration::seconds(1) && paid.at > settled,
        "the oldest waiting order {oldest} was paid at {}, the resume returned at {resumed_at}",
        paid.at
    );

    eprintln!(
        "pause: {} pay.do before the pause, the last {} ms after it returned; {} order queries from 1 s after it; {waiting} orders waited; the oldest paid at {} ms from the resume's return",
        paid_before.len(),
        app.sim
            .requests()
            .iter()
            .filter(|r| r.endpoint == PAY && r.at <= settled)
            .map(|r| (r.at - paused_at).num_milliseconds())
            .max()
            .unwrap_or_default(),
        arrived_after(&app, QUERY, settled)
            .iter()
            .filter(|r| r.at < resumed_at)
            .count(),
        (paid.at - resumed_at).num_milliseconds(),
    );
    let orders = stream.stop().await;
    let [a, b] = replicas;
    let mut finished = false;
    for _ in 0..120 {
        if app.store.unfinished().await.unwrap() == 0 {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let logs = format!("{}\n{}", a.stop().await, b.stop().await);
    assert!(finished, "orders left unfinished:\n{logs}");
    for order_no in &orders {
        app.assert_ticketed_once(order_no, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_paying_is_paused_says_so_sends_no_pay_do_and_pays_after_resume() {
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        ticketing_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    app.store
        .pause(PauseScope::Every, "card processor incident", "cli:alice")
        .await
        .unwrap();
    let waiting = ["PAUSEWAIT000001", "PAUSEWAIT000002", "PAUSEWAIT000003"];
    for order_no in waiting {
        app.enqueue(order_no, 1, None).await;
    }
    // An order paid before the pause, being followed: proof that the new replica claims.
    let followed = "PAUSEFOLLOW00001";
    app.enqueue(followed, 1, None).await;
    app.pay_directly(followed).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'ticketing', pay_attempts = 1,
                pay_started_at = ticketing_now(), paid_at = ticketing_now(),
                paid_evidence = 'pay_accepted', last_pay_outcome = 'accepted',
                phase_started_at = ticketing_now()
         WHERE order_no = $1",
    )
    .bind(followed)
    .execute(app.pool())
    .await
    .unwrap();

    let mut worker = replica(&app);
    let started = worker
        .wait_log("worker started", Duration::from_secs(60))
        .await
        .expect("the replica starts");
    assert!(
        started.contains("paused") && started.contains("card processor incident"),
        "{started}"
    );
    let said = worker
        .wait_log("sends no pay.do", Duration::from_secs(5))
        .await
        .expect("a warn line says the replica pays nothing");
    assert!(
        said.contains("WARN") && said.contains("cli:alice"),
        "{said}"
    );
    wait_until(
        Duration::from_secs(30),
        "the paid order followed to its tickets",
        || async { app.job(followed).await.state == "ticketed" },
    )
    .await;
    for order_no in waiting {
        assert!(pay_of(&app, order_no).is_none(), "{order_no} was paid");
        let row = app.job(order_no).await;
        assert_eq!((row.state.as_str(), row.pay_attempts), ("pending", 0));
    }

    cli(&app, &["resume"]).await.assert_code(0);
    assert!(
        worker.wait_until_done(&app, Duration::from_secs(30)).await,
        "{}",
        worker.log()
    );
    worker.stop().await;
    for order_no in waiting {
        app.assert_ticketed_once(order_no, 1).await;
    }
}

/// Rule S4a.
#[tokio::test]
async fn an_order_whose_deadline_passes_while_paused_fails_unsent_naming_the_pause() {
    let app = TestApp::with_sim(SimConfig {
        auto_create: true,
        ..SimConfig::default()
    })
    .await;
    let worker = app.worker();
    let now = app.db_now().await;
    app.store
        .enqueue(
            "PAUSEDEADLINE01",
            1,
            None,
            Some(now + chrono::Duration::seconds(60)),
        )
        .await
        .unwrap();
    app.enqueue("PAUSENODEADLN01", 1, None).await;
    app.store
        .pause(PauseScope::Every, "card processor incident", "cli:alice")
        .await
        .unwrap();
    let report = worker.step().await.unwrap();
    assert_eq!(report.claimed, 0, "{report:?}");

    app.advance(Duration::from_secs(61)).await;
    let report = worker.step().await.unwrap();
    assert_eq!(
        report.claimed, 1,
        "only the row past its deadline: {report:?}"
    );
    let row = app.job("PAUSEDEADLINE01").await;
    assert_eq!(row.state, "failed");
    assert_eq!(row.pay_sends, 0);
    let error = row.last_error.unwrap_or_default();
    for says in [
        "passed while paying was paused",
        "paying every method has been paused since",
        "by cli:alice: card processor incident",
        "nothing was sent",
    ] {
        assert!(error.contains(says), "{says:?} not in {error}");
    }
    assert!(pay_of(&app, "PAUSEDEADLINE01").is_none());
    let other = app.job("PAUSENODEADLN01").await;
    assert_eq!((other.state.as_str(), other.pay_attempts), ("pending", 0));
    assert!(pay_of(&app, "PAUSENODEADLN01").is_none());
}

/// Rule S4b: a `paying` row with a permit records no intent while paused.
#[tokio::test]
async fn an_operator_retry_while_paused_is_taken_and_waits_without_an_intent_until_resume() {
    let app = TestApp::new().await;
    let order_no = app.create_order(json!({})).await;
    park(&app, &order_no, Parked::ReviewUnclear).await;
    cli(
        &app,
        &[
            "pause",
            "--method",
            "1",
            "--reason",
            "deposit balance incident",
        ],
    )
    .await
    .assert_code(0);
    let run = cli(&app, &["retry", "--repay", &order_no]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("paying method 1 has been paused") && run.stdout.contains("it waits"),
        "{run:#?}"
    );

    let worker = app.worker();
    for _ in 0..2 {
        let report = worker.step().await.unwrap();
        assert_eq!(report.claimed, 1, "{report:?}");
        let row = app.job(&order_no).await;
        assert_eq!(row.state, "paying");
        assert_eq!(
            (row.pay_attempts, row.pay_permits),
            (1, 2),
            "no new intent; the permit is kept"
        );
        let error = row.last_error.unwrap_or_default();
        assert!(
            error.contains("paying method 1 has been paused")
                && error.contains("deposit balance incident")
                && error.contains("until it is resumed"),
            "{error}"
        );
        let event = app.store.events(&order_no).await.unwrap().pop().unwrap();
        assert_eq!(event.kind, "query_answered");
        assert!(
            event.detail["paused"]
                .as_str()
                .is_some_and(|p| p.contains("deposit balance incident")),
            "{}",
            event.detail
        );
        assert_eq!(app.pay_requests(&order_no), 0);
        app.advance(Duration::from_secs(5)).await;
    }

    let run = cli(&app, &["resume", "--method", "1"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("1 order(s) retried while paused are asked again now"),
        "{run:#?}"
    );
    app.settle(&worker, 50).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

#[tokio::test]
async fn pause_and_resume_refuse_what_makes_no_sense_and_status_and_list_say_a_pause() {
    let app = TestApp::new().await;
    let refused = |run: &crate::cli::Run, says: &str| {
        run.assert_code(1);
        assert!(run.stderr.contains(says), "{says:?}: {run:#?}");
    };
    refused(
        &cli(&app, &["resume"]).await,
        "paying every method is not paused; nothing was resumed (no pause is in force)",
    );
    refused(
        &cli(&app, &["pause", "--method", "2", "--reason", "x"]).await,
        "--method 2 is not a payment method",
    );
    refused(
        &cli(&app, &["pause", "--reason", "  "]).await,
        "--reason is empty",
    );
    refused(
        &cli(&app, &["pause", "--reason", "x", "--by", ""]).await,
        "--by is empty",
    );
    // A missing --reason is a usage error.
    cli(&app, &["pause"]).await.assert_code(2);
    assert!(app.store.pauses_in_force().await.unwrap().is_empty());

    let run = cli(
        &app,
        &[
            "pause",
            "--method",
            "3",
            "--reason",
            "VCC issuer down",
            "--json",
        ],
    )
    .await;
    run.assert_code(0);
    let made: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(made["paused"]["method"], 3, "{made}");
    assert!(made["paused"]["paused_by"]
        .as_str()
        .unwrap()
        .starts_with("cli:"));
    refused(
        &cli(&app, &["pause", "--method", "3", "--reason", "again"]).await,
        "paying method 3 is paused already, since",
    );
    refused(
        &cli(&app, &["resume"]).await,
        "(in force: paying method 3 paused since",
    );

    app.enqueue("PAUSESTATUS0001", 3, Some(crate::support::app::vcc_card()))
        .await;
    let status = cli(&app, &["status", "PAUSESTATUS0001"]).await;
    status.assert_code(0);
    assert!(
        status
            .stdout
            .starts_with("PAYING PAUSED: paying method 3 paused since")
            && status.stdout.contains("VCC issuer down")
            && status
                .stdout
                .contains("`ticketing-tracker resume --method 3` ends it")
            && status
                .stdout
                .contains("order PAUSESTATUS0001 waits: paying method 3 is paused"),
        "{status:#?}"
    );
    let json_status = cli(&app, &["status", "PAUSESTATUS0001", "--json"]).await;
    let v: Value = serde_json::from_str(json_status.stdout.trim()).unwrap();
    assert_eq!(v["paying_paused"][0]["reason"], "VCC issuer down", "{v}");
    let list = cli(&app, &["list"]).await;
    list.assert_code(0);
    assert!(
        list.stdout
            .starts_with("PAYING PAUSED: paying method 3 paused since"),
        "{list:#?}"
    );

    let run = cli(&app, &["resume", "--method", "3", "--by", "bob"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("paying method 3 resumed by cli:bob"),
        "{run:#?}"
    );
    let list = cli(&app, &["list"]).await;
    assert!(!list.stdout.contains("PAYING PAUSED"), "{list:#?}");
    let history = app.store.pause_history(10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resumed_by.as_deref(), Some("cli:bob"));
    assert!(history[0].paused_by.starts_with("cli:"));
}

/// The SQL form is bounded like the command line: a reason of megabytes, copied into every
/// console page, log line and failed order, is refused by the table.
#[tokio::test]
async fn the_table_refuses_a_pause_reason_or_name_no_page_could_show() {
    let app = TestApp::new().await;
    for (reason, by) in [
        ("x".repeat(501), "alice".to_owned()),
        ("incident".into(), "b".repeat(101)),
    ] {
        let refused = sqlx::query(
            "INSERT INTO ticketing_pauses (method, reason, paused_by) VALUES (0, $1, $2)",
        )
        .bind(&reason)
        .bind(&by)
        .execute(app.pool())
        .await
        .unwrap_err();
        let constraint = refused
            .as_database_error()
            .and_then(|e| e.constraint())
            .map(str::to_owned);
        assert!(
            matches!(
                constraint.as_deref(),
                Some("pause_reason_is_short" | "paused_by_is_short")
            ),
            "{refused}"
        );
    }
    assert!(app.store.pauses_in_force().await.unwrap().is_empty());
}
