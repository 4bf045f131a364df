//! Following a paid order to its final tickets (rules F1, F1b, F4): the airline's PNR, never
//! ATRIP's own `pnrCode`; a ticket for every passenger the order holds; an answer without
//! `ticketStatus` is unclear; and what the worker sends and keeps for an escalation to ATRIP
//! (`requestSource`, the answers' request ids).

use std::time::Duration;

use atrip_simulator::{RequestIdPlace, SimConfig};
use serde_json::{json, Value};
use ticketing_tracker::worker::Worker;

use crate::support::app::TestApp;

/// A simulator that tickets at once, so that what the worker sees is what the scenario says.
async fn app() -> TestApp {
    TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
}

/// Steps `worker` `rounds` times, moving the database's time past every poll between rounds.
async fn rounds(app: &TestApp, worker: &Worker, rounds: usize) {
    for _ in 0..rounds {
        worker.step().await.unwrap();
        app.advance(Duration::from_millis(1500)).await;
    }
}

async fn column<T>(app: &TestApp, order_no: &str, column: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(&format!(
        "SELECT {column} FROM ticketing_jobs WHERE order_no = $1"
    ))
    .bind(order_no)
    .fetch_one(app.pool())
    .await
    .unwrap()
}

async fn details(app: &TestApp, order_no: &str, kind: &str) -> Vec<Value> {
    app.store
        .events(order_no)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn f4_tickets_with_only_atrips_own_pnr_code_are_followed_until_the_airline_pnr_shows() {
    let app = app().await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"airline_pnr_withheld": true}))
        .await;
    app.enqueue(&order_no, 1, None).await;
    rounds(&app, &worker, 6).await;

    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketing", "{:?}", row.last_error);
    assert_eq!(row.pnr, None, "pnrCode is not the airline's PNR");
    let pnr_code = row.atrip_pnr.clone().expect("ATRIP's reference is kept");
    let waiting: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'why' FROM ticketing_events WHERE order_no = $1 AND detail ? 'why'",
    )
    .bind(&order_no)
    .fetch_all(app.pool())
    .await
    .unwrap();
    let said = format!("{:?} {waiting:?}", row.last_error);
    assert!(said.contains("no airline PNR"), "{said}");

    // The airline gives its PNR: the order is final with it, ATRIP's reference kept apart.
    app.scenario(&order_no, json!({})).await;
    app.settle(&worker, 40).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    let ticket = row.ticket_numbers.as_ref().unwrap()[0]["ticket_numbers"][0].clone();
    assert_eq!(row.pnr.as_deref(), ticket.as_str(), "the airline's PNR");
    assert_ne!(row.pnr.as_deref(), Some(pnr_code.as_str()));
    assert_eq!(row.atrip_pnr.as_deref(), Some(pnr_code.as_str()));
}

#[tokio::test]
async fn f1b_an_answer_that_leaves_out_one_of_the_enqueued_passengers_is_not_final() {
    let app = app().await;
    let worker = app.worker();
    let order_no = app
        .create_order(json!({"passengers": [
            {"name": "DOE/JANE", "passengerType": 0},
            {"name": "DOE/JOHN", "passengerType": 0},
        ]}))
        .await;
    app.scenario(&order_no, json!({"omit_passengers": 1})).await;
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, passengers) VALUES ($1, 1, 2)",
    )
    .bind(&order_no)
    .execute(app.pool())
    .await
    .unwrap();
    rounds(&app, &worker, 6).await;

    let row = app.job(&order_no).await;
    assert_eq!(row.state, "ticketing", "{:?}", row.last_error);
    let said = row.last_error.clone().unwrap_or_default();
    assert!(said.contains("lists 1 of its 2 passengers"), "{said}");

    app.scenario(&order_no, json!({})).await;
    app.settle(&worker, 40).await;
    let row = app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(
        row.ticket_numbers
            .as_ref()
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn f1b_without_an_enqueued_count_the_first_answer_that_lists_passengers_sets_it() {
    let app = app().await;
    let worker = app.worker();
    let order_no = app
        .create_order(json!({"passengers": [
            {"name": "DOE/JANE", "passengerType": 0},
            {"name": "DOE/JOHN", "passengerType": 0},
            {"name": "DOE/JIM", "passengerType": 1},
        ]}))
        .await;
    app.enqueue(&order_no, 1, None).await;
    assert_eq!(
        column::<Option<i16>>(&app, &order_no, "passengers").await,
        None
    );
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&order_no, 1).await;
    assert_eq!(
        column::<Option<i16>>(&app, &order_no, "passengers").await,
        Some(3)
    );
}

#[tokio::test]
async fn f4_an_answer_without_ticket_status_is_unclear_and_never_final() {
    let app = app().await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"omit_ticket_status": 2}))
        .await;
    app.enqueue(&order_no, 1, None).await;
    let mut seen = None;
    for _ in 0..6 {
        rounds(&app, &worker, 1).await;
        let row = app.job(&order_no).await;
        if row
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("without a ticketStatus"))
        {
            seen = Some(row);
            break;
        }
    }
    let row = seen.expect("an answer without ticketStatus is recorded as unclear");
    assert_eq!(row.state, "ticketing", "never final");
    assert!(row.error_streak >= 1, "counted toward a person");
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&order_no, 1).await;
}

