//! Bad input never stops the worker: a malformed row fails alone, before any `pay.do`, and a
//! garbled ATRIP answer is an unknown outcome that the order query settles.

use std::time::Duration;

use serde_json::{json, Value};
use ticketing_tracker::domain::State;

use crate::support::app::{vcc_card, TestApp};

/// A VCC card with one field changed (`None` removes it).
fn card_with(field: &str, value: Option<Value>) -> Value {
    let mut card = vcc_card();
    match value {
        Some(v) => card[field] = v,
        None => {
            card.as_object_mut().unwrap().remove(field);
        }
    }
    card
}

#[tokio::test]
async fn a_malformed_row_fails_alone_before_any_pay_while_a_good_order_in_the_batch_is_ticketed() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let bad = [
        (
            "no cardHolderLastName",
            card_with("cardHolderLastName", None),
            "cardHolderLastName",
        ),
        (
            "a number failing the Luhn check",
            card_with("cardNumber", Some(json!("4532015112830367"))),
            "cardNumber",
        ),
        (
            "an expired card",
            card_with("cardExpireYear", Some(json!("2020"))),
            "cardExpireYear",
        ),
        (
            "a huge field",
            card_with("cardHolderAddress", Some(json!("A".repeat(2000)))),
            "cardHolderAddress",
        ),
    ];
    let mut rows = Vec::new();
    for (case, card, field) in &bad {
        let order_no = app
            .order_and_enqueue(3, Some(card.clone()), json!({}))
            .await;
        rows.push((*case, order_no, *field));
    }
    // A row whose own payment deadline has passed (the enqueuer said "not after this").
    let expired = app.create_order(json!({})).await;
    app.store
        .enqueue(
            &expired,
            1,
            None,
            Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .await
        .unwrap();
    rows.push(("a pay_deadline in the past", expired, "payment deadline"));
    let good = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;

    let first = worker.step().await.unwrap();
    assert_eq!(first.claimed, rows.len() + 1, "one batch");
    app.settle(&worker, 200).await;

    for (case, order_no, field) in &rows {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "failed", "{case}");
        let error = row.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(order_no.as_str()) && error.contains(field),
            "{case}: last_error must name the order and {field}: {error}"
        );
        assert!(error.contains("pay.do was not sent"), "{case}: {error}");
        assert!(
            !error.contains("453201511283036"),
            "{case}: card number leaked"
        );
        assert!(!row.card_plain, "{case}: card data erased");
        assert_eq!(app.pay_requests(order_no), 0, "{case}");
        assert_eq!(app.event_states(order_no).await, ["paying", "failed"]);
    }
    let luhn = app.job(&rows[1].1).await;
    assert_eq!(
        (luhn.card_brand.as_deref(), luhn.card_last4.as_deref()),
        (Some("Visa"), Some("0367"))
    );
    let row = app.job(&good).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert_eq!((app.pay_requests(&good), app.charges(&good)), (1, 1));
}

#[tokio::test]
async fn a_garbled_pay_answer_is_settled_by_the_order_query_whichever_way_the_payment_went() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.unpaid_settle_s = 5;
    let worker = app.worker_with(&settings, "garbled-worker");
    // Charged, answer garbled.
    let charged = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    app.scenario(&charged, json!({"garbled": 1})).await;
    // Refused without a charge, answer garbled: the order is still unpaid.
    let unpaid = app.order_and_enqueue(1, None, json!({})).await;
    app.scenario(&unpaid, json!({"garbled": 1, "pay_status": 9999}))
        .await;

    let round = worker.step().await.unwrap();
    assert_eq!(round.claimed, 2);
    for order_no in [&charged, &unpaid] {
        let outcome = round
            .outcomes
            .iter()
            .find(|o| &o.order_no == order_no)
            .unwrap();
        assert!(outcome.pay_sent);
        assert_eq!(outcome.to, Some(State::Paying), "{}", outcome.note);
        let row = app.job(order_no).await;
        let error = row.last_error.unwrap_or_default();
        assert!(
            error.contains(order_no.as_str()) && error.contains("unknown"),
            "{error}"
        );
    }
    assert!(
        app.job(&charged).await.card_plain,
        "card kept while the outcome is unknown"
    );
    assert_eq!((app.charges(&charged), app.charges(&unpaid)), (1, 0));

    app.settle(&worker, 300).await;
    let row = app.job(&charged).await;
    assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
    assert!(!row.card_plain);
    assert_eq!(row.pay_attempts, 1);
    let ledger = app.ledger(&charged);
    assert_eq!(
        (ledger["pay_requests"].as_i64(), ledger["charges"].as_i64()),
        (Some(1), Some(1)),
        "{ledger}"
    );
    // Unpaid after a pay.do that may have reached ATRIP: never paid again by the worker; a
    // person checks ATRIP and decides (`retry --repay`).
    let row = app.job(&unpaid).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    assert_eq!(row.pay_attempts, 1, "never paid again on the worker's own");
    let ledger = app.ledger(&unpaid);
    assert_eq!(
        (ledger["pay_requests"].as_i64(), ledger["charges"].as_i64()),
        (Some(1), Some(0)),
        "{ledger}"
    );
}

