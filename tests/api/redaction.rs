//! Card numbers, CVVs and the ATRIP client secret never show: not in a `Debug` or `Display`
//! print, not in an error, not in a log line, not in the events table, and not in the row once
//! the payment is resolved.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use ticketing_tracker::atrip::{Client, PayRequest};
use ticketing_tracker::card::CreditCard;
use ticketing_tracker::config::Settings;
use ticketing_tracker::domain::PaymentMethod;

use crate::support::app::{vcc_card, TestApp};
use crate::support::binary::WorkerProcess;

/// The number, as `vcc_card()` carries it.
const CARD_NUMBER: &str = "4532015112830366";
/// The CVV as a field value would print it (in `Debug` or JSON): quoted.
const CVV_VALUE: &str = "\"123\"";
/// Secrets only this file uses, so that finding one anywhere is a leak.
const CLIENT_SECRET: &str = "atrip-secret-9f8e7d6c5b4a";
const DB_PASSWORD: &str = "pg-password-31415926";
const WEBHOOK_SECRET: &str = "webhook-secret-27182818";

/// Fails when `shown` contains a card number, a CVV value or one of the secrets.
fn assert_clean(what: &str, shown: &str) {
    assert!(!shown.is_empty(), "{what}: nothing was printed");
    for secret in [
        CARD_NUMBER,
        CVV_VALUE,
        CLIENT_SECRET,
        DB_PASSWORD,
        WEBHOOK_SECRET,
        "sim-secret",
    ] {
        if let Some(at) = shown.find(secret) {
            // Quote only around the leak: a log capture can be long.
            let mut from = at.saturating_sub(300);
            while !shown.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (at + secret.len() + 300).min(shown.len());
            while !shown.is_char_boundary(to) {
                to += 1;
            }
            panic!("{what} shows {secret}: …{}…", &shown[from..to]);
        }
    }
}

fn settings_with_secrets(sim_url: &str) -> Settings {
    let mut s = Settings::defaults();
    s.atrip.base_url = sim_url.to_owned();
    s.atrip.client_secret = CLIENT_SECRET.to_owned().into();
    s.database.url = format!("postgres://tracker:{DB_PASSWORD}@db.internal:5432/tracker").into();
    s.http.webhook_secret = WEBHOOK_SECRET.to_owned().into();
    s
}

#[tokio::test]
async fn settings_and_the_client_never_print_their_secrets() {
    let settings = settings_with_secrets("http://127.0.0.1:9");
    settings.validate().unwrap();
    let shown = format!("{settings:?}");
    assert_clean("Settings", &shown);
    assert!(
        shown.contains("client_secret"),
        "the field is listed: {shown}"
    );
    assert_clean("AtripSettings", &format!("{:#?}", settings.atrip));

    let client = Client::new(&settings.atrip).unwrap();
    let shown = format!("{client:?}");
    assert_clean("Client", &shown);
    assert!(shown.contains("127.0.0.1:9"), "{shown}");
}

#[tokio::test]
async fn a_card_prints_only_its_brand_and_last_four_digits() {
    let card = CreditCard::from_json(&vcc_card(), PaymentMethod::Vcc, Utc::now()).unwrap();
    for shown in [format!("{card:?}"), format!("{card:#?}")] {
        assert_clean("CreditCard", &shown);
        assert!(shown.contains("0366") && shown.contains("Visa"), "{shown}");
    }

    let request = PayRequest::new("TESTA20260824171418381", PaymentMethod::Vcc, Some(&card));
    let shown = format!("{request:#?}");
    assert_clean("PayRequest", &shown);
    assert!(shown.contains("TESTA20260824171418381"), "{shown}");
    // Serialising is the one place the card is meant to appear: what pay.do sends.
    let wire = serde_json::to_string(&request).unwrap();
    assert!(wire.contains(CARD_NUMBER) && wire.contains(CVV_VALUE));
}

#[tokio::test]
async fn a_card_error_names_the_field_and_never_its_value() {
    let now = Utc::now();
    let cases: [(&str, Value, &str); 5] = [
        ("cardNumber", json!("4532015112830367"), "cardNumber"),
        ("cardNumber", json!(4_532_015_112_830_366_u64), "cardNumber"),
        ("cardNumber", json!("4532 0151 1283 0366"), "cardNumber"),
        ("cardCVV", json!("123456"), "cardCVV"),
        ("cardCVV", json!(123), "cardCVV"),
    ];
    for (field, value, named) in cases {
        let mut card = vcc_card();
        card[field] = value.clone();
        let error = CreditCard::from_json(&card, PaymentMethod::Vcc, now)
            .expect_err("a bad card is refused");
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(shown.contains(named), "{field} = {value}: {shown}");
            assert_clean(&format!("CardError for {field} = {value}"), &shown);
            assert!(!shown.contains("4532015112830367") && !shown.contains("123456"));
            assert!(!shown.contains("0151"), "{shown}");
        }
    }

    // A card keyed by its number (a map built the wrong way round): the unknown field is named,
    // but its name is a card number and must not be quoted as it is.
    let mut keyed = vcc_card();
    keyed[CARD_NUMBER] = json!({"cardCVV": "123"});
    let error = CreditCard::from_json(&keyed, PaymentMethod::Vcc, now).expect_err("refused");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(shown.contains("unknown field"), "{shown}");
        assert_clean("CardError for a card keyed by its number", &shown);
    }
}

