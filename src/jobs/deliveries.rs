//! The SQL of ATRIP's webhooks and of what happens to an order after it is ticketed: each
//! delivery recorded once as an event of its order (rule W3), a void or cancellation of a
//! ticketed order marked `reported` and re-checked by order query, which alone confirms it
//! (rule W6).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Error, JobStore};

/// What ATRIP reported about a ticketed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Voided,
    CancelledByAirline,
    ScheduleChanged,
}

impl Change {
    pub const ALL: [Change; 3] = [
        Change::Voided,
        Change::CancelledByAirline,
        Change::ScheduleChanged,
    ];

    /// The column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Voided => "voided",
            Change::CancelledByAirline => "cancelled_by_airline",
            Change::ScheduleChanged => "schedule_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// In words, for people.
    pub fn words(self) -> &'static str {
        match self {
            Change::Voided => "voided",
            Change::CancelledByAirline => "cancelled by the airline",
            Change::ScheduleChanged => "schedule changed",
        }
    }

    /// Whether an order query can show it: a void or a cancellation ends the order ("-3"); a
    /// schedule change leaves it ticketed and shows in no field the worker reads.
    pub fn query_can_show(self) -> bool {
        !matches!(self, Change::ScheduleChanged)
    }
}

/// The values of `after_ticketing_check`.
pub const CHECKS: [&str; 3] = ["reported", "confirmed", "unconfirmed"];

/// One authenticated webhook delivery that names an order.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub order_no: &'a str,
    /// What the event says, bounded and without NUL characters; carries the delivery's
    /// identity under `delivery`.
    pub detail: &'a Value,
    /// What it reports of a ticketed order, if anything.
    pub change: Option<Change>,
}

/// What one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// No row has that order number.
    UnknownOrder,
    /// The same delivery was recorded before: nothing changed.
    Duplicate { state: String },
    /// Recorded as an event; `woken`: a `ticketing` row (or a `paying` row whose permits
    /// are used) made due now; `marked`: a ticketed row marked `reported`, its re-check due now.
    New {
        state: String,
        woken: bool,
        marked: bool,
    },
    /// Not recorded: the order had [`WEBHOOKS_PER_ORDER_PER_HOUR`] new deliveries in the
    /// last hour already.
    Capped { state: String },
    /// The row was locked by another session and not waited for. `recorded`: the event was
    /// written (a mark it carries waits in `ticketing_webhook_deferred`); otherwise nothing
    /// was (the row was held `FOR UPDATE`).
    Busy { recorded: bool },
}

/// At most this many new deliveries of one order are recorded in any hour (rule W3): a
/// delivery's identity rests on what the sender chose to send, so the cap is what bounds the
/// events one order can be given. A void is at most a few deliveries (ATRIP's `voidStatus`
/// steps), a schedule change or cancellation two or three.
pub const WEBHOOKS_PER_ORDER_PER_HOUR: i64 = 20;

/// A ticketed row whose report is due for its order query.
#[derive(Debug, Clone)]
pub struct Recheck {
    pub id: i64,
    pub order_no: String,
    pub change: String,
    /// When the report this re-check answers came; the result is written only while no newer
    /// report has replaced it.
    pub reported_at: DateTime<Utc>,
    pub checks: i32,
    /// The claim's count (`after_ticketing_claim`): the result is written only under it.
    pub claim: i64,
    pub db_now: DateTime<Utc>,
}

/// What a re-check's order query showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The query shows it: the mark is `confirmed` (as `change`, which a "-3" after a
    /// schedule-change report turns into a cancellation).
    Confirmed { change: Change, note: String },
    /// The query shows the order still ticketed and no re-check is left: `unconfirmed`.
    Unconfirmed { note: String },
    /// Not settled yet (still ticketed with re-checks left, or an unclear answer): asked
    /// again after `after`.
    Again {
        note: String,
        after: std::time::Duration,
    },
}

/// A row of the console's list "changed after ticketing".
#[derive(Debug, Clone)]
pub struct Changed {
    pub order_no: String,
    pub change: String,
    pub check: String,
    pub reported_at: DateTime<Utc>,
    pub checked_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub pnr: Option<String>,
}

