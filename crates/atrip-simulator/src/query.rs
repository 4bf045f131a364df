//! `queryOrderDetails.do`: the order as the clock makes it now, behind the query's faults, and
//! the moment a final state is first seen (which is when its webhook goes out).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use serde_json::{json, Value};

use super::create::find_or_create;
use super::faults::{Before, QueryOverride};
use super::reply::{rate_limited, wants_gzip, Reply};
use super::state::Sim;
use super::webhook::take_webhook;
use ticketing_tracker::atrip::codes::{query_status, OrderStatus};

/// `POST /queryOrderDetails.do`.
pub(super) async fn query_do(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.requests.record("queryOrderDetails.do", &headers, &body);
    let gzip = wants_gzip(&sim, &headers);
    let reply = match super::reply::admit(&sim, &headers, &body) {
        Ok(req) => answer(&sim, &req).await,
        Err(refusal) => refusal,
    };
    sim.answer_latency().await;
    reply.render(&sim, gzip).await
}

fn status_only(status: i64) -> Value {
    json!({"status": status, "msg": query_status::msg(status)})
}

async fn answer(sim: &Arc<Sim>, req: &Value) -> Reply {
    let order_no = req
        .get("orderNo")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    let plan = {
        let mut store = sim.lock();
        let store = &mut *store;
        store.totals.queries += 1;
        if store.storm_answer(Instant::now()) {
            return rate_limited();
        }
        let Some(order) = find_or_create(sim, store, order_no) else {
            return Reply::Json(status_only(query_status::ORDER_DOES_NOT_EXIST));
        };
        order.ledger.queries += 1;
        let mut plan = order.scenario.take_query_plan();
        sim.chaos.roll_query(&mut plan);
        store.totals.faults_injected += plan.faults;
        plan
    };
    sim.pause(plan.delay).await;
    match (plan.before, plan.answer) {
        (Some(Before::Reset), _) => return Reply::Drop,
        (Some(Before::ServerError), _) => return Reply::ServerError,
        (None, Some(QueryOverride::RateLimited)) => return rate_limited(),
        (None, Some(QueryOverride::Status(code))) => return Reply::Json(status_only(code)),
        (None, Some(QueryOverride::Garble)) | (None, None) => {}
    }
    let (body, webhook) = {
        let mut store = sim.lock();
        let Some(order) = store.orders.get_mut(order_no) else {
            return Reply::Json(status_only(query_status::ORDER_DOES_NOT_EXIST));
        };
        let view = order.view(&sim.config, Instant::now(), Utc::now());
        let garbled = plan.answer == Some(QueryOverride::Garble);
        if !garbled && matches!(view.status, OrderStatus::Ticketing | OrderStatus::Ticketed) {
            order.shown_paid = true;
        }
        if !garbled && view.status == OrderStatus::Unpaid {
            order.ledger.unpaid_answers += 1;
        }
        let webhook = take_webhook(sim, order, &view);
        let body = (!garbled).then(|| {
            let mut body = order.query_answer(&view);
            if plan.omit_ticket_status {
                if let Value::Object(m) = &mut body {
                    m.remove("ticketStatus");
                }
            }
            body
        });
        (body, webhook)
    };
    if let Some(webhook) = webhook {
        webhook.spawn(Arc::clone(sim));
    }
    body.map_or(Reply::Garbled, Reply::Json)
}
