//! The SQL of wake-ups: a webhook makes its order due now (it never changes a state: only the
//! order query does), and `NOTIFY` wakes every listening worker.

use serde_json::Value;

use super::store::JobStore;
use super::Error;

impl JobStore {
    /// A webhook said something about this order: make it due now (only orders the worker
    /// still follows) and wake the workers. Never changes a state: only the order query does.
    /// Returns false when no followed order has that number.
    pub async fn wake(&self, order_no: &str, detail: &Value) -> Result<bool, Error> {
        let hit = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET run_at = LEAST(run_at, ticketing_now())
    WHERE order_no = $1 AND state IN ('paying', 'ticketing')
    RETURNING id, order_no, state, lease_token
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, ticketing_now(), 'webhook_received', state, lease_token, NULL, $2 FROM u
RETURNING job_id"#,
            order_no,
            detail
        )
        .fetch_optional(self.db())
        .await?;
        if hit.is_some() {
            self.notify().await?;
        }
        Ok(hit.is_some())
    }

    /// Wakes every listening worker.
    pub async fn notify(&self) -> Result<(), Error> {
        sqlx::query!("SELECT pg_notify('ticketing_jobs', 'wake')")
            .execute(self.db())
            .await?;
        Ok(())
    }
}
