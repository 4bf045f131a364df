//! ATRIP's webhooks of every type, sent by the simulator over HTTP to the worker's endpoint
//! (rules W3, W6), and the deposit balance a 411 review names (rule P6).

use std::time::Duration;

use atrip_simulator::SimConfig;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::support::app::TestApp;

const SECRET: &str = "webhook-secret-w3";

/// A world whose simulator sends its webhooks to this test's endpoint, `?secret=` in the URL
/// as ATRIP would. Returns the endpoint's base URL.
async fn app_with_webhooks(config: SimConfig) -> (TestApp, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = TestApp::with_sim(SimConfig {
        webhook_url: Some(format!("{base}/webhooks/atrip")),
        webhook_secret: Some(SECRET.into()),
        ticketing_delay: Duration::from_millis(100),
        ..config
    })
    .await;
    let router = ticketing_tracker::http::router(app.store.clone(), SecretString::from(SECRET));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, base)
}

/// A deposit order paid and followed until ticketed.
async fn ticketed(app: &TestApp) -> String {
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    assert_eq!(app.job(&order).await.state, "ticketed");
    order
}

/// Asks the simulator to script `body` for `order` and send its webhooks; returns what each
/// delivery was answered.
async fn after_ticketing(app: &TestApp, order: &str, body: Value) -> Vec<u16> {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/sim/orders/{order}/after-ticketing",
            app.sim.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{answer}");
    answer["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as u16)
        .collect()
}

async fn webhook_events(app: &TestApp, order: &str) -> Vec<Value> {
    app.store
        .events(order)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "webhook_received")
        .map(|e| e.detail)
        .collect()
}

/// (after_ticketing, after_ticketing_check, due now or earlier, note)
async fn mark(
    app: &TestApp,
    order: &str,
) -> (Option<String>, Option<String>, bool, Option<String>) {
    sqlx::query_as(
        "SELECT after_ticketing, after_ticketing_check,
                coalesce(after_ticketing_due <= ticketing_now(), false), after_ticketing_note
         FROM ticketing_jobs WHERE order_no = $1",
    )
    .bind(order)
    .fetch_one(app.pool())
    .await
    .unwrap()
}

async fn post(base: &str, query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/webhooks/atrip{query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn w6_a_void_after_ticketing_sent_twice_and_out_of_order_is_recorded_once_each_and_confirmed_by_the_order_query(
) {
    let (app, _) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let before = webhook_events(&app, &order).await.len();

    // "Voided" before "processing", each delivered twice.
    let statuses = after_ticketing(
        &app,
        &order,
        json!({"change": "void", "copies": 2, "reverse": true}),
    )
    .await;
    assert_eq!(
        statuses,
        vec![202; 4],
        "every authenticated delivery is 2xx"
    );
    let events = webhook_events(&app, &order).await;
    assert_eq!(
        events.len(),
        before + 2,
        "one event per distinct delivery: {events:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["type"] != "order.void" || e["change"] == "voided"));

    // The webhook changed no state: the row is ticketed, marked as reported, its query due.
    let row = app.job(&order).await;
    assert_eq!(row.state, "ticketed");
    let (change, check, due, _) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("voided"));
    assert_eq!(check.as_deref(), Some("reported"));
    assert!(due);
    let queries = app.ledger(&order)["queries"].as_i64().unwrap();

    // The order query alone confirms it.
    assert_eq!(app.worker().recheck_after_ticketing().await.unwrap(), 1);
    assert_eq!(app.ledger(&order)["queries"].as_i64().unwrap(), queries + 1);
    let (change, check, due, note) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("voided"));
    assert_eq!(check.as_deref(), Some("confirmed"), "{note:?}");
    assert!(!due, "nothing left to ask");
    assert!(note.unwrap().contains("orderStatus -3"));
    let row = app.job(&order).await;
    assert_eq!(
        row.state, "ticketed",
        "the state stays: tickets were issued and paid"
    );
    assert_eq!(app.pay_requests(&order), 1);
    let checked = app.store.events(&order).await.unwrap();
    assert_eq!(checked.last().unwrap().kind, "after_ticketing_checked");
    // The console's list has it.
    let list = app.store.changed_after_ticketing(10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].order_no, order);
    assert_eq!(list[0].check, "confirmed");
    // Nothing more to do for anyone.
    assert_eq!(app.worker().recheck_after_ticketing().await.unwrap(), 0);
}

