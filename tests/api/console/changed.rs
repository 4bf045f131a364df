//! The console's list "changed after ticketing" (rule W6).

use axum::http::StatusCode;
use serde_json::json;

use super::{serve, Client, VIEWER_PASSWORD};
use crate::support::app::TestApp;

#[tokio::test]
async fn w6_the_console_lists_orders_changed_after_ticketing_with_what_the_query_made_of_it() {
    let app = TestApp::new().await;
    let order = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&app.worker(), 200).await;
    let base = serve(&app, 50).await;
    let (viewer, _) = Client::logged_in(&base, "victor", VIEWER_PASSWORD).await;
    let empty = viewer.get("/console/changed").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains(r#"id="empty""#), "{}", empty.body);

    let detail = json!({"type": "abnormal.cancelled", "delivery": "d1"});
    let delivery = ticketing_tracker::jobs::Delivery {
        order_no: &order,
        detail: &detail,
        change: Some(ticketing_tracker::jobs::Change::CancelledByAirline),
    };
    app.store.record_webhook(&delivery).await.unwrap();
    let listed = viewer.get("/console/changed").await;
    assert!(listed.body.contains(&order), "{}", listed.body);
    assert!(
        listed.body.contains("cancelled by the airline"),
        "{}",
        listed.body
    );
    assert!(listed.body.contains("pending"), "{}", listed.body);

    app.worker().recheck_after_ticketing().await.unwrap();
    let checked = viewer.get("/console/changed").await;
    // The simulator's order was not cancelled: the query still shows it ticketed.
    assert!(checked.body.contains("orderStatus 2"), "{}", checked.body);
    assert!(viewer
        .get("/console")
        .await
        .body
        .contains(r#"href="/console/changed""#));
}
