//! The request log: every `pay.do` and `queryOrderDetails.do` as it arrived (when, which order,
//! which worker process sent it), so that a chaos run can prove a worker sent nothing for a row
//! once it had lost that row's lease.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;

use ticketing_tracker::atrip::client::WORKER_HEADER;

/// One request as it arrived, before credentials, faults or business rules: a request that
/// reached the simulator was sent, whatever happened to it afterwards.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoggedRequest {
    /// When the handler received it (the simulator's clock, which is the machine's).
    pub at: DateTime<Utc>,
    /// `pay.do` or `queryOrderDetails.do`.
    pub endpoint: &'static str,
    /// `orderNo` of the body, when the body has one.
    pub order_no: Option<String>,
    /// The `x-ticketing-worker` header: the id of the worker process that sent it.
    pub worker: Option<String>,
}

/// Append-only; read whole by tests. A mutex of its own so that logging never waits on the
/// order store's lock.
#[derive(Debug, Default)]
pub(super) struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    pub(super) fn record(&self, endpoint: &'static str, headers: &HeaderMap, body: &Bytes) {
        // Parsed leniently here (the handler parses it again, strictly): a body that is not
        // JSON is still logged, with no order number.
        let order_no = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("orderNo")?.as_str().map(|s| s.trim().to_owned()));
        let worker = headers
            .get(WORKER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let entry = LoggedRequest {
            at: Utc::now(),
            endpoint,
            order_no,
            worker,
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    pub(super) fn snapshot(&self) -> Vec<LoggedRequest> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
