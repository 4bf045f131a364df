//! The schedule: orders enqueued evenly over a span, kills and PostgreSQL cuts spread over it,
//! one pause in it, until every order is terminal or the deadline passes.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use sqlx::{PgPool, Row};
use ticketing_tracker::simulator::SimHandle;

use crate::args::Args;
use crate::checks::Pause;
use crate::orders::{self, Order};
use crate::pause::{self, Frozen};
use crate::pg::Restarter;
use crate::procs::Fleet;
use crate::run::{say, LEASE};

/// How often the schedule looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// When things happen, as offsets from the start of the run.
pub struct Plan {
    /// Orders are enqueued evenly over this span, so the workers are busy the whole time the
    /// faults are injected (not done before the first kill).
    pub span: Duration,
    kills: Vec<Duration>,
    pg: Vec<Duration>,
    pause_at: Duration,
    /// Past the lease, so the paused worker's rows are taken over while it is frozen.
    pub pause_for: Duration,
}

impl Plan {
    pub fn new(args: &Args, rng: &mut StdRng) -> Plan {
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
        Plan {
            span,
            kills,
            pg,
            pause_at: window.mul_f64(0.35),
            pause_for: LEASE * 2,
        }
    }

    /// How many orders should be in the table `elapsed` into the run.
    fn orders_due(&self, elapsed: Duration, n: usize) -> usize {
        let share = elapsed.as_secs_f64() / self.span.as_secs_f64();
        ((share * n as f64) as usize + 1).min(n)
    }
}

/// What the schedule did.
#[derive(Default)]
pub struct Outcome {
    pub kills: usize,
    pub pg_restarts: usize,
    pub pause: Option<Pause>,
    pub timed_out: bool,
    pub notes: Vec<String>,
}

/// What the schedule works with.
pub struct Ctx<'a> {
    pub args: &'a Args,
    pub plan: &'a Plan,
    pub pool: &'a PgPool,
    pub db_url: &'a str,
    pub orders: &'a [Order],
    pub restarter: &'a Restarter,
    pub sim: &'a SimHandle,
    pub started: Instant,
}

/// Enqueues the orders over the span and injects the kills, PostgreSQL cuts and the pause at
/// their moments, until every order is terminal or the deadline passes.
pub async fn chaos(ctx: &Ctx<'_>, fleet: &mut Fleet, rng: &mut StdRng) -> Outcome {
    let Ctx {
        args,
        plan,
        pool,
        db_url,
        orders,
        restarter,
        sim,
        started,
    } = *ctx;
    let mut out = Outcome::default();
    let t0 = Instant::now();
    let (mut kills, mut pgs) = (plan.kills.clone(), plan.pg.clone());
    let (mut enqueued, mut next_kill, mut next_pg) = (0, 0, 0);
    let mut frozen: Option<Frozen> = None;
    let mut pause_done = false;
    let mut seen_requests = 0;
    // The resumed worker is left alone for a while, so its first steps after SIGCONT happen.
    let mut spared: Option<(usize, Instant)> = None;
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
        // Kills and PostgreSQL cuts wait while a worker is frozen (they follow the resume),
        // so that the others are there to take its rows over.
        if frozen.is_none() && next_kill < kills.len() && now >= kills[next_kill] {
            next_kill += 1;
            let spare = spared
                .filter(|(_, until)| Instant::now() < *until)
                .map(|(s, _)| s);
            let choices: Vec<usize> = fleet
                .killable()
                .into_iter()
                .filter(|s| Some(*s) != spare)
                .collect();
            if let Some(&slot) = choices.choose(rng) {
                match fleet.kill_and_restart(slot) {
                    Ok(id) => {
                        out.kills += 1;
                        say(
                            started,
                            format!(
                                "SIGKILL {id} ({}/{}); restarted as {}",
                                out.kills, args.kills, fleet.slots[slot].id
                            ),
                        );
                    }
                    Err(e) => say(started, format!("kill failed: {e}")),
                }
            }
        }
        if frozen.is_none() && next_pg < pgs.len() && now >= pgs[next_pg] {
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
        match frozen.take() {
            None if !pause_done && now >= plan.pause_at => {
                let requests = sim.requests();
                let fresh = &requests[seen_requests.min(requests.len())..];
                seen_requests = requests.len();
                let fallback = now >= plan.pause_at + Duration::from_secs(10);
                if let Some((slot, why)) = pause::pick(pool, fleet, orders, fresh, fallback).await {
                    match pause::freeze(pool, fleet, slot, &why, started).await {
                        Ok(f) => frozen = Some(f),
                        Err(e) => say(started, format!("pause: {e}")),
                    }
                }
            }
            Some(f) if f.since.elapsed() >= plan.pause_for => {
                spared = Some((f.slot, Instant::now() + LEASE * 2));
                out.pause = Some(pause::thaw(pool, fleet, f, started).await);
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
        if enqueued == orders.len() && frozen.is_none() && pause_settled {
            if let Ok(0) = unfinished(pool).await {
                break;
            }
        }
        if started.elapsed() > args.deadline {
            out.timed_out = true;
            if let Some(f) = frozen.take() {
                out.pause = Some(pause::thaw(pool, fleet, f, started).await);
            }
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    if next_kill < kills.len() || next_pg < pgs.len() {
        out.notes.push(format!(
            "every order was terminal before the schedule ended: {}/{} kills and {}/{} restarts done",
            out.kills,
            kills.len(),
            out.pg_restarts,
            pgs.len()
        ));
    }
    out
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
