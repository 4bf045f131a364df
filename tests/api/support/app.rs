//! A test's whole world: a fresh database, an in-process simulator on port 0, settings that
//! point at both with fast timings, and workers that share one movable clock.

use std::net::SocketAddr;
use std::time::Duration;

use atrip_simulator::{self as simulator, SimConfig, SimHandle};
use serde_json::{json, Value};
use sqlx::PgPool;
use ticketing_tracker::atrip::Client;
use ticketing_tracker::config::Settings;
use ticketing_tracker::jobs::{JobRow, JobStore};
use ticketing_tracker::worker::{Clock, RoundReport, Worker};

use super::db::TestDb;

pub struct TestApp {
    pub db: TestDb,
    pub clock: Clock,
    pub store: JobStore,
    /// The simulator, the settings and the client: `app.sim`, `app.settings`, `app.atrip` and
    /// the simulator's helpers reach it through `Deref`.
    atrip_side: TestAtrip,
}

/// The ATRIP side of a test's world: an in-process simulator on port 0, the test settings
/// pointing at it, and a client. What the ATRIP client's tests need, without a database.
pub struct TestAtrip {
    pub sim: SimHandle,
    /// Their `database.url` names no database ([`NO_DATABASE`]) unless a [`TestApp`] holds them.
    pub settings: Settings,
    pub atrip: Client,
    http: reqwest::Client,
}

/// The `database.url` of settings that have no database: a name that never resolves.
const NO_DATABASE: &str = "postgres://nobody@no-database.invalid/none";

impl std::ops::Deref for TestApp {
    type Target = TestAtrip;
    fn deref(&self) -> &TestAtrip {
        &self.atrip_side
    }
}

impl std::ops::DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut TestAtrip {
        &mut self.atrip_side
    }
}

impl TestAtrip {
    /// The default simulator.
    pub async fn new() -> TestAtrip {
        Self::with_sim(default_sim()).await
    }

    pub async fn with_sim(config: SimConfig) -> TestAtrip {
        super::init_tracing();
        let sim = simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("simulator starts");
        let settings = test_settings(NO_DATABASE, &sim.base_url());
        let atrip = Client::new(&settings.atrip).unwrap();
        TestAtrip {
            sim,
            settings,
            atrip,
            http: reqwest::Client::new(),
        }
    }
}

