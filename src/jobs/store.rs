//! The SQL of the worker's claim and writes. Every time that decides who may touch a row (a
//! lease, a due time, an intent, a deadline) is the database's `ticketing_now()`, never this
//! process's clock (docs/design.md, rule T1): replicas' clocks differ.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::db::{Conn, Db};
use super::rows::{job_rows, ClaimRow, ClaimedJob, EventRow, JobRow, Lease, SealedCard};
use super::write::Write;
use super::Error;
use crate::domain::{EventKind, State};

/// Milliseconds as the `bigint` the SQL multiplies by `interval '1 millisecond'`.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Below this many rows (by the planner's estimate) `ticketed` rows are counted exactly.
pub const EXACT_BELOW: i64 = 50_000;

/// A write that landed: the database's time it was made at, and the server
/// (`jobs::SERVER_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub at: DateTime<Utc>,
    pub server: String,
}

/// What a lease renewal did: the leases it extended, and those it skipped because another
/// session holds their row locked (neither extended nor lost). The others were lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewed {
    pub kept: Vec<i64>,
    pub busy: Vec<i64>,
}

/// A row as an enqueuer writes it. No `Debug`: it may hold a card.
#[derive(Default, Clone)]
pub struct NewJob {
    pub order_no: String,
    pub payment_method: i16,
    pub card: Option<Value>,
    /// The card sealed to the worker's key instead (never both).
    pub card_sealed: Option<Vec<u8>>,
    pub pay_deadline: Option<DateTime<Utc>>,
    pub client_order_no: Option<String>,
    /// Lower runs first; `None` is 0.
    pub priority: Option<i16>,
    /// Not before; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
    /// How many passengers the order holds (rule F1b); `None`: the first answer that lists
    /// them says.
    pub passengers: Option<i16>,
    /// What the order costs from the deposit, a decimal with at most 2 places (rule P1e).
    pub price: Option<String>,
}

/// Access to the job table.
#[derive(Clone, Debug)]
pub struct JobStore {
    db: Db,
}

impl JobStore {
    /// A store on `db`: a pool (each connection a session of its own), or a [`Db`] that says
    /// how to reach the database through a transaction pooler.
    pub fn new(db: impl Into<Db>) -> Self {
        JobStore { db: db.into() }
    }

    /// The pool underneath, for what is not a statement of the store: its size (metrics), its
    /// connect options (`LISTEN`).
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// How the store's statements reach the database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A connection for the worker's hot path (claims, renewals, writes), counting every wait
    /// for a free pool slot in the metrics: the steps' HTTP calls hold no connection, so with a
    /// pool of the right size this stays at zero.
    pub(super) async fn conn(&self) -> Result<Conn, Error> {
        let asked = std::time::Instant::now();
        let conn = self.db.acquire().await?;
        crate::metrics::global().db_acquired(asked.elapsed());
        Ok(conn)
    }

