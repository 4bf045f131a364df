//! The schedule: orders enqueued evenly over a span; kills, PostgreSQL cuts and query storms
//! spread over it; failovers of the PostgreSQL pair, cuts of the workers' database longer than
//! the lease, and row locks held by an outside session in its first part; one pause in it;
//! workers that stop themselves before a pay.do held past their lease; an operator's plain
//! `retry` of every row that lands in `needs_review`; until every order is terminal (and every
//! `needs_review` row was retried once, and every failover and cut done) or the deadline
//! passes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use atrip_simulator::SimHandle;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use sqlx::{PgPool, Row};
use ticketing_tracker::domain::PauseScope;
use ticketing_tracker::jobs::{self, JobStore};

use super::args::Args;
use super::atrip_proxy::AtripProxy;
use super::checks::Pause;
use super::database::{self, Database};
use super::orders::{self, Order};
use super::pause::{self, Frozen};
use super::pg::Restarter;
use super::procs::Fleet;
use super::program::say;
use super::run::LEASE;

/// How often the schedule looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// A worker stopped before its pay.do is held at least this long: past its lease, and long
/// enough for another worker (claiming every 200 ms) to take the row over.
const STOP_HOLD_MIN: Duration = Duration::from_millis(LEASE.as_millis() as u64 + 1000);
/// ... and at most this long, should nobody take the row over (every other worker frozen).
const STOP_HOLD_MAX: Duration = Duration::from_millis(LEASE.as_millis() as u64 * 4);
/// A process that ran with the failpoint forced on is killed this long after the SIGCONT of
/// its stop: its late pay.do has left and been answered (or timed out), and its write refused.
const RETIRE_AFTER: Duration = Duration::from_millis(LEASE.as_millis() as u64 * 3 / 4);
/// How long each query rate-limit storm lasts at least ...
pub const STORM: Duration = Duration::from_millis(3000);
/// ... and at most, when no order query has met it yet: a storm is renewed until one has
/// (after a failover or with every row waiting for its next poll, none may be asked for a while).
const STORM_MAX: Duration = Duration::from_secs(30);
/// How long the operator's pause of paying lasts (rule S4), from half the enqueue span on.
const PAYING_PAUSE: Duration = Duration::from_secs(3);
/// How often `needs_review` rows are looked for and retried.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long a cut of the workers' database lasts: longer than the lease, so that every lease
/// runs out while the workers cannot write (their answers in hand).
pub const DB_CUT: Duration = Duration::from_millis(LEASE.as_millis() as u64 + 2000);
/// A cut waits this long at most for a worker's ATRIP call in flight (whose answer then meets
/// the cut).
const CUT_WAITS_FOR_A_CALL: Duration = Duration::from_secs(4);
/// The operator name on retries.
pub const OPERATOR: &str = "chaos";

/// When things happen, as offsets from the start of the run.
pub struct Plan {
    /// Orders are enqueued evenly over this span, so the workers are busy the whole time the
    /// faults are injected (not done before the first kill).
    pub span: Duration,
    kills: Vec<Duration>,
    pg: Vec<Duration>,
    storms: Vec<Duration>,
    pause_at: Duration,
    /// Past the lease, so the paused worker's rows are taken over while it is frozen.
    pub pause_for: Duration,
    /// When the stops before pay.do should have happened, at the latest: whenever fewer were
    /// seen than these moments passed, the failpoint is forced on a worker (for one stop).
    stops_at: Vec<Duration>,
    /// Failovers, cuts of the workers' database, outside row locks.
    pub failovers: Vec<Duration>,
    pub db_cuts: Vec<Duration>,
    pub row_locks: Vec<Duration>,
}

