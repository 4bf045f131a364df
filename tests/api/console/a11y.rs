//! The console for everyone, in a real headless Chromium against the real `ticketing-tracker
//! run`: axe-core (from the npm registry, `.ci/run` installs it) finds no serious or critical
//! violation on the login page, the overview, the review list, a state's list, an order's page,
//! the find page and the pause, changed-after-ticketing and reconciliation pages, in light and
//! dark colours, at a desk's width (1366 px) and a phone's
//! (390 px); at 390 px no page is wider than the screen. A keyboard's first Tab reaches a skip
//! link past the navigation, and every focused element shows a ring. With
//! `CONSOLE_SCREENSHOTS=1` the axe test writes the screenshots the README shows
//! (docs/console-*.png).
//!
//! axe-core is looked for at `AXE_CORE_JS`, else at `target/axe/node_modules/axe-core/axe.min.js`
//! (`npm install --prefix target/axe axe-core@4`). Without it (or without Chromium) the test says
//! SKIPPED and passes, except with `CI=true`, where it fails.

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::json;

use super::browser::wait_for_state;
use super::browser::{log_in, order, screenshot_path, start_worker_refreshing, tools_or_skip};
use super::webdriver::Browser;
use super::OPERATOR_PASSWORD;
use crate::support::app::TestApp;

/// axe-core's script, or `None` after a loud SKIPPED line (a failure under `CI=true`).
fn axe_or_skip(test: &str) -> Option<String> {
    let path = std::env::var_os("AXE_CORE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        });
    if let Ok(script) = std::fs::read_to_string(&path) {
        return Some(script);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: axe-core is required when CI=true, at {} (npm install --prefix target/axe axe-core@4, or AXE_CORE_JS)",
        path.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no axe-core at {} (npm install --prefix target/axe axe-core@4, or set AXE_CORE_JS)",
        path.display()
    );
    None
}

/// Runs axe-core over the page the browser is on; returns its violations, each as
/// `impact rule-id: help (where)`.
async fn axe(browser: &Browser, script: &str) -> Vec<(String, String)> {
    // Injected by WebDriver, outside the page's Content-Security-Policy (the page allows no
    // script but its own).
    browser
        .execute(&format!("{script}\n;return typeof axe"), json!([]))
        .await;
    let found = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
               .then(r => done(r.violations.map(v => [v.impact || 'unknown',
                   v.id + ': ' + v.help + ' (' + v.nodes.slice(0, 4)
                     .map(n => n.target.join(' ')).join(', ') + ')'])))
               .catch(e => done([['error', String(e)]]));",
            json!([]),
        )
        .await;
    serde_json::from_value(found).expect("axe's answer")
}

