//! The console in a real headless Chromium, against the real `ticketing-tracker run` with its
//! real worker and the simulator: log in, read the counts, open an order, retry it and watch it
//! reach `ticketed`, allow a second pay.do through the confirmation page; a viewer's forged
//! action and an action without the CSRF token are refused; nothing secret reaches the log.
//!
//! Without chromium and chromedriver the tests say SKIPPED and pass, except with `CI=true`,
//! where they fail. The helpers here serve `live` (pages updating in place) and `a11y` (axe-core,
//! phone widths, dark mode and the screenshots in docs/) too.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::webdriver::{self, Browser};
use super::{hashes, OPERATOR_PASSWORD, VIEWER_PASSWORD};
use crate::support::app::{wait_until, TestApp};
use crate::support::binary::WorkerProcess;

/// Chromium and chromedriver, or `None` after a loud SKIPPED line (a failure under `CI=true`).
pub(super) fn tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    if let Some(tools) = webdriver::tools() {
        return Some(tools);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: chromium and chromedriver are required when CI=true (apt-get install chromium chromium-driver)"
    );
    // Past the harness's capture, so it shows in a normal run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no chromium or chromedriver on PATH (apt-get install chromium chromium-driver)"
    );
    None
}

/// `run` with the console on, fast bounds so that orders reach `needs_review` in a second,
/// and JSON logs.
fn start_worker(app: &TestApp) -> WorkerProcess {
    // The test reloads pages itself; a page updating under it would only add noise.
    start_worker_refreshing(app, 600)
}

/// [`start_worker`] with pages that update themselves every `refresh_s` seconds.
pub(super) fn start_worker_refreshing(app: &TestApp, refresh_s: u64) -> WorkerProcess {
    let (operator, viewer) = hashes();
    WorkerProcess::start(
        app,
        &[
            ("APP_CONSOLE__ENABLED", "true".into()),
            ("APP_CONSOLE__OPERATOR_PASSWORD_HASH", operator),
            ("APP_CONSOLE__VIEWER_PASSWORD_HASH", viewer),
            ("APP_CONSOLE__REFRESH_S", refresh_s.to_string()),
            ("APP_WORKER__UNPAID_SETTLE_S", "1".into()),
            ("APP_WORKER__TICKETING_DEADLINE_S", "1".into()),
            ("APP_WORKER__RECOVERY_DELAY_MS", "100".into()),
            ("APP_WORKER__POLL_MAX_MS", "300".into()),
            ("APP_LOG__FORMAT", "json".into()),
        ],
    )
}

/// Creates an order at the simulator with `scenario` and enqueues it (deposit).
pub(super) async fn order(app: &TestApp, scenario: Value) -> String {
    let order_no = app.create_order(json!({})).await;
    if scenario != json!({}) {
        app.scenario(&order_no, scenario).await;
    }
    app.enqueue(&order_no, 1, None).await;
    order_no
}

pub(super) async fn wait_for_state(app: &TestApp, order_no: &str, state: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("{order_no} {state}"),
        || async { app.job(order_no).await.state == state },
    )
    .await;
}

pub(super) async fn log_in(browser: &Browser, base: &str, name: &str, password: &str) {
    browser.goto(&format!("{base}/console")).await;
    assert!(
        browser.url().await.ends_with("/console/login"),
        "sent to the login form"
    );
    browser.type_into("input[name=name]", name).await;
    browser.type_into("input[name=password]", password).await;
    browser.click("form.login button").await;
    // A click on a submit button may return before the navigation it starts.
    arrive(browser, "/console").await;
    assert_eq!(browser.url().await, format!("{base}/console"));
}

