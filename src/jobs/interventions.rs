//! The SQL of operators' actions: list, retry (rule P7) and cancel (rule P8). `machine::operator`
//! decides each action on the row as read; each change is then one statement that checks the
//! state it requires again, so it cannot race a worker's claim into a half-decided row.

use serde_json::Value;

use super::rows::{job_rows, JobRow};
use super::store::JobStore;
use super::Error;
use crate::domain::{EventKind, State};
use crate::machine::operator;

/// What an operator's retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    /// `ticketing` when an answer once showed the order paid, else `paying`.
    pub state: State,
    /// Whether the retry allows one more `pay.do` (once the order query shows it unpaid).
    pub may_pay: bool,
}

/// Fresh card data an operator gives with a retry: in clear, or sealed to the worker's key
/// (what the CLI writes when it has the key: a production database refuses plain cards).
#[derive(Debug, Clone, Copy)]
pub enum FreshCard<'a> {
    Plain(&'a Value),
    Sealed(&'a [u8]),
}

impl JobStore {
    /// Rows, newest first, optionally in one state.
    pub async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<JobRow>, Error> {
        let rows = job_rows!(
            r#"WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"#,
            state.map(State::as_str),
            limit
        )
        .fetch_all(self.db())
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
        card: Option<FreshCard<'_>>,
        repay: bool,
        by: &str,
    ) -> Result<Retried, Error> {
        self.retry_seen(order_no, card, repay, by, None).await
    }

    /// [`JobStore::retry`] of the row as a person saw it: `seen_attempts` is the number of pay
    /// intents the page they confirmed on showed. If the row has recorded another since (a
    /// second operator's `--repay` and its `pay.do`), the retry is refused and changes nothing:
    /// a confirmation given on an older page never allows one more `pay.do` (rule P7).
    pub async fn retry_seen(
        &self,
        order_no: &str,
        card: Option<FreshCard<'_>>,
        repay: bool,
        by: &str,
        seen_attempts: Option<i32>,
    ) -> Result<Retried, Error> {
        let row = self
            .job(order_no)
            .await?
            .ok_or_else(|| Error::NotFound(order_no.to_owned()))?;
        let refuse = |reason: String| Error::Refused {
            order_no: order_no.to_owned(),
            reason,
        };
        if let Some(seen) = seen_attempts.filter(|seen| *seen != row.pay_attempts) {
            return Err(refuse(format!(
                "it changed since the page you confirmed on: that page showed {seen} pay intent(s), the order has {} now; look at the order again",
                row.pay_attempts
            )));
        }
        let paid = row.paid_words();
        let state = State::parse(&row.state).ok_or_else(|| {
            refuse(format!(
                "it is {}; retry is only for failed or needs_review orders",
                row.state
            ))
        })?;
        let plan = operator::retry(&row.view(state, paid.as_deref()), repay, card.is_some())
            .map_err(refuse)?;
        let (to, permits, may_pay) = (plan.to, plan.permits, plan.may_pay);
        let kind = if repay {
            EventKind::OperatorRepay
        } else {
            EventKind::OperatorRetry
        };
        let (plain, sealed) = match card {
            Some(FreshCard::Plain(card)) => (Some(card), None),
            Some(FreshCard::Sealed(sealed)) => (None, Some(sealed)),
            None => (None, None),
        };
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = $2, run_at = ticketing_now(), updated_at = ticketing_now(), finalized_at = NULL,
        last_error = NULL, error_streak = 0, tickets_seen = NULL, lease_owner = NULL,
        lease_expires_at = NULL, phase_started_at = ticketing_now(), pay_permits = $3,
        card = CASE WHEN $13::bytea IS NOT NULL THEN NULL ELSE COALESCE($4, card) END,
        card_sealed = CASE WHEN $4::jsonb IS NOT NULL THEN NULL ELSE COALESCE($13, card_sealed) END
    WHERE id = $1 AND state IN ('failed', 'needs_review') AND lease_token = $5
      AND paid_at IS NOT DISTINCT FROM $6 AND pay_attempts = $7 AND pay_not_sent = $8
      AND order_status IS DISTINCT FROM '-3'
    RETURNING id, order_no, state, lease_token, updated_at
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, updated_at, $9, state, lease_token, $10,
       jsonb_build_object('from', $11::text, 'fresh_card', $4::jsonb IS NOT NULL OR $13::bytea IS NOT NULL,
                          'may_pay', $12::boolean, 'pay_permits', $3::integer)
FROM u
RETURNING job_id"#,
            row.id,
            to.as_str(),
            permits,
            plain,
            row.lease_token,
            row.paid_at,
            row.pay_attempts,
            row.pay_not_sent,
            kind.as_str(),
            by,
            row.state,
            may_pay,
            sealed,
        )
        .fetch_optional(self.db())
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
        let row = self
            .job(order_no)
            .await?
            .ok_or_else(|| Error::NotFound(order_no.to_owned()))?;
        let refused = |row: &JobRow| Error::Refused {
            order_no: order_no.to_owned(),
            reason: match State::parse(&row.state) {
                None => format!(
                    "it is {}; cancel is only for pending or needs_review orders",
                    row.state
                ),
                Some(state) => operator::cancel(&row.view(state, row.paid_at.map(|_| "paid")))
                    .err()
                    .unwrap_or_else(|| "it changed while cancelling; look again".into()),
            },
        };
        let cancellable = State::parse(&row.state).is_some_and(|state| {
            operator::may_cancel(&row.view(state, row.paid_at.map(|_| "paid")))
        });
        if !cancellable {
            return Err(refused(&row));
        }
        // The same rule again in the statement, on the row as it is when the update runs.
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
        .fetch_optional(self.db())
        .await?;
        if done.is_some() {
            return Ok(());
        }
        let row = self
            .job(order_no)
            .await?
            .ok_or_else(|| Error::NotFound(order_no.to_owned()))?;
        Err(refused(&row))
    }
}
