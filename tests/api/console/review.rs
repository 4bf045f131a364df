//! "Needs a person" for a busy operator, over plain HTTP against the real server and database:
//! groups by kind of reason with counts, short reasons, filters that name a bad field, sorts,
//! a whole group ticked at once, bulk retry and cancel checked per order, the time left before
//! a payment deadline from the database's clock, and only the actions the rules allow.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use ticketing_tracker::machine::{FailReason, ReviewReason};

use super::{park, serve, state_of, Client, Parked, OPERATOR_PASSWORD};
use crate::support::app::{vcc_card, TestApp};

/// Enqueues an order of `method` (with a card for 3 and 5) and writes `set` on its row, with
/// `reason` as its `last_error` the way the worker prefixes it.
async fn leave(app: &TestApp, order_no: &str, method: i16, set: &str, reason: &str) {
    let card = matches!(method, 3 | 5).then(vcc_card);
    app.enqueue(order_no, method, card).await;
    sqlx::query(&format!(
        "UPDATE ticketing_jobs SET {set}, last_error = 'order ' || order_no || ': ' || $2,
                updated_at = ticketing_now(), finalized_at = ticketing_now()
         WHERE order_no = $1"
    ))
    .bind(order_no)
    .bind(reason)
    .execute(app.pool())
    .await
    .expect("leave the row for a person");
}

/// needs_review after a pay.do that may have reached ATRIP, its deadline `deadline_min` away.
async fn unclear(app: &TestApp, order_no: &str, deadline_min: i64) {
    let now = Utc::now();
    let reason = ReviewReason::UnpaidAfterSend {
        sent_at: now,
        deadline: Some(now + chrono::Duration::minutes(deadline_min)),
        now,
    };
    leave(
        app,
        order_no,
        1,
        &format!(
            "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
             last_pay_outcome = 'outcome_unknown', order_status = '0',
             pay_deadline = ticketing_now() + interval '{deadline_min} minutes'"
        ),
        &reason.to_string(),
    )
    .await;
}

/// needs_review after a 411 on a deposit order.
async fn balance(app: &TestApp, order_no: &str) {
    let now = Utc::now();
    let reason = ReviewReason::PaymentError {
        deadline: None,
        now,
        balance: Some("12.50 USD".into()),
    };
    leave(
        app,
        order_no,
        1,
        "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
         last_pay_outcome = 'payment_error', atrip_status = 411",
        &reason.to_string(),
    )
    .await;
}

