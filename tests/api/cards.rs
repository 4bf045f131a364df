//! Card data that never lingers: sealed cards pay like plain ones, a sealed card is bound to
//! its order, and after a run no table, event or log line holds a card number or a CVV.

use std::time::Duration;

use serde_json::{json, Value};
use ticketing_tracker::sealed::{self, CardKey, CardKeys};

use crate::support::app::{mor_card, vcc_card, TestApp};
use crate::support::binary::WorkerProcess;

async fn insert_sealed(app: &TestApp, order_no: &str, method: i16, sealed: &[u8]) {
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, card_sealed) VALUES ($1, $2, $3)",
    )
    .bind(order_no)
    .bind(method)
    .bind(sealed)
    .execute(app.pool())
    .await
    .expect("insert sealed card");
}

#[tokio::test]
async fn a_sealed_card_pays_like_a_plain_one_and_is_erased() {
    let app = TestApp::new().await;
    let key = CardKey::generate();
    let worker = app
        .worker_with(&app.settings, "sealed")
        .with_card_key(Some(CardKeys::single(key.clone())));
    let vcc = app.create_order(json!({})).await;
    let mor = app
        .create_order(json!({"payment": {"cardType": "Visa"}}))
        .await;
    for (order_no, method, card) in [(&vcc, 3, vcc_card()), (&mor, 5, mor_card())] {
        let sealed = sealed::seal(&key.public_base64(), order_no, &card).unwrap();
        insert_sealed(&app, order_no, method, &sealed).await;
    }
    app.settle(&worker, 200).await;
    for (order_no, last4, three_ds) in [(&vcc, "0366", false), (&mor, "0768", true)] {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{:?}", row.last_error);
        assert!(!row.card_sealed && !row.card_plain, "sealed card erased");
        assert_eq!(row.card_last4.as_deref(), Some(last4));
        let ledger = app.ledger(order_no);
        assert_eq!(ledger["charges"], 1);
        assert_eq!(ledger["last_pay_request"]["has_credit_card"], true);
        assert_eq!(ledger["last_pay_request"]["card_last4"], last4);
        assert_eq!(ledger["last_pay_request"]["has_three_ds"], three_ds);
    }
}

/// A key rotation with no downtime: the workers hold the new key and the previous one; a
/// card sealed to either is paid, each once.
#[tokio::test]
async fn during_a_key_rotation_cards_sealed_to_the_previous_key_are_paid() {
    let app = TestApp::new().await;
    let (previous, current) = (CardKey::generate(), CardKey::generate());
    let worker = app
        .worker_with(&app.settings, "rotating")
        .with_card_key(Some(CardKeys::new(current.clone(), Some(previous.clone()))));
    let before = app.create_order(json!({})).await;
    let after = app.create_order(json!({})).await;
    for (order_no, key) in [(&before, &previous), (&after, &current)] {
        let sealed = sealed::seal(&key.public_base64(), order_no, &vcc_card()).unwrap();
        insert_sealed(&app, order_no, 3, &sealed).await;
    }
    app.settle(&worker, 200).await;
    for order_no in [&before, &after] {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{order_no}: {:?}", row.last_error);
        assert!(!row.card_sealed, "{order_no}: sealed card erased");
        assert_eq!(app.ledger(order_no)["charges"], 1, "{order_no}");
    }
}

#[tokio::test]
async fn a_sealed_card_copied_to_another_order_is_refused_without_paying() {
    let app = TestApp::new().await;
    let key = CardKey::generate();
    let worker = app
        .worker_with(&app.settings, "sealed")
        .with_card_key(Some(CardKeys::single(key.clone())));
    let sealed_for = app.create_order(json!({})).await;
    let copied_to = app.create_order(json!({})).await;
    let sealed = sealed::seal(&key.public_base64(), &sealed_for, &vcc_card()).unwrap();
    insert_sealed(&app, &sealed_for, 3, &sealed).await;
    insert_sealed(&app, &copied_to, 3, &sealed).await;
    app.settle(&worker, 200).await;
    assert_eq!(app.job(&sealed_for).await.state, "ticketed");
    let row = app.job(&copied_to).await;
    assert_eq!(row.state, "failed");
    let error = row.last_error.unwrap();
    assert!(
        error.contains(&copied_to) && error.contains(&format!("sealed for order {sealed_for}")),
        "{error}"
    );
    assert!(!row.card_sealed, "the copied ciphertext is erased");
    assert_eq!(
        app.pay_requests(&copied_to),
        0,
        "nothing sent for the copied card"
    );
}

