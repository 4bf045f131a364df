//! The run's orders: booked in the simulator (1 to 3 passengers, each with its own ticketing
//! delay, a share whose payment takes a processing time, a few failing ticketing, slow, with a
//! payment-in-progress window, or whose one pay.do is lost before the charge), then enqueued
//! with plain INSERTs across the four payment methods, the way an agency's system would.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

use ticketing_tracker::atrip::Client;
use ticketing_tracker::config::Settings;
use ticketing_tracker::simulator::SimHandle;

/// The longest payment-in-progress window a scenario asks for: inside it the query shows the
/// charged order unpaid. Well below the workers' `unpaid_settle_s` (see `run.rs`).
pub const MAX_IN_PROGRESS_MS: u64 = 2500;

/// Payment processing times (from pay.do's decision to the charge; the query shows "0" and
/// pay.do is answered only then) given to a share of the orders. Within the workers' pay
/// timeout, so that most of those pay.do still get their answer.
pub const PROCESSING_MS: std::ops::RangeInclusive<u64> = 1000..=2200;
const PROCESSING_SHARE: f64 = 0.3;

/// Every this many orders, one whose first pay.do is reset before anything is charged: the
/// worker must never pay it again by itself, so it ends `needs_review` uncharged (and an
/// operator's plain `retry` does not pay it either).
const LOST_PAY_EVERY: usize = 30;

#[derive(Debug, Clone)]
pub struct Order {
    pub no: String,
    pub method: i16,
    pub card: Option<Value>,
    pub passengers: usize,
    /// Ticketing ends "-3" (the order should end `failed`, charged once).
    pub fails_ticketing: bool,
    /// Every request for it takes [`SLOW_MS`]: the pause freezes a worker waiting on one.
    pub slow: bool,
    /// Its first pay.do is reset before the charge (see [`LOST_PAY_EVERY`]).
    pub lost_pay: bool,
}

/// How long the simulator holds every request of a slow order: under the worker's timeouts,
/// long enough for the run to freeze a worker in the middle of the call.
pub const SLOW_MS: u64 = 1200;

/// A valid VCC card (a sandbox Visa test number).
fn vcc_card() -> Value {
    json!({
        "cardNumber": "4532015112830366", "cardCVV": "123",
        "cardExpireMonth": "07", "cardExpireYear": "2030",
        "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
        "reusable": false, "paymentLimit": 500
    })
}

/// A valid MoR card (the sandbox MoR Visa) with the traveller's IP for threeDS.
fn mor_card() -> Value {
    json!({
        "cardNumber": "4054695723100768", "cardCVV": "123",
        "cardExpireMonth": "12", "cardExpireYear": "2031",
        "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
        "threeDS": { "ip": "203.0.113.7" }
    })
}

const NAMES: [&str; 3] = ["DOE/JANE", "DOE/JOHN", "ROE/ANN"];

/// Books `n` orders in the simulator, with their scenarios, and returns them in enqueue order.
pub async fn prepare(sim: &SimHandle, rng: &mut StdRng, n: usize) -> Result<Vec<Order>, String> {
    let mut settings = Settings::defaults().atrip;
    settings.base_url = sim.base_url();
    let client = Client::new(&settings).map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let no = format!("CHAOS{i:06}");
        let method = [1i16, 3, 4, 5][i % 4];
        let passengers = rng.gen_range(1..=3);
        let pax: Vec<Value> = NAMES[..passengers]
            .iter()
            .map(|name| json!({"name": name, "passengerType": 0, "gender": "F", "birthday": "19900101"}))
            .collect();
        client
            .create_order(&json!({"orderNo": no, "passengers": pax, "totalPrice": 120.0}))
            .await
            .map_err(|e| format!("order.do {no}: {e}"))?;
        let fails_ticketing = rng.gen_bool(0.05);
        let mut scenario = json!({"ticketing_delay_ms": rng.gen_range(200..=2500u64)});
        if fails_ticketing {
            scenario["fail_ticketing"] = json!("604");
        }
        let slow = i % 10 == 7;
        if slow {
            scenario["delay_ms"] = json!(SLOW_MS);
        }
        if rng.gen_bool(0.05) {
            scenario["payment_in_progress_ms"] = json!(rng.gen_range(500..=MAX_IN_PROGRESS_MS));
        }
        // Slow orders' requests already wait SLOW_MS; with processing on top their pay.do
        // would always time out.
        if !slow && rng.gen_bool(PROCESSING_SHARE) {
            scenario["payment_processing_ms"] = json!(rng.gen_range(PROCESSING_MS));
        }
        let lost_pay = i % LOST_PAY_EVERY == LOST_PAY_EVERY / 2;
        if lost_pay {
            scenario["reset_before_charge"] = json!(1);
        }
        let url = format!("{}/sim/orders/{no}/scenario", sim.base_url());
        let answer = http
            .post(&url)
            .json(&scenario)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("scenario {no}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("scenario {no}: HTTP {}", answer.status()));
        }
        let card = match method {
            3 => Some(vcc_card()),
            5 => Some(mor_card()),
            _ => None,
        };
        orders.push(Order {
            no,
            method,
            card,
            passengers,
            fails_ticketing,
            slow,
            lost_pay,
        });
    }
    Ok(orders)
}

/// Inserts the orders in one statement (one NOTIFY wakes the workers).
pub async fn enqueue(pool: &PgPool, orders: &[Order]) -> Result<(), sqlx::Error> {
    let nos: Vec<&str> = orders.iter().map(|o| o.no.as_str()).collect();
    let methods: Vec<i16> = orders.iter().map(|o| o.method).collect();
    let cards: Vec<Option<Value>> = orders.iter().map(|o| o.card.clone()).collect();
    sqlx::query(
        "INSERT INTO ticketing_jobs (order_no, payment_method, card)
         SELECT * FROM UNNEST($1::text[], $2::smallint[], $3::jsonb[])",
    )
    .bind(&nos)
    .bind(&methods)
    .bind(&cards)
    .execute(pool)
    .await?;
    Ok(())
}
