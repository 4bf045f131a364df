//! The worker's writes, several rows in one statement: each row fenced by its own id, lease
//! token and state, each with its event, one commit for all (docs/design.md, rule W1).
//! Steps that finish together share a commit this way; a row whose fence fails is reported as
//! such, never skipped silently.
//!
//! Each write is fenced by its lease: row id, lease token, state, pay counters, and the server
//! the lease was taken on (a failover forgets claims and hands their tokens out again).
//!
//! One row never holds up the others (rule W4): the statement locks its rows in id order with
//! `SKIP LOCKED`, so a row another session holds (a person's `SELECT … FOR UPDATE`, a long
//! transaction) is reported busy and written again later instead of making the whole batch,
//! and the lease renewals that would wait on the batch, wait on it. Results are matched to
//! writes by row id and lease token, never by id alone.

use chrono::{DateTime, Utc};

use super::rows::{ItemResult, Landed, Lease};
use super::store::{Applied, JobStore};
use super::write::Write;
use super::Error;

/// One write's columns, as parallel arrays for `unnest`.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    token: Vec<i64>,
    from: Vec<String>,
    /// The pay counters the lease expects (a write retried after it landed matches no row).
    attempts: Vec<i32>,
    /// The server the lease was taken on: a failover forgets claims and hands their lease
    /// tokens out again, so a token alone does not name a lease on the promoted standby.
    server: Vec<String>,
    not_sent_before: Vec<i32>,
    to: Vec<String>,
    due_ms: Vec<Option<i64>>,
    release: Vec<bool>,
    intent: Vec<bool>,
    not_sent: Vec<bool>,
    pay_outcome: Vec<Option<String>>,
    new_phase: Vec<bool>,
    evidence: Vec<Option<String>>,
    polls: Vec<i32>,
    error: Vec<Option<String>>,
    unclear: Vec<bool>,
    atrip_status: Vec<Option<i32>>,
    atrip_message: Vec<Option<String>>,
    order_status: Vec<Option<String>>,
    atrip_pnr: Vec<Option<String>>,
    passengers: Vec<Option<i16>>,
    pnr: Vec<Option<String>>,
    tickets: Vec<Option<serde_json::Value>>,
    tickets_seen: Vec<Option<serde_json::Value>>,
    erase_card: Vec<bool>,
    card_brand: Vec<Option<String>>,
    card_last4: Vec<Option<String>>,
    kind: Vec<String>,
    worker: Vec<String>,
    detail: Vec<serde_json::Value>,
}

impl Columns {
    fn push(&mut self, lease: &Lease, worker: &str, w: &Write) {
        let s = |v: Option<&str>| v.map(str::to_owned);
        self.id.push(lease.id);
        self.token.push(lease.token);
        self.from.push(lease.state.as_str().to_owned());
        self.attempts.push(lease.pay_attempts);
        self.server.push(lease.server.clone());
        self.not_sent_before.push(lease.pay_not_sent);
        self.to.push(w.to.as_str().to_owned());
        self.due_ms.push(w.due_in.map(super::store::millis));
        self.release.push(w.release);
        self.intent.push(w.intent);
        self.not_sent.push(w.not_sent);
        self.pay_outcome.push(s(w.pay_outcome.map(|o| o.as_str())));
        self.new_phase.push(w.new_phase);
        self.evidence.push(s(w.evidence.map(|e| e.as_str())));
        self.polls.push(w.polls);
        self.error.push(w.error.clone());
        self.unclear.push(w.unclear);
        self.atrip_status
            .push(w.atrip_status.and_then(|s| i32::try_from(s).ok()));
        self.atrip_message.push(w.atrip_message.clone());
        self.order_status.push(w.order_status.clone());
        self.atrip_pnr.push(w.atrip_pnr.clone());
        self.passengers.push(w.passengers);
        self.pnr.push(w.pnr.clone());
        self.tickets.push(w.tickets.clone());
        self.tickets_seen.push(w.tickets_seen.clone());
        self.erase_card.push(w.erase_card);
        self.card_brand.push(w.card.brand.clone());
        self.card_last4.push(w.card.last4.clone());
        self.kind.push(w.kind.as_str().to_owned());
        self.worker.push(worker.to_owned());
        self.detail.push(w.detail.clone());
    }
}

