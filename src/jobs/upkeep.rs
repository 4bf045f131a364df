//! The SQL of upkeep: pruning finished rows, the backlog's age for `/metrics`, and whether the
//! migrations are applied (readiness).

use super::store::JobStore;
use super::Error;

impl JobStore {
    /// Deletes up to `batch` finished rows (ticketed, failed, cancelled; never needs_review,
    /// which waits for a person, nor a ticketed row whose change after ticketing is not
    /// settled, still `reported` or `unconfirmed`: rule W6) finalized more than
    /// `retention_days` ago, with their events.
    /// The state and age are checked again on the row being deleted (not only when it was
    /// picked), so a row an operator retried meanwhile is kept; rows locked by anyone are
    /// skipped. Small batches keep each transaction short.
    pub async fn prune(&self, retention_days: u32, batch: i64) -> Result<u64, Error> {
        // A CTE runs once: as an IN (subquery) the planner may run the LIMIT again per row and
        // delete more than a batch. The events go with their jobs, in the same statement.
        let done = sqlx::query_scalar!(
            r#"WITH doomed AS (
                   SELECT id FROM ticketing_jobs
                   WHERE state IN ('ticketed', 'failed', 'cancelled')
                     AND finalized_at < ticketing_now() - $1::integer * interval '1 day'
                     AND (after_ticketing_check IS NULL OR after_ticketing_check = 'confirmed')
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED),
               gone AS (
                   DELETE FROM ticketing_jobs j USING doomed
                   WHERE j.id = doomed.id
                     AND j.state IN ('ticketed', 'failed', 'cancelled')
                     AND j.finalized_at < ticketing_now() - $1::integer * interval '1 day'
                     AND (j.after_ticketing_check IS NULL OR j.after_ticketing_check = 'confirmed')
                   RETURNING j.id),
               events AS (
                   DELETE FROM ticketing_events e USING gone WHERE e.job_id = gone.id)
               SELECT count(*) AS "n!" FROM gone"#,
            retention_days as i32,
            batch
        )
        .fetch_one(self.db())
        .await?;
        Ok(done as u64)
    }

    /// Seconds since the oldest due, unleased row became due (0 when none): the backlog age.
    /// A `pending` row of a paused method is not counted: it waits for the resume, not for a
    /// worker, and the pause has its own figures (rule S4).
    pub async fn oldest_due_age(&self) -> Result<f64, Error> {
        let age = sqlx::query_scalar!(
            r#"SELECT COALESCE(EXTRACT(EPOCH FROM (ticketing_now() - min(run_at)))::float8, 0) AS "age!"
               FROM ticketing_jobs j
               WHERE state IN ('pending', 'paying', 'ticketing') AND run_at <= ticketing_now()
                 AND (lease_expires_at IS NULL OR lease_expires_at <= ticketing_now())
                 AND NOT (state = 'pending'
                          AND EXISTS (SELECT 1 FROM ticketing_pauses p
                                      WHERE p.resumed_at IS NULL AND p.method IN (0, j.payment_method)))"#
        )
        .fetch_one(self.db())
        .await?;
        Ok(age.max(0.0))
    }

    /// Whether every embedded migration is applied (readiness).
    pub async fn migrations_applied(&self) -> Result<bool, Error> {
        // Not a checked macro: `_sqlx_migrations` is sqlx's own table, absent from the
        // database the offline query data is prepared against.
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(self.db())
                .await?;
        Ok(applied as usize >= crate::MIGRATOR.iter().count())
    }
}