    /// Claims up to `limit` due rows for `owner`, in one statement: locks them with
    /// `FOR NO KEY UPDATE SKIP LOCKED` (other workers skip them), bumps their lease token,
    /// moves `pending` rows to `paying` with a new pay intent (and its event), all in the
    /// database's time. When this commits, the database says "a payment may have been sent" for
    /// every row that was pending, before any `pay.do` leaves (and the durability gate then
    /// checks that a failover would find it, rule P1b). `pending` rows are claimed only with
    /// `pay` (not while the gate knows intents cannot be made durable), the others only with
    /// `follow` (not while ATRIP asks us to slow down our queries: `pay.do` is not
    /// rate-limited).
    ///
    /// The commit is flushed whatever the session's `synchronous_commit` says: a DBA's
    /// `synchronous_commit = off` would let it return before its WAL is on disk, and a crash
    /// would then forget an intent whose `pay.do` has left. `set_config(…, true)` lasts until
    /// the end of the statement's own transaction, so it holds behind a transaction pooler
    /// too; the other values flush locally already.
    pub async fn claim(
        &self,
        owner: &str,
        limit: i64,
        lease: Duration,
        pay: bool,
        follow: bool,
        nonce: &str,
    ) -> Result<Vec<ClaimedJob>, Error> {
        let rows = sqlx::query_as!(
            ClaimRow,
            r#"
WITH due AS (
    SELECT id, claimed_from FROM ticketing_due($4::boolean, $5::boolean, $1::integer)
), claimed AS (
    UPDATE ticketing_jobs j SET
        lease_token = j.lease_token + 1,
        lease_owner = $2,
        lease_expires_at = ticketing_now() + $3::bigint * interval '1 millisecond',
        state = CASE WHEN j.state = 'pending' THEN 'paying' ELSE j.state END,
        pay_attempts = j.pay_attempts + CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END,
        pay_started_at = CASE WHEN j.state = 'pending' THEN ticketing_now() ELSE j.pay_started_at END,
        phase_started_at = CASE WHEN j.state = 'pending' THEN ticketing_now() ELSE j.phase_started_at END,
        updated_at = CASE WHEN j.state = 'pending' THEN ticketing_now() ELSE j.updated_at END
    FROM due
    WHERE j.id = due.id
      AND (CASE WHEN current_setting('synchronous_commit') = 'off'
                THEN set_config('synchronous_commit', 'on', true) ELSE 'kept' END) IS NOT NULL
    RETURNING j.id, j.order_no, j.payment_method, j.card, j.card_sealed, j.client_order_no, j.pay_deadline,
              j.state, due.claimed_from, j.lease_token, j.pay_attempts, j.pay_not_sent, j.pay_permits,
              j.poll_attempts, j.error_streak, j.pay_started_at, j.paid_at, j.last_pay_outcome,
              j.phase_started_at, j.tickets_seen, j.created_at, j.lease_expires_at, j.priority, j.run_at,
              j.traceparent, j.passengers
), events AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, ticketing_now(), 'pay_intent', state, lease_token, $2,
           jsonb_build_object('claimed_from', claimed_from, 'pay_attempts', pay_attempts,
                              'claim', $6::text)
    FROM claimed
    WHERE claimed_from = 'pending'
)
SELECT id AS "id!", order_no AS "order_no!", payment_method AS "payment_method!",
       card::text AS card_text, card_sealed AS "card_sealed: SealedCard", client_order_no,
       CASE WHEN isfinite(pay_deadline) THEN pay_deadline END AS pay_deadline,
       pay_deadline IS NOT NULL AND NOT isfinite(pay_deadline) AS "pay_deadline_infinite!",
       state AS "state!", claimed_from AS "claimed_from!",
       lease_token AS "lease_token!", pay_attempts AS "pay_attempts!",
       pay_not_sent AS "pay_not_sent!", pay_permits AS "pay_permits!",
       poll_attempts AS "poll_attempts!", error_streak AS "error_streak!", pay_started_at,
       paid_at, last_pay_outcome, phase_started_at, tickets_seen, passengers,
       CASE WHEN isfinite(created_at) THEN created_at END AS created_at,
       lease_expires_at AS "lease_expires_at!", ticketing_now() AS "db_now!", run_at AS "run_at!",
       CASE WHEN claimed_from = 'pending' THEN
           (SELECT format('paying %s has been paused since %s by %s: %s',
                          CASE WHEN p.method = 0 THEN 'every method' ELSE 'method ' || p.method END,
                          p.paused_at, p.paused_by, p.reason)
            FROM ticketing_pauses p
            WHERE p.resumed_at IS NULL AND p.method IN (0, payment_method)
            ORDER BY p.paused_at LIMIT 1)
       END AS paused,
       left(traceparent, 64) AS traceparent,
       (SELECT system_identifier::text FROM pg_control_system())
           || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS "server!"
FROM claimed
ORDER BY claimed_from <> 'pending', priority, pay_deadline, run_at, id
"#,
            i32::try_from(limit).unwrap_or(i32::MAX),
            owner,
            millis(lease),
            pay,
            follow,
            nonce,
        )
        .fetch_all(&mut self.conn().await?)
        .await?;
        // One row that cannot be read must not cost the others their claim: the values an
        // enqueuer writes are read defensively (card data as text, times that may be
        // infinite), and what is wrong with a row is carried to its pay step, which fails
        // that order alone, naming the field (rule P1a).
        Ok(rows.into_iter().map(ClaimedJob::from_row).collect())
    }

    /// How many `pending` rows are due now, unclaimed and not paused (counted up to `cap`,
    /// through the claim's index): the backlog an order that missed its deadline waited
    /// behind, and whether a step that waits should give its slot up (rule S2).
    pub async fn due_payments(&self, cap: i64) -> Result<i64, Error> {
        let n = sqlx::query_scalar!(
            r#"
SELECT count(*) AS "n!" FROM (
    SELECT 1 FROM ticketing_jobs
    WHERE state = 'pending' AND run_at <= ticketing_now()
      AND (lease_expires_at IS NULL OR lease_expires_at <= ticketing_now())
      AND NOT EXISTS (SELECT 1 FROM ticketing_pauses p
                      WHERE p.resumed_at IS NULL AND p.method IN (0, payment_method))
      -- (With every method paused, nothing is read: a one-time test.)
      AND NOT EXISTS (SELECT 1 FROM ticketing_pauses WHERE resumed_at IS NULL AND method = 0)
    LIMIT $1
) due
"#,
            cap
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok(n)
    }

    /// Withdraws the intents of a claim whose answer never reached `owner` (the connection
    /// broke after the commit, or reading the answer failed): no step ran for its rows, so no
    /// `pay.do` left for them, and each goes back to `pending`, as if never claimed, with an
    /// event saying so. Fenced by the claim's `nonce` (in its intent events), the lease token
    /// the claim gave, `owner`, and a row untouched since (still `paying` with that one
    /// intent and no answer); rows of that claim in other states keep their lease until it
    /// runs out. Without this, each such order would later show unpaid "after a pay.do" and
    /// go to a person (rule P5d). Returns how many rows went back.
    pub async fn withdraw_lost_claim(&self, owner: &str, nonce: &str) -> Result<u64, Error> {
        let n = sqlx::query_scalar!(
            r#"
WITH lost AS (
    SELECT e.job_id, e.lease_token FROM ticketing_events e
    WHERE e.kind = 'pay_intent' AND e.worker = $1 AND e.detail->>'claim' = $2
      AND e.at > ticketing_now() - interval '1 hour'
), u AS (
    UPDATE ticketing_jobs j SET
        state = 'pending', pay_attempts = 0, pay_started_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL,
        run_at = ticketing_now(), updated_at = ticketing_now()
    FROM lost
    WHERE j.id = lost.job_id AND j.lease_token = lost.lease_token AND j.lease_owner = $1
      AND j.state = 'paying' AND j.pay_attempts = 1 AND j.pay_not_sent = 0
      AND j.last_pay_outcome IS NULL AND j.paid_at IS NULL
    RETURNING j.id, j.order_no, j.state, j.lease_token, j.updated_at
), e AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, updated_at, 'released', state, lease_token, $1,
           jsonb_build_object('reason', 'the claim''s answer never reached this worker: its pay intent is withdrawn, nothing was sent',
                              'pay_sent', false, 'claim', $2::text, 'withdrawn', true)
    FROM u
    RETURNING job_id
)
SELECT count(*) AS "n!" FROM e
"#,
            owner,
            nonce,
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Extends the leases this worker still holds, in one statement. Each lease is renewed,
    /// lost (another token, owner, or expired: its step must stop), or busy: another session
    /// holds the row locked, and the renewal skips it rather than wait (rule W4), so a locked
    /// row never holds up the renewal of the others, nor deadlocks with a batch of results
    /// that holds some of them. Rows are locked in id order, as the result writes lock them.
    pub async fn renew(
        &self,
        owner: &str,
        leases: &[(i64, i64)],
        lease: Duration,
    ) -> Result<Renewed, Error> {
        let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().copied().unzip();
        let rows = sqlx::query!(
            r#"
WITH l AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS l(id, token)
), locked AS (
    SELECT j.id FROM ticketing_jobs j
    WHERE j.id IN (SELECT id FROM l)
    ORDER BY j.id
    FOR NO KEY UPDATE SKIP LOCKED
), u AS (
    UPDATE ticketing_jobs j
    SET lease_expires_at = ticketing_now() + $1::bigint * interval '1 millisecond'
    FROM l
    WHERE j.id = l.id AND j.id IN (SELECT id FROM locked)
      AND j.lease_token = l.token AND j.lease_owner = $4
      AND j.lease_expires_at > ticketing_now()
    RETURNING j.id
)
SELECT l.id AS "id!", (u.id IS NOT NULL) AS "renewed!",
       (u.id IS NULL AND l.id NOT IN (SELECT id FROM locked)
        AND EXISTS (SELECT 1 FROM ticketing_jobs b WHERE b.id = l.id)) AS "busy!"
FROM l LEFT JOIN u ON u.id = l.id
"#,
            millis(lease),
            &ids,
            &tokens,
            owner,
        )
        .fetch_all(&mut self.conn().await?)
        .await?;
        let mut renewed = Renewed::default();
        for r in rows {
            if r.renewed {
                renewed.kept.push(r.id);
            } else if r.busy {
                renewed.busy.push(r.id);
            }
        }
        Ok(renewed)
    }

    /// Applies one write to a claimed row: [`JobStore::apply_many`] with one item.
    pub async fn apply(
        &self,
        lease: &mut Lease,
        worker: &str,
        w: &Write,
    ) -> Result<Applied, Error> {
        let mut results = self.apply_many(&[(&*lease, worker, w)]).await?;
        let landed = results.pop().expect("one result per item")?;
        lease.outcome(w, landed)
    }

    /// A write of this lease was refused by the table's `constraint`: the row goes to
    /// `needs_review` naming it (rule W2). Fenced like any write (W1), the lease's server
    /// included. What the refused write
    /// knew about the payment is not lost with it: evidence that the order is paid is recorded
    /// (rule P3: no permit left, so no `retry --repay` can pay it again), an intent it says
    /// never left is counted as not sent, and the card data is erased (brand and last four
    /// kept) when a `pay.do` may have reached ATRIP or the write was a resolution (rule P9).
    /// Nothing else of the refused write is kept: one of its values was the refused one.
    ///
    /// Those few values could be the refused ones too (a bug in what the step decided), so a
    /// refusal of this write is met by a plainer one: first without the not-sent count and
    /// the card summary, then without the evidence too (no permit left all the same). Only a
    /// refusal of the plainest is an error, and the row then waits out its lease.
    pub async fn review_refused_write(
        &self,
        lease: &mut Lease,
        worker: &str,
        constraint: &str,
        refused: &Write,
    ) -> Result<(), Error> {
        let reason = crate::machine::ReviewReason::ConstraintViolated {
            constraint: constraint.to_owned(),
        };
        let error = format!("order {}: {reason}", lease.order_no);
        let mut level = 0;
        loop {
            let full = level == 0;
            // What is kept at this level. The fence below holds the row's pay counters to the
            // lease's, so what follows from them is worked out here.
            let evidence = refused.evidence.filter(|_| level < 2).map(|e| e.as_str());
            let not_sent = full && refused.not_sent;
            let card = if full {
                refused.card.clone()
            } else {
                Default::default()
            };
            // pay.do that may have reached ATRIP once this review is in.
            let sends = lease.pay_attempts - lease.pay_not_sent - i32::from(not_sent);
            let erase_card = refused.erase_card || evidence.is_some() || sends > 0;
            // Evidence leaves no permit (rule P3); so does the plainest review, whose
            // evidence, if any, could not be recorded.
            let no_permit_left = evidence.is_some() || level == 2;
            let hit = sqlx::query_scalar!(
                r#"
WITH u AS (
    UPDATE ticketing_jobs j SET
        state = 'needs_review', updated_at = ticketing_now(), finalized_at = ticketing_now(),
        lease_owner = NULL, lease_expires_at = NULL, last_error = $4,
        pnr = NULL, ticket_numbers = NULL, ticketed_at = NULL,
        paid_at = CASE WHEN $8::text IS NULL THEN j.paid_at
                       ELSE COALESCE(j.paid_at, ticketing_now()) END,
        paid_evidence = COALESCE(j.paid_evidence, $8::text),
        pay_permits = CASE WHEN $15 THEN LEAST(j.pay_permits, $16) ELSE j.pay_permits END,
        pay_not_sent = j.pay_not_sent + CASE WHEN $12 THEN 1 ELSE 0 END,
        card = CASE WHEN $9 THEN NULL ELSE j.card END,
        card_sealed = CASE WHEN $9 THEN NULL ELSE j.card_sealed END,
        card_brand = COALESCE($13, j.card_brand),
        card_last4 = COALESCE($14, j.card_last4)
    FROM (SELECT card IS NOT NULL OR card_sealed IS NOT NULL AS had_card
          FROM ticketing_jobs WHERE id = $1) o
    WHERE j.id = $1 AND j.lease_token = $2 AND j.state = $3
      AND j.pay_attempts = $10 AND j.pay_not_sent = $11
      AND $18 = (SELECT system_identifier::text FROM pg_control_system())
                || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)
    RETURNING j.id, j.order_no, j.state, j.updated_at, j.paid_evidence,
              o.had_card AND $9 AS card_erased
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, updated_at, 'constraint_violated', state, $2, $5,
       jsonb_strip_nulls(jsonb_build_object('constraint', $6::text, 'refused', $7::text,
                                            'paid_evidence', paid_evidence,
                                            'card_erased', card_erased,
                                            'fallback', NULLIF($17::integer, 0)))
FROM u
RETURNING job_id
"#,
                lease.id,
                lease.token,
                lease.state.as_str(),
                error,
                worker,
                constraint,
                refused.kind.as_str(),
                evidence,
                erase_card,
                lease.pay_attempts,
                lease.pay_not_sent,
                not_sent,
                card.brand,
                card.last4,
                no_permit_left,
                sends,
                level,
                lease.server,
            )
            .fetch_optional(&self.db)
            .await
            .map_err(|e| Error::from_write(e, lease));
            match hit {
                Ok(Some(_)) => {
                    lease.state = State::NeedsReview;
                    return Ok(());
                }
                Ok(None) => {
                    return Err(Error::LeaseLost {
                        job_id: lease.id,
                        order_no: lease.order_no.clone(),
                    })
                }
                Err(Error::ConstraintViolated { constraint, .. }) if level < 2 => {
                    tracing::error!(
                        order_no = %lease.order_no, constraint,
                        "the table refused the review of a refused write too; trying a plainer one"
                    );
                    level += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One row by order number.
    pub async fn job(&self, order_no: &str) -> Result<Option<JobRow>, Error> {
        let row = job_rows!(r#"WHERE order_no = $1"#, order_no)
            .fetch_optional(&self.db)
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
        .fetch_all(&self.db)
        .await?;
        Ok(rows)
    }

    /// How many rows are in each state, read without scanning the finished rows: the states
    /// that need the worker or a person are counted exactly through their partial indexes;
    /// `ticketed` is counted exactly while the table is small (under [`EXACT_BELOW`] rows), and
    /// above that is the planner's estimate of the table's rows minus the exact others. A
    /// scrape stays cheap at millions of finished rows.
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query!(
            r#"
SELECT state AS "state!", count(*) AS "n!" FROM ticketing_jobs
WHERE state IN ('pending', 'paying', 'ticketing') GROUP BY state
UNION ALL
SELECT state, count(*) FROM ticketing_jobs
WHERE state IN ('failed', 'needs_review', 'cancelled') GROUP BY state
UNION ALL
SELECT 'rows_estimate', (CASE WHEN c.relpages > 0
        THEN c.reltuples / c.relpages
             * (pg_relation_size(c.oid) / current_setting('block_size')::integer)
        ELSE 0 END)::bigint
FROM pg_class c WHERE c.oid = 'ticketing_jobs'::regclass
"#
        )
        .fetch_all(&self.db)
        .await?;
        let mut counts: Vec<(String, i64)> = Vec::new();
        let mut estimate = 0;
        for r in rows {
            if r.state == "rows_estimate" {
                estimate = r.n;
            } else {
                counts.push((r.state, r.n));
            }
        }
        let others: i64 = counts.iter().map(|(_, n)| n).sum();
        let ticketed = if estimate < EXACT_BELOW {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM ticketing_jobs WHERE state = 'ticketed'"#
            )
            .fetch_one(&self.db)
            .await?
        } else {
            (estimate - others).max(0)
        };
        counts.push(("ticketed".to_owned(), ticketed));
        counts.sort();
        Ok(counts)
    }

    /// Whether any row still needs the worker (pending, paying or ticketing).
    pub async fn unfinished(&self) -> Result<i64, Error> {
        let n = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ticketing_jobs WHERE state IN ('pending', 'paying', 'ticketing')"#
        )
        .fetch_one(&self.db)
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
                   (order_no, payment_method, card, pay_deadline, client_order_no, priority, run_at,
                    card_sealed, passengers, price)
               VALUES ($1, $2, $3, $4, $5, COALESCE($6, 0::smallint), COALESCE($7, ticketing_now()),
                       $8, $9, $10::text::numeric)
               RETURNING id"#,
            job.order_no,
            job.payment_method,
            job.card.as_ref(),
            job.pay_deadline,
            job.client_order_no.as_deref(),
            job.priority,
            job.run_at,
            job.card_sealed.as_deref(),
            job.passengers,
            job.price.as_deref()
        )
        .fetch_one(&self.db)
        .await?;
        Ok(id)
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
        .fetch_all(self.db())
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