impl Plan {
    /// `failovers` and `db_cuts`: how many the run can make (none without a pair, or without
    /// a proxy in front of the workers' database).
    pub fn new(args: &Args, rng: &mut StdRng, failovers: usize, db_cuts: usize) -> Plan {
        let span = Duration::from_millis((args.orders as u64 * 250).clamp(10_000, 240_000));
        let window = span + Duration::from_secs(3);
        // n moments spread evenly over the window, each jittered within its share.
        let mut spread = |n: usize| -> Vec<Duration> {
            let mut at: Vec<Duration> = (0..n)
                .map(|i| {
                    let share = (i as f64 + 0.5 + rng.gen_range(-0.35..0.35)) / n as f64;
                    window.mul_f64(share.max(0.05))
                })
                .collect();
            at.sort();
            at
        };
        let kills = spread(args.kills);
        let pg = spread(args.pg_restarts);
        let storms = spread(args.storms);
        // Within the first 60 % of the span, while orders still arrive to be paid.
        let stops_at = spread(args.stops)
            .into_iter()
            .map(|at| at.mul_f64(0.6))
            .collect();
        // Failovers between 15 % and 70 % of the window; cuts within its first 80 %; row locks
        // within the first 70 % of the span: while orders are still being paid.
        let failovers = spread(failovers)
            .into_iter()
            .map(|at| window.mul_f64(0.15) + at.mul_f64(0.55))
            .collect();
        let db_cuts = spread(db_cuts)
            .into_iter()
            .map(|at| at.mul_f64(0.8))
            .collect();
        let row_locks = spread(args.row_locks)
            .into_iter()
            .map(|at| at.mul_f64(0.7 * span.as_secs_f64() / window.as_secs_f64()))
            .collect();
        Plan {
            span,
            kills,
            pg,
            storms,
            pause_at: window.mul_f64(0.35),
            pause_for: LEASE * 2,
            stops_at,
            failovers,
            db_cuts,
            row_locks,
        }
    }

    /// How many orders should be in the table `elapsed` into the run.
    fn orders_due(&self, elapsed: Duration, n: usize) -> usize {
        let share = elapsed.as_secs_f64() / self.span.as_secs_f64();
        ((share * n as f64) as usize + 1).min(n)
    }
}

/// The slots whose processes may carry the `stop-before-pay` failpoint: all but the skewed
/// slot 0, so that one worker always runs to take a stopped worker's row over (slot 0 itself
/// when it is the only one).
pub fn failpoint_slots(workers: usize) -> Vec<usize> {
    if workers == 1 {
        vec![0]
    } else {
        (1..workers).collect()
    }
}

/// The failpoint's probability: about twice the stops asked for, over the pay.do the
/// failpoint slots are expected to send (the failpoint is dropped at their restarts once
/// enough stops were seen, and forced for one stop when they lag behind).
pub fn failpoint_p(args: &Args) -> Option<f64> {
    if args.stops == 0 {
        return None;
    }
    let slots = failpoint_slots(args.workers).len() as f64;
    let pays = args.orders as f64 * slots / args.workers as f64;
    Some((2.0 * args.stops as f64 / pays).min(0.25))
}

/// How long a process forced to stop before its first pay.do may go without one before a fresh
/// process takes its place (three leases: a pause of paying, a pooler's login retry), and how
/// many times in a run.
const FORCED_PATIENCE: Duration = Duration::from_secs(15);
const FORCED_REFRESHES: usize = 4;

/// A process started with the failpoint forced on (`stop-before-pay:1`) stops at every pay.do:
/// after its first stop it is SIGKILLed and restarted without, once its late pay.do has had
/// time to leave and be answered.
struct Retiring {
    slot: usize,
    id: String,
    thawed: Instant,
}

/// What the schedule did.
#[derive(Default)]
pub struct Outcome {
    pub kills: usize,
    pub pg_restarts: usize,
    /// The frozen pause and every stop before pay.do, in the order they ended.
    pub pauses: Vec<Pause>,
    pub stops: usize,
    pub storms: usize,
    /// Plain `retry` of `needs_review` rows that were accepted.
    pub retries: usize,
    pub retries_refused: usize,
    pub failovers: usize,
    /// Cuts of the workers' database that lasted longer than the lease.
    pub db_cuts: usize,
    /// Outside row locks taken and held.
    pub row_locks: usize,
    pub timed_out: bool,
    pub notes: Vec<String>,
    /// An operator's pause of paying (every method), mid-run: when it took effect and when it
    /// was resumed, in the database's time (rule S4).
    pub paying_paused: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl Outcome {
    /// A kill the plan did not have (to force or to end a stop before pay.do): counted, said,
    /// and kept as a note.
    fn unplanned_kill(&mut self, started: Instant, note: String) {
        self.kills += 1;
        say(started, &note);
        self.notes.push(note);
    }
}

/// What the schedule works with.
pub struct Ctx<'a> {
    pub args: &'a Args,
    pub plan: &'a Plan,
    pub pool: &'a PgPool,
    pub db_url: &'a str,
    pub db: &'a Database,
    pub proxy: &'a AtripProxy,
    pub orders: &'a [Order],
    pub restarter: &'a Restarter,
    pub sim: &'a SimHandle,
    pub started: Instant,
}

