//! One run: the database (`database`: a PostgreSQL pair behind proxies), the simulator behind
//! the hostile ATRIP proxy (`atrip_proxy`), the orders and the worker processes; then the
//! schedule of what goes wrong (`schedule`), the checks, and the figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use atrip_simulator::{self as simulator, LoggedRequest, SimConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sqlx::PgPool;

use super::args::Args;
use super::atrip_proxy::{self, AtripProxy, Exchange, Hostile};
use super::checks::{self, Data, Done, Expect, Limits};
use super::database::Database;
use super::orders;
use super::pg::Restarter;
use super::procs::{self, Fleet};
use super::program::{result_line, run_dir, say};
use super::schedule::{self as sched, chaos, Ctx, Plan};
use super::workers::{self, Timeouts};

/// Short, so that a killed worker's rows come back within seconds and a pause of two leases
/// fits in a small run.
pub const LEASE: Duration = Duration::from_millis(5000);
/// At most half the lease, as the worker's configuration check demands; longer than the
/// payment processing times the orders are given (`orders::PROCESSING_MS`), so that most
/// pay.do still get their answer.
const PAY_TIMEOUT: Duration = Duration::from_millis(2500);
const QUERY_TIMEOUT: Duration = Duration::from_millis(2500);
/// After a pay.do that may have reached ATRIP, an order still showing unpaid goes to a person
/// after this long. Longer than a stop before pay.do is held (`schedule::STOP_HOLD_MIN`, the
/// lease and a second) plus the longest processing time, so that an order whose pay.do was
/// delayed by a stop is usually found paid by a query rather than sent to review.
const UNPAID_SETTLE: Duration = Duration::from_secs(10);
const _: () = assert!(PAY_TIMEOUT.as_millis() * 2 <= LEASE.as_millis());
const _: () = assert!(QUERY_TIMEOUT.as_millis() * 2 <= LEASE.as_millis());
const _: () = assert!(
    LEASE.as_millis() + 1000 + *orders::PROCESSING_MS.end() as u128 + 1000
        < UNPAID_SETTLE.as_millis()
);
const _: () = assert!(*orders::PROCESSING_MS.end() as u128 + 200 < PAY_TIMEOUT.as_millis());
/// The workers' `atrip.max_answer_bytes`: the configuration's lowest (16 KiB) times four, far
/// above any answer the simulator gives; the proxy's oversized bodies go well beyond it.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long the `pause` failpoint sleeps in a step: just over the lease, so that the row is
/// taken over meanwhile.
const FAILPOINT_PAUSE: Duration = Duration::from_millis(LEASE.as_millis() as u64 + 1000);

/// The figures of the final line.
#[derive(Default)]
struct Figures {
    orders: usize,
    kills: usize,
    pg_restarts: usize,
    faults: u64,
    stops: usize,
    skewed: usize,
    storms: usize,
    retries: usize,
    double_charges: usize,
    lost: usize,
    stranded: usize,
    pay_requests_over_one: u64,
    needs_review: usize,
    failovers: usize,
    db_cuts: usize,
    row_locks: usize,
    panics: usize,
    redirects: usize,
    oversized: usize,
    resets_mid_body: usize,
    endless: usize,
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
            result_line(&format!("chaos: FAILED: {e}"));
            1
        }
    };
    result_line(&format!(
        "chaos: orders={} kills={} pg_restarts={} faults={} stops={} skewed={} storms={} retries={} double_charges={} lost={} stranded={} pay_requests_over_one={} needs_review={} failovers={} db_cuts_over_lease={} row_locks={} panics={} redirects={} oversized={} resets_mid_body={} endless={} elapsed_s={:.1}",
        fig.orders,
        fig.kills,
        fig.pg_restarts,
        fig.faults,
        fig.stops,
        fig.skewed,
        fig.storms,
        fig.retries,
        fig.double_charges,
        fig.lost,
        fig.stranded,
        fig.pay_requests_over_one,
        fig.needs_review,
        fig.failovers,
        fig.db_cuts,
        fig.row_locks,
        fig.panics,
        fig.redirects,
        fig.oversized,
        fig.resets_mid_body,
        fig.endless,
        started.elapsed().as_secs_f64()
    ));
    code
}

async fn body(args: &Args, started: Instant, fig: &mut Figures) -> Result<i32, String> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let db = Database::open(args.failovers, |m| say(started, m)).await?;
    let result = with_database(args, started, fig, &mut rng, &db).await;
    db.close().await;
    result
}