#[tokio::test]
async fn w6_an_airline_cancellation_after_ticketing_is_marked_and_confirmed_by_the_order_query() {
    let (app, _) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let statuses = after_ticketing(&app, &order, json!({"change": "airline_cancel"})).await;
    assert_eq!(statuses, vec![202, 202]);
    let kinds: Vec<Value> = webhook_events(&app, &order)
        .await
        .into_iter()
        .map(|e| e["type"].clone())
        .collect();
    assert!(
        kinds.contains(&json!("abnormal.cancelled")) && kinds.contains(&json!("order.cancelled")),
        "{kinds:?}"
    );
    let (change, check, _, _) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("cancelled_by_airline"));
    assert_eq!(check.as_deref(), Some("reported"));

    app.worker().recheck_after_ticketing().await.unwrap();
    let (change, check, _, note) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("cancelled_by_airline"));
    assert_eq!(check.as_deref(), Some("confirmed"), "{note:?}");
    assert!(note.unwrap().contains("errorCode 699"));
    assert_eq!(app.job(&order).await.state, "ticketed");
    assert_eq!(app.pay_requests(&order), 1);
}

#[tokio::test]
async fn w6_a_report_the_order_query_does_not_show_is_asked_again_and_then_left_unconfirmed() {
    // An ATRIP whose query still shows a voided order ticketed.
    let (app, _) = app_with_webhooks(SimConfig {
        changed_order_status: "2".into(),
        ..SimConfig::default()
    })
    .await;
    let order = ticketed(&app).await;
    after_ticketing(&app, &order, json!({"change": "void"})).await;

    app.worker().recheck_after_ticketing().await.unwrap();
    let (_, check, due, note) = mark(&app, &order).await;
    assert_eq!(
        check.as_deref(),
        Some("reported"),
        "asked again later: {note:?}"
    );
    assert!(!due, "not at once");
    assert_eq!(app.worker().recheck_after_ticketing().await.unwrap(), 0);

    // Past every re-check: unconfirmed, for a person.
    let last = ticketing_tracker::worker::after::RECHECK_AFTER.len() as i32;
    sqlx::query("UPDATE ticketing_jobs SET after_ticketing_checks = $2, after_ticketing_due = ticketing_now() WHERE order_no = $1")
        .bind(&order)
        .bind(last)
        .execute(app.pool())
        .await
        .unwrap();
    app.worker().recheck_after_ticketing().await.unwrap();
    let (change, check, due, note) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("voided"));
    assert_eq!(check.as_deref(), Some("unconfirmed"));
    assert!(!due);
    assert!(note.unwrap().contains("orderStatus 2"));
    assert_eq!(app.job(&order).await.state, "ticketed");
}

#[tokio::test]
async fn w3_every_documented_event_type_is_answered_2xx_and_recorded_for_a_known_order_in_any_state(
) {
    let (app, base) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let statuses = after_ticketing(
        &app,
        &order,
        json!({"change": "schedule_change", "also": ["order.ticketed", "email.all", "airline.status"]}),
    )
    .await;
    assert_eq!(statuses, vec![202; 5]);
    let kinds: Vec<Value> = webhook_events(&app, &order)
        .await
        .into_iter()
        .map(|e| e["type"].clone())
        .collect();
    for kind in [
        "order.schedulechange",
        "email.schedulechange",
        "order.ticketed",
        "email.all",
    ] {
        assert!(kinds.contains(&json!(kind)), "{kind} in {kinds:?}");
    }
    let (change, _, _, _) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("schedule_changed"));

    // A pending order: recorded, and never made due (a webhook never brings a payment forward).
    let pending = app.create_order(json!({})).await;
    app.enqueue(&pending, 1, None).await;
    sqlx::query("UPDATE ticketing_jobs SET run_at = now() + interval '1 hour' WHERE order_no = $1")
        .bind(&pending)
        .execute(app.pool())
        .await
        .unwrap();
    let body = json!({"cid": "x", "type": "email.all", "notificationId": "N-pending", "status": -1,
                      "data": {"orderNo": pending, "emailCategory": "Payment Due"}});
    let (status, text) = post(&base, &format!("?secret={SECRET}"), body.to_string()).await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(webhook_events(&app, &pending).await.len(), 1);
    assert_eq!(
        app.worker().step().await.unwrap().claimed,
        0,
        "nothing due, nothing paid"
    );
    assert_eq!(app.pay_requests(&pending), 0);

    // A failed order: recorded too.
    let failed = app.create_order(json!({})).await;
    app.enqueue(&failed, 1, None).await;
    sqlx::query("UPDATE ticketing_jobs SET state = 'failed', finalized_at = now(), last_error = 'test' WHERE order_no = $1")
        .bind(&failed)
        .execute(app.pool())
        .await
        .unwrap();
    let body = json!({"type": "order.cancelled", "status": -1,
                      "data": {"orderNo": failed, "errorCode": "604", "errorMessage": "Payment declined by airline"}});
    let (status, _) = post(&base, &format!("?secret={SECRET}"), body.to_string()).await;
    assert_eq!(status, 202);
    let events = webhook_events(&app, &failed).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["errorCode"], "604");
    let (change, _, _, _) = mark(&app, &failed).await;
    assert_eq!(change, None, "only a ticketed order is marked");
}

