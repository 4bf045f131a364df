//! What the server says about where a commit is durable: its standbys, read from
//! `pg_stat_replication` (docs/design.md, rule P1b).
//!
//! Only standbys a failover could promote count: physical walsenders (a logical one, a CDC
//! consumer or a subscription, is connected to a database), that report a replay position (a
//! WAL archiver such as `pg_receivewal` or Barman's streaming archiver flushes WAL but replays
//! nothing and reports none), and that are not a `pg_basebackup` in progress. When some of them
//! are synchronous (`sync_state` sync or quorum), only those count: a failover manager in
//! synchronous mode promotes no other. A role outside `pg_monitor` sees every column but the
//! pid as NULL: such rows count as standbys whose positions are hidden.
//!
//! Every check also names the server that answered, [`SERVER_ID`]: its system identifier and
//! the timeline it writes on, which a promotion changes. An intent's claim returns it too, so a
//! check never confirms an intent against a server other than the one it was committed on.

/// The SQL of a server's identity, as the job store's statements return it (written out in
/// each statement: the query macros take literals only).
pub const SERVER_ID: &str = "(SELECT system_identifier::text FROM pg_control_system()) || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)";

use super::store::JobStore;
use super::Error;

/// What the server says about replication, read at start and now and then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// The server is a standby itself (in recovery): it cannot take writes at all.
    pub in_recovery: bool,
    /// `synchronous_standby_names`, empty when unset.
    pub synchronous_standby_names: String,
    /// `synchronous_commit` as this session has it.
    pub synchronous_commit: String,
    /// Standbys a failover could promote, connected now (those whose columns are hidden from
    /// this role included).
    pub standbys: i64,
    /// Of those, how many this role may read the positions of (`pg_monitor` or
    /// `pg_read_all_stats`; others see NULL).
    pub readable: i64,
    /// Physical replication slots: a standby that is away keeps its slot (Patroni,
    /// CloudNativePG and most failover managers make one per standby). Not counted: a slot
    /// in use by a WAL archiver (its walsender reports no replay position).
    pub physical_slots: i64,
    /// `ticketing_standby_seen`: a worker saw a standby on this database before (who, when,
    /// what), whether or not one is connected now.
    pub standby_seen: Option<String>,
    /// The server that answered ([`SERVER_ID`]).
    pub server: String,
}

impl Replication {
    /// Whether this server has, or is set up for, a standby a failover could promote.
    pub fn has_standby(&self) -> bool {
        self.standbys > 0 || self.physical_slots > 0 || !self.synchronous_standby_names.is_empty()
    }

    /// [`Replication::has_standby`], or a standby seen on this database before.
    pub fn has_or_had_standby(&self) -> bool {
        self.has_standby() || self.standby_seen.is_some()
    }
}

/// Whether an operator's change reached a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicated {
    /// The server has no standby: nothing to wait for.
    NoStandby,
    Yes,
    /// Not within the wait.
    NotYet,
    /// The standbys' positions are hidden from this role (no `pg_monitor`).
    Hidden,
}

/// How far the standbys are past a WAL position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flushed {
    /// The server that answered ([`SERVER_ID`]): a failover between an intent's commit and
    /// this check would otherwise have the check read another server's standbys.
    pub server: String,
    /// The position asked about (the server's WAL insert position when none was given).
    pub target: String,
    /// Physical standbys whose `flush_lsn` is at or past it.
    pub flushed: i64,
    pub standbys: i64,
    pub readable: i64,
}

impl JobStore {
    /// The server's `archive_mode` (`off`, `on`, `always`): a WAL archive may feed a standby
    /// the server cannot show (log shipping).
    pub async fn archive_mode(&self) -> Result<String, Error> {
        Ok(
            sqlx::query_scalar("SELECT pg_catalog.current_setting('archive_mode')")
                .fetch_one(self.db())
                .await?,
        )
    }