/// The page's width as laid out (wider than the screen means the page scrolls sideways).
async fn page_width(browser: &Browser) -> i64 {
    browser
        .execute("return document.documentElement.scrollWidth", json!([]))
        .await
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn every_page_passes_axe_in_light_and_dark_at_desk_and_phone_width_without_sideways_scroll() {
    let Some((chrome, driver)) = tools_or_skip("console accessibility") else {
        return;
    };
    let Some(script) = axe_or_skip("console accessibility") else {
        return;
    };
    let app = TestApp::new().await;
    // Orders in every place a page shows: paid but late (needs_review), unpaid (needs_review),
    // refused (failed), ticketed.
    let late = order(&app, json!({"ticketing_delay_ms": 2500})).await;
    let unclear = order(&app, json!({"fail_before_charge": 1})).await;
    let refused = order(&app, json!({"pay_status": 413})).await;
    let screenshots = screenshot_path("x").is_some();
    let mut fine = Vec::new();
    for _ in 0..if screenshots { 24 } else { 2 } {
        fine.push(order(&app, json!({})).await);
    }
    // The pages update themselves as for an operator, but not during a check (600 s); for the
    // screenshots every 5 s, as the line under the title then says.
    let mut worker = start_worker_refreshing(&app, if screenshots { 5 } else { 600 });
    let base = worker.http_base().await;
    wait_for_state(&app, &late, "needs_review").await;
    wait_for_state(&app, &unclear, "needs_review").await;
    wait_for_state(&app, &refused, "failed").await;
    for o in &fine {
        wait_for_state(&app, o, "ticketed").await;
    }

    let browser = Browser::start(&chrome, &driver).await;
    let pages = [
        ("overview", "/console".to_owned()),
        ("review", "/console/review".to_owned()),
        ("ticketed", "/console/orders?state=ticketed".to_owned()),
        ("order", format!("/console/orders/{late}")),
        ("find", "/console/find?q=NO-SUCH-ORDER".to_owned()),
        ("pause", "/console/pause".to_owned()),
        ("changed", "/console/changed".to_owned()),
        ("reconcile", "/console/reconcile".to_owned()),
    ];
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (width, height) in [(1366, 900), (390, 844)] {
        for dark in [false, true] {
            let mode = format!("{width} px {}", if dark { "dark" } else { "light" });
            browser.emulate(width, height, dark).await;
            browser.delete_cookies().await;
            browser.goto(&format!("{base}/console/login")).await;
            // The emulation took: the page is in the colours axe is to judge.
            let background = browser
                .execute(
                    "return getComputedStyle(document.body).backgroundColor",
                    json!([]),
                )
                .await;
            let expected = if dark {
                "rgb(13, 17, 23)"
            } else {
                "rgb(246, 248, 250)"
            };
            assert_eq!(background, json!(expected), "{mode}");
            let mut visited = vec![("login", check(&browser, &script).await)];
            log_in(&browser, &base, "alice", OPERATOR_PASSWORD).await;
            for (name, path) in &pages {
                browser.goto(&format!("{base}{path}")).await;
                visited.push((name, check(&browser, &script).await));
                // Every data cell of a table with a header row carries its column's name,
                // shown beside the value on a phone.
                let unlabelled = browser
                    .execute(
                        "let n = 0;
                         for (const t of document.querySelectorAll('main table')) {
                           const head = t.rows[0];
                           if (!head || head.querySelector(':scope > td')) continue;
                           for (const r of Array.from(t.rows).slice(1))
                             for (const c of r.cells)
                               if (c.colSpan === 1 && head.cells[c.cellIndex] &&
                                   head.cells[c.cellIndex].textContent.trim() &&
                                   !c.getAttribute('data-label')) n++;
                         }
                         return n;",
                        json!([]),
                    )
                    .await;
                assert_eq!(unlabelled, json!(0), "{mode} {name}: cells without a label");
                if let Some(file) = shot_name(name, width, dark) {
                    shoot(&browser, width, dark, &file).await;
                }
            }
            for (name, (violations, scroll_width)) in visited {
                report.push(format!(
                    "{mode} {name}: width {scroll_width} px, {} violations",
                    violations.len()
                ));
                for (impact, text) in violations {
                    eprintln!("axe {mode} {name}: {impact} {text}");
                    if impact == "serious" || impact == "critical" || impact == "error" {
                        problems.push(format!("{mode} {name}: {impact} {text}"));
                    }
                }
                if width == 390 && scroll_width > 390 {
                    problems.push(format!(
                        "{mode} {name}: the page is {scroll_width} px wide, wider than the screen"
                    ));
                }
            }
        }
    }
    eprintln!("a11y:\n  {}", report.join("\n  "));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(browser);
    worker.stop().await;
}

/// axe's violations and the page's laid-out width.
async fn check(browser: &Browser, script: &str) -> (Vec<(String, String)>, i64) {
    let found = axe(browser, script).await;
    (found, page_width(browser).await)
}

/// The README's screenshots: the overview, the review list and an order's page at a desk's
/// width, the overview and an order's page on a phone, the review list in the dark.
fn shot_name(page: &str, width: u32, dark: bool) -> Option<PathBuf> {
    let name = match (page, width, dark) {
        ("overview", 1366, false) => "console-overview.png",
        ("review", 1366, false) => "console-review.png",
        ("order", 1366, false) => "console-order.png",
        ("review", 1366, true) => "console-review-dark.png",
        ("overview", 390, false) => "console-overview-phone.png",
        ("order", 390, false) => "console-order-phone.png",
        _ => return None,
    };
    screenshot_path(name)
}

/// A screenshot of the whole page (up to 2,400 px tall), then the screen as it was.
async fn shoot(browser: &Browser, width: u32, dark: bool, file: &std::path::Path) {
    let height = browser
        .execute("return document.documentElement.scrollHeight", json!([]))
        .await
        .as_u64()
        .unwrap()
        .clamp(600, 2400) as u32;
    browser.emulate(width, height, dark).await;
    browser.screenshot(file).await;
    browser
        .emulate(width, if width < 600 { 844 } else { 900 }, dark)
        .await;
}

/// Tab, Enter: WebDriver's key codes.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// What has the focus: its tag, id or class, and whether its focus ring shows.
async fn focus(browser: &Browser) -> serde_json::Value {
    browser
        .execute(
            "const a = document.activeElement, s = getComputedStyle(a), r = a.getBoundingClientRect();
             return {tag: a.tagName, id: a.id, cls: a.className,
                     ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
                     seen: r.top >= 0 && r.left >= 0 && r.width > 0};",
            json!([]),
        )
        .await
}

#[tokio::test]
async fn a_keyboard_skips_the_navigation_to_the_page_and_always_shows_where_the_focus_is() {
    let Some((chrome, driver)) = tools_or_skip("console keyboard") else {
        return;
    };
    let app = TestApp::new().await;
    let mut worker = start_worker_refreshing(&app, 600);
    let base = worker.http_base().await;
    let browser = Browser::start(&chrome, &driver).await;
    for (width, height) in [(1366, 900), (390, 844)] {
        browser.emulate(width, height, false).await;
        browser.delete_cookies().await;
        log_in(&browser, &base, "kim", OPERATOR_PASSWORD).await;
        // The first Tab lands on the skip link, shown with its ring.
        browser.press(TAB).await;
        let skip = focus(&browser).await;
        assert_eq!(
            (&skip["cls"], &skip["ring"], &skip["seen"]),
            (&json!("skip"), &json!(true), &json!(true)),
            "{width} px: {skip}"
        );
        // Enter follows it: the focus is in <main>, the navigation passed over.
        browser.press(ENTER).await;
        assert_eq!(focus(&browser).await["id"], json!("main"), "{width} px");
        browser.press(TAB).await;
        let next = browser
            .execute(
                "const a = document.activeElement;
                 return [!!a.closest('main'), !a.closest('nav'), a.textContent];",
                json!([]),
            )
            .await;
        assert_eq!((&next[0], &next[1]), (&json!(true), &json!(true)), "{next}");
        // Every link, button and field in the navigation shows its ring when reached by Tab.
        browser.goto(&format!("{base}/console")).await;
        browser.press(TAB).await;
        for _ in 0..12 {
            browser.press(TAB).await;
            let f = focus(&browser).await;
            assert_eq!(f["ring"], json!(true), "{width} px: no focus ring on {f}");
        }
    }
    drop(browser);
    worker.stop().await;
}
