//! ATRIP-style webhooks: one `order.ticketed` or `order.cancelled` per order when it first
//! reaches a final state, found either by a query or by a 200 ms sweep, sent best effort.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use super::order::{Order, View};
use super::state::Sim;
use crate::atrip::codes::OrderStatus;

/// How often the sweep looks for orders that became final without being queried, so a worker
/// that waits for webhooks gets them within a fraction of a second.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// ATRIP documents no webhook timeout; a short one keeps a dead receiver from piling up tasks.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where webhooks go.
pub(super) struct Webhooks {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
}

impl Webhooks {
    pub(super) fn new(url: String, secret: Option<String>) -> std::io::Result<Webhooks> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Webhooks {
            client,
            url,
            secret,
        })
    }
}

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
            let mut request = hooks.client.post(&hooks.url).json(&self.payload);
            if let Some(secret) = &hooks.secret {
                request = request.header("x-webhook-secret", secret);
            }
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