impl JobStore {
    /// Applies several writes in one statement and one commit. For each item, in order: the
    /// database time it was made at, `None` when its fence failed (lease lost), or the error
    /// that refused it. A write the table refuses fails the whole statement; the items are then
    /// applied one by one, so that the refused one is named ([`Error::ConstraintViolated`]) and
    /// the others land. The outer error is the database's trouble, for every item.
    pub async fn apply_many(
        &self,
        items: &[(&Lease, &str, &Write)],
    ) -> Result<Vec<ItemResult>, Error> {
        // One connection for the batch and its one-by-one retry: PostgreSQL sends a failed
        // statement's error before it releases the statement's row locks, so the retry on
        // another connection could find its own rows still locked (and skip them as busy).
        let mut conn = self.conn().await?;
        match self.apply_together(&mut conn, items).await {
            Ok(landed) => Ok(landed.into_iter().map(Ok).collect()),
            Err(Error::ConstraintViolated { .. }) if items.len() > 1 => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(
                        match self
                            .apply_together(&mut conn, std::slice::from_ref(item))
                            .await
                        {
                            Ok(mut landed) => Ok(landed.remove(0)),
                            Err(e @ Error::ConstraintViolated { .. }) => Err(e),
                            Err(e) => return Err(e),
                        },
                    );
                }
                Ok(out)
            }
            Err(e @ Error::ConstraintViolated { .. }) => Ok(vec![Err(e)]),
            Err(e) => Err(e),
        }
    }

    async fn apply_together(
        &self,
        conn: &mut super::Conn,
        items: &[(&Lease, &str, &Write)],
    ) -> Result<Vec<Landed>, Error> {
        let mut c = Columns::default();
        for (lease, worker, w) in items {
            c.push(lease, worker, w);
        }
        let rows = sqlx::query!(
            r#"
WITH i AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                         $6::boolean[], $7::boolean[], $8::boolean[], $9::text[], $10::boolean[],
                         $11::text[], $12::integer[], $13::text[], $14::boolean[], $15::integer[],
                         $16::text[], $17::text[], $18::text[], $19::text[], $20::jsonb[],
                         $21::jsonb[], $22::boolean[], $23::text[], $24::text[], $25::text[],
                         $26::text[], $27::jsonb[], $28::integer[], $29::integer[], $30::text[],
                         $31::smallint[])
        AS i(id, token, from_state, to_state, due_ms, release, intent, not_sent, pay_outcome,
             new_phase, evidence, polls, error, unclear, atrip_status, atrip_message,
             order_status, atrip_pnr, pnr, tickets, tickets_seen, erase_card, card_brand,
             card_last4, kind, worker, detail, attempts, not_sent_before, server, passengers)
), locked AS (
    SELECT j.id FROM ticketing_jobs j
    WHERE j.id IN (SELECT id FROM i)
    ORDER BY j.id
    FOR NO KEY UPDATE SKIP LOCKED
), u AS (
    UPDATE ticketing_jobs j SET
        state = i.to_state,
        run_at = CASE WHEN i.due_ms IS NULL THEN j.run_at
                      ELSE ticketing_now() + i.due_ms * interval '1 millisecond' END,
        updated_at = ticketing_now(),
        lease_owner = CASE WHEN i.release THEN NULL ELSE j.lease_owner END,
        lease_expires_at = CASE WHEN i.release THEN NULL ELSE j.lease_expires_at END,
        pay_attempts = j.pay_attempts + CASE WHEN i.intent THEN 1 ELSE 0 END,
        pay_started_at = CASE WHEN i.intent THEN ticketing_now() ELSE j.pay_started_at END,
        pay_not_sent = j.pay_not_sent + CASE WHEN i.not_sent THEN 1 ELSE 0 END,
        last_pay_outcome = CASE WHEN i.intent THEN NULL
                                ELSE COALESCE(i.pay_outcome, j.last_pay_outcome) END,
        phase_started_at = CASE WHEN i.new_phase THEN ticketing_now() ELSE j.phase_started_at END,
        paid_at = CASE WHEN i.evidence IS NULL THEN j.paid_at
                       ELSE COALESCE(j.paid_at, ticketing_now()) END,
        paid_evidence = COALESCE(j.paid_evidence, i.evidence),
        -- Rule P3: evidence of payment leaves no permit.
        pay_permits = CASE WHEN i.evidence IS NULL THEN j.pay_permits
                           ELSE LEAST(j.pay_permits,
                                      j.pay_attempts + CASE WHEN i.intent THEN 1 ELSE 0 END
                                      - j.pay_not_sent - CASE WHEN i.not_sent THEN 1 ELSE 0 END) END,
        poll_attempts = j.poll_attempts + i.polls,
        -- A give-back is no answer: what the last answer said, and the streak of unclear
        -- ones, stay until the next answer.
        last_error = CASE WHEN i.kind = 'released' THEN j.last_error ELSE i.error END,
        error_streak = CASE WHEN i.unclear THEN j.error_streak + 1
                            WHEN i.kind = 'released' THEN j.error_streak ELSE 0 END,
        atrip_status = COALESCE(i.atrip_status, j.atrip_status),
        atrip_message = CASE WHEN i.atrip_status IS NULL THEN j.atrip_message ELSE i.atrip_message END,
        order_status = COALESCE(i.order_status, j.order_status),
        atrip_pnr = COALESCE(i.atrip_pnr, j.atrip_pnr),
        -- Rule F1b: the first count known stays (enqueued, or the first answer's list).
        passengers = COALESCE(j.passengers, i.passengers),
        pnr = i.pnr,
        ticket_numbers = i.tickets,
        tickets_seen = CASE WHEN i.kind = 'released' THEN j.tickets_seen ELSE i.tickets_seen END,
        ticketed_at = CASE WHEN i.to_state = 'ticketed' THEN ticketing_now() ELSE NULL END,
        finalized_at = CASE WHEN i.to_state IN ('ticketed', 'failed', 'needs_review', 'cancelled')
                            THEN ticketing_now() ELSE NULL END,
        card = CASE WHEN i.erase_card THEN NULL ELSE j.card END,
        card_sealed = CASE WHEN i.erase_card THEN NULL ELSE j.card_sealed END,
        card_brand = COALESCE(i.card_brand, j.card_brand),
        card_last4 = COALESCE(i.card_last4, j.card_last4)
    FROM i
    WHERE j.id = i.id AND j.id IN (SELECT id FROM locked)
      AND j.lease_token = i.token AND j.state = i.from_state
      AND j.pay_attempts = i.attempts AND j.pay_not_sent = i.not_sent_before
      -- The lease was taken on this server (system identifier and timeline, jobs::SERVER_ID):
      -- after a failover the same token may name another worker's claim.
      AND i.server = (SELECT system_identifier::text FROM pg_control_system())
                     || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)
      -- Flushed whatever the session says (see JobStore::claim): evidence and intents must
      -- survive a crash of the server.
      AND (CASE WHEN current_setting('synchronous_commit') = 'off'
                THEN set_config('synchronous_commit', 'on', true) ELSE 'kept' END) IS NOT NULL
    RETURNING j.id, j.order_no, j.state, j.updated_at, i.token, i.kind, i.worker, i.detail
), e AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, updated_at, kind, state, token, worker, detail FROM u
    RETURNING job_id, lease_token, at
)
SELECT i.id AS "id!", i.token AS "token!", e.at AS "at?",
       (SELECT system_identifier::text FROM pg_control_system())
           || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS "server!",
       (l.id IS NULL AND EXISTS (SELECT 1 FROM ticketing_jobs b WHERE b.id = i.id)) AS "busy!"