/// The failpoint policy: which processes stop before a pay.do.
struct Stops {
    target: usize,
    p: Option<f64>,
    slots: Vec<usize>,
}

impl Stops {
    /// The failpoint for processes started in `slot` from now on, given `seen` stops.
    fn arm(&self, fleet: &mut Fleet, seen: usize) {
        for &slot in &self.slots {
            fleet.slots[slot].failpoint = if seen < self.target { self.p } else { None };
        }
    }

    /// A process in a failpoint slot that will stop at its next pay.do, not stopped yet.
    fn forced_pending(&self, fleet: &Fleet) -> bool {
        self.slots
            .iter()
            .any(|&s| fleet.slots[s].running_failpoint == Some(1.0) && !fleet.slots[s].paused)
    }
}

/// Enqueues the orders over the span and injects the kills, PostgreSQL cuts, storms, the pause
/// and the stops at their moments, retries `needs_review` rows, until every order is terminal
/// or the deadline passes.
pub async fn chaos(ctx: &Ctx<'_>, fleet: &mut Fleet, rng: &mut StdRng) -> Outcome {
    let Ctx {
        args,
        plan,
        pool,
        db_url,
        db,
        proxy,
        orders,
        restarter,
        sim,
        started,
    } = *ctx;
    let store = JobStore::new(pool.clone());
    let stops = Stops {
        target: args.stops,
        p: failpoint_p(args),
        slots: failpoint_slots(args.workers),
    };
    let mut out = Outcome::default();
    let t0 = Instant::now();
    let (mut kills, mut pgs) = (plan.kills.clone(), plan.pg.clone());
    let (mut enqueued, mut next_kill, mut next_pg, mut next_storm) = (0, 0, 0, 0);
    let mut frozen: Option<Frozen> = None;
    let mut stopped: Vec<Frozen> = Vec::new();
    let mut pause_done = false;
    let mut seen_requests = 0;
    // Resumed workers are left alone for a lease, so their first steps after SIGCONT happen.
    let mut spared: Vec<(usize, Instant)> = Vec::new();
    let mut retried: HashSet<String> = HashSet::new();
    let mut retiring: Vec<Retiring> = Vec::new();
    // Processes started with the failpoint forced on: slot, process id, when.
    let mut forced_at: Vec<(usize, String, Instant)> = Vec::new();
    let mut refreshes = 0;
    let mut planned = 0;
    let (mut next_failover, mut next_cut) = (0, 0);
    let mut failing_over: Option<tokio::task::JoinHandle<Result<String, String>>> = None;
    let mut cut: Option<Instant> = None;
    // The storm under way: when it started and how many queries had met storms before it.
    let mut storming: Option<(Instant, u64)> = None;
    let mut locks: tokio::task::JoinSet<Result<Option<String>, String>> = Default::default();
    let mut lock_retry_at = Instant::now();
    let mut last_retry = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        let now = t0.elapsed();
        let due = plan.orders_due(now, orders.len());
        if due > enqueued {
            match orders::enqueue(pool, &orders[enqueued..due]).await {
                Ok(()) => enqueued = due,
                Err(e) => out.notes.push(format!("enqueue retried: {e}")),
            }
        }
        for note in fleet.restart_exited() {
            say(started, note);
        }
        spared.retain(|(_, until)| Instant::now() < *until);

        // Workers that stopped themselves before a pay.do: held past the lease until the row
        // is taken over, then SIGCONTed (their pay.do leaves late).
        for slot in 0..fleet.slots.len() {
            if !fleet.stopped_itself(slot) {
                continue;
            }
            if retiring.iter().any(|r| r.slot == slot) {
                // Its forced stop is done: stopped again before another pay.do, it is killed
                // there (that intent is never sent: the row goes to a person).
                retiring.retain(|r| r.slot != slot);
                retire(
                    fleet,
                    slot,
                    &mut out,
                    started,
                    "stopped again before a pay.do",
                );
                continue;
            }
            match pause::adopt(pool, fleet, slot, started).await {
                Ok(f) => {
                    out.stops += 1;
                    stops.arm(fleet, out.stops);
                    stopped.push(f);
                }
                Err(e) => say(started, format!("stop before pay.do: {e}")),
            }
        }
        let mut k = 0;
        while k < stopped.len() {
            let held_for = stopped[k].since.elapsed();
            let taken = pause::stop_row_taken(pool, &stopped[k]).await;
            let enough = match taken {
                Some(taken) => held_for >= STOP_HOLD_MIN && (taken || held_for >= STOP_HOLD_MAX),
                None => held_for >= LEASE * 2,
            };
            if enough || started.elapsed() > args.deadline {
                let f = stopped.remove(k);
                spared.push((f.slot, Instant::now() + LEASE));
                if fleet.slots[f.slot].running_failpoint == Some(1.0) {
                    retiring.push(Retiring {
                        slot: f.slot,
                        id: fleet.slots[f.slot].id.clone(),
                        thawed: Instant::now(),
                    });
                }
                out.pauses.push(pause::thaw(pool, fleet, f, started).await);
            } else {
                k += 1;
            }
        }

        retiring.retain(|r| fleet.slots[r.slot].id == r.id);
        if let Some(k) = retiring
            .iter()
            .position(|r| r.thawed.elapsed() >= RETIRE_AFTER)
        {
            let r = retiring.remove(k);
            retire(fleet, r.slot, &mut out, started, "its forced stop is done");
        }

        // Failovers: one at a time, in a task of its own (the loop goes on meanwhile); not
        // while a worker is frozen by us, nor while the workers' database is cut.
        if failing_over.as_ref().is_some_and(|t| t.is_finished()) {
            let finished = failing_over.take().expect("checked");
            let result = finished.await.map_err(|e| e.to_string()).and_then(|r| r);
            match result {
                Ok(what) => {
                    out.failovers += 1;
                    say(
                        started,
                        format!(
                            "failover {}/{} done: {what}",
                            out.failovers,
                            plan.failovers.len()
                        ),
                    );
                }
                Err(e) => {
                    let note = format!("failover failed: {e}");
                    say(started, &note);
                    out.notes.push(note);
                }
            }
        }
        if failing_over.is_none()
            && cut.is_none()
            && frozen.is_none()
            && next_failover < plan.failovers.len()
            && now >= plan.failovers[next_failover]
        {
            next_failover += 1;
            let pair = db.describe().await;
            failing_over = db.failover();
            say(
                started,
                format!(
                    "failover {next_failover}/{}: the primary of {pair} is lost at once",
                    plan.failovers.len()
                ),
            );
        }
        // Cuts of the workers' database longer than the lease, preferably while a worker
        // waits on ATRIP (its answer then has to be recorded across the cut).
        match cut {
            Some(since) if since.elapsed() >= DB_CUT => {
                db.release_workers();
                cut = None;
                out.db_cuts += 1;
                say(
                    started,
                    format!(
                        "workers' database back after {} ms (cut {}/{})",
                        since.elapsed().as_millis(),
                        out.db_cuts,
                        plan.db_cuts.len()
                    ),
                );
            }
            None if failing_over.is_none()
                && frozen.is_none()
                && next_cut < plan.db_cuts.len()
                && now >= plan.db_cuts[next_cut] =>
            {
                let (calls, pays) = proxy.in_flight();
                let waited = now - plan.db_cuts[next_cut];
                if pays > 0 || calls > 0 && waited >= TICK * 5 || waited >= CUT_WAITS_FOR_A_CALL {
                    next_cut += 1;
                    let open = db.cut_workers();
                    cut = Some(Instant::now());
                    say(
                        started,
                        format!(
                            "workers' database cut {next_cut}/{}: {open} connections reset, new ones held for {} ms (the lease is {} ms); {calls} ATRIP calls in flight, {pays} of them pay.do",
                            plan.db_cuts.len(),
                            DB_CUT.as_millis(),
                            LEASE.as_millis()
                        ),
                    );
                }
            }
            _ => {}
        }
        // Row locks held by an outside session, as a person's `SELECT … FOR UPDATE`.
        let lock_due = out.row_locks + locks.len();
        if lock_due < plan.row_locks.len()
            && now >= plan.row_locks[lock_due]
            && Instant::now() >= lock_retry_at
            && failing_over.is_none()
        {
            let hold = database::row_lock_hold(rng, LEASE);
            locks.spawn(database::lock_a_row(pool.clone(), hold));
        }
        while let Some(done) = locks.try_join_next() {
            match done.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(Some(what)) => {
                    out.row_locks += 1;
                    say(
                        started,
                        format!(
                            "outside row lock {}/{}: SELECT … FOR UPDATE on {what} held, then rolled back",
                            out.row_locks,
                            plan.row_locks.len()
                        ),
                    );
                }
                Ok(None) => lock_retry_at = Instant::now() + Duration::from_secs(1),
                Err(e) => {
                    say(started, format!("outside row lock failed: {e}"));
                    lock_retry_at = Instant::now() + Duration::from_secs(1);
                }
            }
        }

        // Kills and PostgreSQL cuts wait while a worker is frozen by us (they follow the
        // resume), so that the others are there to take its rows over.
        let stops_due = plan.stops_at.iter().filter(|at| now >= **at).count();
        let behind = out.stops < stops_due && !stops.forced_pending(fleet) && retiring.is_empty();
        if frozen.is_none() && next_kill < kills.len() && now >= kills[next_kill] {
            // With every worker frozen or just resumed, the kill waits for one to pick.
            if let Some((id, slot, forced)) =
                kill_one(fleet, &stops, &spared, Force::when(behind), out.stops, rng)
            {
                if forced {
                    forced_at.push((slot, fleet.slots[slot].id.clone(), Instant::now()));
                }
                next_kill += 1;
                out.kills += 1;
                planned += 1;
                let forced = if forced {
                    " with stop-before-pay:1 (the stops before pay.do lag behind)"
                } else {
                    ""
                };
                say(
                    started,
                    format!(
                        "SIGKILL {id} ({planned}/{} planned); restarted as {}{forced}",
                        args.kills, fleet.slots[slot].id
                    ),
                );
            }
        } else if behind {
            // No planned kill is due: one more, to force the failpoint.
            if let Some((id, slot, _)) =
                kill_one(fleet, &stops, &spared, Force::Only, out.stops, rng)
            {
                forced_at.push((slot, fleet.slots[slot].id.clone(), Instant::now()));
                out.unplanned_kill(started, format!(
                    "SIGKILL {id} (unplanned: the stops before pay.do lag behind); restarted as {} with stop-before-pay:1",
                    fleet.slots[slot].id
                ));
            }
        }
        // A process forced to stop before its first pay.do that has sent none for a while (its
        // start fell in a pause of paying, behind a pooler still refusing logins after a
        // failover, while the others took the orders): a fresh one, forced again, while
        // orders are still to pay, so that the stops asked for happen.
        forced_at.retain(|(slot, id, _)| {
            let s = &fleet.slots[*slot];
            s.id == *id && s.running_failpoint == Some(1.0)
        });
        if out.stops < stops_due && frozen.is_none() && refreshes < FORCED_REFRESHES {
            if let Some(k) = forced_at.iter().position(|(slot, _, at)| {
                at.elapsed() >= FORCED_PATIENCE
                    && !fleet.slots[*slot].paused
                    && !fleet.stopped_itself(*slot)
            }) {
                let (slot, _, _) = forced_at.remove(k);
                match kill_and_restart_forced(fleet, slot) {
                    Ok(id) => {
                        refreshes += 1;
                        forced_at.push((slot, fleet.slots[slot].id.clone(), Instant::now()));
                        out.unplanned_kill(started, format!(
                            "SIGKILL {id} (unplanned: its forced stop before pay.do has not come in {} s); restarted as {} with stop-before-pay:1",
                            FORCED_PATIENCE.as_secs(),
                            fleet.slots[slot].id
                        ));
                    }
                    Err(e) => say(started, format!("kill failed: {e}")),
                }
            }
        }
        if frozen.is_none() && failing_over.is_none() && next_pg < pgs.len() && now >= pgs[next_pg]
        {
            next_pg += 1;
            match restarter
                .restart(db_url, &fleet.dir.join("pg-restart.log"))
                .await
            {
                Ok(what) => {
                    out.pg_restarts += 1;
                    say(
                        started,
                        format!(
                            "PostgreSQL restart {}/{}: {what}",
                            out.pg_restarts, args.pg_restarts
                        ),
                    );
                }
                Err(e) => say(started, format!("PostgreSQL restart failed: {e}")),
            }
        }
        // A storm waits for a running worker that can claim rows: it is there to meet
        // queries (none are asked while the workers' database is cut or failing over).
        let running = !fleet.killable().is_empty() && cut.is_none() && failing_over.is_none();
        if let Some((since, before)) = storming {
            if since.elapsed() >= STORM {
                let met = sim.ledger()["totals"]["storm_answers"]
                    .as_u64()
                    .unwrap_or(0)
                    > before;
                if met || since.elapsed() >= STORM_MAX {
                    storming = None;
                } else {
                    sim.storm(TICK * 2);
                }
            }
        }
        if running
            && storming.is_none()
            && next_storm < plan.storms.len()
            && now >= plan.storms[next_storm]
        {
            next_storm += 1;
            let before = sim.ledger()["totals"]["storm_answers"]
                .as_u64()
                .unwrap_or(0);
            storming = Some((Instant::now(), before));
            sim.storm(STORM);
            out.storms += 1;
            say(
                started,
                format!(
                    "query storm {}/{}: every order query answers 429 for {} ms (longer, up to {} s, until one query has met it)",
                    out.storms,
                    plan.storms.len(),
                    STORM.as_millis(),
                    STORM_MAX.as_secs()
                ),
            );
        }
        // An operator pauses paying at half the span and resumes a few seconds later; tried
        // again on the next tick while the database is away.
        match out.paying_paused {
            None if now >= plan.span / 2 => {
                match store
                    .pause(PauseScope::Every, "chaos: an incident", OPERATOR)
                    .await
                {
                    Ok(p) => {
                        out.paying_paused = Some((p.paused_at, None));
                        say(
                            started,
                            format!("paying paused (every method) at {}", p.paused_at),
                        );
                    }
                    Err(e) => say(started, format!("pause failed, tried again: {e}")),
                }
            }
            Some((at, None)) if now >= plan.span / 2 + PAYING_PAUSE => {
                match store.resume(PauseScope::Every, OPERATOR).await {
                    Ok(r) => {
                        out.paying_paused = Some((at, r.pause.resumed_at));
                        say(
                            started,
                            format!("paying resumed ({} waiting retries woken)", r.woken),
                        );
                    }
                    Err(e) => say(started, format!("resume failed, tried again: {e}")),
                }
            }
            _ => {}
        }
        match frozen.take() {
            None if !pause_done && now >= plan.pause_at && stopped.is_empty() => {
                let requests = sim.requests();
                let fresh = &requests[seen_requests.min(requests.len())..];
                seen_requests = requests.len();
                let fallback = now >= plan.pause_at + Duration::from_secs(10);
                // Someone must be left to take the frozen worker's rows over.
                let others = fleet.slots.len() == 1 || fleet.killable().len() >= 2;
                // While stops before pay.do are still wanted the failpoint slots stay free to
                // be restarted with it forced, so slot 0 is frozen; afterwards slot 0 is the
                // one left running (it never stops itself). Never a process about to stop.
                let mut avoid: Vec<usize> = match (fleet.slots.len(), out.stops < stops.target) {
                    (1, _) => Vec::new(),
                    (_, true) => stops.slots.clone(),
                    (_, false) => vec![0],
                };
                avoid.extend(retiring.iter().map(|r| r.slot));
                avoid.extend(
                    (0..fleet.slots.len())
                        .filter(|&s| fleet.slots[s].running_failpoint == Some(1.0)),
                );
                let pick = if others {
                    pause::pick(pool, fleet, orders, fresh, fallback, &avoid).await
                } else {
                    None
                };
                if let Some((slot, why)) = pick {
                    match pause::freeze(pool, fleet, slot, &why, started).await {
                        Ok(f) => frozen = Some(f),
                        Err(e) => say(started, format!("pause: {e}")),
                    }
                }
            }
            Some(f) if f.since.elapsed() >= plan.pause_for => {
                spared.push((f.slot, Instant::now() + LEASE));
                out.pauses.push(pause::thaw(pool, fleet, f, started).await);
                pause_done = true;
                // What fell due during the pause happens now, a second and a half apart.
                let resumed = t0.elapsed();
                for list in [&mut kills[next_kill..], &mut pgs[next_pg..]] {
                    for (k, at) in list.iter_mut().filter(|at| **at < resumed).enumerate() {
                        *at = resumed + Duration::from_millis(1500) * (k as u32 + 1);
                    }
                    list.sort();
                }
            }
            other => frozen = other,
        }
        if last_retry.elapsed() >= RETRY_EVERY {
            last_retry = Instant::now();
            retry_reviews(&store, &mut retried, &mut out, started).await;
        }
        if last_progress.elapsed() >= Duration::from_secs(3) {
            last_progress = Instant::now();
            if let Ok(states) = state_counts(pool).await {
                say(
                    started,
                    format!("enqueued {enqueued}/{}: {states}", orders.len()),
                );
            }
        }
        let pause_settled = pause_done || now > plan.pause_at + Duration::from_secs(15);
        let faults_done = failing_over.is_none()
            && cut.is_none()
            && locks.is_empty()
            && next_failover == plan.failovers.len()
            && next_cut == plan.db_cuts.len();
        if enqueued == orders.len()
            && frozen.is_none()
            && stopped.is_empty()
            && pause_settled
            && faults_done
        {
            // Done once nothing is left to work on and every needs_review row had its retry.
            if let Ok(0) = unfinished(pool).await {
                if retry_reviews(&store, &mut retried, &mut out, started).await == 0 {
                    break;
                }
            }
        }
        if started.elapsed() > args.deadline {
            out.timed_out = true;
            if cut.take().is_some() {
                db.release_workers();
            }
            if let Some(task) = failing_over.take() {
                if let Ok(Ok(Ok(what))) = tokio::time::timeout(Duration::from_secs(60), task).await
                {
                    out.failovers += 1;
                    say(started, format!("failover done: {what}"));
                }
            }
            locks.abort_all();
            if let Some(f) = frozen.take() {
                out.pauses.push(pause::thaw(pool, fleet, f, started).await);
            }
            for f in stopped.drain(..) {
                out.pauses.push(pause::thaw(pool, fleet, f, started).await);
            }
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    while let Some(done) = locks.join_next().await {
        if let Ok(Ok(Some(_))) = done {
            out.row_locks += 1;
        }
    }
    if next_kill < kills.len() || next_pg < pgs.len() || next_storm < plan.storms.len() {
        out.notes.push(format!(
            "every order was terminal before the schedule ended: {}/{} kills, {}/{} restarts and {}/{} storms done",
            out.kills,
            kills.len(),
            out.pg_restarts,
            pgs.len(),
            out.storms,
            plan.storms.len()
        ));
    }
    out
}

