//! Shared by the test programs that check a run's records (the chaos run, the rolling
//! upgrade): the job table and its events, read once the run is over.

use sqlx::{PgPool, Row};

/// One event, as the job store reads it.
pub use ticketing_tracker::jobs::EventRow as Event;

/// The states an order ends in; any other is stranded.
pub const TERMINAL: [&str; 4] = ["ticketed", "failed", "needs_review", "cancelled"];

#[derive(Debug, Clone)]
pub struct Job {
    pub order_no: String,
    pub state: String,
    pub pay_attempts: i32,
    pub pay_not_sent: i32,
    pub pay_permits: i32,
    /// `paid_at` is set (the chaos checks compare it and the tickets with ATRIP; the upgrade's
    /// do not).
    #[allow(dead_code)]
    pub paid: bool,
    /// How many ticket sets `ticket_numbers` holds.
    #[allow(dead_code)]
    pub tickets: Option<i32>,
    pub last_error: Option<String>,
}

/// Every row of `ticketing_jobs`, in insertion order.
pub async fn load_jobs(pool: &PgPool) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT order_no, state, pay_attempts, pay_not_sent, pay_permits,
                paid_at IS NOT NULL AS paid, jsonb_array_length(ticket_numbers) AS tickets,
                last_error
         FROM ticketing_jobs ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Job {
            order_no: r.get("order_no"),
            state: r.get("state"),
            pay_attempts: r.get("pay_attempts"),
            pay_not_sent: r.get("pay_not_sent"),
            pay_permits: r.get("pay_permits"),
            paid: r.get("paid"),
            tickets: r.get("tickets"),
            last_error: r.get("last_error"),
        })
        .collect())
}

/// Every event, oldest first.
pub async fn load_events(pool: &PgPool) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, job_id, order_no, at, kind, state, lease_token, worker, detail
         FROM ticketing_events ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Event {
            id: r.get("id"),
            job_id: r.get("job_id"),
            order_no: r.get("order_no"),
            at: r.get("at"),
            kind: r.get("kind"),
            state: r.get("state"),
            lease_token: r.get("lease_token"),
            worker: r.get("worker"),
            detail: r.get("detail"),
        })
        .collect())
}
