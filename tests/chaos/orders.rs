//! The run's orders: booked in the simulator (1 to 3 passengers, each with its own ticketing
//! delay, a share whose payment takes a processing time, a few failing ticketing, slow, with a
//! payment-in-progress window, or whose one pay.do is lost before the charge), then enqueued
//! with plain INSERTs across the four payment methods, the way an agency's system would.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

use atrip_simulator::SimHandle;

use super::booking::{self, Booking};

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

const NAMES: [&str; 3] = ["DOE/JANE", "DOE/JOHN", "ROE/ANN"];

/// Books `n` orders in the simulator, with their scenarios, and returns them in enqueue order.
pub async fn prepare(sim: &SimHandle, rng: &mut StdRng, n: usize) -> Result<Vec<Order>, String> {
    let booking = Booking::new(sim)?;
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let no = format!("CHAOS{i:06}");
        let method = booking::METHODS[i % 4];
        let passengers = rng.gen_range(1..=3);
        booking.create_order(&no, &NAMES[..passengers]).await?;
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
        booking.set_scenario(&no, &scenario).await?;
        orders.push(Order {
            no,
            method,
            card: booking::card(method),
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
    booking::insert(
        pool,
        orders
            .iter()
            .map(|o| (o.no.as_str(), o.method, o.card.as_ref())),
    )
    .await
}