FROM i LEFT JOIN locked l ON l.id = i.id
       LEFT JOIN e ON e.job_id = i.id AND e.lease_token = i.token
"#,
            &c.id,
            &c.token,
            &c.from,
            &c.to,
            &c.due_ms as _,
            &c.release,
            &c.intent,
            &c.not_sent,
            &c.pay_outcome as _,
            &c.new_phase,
            &c.evidence as _,
            &c.polls,
            &c.error as _,
            &c.unclear,
            &c.atrip_status as _,
            &c.atrip_message as _,
            &c.order_status as _,
            &c.atrip_pnr as _,
            &c.pnr as _,
            &c.tickets as _,
            &c.tickets_seen as _,
            &c.erase_card,
            &c.card_brand as _,
            &c.card_last4 as _,
            &c.kind,
            &c.worker,
            &c.detail,
            &c.attempts,
            &c.not_sent_before,
            &c.server,
            &c.passengers as _,
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| Error::from_write(e, items[0].0))?;
        // (busy, landed at, server) by (row id, lease token).
        type Answer = (bool, Option<DateTime<Utc>>, String);
        let by_lease: std::collections::HashMap<(i64, i64), Answer> = rows
            .into_iter()
            .map(|r| ((r.id, r.token), (r.busy, r.at, r.server)))
            .collect();
        Ok(items
            .iter()
            .map(
                |(lease, _, _)| match by_lease.get(&(lease.id, lease.token)) {
                    Some((_, Some(at), server)) => Landed::At(Applied {
                        at: *at,
                        server: server.clone(),
                    }),
                    Some((true, None, _)) => Landed::Busy,
                    _ => Landed::Fenced,
                },
            )
            .collect())
    }
}