#[tokio::test]
async fn garbled_query_answers_in_a_row_send_a_paid_order_to_review_while_others_finish() {
    let app = TestApp::new().await;
    let mut settings = app.settings.clone();
    settings.worker.max_error_streak = 3;
    let worker = app.worker_with(&settings, "streak-worker");
    let broken = app.order_and_enqueue(1, None, json!({})).await;
    let fine = app.order_and_enqueue(4, None, json!({})).await;
    let round = worker.step().await.unwrap();
    assert!(round
        .outcomes
        .iter()
        .all(|o| o.to == Some(State::Ticketing)));
    app.scenario(&broken, json!({"garbled": 50})).await;

    app.settle(&worker, 200).await;
    let row = app.job(&broken).await;
    assert_eq!(row.state, "needs_review", "{:?}", row.last_error);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&broken) && error.contains("3 unclear answers"),
        "{error}"
    );
    assert!(row.paid_at.is_some());
    assert_eq!(app.ledger(&broken)["queries"], 3);
    let ledger = app.ledger(&broken);
    assert_eq!(
        (ledger["pay_requests"].as_i64(), ledger["charges"].as_i64()),
        (Some(1), Some(1)),
        "{ledger}"
    );
    assert_eq!(app.job(&fine).await.state, "ticketed");
    // Review means the worker leaves it alone.
    app.advance(Duration::from_secs(3600)).await;
    assert_eq!(worker.step().await.unwrap().claimed, 0);
}

#[tokio::test]
async fn a_vcc_pay_request_carries_the_card_without_three_ds_and_the_agency_reference() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    let mut card = vcc_card();
    card["threeDS"] = json!({"ip": "203.0.113.9"});
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, card, client_order_no)
         VALUES ($1, 3, $2, 'AGENCY-REF-42')",
    )
    .bind(&order_no)
    .bind(&card)
    .execute(app.pool())
    .await
    .unwrap();

    app.settle(&worker, 200).await;
    assert_eq!(app.job(&order_no).await.state, "ticketed");
    let sent = &app.ledger(&order_no)["last_pay_request"];
    assert_eq!(sent["paymentMethod"], 3);
    assert_eq!(sent["has_credit_card"], true);
    assert_eq!(sent["has_three_ds"], false, "threeDS is for MoR only");
    assert_eq!(sent["card_last4"], "0366");
    assert_eq!(sent["client_order_no"], "AGENCY-REF-42");
}

/// Rule P1a for values the claim itself must read: card data holding a number JSON can write
/// but no reader can hold (`1e400`). Before, it failed the whole claim after the claim had
/// committed, leaving every order of the batch `paying` with an intent that never left. Now it
/// fails alone, naming the field, and the good order claimed with it is paid. A time written
/// as `infinity` (which panicked the process at every start) is refused by the CHECK
/// `times_are_finite`, and the migration that added it gave rows already holding one a real
/// time of the same meaning.
#[tokio::test]
async fn a_row_the_claim_cannot_read_fails_alone_and_the_batch_is_paid() {
    let app = TestApp::new().await;
    let good = app.order_and_enqueue(1, None, json!({})).await;
    let unreadable_card = app.create_order(json!({})).await;
    sqlx::query(
        r#"INSERT INTO ticketing_jobs (order_no, payment_method, card)
           VALUES ($1, 3, ('{"cardNumber": "4532015112830366", "paymentLimit": 1e400}')::jsonb)"#,
    )
    .bind(&unreadable_card)
    .execute(app.pool())
    .await
    .unwrap();
    for column in ["created_at", "run_at", "pay_deadline"] {
        let refused = sqlx::query(&format!(
            "INSERT INTO ticketing_jobs (order_no, payment_method, {column}) VALUES ('INFINITE000001', 1, 'infinity')"
        ))
        .execute(app.pool())
        .await
        .unwrap_err();
        assert!(
            refused.to_string().contains("times_are_finite")
                || refused.to_string().contains("pay_deadline_is_plausible"),
            "{column}: {refused}"
        );
    }

    let round = app.worker().step().await.unwrap();
    assert_eq!(round.claimed, 2);
    {
        let (order_no, field) = (&unreadable_card, "card");
        let row = sqlx::query_as::<_, (String, Option<String>, i32, i32)>(
            "SELECT state, last_error, pay_attempts, pay_not_sent FROM ticketing_jobs WHERE order_no = $1",
        )
        .bind(order_no)
        .fetch_one(app.pool())
        .await
        .unwrap();
        assert_eq!(row.0, "failed", "{order_no}: {:?}", row.1);
        let error = row.1.unwrap_or_default();
        assert!(
            error.contains(order_no.as_str()) && error.contains(field),
            "{error}"
        );
        assert_eq!(row.2, row.3, "nothing was sent for {order_no}");
        assert_eq!(app.pay_requests(order_no), 0);
    }
    app.settle(&app.worker(), 200).await;
    app.assert_ticketed_once(&good, 1).await;
}
