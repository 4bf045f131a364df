//! Paying paused in the console (rule S4): every page says so while a pause is in force; only
//! an operator pauses and resumes, with the session's CSRF token, and each is recorded with the
//! operator's name; `/metrics` says it too.

use reqwest::StatusCode;
use ticketing_tracker::domain::PauseScope;

use super::{park, serve, Client, Parked, OPERATOR_PASSWORD, VIEWER_PASSWORD};
use crate::support::app::TestApp;

const PAGES: [&str; 5] = [
    "/console",
    "/console/review",
    "/console/orders?state=pending",
    "/console/orders/CONSOLEPAUSE0001",
    "/console/pause",
];

#[tokio::test]
async fn every_page_shows_a_pause_in_force_to_viewers_and_operators() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEPAUSE0001", Parked::ReviewUnclear).await;
    let base = serve(&app, 50).await;
    let (viewer, _) = Client::logged_in(&base, "vera", VIEWER_PASSWORD).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    for page in PAGES {
        let got = viewer.get(page).await;
        assert_eq!(got.status, StatusCode::OK, "{page}");
        assert!(!got.body.contains(r#"id="paying-paused""#), "{page}");
    }
    app.store
        .pause(PauseScope::Every, "card processor <incident>", "cli:alice")
        .await
        .unwrap();
    for client in [&viewer, &operator] {
        for page in PAGES {
            let got = client.get(page).await;
            assert_eq!(got.status, StatusCode::OK, "{page}");
            assert!(
                got.body.contains(r#"id="paying-paused""#)
                    && got.body.contains("Paying is paused for every method")
                    && got
                        .body
                        .contains("by cli:alice: card processor &lt;incident&gt;"),
                "{page}: {}",
                got.body
            );
        }
    }
    let overview = viewer.get("/console").await;
    assert!(
        overview
            .body
            .contains("Orders of a paused method are not counted"),
        "{}",
        overview.body
    );
}

#[tokio::test]
async fn only_an_operator_gets_the_buttons_and_pauses_and_resumes_with_the_sessions_token() {
    let app = TestApp::new().await;
    let base = serve(&app, 50).await;
    let (viewer, viewer_csrf) = Client::logged_in(&base, "vera", VIEWER_PASSWORD).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;

    let page = viewer.get("/console/pause").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"id="not-paused""#), "{}", page.body);
    assert!(
        !page.body.contains(r#"action="/console/pause""#),
        "a viewer gets no pause form: {}",
        page.body
    );
    let page = operator.get("/console/pause").await;
    assert!(
        page.body.contains(r#"action="/console/pause""#),
        "{}",
        page.body
    );

    // Without the token, with another session's, or as a viewer: refused, nothing paused.
    let got = operator
        .post("/console/pause", &[("method", "0"), ("reason", "incident")])
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert!(got.body.contains("CSRF"), "{}", got.body);
    let got = operator
        .post(
            "/console/pause",
            &[
                ("method", "0"),
                ("reason", "incident"),
                ("csrf", &viewer_csrf),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    let got = viewer
        .post(
            "/console/pause",
            &[
                ("method", "0"),
                ("reason", "incident"),
                ("csrf", &viewer_csrf),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert!(got.body.contains("Viewers cannot"), "{}", got.body);
    assert!(app.store.pauses_in_force().await.unwrap().is_empty());

    // An operator pauses method 3, with a reason.
    let got = operator
        .post(
            "/console/pause",
            &[
                ("method", "3"),
                ("reason", "VCC issuer down"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert_eq!(got.location(), "/console/pause");
    let held = app.store.pauses_in_force().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (
            held[0].method,
            held[0].paused_by.as_str(),
            held[0].reason.as_str()
        ),
        (3, "console:operator:olga", "VCC issuer down")
    );
    let page = operator.get(got.location()).await;
    assert!(
        page.body.contains(r#"id="done""#) && page.body.contains(r#"id="resume-3""#),
        "{}",
        page.body
    );
    let page = viewer.get("/console/pause").await;
    assert!(
        page.body.contains("VCC issuer down") && !page.body.contains(r#"id="resume-3""#),
        "a viewer sees the pause, not the button: {}",
        page.body
    );
    // An empty reason, or pausing again, is refused in words.
    let got = operator
        .post(
            "/console/pause",
            &[("method", "1"), ("reason", "  "), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert!(got.body.contains("the reason is empty"), "{}", got.body);
    let got = operator
        .post(
            "/console/pause",
            &[("method", "3"), ("reason", "again"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert!(
        got.body.contains("paying method 3 is paused already"),
        "{}",
        got.body
    );

    // /metrics says it, per method.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ticketing_paying_paused{method=\"3\"} 1\n")
            && metrics.contains("ticketing_paying_paused{method=\"all\"} 0\n")
            && metrics.contains("ticketing_paying_paused_seconds{method=\"3\"} "),
        "{metrics}"
    );

    // Resume: refused without the token, then done; the history names both.
    let got = operator.post("/console/resume", &[("method", "3")]).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(app.store.pauses_in_force().await.unwrap().len(), 1);
    let got = operator
        .post("/console/resume", &[("method", "3"), ("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert!(app.store.pauses_in_force().await.unwrap().is_empty());
    let page = operator.get("/console/pause").await;
    assert!(page.body.contains(r#"id="done""#), "{}", page.body);
    assert!(
        page.body.contains(r#"id="not-paused""#)
            && page.body.contains("console:operator:olga")
            && !page.body.contains(r#"id="paying-paused""#),
        "{}",
        page.body
    );
    let history = app.store.pause_history(5).await.unwrap();
    assert_eq!(
        history[0].resumed_by.as_deref(),
        Some("console:operator:olga")
    );
    let got = operator
        .post("/console/resume", &[("method", "3"), ("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::CONFLICT, "{}", got.body);
    assert!(
        got.body.contains("paying method 3 is not paused"),
        "{}",
        got.body
    );
}
