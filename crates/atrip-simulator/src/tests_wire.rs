//! Tests of the transport around the business logic: credentials and body checks, gzip
//! encoding, and webhooks delivered without any query.

use std::time::Duration;

use serde_json::{json, Value};

use super::tests::{fast_config, Harness};
use super::SimConfig;

#[tokio::test]
async fn credentials_and_bodies_are_checked_before_anything_else() {
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    let wrong = h
        .http
        .post(h.url("pay.do"))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "wrong")
        .json(&json!({"orderNo": order_no, "paymentMethod": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        json!({"status": 900, "msg": "Unauthorized"})
    );
    let not_json = h
        .http
        .post(h.url("pay.do"))
        .header("x-atlas-client-id", "sim-client")
        .header("x-atlas-client-secret", "sim-secret")
        .body("orderNo=1")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.json::<Value>().await.unwrap()["status"], 901);
    let ledger = h.ledger().await;
    assert_eq!(ledger["totals"]["unauthorized"], 1);
    assert_eq!(ledger["orders"][&order_no]["pay_requests"], 0);
    assert_eq!(h.query(&order_no).await["orderStatus"], "0");
    let duplicate = h.call("order.do", json!({"orderNo": order_no})).await;
    assert_eq!(duplicate["status"], 307);
    let unknown = h
        .call("queryOrderDetails.do", json!({"orderNo": "NOPE"}))
        .await;
    assert_eq!(unknown["status"], 800);
}

#[tokio::test]
async fn answers_are_gzipped_only_when_asked() {
    use std::io::Read;
    let h = Harness::new(fast_config()).await;
    let order_no = h.order(json!({})).await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let ask = |gzip: bool| {
        let mut request = raw
            .post(h.url("queryOrderDetails.do"))
            .header("x-atlas-client-id", "sim-client")
            .header("x-atlas-client-secret", "sim-secret")
            .json(&json!({"orderNo": order_no}));
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        request.send()
    };
    let zipped = ask(true).await.unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let bytes = zipped.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["orderNo"],
        order_no.as_str()
    );
    let plain = ask(false).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.json::<Value>().await.unwrap()["orderStatus"], "0");
}

