//! The durability gate (docs/design.md, rule P1b): a `pay.do` leaves only once its intent is
//! durable where a failover would find it.
//!
//! A commit on a primary is not yet a fact: with asynchronous replication (PostgreSQL's
//! default, and Patroni's, CloudNativePG's and most managed services'), a failover forgets
//! what the standby had not received, and for this worker a forgotten intent is a `pending`
//! row that is paid a second time. Even a synchronous commit can end up local only: a cancelled
//! wait for the standby returns success with a warning, and a failover manager that drops its
//! synchronous standby releases the waiting commits. So the gate does not trust how the commit
//! was made; it reads where the WAL is. After the intent's commit has returned, it takes the
//! server's WAL insert position (past that commit record) and waits until enough physical
//! standbys report in `pg_stat_replication` that they have flushed past it, within
//! `worker.replication_wait_ms`. Otherwise the step gives its row back unsent.
//!
//! Steps that ask together share one check: one round trip per claim round when the
//! replication is synchronous (the standby has the commit by the time it returns), a few
//! milliseconds more when it is asynchronous. On a server with no standby (`local`), the
//! commit's own flush is the durability (the claim and the writes pin `synchronous_commit`),
//! and the gate asks nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{IntentDurability, WorkerSettings};
use crate::jobs::{JobStore, Replication};
use crate::machine::durability;

/// How often the gate reads the server's replication while nobody asks: a standby appearing
/// (`auto`) or coming back (`replicated`) is noticed this soon.
const LOOK_EVERY: Duration = Duration::from_secs(5);

pub use crate::machine::durability::Level;

/// What the gate last knew of the server.
#[derive(Debug, Clone, Default)]
struct Known {
    /// `None` until the server was read once.
    level: Option<Level>,
    replication: Replication,
}

struct Shared {
    /// The worker's id: who recorded a standby (`ticketing_standby_seen`).
    worker: String,
    policy: IntentDurability,
    /// Standbys that must have flushed an intent (`worker.intent_standbys`).
    need: i64,
    wait: Duration,
    known: Mutex<Known>,
}

/// One step waiting: the server its intent (or evidence) was committed on, and where to say.
type Waiter = (String, oneshot::Sender<Result<(), String>>);

/// A handle to the gate of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Waiter>,
}

impl Gate {
    /// Starts the gate's task on the current runtime.
    pub fn start(store: JobStore, settings: &WorkerSettings, worker: &str) -> Gate {
        let shared = Arc::new(Shared {
            worker: worker.to_owned(),
            policy: settings.intent_durability(),
            need: i64::from(settings.intent_standbys.max(1)),
            wait: settings.replication_wait(),
            known: Mutex::new(Known::default()),
        });
        if settings.intent_durability() == IntentDurability::Local {
            shared.known.lock().unwrap().level = Some(Level::Local);
            publish(Some(Level::Local), false);
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(store, shared.clone(), rx));
        Gate { shared, tx }
    }

