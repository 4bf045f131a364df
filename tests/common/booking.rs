//! Shared by the test programs that feed orders to worker processes (the chaos run, the rolling
//! upgrade): orders booked in the simulator, with a scenario when they need one, then enqueued
//! with plain INSERTs across the four payment methods, the way an agency's system would.

use std::time::Duration;

use atrip_simulator::SimHandle;
use serde_json::{json, Value};
use sqlx::PgPool;
use ticketing_tracker::atrip::Client;
use ticketing_tracker::config::Settings;

/// The payment methods, taken in turn: order `i` pays with `METHODS[i % 4]`.
pub const METHODS: [i16; 4] = [1, 3, 4, 5];

/// Books orders in a running simulator.
pub struct Booking {
    client: Client,
    http: reqwest::Client,
    base_url: String,
}

impl Booking {
    pub fn new(sim: &SimHandle) -> Result<Booking, String> {
        let mut settings = Settings::defaults().atrip;
        settings.base_url = sim.base_url();
        Ok(Booking {
            client: Client::new(&settings).map_err(|e| e.to_string())?,
            http: reqwest::Client::new(),
            base_url: sim.base_url(),
        })
    }

    /// order.do: `no` for the passengers `names`, 120.0 in total.
    pub async fn create_order(&self, no: &str, names: &[&str]) -> Result<(), String> {
        let pax: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "passengerType": 0, "gender": "F", "birthday": "19900101"}))
            .collect();
        self.client
            .create_order(&json!({"orderNo": no, "passengers": pax, "totalPrice": 120.0}))
            .await
            .map_err(|e| format!("order.do {no}: {e}"))?;
        Ok(())
    }

    /// What the simulator does with `no` (faults, delays, processing times).
    pub async fn set_scenario(&self, no: &str, scenario: &Value) -> Result<(), String> {
        let answer = self
            .http
            .post(format!("{}/sim/orders/{no}/scenario", self.base_url))
            .json(scenario)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("scenario {no}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("scenario {no}: HTTP {}", answer.status()));
        }
        Ok(())
    }
}

/// The card an order paying with `method` carries: for VCC (3) a valid VCC card (a sandbox
/// Visa test number), for MoR (5) the sandbox MoR Visa with the traveller's IP for threeDS.
pub fn card(method: i16) -> Option<Value> {
    match method {
        3 => Some(json!({
            "cardNumber": "4532015112830366", "cardCVV": "123",
            "cardExpireMonth": "07", "cardExpireYear": "2030",
            "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
            "reusable": false, "paymentLimit": 500
        })),
        5 => Some(json!({
            "cardNumber": "4054695723100768", "cardCVV": "123",
            "cardExpireMonth": "12", "cardExpireYear": "2031",
            "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
            "threeDS": { "ip": "203.0.113.7" }
        })),
        _ => None,
    }
}

/// Enqueues `(order number, payment method, card)` in one statement (one NOTIFY wakes the
/// workers).
pub async fn insert<'a>(
    pool: &PgPool,
    orders: impl IntoIterator<Item = (&'a str, i16, Option<&'a Value>)>,
) -> Result<(), sqlx::Error> {
    let (mut nos, mut methods, mut cards) = (Vec::new(), Vec::new(), Vec::new());
    for (no, method, card) in orders {
        nos.push(no);
        methods.push(method);
        cards.push(card.cloned());
    }
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
