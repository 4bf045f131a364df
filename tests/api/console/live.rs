//! Pages that keep themselves fresh without reloading, in a real headless Chromium against the
//! real `ticketing-tracker run`: a person typing into the Find field one key a second across
//! several refresh periods loses nothing while the overview's counts change under them, and a
//! ticked box on the review list holds that list until it is unticked.

use std::time::{Duration, Instant};

use serde_json::json;

use super::browser::{log_in, order, start_worker_refreshing, tools_or_skip, wait_for_state};
use super::webdriver::Browser;
use super::OPERATOR_PASSWORD;
use crate::support::app::TestApp;

/// Seconds between two updates of a page: short, so that typing spans several.
const REFRESH_S: u64 = 2;

/// Polls `read` until `want` holds of what it returns; panics with the last value after
/// `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, read: F, want: impl Fn(&str) -> bool) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = read().await;
        if want(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: still {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A mark set on the page's `window`: a reload (or a navigation) would wipe it.
async fn mark(browser: &Browser) {
    browser
        .execute("window.__notReloaded = 'yes'; return true", json!([]))
        .await;
}

async fn still_marked(browser: &Browser) -> bool {
    browser
        .execute("return window.__notReloaded === 'yes'", json!([]))
        .await
        == json!(true)
}

#[tokio::test]
async fn typing_into_find_one_key_a_second_loses_nothing_while_the_overview_counts_update() {
    let Some((chrome, driver)) = tools_or_skip("console live (typing)") else {
        return;
    };
    let app = TestApp::new().await;
    let mut worker = start_worker_refreshing(&app, REFRESH_S);
    let base = worker.http_base().await;
    let browser = Browser::start(&chrome, &driver).await;
    log_in(&browser, &base, "alice", OPERATOR_PASSWORD).await;
    assert_eq!(browser.text("#count-ticketed b").await, "0");
    mark(&browser).await;

    let typed = "PNR-X7Q";
    let field = "nav input[name=q]";
    let started = Instant::now();
    let mut updated_while_typing = false;
    let mut ticketed = None;
    for (i, key) in typed.chars().enumerate() {
        browser.type_into(field, &key.to_string()).await;
        if i == 1 {
            // The database changes under the page: an order is enqueued and gets ticketed.
            ticketed = Some(order(&app, json!({})).await);
        }
        if browser.text("#count-ticketed b").await == "1" {
            updated_while_typing = true;
        }
        // A person's pace, not a wait for anything: one key a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let typing = started.elapsed();
    assert!(
        typing > Duration::from_secs(2 * REFRESH_S),
        "typing spans more than one refresh period: {typing:?}"
    );
    wait_for_state(&app, ticketed.as_deref().unwrap(), "ticketed").await;
    // The count reaches the page without a reload, the field still in use.
    until(
        Duration::from_secs(20),
        "the overview's ticketed count",
        || browser.text("#count-ticketed b"),
        |t| t == "1",
    )
    .await;
    let value = browser
        .execute(
            "return document.querySelector(arguments[0]).value",
            json!([field]),
        )
        .await;
    assert_eq!(value, json!(typed), "no key lost");
    assert_eq!(browser.focused().await, "q", "the field kept the focus");
    assert!(still_marked(&browser).await, "the page was never reloaded");
    assert!(
        browser.text("#live-when").await.starts_with("Updated "),
        "{}",
        browser.text("#live-when").await
    );
    eprintln!(
        "live: typed {typed:?} over {typing:?}; count updated while typing: {updated_while_typing}"
    );

    // What was typed still finds: the form is the page's own, untouched.
    browser.click("nav form.find button").await;
    until(
        Duration::from_secs(10),
        "the find page",
        || browser.url(),
        |u| u.contains("/console/find?q=PNR-X7Q"),
    )
    .await;
    drop(browser);
    worker.stop().await;
}

#[tokio::test]
async fn a_ticked_box_holds_the_review_list_until_it_is_unticked() {
    let Some((chrome, driver)) = tools_or_skip("console live (ticked box)") else {
        return;
    };
    let app = TestApp::new().await;
    let first = order(&app, json!({"fail_before_charge": 1})).await;
    let mut worker = start_worker_refreshing(&app, REFRESH_S);
    let base = worker.http_base().await;
    wait_for_state(&app, &first, "needs_review").await;
    let browser = Browser::start(&chrome, &driver).await;
    log_in(&browser, &base, "olga", OPERATOR_PASSWORD).await;
    browser.goto(&format!("{base}/console/review")).await;
    let boxed = format!("input[type=checkbox][value='{first}']");
    browser.click(&boxed).await;
    mark(&browser).await;

    // A second order needs a person while the first one's box is ticked.
    let second = order(&app, json!({"fail_before_charge": 1})).await;
    wait_for_state(&app, &second, "needs_review").await;
    until(
        Duration::from_secs(20),
        "the status line saying the list waits",
        || browser.text("#live-when"),
        |t| t.contains("paused while you work"),
    )
    .await;
    assert!(
        browser.find_all(&format!("#row-{second}")).await.is_empty(),
        "the list did not change under the ticked box"
    );
    let ticked = browser
        .execute(
            "return document.querySelector(arguments[0]).checked",
            json!([boxed]),
        )
        .await;
    assert_eq!(ticked, json!(true));

    // Unticked, the list catches up, in place.
    browser.click(&boxed).await;
    until(
        Duration::from_secs(20),
        "the second order's row",
        || async {
            browser
                .find_all(&format!("#row-{second}"))
                .await
                .len()
                .to_string()
        },
        |n| n == "1",
    )
    .await;
    assert!(still_marked(&browser).await, "the page was never reloaded");
    drop(browser);
    worker.stop().await;
}
