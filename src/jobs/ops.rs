//! The SQL of operators and outside signals: list, retry, cancel, webhook wake-up, pruning and
//! the figures behind `/metrics`. Each change is one statement that checks the state it
//! requires, so it cannot race a worker's claim into a half-decided row.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::State;
use super::rows::{CardJson, JobRow, SealedCard};
use super::store::JobStore;
use super::Error;

impl JobStore {
    /// Rows, newest first, optionally in one state.
    pub async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<JobRow>, Error> {
        let rows = sqlx::query_as!(
            JobRow,
            r#"SELECT id, order_no, client_order_no, payment_method, card AS "card: CardJson",
                      card_sealed AS "card_sealed: SealedCard", card_brand, card_last4, pay_deadline, priority, state, run_at, created_at,
                      updated_at, lease_owner, lease_expires_at, lease_token, pay_attempts,
                      poll_attempts, error_streak, pay_started_at, paid_at, ticketed_at,
                      finalized_at, atrip_status, atrip_message, order_status, atrip_pnr, pnr,
                      ticket_numbers, tickets_seen, last_error
               FROM ticketing_jobs
               WHERE ($1::text IS NULL OR state = $1)
               ORDER BY id DESC
               LIMIT $2"#,
            state.map(State::as_str),
            limit
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Puts a `failed` or `needs_review` order back to work. An order that ever had a pay
    /// intent resumes as `paying`, so its next step is an order query (never a blind
    /// `pay.do`); the pay-attempt cap still holds. Card orders whose card was erased need
    /// `card` (fresh card data).
    pub async fn retry(
        &self,
        order_no: &str,
        card: Option<&Value>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<State, Error> {
        let row = self
            .job(order_no)
            .await?
            .ok_or_else(|| Error::NotFound(order_no.to_owned()))?;
        let refuse = |reason: String| Error::Refused {
            order_no: order_no.to_owned(),
            reason,
        };
        if row.state != State::Failed.as_str() && row.state != State::NeedsReview.as_str() {
            return Err(refuse(format!(
                "it is {}; retry is only for failed or needs_review orders",
                row.state
            )));
        }
        let needs_card = matches!(row.payment_method, 3 | 5);
        if needs_card && row.card.is_none() && row.card_sealed.is_none() && card.is_none() {
            return Err(refuse(
                "its card data was erased when the payment resolved; give fresh card data (--card-file)".into(),
            ));
        }
        if !needs_card && card.is_some() {
            return Err(refuse(format!(
                "payment method {} takes no card",
                row.payment_method
            )));
        }
        let to = if row.pay_attempts > 0 {
            State::Paying
        } else {
            State::Pending
        };
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = $3, run_at = $1, updated_at = $1, finalized_at = NULL, last_error = NULL,
        error_streak = 0, tickets_seen = NULL, lease_owner = NULL, lease_expires_at = NULL,
        card = COALESCE($4, card)
    WHERE id = $2 AND state IN ('failed', 'needs_review') AND lease_token = $5
    RETURNING id, order_no, state, lease_token
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, $1, 'operator_retry', state, lease_token, $6,
       jsonb_build_object('from', $7::text, 'fresh_card', $4::jsonb IS NOT NULL)
FROM u
RETURNING job_id"#,
            now,
            row.id,
            to.as_str(),
            card,
            row.lease_token,
            by,
            row.state,
        )
        .fetch_optional(self.pool())
        .await?;
        match done {
            Some(_) => {
                self.notify().await?;
                Ok(to)
            }
            None => Err(refuse("it changed while retrying; look again".into())),
        }
    }

    /// Cancels an order no `pay.do` was ever sent for: a `pending` row, or a `needs_review`
    /// row each of whose pay intents ended "not sent" (e.g. its sealed card could not be
    /// opened). Never a row a worker holds.
    pub async fn cancel(&self, order_no: &str, by: &str, now: DateTime<Utc>) -> Result<(), Error> {
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = 'cancelled', updated_at = $1, finalized_at = $1, card = NULL, card_sealed = NULL,
        last_error = 'cancelled by an operator before any payment was sent'
    WHERE order_no = $2 AND lease_owner IS NULL
      AND ((state = 'pending' AND pay_attempts = 0)
           OR (state = 'needs_review' AND pay_attempts = (
                   SELECT count(*) FROM ticketing_events e
                   WHERE e.job_id = ticketing_jobs.id AND e.kind = 'pay_not_sent')))
    RETURNING id, order_no, state, lease_token
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, $1, 'operator_cancel', state, lease_token, $3, '{}'::jsonb FROM u
RETURNING job_id"#,
            now,
            order_no,
            by
        )
        .fetch_optional(self.pool())
        .await?;
        if done.is_some() {
            return Ok(());
        }
        let row = self
            .job(order_no)
            .await?
            .ok_or_else(|| Error::NotFound(order_no.to_owned()))?;
        Err(Error::Refused {
            order_no: order_no.to_owned(),
            reason: format!(
                "it is {} with {} pay intent(s) recorded; cancel is only possible before any payment was sent",
                row.state, row.pay_attempts
            ),
        })
    }

    /// A webhook said something about this order: make it due now (only orders the worker
    /// still follows) and wake the workers. Never changes a state: only the order query does.
    /// Returns false when no followed order has that number.
    pub async fn wake(
        &self,
        order_no: &str,
        detail: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let hit = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET run_at = LEAST(run_at, $1), updated_at = $1
    WHERE order_no = $2 AND state IN ('paying', 'ticketing')
    RETURNING id, order_no, state, lease_token
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, $1, 'webhook_received', state, lease_token, NULL, $3 FROM u
RETURNING job_id"#,
            now,
            order_no,
            detail
        )
        .fetch_optional(self.pool())
        .await?;
        if hit.is_some() {
            self.notify().await?;
        }
        Ok(hit.is_some())
    }

    /// Wakes every listening worker.
    pub async fn notify(&self) -> Result<(), Error> {
        sqlx::query!("SELECT pg_notify('ticketing_jobs', 'wake')")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes up to `batch` finished rows (ticketed, failed, cancelled; never needs_review,
    /// which waits for a person) finalized before `before`, with their events. Small batches
    /// keep each transaction short.
    pub async fn prune(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, Error> {
        let done = sqlx::query!(
            r#"DELETE FROM ticketing_jobs WHERE id IN (
                   SELECT id FROM ticketing_jobs
                   WHERE state IN ('ticketed', 'failed', 'cancelled') AND finalized_at < $1
                   LIMIT $2)"#,
            before,
            batch
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Seconds since the oldest due, unleased row became due (0 when none): the backlog age.
    pub async fn oldest_due_age(&self, now: DateTime<Utc>) -> Result<f64, Error> {
        let age = sqlx::query_scalar!(
            r#"SELECT COALESCE(EXTRACT(EPOCH FROM ($1 - min(run_at)))::float8, 0) AS "age!"
               FROM ticketing_jobs
               WHERE state IN ('pending', 'paying', 'ticketing') AND run_at <= $1
                 AND (lease_expires_at IS NULL OR lease_expires_at <= $1)"#,
            now
        )
        .fetch_one(self.pool())
        .await?;
        Ok(age.max(0.0))
    }

    /// Whether every embedded migration is applied (readiness).
    pub async fn migrations_applied(&self) -> Result<bool, Error> {
        // Not a checked macro: `_sqlx_migrations` is sqlx's own table, absent from the
        // database the offline query data is prepared against.
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(self.pool())
                .await?;
        Ok(applied as usize >= crate::MIGRATOR.iter().count())
    }
}