/// Whether a kill forces the failpoint on the process it restarts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Force {
    No,
    /// On a failpoint slot, if one can be killed; else an ordinary kill.
    IfPossible,
    /// On a failpoint slot, or no kill at all.
    Only,
}

impl Force {
    fn when(behind: bool) -> Force {
        if behind {
            Force::IfPossible
        } else {
            Force::No
        }
    }
}

/// One planned SIGKILL and restart. When the stops before pay.do lag behind (`force`), a
/// failpoint slot is picked and its new process stops at its first pay.do; once enough stops
/// were seen, slots still carrying the failpoint go first (their new process has none).
/// Returns the killed id, the slot, and whether the failpoint was forced.
fn kill_one(
    fleet: &mut Fleet,
    stops: &Stops,
    spared: &[(usize, Instant)],
    force: Force,
    seen: usize,
    rng: &mut StdRng,
) -> Option<(String, usize, bool)> {
    // Not a process just resumed, nor one whose forced stop is still to come.
    let choices: Vec<usize> = fleet
        .killable()
        .into_iter()
        .filter(|s| !spared.iter().any(|(p, _)| p == s))
        .filter(|&s| fleet.slots[s].running_failpoint != Some(1.0))
        .collect();
    let armed: Vec<usize> = choices
        .iter()
        .copied()
        .filter(|s| stops.slots.contains(s))
        .collect();
    let carrying: Vec<usize> = choices
        .iter()
        .copied()
        .filter(|&s| fleet.slots[s].running_failpoint.is_some())
        .collect();
    let (slot, forced) = if force != Force::No && stops.target > 0 && !armed.is_empty() {
        (*armed.choose(rng)?, true)
    } else if force == Force::Only {
        return None;
    } else if seen >= stops.target && !carrying.is_empty() {
        (*carrying.choose(rng)?, false)
    } else {
        (*choices.choose(rng)?, false)
    };
    let killed = if forced {
        kill_and_restart_forced(fleet, slot)
    } else {
        fleet.kill_and_restart(slot)
    };
    match killed {
        Ok(id) => Some((id, slot, forced)),
        Err(e) => {
            println!("kill failed: {e}");
            None
        }
    }
}

