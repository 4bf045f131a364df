//! The SQL. Time-dependent statements take `now` from the caller so tests can move the clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::domain::State;
use super::rows::{CardJson, ClaimedJob, EventRow, JobRow, SealedCard};
use super::Error;

/// Milliseconds as the `bigint` the SQL multiplies by `interval '1 millisecond'`.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The right to change one claimed row: its id and the lease token of the claim. The state is
/// the one the row is in now (every write checks it too).
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    pub token: i64,
    pub order_no: String,
    pub state: State,
}

/// One transition of a claimed row, applied by [`JobStore::apply`] as one fenced statement
/// that also appends the event. Built by the worker's named constructors.
#[derive(Debug, Clone)]
pub struct Change {
    /// The event's kind (`pay_answered`, `query_answered`, `pay_intent`, ...).
    pub kind: &'static str,
    pub to: State,
    /// Next time the row is due; `None` keeps `run_at`.
    pub run_at: Option<DateTime<Utc>>,
    /// Ends this worker's lease (every step's last write does; a new pay intent does not).
    pub release: bool,
    /// Records a new pay intent: `pay_attempts + 1`, `pay_started_at = now`.
    pub new_intent: bool,
    /// Counts one more order query.
    pub poll: bool,
    /// `last_error`; `None` clears it.
    pub error: Option<String>,
    /// An unclear answer: `error_streak + 1` (else the streak resets).
    pub unclear: bool,
    pub atrip_status: Option<i64>,
    pub atrip_message: Option<String>,
    pub order_status: Option<String>,
    pub atrip_pnr: Option<String>,
    /// Set with `to = Ticketed` only.
    pub pnr: Option<String>,
    pub tickets: Option<Value>,
    /// The complete ticket set of this answer, to be seen again (`None` clears it).
    pub tickets_seen: Option<Value>,
    /// Erases the card (a resolved payment), keeping `card_brand`/`card_last4` when given.
    pub erase_card: bool,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    /// The event's redacted detail.
    pub detail: Value,
}

impl Change {
    /// A change to `to` that releases the lease and touches nothing else.
    pub fn new(kind: &'static str, to: State) -> Self {
        Change {
            kind,
            to,
            run_at: None,
            release: true,
            new_intent: false,
            poll: false,
            error: None,
            unclear: false,
            atrip_status: None,
            atrip_message: None,
            order_status: None,
            atrip_pnr: None,
            pnr: None,
            tickets: None,
            tickets_seen: None,
            erase_card: false,
            card_brand: None,
            card_last4: None,
            detail: Value::Object(Default::default()),
        }
    }
}

/// A row as an enqueuer writes it. No `Debug`: it may hold a card.
#[derive(Default, Clone)]
pub struct NewJob {
    pub order_no: String,
    pub payment_method: i16,
    pub card: Option<Value>,
    pub pay_deadline: Option<DateTime<Utc>>,
    pub client_order_no: Option<String>,
    /// Lower runs first; `None` is 0.
    pub priority: Option<i16>,
    /// Not before; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
}

/// Access to the job table.
#[derive(Clone, Debug)]
pub struct JobStore {
    pool: PgPool,
}

