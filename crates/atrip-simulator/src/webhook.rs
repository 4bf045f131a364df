//! ATRIP-style webhooks: one `order.ticketed` or `order.cancelled` per order when it first
//! reaches a final state, found either by a query or by a 200 ms sweep, sent best effort; and,
//! on a test's request (`POST /sim/orders/{orderNo}/after-ticketing`), the other documented
//! types: a void (`order.void`, processing then voided), an airline's cancellation
//! (`abnormal.cancelled`, `order.cancelled`), a schedule change (`order.schedulechange`,
//! `email.schedulechange`), `email.all` and `airline.status`, each sent any number of times and
//! in either order, as ATRIP's best-effort delivery may. Payload shapes are ATRIP's documented
//! samples (`atlas-doc/atlas-api-docs`, `integration-guides/webhook-overview/*.md`,
//! `readme/webhook-overview/void-notification.md`).
//!
//! ATRIP registers a URL only (`updateWebhookURL.do`) and sends no header of ours, so the
//! shared secret travels as the URL's `?secret=`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use super::order::{Order, View};
use super::payment::Cancellation;
use super::state::Sim;
use ticketing_tracker::atrip::codes::OrderStatus;

/// How often the sweep looks for orders that became final without being queried, so a worker
/// that waits for webhooks gets them within a fraction of a second.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// A webhook to send, taken out of the lock first.
pub(super) struct PendingWebhook {
    order_no: String,
    ticketed: bool,
    payload: Value,
}

/// The order's webhook if it is final and none was sent yet. Marks it sent at once: the sweep
/// and a query can race, and each order gets one webhook (delivery stays best effort).
pub(super) fn take_webhook(sim: &Sim, order: &mut Order, view: &View) -> Option<PendingWebhook> {
    sim.webhooks.as_ref()?;
    if order.webhook_sent || !view.is_final() {
        return None;
    }
    order.webhook_sent = true;
    let ticketed = view.status == OrderStatus::Ticketed;
    // Webhooks carry orderStatus as an integer, unlike the query's string.
    let status: i64 = view.status.wire().parse().unwrap_or_default();
    let data = if ticketed {
        json!({"orderNo": order.order_no, "orderStatus": status, "paxTicketInfos": order.pax_ticket_infos(view)})
    } else {
        let reason = view.cancellation.clone().unwrap_or_default();
        json!({
            "orderNo": order.order_no,
            "orderStatus": status,
            "errorCode": reason.error_code,
            "errorMessage": reason.error_message,
        })
    };
    let kind = if ticketed {
        "order.ticketed"
    } else {
        "order.cancelled"
    };
    Some(PendingWebhook {
        order_no: order.order_no.clone(),
        ticketed,
        payload: json!({"cid": sim.config.client_id, "type": kind, "status": -1, "data": data}),
    })
}

impl PendingWebhook {
    /// Sends it in the background; failures are logged and forgotten, as ATRIP's are.
    pub(super) fn spawn(self, sim: Arc<Sim>) {
        tokio::spawn(async move {
            let Some(hooks) = sim.webhooks.as_ref() else {
                return;
            };
            let request = hooks.client.post(&hooks.url).json(&self.payload);
            let sent = tokio::select! {
                sent = request.send() => sent,
                () = sim.shutdown.cancelled() => return,
            };
            match sent.and_then(reqwest::Response::error_for_status) {
                Ok(_) if self.ticketed => {
                    // A delivered "ticketed" webhook told the client the order is paid.
                    if let Some(order) = sim.lock().orders.get_mut(&self.order_no) {
                        order.shown_paid = true;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(order_no = %self.order_no, %error, "simulated webhook not delivered")
                }
            }
        });
    }
}

/// The sweep: finds orders that became final with nobody asking, until shutdown.
pub(super) async fn sweep(sim: Arc<Sim>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = sim.shutdown.cancelled() => return,
        }
        let due: Vec<PendingWebhook> = {
            let (now, now_utc) = (Instant::now(), Utc::now());
            let mut store = sim.lock();
            store
                .orders
                .values_mut()
                .filter(|order| !order.webhook_sent)
                .filter_map(|order| {
                    let view = order.view(&sim.config, now, now_utc);
                    take_webhook(&sim, order, &view)
                })
                .collect()
        };
        for webhook in due {
            webhook.spawn(Arc::clone(&sim));
        }
    }
}

/// What `/sim/orders/{orderNo}/after-ticketing` sends.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AfterTicketing {
    /// `void`, `airline_cancel`, `flight_cancel` (a schedule change of type 2) or
    /// `schedule_change`; the first two need a ticketed order and change what its query shows
    /// (`SimConfig::changed_order_status`).
    pub change: Option<String>,
    /// More types to send for the order: `order.ticketed`, `email.all`, `airline.status`.
    pub also: Vec<String>,
    /// Each payload is sent this many times (at least once).
    pub copies: u32,
    /// Send the payloads in reverse order (a void's "voided" before its "processing").
    pub reverse: bool,
}