#[tokio::test]
async fn rows_claims_and_atrip_answers_holding_a_card_never_print_it() {
    let app = TestApp::new().await;
    let order_no = app
        .order_and_enqueue(
            3,
            Some(vcc_card()),
            json!({"acceptedCardBrands": ["MasterCard"]}),
        )
        .await;

    let row = app.job(&order_no).await;
    assert!(
        row.card_plain,
        "the row holds its card until the payment resolves"
    );
    assert_clean("JobRow", &format!("{row:#?}"));
    assert_clean("JobRow as JSON", &serde_json::to_string(&row).unwrap());

    let claimed = app
        .store
        .claim(
            "redaction-test",
            10,
            Duration::from_secs(30),
            true,
            true,
            "test",
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].card.is_some());
    assert_clean("ClaimedJob", &format!("{claimed:#?}"));

    // The answers to a refused card payment (the card brand is not accepted: 413).
    let card = CreditCard::from_json(
        &claimed[0].card.as_ref().unwrap().0,
        PaymentMethod::Vcc,
        Utc::now(),
    )
    .unwrap();
    let answer = app
        .atrip
        .pay(&PayRequest::new(&order_no, PaymentMethod::Vcc, Some(&card)))
        .await;
    assert_eq!(answer.status(), Some(413), "{answer:?}");
    assert_clean("PayAnswer", &format!("{answer:?}"));
    let query = app.atrip.query(&order_no).await;
    assert_clean("QueryAnswer", &format!("{query:?}"));
    assert_clean(
        "the event rows",
        &format!("{:?}", app.store.events(&order_no).await.unwrap()),
    );
    // The simulator's ledger keeps only the last four digits.
    assert_clean("the ledger", &app.sim.ledger().to_string());
    assert_eq!(
        app.ledger(&order_no)["last_pay_request"]["card_last4"],
        "0366"
    );
}

#[tokio::test]
async fn a_worker_run_leaves_no_card_data_in_the_events_the_rows_or_the_logs() {
    let app = TestApp::new().await;
    let mut declined = vcc_card();
    declined["cardHolderFirstName"] = json!("Reject");
    let mut expired = vcc_card();
    expired["cardExpireYear"] = json!("2020");
    let ticketed = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    let refused = app.order_and_enqueue(3, Some(declined), json!({})).await;
    let unusable = app.order_and_enqueue(3, Some(expired), json!({})).await;

    // The real worker process, logging everything: a subscriber scoped to this test would
    // miss events whose callsites other tests' threads already cached as uninteresting.
    // With a webhook secret, and webhooks posted with it (header and `?secret=`) and with
    // a wrong one that shares its start: neither is ever logged, stored or answered back.
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("RUST_LOG", "debug,ticketing_tracker=trace".into()),
            ("APP_HTTP__WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ],
    );
    let base = worker.http_base().await;
    let wrong = format!("{WEBHOOK_SECRET}-wrong");
    let body = json!({"cid": "x", "type": "order.ticketed", "status": -1,
                      "data": {"orderNo": ticketed, "orderStatus": 2}});
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for (header, query) in [
        (Some(WEBHOOK_SECRET), None),
        (None, Some(WEBHOOK_SECRET)),
        (Some(wrong.as_str()), None),
        (None, Some(wrong.as_str())),
    ] {
        let mut req = http.post(format!("{base}/webhooks/atrip")).json(&body);
        if let Some(secret) = header {
            req = req.header("x-webhook-secret", secret);
        }
        if let Some(secret) = query {
            req = req.query(&[("secret", secret)]);
        }
        let resp = req.send().await.unwrap();
        answers.push(format!("{} {}", resp.status(), resp.text().await.unwrap()));
    }
    // The right secret is accepted (the order may not be followed yet: 404), the wrong one not.
    let unauthorized: Vec<bool> = answers.iter().map(|a| a.starts_with("401")).collect();
    assert_eq!(unauthorized, [false, false, true, true], "{answers:?}");
    assert_clean("the webhook answers", &answers.join("\n"));
    assert!(worker.wait_until_done(&app, Duration::from_secs(120)).await);
    let logged = worker.stop().await;

    for (order_no, state) in [
        (&ticketed, "ticketed"),
        (&refused, "failed"),
        (&unusable, "failed"),
    ] {
        let row = app.job(order_no).await;
        assert_eq!(row.state, state, "{order_no}: {:?}", row.last_error);
        assert!(!row.card_plain, "{order_no}: the card was not erased");
        assert_eq!(row.card_last4.as_deref(), Some("0366"), "{order_no}");
        assert_eq!(row.card_brand.as_deref(), Some("Visa"), "{order_no}");
    }
    assert_eq!(app.charges(&ticketed), 1);
    assert_eq!(
        app.pay_requests(&unusable),
        0,
        "an expired card is not sent"
    );

    let details: Vec<String> = sqlx::query_scalar("SELECT detail::text FROM ticketing_events")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert!(
        details.len() >= 6,
        "too few events to prove anything: {details:?}"
    );
    assert_clean("ticketing_events.detail", &details.join("\n"));
    let events: Vec<String> = sqlx::query_scalar("SELECT e::text FROM ticketing_events e")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_clean("ticketing_events", &events.join("\n"));
    let rows: Vec<String> = sqlx::query_scalar("SELECT j::text FROM ticketing_jobs j")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_clean("ticketing_jobs", &rows.join("\n"));

    assert!(
        logged.contains("sending pay.do"),
        "the capture saw none of the worker's logs: {logged}"
    );
    assert_clean("the logs", &logged);
}
