//! The writes that need no lease: evidence of payment (rule P3a, and the reconciliation's,
//! rule R3) and the end of a step that panicked (rule W5).

use super::store::JobStore;
use super::Error;

impl JobStore {
    /// Notes evidence of payment in the events while the step's write of it waits (the row
    /// locked by another session, a write that failed): an INSERT into the events takes no
    /// lock on the job row, so the note lands at once, and a crash of this process before the
    /// write lands no longer loses the evidence. Any worker's sweep
    /// ([`JobStore::noted_evidence_unrecorded`]) then writes it (rule P3a).
    pub async fn note_evidence(
        &self,
        job_id: i64,
        order_no: &str,
        state: &str,
        lease_token: i64,
        worker: &str,
        evidence: &str,
    ) -> Result<(), Error> {
        sqlx::query!(
            r#"
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT $1, $2, ticketing_now(), 'evidence_seen', $3, $4, $5,
       jsonb_build_object('paid_evidence', $6::text,
                          'why', 'the step''s write of it waits; any worker writes it from this note')
WHERE (CASE WHEN current_setting('synchronous_commit') = 'off'
            THEN set_config('synchronous_commit', 'on', true) ELSE 'kept' END) IS NOT NULL
"#,
            job_id,
            order_no,
            state,
            lease_token,
            worker,
            evidence
        )
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Evidence noted in the events ([`JobStore::note_evidence`]) that the job table does not
    /// hold yet, on rows no live lease holds (the step that noted it is gone): `(job_id,
    /// order_no, evidence)`, at most `limit`.
    pub async fn noted_evidence_unrecorded(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>, Error> {
        let rows = sqlx::query!(
            r#"
SELECT DISTINCT ON (e.job_id) e.job_id, j.order_no, e.detail->>'paid_evidence' AS "evidence!"
FROM ticketing_events e JOIN ticketing_jobs j ON j.id = e.job_id
WHERE e.kind = 'evidence_seen' AND j.paid_at IS NULL AND e.detail ? 'paid_evidence'
  -- A row whose lease still runs is its step's to write (and the sweep of every worker must
  -- not pile up on a row a person holds locked).
  AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ticketing_now())
ORDER BY e.job_id, e.id
LIMIT $1
"#,
            limit
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.job_id, r.order_no, r.evidence))
            .collect())
    }

    /// Records that an answer showed the order paid, whatever became of the lease that saw it
    /// (rule P3a). Evidence only adds a fact, so it needs no fence beyond "not recorded yet":
    /// it sets `paid_at` and `paid_evidence`, leaves no permit, erases the card (brand and last
    /// four kept), and moves a row that is still `paying` (or `pending`, its intent forgotten
    /// by a failover) on to `ticketing`, due now. The lease of `release_token` ends (the step
    /// that saw the evidence is over); any other lease on the row stays, and its holder's next
    /// fenced write fails, as it should. Returns whether this call recorded it (`false`:
    /// the row had evidence already, or is gone).
    pub async fn record_evidence(
        &self,
        job_id: i64,
        evidence: &str,
        worker: &str,
        card_brand: Option<&str>,
        card_last4: Option<&str>,
        release_token: Option<i64>,
    ) -> Result<(bool, String), Error> {
        self.write_evidence(
            job_id,
            evidence,
            worker,
            (card_brand, card_last4),
            release_token,
            false,
            "the step that saw it could not write it under its lease",
        )
        .await
    }

    /// Records evidence of payment that the reconciliation read in ATRIP's order list (rule
    /// R3): the same write as [`JobStore::record_evidence`], holding no lease and ending none,
    /// which also moves a `needs_review` row that was never shown paid back to `ticketing`
    /// (the worker follows it, no person needed). It only adds a fact: a `pay.do` can never
    /// follow it (no permit is left, rule P3). Returns whether this call recorded it (`false`:
    /// the row had evidence already, a worker's meanwhile, or is gone).
    pub async fn record_listed_evidence(&self, job_id: i64, worker: &str) -> Result<bool, Error> {
        let (recorded, _) = self
            .write_evidence(
                job_id,
                "query_paid",
                worker,
                (None, None),
                None,
                true,
                "ATRIP's order list (orderList.do) shows the order paid: found by the reconciliation",
            )
            .await?;
        Ok(recorded)
    }

    /// The one write of evidence of payment (rule P3a): see [`JobStore::record_evidence`].
    /// `resume_review` also moves a `needs_review` row on to `ticketing` (rule R3).
    #[allow(clippy::too_many_arguments)]
    async fn write_evidence(
        &self,
        job_id: i64,
        evidence: &str,
        worker: &str,
        (card_brand, card_last4): (Option<&str>, Option<&str>),
        release_token: Option<i64>,
        resume_review: bool,
        why: &str,
    ) -> Result<(bool, String), Error> {
        let r = sqlx::query!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs j SET
        paid_at = ticketing_now(),
        paid_evidence = $2,
        pay_attempts = GREATEST(j.pay_attempts, 1),
        pay_started_at = COALESCE(j.pay_started_at, ticketing_now()),
        pay_permits = LEAST(j.pay_permits, GREATEST(j.pay_attempts, 1) - j.pay_not_sent),
        state = CASE WHEN j.state IN ('pending', 'paying') OR ($7 AND j.state = 'needs_review')
                     THEN 'ticketing' ELSE j.state END,
        phase_started_at = CASE WHEN j.state IN ('pending', 'paying') OR ($7 AND j.state = 'needs_review')
                                THEN ticketing_now() ELSE j.phase_started_at END,
        run_at = CASE WHEN j.state IN ('pending', 'paying') OR ($7 AND j.state = 'needs_review')
                      THEN ticketing_now() ELSE j.run_at END,
        error_streak = CASE WHEN j.state IN ('pending', 'paying') OR ($7 AND j.state = 'needs_review')
                            THEN 0 ELSE j.error_streak END,
        finalized_at = CASE WHEN $7 AND j.state = 'needs_review' THEN NULL ELSE j.finalized_at END,
        last_error = CASE WHEN $7 AND j.state = 'needs_review' THEN NULL ELSE j.last_error END,
        card = NULL,
        card_sealed = NULL,
        card_brand = COALESCE($4, j.card_brand),
        card_last4 = COALESCE($5, j.card_last4),
        lease_owner = CASE WHEN j.lease_token = $6 THEN NULL ELSE j.lease_owner END,
        lease_expires_at = CASE WHEN j.lease_token = $6 THEN NULL ELSE j.lease_expires_at END,
        updated_at = ticketing_now()
    WHERE j.id = $1 AND j.paid_at IS NULL
      AND (CASE WHEN current_setting('synchronous_commit') = 'off'
                THEN set_config('synchronous_commit', 'on', true) ELSE 'kept' END) IS NOT NULL
    RETURNING j.id, j.order_no, j.state, j.lease_token, j.updated_at
), e AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, updated_at, 'evidence_recorded', state, $6::bigint, $3,
           jsonb_build_object('paid_evidence', $2::text, 'why', $8::text)
    FROM u
    RETURNING job_id
)
SELECT (SELECT count(*) FROM e) > 0 AS "recorded!",
       (SELECT system_identifier::text FROM pg_control_system())
           || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS "server!"
