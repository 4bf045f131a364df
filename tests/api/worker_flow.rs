//! The worker carries each payment method from pending to ticketed, charging once.

use serde_json::json;

use crate::support::app::{mor_card, vcc_card, TestApp};

#[tokio::test]
async fn each_payment_method_is_paid_once_and_followed_to_ticketed() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let deposit = app.order_and_enqueue(1, None, json!({})).await;
    let vcc = app.order_and_enqueue(3, Some(vcc_card()), json!({})).await;
    let byoa = app.order_and_enqueue(4, None, json!({})).await;
    let mor = app
        .order_and_enqueue(
            5,
            Some(mor_card()),
            json!({"payment": {"cardType": "Visa"}}),
        )
        .await;
    app.settle(&worker, 200).await;
    for (order_no, method, card, three_ds) in [
        (&deposit, 1, false, false),
        (&vcc, 3, true, false),
        (&byoa, 4, false, false),
        (&mor, 5, true, true),
    ] {
        let row = app.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{order_no}: {:?}", row.last_error);
        assert!(row.pnr.is_some() && row.ticket_numbers.is_some());
        assert!(!row.card_plain, "card data erased once paid");
        let ledger = app.ledger(order_no);
        assert_eq!(ledger["charges"], 1, "{ledger}");
        assert_eq!(ledger["pay_requests"], 1, "{ledger}");
        let sent = &ledger["last_pay_request"];
        assert_eq!(sent["paymentMethod"], method);
        assert_eq!(sent["has_credit_card"], card, "{order_no}");
        assert_eq!(sent["has_three_ds"], three_ds, "{order_no}");
        let events: Vec<String> = app
            .store
            .events(order_no)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(events.first().map(String::as_str), Some("paying"));
        assert!(events.contains(&"ticketing".to_owned()));
        assert_eq!(events.last().map(String::as_str), Some("ticketed"));
    }
    let vcc_row = app.job(&vcc).await;
    assert_eq!(vcc_row.card_last4.as_deref(), Some("0366"));
    assert_eq!(vcc_row.card_brand.as_deref(), Some("Visa"));
}
