//! An in-process ATRIP simulator speaking `order.do`, `pay.do`, `queryOrderDetails.do` and
//! `orderList.do` (the reconciliation's) as
//! `docs/atrip.md` describes them, with a ledger that counts every charge so tests can
//! prove the worker pays each order exactly once, whatever faults it meets.
//!
//! Why a simulator: the real sandbox is not reachable from this project's machines, and even
//! when it is, it cannot drop a connection *after* charging, which is the case the worker
//! exists for. Where ATRIP's documentation leaves behaviour open (402 or 404 on re-pay, 604
//! synchronous or later and whether it cancels the order, what an expired order shows, whether
//! a refusal echoes `orderNo`, how strong the duplicate guard is), [`SimConfig`] has a knob so
//! the worker is tested against every reading.
//!
//! Time works lazily: an order's progress (payment processing → charged → ticketed or
//! cancelled) is computed from the clock whenever it is read, never by timers, so a slow test
//! machine cannot reorder events. pay.do decides under the store's lock whether to take a
//! payment and fixes the instant it settles; only the HTTP answer waits for that instant. Only
//! webhooks need a background task, a 200 ms sweep.
//!
//! Files: `state` (the one lock around all orders), `order` (an order and its view at an
//! instant), `payment` (the payments taken for an order, processing or charged), `create`
//! (`order.do` and the order extension fields), `pricing` (`paymentOptions` and fees),
//! `pay_rules` (what `pay.do` answers, the duplicate guard), `pay` (taking a payment and its
//! faults), `query`, `faults` (scenarios and chaos mode), `list` (`orderList.do`, seeded orders), `pacing` (answer latency, query
//! rate-limit storms), `reply` (HTTP rendering, gzip, dropped connections), `card`, `ledger`
//! (counters, charges and double charges), `requests` (who sent what, when), `control`
//! (`/sim/ledger`, `/sim/orders/{orderNo}/scenario`, `/sim/storm`), `webhook`. Tests:
//! `tests` (business rules and knobs), `tests_payments` (processing, the duplicate guard,
//! declines), `tests_faults`, `tests_wire` (transport, `order.do`'s shape, the CLI flags),
//! `tests_load` (latency, storms).

pub mod args;
mod balance;
mod card;
mod control;
mod create;
mod faults;
mod ledger;
mod list;
mod order;
mod pacing;
mod pay;
mod pay_rules;
mod payment;
mod pricing;
mod query;
mod reply;
mod requests;
mod state;
mod webhook;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_load;
#[cfg(test)]
mod tests_payments;
#[cfg(test)]
mod tests_wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use faults::Chaos;
pub use list::{SeedOrder, Seeded};
pub use requests::LoggedRequest;
use requests::RequestLog;
use state::Webhooks;
use state::{Sim, Store};

