//! The SQL of operators and outside signals: list, retry, cancel, webhook wake-up, pruning and
//! the figures behind `/metrics`. Each change is one statement that checks the state it
//! requires, so it cannot race a worker's claim into a half-decided row.

use serde_json::Value;

use super::rows::{CardJson, JobRow, SealedCard};
use super::store::JobStore;
use super::Error;
use crate::domain::{EventKind, PaymentMethod, State};
use crate::machine::PayOutcome;

/// What an operator's retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    /// `ticketing` when an answer once showed the order paid, else `paying`.
    pub state: State,
    /// Whether the retry allows one more `pay.do` (once the order query shows it unpaid).
    pub may_pay: bool,
}

impl JobStore {
    /// Rows, newest first, optionally in one state.
    pub async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<JobRow>, Error> {
        let rows = sqlx::query_as!(
            JobRow,
            r#"SELECT id, order_no, client_order_no, payment_method, card AS "card: CardJson",
                      card_sealed AS "card_sealed: SealedCard", card_brand, card_last4, pay_deadline, priority, state, run_at, created_at,
                      updated_at, lease_owner, lease_expires_at, lease_token, pay_attempts,
                      pay_not_sent, pay_permits, pay_attempts - pay_not_sent AS "pay_sends!",
                      poll_attempts, error_streak, pay_started_at, paid_at, paid_evidence,
                      last_pay_outcome, phase_started_at, ticketed_at,
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

    /// Puts a `failed` or `needs_review` order back to work (docs/design.md, rule P7). It
    /// always resumes with an order query, never with a blind `pay.do`:
    /// - an order an answer once showed paid goes back to `ticketing`, with a fresh ticketing
    ///   deadline; it is never paid again, and `repay` is refused;
    /// - otherwise it goes back to `paying`. It may pay again (once the query shows it unpaid)
    ///   only when no `pay.do` may have reached ATRIP, when ATRIP's last answer said nothing was
    ///   charged (a documented refusal, or our credentials refused), or when the operator says
    ///   `repay` after checking ATRIP. A card order that may pay needs card data.
    pub async fn retry(
        &self,
        order_no: &str,
        card: Option<&Value>,
        repay: bool,
        by: &str,
    ) -> Result<Retried, Error> {
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
        let needs_card = PaymentMethod::from_code(i64::from(row.payment_method))
            .is_some_and(PaymentMethod::needs_card);
        if !needs_card && card.is_some() {
            return Err(refuse(format!(
                "payment method {} takes no card",
                row.payment_method
            )));
        }
        if let Some(paid_at) = row.paid_at {
            let shown = row.paid_evidence.as_deref().unwrap_or("an answer");
            if repay {
                return Err(refuse(format!(
                    "its history shows it paid ({shown} at {paid_at}); a second payment is refused. `retry` (without --repay) follows it again"
                )));
            }
            if card.is_some() {
                return Err(refuse(format!(
                    "its history shows it paid ({shown} at {paid_at}); it will not be paid again, so no card data is taken"
                )));
            }
        }
        let to = if row.paid_at.is_some() {
            State::Ticketing
        } else {
            State::Paying
        };
        let charged_nothing = row
            .last_pay_outcome
            .as_deref()
            .and_then(PayOutcome::parse)
            .is_some_and(PayOutcome::charged_nothing);
        let grant = to == State::Paying && (repay || charged_nothing || row.pay_sends == 0);
        let permits = if grant {
            row.pay_permits.max(row.pay_sends + 1)
        } else {
            row.pay_permits
        };
        let may_pay = to == State::Paying && permits > row.pay_sends;
        if !may_pay && repay {
            return Err(refuse("it cannot be paid again".into()));
        }
        if may_pay
            && needs_card
            && row.card.is_none()
            && row.card_sealed.is_none()
            && card.is_none()
        {
            return Err(refuse(
                "its card data was erased when the payment resolved; give fresh card data (--card-file)".into(),
            ));
        }
        if !may_pay && card.is_some() {
            return Err(refuse(
                "a pay.do may have reached ATRIP, so a plain retry will not pay again and takes no card data; check the order in ATRIP, then `retry --repay --card-file FILE`".into(),
            ));
        }
        let kind = if repay {
            EventKind::OperatorRepay
        } else {
            EventKind::OperatorRetry
        };
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = $2, run_at = ticketing_now(), updated_at = ticketing_now(), finalized_at = NULL,
        last_error = NULL, error_streak = 0, tickets_seen = NULL, lease_owner = NULL,
        lease_expires_at = NULL, phase_started_at = ticketing_now(), pay_permits = $3,
        card = COALESCE($4, card)
    WHERE id = $1 AND state IN ('failed', 'needs_review') AND lease_token = $5
      AND paid_at IS NOT DISTINCT FROM $6 AND pay_attempts = $7 AND pay_not_sent = $8
    RETURNING id, order_no, state, lease_token, updated_at
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, updated_at, $9, state, lease_token, $10,
       jsonb_build_object('from', $11::text, 'fresh_card', $4::jsonb IS NOT NULL,
                          'may_pay', $12::boolean, 'pay_permits', $3::integer)
FROM u
RETURNING job_id"#,
            row.id,
            to.as_str(),
            permits,
            card,
            row.lease_token,
            row.paid_at,
            row.pay_attempts,
            row.pay_not_sent,
            kind.as_str(),
            by,
            row.state,
            may_pay,
        )
        .fetch_optional(self.pool())
        .await?;
        match done {
            Some(_) => {
                self.notify().await?;
                Ok(Retried { state: to, may_pay })
            }
            None => Err(refuse("it changed while retrying; look again".into())),
        }
    }

    /// Cancels an order no `pay.do` may have reached ATRIP for (rule P8): a `pending` row, or
    /// a `needs_review` row each of whose intents provably never left (e.g. its sealed card
    /// could not be opened). Never a row a worker holds.
    pub async fn cancel(&self, order_no: &str, by: &str) -> Result<(), Error> {
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = 'cancelled', updated_at = ticketing_now(), finalized_at = ticketing_now(),
        card = NULL, card_sealed = NULL,
        last_error = 'cancelled by an operator before any payment was sent'
    WHERE order_no = $1 AND lease_owner IS NULL AND paid_at IS NULL
      AND state IN ('pending', 'needs_review') AND pay_attempts = pay_not_sent
    RETURNING id, order_no, state, lease_token, updated_at
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, updated_at, 'operator_cancel', state, lease_token, $2, '{}'::jsonb FROM u
RETURNING job_id"#,
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
                "it is {} and {} pay.do may have reached ATRIP; cancel is only possible before any payment was sent",
                row.state, row.pay_sends
            ),
        })
    }

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
        .fetch_optional(self.pool())
        .await?;
        if hit.is_some() {
            self.notify().await?;
        }
        Ok(hit.is_some())
    }

    /// Whether this row's open pay intent was given back, unsent, by a worker of the previous
    /// release at its shutdown. That release recorded the give-back as a `released` event right
    /// after the intent, under the same lease token, without counting the intent as not sent
    /// (this release counts it itself, and says so in the event's `pay_sent`); it only ever did
    /// so before sending. Read only for a `paying` row with no recorded pay answer.
    pub async fn intent_given_back_by_previous_release(&self, job_id: i64) -> Result<bool, Error> {
        let last_two = sqlx::query!(
            r#"SELECT kind AS "kind!", lease_token, (detail ? 'pay_sent') AS "says_pay_sent!"
               FROM ticketing_events WHERE job_id = $1 ORDER BY id DESC LIMIT 2"#,
            job_id
        )
        .fetch_all(self.pool())
        .await?;
        Ok(match last_two.as_slice() {
            [released, intent] => {
                released.kind == EventKind::Released.as_str()
                    && !released.says_pay_sent
                    && intent.kind == EventKind::PayIntent.as_str()
                    && released.lease_token.is_some()
                    && released.lease_token == intent.lease_token
            }
            _ => false,
        })
    }

    /// Wakes every listening worker.
    pub async fn notify(&self) -> Result<(), Error> {
        sqlx::query!("SELECT pg_notify('ticketing_jobs', 'wake')")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes up to `batch` finished rows (ticketed, failed, cancelled; never needs_review,
    /// which waits for a person) finalized more than `retention_days` ago, with their events.
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
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED),
               gone AS (
                   DELETE FROM ticketing_jobs j USING doomed
                   WHERE j.id = doomed.id
                     AND j.state IN ('ticketed', 'failed', 'cancelled')
                     AND j.finalized_at < ticketing_now() - $1::integer * interval '1 day'
                   RETURNING j.id),
               events AS (
                   DELETE FROM ticketing_events e USING gone WHERE e.job_id = gone.id)
               SELECT count(*) AS "n!" FROM gone"#,
            retention_days as i32,
            batch
        )
        .fetch_one(self.pool())
        .await?;
        Ok(done as u64)
    }

    /// Seconds since the oldest due, unleased row became due (0 when none): the backlog age.
    pub async fn oldest_due_age(&self) -> Result<f64, Error> {
        let age = sqlx::query_scalar!(
            r#"SELECT COALESCE(EXTRACT(EPOCH FROM (ticketing_now() - min(run_at)))::float8, 0) AS "age!"
               FROM ticketing_jobs
               WHERE state IN ('pending', 'paying', 'ticketing') AND run_at <= ticketing_now()
                 AND (lease_expires_at IS NULL OR lease_expires_at <= ticketing_now())"#
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
