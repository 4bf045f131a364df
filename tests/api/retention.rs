//! Retention: finished rows and their events go after the configured age, in small batches;
//! rows still worked on, and rows waiting for a person, stay.

use serde_json::json;

use crate::support::app::TestApp;

#[tokio::test]
async fn old_finished_rows_and_their_events_are_pruned_in_batches_and_nothing_else() {
    let app = TestApp::new().await;
    let worker = app.worker();
    // Three ticketed, one failed (past its payment deadline), one cancelled, one needs_review.
    let mut done = Vec::new();
    for _ in 0..3 {
        done.push(app.order_and_enqueue(1, None, json!({})).await);
    }
    done.push(
        app.order_and_enqueue(1, None, json!({"paymentDeadlineSeconds": -60}))
            .await,
    );
    app.settle(&worker, 200).await;
    let cancelled = app.create_order(json!({})).await;
    app.enqueue(&cancelled, 1, None).await;
    app.store.cancel(&cancelled, "test").await.unwrap();
    done.push(cancelled);
    let review = app.create_order(json!({})).await;
    app.enqueue(&review, 1, None).await;
    sqlx::query(
        "UPDATE ticketing_jobs SET state = 'needs_review', finalized_at = now(), last_error = 'x' WHERE order_no = $1",
    )
    .bind(&review)
    .execute(app.pool())
    .await
    .unwrap();
    let fresh = app.order_and_enqueue(1, None, json!({})).await;
    assert_eq!(
        app.store.prune(30, 2).await.unwrap(),
        0,
        "nothing is old yet"
    );

    // Age the finished rows by 40 days.
    sqlx::query("UPDATE ticketing_jobs SET finalized_at = finalized_at - interval '40 days' WHERE finalized_at IS NOT NULL")
        .execute(app.pool())
        .await
        .unwrap();
    let mut batches = Vec::new();
    loop {
        let n = app.store.prune(30, 2).await.unwrap();
        if n == 0 {
            break;
        }
        batches.push(n);
    }
    assert_eq!(
        batches,
        vec![2, 2, 1],
        "five old finished rows, two at a time"
    );
    for order_no in &done {
        assert!(
            app.store.job(order_no).await.unwrap().is_none(),
            "{order_no} pruned"
        );
        assert!(
            app.store.events(order_no).await.unwrap().is_empty(),
            "{order_no}'s events pruned"
        );
    }
    assert_eq!(
        app.job(&review).await.state,
        "needs_review",
        "a person has not looked yet"
    );
    assert_eq!(
        app.job(&fresh).await.state,
        "pending",
        "unfinished rows stay"
    );
}

/// Rule W6: a ticketed row whose change after ticketing is still `reported` or `unconfirmed`
/// is kept past the retention age, until the change is settled (`confirmed`).
#[tokio::test]
async fn a_ticketed_row_whose_change_after_ticketing_is_not_settled_is_kept() {
    let app = TestApp::new().await;
    let worker = app.worker();
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(app.order_and_enqueue(1, None, json!({})).await);
    }
    app.settle(&worker, 200).await;
    for (order, check) in orders.iter().zip(["reported", "unconfirmed", "confirmed"]) {
        assert_eq!(app.job(order).await.state, "ticketed");
        sqlx::query(
            "UPDATE ticketing_jobs SET after_ticketing = 'voided', after_ticketing_at = ticketing_now(),
                    after_ticketing_check = $2 WHERE order_no = $1",
        )
        .bind(order)
        .bind(check)
        .execute(app.pool())
        .await
        .unwrap();
    }
    app.advance(std::time::Duration::from_secs(40 * 86_400))
        .await;
    while app.store.prune(30, 10).await.unwrap() > 0 {}
    assert!(
        app.job(&orders[0]).await.state == "ticketed",
        "reported: kept"
    );
    assert!(
        app.job(&orders[1]).await.state == "ticketed",
        "unconfirmed: kept"
    );
    assert!(
        app.store.job(&orders[2]).await.unwrap().is_none(),
        "confirmed: pruned"
    );
    // Once settled, it goes too.
    sqlx::query(
        "UPDATE ticketing_jobs SET after_ticketing_check = 'confirmed' WHERE order_no = $1",
    )
    .bind(&orders[0])
    .execute(app.pool())
    .await
    .unwrap();
    while app.store.prune(30, 10).await.unwrap() > 0 {}
    assert!(app.store.job(&orders[0]).await.unwrap().is_none());
    assert!(app.store.job(&orders[1]).await.unwrap().is_some());
}