#[tokio::test]
async fn w3_deliveries_naming_no_known_order_are_2xx_garbage_is_400_and_strangers_401() {
    let (app, base) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let q = format!("?secret={SECRET}");
    for (what, body) in [
        ("airline.status", json!({"data": {"airline": ["TO"], "airlineStatus": "Active"}, "status": -1, "type": "airline.status"}).to_string()),
        ("an unknown order", json!({"type": "order.void", "data": {"orderNo": "NOSUCHORDER9", "voidStatus": 2}}).to_string()),
        ("a malformed orderNo", json!({"data": {"orderNo": "bad-order'; --"}}).to_string()),
        ("an orderNo that is not a string", json!({"data": {"orderNo": 12345678}}).to_string()),
    ] {
        let (status, text) = post(&base, &q, body).await;
        assert_eq!(status, 202, "{what}: {text}");
    }
    for (what, body) in [
        ("non-JSON", b"this is not json".to_vec()),
        ("an array", b"[1,2,3]".to_vec()),
        (
            "a raw NUL byte",
            b"{\"type\": \"order.void\", \0 \"data\": {}}".to_vec(),
        ),
        ("deep nesting", "[".repeat(10_000).into_bytes()),
    ] {
        let (status, text) = post(&base, &q, body).await;
        assert_eq!(status, 400, "{what}: {text}");
    }
    // Over the size limit: refused before it is read, never a 5xx.
    let big = format!(
        r#"{{"type": "email.all", "data": {{"orderNo": "{order}", "x": "{}"}}}}"#,
        "a".repeat(100_000)
    );
    assert_eq!(post(&base, &q, big).await.0, 413);
    // An escaped NUL (valid JSON) is recorded without it: no false database error.
    let nul = format!(
        r#"{{"type": "email.all\u0000", "notificationId": "N\u0000UL", "data": {{"orderNo": "{order}", "emailCategory": "Re\u0000ceipt"}}}}"#
    );
    let (status, text) = post(&base, &q, nul).await;
    assert_eq!(status, 202, "{text}");
    let events = webhook_events(&app, &order).await;
    let last = events.last().unwrap();
    assert_eq!(last["emailCategory"], "Receipt");
    assert_eq!(last["type"], "email.all");
    // Unauthenticated deliveries stay refused, whatever they carry.
    let body =
        json!({"type": "order.void", "data": {"orderNo": order, "voidStatus": 2}}).to_string();
    assert_eq!(post(&base, "?secret=wrong", body.clone()).await.0, 401);
    assert_eq!(post(&base, "", body).await.0, 401);
    assert_eq!(mark(&app, &order).await.0, None);
}

#[tokio::test]
async fn p6_a_411_review_names_the_deposit_balance_and_nothing_is_paid_twice() {
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::from_millis(100),
        deposit_balance: 12.5,
        ..SimConfig::default()
    })
    .await;
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    let row = app.job(&order).await;
    assert_eq!(row.state, "needs_review");
    let why = row.last_error.unwrap();
    assert!(why.contains("411"), "{why}");
    assert!(why.contains("balance.do says 12.50 USD"), "{why}");
    assert_eq!(app.pay_requests(&order), 1);
    assert_eq!(app.charges(&order), 0);
    // The balance read is not on the unauthenticated /metrics; the unread count is.
    let metrics = ticketing_tracker::metrics::global().render();
    assert!(!metrics.contains("ticketing_atrip_balance"), "{metrics}");
    assert!(metrics.contains("ticketing_balance_unread_total"));
}