#[tokio::test]
async fn a_worker_without_the_key_sends_nothing_and_asks_a_person() {
    let app = TestApp::new().await;
    let key = CardKey::generate();
    let order_no = app.create_order(json!({})).await;
    let sealed = sealed::seal(&key.public_base64(), &order_no, &vcc_card()).unwrap();
    insert_sealed(&app, &order_no, 3, &sealed).await;
    app.settle(&app.worker(), 50).await;
    let row = app.job(&order_no).await;
    assert_eq!(row.state, "needs_review");
    assert!(row.last_error.unwrap().contains("no card key"));
    assert!(
        row.card_sealed,
        "kept for the retry once the key is configured"
    );
    assert_eq!(app.pay_requests(&order_no), 0);
}

/// Card numbers: standalone runs of 13 to 19 digits that pass the Luhn check (order numbers
/// are letters and digits together, so they are not standalone).
fn luhn_numbers(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &text[start..i];
            let standalone = i == bytes.len() || !bytes[i].is_ascii_alphanumeric();
            if standalone
                && (13..=19).contains(&run.len())
                && ticketing_tracker::card::luhn_valid(run)
            {
                found.push(run.to_owned());
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_scanner_finds_card_numbers_and_skips_order_numbers() {
    assert_eq!(
        luhn_numbers("x 4532015112830366 y"),
        vec!["4532015112830366"]
    );
    assert_eq!(
        luhn_numbers("\"cardNumber\":\"5555555555554444\""),
        vec!["5555555555554444"]
    );
    assert!(luhn_numbers("TESTA20261125131900123 4532015112830367").is_empty());
}

/// A CVV no timestamp or id will contain by chance next to these markers.
const CVV: &str = "8472";

#[tokio::test]
async fn after_a_run_no_table_event_or_log_line_holds_a_card_number_or_cvv() {
    let app = TestApp::new().await;
    let key = CardKey::generate();
    let with_cvv = |mut card: Value| {
        card["cardCVV"] = json!(CVV);
        card
    };
    let mut orders = Vec::new();
    // Plain and sealed cards, paid, refused by ATRIP (413), and refused by the worker.
    for (method, card, extra, sealed) in [
        (3, with_cvv(vcc_card()), json!({}), false),
        (
            5,
            with_cvv(mor_card()),
            json!({"payment": {"cardType": "Visa"}}),
            false,
        ),
        (3, with_cvv(vcc_card()), json!({}), true),
        (
            3,
            with_cvv(vcc_card()),
            json!({"acceptedCardBrands": ["MasterCard"]}),
            false,
        ),
        (
            3,
            {
                let mut c = with_cvv(vcc_card());
                c["cardExpireMonth"] = json!("13");
                c
            },
            json!({}),
            false,
        ),
    ] {
        let order_no = app.create_order(extra).await;
        if sealed {
            let s = sealed::seal(&key.public_base64(), &order_no, &card).unwrap();
            insert_sealed(&app, &order_no, method, &s).await;
        } else {
            app.enqueue(&order_no, method, Some(card)).await;
        }
        orders.push(order_no);
    }
    // The real binary, logging everything it can (debug, including sqlx and HTTP crates).
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("APP_CARD__SECRET_KEY", key.secret_base64()),
            ("RUST_LOG", "debug".into()),
        ],
    );
    let finished = worker.wait_until_done(&app, Duration::from_secs(120)).await;
    let stderr = worker.stop().await;
    if !finished {
        let events: Vec<String> = sqlx::query_scalar(
            "SELECT concat_ws(' ', at::text, order_no, kind, state, detail::text) FROM ticketing_events ORDER BY id DESC LIMIT 30",
        )
        .fetch_all(app.pool())
        .await
        .unwrap();
        eprintln!("last events:\n{}", events.join("\n"));
        for o in &orders {
            eprintln!("ledger {o}: {}", app.ledger(o));
            eprintln!("query {o}: {:?}", app.atrip.query(o).await);
        }
    }
    assert!(
        finished,
        "orders not finished within 120 s; the worker said:\n{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );
    let logs = stderr;
    assert!(logs.contains("sending pay.do"), "debug logs were captured");

    let mut tables = String::new();
    for table in ["ticketing_jobs", "ticketing_events"] {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                .fetch_all(app.pool())
                .await
                .unwrap();
        tables.push_str(&rows.join("\n"));
    }
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM ticketing_jobs ORDER BY id")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(
        states,
        ["ticketed", "ticketed", "ticketed", "failed", "failed"]
    );
    for (what, text) in [("tables", &tables), ("logs", &logs)] {
        assert_eq!(
            luhn_numbers(text),
            Vec::<String>::new(),
            "card numbers in the {what}"
        );
        assert!(
            !text.contains(&format!("\"{CVV}\"")) && !text.contains("cardCVV"),
            "a CVV in the {what}"
        );
        assert!(
            !text.contains("sim-secret"),
            "the client secret in the {what}"
        );
        assert!(
            !text.contains(&key.secret_base64()),
            "the card key in the {what}"
        );
    }
    assert!(tables.contains("0366"), "last four digits are kept");
}