    /// Waits until everything this process committed on `server` (`jobs::SERVER_ID`) before
    /// the call (the caller's intent, or evidence) is durable at the gate's level; `Err` says
    /// why it is not (the caller sends nothing). The check runs on whatever server the pool
    /// reaches now: if that is not `server` (a failover or a switch since the commit), nothing
    /// it says holds for the commit, and the answer is `Err`.
    pub async fn confirm(&self, server: &str) -> Result<(), String> {
        if self.level() == Some(Level::Local) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let stopped = || "the durability gate stopped".to_owned();
        self.tx
            .send((server.to_owned(), tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The level in force, once the server was read.
    pub fn level(&self) -> Option<Level> {
        self.shared.known.lock().unwrap().level
    }

    /// Whether a new intent could be made durable now, as far as the gate last knew: `Err`
    /// says why not, and the worker then claims no `pending` row (a claim would only record
    /// an intent to give back).
    pub fn may_pay(&self) -> Result<(), String> {
        let known = self.shared.known.lock().unwrap().clone();
        match known.level {
            None | Some(Level::Local) => Ok(()),
            Some(Level::Replicated) => self.shared.enough(&known.replication),
        }
    }

    /// Reads the server now and says in one line which durability intents get and why (the
    /// start line); also warns when `local` was chosen on a server that has a standby.
    pub async fn look_now(&self, store: &JobStore) -> String {
        self.shared.look(store).await;
        let known = self.shared.known.lock().unwrap().clone();
        let r = &known.replication;
        let level = known
            .level
            .map_or("unknown (the server could not be read)", Level::as_str);
        let line = format!(
            "pay intents are durable when {level} (worker.intent_durability = {}; {} physical standby(s) connected, {} physical slot(s), synchronous_standby_names = {:?}, synchronous_commit = {}{})",
            self.shared.policy.as_str(),
            r.standbys,
            r.physical_slots,
            r.synchronous_standby_names,
            r.synchronous_commit,
            match known.level {
                Some(Level::Replicated) => format!(
                    "; a pay.do waits up to {} ms for {} standby(s) to flush its intent",
                    self.shared.wait.as_millis(),
                    self.shared.need
                ),
                _ => String::new(),
            }
        );
        if self.shared.policy == IntentDurability::Local && r.has_standby() {
            warn!(
                standbys = r.standbys,
                physical_slots = r.physical_slots,
                "worker.intent_durability = local on a server with a standby: a failover to it can forget an intent whose pay.do has left, and the order would be paid again; set auto or replicated unless that standby is never promoted"
            );
        }
        if let Err(why) = self.may_pay() {
            warn!(reason = %why, "no new payment until this changes");
        }
        // A standby fed from the WAL archive (log shipping) never shows here: `local` then
        // protects intents against a crash of this server, not against promoting that standby.
        let archiving = store
            .archive_mode()
            .await
            .is_ok_and(|mode| mode == "on" || mode == "always");
        if known.level == Some(Level::Local) && archiving {
            warn!(
                "archive_mode is on and no standby is seen: a standby fed from the WAL archive (log shipping) is one the worker cannot see, and promoted it may lack intents whose pay.do has left (those orders would be paid again); stream to it (primary_conninfo) so that intents wait for it (worker.intent_durability = auto or replicated), or never promote it while payments run"
            );
            return format!(
                "{line}; archive_mode is on: a log-shipping standby is not seen (see the warning)"
            );
        }
        line
    }
}

impl Shared {
    fn level(&self) -> Option<Level> {
        self.known.lock().unwrap().level
    }

    /// Whether `r` has enough standbys, whose positions this role can read.
    fn enough(&self, r: &Replication) -> Result<(), String> {
        if r.standbys < self.need {
            let slots = if r.physical_slots > 0 && r.standbys == 0 {
                format!(
                    "; the server keeps {} physical replication slot(s): if no standby will use them again, drop them (pg_drop_replication_slot) or set worker.intent_durability = local",
                    r.physical_slots
                )
            } else {
                String::new()
            };
            let seen = match (&r.standby_seen, r.standbys, r.physical_slots) {
                (Some(seen), 0, 0) => format!(
                    "; this database had a standby ({seen}): if it is gone for good, DELETE FROM ticketing_standby_seen, or set worker.intent_durability = local"
                ),
                _ => String::new(),
            };
            return Err(format!(
                "intents must be replicated and {} of the {} physical standby(s) needed are connected (pg_stat_replication){slots}{seen}",
                r.standbys, self.need
            ));
        }
        if r.readable < self.need {
            return Err(
                "the standbys' positions are hidden from this role: GRANT pg_monitor (or pg_read_all_stats) to the worker's role"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// While payments are held, says why on the waiting rows and fails those past their
    /// payment deadline (see `JobStore::note_pending_held`).
    async fn note_held(&self, store: &JobStore) {
        let known = self.known.lock().unwrap().clone();
        if known.level != Some(Level::Replicated) {
            return;
        }
        let Err(why) = self.enough(&known.replication) else {
            return;
        };
        match store.note_pending_held(&why).await {
            Ok(0) => {}
            Ok(n) => {
                warn!(orders = n, reason = %why, "orders failed: their payment deadline passed while no pay intent could be made durable")
            }
            Err(e) => tracing::debug!(error = %e, "noting the held orders failed"),
        }
    }

    /// Reads the server's replication and settles the level; a server that cannot be read
    /// leaves what was known.
    async fn look(&self, store: &JobStore) {
        let mut r = match store.replication().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "reading the server's replication failed");
                return;
            }
        };
        // A standby seen now, or a server whose identity changed under us (only a promotion
        // does that: the database had a standby), is remembered by the database, so that a
        // worker starting while the standby is away still knows of it.
        let before = self.known.lock().unwrap().replication.server.clone();
        let promoted = !before.is_empty() && before != r.server;
        if promoted {
            tracing::error!(
                from = %before, to = %r.server,
                "the database's identity changed (system identifier / timeline): a standby was promoted or the database was switched; every intent committed before on the old server is checked against it and fails"
            );
        }
        if r.standby_seen.is_none() && (r.has_standby() || promoted) {
            let what = if promoted {
                format!(
                    "the server changed from {before} to {} (a promotion)",
                    r.server
                )
            } else {
                format!(
                    "{} physical standby(s) connected, {} physical slot(s), synchronous_standby_names {:?}",
                    r.standbys, r.physical_slots, r.synchronous_standby_names
                )
            };
            if let Err(e) = store.record_standby_seen(&self.worker, &what).await {
                tracing::debug!(error = %e, "recording the standby failed");
            }
            r.standby_seen = Some(format!("{} now: {what}", self.worker));
        }
        let mut known = self.known.lock().unwrap();
        let level = match self.policy {
            IntentDurability::Local => Level::Local,
            IntentDurability::Replicated => Level::Replicated,
            // Never back to local: a standby that just went away is when a failover comes;
            // nor while the database remembers one (a standby away since before this start).
            IntentDurability::Auto
                if r.has_or_had_standby() || known.level == Some(Level::Replicated) =>
            {
                Level::Replicated
            }
            IntentDurability::Auto => Level::Local,
        };
        if known.level == Some(Level::Local) && level == Level::Replicated {
            info!(
                standbys = r.standbys,
                physical_slots = r.physical_slots,
                "the database has a standby now: pay intents must be replicated before a pay.do leaves"
            );
        }
        known.level = Some(level);
        let held = level == Level::Replicated && self.enough(&r).is_err();
        known.replication = r;
        publish(Some(level), held);
    }

    /// One check for every waiter of a round: the WAL position now (past their commits), then
    /// the standbys' flush positions until enough are past it or the wait is over. Every
    /// answer names its server; a waiter committed on another one, or a server that changes
    /// during the round, fails. A connection error is tried again within the wait (a server's
    /// `idle_session_timeout` closes idle pool connections, and the first statement on one
    /// fails).
    async fn wait_for_standbys(
        &self,
        store: &JobStore,
        servers: &[&str],
    ) -> Vec<Result<(), String>> {
        let deadline = Instant::now() + self.wait;
        let mut target: Option<String> = None;
        let mut server: Option<String> = None;
        let mut pause = Duration::from_millis(1);
        let all = |r: Result<(), String>| vec![r; servers.len()];
        loop {
            let f = match store.standbys_flushed(target.as_deref()).await {
                Ok(f) => f,
                Err(e) if Instant::now() + pause <= deadline => {
                    tracing::debug!(error = %e, "reading the standbys' positions failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(25));
                    continue;
                }
                Err(e) => {
                    return all(Err(format!(
                        "the standbys' positions could not be read: {e}"
                    )))
                }
            };
            if server.as_ref().is_some_and(|s| *s != f.server) {
                return all(Err(format!(
                    "the database changed during the check (from {} to {}): a failover or a switch",
                    server.unwrap_or_default(),
                    f.server
                )));
            }
            {
                let mut known = self.known.lock().unwrap();
                known.replication.standbys = f.standbys;
                known.replication.readable = f.readable;
                let held = self.enough(&known.replication).is_err();
                publish(known.level, held);
            }
            // Each waiter's verdict is machine::durability's (the model check runs the same).
            let reading = durability::Reading {
                server: &f.server,
                flushed: f.flushed,
            };
            let verdicts: Vec<Option<Result<(), String>>> = servers
                .iter()
                .map(|committed_on| {
                    durability::verdict(Level::Replicated, committed_on, Some(&reading), self.need)
                })
                .collect();
            let hidden = f.standbys > 0 && f.readable == 0;
            let over = Instant::now() + pause > deadline;
            if hidden || over || verdicts.iter().all(Option::is_some) {
                let not_yet = if hidden {
                    self.enough(&Replication {
                        standbys: f.standbys,
                        readable: 0,
                        ..Replication::default()
                    })
                } else {
                    Err(format!(
                        "{} of the {} standby(s) needed flushed WAL position {} within worker.replication_wait_ms ({} ms; {} standby(s) connected)",
                        f.flushed,
                        self.need,
                        f.target,
                        self.wait.as_millis(),
                        f.standbys
                    ))
                };
                return verdicts
                    .into_iter()
                    .map(|v| v.unwrap_or_else(|| not_yet.clone()))
                    .collect();
            }
            target.get_or_insert(f.target);
            server.get_or_insert(f.server);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

/// The metrics' view of the gate.
fn publish(level: Option<Level>, held: bool) {
    let m = crate::metrics::global();
    let code = match level {
        None => 0,
        Some(Level::Local) => 1,
        Some(Level::Replicated) => 2,
    };
    m.intent_level.store(code, Ordering::Relaxed);
    m.paying_held.store(held, Ordering::Relaxed);
}

async fn run(store: JobStore, shared: Arc<Shared>, mut rx: mpsc::Receiver<Waiter>) {
    let mut next_look = Instant::now();
    loop {
        let first = tokio::select! {
            waiter = rx.recv() => match waiter {
                Some(waiter) => waiter,
                None => return,
            },
            () = tokio::time::sleep_until(next_look), if shared.policy != IntentDurability::Local => {
                shared.look(&store).await;
                shared.note_held(&store).await;
                next_look = Instant::now() + LOOK_EVERY;
                continue;
            }
        };
        // Everyone waiting now committed before the position this round reads.
        let mut waiters = vec![first];
        while let Ok(waiter) = rx.try_recv() {
            waiters.push(waiter);
        }
        if shared.level().is_none() {
            shared.look(&store).await;
        }
        let servers: Vec<&str> = waiters.iter().map(|(s, _)| s.as_str()).collect();
        let results = match shared.level() {
            Some(Level::Local) => vec![Ok(()); servers.len()],
            Some(Level::Replicated) => shared.wait_for_standbys(&store, &servers).await,
            None => {
                vec![Err("the server's replication could not be read".to_owned()); servers.len()]
            }
        };
        let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        if let Some(why) = failed.first() {
            crate::metrics::global()
                .intents_not_durable
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            warn!(commits = failed.len(), reason = %why, "commits not durable where a failover would find them: no pay.do leaves for them");
        }
        for ((_, waiter), result) in waiters.into_iter().zip(results) {
            let _ = waiter.send(result);
        }
    }
}