/// How the simulator behaves. The defaults are the sandbox as observed; each knob selects one
/// reading of something the documentation leaves open.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Expected `x-atlas-client-id`.
    pub client_id: String,
    /// Expected `x-atlas-client-secret`.
    pub client_secret: String,
    /// An unknown `orderNo` on pay.do, queryOrderDetails.do or a scenario is created as an
    /// unpaid order with the defaults, instead of answering 400/800/404.
    pub auto_create: bool,
    /// From charge (or the end of a payment-in-progress window) to the final state.
    /// Ticketing follows the first payment to settle; any other is only a charge.
    pub ticketing_delay: Duration,
    /// Tickets appear one passenger at a time, spread evenly over the delay, so the worker
    /// meets an order that is "1" with some tickets.
    pub one_passenger_at_a_time: bool,
    /// pay.do's answer for an already-paid order: 404 or 402 (sources disagree).
    pub repay_status: i64,
    /// ATRIP's duplicate guard (documented: 406 "a payment operation is already in progress").
    /// On: a pay.do while the order's payment is processing (or in its in-progress window)
    /// answers 406 and charges nothing; after it, 404/402 (`repay_status`). Off: an ATRIP
    /// without the guard. Every pay.do arriving before any payment of the order has settled is
    /// taken and charged when it settles, so two overlapping pay.do charge twice; once one has
    /// settled the order is paid and later ones answer 404/402 (never 406) as with the guard.
    pub duplicate_guard: bool,
    /// From pay.do's decision to the charge: the request is held this long and then answered;
    /// meanwhile the query shows "0" (with `paymentAttempted` for VCC). Zero answers at once.
    pub payment_processing: Duration,
    /// true: "Reject"/"Three DS" card holders make pay.do answer 604/616 with no charge.
    /// false: pay.do charges and answers 0, and the order ends "-3" with errorCode 604/616.
    pub card_decline_sync: bool,
    /// With `card_decline_sync`, a 604/616 answer also cancels the order ("-3" with that
    /// `errorCode`, `errorMessage` and `airlineMessage`), so a worker that reads 604/616 as
    /// "outcome unknown" settles it by query. false: the order stays "0".
    pub decline_cancels_order: bool,
    /// pay.do refusals carry the requested `orderNo` (true) or `null` as in ATRIP's apifox
    /// example (false); the sources disagree.
    pub error_echoes_order_no: bool,
    /// `orderStatus` of an unpaid order past its deadline: "0" or "-3".
    pub expired_order_status: String,
    /// During a payment-in-progress window the query shows "0" (true) or "1" (false).
    pub unpaid_while_in_progress: bool,
    /// Gzip answers for requests sending `Accept-Encoding: gzip`.
    pub gzip: bool,
    /// Where to POST `order.ticketed` / `order.cancelled` webhooks, if anywhere.
    pub webhook_url: Option<String>,
    /// Sent with each webhook as the URL's `?secret=` (ATRIP registers a URL and sends no
    /// header of ours).
    pub webhook_secret: Option<String>,
    /// The deposit account's balance at start (`balance.do`); every deposit payment draws its
    /// order's `totalPrice` from it, and one dearer than what is left answers 411.
    pub deposit_balance: f64,
    /// `balance.do`'s `accountBalance.amount` as a string (ATRIP's schema table) rather than a
    /// number (ATRIP's sample answer).
    pub balance_amount_as_string: bool,
    /// What the order query shows of a ticketed order voided or cancelled by the airline
    /// (`/sim/orders/{orderNo}/after-ticketing`): `"-3"` (cancelled) or `"2"` (unchanged:
    /// ATRIP documents no query field for a void). Undocumented, so a knob.
    pub changed_order_status: String,
    /// Chaos mode: the probability that a pay.do or query gets a random fault.
    pub fault_rate: f64,
    /// Seed for chaos mode, to replay a run.
    pub fault_seed: Option<u64>,
    /// Every ATRIP answer (order.do, pay.do, queryOrderDetails.do; not `/sim/…`) is delayed by
    /// this mean ± `latency_jitter` (uniform, clamped at 0), for benchmarks against a
    /// realistic round trip. Zero: answers at once.
    pub latency_mean: Duration,
    /// Half the width of the latency's uniform spread.
    pub latency_jitter: Duration,
    /// `orderList.do`: the number of the first page (ATRIP documents 1; 0 for the other
    /// reading).
    pub list_first_page: i64,
    /// `orderList.do`: the name the total number of orders comes under (documented:
    /// `totalRecords`); empty sends no total.
    pub list_total_field: String,
    /// `orderList.do`: `page`, `pageSize` and the total as strings (the schema's types)
    /// instead of integers (its example).
    pub list_counts_as_strings: bool,
    /// `orderList.do`: the largest page served; a larger `pageSize` is cut to it (and the
    /// answer's `pageSize` says so).
    pub list_max_page_size: u64,
    /// Where each JSON answer carries its request id. ATRIP's documents do not say; its own
    /// client reads the `X-Request-ID` header, then `X-Atlas-Request-ID`, then the body's
    /// `requestId` or `uuid`.
    pub request_id: RequestIdPlace,
}

/// Where an answer's request id goes ([`SimConfig::request_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestIdPlace {
    /// The `X-Request-ID` header.
    Header,
    /// The `X-Atlas-Request-ID` header.
    AtlasHeader,
    /// The body's `uuid` field.
    Body,
    /// Nowhere.
    Nowhere,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            auto_create: false,
            ticketing_delay: Duration::from_secs(1),
            one_passenger_at_a_time: false,
            repay_status: 404,
            duplicate_guard: true,
            payment_processing: Duration::ZERO,
            card_decline_sync: true,
            decline_cancels_order: true,
            error_echoes_order_no: true,
            expired_order_status: "0".into(),
            unpaid_while_in_progress: true,
            gzip: true,
            webhook_url: None,
            webhook_secret: None,
            deposit_balance: balance::DOCUMENTED_BALANCE,
            balance_amount_as_string: false,
            changed_order_status: "-3".into(),
            fault_rate: 0.0,
            fault_seed: None,
            latency_mean: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            list_first_page: 1,
            list_total_field: "totalRecords".into(),
            list_counts_as_strings: false,
            list_max_page_size: 100,
            request_id: RequestIdPlace::Header,
        }
    }
}