/// Everything after the database exists (which the caller closes however this ends).
async fn with_database(
    args: &Args,
    started: Instant,
    fig: &mut Figures,
    rng: &mut StdRng,
    db: &Database,
) -> Result<i32, String> {
    let failovers = if db.has_pair() { args.failovers } else { 0 };
    let db_cuts = if db.can_cut() { args.db_cuts } else { 0 };
    let plan = Plan::new(args, rng, failovers, db_cuts);
    let plan = &plan;
    say(
        started,
        format!(
            "chaos run: {} orders over {:.0} s, {} workers (w0's clock {} ms ahead), {} kills, {} PostgreSQL restarts, {failovers} failovers, {db_cuts} cuts of the workers' database for {} ms, {} outside row locks, one pause of {} ms, at least {} stops before pay.do (stop-before-pay:{:.3} on {:?}), failpoints {:?} (pause {} ms), {} query storms, fault rate {}, hostile ATRIP answers to one pay.do in {} and {} of the queries, ATRIP without its duplicate guard (replay: --seed {})",
            args.orders,
            plan.span.as_secs_f64(),
            args.workers,
            args.skew_ms,
            args.kills,
            args.pg_restarts,
            sched::DB_CUT.as_millis(),
            args.row_locks,
            plan.pause_for.as_millis(),
            args.stops,
            sched::failpoint_p(args).unwrap_or(0.0),
            sched::failpoint_slots(args.workers).iter().map(|s| format!("w{s}")).collect::<Vec<_>>(),
            args.failpoints,
            FAILPOINT_PAUSE.as_millis(),
            args.storms,
            args.fault_rate,
            args.hostile_pay_every,
            args.hostile_rate,
            args.seed
        ),
    );
    let (restarter, how) = Restarter::choose(
        args.pg_restart_cmd.as_deref(),
        &db.server_url,
        db.own_server,
    );
    say(
        started,
        format!("database on {}; PostgreSQL restarts: {how}", db.on),
    );
    let sim = simulator::start(
        SimConfig {
            auto_create: true,
            // An ATRIP that charges every pay.do arriving while the order is unpaid: two
            // overlapping pay.do would charge twice, so only the worker stands between the
            // run and a double charge. Processing times are per order (`orders.rs`).
            duplicate_guard: false,
            fault_rate: args.fault_rate,
            fault_seed: Some(args.seed),
            one_passenger_at_a_time: true,
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let proxy = AtripProxy::start(
        sim.addr(),
        atrip_proxy::Config {
            pay_every: args.hostile_pay_every,
            query_p: args.hostile_rate,
            max_answer: MAX_ANSWER_BYTES,
        },
    )?;
    let orders = orders::prepare(&sim, rng, args.orders).await?;
    let dir = run_dir("chaos")?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ticketing-tracker"));
    // With --pgbouncer the workers' statements go through a real PgBouncer in transaction
    // mode, itself in front of the workers' proxy (so that cuts and failovers reach it); their
    // LISTEN goes to the server through that proxy.
    let bouncer = match args.pgbouncer {
        false => None,
        true => {
            let binary = super::pgbouncer::binary_or("chaos --pgbouncer", |why| {
                say(started, format!("NO PGBOUNCER: {why}"))
            });
            binary.map(|b| super::pgbouncer::PgBouncer::start(&b, &db.workers_url, 12))
        }
    };
    if args.pgbouncer && bouncer.is_none() {
        return Err("--pgbouncer: no pgbouncer binary (apt-get install pgbouncer)".into());
    }
    let mut env = worker_env(
        &bouncer
            .as_ref()
            .map_or_else(|| db.workers_url.clone(), |b| b.url()),
        &proxy.base_url(),
    );
    if bouncer.is_some() {
        env.push(("APP_DATABASE__POOLER".into(), "transaction".into()));
        env.push(("APP_DATABASE__LISTEN_URL".into(), db.workers_url.clone()));
        say(
            started,
            "the workers reach the database through PgBouncer in transaction mode (LISTEN through database.listen_url)",
        );
    }
    let mut fleet = Fleet::new(exe, env, dir.clone(), args.workers, args.skew_ms);
    fleet.failpoints = args.failpoints.clone();
    for slot in sched::failpoint_slots(args.workers) {
        fleet.slots[slot].failpoint = sched::failpoint_p(args);
    }
    fleet.start_all()?;
    say(
        started,
        format!(
            "simulator at {}, the workers' ATRIP proxy at {}; workers started, logs in {}",
            sim.base_url(),
            proxy.base_url(),
            dir.display()
        ),
    );

    let ctx = Ctx {
        args,
        plan,
        pool: &db.pool,
        db_url: &db.url,
        db,
        proxy: &proxy,
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
    let exchanges = proxy.exchanges();
    let data = Data {
        jobs,
        events,
        ledger: sim.ledger(),
        requests: if exchanges.is_empty() {
            sim.requests()
        } else {
            sent(&exchanges)
        },
        exchanges,
        ended: fleet.ended.clone(),
        done: Done {
            failovers: outcome.failovers,
            db_cuts: outcome.db_cuts,
            row_locks: outcome.row_locks,
        },
    };
    let limits = Limits {
        lease: LEASE,
        unpaid_settle: UNPAID_SETTLE,
        pay_timeout: PAY_TIMEOUT,
        query_timeout: QUERY_TIMEOUT,
    };
    let expect = Expect {
        stops: args.stops,
        storms: outcome.storms,
        skewed: (args.skew_ms != 0).then(|| "chaos-w0-".to_owned()),
        failovers,
        db_cuts,
        row_locks: args.row_locks,
        panics: args.failpoints.contains("panic"),
        hostile: args.hostile_pay_every > 0 && args.hostile_rate > 0.0,
    };
    let mut report = checks::check(&orders, &data, &outcome.pauses, &limits, &expect);
    // The panics the failpoint makes are expected (and counted); any other is a bug. The
    // panic hook's line ("thread '…' panicked at FILE") names the failpoint's file, the
    // worker's own line ("the step panicked…") carries the panic's message.
    let mut panic_lines = 0;
    for log in fleet.logs() {
        for line in procs::grep(&log, "panicked") {
            if !line.contains("panicked at") && !line.contains("the step panicked") {
                continue;
            }
            if line.contains("failpoint") {
                panic_lines += 1;
                continue;
            }
            report.violations.push(checks::Violation {
                check: "worker_panics",
                order: None,
                what: format!("{}: {line}", log.display()),
            });
        }
    }
    // Rule S4: no pay intent recorded while paying was paused. A second's grace at the start:
    // a claim that began before the pause committed may still record one. A quarter of a
    // second at the end: an intent is stamped with its claim's transaction start while the
    // claim reads the pauses with a later snapshot (each statement of `ticketing_due` takes
    // its own), so a claim that began a moment before the resume committed reads it resumed
    // (CI saw one 1.1 ms before `resumed_at`, itself the resume's transaction start).
    match outcome.paying_paused {
        Some((from, Some(to))) => {
            let grace = chrono::Duration::seconds(1);
            let end_grace = chrono::Duration::milliseconds(250);
            for e in data
                .events
                .iter()
                .filter(|e| e.kind == "pay_intent" && e.at > from + grace && e.at < to - end_grace)
            {
                report.violations.push(checks::Violation {
                    check: "no_intent_while_paused",
                    order: Some(e.order_no.clone()),
                    what: format!(
                        "a pay intent at {} while paying was paused ({from} to {to})",
                        e.at
                    ),
                });
            }
        }
        Some((from, None)) => report.violations.push(checks::Violation {
            check: "no_intent_while_paused",
            order: None,
            what: format!("paying was paused at {from} and never resumed"),
        }),
        None => report
            .notes
            .push("paying was never paused (the run ended first)".into()),
    }
    let totals = &data.ledger["totals"];
    fig.faults = totals["faults_injected"].as_u64().unwrap_or(0);
    fig.double_charges = report.double_charges;
    fig.lost = report.lost;
    fig.stranded = report.stranded;
    fig.stops = outcome.stops;
    fig.skewed = usize::from(args.skew_ms != 0);
    fig.storms = outcome.storms;
    fig.retries = outcome.retries;
    fig.pay_requests_over_one = totals["pay_requests_over_one"]
        .as_u64()
        .unwrap_or(report.pay_requests_over_one);
    fig.needs_review = report.states.get("needs_review").copied().unwrap_or(0);
    fig.failovers = outcome.failovers;
    fig.db_cuts = outcome.db_cuts;
    fig.row_locks = outcome.row_locks;
    fig.panics = report.panics;
    let hostile = atrip_proxy::counts(&data.exchanges);
    let of = |is: fn(Hostile) -> bool| -> usize {
        hostile
            .iter()
            .filter(|((k, _, _), _)| is(*k))
            .map(|(_, n)| n)
            .sum()
    };
    fig.redirects = of(Hostile::is_redirect);
    fig.oversized = of(Hostile::is_oversized);
    fig.resets_mid_body = of(|k| k == Hostile::ResetMidBody);
    fig.endless = of(|k| k == Hostile::Endless);

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
            "{} pay.do beyond an order's first; {} intents recorded as never sent; {} queries met a storm; {} plain retries of needs_review rows ({} refused)",
            totals["pay_requests_over_one"],
            report.not_sent,
            totals["storm_answers"],
            outcome.retries,
            outcome.retries_refused
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
            "worker logs: {} processes, {} \"lease lost\", {} \"row given back\", {} \"could not record\", {} \"failpoint stop-before-pay\", {} \"clock differs\", {} exited on their own",
            fleet.logs().len(),
            count_lines("lease lost"),
            count_lines("row given back"),
            count_lines("could not record"),
            count_lines("failpoint stop-before-pay"),
            count_lines("clock differs from the database"),
            fleet.unexpected_exits.len()
        ),
    );
    say(
        started,
        format!(
            "worker logs: {} steps panicked (events), {panic_lines} failpoint panic lines, {} \"failpoint error\", {} \"failpoint pause\", {} \"locked by another transaction\", {} \"not yet durable\", {} \"evidence of payment could not be written\", {} \"evidence of payment is in the job table\"",
            report.panics,
            count_lines("failpoint error"),
            count_lines("failpoint pause"),
            count_lines("locked by another transaction"),
            count_lines("not yet durable"),
            count_lines("evidence of payment could not be written"),
            count_lines("evidence of payment is in the job table"),
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
    if args.keep_logs {
        let path = dir.join("unticketed.txt");
        if let Err(e) = checks::dump_unticketed(&data, &path) {
            say(started, format!("could not write {}: {e}", path.display()));
        }
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

/// The worker's configuration: the keys the upgrade's workers get too, and this run's own.
fn worker_env(db_url: &str, sim_url: &str) -> Vec<(String, String)> {
    let t = Timeouts {
        lease: LEASE,
        pay: PAY_TIMEOUT,
        query: QUERY_TIMEOUT,
        shutdown_grace: Duration::from_millis(1000),
    };
    let own = vec![
        ("APP_ENVIRONMENT", "chaos".to_owned()),
        (
            "APP_WORKER__UNPAID_SETTLE_S",
            UNPAID_SETTLE.as_secs().to_string(),
        ),
        // Plain lines: the run counts them with grep (`procs::grep`).
        ("APP_LOG__FORMAT", "pretty".into()),
        // Bounded answers (rule P10): the ATRIP proxy's oversized bodies go beyond this.
        ("APP_ATRIP__MAX_ANSWER_BYTES", MAX_ANSWER_BYTES.to_string()),
        // A standby that does not confirm an intent within a second gives the row back, well
        // inside the lease (rule P1b; the default is 5 s).
        ("APP_WORKER__REPLICATION_WAIT_MS", "1000".into()),
        // No one worker takes a whole burst of due orders in one claim (after a database cut,
        // the first worker back took all 30 and the worker restarted to stop before its
        // pay.do met none: the run's stops went unseen).
        ("APP_WORKER__CONCURRENCY", "16".into()),
        ("TICKETING_FAILPOINT_PAUSE_MS", workers::ms(FAILPOINT_PAUSE)),
    ];
    workers::env(db_url, sim_url, &t, own)
}

/// What the workers sent, as the ATRIP proxy saw it arrive (the requests it never forwarded
/// included), in the simulator's request log's form.
fn sent(exchanges: &[Exchange]) -> Vec<LoggedRequest> {
    exchanges
        .iter()
        .map(|x| LoggedRequest {
            at: x.at,
            endpoint: match x.endpoint.as_str() {
                "pay.do" => "pay.do",
                "queryOrderDetails.do" => "queryOrderDetails.do",
                _ => "other",
            },
            order_no: x.order_no.clone(),
            worker: x.worker.clone(),
        })
        .collect()
}

/// The rows that did not end ticketed, grouped by state and reason (order numbers cut out).
fn outcome_reasons(jobs: &[checks::Job]) -> Vec<(String, usize)> {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for j in jobs.iter().filter(|j| j.state != "ticketed") {
        let error = j.last_error.as_deref().unwrap_or("no error recorded");
        let error = error
            .strip_prefix(&format!("order {}: ", j.order_no))
            .unwrap_or(error);
        // Digits out, so that the same reason at other times and for other orders is one line.
        let short: String = error
            .chars()
            .take(110)
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        *by.entry(format!("{}: {short}", j.state)).or_default() += 1;
    }
    by.into_iter().collect()
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
