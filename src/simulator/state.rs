//! The simulator's shared state: every order behind one lock (so a charge is decided atomically,
//! never twice), the configuration, and the checks every ATRIP endpoint starts with.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::faults::Chaos;
use super::ledger::Totals;
use super::order::Order;
use super::reply::Reply;
use super::requests::RequestLog;
use super::webhook::Webhooks;
use super::SimConfig;
use crate::atrip::codes::{pay_msg, UNAUTHORIZED};

/// `901`, "illegal request data": the body is not a JSON object. The message comes from the
/// shared table; only the number needs a name here.
const ILLEGAL_REQUEST_DATA: i64 = 901;

pub(super) struct Sim {
    pub config: SimConfig,
    pub store: Mutex<Store>,
    pub chaos: Chaos,
    /// Which garbled body comes next (they rotate).
    pub garble_turn: AtomicUsize,
    /// Every pay.do and query as it arrived, for tests that check who sent what when.
    pub requests: RequestLog,
    /// Cancelled by `SimHandle::shutdown`: ends the server, the webhook task and held requests.
    pub shutdown: CancellationToken,
    pub webhooks: Option<Webhooks>,
}

#[derive(Default)]
pub(super) struct Store {
    /// Sorted so the ledger lists orders in a stable order.
    pub orders: BTreeMap<String, Order>,
    pub totals: Totals,
    /// The timestamp of the last generated order number, in ms, to keep numbers unique.
    last_order_ms: i64,
    /// Ticket numbers count up from a random start: unique within a run, unlike random draws.
    next_ticket: Option<u32>,
    /// Until when every query answers 429 (`/sim/storm`).
    pub storm_until: Option<Instant>,
}

impl Store {
    /// `TESTA` + `yyyyMMddHHmmssSSS` (SGT), the sandbox's format. Two orders in the same
    /// millisecond get consecutive milliseconds, so the number is unique and still a valid time.
    pub(super) fn new_order_no(&mut self, now: DateTime<Utc>) -> String {
        loop {
            let ms = now.timestamp_millis().max(self.last_order_ms + 1);
            self.last_order_ms = ms;
            let at = Utc.timestamp_millis_opt(ms).single().unwrap_or(now);
            let sgt_time =
                at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset"));
            let number = format!("TESTA{}", sgt_time.format("%Y%m%d%H%M%S%3f"));
            // A forced `orderNo` may already have taken this one.
            if !self.orders.contains_key(&number) {
                return number;
            }
        }
    }

    /// `S` + 5 digits, the sandbox's ticket numbers (which double as airline PNRs on LCCs).
    pub(super) fn next_ticket_no(&mut self) -> String {
        let next = self
            .next_ticket
            .unwrap_or_else(|| rand::thread_rng().gen_range(10_000..60_000));
        self.next_ticket = Some(if next >= 99_999 { 10_000 } else { next + 1 });
        format!("S{next:05}")
    }
}

/// Six uppercase alphanumerics, like ATRIP's `pnrCode`.
pub(super) fn new_pnr_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl Sim {
    /// The store. A panic while holding it cannot leave a half-made charge (every change is a
    /// plain field write), so a poisoned lock is safe to keep using.
    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The checks every ATRIP endpoint makes before anything else: credentials (900, changing
    /// nothing but the `unauthorized` counter) and a JSON object body (901).
    pub(super) fn admit(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, Reply> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let id_ok = header("x-atlas-client-id") == Some(self.config.client_id.as_str());
        let secret_ok = header("x-atlas-client-secret") == Some(self.config.client_secret.as_str());
        if !(id_ok && secret_ok) {
            self.lock().totals.unauthorized += 1;
            return Err(Reply::Json(
                json!({"status": UNAUTHORIZED, "msg": pay_msg(UNAUTHORIZED)}),
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(Reply::Json(json!({
                "status": ILLEGAL_REQUEST_DATA,
                "msg": pay_msg(ILLEGAL_REQUEST_DATA),
            }))),
        }
    }

    /// Waits `delay`, cut short by shutdown.
    pub(super) async fn pause(&self, delay: Duration) {
        if !delay.is_zero() {
            self.pause_until(Instant::now() + delay).await;
        }
    }

    /// Waits until `at`; `false` when shutdown cut the wait short. Holds no lock: thousands of
    /// requests may be waiting at once.
    pub(super) async fn pause_until(&self, at: Instant) -> bool {
        if at <= Instant::now() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}