/// The routes: the three ATRIP endpoints and the test-only `/sim/…` ones.
fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/order.do", post(create::order_do))
        .route("/pay.do", post(pay::pay_do))
        .route("/queryOrderDetails.do", post(query::query_do))
        .route("/orderList.do", post(list::list_do))
        .route("/balance.do", post(balance::balance_do))
        .route("/sim/balance", post(balance::set_balance))
        .route(
            "/sim/orders/{order_no}/after-ticketing",
            post(webhook::after_ticketing),
        )
        .route("/sim/ledger", get(control::get_ledger))
        .route(
            "/sim/orders/{order_no}/scenario",
            post(control::set_scenario),
        )
        .route("/sim/storm", post(control::start_storm))
        .with_state(sim)
}

/// Binds `addr` (port 0 picks a free port), starts the server on the current tokio runtime and
/// returns at once. The server runs until [`SimHandle::shutdown`] or the handle is dropped.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let webhooks = match &config.webhook_url {
        Some(url) => Some(Webhooks::new(url.clone(), config.webhook_secret.clone())?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let balance = config.deposit_balance;
    let sim = Arc::new(Sim {
        chaos: Chaos::new(config.fault_rate, config.fault_seed),
        config,
        store: Mutex::new(Store::with_balance(balance)),
        garble_turn: AtomicUsize::new(0),
        request_ids: AtomicUsize::new(1),
        requests: RequestLog::default(),
        shutdown: shutdown.clone(),
        webhooks,
    });
    if sim.webhooks.is_some() {
        tokio::spawn(webhook::sweep(Arc::clone(&sim)));
    }
    let serve = axum::serve(listener, router(Arc::clone(&sim)))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move {
        if let Err(error) = serve.await {
            tracing::warn!(%error, "ATRIP simulator stopped with an error");
        }
    });
    tracing::info!(addr = %local, "ATRIP simulator listening");
    Ok(SimHandle {
        addr: local,
        shutdown,
        server: Some(server),
        sim,
    })
}

/// A running simulator. Dropping it stops the server, so each test's simulator ends with it.
pub struct SimHandle {
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    sim: Arc<Sim>,
}

impl SimHandle {
    /// The bound address (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`; a wildcard bind is reached through 127.0.0.1.
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Asks the server to stop: no new connections, held requests are dropped, idle
    /// connections closed. Returns at once; [`SimHandle::stopped`] waits for the end.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that stops the server when cancelled: lets a signal handler stop a simulator
    /// whose handle was moved into [`SimHandle::stopped`].
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has ended (after `shutdown`, or a fatal accept error).
    pub async fn stopped(mut self) {
        if let Some(server) = self.server.take() {
            // A panic in the server task is already reported by tokio; nothing to add here.
            let _ = server.await;
        }
    }

    /// One order's ledger entry (cheap: no other order is rendered), for in-process tests
    /// and the benchmark, which asks often.
    pub fn order_ledger(&self, order_no: &str) -> Option<serde_json::Value> {
        control::order_ledger_json(&self.sim, order_no)
    }

    /// The ledger, as `GET /sim/ledger` would answer it, for in-process tests.
    pub fn ledger(&self) -> serde_json::Value {
        control::ledger_json(&self.sim)
    }

    /// The mean answer latency this simulator runs with.
    pub fn latency_mean(&self) -> Duration {
        self.sim.config.latency_mean
    }

    /// Starts a query rate-limit storm: every queryOrderDetails.do answers HTTP 429 with ATRIP's
    /// rate-limit body for `length` from now (zero ends one); pay.do is never limited. The
    /// in-process form of `POST /sim/storm`.
    pub fn storm(&self, length: Duration) {
        self.sim.storm(length);
    }

    /// Puts these orders in the simulator as they are described (replacing any of the same
    /// number): ATRIP's side of a reconciliation test, without a `pay.do` for each.
    pub fn seed_orders(&self, orders: &[SeedOrder]) {
        let mut store = self.sim.lock();
        for seed in orders {
            store.orders.insert(seed.order_no.clone(), seed.build());
        }
    }

    /// Every `pay.do`, `queryOrderDetails.do` and `orderList.do` received so far, in arrival order, with the
    /// sending worker's id (`x-ticketing-worker`), for in-process tests.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.sim.requests.snapshot()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
