//! The reconciliation's statements (docs/design.md, R1-R6): the rows of a page of ATRIP's
//! orders, read without a lock, and the record of each run in `ticketing_reconcile_runs`,
//! whose daily row is also the claim that lets one replica a day run it. Every time here is
//! the database's (`ticketing_now()`). Evidence of payment goes through the one lease-free
//! write, `JobStore::record_listed_evidence` (rule P3a).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::store::JobStore;
use super::Error;

/// What the comparison reads of a job row: no card data, no lock.
#[derive(Debug, Clone)]
pub struct ReconcileRow {
    pub id: i64,
    pub order_no: String,
    pub state: String,
    /// An answer once showed the order paid (`paid_at` is set).
    pub paid: bool,
}

/// One run as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReconcileRun {
    pub id: i64,
    pub trigger: String,
    pub day: Option<chrono::NaiveDate>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub run_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub attempts: i32,
    pub pages: i32,
    pub atrip_orders: i32,
    pub counts: Value,
    pub findings: Value,
    pub error: Option<String>,
}

/// A run's claim: which run, over which window.
#[derive(Debug, Clone)]
pub struct RunClaim {
    pub id: i64,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
}

/// What a finished run says, for the metrics: its counts by kind, when it ended, and whether
/// it completed.
#[derive(Debug, Clone)]
pub struct ReconcileFigures {
    pub counts: Value,
    pub finished_at: DateTime<Utc>,
    pub completed: bool,
}

/// How a daily run is claimed.
#[derive(Debug, Clone, Copy)]
pub struct DailyClaim {
    /// Not before this hour of the UTC day.
    pub after_hour_utc: i32,
    /// The window: the `lookback_days` UTC days before today.
    pub lookback_days: i32,
    /// A run whose heartbeat is older than this (and than the run's own, recorded when it was
    /// claimed) was left by a process that died: `reconcile::stale_after_s` derives it from
    /// the settings, longer than any wait between two heartbeats of a live run.
    pub stale_after_s: i64,
    /// A day is tried this many times in all (a stale run taken over counts as a try); a
    /// failed day is tried again this long after its last try.
    pub max_attempts: i32,
    pub retry_after_s: i64,
}

impl JobStore {
    /// The job rows of these order numbers (a page of ATRIP's orders): one read, no lock.
    pub async fn reconcile_rows(&self, order_nos: &[String]) -> Result<Vec<ReconcileRow>, Error> {
        Ok(sqlx::query_as!(
            ReconcileRow,
            r#"SELECT id, order_no, state, paid_at IS NOT NULL AS "paid!"
               FROM ticketing_jobs WHERE order_no = ANY($1)"#,
            order_nos
        )
        .fetch_all(self.db())
        .await?)
    }