/// SIGKILLs the process in `slot` and restarts it with the failpoint forced on
/// (`stop-before-pay:1`); the slot keeps its usual failpoint for later restarts.
fn kill_and_restart_forced(fleet: &mut Fleet, slot: usize) -> Result<String, String> {
    let normal = fleet.slots[slot].failpoint;
    fleet.slots[slot].failpoint = Some(1.0);
    let killed = fleet.kill_and_restart(slot);
    fleet.slots[slot].failpoint = normal;
    killed
}

/// SIGKILLs the process in `slot`, which ran with the failpoint forced on, and restarts it
/// with the slot's usual failpoint.
fn retire(fleet: &mut Fleet, slot: usize, out: &mut Outcome, started: Instant, why: &str) {
    match fleet.kill_and_restart(slot) {
        Ok(id) => out.unplanned_kill(
            started,
            format!(
                "SIGKILL {id} ({why}; it ran with stop-before-pay:1); restarted as {}",
                fleet.slots[slot].id
            ),
        ),
        Err(e) => say(started, format!("kill failed: {e}")),
    }
}

/// An operator's plain `retry` (no `--repay`) of every `needs_review` row not retried yet;
/// returns how many were put back to work.
async fn retry_reviews(
    store: &JobStore,
    retried: &mut HashSet<String>,
    out: &mut Outcome,
    started: Instant,
) -> usize {
    let Ok(rows) = sqlx::query("SELECT order_no FROM ticketing_jobs WHERE state = 'needs_review'")
        .fetch_all(store.pool())
        .await
    else {
        return 0;
    };
    let mut done = 0;
    for r in rows {
        let no: String = r.get("order_no");
        if retried.contains(&no) {
            continue;
        }
        match store.retry(&no, None, false, OPERATOR).await {
            Ok(back) => {
                retried.insert(no.clone());
                out.retries += 1;
                done += 1;
                say(
                    started,
                    format!(
                        "retry {no}: back to {} (may pay again: {})",
                        back.state, back.may_pay
                    ),
                );
            }
            // A database cut: try again at the next round.
            Err(jobs::Error::Database(_)) => {}
            Err(e) => {
                retried.insert(no.clone());
                out.retries_refused += 1;
                say(started, format!("retry {no} refused: {e}"));
            }
        }
    }
    done
}

async fn state_counts(pool: &PgPool) -> Result<String, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM ticketing_jobs GROUP BY state ORDER BY state",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{}={}", r.get::<String, _>("state"), r.get::<i64, _>("n")))
        .collect::<Vec<_>>()
        .join(" "))
}

async fn unfinished(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM ticketing_jobs WHERE state IN ('pending', 'paying', 'ticketing')",
    )
    .fetch_one(pool)
    .await
}
