//! What an operator does through the console, over plain HTTP: each action goes through the
//! job store's rules and is an event naming the operator; lists page by keyset; pages escape
//! what they show and never show card data.

use reqwest::StatusCode;
use serde_json::json;

use super::{park, serve, state_of, Client, Parked, OPERATOR_PASSWORD, VIEWER_PASSWORD};
use crate::support::app::{vcc_card, TestApp};

/// The `worker` (who) and `kind` of an order's last event.
async fn last_event(app: &TestApp, order_no: &str) -> (String, String, serde_json::Value) {
    let e = app
        .store
        .events(order_no)
        .await
        .unwrap()
        .pop()
        .expect("an event");
    (e.worker.unwrap_or_default(), e.kind, e.detail)
}

#[tokio::test]
async fn a_retry_moves_the_order_and_its_event_names_the_operator() {
    let app = TestApp::new().await;
    park(&app, "CONSOLER000001", Parked::ReviewUnclear).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let got = operator
        .post("/console/orders/CONSOLER000001/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert_eq!(got.location(), "/console/orders/CONSOLER000001");
    assert_eq!(state_of(&app, "CONSOLER000001").await, "paying");
    let (by, kind, detail) = last_event(&app, "CONSOLER000001").await;
    assert_eq!(
        (by.as_str(), kind.as_str()),
        ("console:operator:olga", "operator_retry")
    );
    assert_eq!(
        detail["may_pay"],
        json!(false),
        "a plain retry never allows a second pay.do"
    );
    let page = operator.get(got.location()).await;
    assert!(page.body.contains(r#"id="done""#) && page.body.contains("console:operator:olga"));
    assert!(page.body.contains("Retried."), "{}", page.body);
    // Said once: the page's next reload no longer claims it.
    let page = operator.get(got.location()).await;
    assert!(!page.body.contains(r#"id="done""#), "{}", page.body);
    // A second retry of a row that is no longer waiting for a person is refused, in words.
    let again = operator
        .post("/console/orders/CONSOLER000001/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("it is paying"), "{}", again.body);
}

#[tokio::test]
async fn a_second_pay_do_needs_the_confirmation_page_and_its_ticked_box() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEP000001", Parked::ReviewUnclear).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let order = operator.get("/console/orders/CONSOLEP000001").await;
    assert!(
        order.body.contains("/console/orders/CONSOLEP000001/repay"),
        "offered"
    );
    let confirm = operator.get("/console/orders/CONSOLEP000001/repay").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm
        .body
        .contains("Send a second pay.do only if you checked in ATRIP that the order is unpaid."));
    let unticked = operator
        .post("/console/orders/CONSOLEP000001/repay", &[("csrf", &csrf)])
        .await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    assert!(unticked.body.contains("Tick the box"), "{}", unticked.body);
    assert_eq!(state_of(&app, "CONSOLEP000001").await, "needs_review");
    let seen = hidden(&confirm.body, "seen");
    assert_eq!(seen, "1", "the page's pay intents go with its form");

    // Rule P7: a confirmation given on an older page allows nothing. Another operator allowed
    // one more pay.do meanwhile, and it was sent and went unanswered (the row is back in review
    // with a second intent): this page's form is refused and changes nothing.
    sqlx::query(
        "UPDATE ticketing_jobs SET pay_attempts = pay_attempts + 1, pay_permits = pay_permits + 1 \
         WHERE order_no = 'CONSOLEP000001'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let stale = operator
        .post(
            "/console/orders/CONSOLEP000001/repay",
            &[
                ("csrf", &csrf),
                ("confirm", "unpaid-in-atrip"),
                ("seen", &seen),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(
        stale.body.contains("it changed since the page"),
        "{}",
        stale.body
    );
    let row = app.job("CONSOLEP000001").await;
    assert_eq!((row.state.as_str(), row.pay_permits), ("needs_review", 2));
    // Without the page's figure, nothing either.
    let bare = operator
        .post(
            "/console/orders/CONSOLEP000001/repay",
            &[("csrf", &csrf), ("confirm", "unpaid-in-atrip")],
        )
        .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.body);
    assert_eq!(state_of(&app, "CONSOLEP000001").await, "needs_review");

    // Confirmed on the page as it is now: one more pay.do is allowed.
    let confirm = operator.get("/console/orders/CONSOLEP000001/repay").await;
    let seen = hidden(&confirm.body, "seen");
    assert_eq!(seen, "2");
    let got = operator
        .post(
            "/console/orders/CONSOLEP000001/repay",
            &[
                ("csrf", &csrf),
                ("confirm", "unpaid-in-atrip"),
                ("seen", &seen),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    let row = app.job("CONSOLEP000001").await;
    assert_eq!((row.state.as_str(), row.pay_permits), ("paying", 3));
    let (by, kind, detail) = last_event(&app, "CONSOLEP000001").await;
    assert_eq!(
        (by.as_str(), kind.as_str()),
        ("console:operator:olga", "operator_repay")
    );
    assert_eq!(detail["may_pay"], json!(true));
}

#[tokio::test]
async fn cancel_is_offered_and_done_only_when_no_pay_do_can_have_reached_atrip() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEX000001", Parked::ReviewNeverSent).await;
    park(&app, "CONSOLEX000002", Parked::ReviewUnclear).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let never_sent = operator.get("/console/orders/CONSOLEX000001").await;
    assert!(
        never_sent.body.contains(r#"id="cancel""#),
        "{}",
        never_sent.body
    );
    let maybe_sent = operator.get("/console/orders/CONSOLEX000002").await;
    assert!(!maybe_sent.body.contains(r#"id="cancel""#));
    // The store refuses it whatever the page offered.
    let refused = operator
        .post("/console/orders/CONSOLEX000002/cancel", &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("may have reached ATRIP"),
        "{}",
        refused.body
    );
    assert_eq!(state_of(&app, "CONSOLEX000002").await, "needs_review");
    let done = operator
        .post("/console/orders/CONSOLEX000001/cancel", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(state_of(&app, "CONSOLEX000001").await, "cancelled");
    let (by, kind, _) = last_event(&app, "CONSOLEX000001").await;
    assert_eq!(
        (by.as_str(), kind.as_str()),
        ("console:operator:olga", "operator_cancel")
    );
}

#[tokio::test]
async fn a_bulk_retry_retries_each_ticked_order_on_its_own() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEB000001", Parked::ReviewUnclear).await;
    park(&app, "CONSOLEB000002", Parked::FailedRefused).await;
    park(&app, "CONSOLEB000003", Parked::Ticketed).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let review = operator.get("/console/review").await;
    assert!(review
        .body
        .contains(r#"name="order_no" value="CONSOLEB000001""#));
    assert!(
        !review.body.contains("CONSOLEB000003"),
        "a ticketed order needs nobody"
    );
    let got = operator
        .post(
            "/console/retry",
            &[
                ("csrf", &csrf),
                ("order_no", "CONSOLEB000001"),
                ("order_no", "CONSOLEB000002"),
                ("order_no", "CONSOLEB000003"),
                ("order_no", "CONSOLEB000001"),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body.contains("2 retried, 1 not retried."),
        "{}",
        got.body
    );
    assert_eq!(state_of(&app, "CONSOLEB000001").await, "paying");
    assert_eq!(state_of(&app, "CONSOLEB000002").await, "paying");
    assert_eq!(state_of(&app, "CONSOLEB000003").await, "ticketed");
    // A refusal after a definitive refusal grants a new permit: ATRIP charged nothing.
    assert_eq!(app.job("CONSOLEB000002").await.pay_permits, 2);
    let empty = operator.post("/console/retry", &[("csrf", &csrf)]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lists_page_by_keyset_through_every_row_once() {
    let app = TestApp::new().await;
    for i in 0..45 {
        let how = if i % 3 == 0 {
            Parked::FailedRefused
        } else {
            Parked::ReviewUnclear
        };
        park(&app, &format!("CONSOLEK{i:06}"), how).await;
    }
    let base = serve(&app, 10).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let row_ids = |body: &str| -> Vec<String> {
        body.match_indices(r#"<tr id="row-"#)
            .map(|(i, _)| body[i + 12..i + 26].to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    for state in ["needs_review", "failed"] {
        let mut path = format!("/console/orders?state={state}");
        for _ in 0..10 {
            let page = operator.get(&path).await;
            assert_eq!(page.status, StatusCode::OK);
            let rows = row_ids(&page.body);
            assert!(rows.len() <= 10);
            seen.extend(rows);
            match page.body.split_once(r#"id="older" href=""#) {
                Some((_, rest)) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
                None => break,
            }
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (45, 45), "{seen:?}");
    // The orders that need a person are one list, grouped, whatever the page size (a few
    // hundred fit), each once.
    let review = operator.get("/console/review").await;
    let mut listed = row_ids(&review.body);
    listed.sort();
    assert_eq!(listed, unique);
    let failed = operator.get("/console/review?state=failed").await;
    assert_eq!(failed.body.matches(r#"<tr id="row-"#).count(), 15);
    assert!(
        operator
            .get("/console/orders?state=failed&before=garbage")
            .await
            .status
            == StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn find_opens_an_order_by_number_client_reference_or_any_pnr() {
    let app = TestApp::new().await;
    park(&app, "CONSOLEF000001", Parked::Ticketed).await;
    sqlx::query("UPDATE ticketing_jobs SET client_order_no = 'agency-ref 7' WHERE order_no = $1")
        .bind("CONSOLEF000001")
        .execute(app.pool())
        .await
        .unwrap();
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    for q in [
        "CONSOLEF000001",
        "consolef000001",
        "agency-ref+7",
        "PNRA01",
        "pnrb01",
        "ATR00001",
    ] {
        let got = operator.get(&format!("/console/find?q={q}")).await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{q}: {}", got.body);
        assert_eq!(got.location(), "/console/orders/CONSOLEF000001", "{q}");
    }
    let none = operator.get("/console/find?q=NOSUCHTHING").await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.contains("No order matches"), "{}", none.body);
}

#[tokio::test]
async fn pages_escape_what_they_show_and_never_show_card_data() {
    let app = TestApp::new().await;
    app.enqueue("CONSOLEE000001", 3, Some(vcc_card())).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET client_order_no = '<script>alert(1)</script>',
                card_brand = 'VISA', card_last4 = '0366' WHERE order_no = $1",
    )
    .bind("CONSOLEE000001")
    .execute(app.pool())
    .await
    .unwrap();
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let pages = [
        operator.get("/console/orders/CONSOLEE000001").await,
        operator.get("/console/orders?state=pending").await,
        operator
            .get("/console/find?q=%3Cscript%3Ealert(1)%3C%2Fscript%3Ex")
            .await,
        operator.get("/console").await,
    ];
    for page in &pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            !page.body.contains("<script>alert"),
            "unescaped: {}",
            page.body
        );
        for secret in ["4532015112830366", "cardCVV", "\"123\"", OPERATOR_PASSWORD] {
            assert!(!page.body.contains(secret), "{secret} shown: {}", page.body);
        }
    }
    assert!(pages[0]
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        pages[0].body.contains("VISA •••• 0366; card data held"),
        "{}",
        pages[0].body
    );
}

/// The message after an action comes from the server, for the session that acted: a crafted
/// `?done=repay` (or any query) on an order nobody touched claims nothing, and one person's
/// action says nothing on another person's page.
#[tokio::test]
async fn a_crafted_done_link_shows_no_message_and_an_action_says_done_only_to_the_session_that_acted(
) {
    let app = TestApp::new().await;
    park(&app, "CONSOLEF000001", Parked::ReviewUnclear).await;
    park(&app, "CONSOLEF000002", Parked::ReviewNeverSent).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let (viewer, _) = Client::logged_in(&base, "vera", VIEWER_PASSWORD).await;
    for query in ["?done=repay", "?done=retry", "?done=cancel"] {
        for who in [&operator, &viewer] {
            let page = who
                .get(&format!("/console/orders/CONSOLEF000001{query}"))
                .await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(
                !page.body.contains(r#"id="done""#) && !page.body.contains("Retried with one more"),
                "{query}: {}",
                page.body
            );
        }
        let page = operator.get(&format!("/console/pause{query}")).await;
        assert!(
            !page.body.contains(r#"id="done""#),
            "{query}: {}",
            page.body
        );
    }
    let got = operator
        .post("/console/orders/CONSOLEF000002/cancel", &[("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    // Another order's page, and another session, show nothing; the acting one, once.
    let other = operator.get("/console/orders/CONSOLEF000001").await;
    assert!(!other.body.contains(r#"id="done""#), "{}", other.body);
    let seen_by_viewer = viewer.get(got.location()).await;
    assert!(!seen_by_viewer.body.contains(r#"id="done""#));
    let page = operator.get(got.location()).await;
    assert!(
        page.body.contains(r#"id="done""#) && page.body.contains("Cancelled."),
        "{}",
        page.body
    );
}

/// The value of the hidden field `name` in a page's form.
fn hidden(body: &str, name: &str) -> String {
    let needle = format!(r#"name="{name}" value=""#);
    let at = body
        .find(&needle)
        .unwrap_or_else(|| panic!("no hidden {name}: {body}"));
    let rest = &body[at + needle.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}