/// The order numbers of the list's rows, in the page's order.
fn rows(body: &str) -> Vec<String> {
    body.match_indices(r#"<tr id="row-"#)
        .map(|(i, _)| {
            let rest = &body[i + 12..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// The text of the reason cell of `order_no`'s row.
fn reason_cell(body: &str, order_no: &str) -> String {
    let row = &body[body.find(&format!(r#"<tr id="row-{order_no}""#)).unwrap()..];
    let cell = &row[row.find(r#"<td class="reason">"#).unwrap() + 19..];
    cell[..cell.find("</td>").unwrap()].to_owned()
}

#[tokio::test]
async fn the_review_list_groups_orders_by_kind_of_reason_with_counts_and_short_reasons() {
    let app = TestApp::new().await;
    unclear(&app, "REVIEWG0000001", 90).await;
    unclear(&app, "REVIEWG0000002", 30).await;
    balance(&app, "REVIEWG0000003").await;
    park(&app, "REVIEWG0000004", Parked::FailedRefused).await;
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let page = operator.get("/console/review").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(r#"id="count-pay-unknown">2<"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"id="count-balance-411">1<"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"id="count-payment-refused">1<"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("pay.do outcome unknown") && page.body.contains("balance too low (411)")
    );
    for order_no in rows(&page.body) {
        let cell = reason_cell(&page.body, &order_no);
        assert!(cell.chars().count() <= 90, "{order_no}: {cell}");
    }
    // The long text is the order page's, not the list's.
    assert!(!page.body.contains("a frozen worker may still send it"));
    let order = operator.get("/console/orders/REVIEWG0000001").await;
    assert!(
        order.body.contains("a frozen worker may still send it"),
        "{}",
        order.body
    );
    assert!(order
        .body
        .contains(r#"<dd id="reason-kind">pay.do outcome unknown</dd>"#));
    // Grouped and filtered by reason: only that group's rows.
    let one = operator.get("/console/review?reason=balance-411").await;
    assert_eq!(rows(&one.body), ["REVIEWG0000003"]);
    // The same filters as CSV.
    assert!(one
        .body
        .contains(r#"href="/console/review?reason=balance-411&amp;format=csv""#));
    let csv = operator
        .get("/console/review?reason=balance-411&format=csv")
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(lines[1].starts_with(r#""REVIEWG0000003""#) && lines[1].contains(r#""balance-411""#));
}

#[tokio::test]
async fn the_review_list_filters_and_sorts_and_a_bad_filter_is_a_400_naming_its_field() {
    let app = TestApp::new().await;
    unclear(&app, "REVIEWF0000001", 90).await;
    unclear(&app, "REVIEWF0000002", 30).await;
    unclear(&app, "REVIEWF0000003", -10).await;
    balance(&app, "REVIEWF0000004").await;
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    // Soonest deadline first by default, rows without one last.
    let all = operator.get("/console/review?reason=pay-unknown").await;
    assert_eq!(
        rows(&all.body),
        ["REVIEWF0000003", "REVIEWF0000002", "REVIEWF0000001"]
    );
    let by_no = operator.get("/console/review?sort=order").await;
    assert_eq!(
        rows(&by_no.body),
        [
            "REVIEWF0000001",
            "REVIEWF0000002",
            "REVIEWF0000003",
            "REVIEWF0000004"
        ]
    );
    let soon = operator.get("/console/review?deadline=1h").await;
    assert_eq!(rows(&soon.body), ["REVIEWF0000002"]);
    let passed = operator.get("/console/review?deadline=passed").await;
    assert_eq!(rows(&passed.body), ["REVIEWF0000003"]);
    let none = operator.get("/console/review?deadline=none").await;
    assert_eq!(rows(&none.body), ["REVIEWF0000004"]);
    let vcc = operator.get("/console/review?method=3").await;
    assert!(rows(&vcc.body).is_empty() && vcc.body.contains(r#"id="empty""#));
    let deposit = operator
        .get("/console/review?method=1&deadline=passed")
        .await;
    assert_eq!(rows(&deposit.body), ["REVIEWF0000003"]);
    // Waiting: every row changed just now.
    assert!(rows(&operator.get("/console/review?age=1h").await.body).is_empty());
    app.advance(Duration::from_secs(2 * 3600)).await;
    assert_eq!(
        rows(&operator.get("/console/review?age=1h").await.body).len(),
        4
    );
    // Every field is checked, and its 400 names it.
    for (query, field) in [
        ("deadline=soon", "deadline"),
        ("method=2", "method"),
        ("age=forever", "age"),
        ("reason=nope", "reason"),
        ("sort=price", "sort"),
        ("from=yesterday", "from"),
        ("state=ticketed", "state"),
        ("age=%00", "age"),
        ("select=nope", "select"),
        ("from=2026-12-05&until=2026-12-04", "until"),
    ] {
        let got = operator.get(&format!("/console/review?{query}")).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{query}: {}", got.body);
        assert!(
            got.body.contains(&format!("The {field}")),
            "{query}: {}",
            got.body
        );
    }
    // Every filter field has its label.
    for id in [
        "f-state",
        "f-reason",
        "f-method",
        "f-age",
        "f-deadline",
        "f-sort",
        "f-from",
        "f-until",
    ] {
        assert!(all.body.contains(&format!(r#"<label for="{id}">"#)), "{id}");
    }
}

#[tokio::test]
async fn a_whole_group_is_ticked_at_once_and_bulk_actions_report_each_order_done_or_refused() {
    let app = TestApp::new().await;
    park(&app, "REVIEWB0000001", Parked::ReviewNeverSent).await;
    park(&app, "REVIEWB0000002", Parked::ReviewUnclear).await;
    park(&app, "REVIEWB0000003", Parked::ReviewNeverSent).await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let page = operator.get("/console/review").await;
    assert!(
        page.body.contains(r#"id="select-card-unreadable""#),
        "{}",
        page.body
    );
    // The group says how many of its orders the rules let this page retry or cancel.
    assert!(
        page.body
            .contains("(2: 2 can be retried, 2 cancelled here)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(" checked>"));
    let ticked = operator.get("/console/review?select=card-unreadable").await;
    for no in ["REVIEWB0000001", "REVIEWB0000003"] {
        assert!(
            ticked
                .body
                .contains(&format!(r#"value="{no}" id="pick-{no}" checked>"#)),
            "{no}: {}",
            ticked.body
        );
    }
    assert!(!ticked
        .body
        .contains(r#"value="REVIEWB0000002" id="pick-REVIEWB0000002" checked"#));
    // Without the form's token nothing is done.
    let forged = operator
        .post(
            "/console/bulk",
            &[("action", "cancel"), ("order_no", "REVIEWB0000001")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&app, "REVIEWB0000001").await, "needs_review");
    let bad = operator
        .post(
            "/console/bulk",
            &[
                ("csrf", &csrf),
                ("action", "delete"),
                ("order_no", "REVIEWB0000001"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The action"), "{}", bad.body);
    let got = operator
        .post(
            "/console/bulk",
            &[
                ("csrf", &csrf),
                ("action", "cancel"),
                ("order_no", "REVIEWB0000001"),
                ("order_no", "REVIEWB0000002"),
                ("order_no", "REVIEWB0000003"),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert!(
        got.body.contains("2 cancelled, 1 not cancelled."),
        "{}",
        got.body
    );
    let refused = &got.body[got.body.find(r#"id="refused-list""#).unwrap()..];
    assert!(
        refused.contains("REVIEWB0000002") && refused.contains("may have reached ATRIP"),
        "{refused}"
    );
    assert_eq!(state_of(&app, "REVIEWB0000001").await, "cancelled");
    assert_eq!(state_of(&app, "REVIEWB0000002").await, "needs_review");
    assert_eq!(state_of(&app, "REVIEWB0000003").await, "cancelled");
    let retried = operator
        .post(
            "/console/bulk",
            &[
                ("csrf", &csrf),
                ("action", "retry"),
                ("order_no", "REVIEWB0000002"),
                ("order_no", "REVIEWB0000001"),
            ],
        )
        .await;
    assert!(
        retried.body.contains("1 retried, 1 not retried."),
        "{}",
        retried.body
    );
    assert_eq!(state_of(&app, "REVIEWB0000002").await, "paying");
}

#[tokio::test]
async fn the_order_page_shows_the_payment_deadline_and_the_time_left_by_the_database_clock() {
    let app = TestApp::new().await;
    unclear(&app, "REVIEWD0000001", 29).await;
    // A reason an older release wrote, with its count of minutes.
    sqlx::query(
        "UPDATE ticketing_jobs SET last_error = last_error || ' (29 min left before its payment deadline 2026-12-04 10:00:00 UTC)' WHERE order_no = 'REVIEWD0000001'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let base = serve(&app, 50).await;
    let (operator, _) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let page = operator.get("/console/orders/REVIEWD0000001").await;
    let deadline = |body: &str| {
        let d = &body[body.find(r#"<dd id="pay-deadline">"#).unwrap()..];
        d[..d.find("</dd>").unwrap()].to_owned()
    };
    let first = deadline(&page.body);
    assert!(
        first.contains("in 28 min") || first.contains("in 29 min"),
        "{first}"
    );
    assert!(!page.body.contains("29 min left"), "{}", page.body);
    // No finished time on an order that waits for a person.
    assert!(
        page.body.contains("waiting for a person since"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<dt>finished</dt>"));
    // The database's clock moves; the page follows it, list and order page alike.
    app.advance(Duration::from_secs(20 * 60)).await;
    let later = deadline(&operator.get("/console/orders/REVIEWD0000001").await.body);
    assert!(
        later.contains("in 8 min") || later.contains("in 9 min"),
        "{later}"
    );
    app.advance(Duration::from_secs(20 * 60)).await;
    let past = deadline(&operator.get("/console/orders/REVIEWD0000001").await.body);
    assert!(past.contains("passed 1") && past.contains("ago"), "{past}");
    let list = operator.get("/console/review").await;
    assert!(
        list.body.contains(r#"<span class="left-passed">passed 1"#),
        "{}",
        list.body
    );
}

#[tokio::test]
async fn no_second_pay_do_is_offered_for_a_card_order_whose_card_was_erased_and_the_store_refuses_it(
) {
    let app = TestApp::new().await;
    leave(
        &app,
        "REVIEWC0000001",
        3,
        "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
         last_pay_outcome = 'outcome_unknown', order_status = '0', card = NULL, card_sealed = NULL,
         card_brand = 'VISA', card_last4 = '0366'",
        "a pay.do may have reached ATRIP and ATRIP still shows the order unpaid",
    )
    .await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let page = operator.get("/console/orders/REVIEWC0000001").await;
    assert!(!page.body.contains(r#"id="repay-link""#), "{}", page.body);
    assert!(
        page.body.contains(r#"id="retry""#),
        "a plain retry follows it"
    );
    let why = &page.body[page.body.find(r#"<li id="no-repay">"#).expect("says why")..];
    assert!(why.contains("card data was erased"), "{why}");
    let list = operator.get("/console/review").await;
    assert!(!list.body.contains("/console/orders/REVIEWC0000001/repay"));
    let confirm = operator.get("/console/orders/REVIEWC0000001/repay").await;
    assert!(!confirm.body.contains(r#"id="repay""#), "{}", confirm.body);
    // A forged form, even one that names the pay intents the page showed, is refused by the
    // store.
    let refused = operator
        .post(
            "/console/orders/REVIEWC0000001/repay",
            &[
                ("csrf", &csrf),
                ("confirm", "unpaid-in-atrip"),
                ("seen", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(app.job("REVIEWC0000001").await.pay_permits, 1);
}

#[tokio::test]
async fn an_order_atrip_cancelled_and_refunded_is_offered_no_retry_and_the_store_refuses_one() {
    let app = TestApp::new().await;
    let reason = FailReason::Cancelled {
        error_code: Some("TKT_FAIL".into()),
        error_message: None,
        paid: true,
    };
    leave(
        &app,
        "REVIEWR0000001",
        1,
        "state = 'failed', pay_attempts = 1, pay_started_at = ticketing_now(),
         paid_at = ticketing_now(), paid_evidence = 'pay_accepted', last_pay_outcome = 'accepted',
         order_status = '-3'",
        &reason.to_string(),
    )
    .await;
    let base = serve(&app, 50).await;
    let (operator, csrf) = Client::logged_in(&base, "olga", OPERATOR_PASSWORD).await;
    let page = operator.get("/console/orders/REVIEWR0000001").await;
    assert!(!page.body.contains(r#"id="retry""#), "{}", page.body);
    assert!(
        page.body.contains("ATRIP cancelled this order"),
        "{}",
        page.body
    );
    let list = operator.get("/console/review").await;
    assert!(
        list.body
            .contains(r#"id="count-atrip-cancelled-refund">1<"#),
        "{}",
        list.body
    );
    assert!(!list.body.contains("/console/orders/REVIEWR0000001/retry"));
    let refused = operator
        .post("/console/orders/REVIEWR0000001/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("ATRIP cancelled"), "{}", refused.body);
    assert_eq!(state_of(&app, "REVIEWR0000001").await, "failed");
}

#[tokio::test]
async fn the_command_line_status_says_what_an_operator_may_do_from_the_same_decisions() {
    let app = TestApp::new().await;
    leave(
        &app,
        "REVIEWS0000001",
        3,
        "state = 'needs_review', pay_attempts = 1, pay_started_at = ticketing_now(),
         last_pay_outcome = 'outcome_unknown', order_status = '0', card = NULL, card_sealed = NULL",
        "a pay.do may have reached ATRIP and ATRIP still shows the order unpaid",
    )
    .await;
    let status =
        ticketing_tracker::commands::status::render_status(&app.job("REVIEWS0000001").await, &[]);
    assert!(
        status.contains("retry  yes: back to paying, no pay.do"),
        "{status}"
    );
    assert!(
        status.contains("retry --repay  no: its card data was erased"),
        "{status}"
    );
    assert!(
        status.contains("cancel  no: it is needs_review and 1 pay.do may have reached ATRIP"),
        "{status}"
    );
    assert!(
        status.contains("waiting since") && !status.contains("finished"),
        "{status}"
    );
}