#[tokio::test]
async fn each_answer_event_keeps_atrips_request_id_wherever_atrip_puts_it() {
    for place in [
        RequestIdPlace::Header,
        RequestIdPlace::AtlasHeader,
        RequestIdPlace::Body,
    ] {
        let app = TestApp::with_sim(SimConfig {
            ticketing_delay: Duration::ZERO,
            request_id: place,
            ..SimConfig::default()
        })
        .await;
        let worker = app.worker();
        let order_no = app.order_and_enqueue(1, None, json!({})).await;
        app.settle(&worker, 40).await;
        app.assert_ticketed_once(&order_no, 1).await;
        for kind in ["pay_answered", "query_answered"] {
            let ids: Vec<Value> = details(&app, &order_no, kind)
                .await
                .iter()
                .map(|d| d["request_id"].clone())
                .collect();
            assert!(!ids.is_empty(), "{place:?}: no {kind}");
            assert!(
                ids.iter()
                    .all(|id| id.as_str().is_some_and(|s| s.starts_with("sim-"))),
                "{place:?} {kind}: {ids:?}"
            );
        }
    }
    // ATRIP gives none: nothing is made up.
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::ZERO,
        request_id: RequestIdPlace::Nowhere,
        ..SimConfig::default()
    })
    .await;
    let worker = app.worker();
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&worker, 40).await;
    for d in details(&app, &order_no, "pay_answered").await {
        assert!(d.get("request_id").is_none(), "{d}");
    }
}

#[tokio::test]
async fn request_source_is_null_unless_configured_and_the_agency_reference_is_sent() {
    let app = app().await;
    let order_no = app.create_order(json!({})).await;
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, client_order_no)
         VALUES ($1, 1, 'AGENCY-7')",
    )
    .bind(&order_no)
    .execute(app.pool())
    .await
    .unwrap();
    app.settle(&app.worker(), 40).await;
    let sent = &app.ledger(&order_no)["last_pay_request"];
    assert_eq!(sent["request_source"], Value::Null, "{sent}");
    assert_eq!(sent["client_order_no"], "AGENCY-7");

    let mut settings = app.settings.clone();
    settings.atrip.request_source = "AGENCY-CHANNEL".into();
    let worker = app.worker_with(&settings, "configured");
    let order_no = app.order_and_enqueue(1, None, json!({})).await;
    app.settle(&worker, 40).await;
    let sent = &app.ledger(&order_no)["last_pay_request"];
    assert_eq!(sent["request_source"], "AGENCY-CHANNEL", "{sent}");
}

/// Three passengers booked, ticketed in `shape`: the order ends ticketed once, every passenger
/// with their tickets, the airline PNRs of every booking in `pnr`.
async fn ticketed_in(shape: &str) -> ticketing_tracker::jobs::JobRow {
    let app = app().await;
    let worker = app.worker();
    let order_no = app
        .create_order(json!({"passengers": [
            {"name": "DOE/JANE", "passengerType": 0},
            {"name": "DOE/JOHN", "passengerType": 0},
            {"name": "DOE/JIM", "passengerType": 1},
        ]}))
        .await;
    app.scenario(&order_no, json!({"ticket_shape": shape}))
        .await;
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, passengers) VALUES ($1, 1, 3)",
    )
    .bind(&order_no)
    .execute(app.pool())
    .await
    .unwrap();
    app.settle(&worker, 40).await;
    app.assert_ticketed_once(&order_no, 1).await
}

fn tickets_of(row: &ticketing_tracker::jobs::JobRow) -> Vec<Vec<String>> {
    row.ticket_numbers
        .as_ref()
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|p| serde_json::from_value(p["ticket_numbers"].clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn f1_one_ticket_number_and_pnr_shared_by_every_passenger_is_final() {
    // Low-cost carriers: ATRIP's webhook sample has the same value in ticketNos and
    // airlinePNRs; every passenger of the booking holds it.
    let row = ticketed_in("shared").await;
    let tickets = tickets_of(&row);
    assert_eq!(tickets.len(), 3);
    assert!(tickets.iter().all(|t| t == &tickets[0]), "{tickets:?}");
    assert_eq!(row.pnr.as_deref(), Some(tickets[0][0].as_str()));
}

#[tokio::test]
async fn f1_a_round_trip_split_in_two_bookings_keeps_both_tickets_and_both_pnrs() {
    let row = ticketed_in("split_round_trip").await;
    let tickets = tickets_of(&row);
    assert_eq!(tickets.len(), 3);
    assert!(tickets.iter().all(|t| t.len() == 2), "{tickets:?}");
    let pnr = row.pnr.clone().unwrap();
    for t in tickets.iter().flatten() {
        assert!(pnr.split(' ').any(|p| p == t), "{t} not in {pnr}");
    }
}

#[tokio::test]
async fn f4_null_ticket_numbers_before_ticketing_are_followed_like_empty_ones() {
    let app = TestApp::with_sim(SimConfig {
        ticketing_delay: Duration::from_secs(3),
        ..SimConfig::default()
    })
    .await;
    let worker = app.worker();
    let order_no = app.create_order(json!({})).await;
    app.scenario(&order_no, json!({"unissued_tickets_null": true}))
        .await;
    app.enqueue(&order_no, 1, None).await;
    app.settle(&worker, 400).await;
    app.assert_ticketed_once(&order_no, 1).await;
    let in_process: Vec<Value> = details(&app, &order_no, "query_answered")
        .await
        .into_iter()
        .filter(|d| d["orderStatus"] == "1")
        .collect();
    assert!(
        !in_process.is_empty(),
        "an answer before ticketing (ticketNos null) was read, not refused"
    );
    assert!(
        details(&app, &order_no, "query_answered")
            .await
            .iter()
            .all(|d| d["answer"] == "order"),
        "no answer was unreadable"
    );
}