/// The documented payloads of one scripted change, in the order ATRIP would send them.
fn payloads(
    sim: &Sim,
    order: &Order,
    view: &View,
    req: &AfterTicketing,
) -> Result<Vec<Value>, String> {
    let cid = &sim.config.client_id;
    let no = &order.order_no;
    let stamp = Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    let notification = |tag: &str| format!("{stamp}{tag}");
    let mut out = Vec::new();
    match req.change.as_deref() {
        None => {}
        Some("void") => {
            let code = format!(
                "{}-{:04}",
                Utc::now().format("%Y%m"),
                order.ledger.queries % 10_000
            );
            for (status, message) in [
                (0, "Void request submitted; Atlas is processing it."),
                (2, "Void successful and confirmed by the airline."),
            ] {
                out.push(json!({"cid": cid, "type": "order.void", "status": -1,
                    "data": {"orderNo": no, "voidCode": code, "voidStatus": status, "message": message}}));
            }
        }
        Some("airline_cancel") => {
            out.push(json!({"cid": cid, "data": {"orderNo": no, "vendorRefundInformation": "FULLY"},
                "notificationId": notification("DRLNX"), "status": 0, "type": "abnormal.cancelled"}));
            out.push(json!({"cid": cid, "type": "order.cancelled", "status": -1,
                "data": {"orderNo": no, "orderStatus": -3, "errorCode": "699", "errorMessage": "Cancelled by the airline"}}));
        }
        Some(kind @ ("schedule_change" | "flight_cancel")) => {
            let change_type = if kind == "flight_cancel" { 2 } else { 1 };
            out.push(
                json!({"cid": cid, "notificationId": notification("TATVO"), "status": 0,
                "type": "order.schedulechange",
                "data": {"orderNo": no, "scheduleChangeType": change_type,
                         "previousSegs": [], "revisedSegs": [], "originalSegs": []}}),
            );
            out.push(json!({"cid": cid, "type": "email.schedulechange", "notificationId": notification("DNIDD"),
                "status": 0, "data": {"orderNo": no,
                    "emailSubject": "IMPORTANT: Flight delay notice. Confirmation Code KDK7QG",
                    "emailLink": "https://theatlas/#/email-detail/4378270"}}));
        }
        Some(other) => return Err(format!("unknown change {other:?}")),
    }
    for kind in &req.also {
        out.push(match kind.as_str() {
            "order.ticketed" => json!({"cid": cid, "type": "order.ticketed", "status": -1,
                "data": {"orderNo": no, "orderStatus": 2, "paxTicketInfos": order.pax_ticket_infos(view)}}),
            "email.all" => json!({"cid": cid, "notificationId": notification("MJMOR"), "status": -1, "type": "email.all",
                "data": {"orderNo": no, "emailReceivingDate": "2024-01-05 10:54:21",
                    "uniqueCode": "e4afbecfd5727817ff73a71a94a2a64d", "emailCategory": "Payment Success",
                    "from": "donotreply@easyjet.com", "to": "NSDLZCQTGJTEYXOMFOD@gorn.top",
                    "emailSubject": "easyJet booking reference: XXXXX",
                    "emailLink": "http://example.com/email.eml", "createTime": "2024-01-05 10:54:26"}}),
            "airline.status" => json!({"data": {"airline": ["TO", "HV"], "airlineStatus": "Active"},
                "status": -1, "type": "airline.status"}),
            other => return Err(format!("unknown webhook type {other:?}")),
        });
    }
    Ok(out)
}

/// `POST /sim/orders/{orderNo}/after-ticketing`: scripts what happens to the order (a void, an
/// airline's cancellation, a schedule change) and sends its webhooks now, each `copies` times,
/// in order or reversed, one after the other. Answers the HTTP status each delivery got.
pub(super) async fn after_ticketing(
    axum::extract::State(sim): axum::extract::State<Arc<Sim>>,
    axum::extract::Path(order_no): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let fail = |status: StatusCode, error: String| {
        (status, axum::Json(json!({"ok": false, "error": error}))).into_response()
    };
    let req: AfterTicketing = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    let Some(hooks) = sim.webhooks.as_ref() else {
        return fail(StatusCode::CONFLICT, "no webhook_url configured".into());
    };
    let mut sent = {
        let (now, now_utc) = (Instant::now(), Utc::now());
        let mut store = sim.lock();
        let Some(order) = store.orders.get_mut(&order_no) else {
            return fail(
                StatusCode::NOT_FOUND,
                format!("order {order_no} does not exist"),
            );
        };
        let view = order.view(&sim.config, now, now_utc);
        let ends_it = matches!(req.change.as_deref(), Some("void" | "airline_cancel"));
        if ends_it && view.status != OrderStatus::Ticketed {
            return fail(
                StatusCode::CONFLICT,
                format!("order {order_no} is not ticketed"),
            );
        }
        match payloads(&sim, order, &view, &req) {
            Ok(payloads) => {
                if ends_it {
                    let airline = req.change.as_deref() == Some("airline_cancel");
                    order.changed_after_ticketing = Some(Cancellation {
                        error_code: airline.then(|| "699".to_owned()),
                        error_message: Some(
                            if airline {
                                "Cancelled by the airline"
                            } else {
                                "Voided"
                            }
                            .to_owned(),
                        ),
                        airline_message: None,
                    });
                }
                payloads
            }
            Err(e) => return fail(StatusCode::BAD_REQUEST, e),
        }
    };
    if req.reverse {
        sent.reverse();
    }
    let mut statuses = Vec::new();
    for payload in &sent {
        for _ in 0..req.copies.max(1) {
            let answer = hooks.client.post(&hooks.url).json(payload).send().await;
            statuses.push(answer.map(|r| r.status().as_u16()).unwrap_or(0));
        }
    }
    axum::Json(json!({"ok": true, "payloads": sent, "statuses": statuses})).into_response()
}