fn default_sim() -> SimConfig {
    SimConfig {
        ticketing_delay: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

/// Settings for tests: the simulator's address and credentials, short timings so recovery
/// paths run in test time, and a large rate limit.
pub fn test_settings(db_url: &str, sim_url: &str) -> Settings {
    let mut s = Settings::defaults();
    s.database.url = db_url.to_owned().into();
    s.atrip.base_url = sim_url.to_owned();
    s.atrip.pay_timeout_ms = 2000;
    s.atrip.query_timeout_ms = 2000;
    s.atrip.connect_timeout_ms = 1000;
    s.atrip.rate_limit_per_s = 10_000.0;
    s.worker.lease_ms = 10_000;
    s.worker.recovery_delay_ms = 100;
    s.worker.first_poll_ms = 100;
    s.worker.poll_initial_ms = 100;
    s.worker.poll_max_ms = 1000;
    s.worker.poll_randomization = 0.0;
    s.worker.claim_interval_ms = 50;
    s.worker.shutdown_grace_ms = 5000;
    s.worker.credentials_pause_ms = 1000;
    s
}

impl TestApp {
    /// A world with the default simulator.
    pub async fn new() -> TestApp {
        Self::with_sim(default_sim()).await
    }

    pub async fn with_sim(config: SimConfig) -> TestApp {
        let db = TestDb::new().await;
        let mut atrip_side = TestAtrip::with_sim(config).await;
        atrip_side.settings.database.url = db.url().into();
        let store = JobStore::new(db.pool().clone());
        TestApp {
            db,
            clock: Clock::default(),
            store,
            atrip_side,
        }
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// A worker on this world's database, simulator and clock, with these settings.
    pub fn worker_with(&self, settings: &Settings, id: &str) -> Worker {
        Worker::new(
            JobStore::new(self.db.pool().clone()),
            Client::new(&settings.atrip).unwrap(),
            settings.worker.clone(),
            settings.atrip.rate_limit_per_s,
            id.to_owned(),
            self.clock.clone(),
        )
    }

    pub fn worker(&self) -> Worker {
        self.worker_with(&self.settings, "test-worker")
    }

    /// Inserts a row the way an enqueuer does.
    pub async fn enqueue(&self, order_no: &str, method: i16, card: Option<Value>) {
        self.store
            .enqueue(order_no, method, card.as_ref(), None)
            .await
            .expect("enqueue");
    }

    /// Creates an order and enqueues it.
    /// Enqueues `numbers` in one statement, the four payment methods in turn (deposit, VCC,
    /// BYOA, MOR; cards where a method needs one), the turn counted from `first_turn`.
    pub async fn enqueue_methods_in_turn(&self, numbers: &[String], first_turn: u64) {
        let (mut methods, mut cards) = (Vec::new(), Vec::new());
        for i in first_turn..first_turn + numbers.len() as u64 {
            let (method, card) = match i % 4 {
                0 => (1i16, Value::Null),
                1 => (3, vcc_card()),
                2 => (4, Value::Null),
                _ => (5, mor_card()),
            };
            methods.push(method);
            cards.push(card);
        }
        sqlx::query(
            "INSERT INTO ticketing_jobs (order_no, payment_method, card)
             SELECT o, m, NULLIF(c, 'null'::jsonb) FROM unnest($1::text[], $2::smallint[], $3::jsonb[]) AS t(o, m, c)",
        )
        .bind(numbers)
        .bind(&methods)
        .bind(&cards)
        .execute(self.pool())
        .await
        .unwrap();
    }

    pub async fn order_and_enqueue(
        &self,
        method: i16,
        card: Option<Value>,
        extra: Value,
    ) -> String {
        let order_no = self.create_order(extra).await;
        self.enqueue(&order_no, method, card).await;
        order_no
    }

    pub async fn job(&self, order_no: &str) -> JobRow {
        self.store.job(order_no).await.unwrap().expect("row exists")
    }

    /// The plain card data the row holds (`card`), which no row type of the product carries.
    pub async fn plain_card(&self, order_no: &str) -> Option<serde_json::Value> {
        sqlx::query_scalar("SELECT card FROM ticketing_jobs WHERE order_no = $1")
            .bind(order_no)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// Asserts the order ended `ticketed` with exactly one charge after `pay_requests`
    /// pay.do requests; returns its row for further checks.
    pub async fn assert_ticketed_once(&self, order_no: &str, pay_requests: i64) -> JobRow {
        let row = self.job(order_no).await;
        assert_eq!(row.state, "ticketed", "{order_no}: {:?}", row.last_error);
        let ledger = self.ledger(order_no);
        assert_eq!(ledger["pay_requests"], pay_requests, "{ledger}");
        assert_eq!(ledger["charges"], 1, "{ledger}");
        row
    }

    /// Moves the database's time forward by `d` (`ticketing_now()`; see the migration that
    /// creates `ticketing_test_clock`).
    pub async fn advance(&self, d: Duration) {
        sqlx::query(
            "INSERT INTO ticketing_test_clock (shift) VALUES ($1 * interval '1 millisecond')
             ON CONFLICT (only_row) DO UPDATE SET shift = ticketing_test_clock.shift + EXCLUDED.shift",
        )
        .bind(i64::try_from(d.as_millis()).unwrap())
        .execute(self.pool())
        .await
        .expect("shift the database's time");
    }

    /// Adds a CHECK named `name` to the job table: a test's way to make the table refuse a
    /// write the worker will make (rule W2).
    pub async fn add_check(&self, name: &str, check: &str) {
        sqlx::query(&format!(
            "ALTER TABLE ticketing_jobs ADD CONSTRAINT {name} CHECK ({check})"
        ))
        .execute(self.pool())
        .await
        .expect("add the test's CHECK");
    }

    /// Claims every due row (up to 10) as `worker`, with the configured lease.
    pub async fn claim_as(&self, worker: &str) -> Vec<ticketing_tracker::jobs::ClaimedJob> {
        self.store
            .claim(worker, 10, self.settings.worker.lease(), true, true, "test")
            .await
            .unwrap()
    }

    /// The database's time now (`ticketing_now()`).
    pub async fn db_now(&self) -> chrono::DateTime<chrono::Utc> {
        sqlx::query_scalar("SELECT ticketing_now()")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// A worker whose own wall clock is `skew_ms` off (a replica with a wrong clock).
    pub fn skewed_worker(&self, id: &str, skew_ms: i64) -> Worker {
        Worker::new(
            JobStore::new(self.db.pool().clone()),
            Client::new(&self.settings.atrip).unwrap(),
            self.settings.worker.clone(),
            self.settings.atrip.rate_limit_per_s,
            id.to_owned(),
            Clock::skewed(skew_ms),
        )
    }

    /// Steps `worker` until no row is unfinished, moving the database's time forward whenever
    /// a round finds nothing due (the next row is scheduled later). Panics after `max_rounds`.
    pub async fn settle(&self, worker: &Worker, max_rounds: usize) -> Vec<RoundReport> {
        let mut reports = Vec::new();
        for _ in 0..max_rounds {
            if self.store.unfinished().await.unwrap() == 0 {
                return reports;
            }
            let report = worker.step().await.unwrap();
            if report.claimed == 0 {
                // Nothing due now: jump to the next due time (plus a little), and give the
                // simulator's real-time ticketing a moment to progress.
                self.advance(Duration::from_millis(500)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            reports.push(report);
        }
        panic!(
            "rows still unfinished after {max_rounds} rounds: {:?}",
            sqlx::query_as::<_, (String, String, Option<String>)>(
                "SELECT order_no, state, last_error FROM ticketing_jobs WHERE state IN ('pending','paying','ticketing')"
            )
            .fetch_all(self.pool())
            .await
            .unwrap()
        );
    }
}

/// A valid VCC card (a sandbox Visa test number), as an enqueuer writes it.
pub fn vcc_card() -> Value {
    json!({
        "cardNumber": "4532015112830366", "cardCVV": "123",
        "cardExpireMonth": "07", "cardExpireYear": "2030",
        "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
        "cardHolderCountry": "PH", "cardHolderCity": "MANILA",
        "reusable": false, "paymentLimit": 120
    })
}

/// A valid MoR card (the sandbox MoR Visa), with the end user's IP for threeDS.
pub fn mor_card() -> Value {
    json!({
        "cardNumber": "4054695723100768", "cardCVV": "123",
        "cardExpireMonth": "12", "cardExpireYear": "2031",
        "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
        "threeDS": { "ip": "203.0.113.7" }
    })
}

/// Waits until `check` holds, looking every 20 ms; panics naming `what` after `limit`. The
/// bounded alternative to sleeping and hoping.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// The state recorded by each of an order's events, oldest first.
    pub async fn event_states(&self, order_no: &str) -> Vec<String> {
        self.store
            .events(order_no)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect()
    }

    /// A worker with a connection pool of its own, as a separate replica has.
    pub async fn replica(&self, settings: &Settings, id: &str, connections: u32) -> Worker {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect(&self.db.url())
            .await
            .expect("replica pool");
        Worker::new(
            JobStore::new(pool),
            Client::new(&settings.atrip).unwrap(),
            settings.worker.clone(),
            settings.atrip.rate_limit_per_s,
            id.to_owned(),
            self.clock.clone(),
        )
    }
}

impl TestAtrip {
    /// Creates an order on the simulator; `extra` holds order.do fields and simulator
    /// extensions (passengers, supportPaymentMethods, payment.cardType, ...).
    pub async fn create_order(&self, extra: Value) -> String {
        let mut body = json!({ "passengers": [{ "name": "DOE/JANE", "passengerType": 0 }] });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        self.atrip
            .create_order(&body)
            .await
            .expect("order.do")
            .order_no
    }

    /// This order's ledger entry (pay_requests, charges, queries, ...).
    pub fn ledger(&self, order_no: &str) -> Value {
        self.sim.ledger()["orders"][order_no].clone()
    }

    pub fn charges(&self, order_no: &str) -> i64 {
        self.ledger(order_no)["charges"].as_i64().unwrap_or(0)
    }

    pub fn pay_requests(&self, order_no: &str) -> i64 {
        self.ledger(order_no)["pay_requests"].as_i64().unwrap_or(0)
    }

    /// Sets a scenario for an order on the simulator.
    pub async fn scenario(&self, order_no: &str, scenario: Value) {
        let resp = self
            .http
            .post(format!(
                "{}/sim/orders/{order_no}/scenario",
                self.sim.base_url()
            ))
            .json(&scenario)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "scenario refused: {}",
            resp.text().await.unwrap()
        );
    }

    /// Pays an order directly (deposit), the way another system or a person could before the
    /// worker got to it.
    pub async fn pay_directly(&self, order_no: &str) -> ticketing_tracker::atrip::PayAnswer {
        use ticketing_tracker::atrip::PayRequest;
        use ticketing_tracker::domain::PaymentMethod;
        self.atrip
            .pay(&PayRequest::new(order_no, PaymentMethod::Deposit, None))
            .await
    }

    /// The simulator's totals (pay_requests, charges, queries, ...).
    pub fn totals(&self) -> Value {
        self.sim.ledger()["totals"].clone()
    }
}