    /// The database's time now.
    pub async fn reconcile_now(&self) -> Result<DateTime<Utc>, Error> {
        Ok(sqlx::query_scalar!(r#"SELECT ticketing_now() AS "now!""#)
            .fetch_one(self.db())
            .await?)
    }

    /// Claims a daily run (rule R5), in the database's time, in this order:
    ///
    /// 1. a run of a day within the lookback (today or earlier: a process that died just before
    ///    midnight, or was stopped) that is `running` with a heartbeat older than its own
    ///    `stale_after_s` and the replica's, or that `failed` more than `retry_after_s` ago, is
    ///    taken over (the oldest day first), while it has had fewer than `max_attempts`;
    /// 2. otherwise today's row is inserted, once the UTC hour has come.
    ///
    /// Before that, a daily run left `running` stale that has had its `max_attempts` is marked
    /// failed, its error saying it was abandoned and how to run its window by hand. `None`: not
    /// due, or another replica has it.
    pub async fn reconcile_claim_daily(
        &self,
        run_by: &str,
        c: DailyClaim,
    ) -> Result<Option<RunClaim>, Error> {
        let abandoned = sqlx::query_scalar!(
            r#"
UPDATE ticketing_reconcile_runs AS r
SET outcome = 'failed', finished_at = ticketing_now(),
    error = format('abandoned after %s attempts: the process running it (%s) stopped beating '
                   'its heartbeat at %s; run its window by hand: ticketing-tracker reconcile '
                   '--since %s --until %s',
                   r.attempts, r.run_by,
                   to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   to_char(r.window_from AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   to_char(r.window_to AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
WHERE r.trigger = 'daily' AND r.outcome = 'running' AND r.attempts >= $1
  AND r.heartbeat_at < ticketing_now()
                       - make_interval(secs => greatest(r.stale_after_s, $2::int8)::float8)
RETURNING r.day AS "day!"
"#,
            c.max_attempts,
            c.stale_after_s,
        )
        .fetch_all(self.db())
        .await?;
        for day in abandoned {
            tracing::error!(%day, attempts = c.max_attempts, "reconcile: the day's run was left running by processes that stopped, as many times as it may be tried; it is marked failed (abandoned): run its window by hand (`ticketing-tracker reconcile --last` for a daily run, the console's Reconciliation page)");
        }
        let taken = sqlx::query_as!(
            RunClaim,
            r#"
WITH d AS (SELECT (ticketing_now() AT TIME ZONE 'UTC')::date AS today),
c AS (
    SELECT r.id FROM ticketing_reconcile_runs r, d
    WHERE r.trigger = 'daily' AND r.day BETWEEN d.today - $2::int AND d.today
      AND r.attempts < $4
      AND ((r.outcome = 'running' AND r.heartbeat_at < ticketing_now()
                - make_interval(secs => greatest(r.stale_after_s, $3::int8)::float8))
        OR (r.outcome = 'failed'
            AND r.finished_at < ticketing_now() - make_interval(secs => $5::float8)))
    ORDER BY r.day LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE ticketing_reconcile_runs AS r SET
    run_by = $1, started_at = ticketing_now(), heartbeat_at = ticketing_now(),
    finished_at = NULL, outcome = 'running', attempts = r.attempts + 1, error = NULL,
    pages = 0, atrip_orders = 0, counts = '{}', findings = '[]', stale_after_s = $3::int8
FROM c
WHERE r.id = c.id AND r.attempts < $4
  AND ((r.outcome = 'running' AND r.heartbeat_at < ticketing_now()
            - make_interval(secs => greatest(r.stale_after_s, $3::int8)::float8))
    OR (r.outcome = 'failed'
        AND r.finished_at < ticketing_now() - make_interval(secs => $5::float8)))
RETURNING r.id, r.window_from, r.window_to
"#,
            run_by,
            c.lookback_days,
            c.stale_after_s,
            c.max_attempts,
            c.retry_after_s as f64,
        )
        .fetch_optional(self.db())
        .await?;
        if taken.is_some() {
            return Ok(taken);
        }
        Ok(sqlx::query_as!(
            RunClaim,
            r#"
WITH d AS (SELECT (ticketing_now() AT TIME ZONE 'UTC')::date AS today, ticketing_now() AS now)
INSERT INTO ticketing_reconcile_runs AS r
    (trigger, day, window_from, window_to, run_by, stale_after_s)
SELECT 'daily', d.today, (d.today - $3::int)::timestamp AT TIME ZONE 'UTC',
       d.today::timestamp AT TIME ZONE 'UTC', $1, $4::int8
FROM d WHERE extract(hour FROM d.now AT TIME ZONE 'UTC')::int >= $2
ON CONFLICT (day) WHERE trigger = 'daily' DO NOTHING
RETURNING r.id, r.window_from AS "window_from!", r.window_to AS "window_to!"
"#,
            run_by,
            c.after_hour_utc,
            c.lookback_days,
            c.stale_after_s,
        )
        .fetch_optional(self.db())
        .await?)
    }

    /// Daily runs whose process stopped and that nobody took over yet (`running`, the
    /// heartbeat older than the run's own `stale_after_s`), and daily runs of the last
    /// `days` UTC days abandoned (left stale as many times as they may be tried), for
    /// `/metrics` (rule R5).
    pub async fn reconcile_unfinished(&self, days: i32) -> Result<(i64, i64), Error> {
        let r = sqlx::query!(
            r#"SELECT
                 count(*) FILTER (WHERE outcome = 'running' AND heartbeat_at < ticketing_now()
                                  - make_interval(secs => stale_after_s::float8)) AS "stale!",
                 count(*) FILTER (WHERE outcome = 'failed' AND error LIKE 'abandoned %'
                                  AND day >= (ticketing_now() AT TIME ZONE 'UTC')::date - $1::int)
                   AS "abandoned!"
               FROM ticketing_reconcile_runs WHERE trigger = 'daily'"#,
            days
        )
        .fetch_one(self.db())
        .await?;
        Ok((r.stale, r.abandoned))
    }

    /// A run this process stops before it ends (its worker shuts down): recorded failed at
    /// once, saying so, so that it is tried again (rule R5) instead of waiting to go stale.
    pub async fn reconcile_stopped(&self, id: i64, run_by: &str) -> Result<(), Error> {
        sqlx::query!(
            r#"UPDATE ticketing_reconcile_runs
               SET finished_at = ticketing_now(), heartbeat_at = ticketing_now(),
                   outcome = 'failed',
                   error = 'the worker running it stopped (shut down) before it ended; it is tried again'
               WHERE id = $1 AND run_by = $2 AND outcome = 'running'"#,
            id,
            run_by
        )
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Records the start of a run asked for (`reconcile --since … --until …`).
    pub async fn reconcile_start_manual(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        run_by: &str,
    ) -> Result<RunClaim, Error> {
        Ok(sqlx::query_as!(
            RunClaim,
            r#"INSERT INTO ticketing_reconcile_runs (trigger, window_from, window_to, run_by)
               VALUES ('manual', $1, $2, $3)
               RETURNING id, window_from, window_to"#,
            from,
            to,
            run_by
        )
        .fetch_one(self.db())
        .await?)
    }

    /// The run is alive (after each page): `false` when it is no longer this process's (a
    /// replica took it over, thinking it dead), and the run stops.
    pub async fn reconcile_heartbeat(
        &self,
        id: i64,
        run_by: &str,
        pages: i32,
        atrip_orders: i32,
    ) -> Result<bool, Error> {
        let n = sqlx::query!(
            r#"UPDATE ticketing_reconcile_runs
               SET heartbeat_at = ticketing_now(), pages = $3, atrip_orders = $4
               WHERE id = $1 AND run_by = $2 AND outcome = 'running'"#,
            id,
            run_by,
            pages,
            atrip_orders
        )
        .execute(self.db())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records how the run ended.
    #[allow(clippy::too_many_arguments)]
    pub async fn reconcile_finish(
        &self,
        id: i64,
        run_by: &str,
        completed: bool,
        pages: i32,
        atrip_orders: i32,
        counts: &Value,
        findings: &Value,
        error: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query!(
            r#"UPDATE ticketing_reconcile_runs
               SET finished_at = ticketing_now(), heartbeat_at = ticketing_now(),
                   outcome = CASE WHEN $3 THEN 'completed' ELSE 'failed' END,
                   pages = $4, atrip_orders = $5, counts = $6, findings = $7, error = $8
               WHERE id = $1 AND run_by = $2 AND outcome = 'running'"#,
            id,
            run_by,
            completed,
            pages,
            atrip_orders,
            counts,
            findings,
            error
        )
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The last runs, newest first.
    pub async fn reconcile_runs(&self, limit: i64) -> Result<Vec<ReconcileRun>, Error> {
        Ok(sqlx::query_as!(
            ReconcileRun,
            r#"SELECT id, trigger, day, window_from, window_to, run_by, started_at, finished_at,
                      outcome, attempts, pages, atrip_orders, counts, findings, error
               FROM ticketing_reconcile_runs ORDER BY started_at DESC, id DESC LIMIT $1"#,
            limit
        )
        .fetch_all(self.db())
        .await?)
    }

    /// One run.
    pub async fn reconcile_run(&self, id: i64) -> Result<Option<ReconcileRun>, Error> {
        Ok(sqlx::query_as!(
            ReconcileRun,
            r#"SELECT id, trigger, day, window_from, window_to, run_by, started_at, finished_at,
                      outcome, attempts, pages, atrip_orders, counts, findings, error
               FROM ticketing_reconcile_runs WHERE id = $1"#,
            id
        )
        .fetch_optional(self.db())
        .await?)
    }

    /// The last finished run's figures, for `/metrics` (`None` before the first).
    pub async fn reconcile_figures(&self) -> Result<Option<ReconcileFigures>, Error> {
        Ok(sqlx::query_as!(
            ReconcileFigures,
            r#"SELECT counts, finished_at AS "finished_at!", outcome = 'completed' AS "completed!"
               FROM ticketing_reconcile_runs WHERE outcome <> 'running'
               ORDER BY started_at DESC, id DESC LIMIT 1"#
        )
        .fetch_optional(self.db())
        .await?)
    }
}