impl JobStore {
    pub fn new(pool: PgPool) -> Self {
        JobStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims up to `limit` due rows for `owner`, in one statement: locks them with
    /// `FOR NO KEY UPDATE SKIP LOCKED` (other workers skip them), bumps their lease token,
    /// moves `pending` rows to `paying` with a new pay intent, and appends one event each.
    /// When this commits, the database says "a payment may have been sent" for every row that
    /// was pending — before any `pay.do` leaves.
    pub async fn claim(
        &self,
        owner: &str,
        limit: i64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>, Error> {
        let rows = sqlx::query_as!(
            ClaimedJob,
            r#"
WITH due AS (
    SELECT id, state AS claimed_from
    FROM ticketing_jobs
    WHERE state IN ('pending', 'paying', 'ticketing')
      AND run_at <= $1
      AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
    ORDER BY priority, run_at, id
    LIMIT $2
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE ticketing_jobs j SET
        lease_token = j.lease_token + 1,
        lease_owner = $3,
        lease_expires_at = $1 + $4::bigint * interval '1 millisecond',
        state = CASE WHEN j.state = 'pending' THEN 'paying' ELSE j.state END,
        pay_attempts = j.pay_attempts + CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END,
        pay_started_at = CASE WHEN j.state = 'pending' THEN $1 ELSE j.pay_started_at END,
        updated_at = $1
    FROM due
    WHERE j.id = due.id
    RETURNING j.id, j.order_no, j.payment_method, j.card, j.card_sealed, j.client_order_no, j.pay_deadline,
              j.state, due.claimed_from, j.lease_token, j.pay_attempts, j.poll_attempts,
              j.error_streak, j.pay_started_at, j.paid_at, j.tickets_seen, j.created_at,
              j.priority, j.run_at
), events AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, $1,
           CASE WHEN claimed_from = 'pending' THEN 'pay_intent' ELSE 'claimed' END,
           state, lease_token, $3,
           jsonb_build_object('claimed_from', claimed_from, 'pay_attempts', pay_attempts)
    FROM claimed
)
SELECT id AS "id!", order_no AS "order_no!", payment_method AS "payment_method!",
       card AS "card: CardJson", card_sealed AS "card_sealed: SealedCard", client_order_no,
       pay_deadline, state AS "state!",
       claimed_from AS "claimed_from!", lease_token AS "lease_token!",
       pay_attempts AS "pay_attempts!", poll_attempts AS "poll_attempts!",
       error_streak AS "error_streak!", pay_started_at, paid_at, tickets_seen,
       created_at AS "created_at!"
FROM claimed
ORDER BY priority, run_at, id
"#,
            now,
            limit,
            owner,
            millis(lease),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Extends the leases this worker still holds, in one statement; returns the ids still
    /// held. A lease missing from the answer was lost: its step must stop.
    pub async fn renew(
        &self,
        owner: &str,
        leases: &[(i64, i64)],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, Error> {
        let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().copied().unzip();
        let held = sqlx::query_scalar!(
            r#"
UPDATE ticketing_jobs j
SET lease_expires_at = $1 + $2::bigint * interval '1 millisecond'
FROM unnest($3::bigint[], $4::bigint[]) AS l(id, token)
WHERE j.id = l.id AND j.lease_token = l.token AND j.lease_owner = $5
  AND j.lease_expires_at > $1
RETURNING j.id
"#,
            now,
            millis(lease),
            &ids,
            &tokens,
            owner,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(held)
    }

    /// Applies one transition to a claimed row: one fenced statement (id, lease token and
    /// current state must all match) that also appends the event. Zero rows is `LeaseLost`.
    pub async fn apply(
        &self,
        lease: &mut Lease,
        worker: &str,
        change: &Change,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let hit = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        state = $4,
        run_at = COALESCE($5, run_at),
        updated_at = $1,
        lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
        lease_expires_at = CASE WHEN $6 THEN NULL ELSE lease_expires_at END,
        pay_attempts = pay_attempts + CASE WHEN $7 THEN 1 ELSE 0 END,
        pay_started_at = CASE WHEN $7 THEN $1 ELSE pay_started_at END,
        poll_attempts = poll_attempts + CASE WHEN $8 THEN 1 ELSE 0 END,
        last_error = $9,
        error_streak = CASE WHEN $10 THEN error_streak + 1 ELSE 0 END,
        atrip_status = COALESCE($11, atrip_status),
        atrip_message = CASE WHEN $11::integer IS NULL THEN atrip_message ELSE $12 END,
        order_status = COALESCE($13, order_status),
        atrip_pnr = COALESCE($14, atrip_pnr),
        pnr = $15,
        ticket_numbers = $16,
        tickets_seen = $17,
        paid_at = CASE WHEN $4 IN ('ticketing', 'ticketed') THEN COALESCE(paid_at, $1) ELSE paid_at END,
        ticketed_at = CASE WHEN $4 = 'ticketed' THEN $1 ELSE NULL END,
        finalized_at = CASE WHEN $4 IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                            THEN $1 ELSE NULL END,
        card = CASE WHEN $18 THEN NULL ELSE card END,
        card_sealed = CASE WHEN $18 THEN NULL ELSE card_sealed END,
        card_brand = COALESCE($19, card_brand),
        card_last4 = COALESCE($20, card_last4)
    WHERE id = $2 AND lease_token = $3 AND state = $21
    RETURNING id, order_no, state
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, $1, $22, state, $3, $23, $24 FROM u
RETURNING job_id
"#,
            now,
            lease.id,
            lease.token,
            change.to.as_str(),
            change.run_at,
            change.release,
            change.new_intent,
            change.poll,
            change.error.as_deref(),
            change.unclear,
            change.atrip_status.and_then(|s| i32::try_from(s).ok()),
            change.atrip_message.as_deref(),
            change.order_status.as_deref(),
            change.atrip_pnr.as_deref(),
            change.pnr.as_deref(),
            change.tickets.as_ref(),
            change.tickets_seen.as_ref(),
            change.erase_card,
            change.card_brand.as_deref(),
            change.card_last4.as_deref(),
            lease.state.as_str(),
            change.kind,
            worker,
            &change.detail,
        )
        .fetch_optional(&self.pool)
        .await?;
        match hit {
            Some(_) => {
                lease.state = change.to;
                Ok(())
            }
            None => Err(Error::LeaseLost {
                job_id: lease.id,
                order_no: lease.order_no.clone(),
            }),
        }
    }

    /// One row by order number.
    pub async fn job(&self, order_no: &str) -> Result<Option<JobRow>, Error> {
        let row = sqlx::query_as!(
            JobRow,
            r#"SELECT id, order_no, client_order_no, payment_method, card AS "card: CardJson",
                      card_sealed AS "card_sealed: SealedCard", card_brand, card_last4, pay_deadline, priority, state, run_at, created_at,
                      updated_at, lease_owner, lease_expires_at, lease_token, pay_attempts,
                      poll_attempts, error_streak, pay_started_at, paid_at, ticketed_at,
                      finalized_at, atrip_status, atrip_message, order_status, atrip_pnr, pnr,
                      ticket_numbers, tickets_seen, last_error
               FROM ticketing_jobs WHERE order_no = $1"#,
            order_no
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// An order's history, oldest first (through the row's id, which the events index serves).
    pub async fn events(&self, order_no: &str) -> Result<Vec<EventRow>, Error> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id, job_id, order_no, at, kind, state, lease_token, worker, detail
               FROM ticketing_events
               WHERE job_id = (SELECT id FROM ticketing_jobs WHERE order_no = $1)
               ORDER BY id"#,
            order_no
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// How many rows are in each state (for the CLI, metrics and tests).
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query!(
            r#"SELECT state AS "state!", count(*) AS "n!" FROM ticketing_jobs GROUP BY state ORDER BY state"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
    }

    /// Whether any row still needs the worker (pending, paying or ticketing).
    pub async fn unfinished(&self) -> Result<i64, Error> {
        let n = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ticketing_jobs WHERE state IN ('pending', 'paying', 'ticketing')"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Inserts one order the way an enqueuer does (tests and the demo).
    pub async fn enqueue(
        &self,
        order_no: &str,
        payment_method: i16,
        card: Option<&Value>,
        pay_deadline: Option<DateTime<Utc>>,
    ) -> Result<i64, Error> {
        self.insert(&NewJob {
            order_no: order_no.to_owned(),
            payment_method,
            card: card.cloned(),
            pay_deadline,
            ..NewJob::default()
        })
        .await
    }

    /// Inserts one row with every column an enqueuer may write (the `enqueue` command).
    pub async fn insert(&self, job: &NewJob) -> Result<i64, Error> {
        let id = sqlx::query_scalar!(
            r#"INSERT INTO ticketing_jobs
                   (order_no, payment_method, card, pay_deadline, client_order_no, priority, run_at)
               VALUES ($1, $2, $3, $4, $5, COALESCE($6, 0::smallint), COALESCE($7, now()))
               RETURNING id"#,
            job.order_no,
            job.payment_method,
            job.card.as_ref(),
            job.pay_deadline,
            job.client_order_no.as_deref(),
            job.priority,
            job.run_at
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_saturates() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), i64::MAX);
    }
}
