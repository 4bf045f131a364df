//! Rows as the store returns them. Card data is wrapped so that no `Debug` can print it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The raw `card` JSON of a row. `Debug` never shows it.
#[derive(Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct CardJson(pub Value);

impl fmt::Debug for CardJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[card redacted]")
    }
}

/// The `card_sealed` bytes of a row (a sealed box). `Debug` shows only the length.
#[derive(Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct SealedCard(pub Vec<u8>);

impl fmt::Debug for SealedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[sealed card, {} bytes]", self.0.len())
    }
}

/// A row just claimed by this worker, with the state it was claimed from.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub order_no: String,
    pub payment_method: i16,
    pub card: Option<CardJson>,
    pub card_sealed: Option<SealedCard>,
    pub client_order_no: Option<String>,
    pub pay_deadline: Option<DateTime<Utc>>,
    /// The state after the claim (`paying` when the claim recorded a pay intent).
    pub state: String,
    /// The state before the claim: `pending` means this claim recorded a new pay intent.
    pub claimed_from: String,
    pub lease_token: i64,
    pub pay_attempts: i32,
    pub poll_attempts: i32,
    pub error_streak: i32,
    pub pay_started_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub tickets_seen: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// A whole row, for operators and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub order_no: String,
    pub client_order_no: Option<String>,
    pub payment_method: i16,
    #[serde(skip)]
    pub card: Option<CardJson>,
    #[serde(skip)]
    pub card_sealed: Option<SealedCard>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub pay_deadline: Option<DateTime<Utc>>,
    pub priority: i16,
    pub state: String,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub lease_token: i64,
    pub pay_attempts: i32,
    pub poll_attempts: i32,
    pub error_streak: i32,
    pub pay_started_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub ticketed_at: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub atrip_status: Option<i32>,
    pub atrip_message: Option<String>,
    pub order_status: Option<String>,
    pub atrip_pnr: Option<String>,
    pub pnr: Option<String>,
    pub ticket_numbers: Option<Value>,
    pub tickets_seen: Option<Value>,
    pub last_error: Option<String>,
}

/// One line of an order's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub job_id: i64,
    pub order_no: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub state: String,
    pub lease_token: Option<i64>,
    pub worker: Option<String>,
    pub detail: Value,
}