#[tokio::test]
async fn a_webhook_announces_the_ticketed_order_without_any_query() {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<String>, Value)>();
    let receiver = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap,
                  axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >,
                  axum::Json(body): axum::Json<Value>| {
                // ATRIP sends no header of ours: the secret comes in the registered URL.
                assert!(headers.get("x-webhook-secret").is_none());
                let _ = tx.send((q.get("secret").cloned(), body));
                async {}
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });

    let h = Harness::new(SimConfig {
        webhook_url: Some(hook_url),
        webhook_secret: Some("s3cret".into()),
        ..fast_config()
    })
    .await;
    let order_no = h.order(json!({})).await;
    assert_eq!(h.pay(&order_no, 1, Value::Null).await["status"], 0);
    let (secret, body) = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret.as_deref(), Some("s3cret"));
    assert_eq!(body["type"], "order.ticketed");
    assert_eq!(body["cid"], "sim-client");
    assert_eq!(body["data"]["orderNo"], order_no.as_str());
    assert_eq!(body["data"]["orderStatus"], 2, "an integer in webhooks");
    assert_eq!(
        body["data"]["paxTicketInfos"][0]["ticketNos"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    h.wait_for(&order_no, "2").await;
    assert!(rx.try_recv().is_err(), "one webhook per order");
    server.abort();
}

#[tokio::test]
async fn order_do_answers_what_atrips_own_client_reads_and_the_query_prices_the_order() {
    let h = Harness::new(fast_config()).await;
    let passengers = json!([{"name": "DOE/JANE"}, {"name": "DOE/JOHN"}]);
    let created = h
        .call(
            "order.do",
            json!({"sessionId": "s-1", "passengers": passengers, "payment": {"cardType": "Visa"}}),
        )
        .await;
    // ATRIP's client (orders.py, CreatedOrder) refuses the answer without any of these.
    assert_eq!(created["status"], 0);
    let order_no = created["orderNo"].as_str().expect("orderNo").to_owned();
    assert!(created["totalPrice"].as_f64().is_some_and(|p| p >= 0.0));
    assert_eq!(created["totalTransactionFee"], 4.0, "2 per passenger");
    assert_eq!(created["currency"], "USD");
    let deadline = created["tktLimitTime"].as_str().expect("tktLimitTime");
    assert!(chrono::NaiveDateTime::parse_from_str(deadline, "%Y-%m-%d %H:%M:%S").is_ok());
    assert_eq!(created["sessionId"], "s-1");

    let options = created["paymentOptions"]
        .as_array()
        .expect("paymentOptions");
    let methods: Vec<_> = options.iter().map(|o| o["paymentMethod"].clone()).collect();
    assert_eq!(methods, [json!(1), json!(3), json!(4), json!(5)]);
    for option in options {
        let mut keys: Vec<_> = option.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cardType",
                "paymentFee",
                "paymentMethod",
                "serviceFee",
                "ticketFare"
            ],
            "{option}"
        );
        assert_eq!(option["ticketFare"]["amount"], 100.0);
        assert_eq!(option["ticketFare"]["currency"], "USD");
        assert_eq!(option["serviceFee"]["deductFrom"], "DEPOSIT");
    }
    assert_eq!(options[0]["ticketFare"]["deductFrom"], "DEPOSIT");
    assert_eq!(options[1]["ticketFare"]["deductFrom"], "CARD");
    let mor = &options[3];
    assert_eq!(mor["cardType"], "Visa", "filled for MoR only");
    assert!(options[1]["cardType"].is_null());
    assert_eq!(
        mor["paymentFee"],
        json!({"amount": 3.0, "currency": "USD", "deductFrom": "CARD"})
    );

    let unpaid = h.query(&order_no).await;
    assert_eq!(unpaid["paymentOptions"], created["paymentOptions"]);
    assert!(unpaid["payment"].is_null());
    assert_eq!(unpaid["totalTransactionFee"], 4.0);
    assert_eq!(
        h.pay(&order_no, 5, super::tests::visa("JANE")).await["status"],
        0
    );
    let paid = h.query(&order_no).await;
    assert!(paid["paymentOptions"].is_null(), "null once paid");
    assert_eq!(paid["payment"], *mor);
}

#[test]
fn simulate_flags_map_onto_the_config() {
    use crate::args::{sim_config, Cli};
    use clap::Parser;
    let parse = |flags: &[&str]| {
        let argv = ["atrip-simulator"].into_iter().chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|cli| sim_config(cli.args))
    };
    let defaults = parse(&[]).expect("no flags");
    assert!(defaults.duplicate_guard);
    assert!(defaults.decline_cancels_order && defaults.error_echoes_order_no);
    assert_eq!(defaults.payment_processing, Duration::ZERO);
    assert_eq!(
        (defaults.latency_mean, defaults.latency_jitter),
        (Duration::ZERO, Duration::ZERO)
    );

    let config = parse(&[
        "--no-duplicate-guard",
        "--payment-processing-ms",
        "250",
        "--decline-keeps-order",
        "--error-order-no-null",
        "--latency-ms",
        "40",
        "--latency-jitter-ms",
        "10",
    ])
    .expect("every flag");
    assert!(!config.duplicate_guard);
    assert_eq!(config.payment_processing, Duration::from_millis(250));
    assert!(!config.decline_cancels_order && !config.error_echoes_order_no);
    assert_eq!(config.latency_mean, Duration::from_millis(40));
    assert_eq!(config.latency_jitter, Duration::from_millis(10));
    assert!(
        parse(&["--latency-jitter-ms", "10"]).is_err(),
        "jitter needs a mean"
    );
}
