//! The test-only endpoints (no credentials): `GET /sim/ledger` to read what happened,
//! `POST /sim/orders/{orderNo}/scenario` to script what happens next to one order, and
//! `POST /sim/storm` to rate-limit every order query for a while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::create::find_or_create;
use super::faults::Scenario;
use super::ledger;
use super::reply::{wants_gzip, Reply};
use super::state::Sim;

/// The ledger document: per order, its counters and current `orderStatus`; then the totals.
pub(super) fn ledger_json(sim: &Sim) -> Value {
    let (now, now_utc) = (Instant::now(), Utc::now());
    let store = sim.lock();
    let mut derived = ledger::Derived::default();
    let orders: Map<String, Value> = store
        .orders
        .iter()
        .map(|(no, order)| {
            let status = order.view(&sim.config, now, now_utc).status;
            let charges = order.payments.charged(now);
            derived.add(&order.ledger, charges);
            (no.clone(), order.ledger.to_json(status.wire(), charges))
        })
        .collect();
    ledger::document(orders, &store.totals, &derived)
}

/// One order's entry of [`ledger_json`].
pub(super) fn order_ledger_json(sim: &Sim, order_no: &str) -> Option<Value> {
    let (now, now_utc) = (Instant::now(), Utc::now());
    let store = sim.lock();
    let order = store.orders.get(order_no)?;
    let status = order.view(&sim.config, now, now_utc).status;
    Some(
        order
            .ledger
            .to_json(status.wire(), order.payments.charged(now)),
    )
}

/// `GET /sim/ledger`.
pub(super) async fn get_ledger(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let gzip = wants_gzip(&sim, &headers);
    Reply::Json(ledger_json(&sim)).render(&sim, gzip).await
}

/// `POST /sim/orders/{orderNo}/scenario`: replaces the order's scenario (an empty body clears it).
pub(super) async fn set_scenario(
    State(sim): State<Arc<Sim>>,
    Path(order_no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = wants_gzip(&sim, &headers);
    let failure = |status: StatusCode, error: String| {
        Reply::JsonStatus(status, json!({"ok": false, "error": error}))
    };
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Scenario::default())
    } else {
        serde_json::from_slice::<Scenario>(&body)
    };
    let reply = match parsed {
        Err(error) => failure(StatusCode::BAD_REQUEST, format!("bad scenario: {error}")),
        Ok(scenario) => {
            let mut store = sim.lock();
            match find_or_create(&sim, &mut store, &order_no) {
                Some(order) => {
                    order.scenario = scenario;
                    Reply::Json(json!({"ok": true}))
                }
                None => failure(
                    StatusCode::NOT_FOUND,
                    format!("order {order_no} does not exist"),
                ),
            }
        }
    };
    reply.render(&sim, gzip).await
}

/// `POST /sim/storm` with `{"ms": N}`: every queryOrderDetails.do answers 429 for N ms from now
/// (0 ends a storm). pay.do is never rate limited: ATRIP exempts it.
pub(super) async fn start_storm(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Storm {
        ms: u64,
    }
    let gzip = wants_gzip(&sim, &headers);
    let reply = match serde_json::from_slice::<Storm>(&body) {
        Ok(storm) => {
            sim.storm(Duration::from_millis(storm.ms));
            Reply::Json(json!({"ok": true}))
        }
        Err(error) => Reply::JsonStatus(
            StatusCode::BAD_REQUEST,
            json!({"ok": false, "error": format!("bad storm: {error}")}),
        ),
    };
    reply.render(&sim, gzip).await
}