"#,
            job_id,
            evidence,
            worker,
            card_brand,
            card_last4,
            release_token,
            resume_review,
            why,
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok((r.recorded, r.server))
    }

    /// Ends a step that panicked (rule W5): its lease ends, and its row, fenced by the claim's
    /// token only (the panic may have struck after a write of the step landed, so the state and
    /// counters the claim saw may be stale; the token still says the row is this step's), is
    /// either given another try (due in `retry_in_ms`, by order query like any recovery, the
    /// panic counted as an unclear answer) or, when its previous step panicked too (its
    /// `last_error` starts with `marker`) or the unclear answers reach `max_streak`, sent to
    /// `needs_review`, with the card erased if a `pay.do` may have reached ATRIP (rule P9).
    /// An intent still open at the panic (recorded, its `pay.do` not begun: `intent_not_sent`)
    /// counts as not sent; one whose send had begun counts as sent. Fenced by the server the
    /// lease was taken on too (rule W1: after a failover the same token and worker may name a
    /// new claim). Returns the state the row is in now, or `None` when it was no longer this
    /// step's.
    #[allow(clippy::too_many_arguments)]
    pub async fn review_panicked(
        &self,
        job_id: i64,
        lease_token: i64,
        server: &str,
        worker: &str,
        error: &str,
        marker: &str,
        max_streak: i32,
        retry_in_ms: i64,
        intent_not_sent: bool,
    ) -> Result<Option<String>, Error> {
        let state = sqlx::query_scalar!(
            r#"
WITH o AS (
    SELECT id, state = 'paying' OR state = 'ticketing' AS live,
           (starts_with(COALESCE(last_error, ''), $5) OR error_streak + 1 >= $6) AS to_review
    FROM ticketing_jobs WHERE id = $1
), u AS (
    UPDATE ticketing_jobs j SET
        state = CASE WHEN o.to_review THEN 'needs_review' ELSE j.state END,
        finalized_at = CASE WHEN o.to_review THEN ticketing_now() ELSE NULL END,
        run_at = CASE WHEN o.to_review THEN j.run_at
                      ELSE ticketing_now() + $7::bigint * interval '1 millisecond' END,
        updated_at = ticketing_now(),
        lease_owner = NULL, lease_expires_at = NULL, last_error = $4,
        error_streak = j.error_streak + 1,
        pay_not_sent = j.pay_not_sent + CASE WHEN $8 THEN 1 ELSE 0 END,
        last_pay_outcome = CASE WHEN $8 THEN 'not_sent' ELSE j.last_pay_outcome END,
        card = CASE WHEN o.to_review AND j.pay_attempts - j.pay_not_sent - CASE WHEN $8 THEN 1 ELSE 0 END > 0
                    THEN NULL ELSE j.card END,
        card_sealed = CASE WHEN o.to_review AND j.pay_attempts - j.pay_not_sent - CASE WHEN $8 THEN 1 ELSE 0 END > 0
                           THEN NULL ELSE j.card_sealed END
    FROM o
    WHERE j.id = o.id AND o.live AND j.lease_token = $2 AND j.lease_owner = $3
      AND $9 = (SELECT system_identifier::text FROM pg_control_system())
               || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)
    RETURNING j.id, j.order_no, j.state, j.updated_at
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, updated_at, 'step_panicked', state, $2, $3,
       jsonb_build_object('error', $4::text, 'not_sent', $8::boolean)
FROM u
RETURNING state
"#,
            job_id,
            lease_token,
            worker,
            error,
            marker,
            max_streak,
            retry_in_ms,
            intent_not_sent,
            server,
        )
        .fetch_optional(&mut self.conn().await?)
        .await?;
        Ok(state)
    }
}
