//! One run: the database, the simulator, the orders, the worker processes, and the schedule of
//! what goes wrong (kills, PostgreSQL cuts, one pause), then the checks and the figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{PgPool, Row};
use ticketing_tracker::localpg::Scratch;
use ticketing_tracker::simulator::{self, SimConfig, SimHandle};

use crate::args::Args;
use crate::checks::{self, Data, Limits, Pause};
use crate::orders::{self, Order, MAX_IN_PROGRESS_MS};
use crate::pause::{self, Frozen};
use crate::pg::Restarter;
use crate::procs::{self, Fleet};

/// Short, so that a killed worker's rows come back within seconds and a pause of two leases
/// fits in a small run.
const LEASE: Duration = Duration::from_millis(3000);
/// At most half the lease, as the worker's configuration check demands.
const PAY_TIMEOUT: Duration = Duration::from_millis(1500);
/// Small, yet pay timeout + grace (3.5 s) outlasts the longest payment-in-progress window the
/// simulator is given (2.5 s from the charge): inside that window ATRIP shows a charged order
/// as unpaid, and the protocol must not believe it.
const PAY_GRACE: Duration = Duration::from_millis(2000);
// The in-progress window must end before the protocol may believe "unpaid" (see PAY_GRACE).
const _: () =
    assert!((MAX_IN_PROGRESS_MS as u128) < PAY_TIMEOUT.as_millis() + PAY_GRACE.as_millis());
/// How often the schedule looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// When things happen, as offsets from the start of the run.
struct Plan {
    /// Orders are enqueued evenly over this span, so the workers are busy the whole time the
    /// faults are injected (not done before the first kill).
    span: Duration,
    kills: Vec<Duration>,
    pg: Vec<Duration>,
    pause_at: Duration,
    /// Past the lease, so the paused worker's rows are taken over while it is frozen.
    pause_for: Duration,
}