    /// The server's replication, as [`Replication`] says.
    pub async fn replication(&self) -> Result<Replication, Error> {
        let r = sqlx::query!(
            r#"
WITH s AS (
    SELECT r.state, r.state IS NOT NULL AND r.state <> 'backup' AND r.replay_lsn IS NOT NULL AS real
    FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
    WHERE a.datid IS NULL
)
SELECT pg_is_in_recovery() AS "in_recovery!",
       current_setting('synchronous_standby_names') AS "synchronous_standby_names!",
       current_setting('synchronous_commit') AS "synchronous_commit!",
       (SELECT count(*) FROM s WHERE real OR state IS NULL) AS "standbys!",
       (SELECT count(*) FROM s WHERE real) AS "readable!",
       -- A slot whose walsender reports no replay position is a WAL archiver's
       -- (pg_receivewal, Barman): it keeps WAL for backups, no standby will use it.
       (SELECT count(*) FROM pg_replication_slots sl
         WHERE sl.slot_type = 'physical'
           AND NOT EXISTS (SELECT 1 FROM pg_stat_replication r
                            WHERE r.pid = sl.active_pid AND r.replay_lsn IS NULL
                              AND r.state IS NOT NULL)) AS "physical_slots!",
       (SELECT seen_by || ' at ' || seen_at || ': ' || what FROM ticketing_standby_seen) AS standby_seen,
       (SELECT system_identifier::text FROM pg_control_system())
           || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS "server!"
"#
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok(Replication {
            in_recovery: r.in_recovery,
            synchronous_standby_names: r.synchronous_standby_names.trim().to_owned(),
            synchronous_commit: r.synchronous_commit,
            standbys: r.standbys,
            readable: r.readable,
            physical_slots: r.physical_slots,
            standby_seen: r.standby_seen,
            server: r.server,
        })
    }

    /// Records that this database has (or had) a standby, once: the first worker to see it
    /// writes who saw what (rule P1b).
    pub async fn record_standby_seen(&self, by: &str, what: &str) -> Result<(), Error> {
        sqlx::query!(
            "INSERT INTO ticketing_standby_seen (seen_by, what) VALUES ($1, $2)
             ON CONFLICT (only_row) DO NOTHING",
            by,
            what
        )
        .execute(&mut self.conn().await?)
        .await?;
        Ok(())
    }

    /// How many physical standbys have flushed WAL up to `target`; with `None`, up to the
    /// server's WAL insert position now, which is past the commit record of every transaction
    /// whose commit has returned to anyone (ours included).
    pub async fn standbys_flushed(&self, target: Option<&str>) -> Result<Flushed, Error> {
        let r = sqlx::query!(
            r#"
WITH t AS (SELECT COALESCE($1::text::pg_lsn, pg_current_wal_insert_lsn()) AS at),
s AS (
    SELECT r.state, r.flush_lsn, r.replay_lsn, r.sync_state,
           r.state IS NOT NULL AND r.state <> 'backup' AND r.replay_lsn IS NOT NULL AS real
    FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
    WHERE a.datid IS NULL
)
SELECT t.at::text AS "target!",
       (SELECT system_identifier::text FROM pg_control_system())
           || '/' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) AS "server!",
       (SELECT count(*) FROM s
        WHERE real AND flush_lsn >= t.at
          AND (sync_state IN ('sync', 'quorum')
               OR NOT EXISTS (SELECT 1 FROM s WHERE real AND sync_state IN ('sync', 'quorum'))))
           AS "flushed!",
       (SELECT count(*) FROM s WHERE real OR state IS NULL) AS "standbys!",
       (SELECT count(*) FROM s WHERE real) AS "readable!"
FROM t
"#,
            target
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok(Flushed {
            target: r.target,
            server: r.server,
            flushed: r.flushed,
            standbys: r.standbys,
            readable: r.readable,
        })
    }

    /// While no pay intent can be made durable (rule P1b), no `pending` row is claimed; this
    /// says so on the due ones, so that a row read alone tells why it waits (`last_error`:
    /// "order N: not paid yet: `reason`"), and fails those whose payment deadline passed
    /// meanwhile, nothing sent, card erased (rule P1a). A few hundred rows a call, skipping
    /// rows others hold; a row already saying so is not written again. Returns how many it
    /// failed.
    pub async fn note_pending_held(&self, reason: &str) -> Result<u64, Error> {
        let failed = sqlx::query_scalar!(
            r#"
WITH c AS (
    SELECT id FROM ticketing_jobs
    WHERE state = 'pending' AND run_at <= ticketing_now()
      AND (lease_expires_at IS NULL OR lease_expires_at <= ticketing_now())
      AND (last_error IS DISTINCT FROM 'order ' || order_no || ': not paid yet: ' || $1
           OR pay_deadline <= ticketing_now())
    ORDER BY priority, run_at, id
    LIMIT 500
    FOR NO KEY UPDATE SKIP LOCKED
), u AS (
    UPDATE ticketing_jobs j SET
        state = CASE WHEN j.pay_deadline <= ticketing_now() THEN 'failed' ELSE 'pending' END,
        last_error = CASE WHEN j.pay_deadline <= ticketing_now()
            THEN 'order ' || j.order_no || ': its payment deadline ' || j.pay_deadline
                 || ' passed while no pay intent could be made durable (' || $1
                 || '); pay.do was not sent'
            ELSE 'order ' || j.order_no || ': not paid yet: ' || $1 END,
        finalized_at = CASE WHEN j.pay_deadline <= ticketing_now() THEN ticketing_now() END,
        card = CASE WHEN j.pay_deadline <= ticketing_now() THEN NULL ELSE j.card END,
        card_sealed = CASE WHEN j.pay_deadline <= ticketing_now() THEN NULL ELSE j.card_sealed END,
        updated_at = ticketing_now()
    FROM c
    WHERE j.id = c.id
    RETURNING j.id, j.order_no, j.state, j.lease_token, j.updated_at
), e AS (
    INSERT INTO ticketing_events (job_id, order_no, at, kind, state, lease_token, worker, detail)
    SELECT id, order_no, updated_at, 'pay_not_sent', state, lease_token, NULL,
           jsonb_build_object('reason', 'payment deadline passed while no pay intent could be made durable',
                              'pay_sent', false)
    FROM u WHERE state = 'failed'
    RETURNING job_id
)
SELECT count(*) AS "n!" FROM e
"#,
            reason
        )
        .fetch_one(&mut self.conn().await?)
        .await?;
        Ok(u64::try_from(failed).unwrap_or(0))
    }

    /// For an operator's command that has just committed (a `cancel`, a `retry`): whether
    /// what it wrote is on a standby a failover could promote, waiting up to `within`. A
    /// command whose change a failover forgets is undone: a cancelled order paid after all.
    pub async fn operator_change_replicated(
        &self,
        within: std::time::Duration,
    ) -> Result<Replicated, Error> {
        if !self.replication().await?.has_standby() {
            return Ok(Replicated::NoStandby);
        }
        let deadline = std::time::Instant::now() + within;
        let mut target = None;
        loop {
            let f = self.standbys_flushed(target.as_deref()).await?;
            if f.standbys > 0 && f.readable == 0 {
                return Ok(Replicated::Hidden);
            }
            if f.flushed > 0 {
                return Ok(Replicated::Yes);
            }
            if std::time::Instant::now() > deadline {
                return Ok(Replicated::NotYet);
            }
            target.get_or_insert(f.target);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
