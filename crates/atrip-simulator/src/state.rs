//! The simulator's shared state: every order behind one lock (so a charge is decided atomically,
//! never twice), the configuration, and where webhooks go.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::faults::Chaos;
use super::ledger::Totals;
use super::order::Order;
use super::requests::RequestLog;
use super::SimConfig;

pub(super) struct Sim {
    pub config: SimConfig,
    pub store: Mutex<Store>,
    pub chaos: Chaos,
    /// Which garbled body comes next (they rotate).
    pub garble_turn: AtomicUsize,
    /// The next answer's request id (`SimConfig::request_id`).
    pub request_ids: AtomicUsize,
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
    /// The deposit account's balance (`balance.do`); deposit payments draw on it.
    pub balance: f64,
    /// How `balance.do` answers (`/sim/balance`).
    pub balance_mode: BalanceMode,
}

impl Store {
    /// An empty store whose deposit account holds `balance`.
    pub(super) fn with_balance(balance: f64) -> Store {
        Store {
            balance,
            ..Store::default()
        }
    }

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

/// How `balance.do` answers (`/sim/balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum BalanceMode {
    #[default]
    Ok,
    Garbled,
    Error,
    Null,
}

/// ATRIP documents no webhook timeout; a short one keeps a dead receiver from piling up tasks.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where webhooks go.
pub(super) struct Webhooks {
    pub client: reqwest::Client,
    /// With `?secret=` when one is configured.
    pub url: String,
}

impl Webhooks {
    pub(super) fn new(url: String, secret: Option<String>) -> std::io::Result<Webhooks> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        // The secret goes in the URL, as the URL registered with ATRIP would carry it.
        let url = match &secret {
            Some(secret) => {
                let mut parsed = reqwest::Url::parse(&url).map_err(std::io::Error::other)?;
                parsed.query_pairs_mut().append_pair("secret", secret);
                parsed.to_string()
            }
            None => url,
        };
        Ok(Webhooks { client, url })
    }
}