/// Opens the order's page again and again until its state is `state`.
async fn watch_until(browser: &Browser, base: &str, order_no: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        browser
            .goto(&format!("{base}/console/orders/{order_no}"))
            .await;
        if browser.text("#state").await == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{order_no} never showed {state}:\n{}",
            browser.source().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the browser to land on a URL ending with `end` (a form's answer); panics with the
/// page it is on instead.
pub(super) async fn arrive(browser: &Browser, end: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !browser.url().await.ends_with(end) {
        assert!(
            std::time::Instant::now() < deadline,
            "never reached …{end}; on {}:\n{}",
            browser.url().await,
            browser.source().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) fn screenshot_path(name: &str) -> Option<PathBuf> {
    (std::env::var("CONSOLE_SCREENSHOTS").as_deref() == Ok("1")).then(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name)
    })
}

#[tokio::test]
async fn an_operator_sees_the_counts_opens_an_order_retries_it_and_watches_it_get_ticketed() {
    let Some((chrome, driver)) = tools_or_skip("console browser (operator)") else {
        return;
    };
    let app = TestApp::new().await;
    // Paid, then ATRIP tickets it after the (one-second) ticketing deadline: needs_review.
    let late = order(&app, json!({"ticketing_delay_ms": 2500})).await;
    // pay.do fails before charging; the order stays unpaid: needs_review, never paid again
    // unless an operator allows it.
    let unclear = order(&app, json!({"fail_before_charge": 1})).await;
    let refused = order(&app, json!({"pay_status": 413})).await;
    let extra = 2;
    let mut fine = Vec::new();
    for _ in 0..extra {
        fine.push(order(&app, json!({})).await);
    }
    let mut worker = start_worker(&app);
    let base = worker.http_base().await;
    wait_for_state(&app, &late, "needs_review").await;
    wait_for_state(&app, &unclear, "needs_review").await;
    wait_for_state(&app, &refused, "failed").await;
    for o in &fine {
        wait_for_state(&app, o, "ticketed").await;
    }

    let browser = Browser::start(&chrome, &driver).await;
    log_in(&browser, &base, "alice", OPERATOR_PASSWORD).await;
    assert_eq!(browser.text("#count-needs_review b").await, "2");
    assert_eq!(browser.text("#count-failed b").await, "1");
    assert_eq!(browser.text("#count-ticketed b").await, extra.to_string());
    assert!(browser
        .text("#atrip-status")
        .await
        .contains("ATRIP is answering"));

    // The list of orders that need a person, then the order's page.
    browser.click("nav a[href='/console/review']").await;
    arrive(&browser, "/console/review").await;
    browser.find(&format!("#row-{unclear}")).await;
    browser.click(&format!("#row-{late} a")).await;
    arrive(&browser, &format!("/console/orders/{late}")).await;
    assert_eq!(browser.text("#state").await, "needs_review");
    assert!(
        browser.text("#advice").await.contains("paid"),
        "retry follows a paid order"
    );
    assert!(
        browser.find_all("#timeline tr").await.len() >= 4,
        "intent, answer, queries"
    );

    // Retry once ATRIP shows it ticketed, and watch it move.
    wait_until(
        Duration::from_secs(15),
        "the simulator tickets it",
        || async { app.ledger(&late)["order_status"] == "2" },
    )
    .await;
    browser.click("#retry").await;
    // The page the retry sends the browser back to says so (the session's message); the
    // click returns before that page has loaded.
    browser.wait_for("#done", Duration::from_secs(10)).await;
    watch_until(&browser, &base, &late, "ticketed").await;
    assert!(browser
        .text("#timeline")
        .await
        .contains("console:operator:alice"));
    assert_eq!(app.charges(&late), 1);

    // A second pay.do, through the page that repeats the warning.
    browser
        .goto(&format!("{base}/console/orders/{unclear}"))
        .await;
    browser.click("#repay-link").await;
    arrive(&browser, &format!("/console/orders/{unclear}/repay")).await;
    assert_eq!(
        browser.text("#repay-warning").await,
        "Send a second pay.do only if you checked in ATRIP that the order is unpaid."
    );
    browser.click("#confirm").await;
    browser.click("#repay").await;
    arrive(&browser, &format!("/console/orders/{unclear}")).await;
    browser.wait_for("#done", Duration::from_secs(10)).await;
    watch_until(&browser, &base, &unclear, "ticketed").await;
    assert_eq!((app.pay_requests(&unclear), app.charges(&unclear)), (2, 1));

    browser
        .click("nav form[action='/console/logout'] button")
        .await;
    arrive(&browser, "/console/login").await;
    // The session is gone, not only the page: the console sends the browser back to log in.
    browser.goto(&format!("{base}/console")).await;
    assert!(
        browser.url().await.ends_with("/console/login"),
        "logged out"
    );
    drop(browser);
    worker.stop().await;
}

/// Posts a form from the page (as a forger would), with the page's own CSRF token or none.
async fn forge_post(browser: &Browser, action: &str, with_csrf: bool) {
    browser
        .execute(
            "const f = document.createElement('form');
             f.method = 'post'; f.action = arguments[0];
             if (arguments[1]) {
               const i = document.createElement('input');
               i.type = 'hidden'; i.name = 'csrf';
               i.value = document.querySelector('input[name=csrf]').value;
               f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            json!([action, with_csrf]),
        )
        .await;
    wait_until(
        Duration::from_secs(10),
        "the forged post's answer",
        || async { browser.title().await.starts_with("Refused") },
    )
    .await;
}

#[tokio::test]
async fn in_a_browser_a_viewers_forged_retry_and_a_post_without_csrf_are_refused() {
    let Some((chrome, driver)) = tools_or_skip("console browser (refusals)") else {
        return;
    };
    let app = TestApp::new().await;
    let unclear = order(&app, json!({"fail_before_charge": 1})).await;
    let mut worker = start_worker(&app);
    let base = worker.http_base().await;
    wait_for_state(&app, &unclear, "needs_review").await;
    let events_before = app.event_states(&unclear).await.len();

    let browser = Browser::start(&chrome, &driver).await;
    log_in(&browser, &base, "victor", VIEWER_PASSWORD).await;
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "tt_console")
        .expect("the session cookie");
    assert_eq!(
        (cookie["httpOnly"].clone(), cookie["sameSite"].clone()),
        (json!(true), json!("Strict"))
    );
    let mut secrets = vec![cookie["value"].as_str().unwrap().to_owned()];
    browser
        .goto(&format!("{base}/console/orders/{unclear}"))
        .await;
    assert!(browser
        .find_all("#retry, #repay-link, #cancel")
        .await
        .is_empty());
    assert!(browser.source().await.contains("Viewers cannot act"));
    secrets.push(
        browser
            .execute(
                "return document.querySelector('input[name=csrf]').value",
                json!([]),
            )
            .await
            .as_str()
            .unwrap()
            .to_owned(),
    );
    forge_post(&browser, &format!("/console/orders/{unclear}/retry"), true).await;
    assert!(browser
        .source()
        .await
        .contains("Viewers cannot retry or cancel"));

    // An operator's post without the token.
    browser.delete_cookies().await;
    log_in(&browser, &base, "olga", OPERATOR_PASSWORD).await;
    browser
        .goto(&format!("{base}/console/orders/{unclear}"))
        .await;
    browser.find("#retry").await;
    forge_post(&browser, &format!("/console/orders/{unclear}/retry"), false).await;
    assert!(browser.source().await.contains("CSRF"));
    assert_eq!(app.job(&unclear).await.state, "needs_review");
    assert_eq!(
        app.event_states(&unclear).await.len(),
        events_before,
        "no event written"
    );
    for c in browser.cookies().await {
        secrets.push(c["value"].as_str().unwrap_or_default().to_owned());
    }
    drop(browser);

    let log = worker.stop().await;
    assert!(log.contains("console: logged in"), "{log}");
    assert!(log.contains("console: action refused"), "{log}");
    for secret in secrets
        .iter()
        .filter(|s| s.len() >= 32)
        .map(String::as_str)
        .chain([OPERATOR_PASSWORD, VIEWER_PASSWORD])
    {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
}