impl JobStore {
    /// Records one authenticated delivery as an event of its order, whatever the order's
    /// state, once: a replay (the same `detail.delivery` for the same row) adds nothing and
    /// changes nothing, and past [`WEBHOOKS_PER_ORDER_PER_HOUR`] new deliveries of an order in
    /// the last hour a delivery is not recorded either (`Capped`); deliveries that report a
    /// change after ticketing are counted apart from the rest, so routine events never use
    /// up a void's or a cancellation's room. A new one makes a
    /// `ticketing` row, or a `paying` row whose permits are all used, due now (never a
    /// `pending` row nor a `paying` one that could still send a `pay.do`: a webhook never
    /// brings a payment forward), and marks a `ticketed` row that has no report yet, or only a
    /// schedule change, with a void or cancellation it reports (`reported`, the re-check due
    /// now); a report already made is never restarted by another of the same kind. The row is
    /// never waited for: locked by another session, it is neither woken nor marked at once
    /// (`busy`; a mark waits in `ticketing_webhook_deferred` for the next re-check round), and
    /// a row held `FOR UPDATE`, on which even the event's foreign key would wait, is answered
    /// `busy` with nothing recorded. One statement that waits on no row lock; never changes a
    /// state.
    pub async fn record_webhook(&self, d: &Delivery<'_>) -> Result<Recorded, Error> {
        let change = d.change.map(Change::as_str);
        let row = sqlx::query!(
            r#"
WITH known AS (
    SELECT state FROM ticketing_jobs WHERE order_no = $1
), j AS (
    -- The event's foreign key needs this lock; taken here without waiting, it is then held.
    SELECT id, order_no, state, lease_token FROM ticketing_jobs WHERE order_no = $1
    FOR KEY SHARE SKIP LOCKED
), dup AS (
    SELECT 1 FROM ticketing_events e, j
    WHERE e.job_id = j.id AND e.kind = 'webhook_received' AND e.detail ? 'delivery'
      AND e.detail ->> 'delivery' = $2::jsonb ->> 'delivery'
), recent AS (
    SELECT count(*) AS n FROM (
        SELECT 1 FROM ticketing_events e, j
        WHERE e.job_id = j.id AND e.kind = 'webhook_received'
          AND e.at > ticketing_now() - interval '1 hour'
          -- Counted apart: deliveries that report a change after ticketing, and the rest, so
          -- that routine mail events can never use up the room of a void or a cancellation.
          AND (e.detail ? 'change') = ($3::text IS NOT NULL)
        LIMIT $4) r
), ev AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, ticketing_now(), 'webhook_received', state, lease_token, NULL, $2 FROM j
    WHERE NOT EXISTS (SELECT 1 FROM dup) AND (SELECT n FROM recent) < $4
    ON CONFLICT (job_id, (detail ->> 'delivery'))
        WHERE kind = 'webhook_received' AND detail ? 'delivery' DO NOTHING
    RETURNING job_id
), lk AS (
    SELECT t.id FROM ticketing_jobs t, ev WHERE t.id = ev.job_id
    FOR NO KEY UPDATE OF t SKIP LOCKED
), woken AS (
    UPDATE ticketing_jobs t SET run_at = LEAST(t.run_at, ticketing_now())
    FROM lk WHERE t.id = lk.id
      AND (t.state = 'ticketing'
           OR (t.state = 'paying' AND t.pay_attempts - t.pay_not_sent >= t.pay_permits))
    RETURNING t.id
), marked AS (
    UPDATE ticketing_jobs t SET
        after_ticketing = $3,
        after_ticketing_at = ticketing_now(),
        after_ticketing_check = 'reported',
        after_ticketing_checks = 0,
        after_ticketing_due = ticketing_now(),
        after_ticketing_note = NULL,
        after_ticketing_claim = COALESCE(t.after_ticketing_claim, 0) + 1
    FROM lk WHERE t.id = lk.id AND t.state = 'ticketed' AND $3::text IS NOT NULL
      AND (t.after_ticketing IS NULL
           OR (t.after_ticketing = 'schedule_changed' AND $3 <> 'schedule_changed'
               AND t.after_ticketing_check <> 'confirmed'))
    RETURNING t.id
), deferred AS (
    INSERT INTO ticketing_webhook_deferred (job_id, change, at)
    SELECT ev.job_id, $3, ticketing_now() FROM ev
    WHERE $3::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lk)
      AND (SELECT state FROM j) = 'ticketed'
    RETURNING id
)
SELECT (SELECT state FROM known) AS state,
       EXISTS (SELECT 1 FROM j) AS "keyed!",
       EXISTS (SELECT 1 FROM ev) AS "recorded!",
       EXISTS (SELECT 1 FROM dup) AS "duplicate!",
       EXISTS (SELECT 1 FROM ev) AND NOT EXISTS (SELECT 1 FROM lk) AS "busy!",
       EXISTS (SELECT 1 FROM woken) AS "woken!",
       EXISTS (SELECT 1 FROM marked) AS "marked!",
       EXISTS (SELECT 1 FROM deferred) AS "deferred!""#,
            d.order_no,
            d.detail,
            change as Option<&str>,
            WEBHOOKS_PER_ORDER_PER_HOUR,
        )
        .fetch_one(self.db())
        .await?;
        let Some(state) = row.state else {
            return Ok(Recorded::UnknownOrder);
        };
        if !row.keyed {
            return Ok(Recorded::Busy { recorded: false });
        }
        if !row.recorded {
            if row.duplicate {
                return Ok(Recorded::Duplicate { state });
            }
            return Ok(Recorded::Capped { state });
        }
        if row.woken || row.marked {
            self.notify().await?;
        }
        if row.busy {
            return Ok(Recorded::Busy { recorded: true });
        }
        Ok(Recorded::New {
            state,
            woken: row.woken,
            marked: row.marked,
        })
    }

    /// Applies up to `limit` marks whose delivery found its row locked (rule W3), as
    /// [`JobStore::record_webhook`] would have: each row not locked now is marked (if it
    /// still has no report, or only a schedule change, and is ticketed), and its deferred
    /// marks go; a row still locked keeps them for the next round. Returns how many rows were
    /// marked.
    pub async fn apply_deferred_marks(&self, limit: i64) -> Result<u64, Error> {
        let n = sqlx::query_scalar!(
            r#"
WITH d AS (
    -- No lock here (the role needs no UPDATE on the table): two rounds at once are kept
    -- apart by the job rows' locks below, and the mark is the same whoever applies it.
    SELECT id, job_id, change FROM ticketing_webhook_deferred ORDER BY id LIMIT $1
), lk AS (
    SELECT t.id FROM ticketing_jobs t WHERE t.id IN (SELECT job_id FROM d)
    FOR NO KEY UPDATE SKIP LOCKED
), best AS (
    SELECT DISTINCT ON (d.job_id) d.job_id, d.change FROM d JOIN lk ON lk.id = d.job_id
    ORDER BY d.job_id, (d.change <> 'schedule_changed') DESC, d.id
), marked AS (
    UPDATE ticketing_jobs t SET
        after_ticketing = best.change,
        after_ticketing_at = ticketing_now(),
        after_ticketing_check = 'reported',
        after_ticketing_checks = 0,
        after_ticketing_due = ticketing_now(),
        after_ticketing_note = NULL,
        after_ticketing_claim = COALESCE(t.after_ticketing_claim, 0) + 1
    FROM best WHERE t.id = best.job_id AND t.state = 'ticketed'
      AND (t.after_ticketing IS NULL
           OR (t.after_ticketing = 'schedule_changed' AND best.change <> 'schedule_changed'
               AND t.after_ticketing_check <> 'confirmed'))
    RETURNING t.id
), gone AS (
    DELETE FROM ticketing_webhook_deferred x USING d
    WHERE x.id = d.id
      AND (d.job_id IN (SELECT id FROM lk)
           OR NOT EXISTS (SELECT 1 FROM ticketing_jobs j WHERE j.id = d.job_id))
    RETURNING x.id
)
-- `gone` runs whether read or not, as every data-modifying WITH does.
SELECT (SELECT count(*) FROM marked) AS "n!""#,
            limit
        )
        .fetch_one(self.db())
        .await?;
        if n > 0 {
            self.notify().await?;
        }
        Ok(n as u64)
    }

    /// Takes up to `limit` ticketed rows whose report is due for its order query, and puts
    /// their next look `hold` ahead so that no other worker asks at the same time; each claim
    /// takes a new `after_ticketing_claim`, which fences the result's write
    /// ([`JobStore::record_recheck`]). No lease: the row stays `ticketed` (paid, no permit
    /// left), so nothing a re-check does can lead to a `pay.do`. `hold` must cover the work
    /// done for the rows taken (the worker takes one row at a time, holding it for two query
    /// timeouts); past it another worker may claim the row, and the first one's result is
    /// dropped.
    pub async fn claim_rechecks(
        &self,
        limit: i64,
        hold: std::time::Duration,
    ) -> Result<Vec<Recheck>, Error> {
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query_as!(
            Recheck,
            r#"
UPDATE ticketing_jobs t
SET after_ticketing_due = ticketing_now() + make_interval(secs => $2::bigint / 1000.0),
    after_ticketing_claim = COALESCE(t.after_ticketing_claim, 0) + 1
FROM (SELECT id FROM ticketing_jobs
      WHERE after_ticketing_due <= ticketing_now() AND state = 'ticketed'
        AND after_ticketing_check = 'reported'
      ORDER BY after_ticketing_due, id
      LIMIT $1
      FOR NO KEY UPDATE SKIP LOCKED) due
WHERE t.id = due.id
RETURNING t.id, t.order_no, t.after_ticketing AS "change!", t.after_ticketing_at AS "reported_at!",
          t.after_ticketing_checks AS checks, t.after_ticketing_claim AS "claim!",
          ticketing_now() AS "db_now!""#,
            limit,
            hold_ms,
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows)
    }

    /// Writes what a re-check's order query showed, with an event, only while the row is
    /// still `reported` under this re-check's claim (`after_ticketing_claim`) and the report it
    /// answered is still the row's latest: a newer claim (this one ran out), a newer report,
    /// or another worker's result makes it write nothing, so that a mark is counted once and
    /// `confirmed` is never overwritten. Returns false when nothing was written.
    pub async fn record_recheck(
        &self,
        r: &Recheck,
        finding: &Finding,
        worker: &str,
    ) -> Result<bool, Error> {
        let (check, change, note, again_ms) = match finding {
            Finding::Confirmed { change, note } => ("confirmed", Some(change.as_str()), note, None),
            Finding::Unconfirmed { note } => ("unconfirmed", None, note, None),
            Finding::Again { note, after } => (
                "reported",
                None,
                note,
                Some(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            ),
        };
        let note = crate::domain::truncate(&crate::domain::printable(note), 400);
        let detail = serde_json::json!({
            "change": change.unwrap_or(&r.change),
            "check": check,
            "note": note,
        });
        let done = sqlx::query_scalar!(
            r#"
WITH u AS (
    UPDATE ticketing_jobs SET
        after_ticketing = COALESCE($3, after_ticketing),
        after_ticketing_check = $4,
        after_ticketing_checks = after_ticketing_checks + 1,
        after_ticketing_checked_at = ticketing_now(),
        after_ticketing_note = $5,
        after_ticketing_due = CASE WHEN $6::bigint IS NULL THEN NULL
            ELSE ticketing_now() + make_interval(secs => $6::bigint / 1000.0) END,
        after_ticketing_claim = after_ticketing_claim + 1
    WHERE id = $1 AND state = 'ticketed' AND after_ticketing_at = $2
      AND after_ticketing_check = 'reported' AND after_ticketing_claim = $9
    RETURNING id, order_no, state, lease_token
)
INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
SELECT id, order_no, ticketing_now(), 'after_ticketing_checked', state, lease_token, $7, $8 FROM u
RETURNING job_id"#,
            r.id,
            r.reported_at,
            change as Option<&str>,
            check,
            note,
            again_ms,
            worker,
            detail,
            r.claim,
        )
        .fetch_optional(self.db())
        .await?;
        Ok(done.is_some())
    }

    /// The console's list "changed after ticketing", newest report first.
    pub async fn changed_after_ticketing(&self, limit: i64) -> Result<Vec<Changed>, Error> {
        let rows = sqlx::query_as!(
            Changed,
            r#"
SELECT order_no, after_ticketing AS "change!", after_ticketing_check AS "check!",
       after_ticketing_at AS "reported_at!", after_ticketing_checked_at AS checked_at,
       after_ticketing_note AS note, pnr
FROM ticketing_jobs WHERE after_ticketing IS NOT NULL
ORDER BY after_ticketing_at DESC, id DESC LIMIT $1"#,
            limit
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows)
    }

    /// Rows changed after ticketing, by change and check (for `/metrics`).
    pub async fn count_changed_after_ticketing(&self) -> Result<Vec<(String, String, i64)>, Error> {
        let rows = sqlx::query!(
            r#"SELECT after_ticketing AS "change!", after_ticketing_check AS "check!", count(*) AS "n!"
               FROM ticketing_jobs WHERE after_ticketing IS NOT NULL
               GROUP BY 1, 2"#
        )
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().map(|r| (r.change, r.check, r.n)).collect())
    }
}