#[tokio::test]
async fn p6_a_411_review_without_a_readable_balance_still_asks_for_a_check_and_pays_once() {
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::from_millis(100),
        deposit_balance: 1.0,
        ..SimConfig::default()
    })
    .await;
    reqwest::Client::new()
        .post(format!("{}/sim/balance", app.sim.base_url()))
        .json(&json!({"mode": "garbled"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    let row = app.job(&order).await;
    assert_eq!(row.state, "needs_review");
    let why = row.last_error.unwrap();
    assert!(
        why.contains("check the ATRIP deposit balance (or the card)"),
        "{why}"
    );
    assert!(!why.contains("balance.do says"), "{why}");
    assert_eq!(app.pay_requests(&order), 1);
}

/// (after_ticketing_check, after_ticketing_checks)
async fn checks(app: &TestApp, order: &str) -> (Option<String>, i32) {
    sqlx::query_as(
        "SELECT after_ticketing_check, after_ticketing_checks FROM ticketing_jobs WHERE order_no = $1",
    )
    .bind(order)
    .fetch_one(app.pool())
    .await
    .unwrap()
}

/// Posts `body` with the secret, giving up after 3 s (a delivery that waits on a lock would
/// hold its connection much longer); returns the status and the outcome answered.
async fn deliver(base: &str, body: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/webhooks/atrip?secret={SECRET}"))
        .timeout(Duration::from_secs(3))
        .json(body)
        .send()
        .await
        .expect("answered within 3 s");
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        answer["outcome"].as_str().unwrap_or_default().to_owned(),
    )
}

fn webhook_count(outcome: &str) -> u64 {
    let text = ticketing_tracker::metrics::global().render();
    let key = format!("ticketing_webhooks_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn w6_a_recheck_whose_claim_ran_out_writes_nothing_and_confirmed_is_never_overwritten() {
    use ticketing_tracker::jobs::Finding;
    let (app, _) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    after_ticketing(&app, &order, json!({"change": "void"})).await;

    // A slow worker claims the re-check, and its hold runs out before it writes.
    let hold = Duration::from_secs(20);
    let slow = app.store.claim_rechecks(16, hold).await.unwrap();
    assert_eq!(slow.len(), 1);
    assert!(
        app.store.claim_rechecks(16, hold).await.unwrap().is_empty(),
        "held meanwhile"
    );
    app.advance(hold + Duration::from_secs(1)).await;

    // Another worker claims it, asks ATRIP over HTTP and confirms the void.
    assert_eq!(app.worker().recheck_after_ticketing().await.unwrap(), 1);
    assert_eq!(checks(&app, &order).await, (Some("confirmed".into()), 1));

    // The slow worker's late findings write nothing: not counted, never over `confirmed`.
    for late in [
        Finding::Unconfirmed {
            note: "late".into(),
        },
        Finding::Again {
            note: "late".into(),
            after: Duration::from_secs(60),
        },
    ] {
        assert!(!app
            .store
            .record_recheck(&slow[0], &late, "slow-worker")
            .await
            .unwrap());
    }
    assert_eq!(checks(&app, &order).await, (Some("confirmed".into()), 1));
    let (_, _, due, note) = mark(&app, &order).await;
    assert!(!due);
    assert!(note.unwrap().contains("orderStatus -3"));
    let checked = app
        .store
        .events(&order)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "after_ticketing_checked")
        .count();
    assert_eq!(checked, 1, "one finding recorded");

    // A claim that is still held writes once, and only once.
    let (app2, _) = app_with_webhooks(SimConfig {
        changed_order_status: "2".into(),
        ..SimConfig::default()
    })
    .await;
    let order2 = ticketed(&app2).await;
    after_ticketing(&app2, &order2, json!({"change": "void"})).await;
    let r = app2
        .store
        .claim_rechecks(1, hold)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let again = Finding::Again {
        note: "still ticketed".into(),
        after: Duration::from_secs(60),
    };
    assert!(app2.store.record_recheck(&r, &again, "w").await.unwrap());
    assert!(!app2.store.record_recheck(&r, &again, "w").await.unwrap());
    assert_eq!(checks(&app2, &order2).await, (Some("reported".into()), 1));
}

#[tokio::test]
async fn w3_a_delivery_never_waits_on_a_locked_row_and_its_mark_is_applied_later() {
    let (app, base) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let before = webhook_events(&app, &order).await.len();

    // Another session holds the row as a worker's write does (FOR NO KEY UPDATE).
    let mut held = app.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ticketing_jobs WHERE order_no = $1 FOR NO KEY UPDATE")
        .bind(&order)
        .execute(&mut *held)
        .await
        .unwrap();
    let busy = webhook_count("busy");
    let started = std::time::Instant::now();
    // ATRIP voids the order and says so, over HTTP.
    let statuses = after_ticketing(&app, &order, json!({"change": "void"})).await;
    assert_eq!(statuses, vec![202, 202]);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(webhook_count("busy") >= busy + 2);
    // Recorded at once; the mark waits for the row.
    assert_eq!(webhook_events(&app, &order).await.len(), before + 2);
    assert_eq!(mark(&app, &order).await.0, None);
    let void =
        json!({"type": "order.void", "data": {"orderNo": order, "voidStatus": 2, "voidCode": "x"}});
    let started = std::time::Instant::now();
    assert_eq!(deliver(&base, &void).await, (202, "busy".into()));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(webhook_events(&app, &order).await.len(), before + 3);
    assert_eq!(
        deliver(&base, &void).await,
        (202, "duplicate".into()),
        "a replay is still one event"
    );
    held.rollback().await.unwrap();

    // The next re-check round marks it, and asks ATRIP.
    assert_eq!(app.worker().recheck_after_ticketing().await.unwrap(), 1);
    let (change, check, _, note) = mark(&app, &order).await;
    assert_eq!(change.as_deref(), Some("voided"));
    assert_eq!(check.as_deref(), Some("confirmed"), "{note:?}");

    // Held FOR UPDATE (a person's SELECT … FOR UPDATE): answered at once, nothing written, and
    // 503 so that a sender that retries comes back (a 2xx would lose the delivery).
    let mut held = app.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ticketing_jobs WHERE order_no = $1 FOR UPDATE")
        .bind(&order)
        .execute(&mut *held)
        .await
        .unwrap();
    let events = webhook_events(&app, &order).await.len();
    let started = std::time::Instant::now();
    let email =
        json!({"type": "email.all", "notificationId": "N-held", "data": {"orderNo": order}});
    assert_eq!(deliver(&base, &email).await, (503, "busy".into()));
    assert!(started.elapsed() < Duration::from_secs(2));
    held.rollback().await.unwrap();
    assert_eq!(webhook_events(&app, &order).await.len(), events);
    // Delivered again once the row is free, it is recorded.
    assert_eq!(deliver(&base, &email).await, (202, "recorded".into()));
}

#[tokio::test]
async fn w3_deliveries_per_order_are_bounded_and_a_report_made_is_not_restarted() {
    use ticketing_tracker::jobs::WEBHOOKS_PER_ORDER_PER_HOUR as CAP;
    // An ATRIP whose query still shows a voided order ticketed: the report stays `reported`.
    let (app, base) = app_with_webhooks(SimConfig {
        changed_order_status: "2".into(),
        ..SimConfig::default()
    })
    .await;
    let order = ticketed(&app).await;
    let void = |status: i64, message: &str| json!({"type": "order.void", "data": {"orderNo": order, "voidStatus": status, "message": message}});
    assert_eq!(
        deliver(&base, &void(0, "processing")).await,
        (202, "marked".into())
    );
    app.worker().recheck_after_ticketing().await.unwrap();
    assert_eq!(checks(&app, &order).await, (Some("reported".into()), 1));
    let (_, _, due, _) = mark(&app, &order).await;
    assert!(!due, "asked again in a minute");

    // The same report with another message, or one changed byte elsewhere: the same event.
    let mut other = void(0, "processing!");
    other["padding"] = json!("x");
    assert_eq!(deliver(&base, &other).await, (202, "duplicate".into()));
    // A new step of the same void is recorded, and does not restart the re-checks.
    assert_eq!(
        deliver(&base, &void(2, "voided")).await,
        (202, "recorded".into())
    );
    assert_eq!(checks(&app, &order).await, (Some("reported".into()), 1));
    assert!(!mark(&app, &order).await.2, "not made due again");
    // Nor does a schedule change after it.
    let sc = json!({"type": "order.schedulechange", "data": {"orderNo": order, "scheduleChangeType": 1}});
    assert_eq!(deliver(&base, &sc).await, (202, "recorded".into()));
    assert_eq!(checks(&app, &order).await, (Some("reported".into()), 1));
    assert_eq!(mark(&app, &order).await.0.as_deref(), Some("voided"));

    // A flood of made-up notificationIds: at most CAP events in an hour, the rest counted.
    let capped_before = webhook_count("capped");
    let mut capped = 0;
    for n in 0..CAP + 10 {
        let body = json!({"type": "email.all", "notificationId": format!("flood-{n}"), "data": {"orderNo": order}});
        let (status, outcome) = deliver(&base, &body).await;
        assert_eq!(status, 202);
        if outcome == "capped" {
            capped += 1;
        }
    }
    let routine = webhook_events(&app, &order)
        .await
        .iter()
        .filter(|e| e.get("change").is_none())
        .count() as i64;
    assert!(routine <= CAP, "{routine} routine events in the hour");
    assert!(capped >= 10, "{capped}");
    assert!(webhook_count("capped") >= capped_before + capped);
    // Routine deliveries never use up the room of a change: another ticketed order, flooded
    // with mail events to the cap, still takes its void.
    let other_order = ticketed(&app).await;
    for n in 0..CAP + 2 {
        let body = json!({"type": "email.all", "notificationId": format!("mail-{n}"), "data": {"orderNo": other_order}});
        deliver(&base, &body).await;
    }
    let void_other =
        json!({"type": "order.void", "data": {"orderNo": other_order, "voidStatus": 0}});
    assert_eq!(deliver(&base, &void_other).await, (202, "marked".into()));
    // An hour later the order takes deliveries again.
    app.advance(Duration::from_secs(3601)).await;
    let body =
        json!({"type": "email.all", "notificationId": "after-an-hour", "data": {"orderNo": order}});
    assert_eq!(deliver(&base, &body).await, (202, "recorded".into()));
}

#[tokio::test]
async fn w3_card_data_in_a_delivery_is_masked_before_it_is_recorded() {
    let (app, base) = app_with_webhooks(SimConfig::default()).await;
    let order = ticketed(&app).await;
    let body = json!({"type": "email.all", "notificationId": "N-card", "data": {
        "orderNo": order, "errorMessage": "card 4532015112830366 refused",
        "message": "cardCVV: 987, 4532 0151 1283 0366", "emailCategory": "Receipt"}});
    assert_eq!(deliver(&base, &body).await, (202, "recorded".into()));
    // The same number written with wider gaps, as a person or a mail template may.
    let wide = json!({"type": "email.all", "notificationId": "N-card-2", "data": {
        "orderNo": order, "errorMessage": "4532 - 0151 - 1283 - 0366",
        "message": "4532  0151  1283  0366", "emailCategory": "4532\u{a0}0151\u{a0}1283\u{a0}0366"}});
    assert_eq!(deliver(&base, &wide).await, (202, "recorded".into()));
    let events = webhook_events(&app, &order).await;
    let details = events
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    for secret in ["4532015112830366", "4532", "0151", "1283", "987"] {
        assert!(!details.contains(secret), "{secret} in {details}");
    }
    assert!(details.contains("0366"), "{details}");
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ticketing_events
         WHERE detail::text ~ '4532[^0-9]{1,6}0151[^0-9]{1,6}1283'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(kept, 0, "a card number in the events");
}

#[tokio::test]
async fn w3_a_webhook_never_wakes_a_paying_row_that_could_still_send_a_pay_do() {
    let (app, base) = app_with_webhooks(SimConfig::default()).await;
    let order = app.order_and_enqueue(1, None, json!({})).await;
    // A pay.do provably not sent: the row is paying with its permit left, due in an hour.
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'paying', pay_attempts = 1, pay_not_sent = 1,
                pay_started_at = ticketing_now(), run_at = ticketing_now() + interval '1 hour'
         WHERE order_no = $1",
    )
    .bind(&order)
    .execute(app.pool())
    .await
    .unwrap();
    let run_at = |app: &TestApp, order: String| {
        let pool = app.pool().clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT run_at > ticketing_now() FROM ticketing_jobs WHERE order_no = $1",
            )
            .bind(order)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let body = json!({"type": "order.ticketed", "data": {"orderNo": order, "orderStatus": 2}});
    assert_eq!(deliver(&base, &body).await, (202, "recorded".into()));
    assert!(run_at(&app, order.clone()).await, "still due in an hour");
    assert_eq!(app.worker().step().await.unwrap().claimed, 0);
    assert_eq!(app.pay_requests(&order), 0);

    // Its permit used (the pay.do may have reached ATRIP): the webhook makes it due for a query.
    sqlx::query("UPDATE ticketing_jobs SET pay_not_sent = 0 WHERE order_no = $1")
        .bind(&order)
        .execute(app.pool())
        .await
        .unwrap();
    let body = json!({"type": "order.ticketed", "data": {"orderNo": order, "orderStatus": 1}});
    assert_eq!(deliver(&base, &body).await, (202, "woken".into()));
    assert!(!run_at(&app, order.clone()).await, "due now");
}