impl Plan {
    fn new(args: &Args, rng: &mut StdRng) -> Plan {
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

/// The figures of the final line.
#[derive(Default)]
struct Figures {
    orders: usize,
    kills: usize,
    pg_restarts: usize,
    faults: u64,
    double_charges: usize,
    lost: usize,
    stranded: usize,
}

/// Runs everything and prints the final line; returns the exit status.
pub async fn run(args: Args, started: Instant) -> i32 {
    let mut fig = Figures {
        orders: args.orders,
        ..Figures::default()
    };
    let code = match body(&args, started, &mut fig).await {
        Ok(code) => code,
        Err(e) => {
            println!("chaos: FAILED: {e}");
            1
        }
    };
    println!(
        "chaos: orders={} kills={} pg_restarts={} faults={} double_charges={} lost={} stranded={} elapsed_s={:.1}",
        fig.orders,
        fig.kills,
        fig.pg_restarts,
        fig.faults,
        fig.double_charges,
        fig.lost,
        fig.stranded,
        started.elapsed().as_secs_f64()
    );
    code
}

pub fn say(started: Instant, msg: impl AsRef<str>) {
    println!(
        "[{:6.1}s] {}",
        started.elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

async fn body(args: &Args, started: Instant, fig: &mut Figures) -> Result<i32, String> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let plan = Plan::new(args, &mut rng);
    say(
        started,
        format!(
            "chaos run: {} orders over {:.0} s, {} workers, {} kills, {} PostgreSQL restarts, one pause of {} ms, fault rate {} (replay: --seed {})",
            args.orders,
            plan.span.as_secs_f64(),
            args.workers,
            args.kills,
            args.pg_restarts,
            plan.pause_for.as_millis(),
            args.fault_rate,
            args.seed
        ),
    );
    let db = Scratch::create("chaos")
        .await
        .map_err(|e| format!("no database: {e:#}"))?;
    let result = with_database(args, started, fig, &plan, &mut rng, &db).await;
    db.drop_database().await;
    result
}

/// Everything after the database exists (which the caller drops however this ends).
async fn with_database(
    args: &Args,
    started: Instant,
    fig: &mut Figures,
    plan: &Plan,
    rng: &mut StdRng,
    db: &Scratch,
) -> Result<i32, String> {
    let (restarter, how) = Restarter::choose(
        args.pg_restart_cmd.as_deref(),
        &db.server_url,
        db.cluster.is_some(),
    );
    let on = if db.cluster.is_some() {
        "a throwaway local cluster"
    } else {
        "DATABASE_URL's server"
    };
    say(
        started,
        format!("database {} on {on}; PostgreSQL restarts: {how}", db.name),
    );
    let sim = simulator::start(
        SimConfig {
            auto_create: true,
            fault_rate: args.fault_rate,
            fault_seed: Some(args.seed),
            one_passenger_at_a_time: true,
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let orders = orders::prepare(&sim, rng, args.orders).await?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chaos-{}-{}",
        Utc::now().format("%Y%m%d-%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ticketing-tracker"));
    let mut fleet = Fleet::new(
        exe,
        worker_env(&db.url, &sim.base_url()),
        dir.clone(),
        args.workers,
    );
    fleet.start_all()?;
    say(
        started,
        format!(
            "simulator at {}; workers started, logs in {}",
            sim.base_url(),
            dir.display()
        ),
    );

    let ctx = Ctx {
        args,
        plan,
        pool: &db.pool,
        db_url: &db.url,
        orders: &orders,
        restarter: &restarter,
        sim: &sim,
        started,
    };
    let outcome = chaos(&ctx, &mut fleet, rng).await;
    fleet.kill_all();
    fig.kills = outcome.kills;
    fig.pg_restarts = outcome.pg_restarts;

    let (jobs, events) = load_with_retries(&db.pool).await?;
    let data = Data {
        jobs,
        events,
        ledger: sim.ledger(),
        requests: sim.requests(),
    };
    let limits = Limits {
        lease: LEASE,
        settle: PAY_TIMEOUT + PAY_GRACE,
        request_slack: Duration::from_millis(250),
    };
    let mut report = checks::check(&orders, &data, outcome.pause.as_ref(), &limits);
    for log in fleet.logs() {
        for line in procs::grep(&log, "panicked") {
            report.violations.push(checks::Violation {
                check: "worker_panics",
                order: None,
                what: format!("{}: {line}", log.display()),
            });
        }
    }
    let totals = &data.ledger["totals"];
    fig.faults = totals["faults_injected"].as_u64().unwrap_or(0);
    fig.double_charges = report.double_charges;
    fig.lost = report.lost;
    fig.stranded = report.stranded;

    let states: Vec<String> = report
        .states
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect();
    say(started, format!("final states: {}", states.join(" ")));
    say(
        started,
        format!(
            "ATRIP saw {} pay.do, {} charges, {} queries, {} faults injected; {} requests logged",
            totals["pay_requests"],
            totals["charges"],
            totals["queries"],
            totals["faults_injected"],
            data.requests.len()
        ),
    );
    say(
        started,
        format!(
            "{} further pay intents, each after an unpaid answer ({} with that answer recorded in the intent's own event)",
            report.repays, report.repays_justified_in_place
        ),
    );
    for (reason, n) in outcome_reasons(&data.jobs) {
        say(started, format!("{n:>5} x {reason}"));
    }
    let count_lines = |needle: &str| -> usize {
        fleet
            .logs()
            .iter()
            .map(|l| procs::grep(l, needle).len())
            .sum()
    };
    say(
        started,
        format!(
            "worker logs: {} processes, {} \"lease lost\", {} \"about to expire\", {} \"could not record\", {} exited on their own",
            fleet.logs().len(),
            count_lines("lease lost"),
            count_lines("about to expire"),
            count_lines("could not record"),
            fleet.unexpected_exits.len()
        ),
    );
    for (id, status, log) in &fleet.unexpected_exits {
        say(
            started,
            format!(
                "note: {id} exited on its own ({status}); log {}",
                log.display()
            ),
        );
    }
    for note in outcome.notes.iter().chain(&report.notes) {
        say(started, format!("note: {note}"));
    }
    if outcome.timed_out {
        say(
            started,
            format!(
                "deadline of {} s reached with orders unfinished",
                args.deadline.as_secs()
            ),
        );
    }
    let code = if report.violations.is_empty() {
        say(started, "all invariants hold");
        if !args.keep_logs {
            let _ = std::fs::remove_dir_all(&dir);
        }
        0
    } else {
        let mut by_check: std::collections::BTreeMap<&str, usize> = Default::default();
        for v in &report.violations {
            *by_check.entry(v.check).or_default() += 1;
        }
        for v in report.violations.iter().take(40) {
            say(
                started,
                format!(
                    "VIOLATION {}: {} {}",
                    v.check,
                    v.order.as_deref().unwrap_or("-"),
                    v.what
                ),
            );
        }
        let path = dir.join("failures.txt");
        if let Err(e) = checks::dump(&report, &data, &path) {
            say(started, format!("could not write {}: {e}", path.display()));
        }
        say(
            started,
            format!(
                "INVARIANTS FAILED: {by_check:?}; details in {} (worker logs beside it)",
                path.display()
            ),
        );
        1
    };
    Ok(code)
}

/// The worker's configuration, every key as an `APP_SECTION__KEY` variable.
fn worker_env(db_url: &str, sim_url: &str) -> Vec<(String, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    [
        ("APP_ENVIRONMENT", "chaos".to_owned()),
        ("APP_DATABASE__URL", db_url.to_owned()),
        ("APP_DATABASE__MAX_CONNECTIONS", "8".into()),
        ("APP_DATABASE__MIGRATE_ON_START", "false".into()),
        ("APP_ATRIP__BASE_URL", sim_url.to_owned()),
        ("APP_ATRIP__CLIENT_ID", "sim-client".into()),
        ("APP_ATRIP__CLIENT_SECRET", "sim-secret".into()),
        ("APP_ATRIP__PAY_TIMEOUT_MS", ms(PAY_TIMEOUT)),
        ("APP_ATRIP__QUERY_TIMEOUT_MS", ms(PAY_TIMEOUT)),
        ("APP_ATRIP__CONNECT_TIMEOUT_MS", "1000".into()),
        ("APP_HTTP__HOST", "127.0.0.1".into()),
        ("APP_HTTP__PORT", "0".into()),
        ("APP_WORKER__LEASE_MS", ms(LEASE)),
        ("APP_WORKER__CLAIM_INTERVAL_MS", "200".into()),
        ("APP_WORKER__PAY_GRACE_MS", ms(PAY_GRACE)),
        ("APP_WORKER__RECOVERY_DELAY_MS", "300".into()),
        ("APP_WORKER__FIRST_POLL_MS", "300".into()),
        ("APP_WORKER__POLL_INITIAL_MS", "300".into()),
        ("APP_WORKER__POLL_MULTIPLIER", "1.5".into()),
        ("APP_WORKER__POLL_MAX_MS", "2000".into()),
        ("APP_WORKER__SHUTDOWN_GRACE_MS", "1000".into()),
        ("APP_LOG__FORMAT", "pretty".into()),
        ("APP_LOG__LEVEL", "info".into()),
        ("NO_COLOR", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the schedule did.
#[derive(Default)]
struct Outcome {
    kills: usize,
    pg_restarts: usize,
    pause: Option<Pause>,
    timed_out: bool,
    notes: Vec<String>,
}

/// What the schedule works with.
struct Ctx<'a> {
    args: &'a Args,
    plan: &'a Plan,
    pool: &'a PgPool,
    db_url: &'a str,
    orders: &'a [Order],
    restarter: &'a Restarter,
    sim: &'a SimHandle,
    started: Instant,
}

/// Enqueues the orders over the span and injects the kills, PostgreSQL cuts and the pause at
/// their moments, until every order is terminal or the deadline passes.
async fn chaos(ctx: &Ctx<'_>, fleet: &mut Fleet, rng: &mut StdRng) -> Outcome {
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
            match restarter.restart(db_url).await {
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

/// The rows that did not end ticketed, grouped by state and reason (order numbers cut out).
fn outcome_reasons(jobs: &[checks::Job]) -> Vec<(String, usize)> {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for j in jobs.iter().filter(|j| j.state != "ticketed") {
        let error = j.last_error.as_deref().unwrap_or("no error recorded");
        let error = error
            .strip_prefix(&format!("order {}: ", j.order_no))
            .unwrap_or(error);
        let short: String = error.chars().take(110).collect();
        *by.entry(format!("{}: {short}", j.state)).or_default() += 1;
    }
    by.into_iter().collect()
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

/// The final read, retried: the pool may still hold sessions a cut ended.
async fn load_with_retries(
    pool: &PgPool,
) -> Result<(Vec<checks::Job>, Vec<checks::Event>), String> {
    let mut last = String::new();
    for _ in 0..10 {
        match checks::load_db(pool).await {
            Ok(found) => return Ok(found),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("reading the job table: {last}"))
}
