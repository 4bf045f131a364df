//! The rollout: database, simulator, orders, old workers, new workers, SIGTERMs, the wait for
//! every order, then the checks and the closing line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atrip_simulator::{self as simulator, SimConfig, SimHandle};
use serde_json::{json, Value};
use sqlx::PgPool;
use ticketing_tracker_tools::localpg::Scratch;

use super::booking::{self, Booking};
use super::checks::{self, Data, WorkerInfo};
use super::procs::{self, Release, Worker};
use super::program::{result_line, run_dir, say};
use super::records;
use super::workers::{self, ms, Timeouts};
use super::Args;

/// Short, so that a row an old worker leaves leased comes back within seconds.
pub const LEASE: Duration = Duration::from_millis(5000);
/// At most half the lease (both releases check it), above the payment processing time.
const PAY_TIMEOUT: Duration = Duration::from_millis(2500);
const QUERY_TIMEOUT: Duration = Duration::from_millis(2500);
/// The previous release's `worker.pay_grace_ms`: it pays an order again once a query shows it
/// unpaid and the previous intent is older than pay timeout + this grace. Its default (30 s)
/// would never come within the old workers' few seconds here; one second lets that path run
/// against the new schema, whose `pay_sends_within_permits` CHECK must refuse its intent.
const OLD_PAY_GRACE: Duration = Duration::from_millis(1000);
/// This release: after a pay.do that may have reached ATRIP, an order still unpaid goes to a
/// person after this long (instead of 180 s), so rows the old release left "paying" end within
/// the run.
const UNPAID_SETTLE: Duration = Duration::from_secs(10);
/// On SIGTERM, in-flight steps get this long to record their results.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(3000);
/// ATRIP: every payment takes this long to settle (the query shows "0" meanwhile), and
/// ticketing this long after it.
const PROCESSING: Duration = Duration::from_millis(800);
const TICKETING_DELAY: Duration = Duration::from_millis(1500);
const FAULT_RATE: f64 = 0.1;
/// Among the first orders (those the old workers pay), every this many has its first pay.do
/// reset before anything is charged: the order stays unpaid, so the previous release's re-pay
/// path ("proven unpaid; new pay intent", after pay timeout + grace) runs against the new
/// schema. Random faults may add more.
const LOST_PAY_EVERY: usize = 25;
const LOST_PAY_AMONG: usize = 120;
/// Orders arrive in batches, through the old workers' time and the rollout.
const BATCH: usize = 20;
const BATCH_EVERY: Duration = Duration::from_millis(600);
/// How long the old workers work alone before the new ones start.
const OLD_ONLY: Duration = Duration::from_secs(6);
/// Between the two old workers' SIGTERMs.
const BETWEEN_TERMS: Duration = Duration::from_secs(2);
/// After the last old worker is gone, every order must be terminal within this; anything
/// still pending, paying or ticketing then is stranded.
const DRAIN: Duration = Duration::from_secs(60);

const _: () = assert!(PAY_TIMEOUT.as_millis() * 2 <= LEASE.as_millis());
const _: () = assert!(PROCESSING.as_millis() + 500 < PAY_TIMEOUT.as_millis());

/// The figures of the closing line.
#[derive(Default)]
struct Figures {
    orders: usize,
    old_workers: usize,
    new_workers: usize,
    ticketed: usize,
    failed: usize,
    needs_review: usize,
    double_charges: usize,
    lost: usize,
    stranded: usize,
    pay_requests_over_one: u64,
}

/// Runs everything and prints the closing line; returns the exit status.
pub async fn run(args: &Args, previous: &Path, started: Instant) -> i32 {
    let mut fig = Figures {
        orders: args.orders,
        ..Figures::default()
    };
    let code = match body(args, previous, started, &mut fig).await {
        Ok(code) => code,
        Err(e) => {
            result_line(&format!("upgrade: FAILED: {e}"));
            1
        }
    };
    result_line(&format!(
        "upgrade: orders={} old_workers={} new_workers={} ticketed={} failed={} needs_review={} double_charges={} lost={} stranded={} pay_requests_over_one={} elapsed_s={:.1}",
        fig.orders,
        fig.old_workers,
        fig.new_workers,
        fig.ticketed,
        fig.failed,
        fig.needs_review,
        fig.double_charges,
        fig.lost,
        fig.stranded,
        fig.pay_requests_over_one,
        started.elapsed().as_secs_f64()
    ));
    code
}

async fn body(
    args: &Args,
    previous: &Path,
    started: Instant,
    fig: &mut Figures,
) -> Result<i32, String> {
    say(
        started,
        format!(
            "rolling upgrade: previous release {} -> this tree, {} orders, ATRIP without its duplicate guard, fault rate {FAULT_RATE} (replay: --seed {})",
            previous.display(),
            args.orders,
            args.seed
        ),
    );
    let db = Scratch::create("upgrade")
        .await
        .map_err(|e| format!("no database: {e:#}"))?;
    let result = with_database(args, previous, started, fig, &db).await;
    db.drop_database().await;
    result
}

async fn with_database(
    args: &Args,
    previous: &Path,
    started: Instant,
    fig: &mut Figures,
    db: &Scratch,
) -> Result<i32, String> {
    let migrations: Vec<String> =
        sqlx::query_scalar("SELECT version::text FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .map_err(|e| format!("reading the migrations: {e}"))?;
    say(
        started,
        format!(
            "database {} migrated by this tree: {}",
            db.name,
            migrations.join(", ")
        ),
    );
    let sim = simulator::start(
        SimConfig {
            auto_create: true,
            duplicate_guard: false,
            payment_processing: PROCESSING,
            ticketing_delay: TICKETING_DELAY,
            fault_rate: FAULT_RATE,
            fault_seed: Some(args.seed),
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let orders = book(&sim, args.orders).await?;
    let dir = run_dir("upgrade")?;
    let new_exe = PathBuf::from(env!("CARGO_BIN_EXE_ticketing-tracker"));

    // The old release, alone, against the new schema.
    let mut old = start_workers(Release::Old, previous, db, &sim, &dir)?;
    fig.old_workers = old.len();
    ensure_started(
        &mut old,
        "the previous release does not start against the new schema",
    )
    .await?;
    let old_ready = readiness(&old).await;
    say(
        started,
        format!(
            "old workers {} started (never migrating); /readyz: {}; logs in {}",
            ids(&old),
            old_ready.join(", "),
            dir.display()
        ),
    );

    let enqueuer = tokio::spawn(enqueue(db.pool.clone(), orders.clone()));
    tokio::time::sleep(OLD_ONLY).await;
    say(
        started,
        format!("before the rollout: {}", states(&db.pool).await),
    );

    // The rollout: new workers up, then the old ones stopped one by one.
    let mut new = start_workers(Release::New, &new_exe, db, &sim, &dir)?;
    fig.new_workers = new.len();
    ensure_started(&mut new, "this tree's workers did not start").await?;
    say(
        started,
        format!(
            "new workers {} started; /readyz: {}; {}",
            ids(&new),
            readiness(&new).await.join(", "),
            states(&db.pool).await
        ),
    );
    for (i, w) in old.iter_mut().enumerate() {
        if i > 0 {
            tokio::time::sleep(BETWEEN_TERMS).await;
        }
        if !w.running() {
            say(
                started,
                format!("{} had already exited ({:?})", w.id, w.exit),
            );
            continue;
        }
        w.terminate()?;
        let gone = w.wait_exit(SHUTDOWN_GRACE + Duration::from_secs(10)).await;
        say(
            started,
            format!(
                "SIGTERM {}: {} after {:.1} s; {}",
                w.id,
                if gone {
                    format!("exited {}", w.exit.map_or("?".into(), |s| s.to_string()))
                } else {
                    "still running, killed".into()
                },
                w.term_sent.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                states(&db.pool).await
            ),
        );
        if !gone {
            w.kill();
        }
    }
    let enqueued = enqueuer
        .await
        .map_err(|e| format!("the enqueuer panicked: {e}"))?
        .map_err(|e| format!("enqueueing: {e}"))?;
    say(started, format!("all {enqueued} orders enqueued"));

    // Every order to a terminal state.
    let rolled = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ticketing_jobs WHERE state IN ('pending', 'paying', 'ticketing')",
        )
        .fetch_one(&db.pool)
        .await
        .map_err(|e| format!("counting unfinished rows: {e}"))?;
        if unfinished == 0 {
            say(
                started,
                format!(
                    "every order terminal {:.1} s after the last old worker left",
                    rolled.elapsed().as_secs_f64()
                ),
            );
            break;
        }
        if rolled.elapsed() > DRAIN {
            say(
                started,
                format!(
                    "{unfinished} orders still unfinished {} s after the rollout",
                    DRAIN.as_secs()
                ),
            );
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            say(started, format!("waiting: {}", states(&db.pool).await));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for w in new.iter_mut() {
        let _ = w.terminate();
    }
    for w in new.iter_mut() {
        if !w.wait_exit(SHUTDOWN_GRACE + Duration::from_secs(10)).await {
            w.kill();
        }
    }

    let data = Data {
        jobs: records::load_jobs(&db.pool)
            .await
            .map_err(|e| format!("reading the job table: {e}"))?,
        events: records::load_events(&db.pool)
            .await
            .map_err(|e| format!("reading the events: {e}"))?,
        ledger: sim.ledger(),
        requests: sim.requests(),
    };
    let workers: Vec<WorkerInfo> = old
        .iter()
        .zip(&old_ready)
        .map(|(w, ready)| WorkerInfo::of(w, Some(ready.clone())))
        .chain(new.iter().map(|w| WorkerInfo::of(w, None)))
        .collect();
    let order_nos: Vec<String> = orders.iter().map(|o| o.0.clone()).collect();
    let report = checks::check(&order_nos, &data, &workers);

    fig.ticketed = report.state("ticketed");
    fig.failed = report.state("failed");
    fig.needs_review = report.state("needs_review");
    fig.double_charges = report.double_charges;
    fig.lost = report.lost;
    fig.stranded = report.stranded;
    fig.pay_requests_over_one = report.pay_requests_over_one;

    let totals = &data.ledger["totals"];
    say(
        started,
        format!(
            "final states: {}",
            report
                .states
                .iter()
                .map(|(s, n)| format!("{s}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    say(
        started,
        format!(
            "ATRIP saw {} pay.do, {} charges, {} queries, {} faults injected",
            totals["pay_requests"], totals["charges"], totals["queries"], totals["faults_injected"]
        ),
    );
    for line in &report.notes {
        say(started, format!("note: {line}"));
    }
    for line in &report.findings {
        say(started, format!("FINDING: {line}"));
    }
    let code = if report.violations.is_empty() {
        say(started, "all invariants hold");
        if !args.keep_logs && report.findings.is_empty() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            say(started, format!("worker logs kept in {}", dir.display()));
        }
        0
    } else {
        for v in report.violations.iter().take(40) {
            say(started, format!("VIOLATION {v}"));
        }
        say(
            started,
            format!(
                "{} invariant violations; worker logs in {}",
                report.violations.len(),
                dir.display()
            ),
        );
        1
    };
    Ok(code)
}

/// Books the orders in the simulator (one passenger each), across the four payment methods.
async fn book(sim: &SimHandle, n: usize) -> Result<Vec<(String, i16, Option<Value>)>, String> {
    let booking = Booking::new(sim)?;
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let no = format!("UPGRADE{i:06}");
        booking.create_order(&no, &["DOE/JANE"]).await?;
        if i < LOST_PAY_AMONG && i % LOST_PAY_EVERY == LOST_PAY_EVERY / 5 {
            booking
                .set_scenario(&no, &json!({ "reset_before_charge": 1 }))
                .await?;
        }
        let method = booking::METHODS[i % 4];
        orders.push((no, method, booking::card(method)));
    }
    Ok(orders)
}

/// Inserts the orders in batches, the way an agency's system would (plain INSERTs).
async fn enqueue(pool: PgPool, orders: Vec<(String, i16, Option<Value>)>) -> Result<usize, String> {
    let mut done = 0;
    for (i, batch) in orders.chunks(BATCH).enumerate() {
        if i > 0 {
            tokio::time::sleep(BATCH_EVERY).await;
        }
        let rows = batch.iter().map(|o| (o.0.as_str(), o.1, o.2.as_ref()));
        booking::insert(&pool, rows)
            .await
            .map_err(|e| format!("batch {i}: {e}"))?;
        done += batch.len();
    }
    Ok(done)
}

/// The workers' configuration: the keys the chaos run's workers get too, and this run's own.
/// The previous release accepts (ignores) keys it does not know; this one refuses them, so
/// `worker.pay_grace_ms`, which it no longer has, goes to the old workers only.
fn worker_env(release: Release, db_url: &str, sim_url: &str) -> Vec<(String, String)> {
    let t = Timeouts {
        lease: LEASE,
        pay: PAY_TIMEOUT,
        query: QUERY_TIMEOUT,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    // JSON lines: the checks read their fields (`procs::Worker::log_lines`).
    let mut own = vec![("APP_LOG__FORMAT", "json".to_owned())];
    match release {
        Release::Old => own.push(("APP_WORKER__PAY_GRACE_MS", ms(OLD_PAY_GRACE))),
        Release::New => own.push((
            "APP_WORKER__UNPAID_SETTLE_S",
            UNPAID_SETTLE.as_secs().to_string(),
        )),
    }
    workers::env(db_url, sim_url, &t, own)
}

/// Two workers of `release` (`exe run`), logging into `dir`.
fn start_workers(
    release: Release,
    exe: &Path,
    db: &Scratch,
    sim: &SimHandle,
    dir: &Path,
) -> Result<Vec<Worker>, String> {
    let env = worker_env(release, &db.url, &sim.base_url());
    (0..2)
        .map(|i| Worker::start(release, i, exe, &env, dir))
        .collect()
}

/// Waits until every worker logged its start line; if one did not, prints the last lines of
/// their logs and fails with `failure` and what became of them.
async fn ensure_started(workers: &mut [Worker], failure: &str) -> Result<(), String> {
    let not_started = procs::wait_started(workers, "worker started", Duration::from_secs(30)).await;
    if not_started.is_empty() {
        return Ok(());
    }
    for w in workers.iter() {
        print_tail(w, 15);
    }
    Err(format!("{failure}: {}", not_started.join("; ")))
}

/// Each worker's `/readyz` answer (`200`, `503 ...`, or why it could not be asked).
async fn readiness(workers: &[Worker]) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for w in workers {
        let answer = match w.http_addr() {
            None => "no HTTP address logged".to_owned(),
            Some(addr) => match http
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    if status == 200 {
                        "200".to_owned()
                    } else {
                        format!("{status} {}", body.trim())
                    }
                }
                Err(e) => format!("unreachable: {e}"),
            },
        };
        out.push(answer);
    }
    out
}

async fn states(pool: &PgPool) -> String {
    let rows: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT state, count(*) FROM ticketing_jobs GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await;
    match rows {
        Ok(rows) if rows.is_empty() => "no rows yet".into(),
        Ok(rows) => rows
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("(states unreadable: {e})"),
    }
}

fn ids(workers: &[Worker]) -> String {
    workers
        .iter()
        .map(|w| w.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_tail(w: &Worker, n: usize) {
    let text = std::fs::read_to_string(&w.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!("--- last lines of {} ({})", w.id, w.log.display());
    for line in &lines[lines.len().saturating_sub(n)..] {
        println!("    {line}");
    }
}
