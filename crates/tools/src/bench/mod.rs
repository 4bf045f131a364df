//! `bench`: what an agency's PostgreSQL pays per order, measured in one run against the
//! machine's PostgreSQL (`DATABASE_URL`, else the local server of the default settings, else a
//! throwaway cluster, which runs with fsync off and says so).
//!
//! Phases, each on a fresh database:
//! 1. the SQL-only baseline: the four-statement lifecycle of an order (INSERT, then three
//!    UPDATEs: intent, paid, ticketed), autocommit, from `--baseline-clients` connections;
//! 2. throughput: `--orders` orders inserted at once, paid and followed to `ticketed` by worker
//!    processes (`ticketing-tracker-dev run`, children of the bench) against an in-process
//!    simulator with no latency; orders/s, WAL bytes and commits per order, the worker's RSS;
//! 3. pickup: orders inserted one by one into idle workers, INSERT to `pay.do` received;
//! 4. latency: the simulator answers in `--latency-ms` (± jitter); for each of
//!    `--latency-concurrency`, orders/s, rows in flight in one process, its RSS, its pool's
//!    busy connections and whether a database round trip waited for a pool slot;
//! 5. size: `--big-rows` finished rows built with generate_series, then throughput again and
//!    the time of a `/metrics` scrape.
//!
//! The last line sums it up: `bench: orders=… orders_per_s=… baseline_per_s=… ratio=… …`.
//!
//! `bench --backlog SHAPES` runs none of these, only backlogs with payment deadlines (see
//! `bench/backlog.rs`): `backlog: shape=… orders=… missed=… feasible_min=… p99_pay_delay_ms=…`.
//!
//! `bench --hostile` runs none of these, only the ATRIP client against a hostile ATRIP (see
//! `bench/hostile.rs`): `hostile: answers=… peak_rss_mib=… limit_mib=128 …`.

mod backlog;
mod baseline;
mod database;
mod fleet;
mod hostile;

use std::time::Duration;

use crate::cli::BenchArgs;
use atrip_simulator::{self as simulator, SimConfig, SimHandle};
use database::Server;
use fleet::{Fleet, Phase};
use ticketing_tracker::config::Settings;

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut log = Settings::defaults().log;
    log.level = "warn".into();
    ticketing_tracker::telemetry::init(&log);
    if args.hostile {
        return hostile::run(args.orders.max(1)).await;
    }
    if !args.backlog.is_empty() {
        return backlog::run(&args.backlog).await;
    }
    let server = Server::find().await?;
    println!(
        "bench: PostgreSQL {} at {} (fsync {}, synchronous_commit {})",
        server.version, server.shown_url, server.fsync, server.synchronous_commit
    );
    let n = args.orders.max(1);

    let base_db = server.scratch("ticketing_bench_base").await?;
    let baseline = baseline::run(&base_db, n, args.baseline_clients.max(1)).await?;
    base_db.drop().await;
    println!(
        "bench: baseline (4 autocommit statements per order, {} clients): {n} orders in {:.2} s: {:.0} orders/s",
        args.baseline_clients,
        baseline.elapsed.as_secs_f64(),
        baseline.per_s()
    );

    let db = server.scratch("ticketing_bench").await?;
    let sim = simulator_with(Duration::ZERO, Duration::ZERO).await?;
    let phase = Phase {
        workers: args.workers.max(1),
        concurrency: args.concurrency.max(1),
        orders: n,
        prefix: "BENCH",
    };
    let through = Fleet::throughput(&db, &sim, &phase).await?;
    println!("bench: throughput: {through}");
    let (p50, p99, to_ticket) = Fleet::pickup(&db, &sim).await?;
    println!(
        "bench: pickup (INSERT -> pay.do received) over 200 orders: p50 {p50} ms, p99 {p99} ms; INSERT -> ticketed p50 {to_ticket:.1} ms"
    );

    if args.latency_ms > 0 {
        let slow = simulator_with(
            Duration::from_millis(args.latency_ms),
            Duration::from_millis(args.latency_jitter_ms),
        )
        .await?;
        for &concurrency in &args.latency_concurrency {
            let lat_db = server.scratch("ticketing_bench_latency").await?;
            let phase = Phase {
                workers: 1,
                concurrency,
                orders: (concurrency * 4).max(1000),
                prefix: "LATENCY",
            };
            let figures = Fleet::throughput(&lat_db, &slow, &phase).await?;
            lat_db.drop().await;
            println!(
                "bench: latency {} ms ± {} ms, concurrency {concurrency}: {figures}",
                args.latency_ms, args.latency_jitter_ms
            );
        }
    }

    let mut scrape_ms = None;
    if args.big_rows > 0 {
        let built = fleet::build_finished_rows(&db, args.big_rows).await?;
        println!(
            "bench: {} finished rows built in {:.1} s",
            args.big_rows,
            built.as_secs_f64()
        );
        let phase = Phase {
            prefix: "BIG",
            ..phase
        };
        let big = Fleet::throughput(&db, &sim, &phase).await?;
        let ms = Fleet::scrape_ms(&db, &sim).await?;
        println!(
            "bench: at {} finished rows: {big}; /metrics scrape p50 {ms:.1} ms",
            args.big_rows
        );
        scrape_ms = Some(ms);
    }
    let double = sim.ledger()["totals"]["double_charges"]
        .as_i64()
        .unwrap_or(0);
    db.drop().await;
    anyhow::ensure!(double == 0, "{double} orders were charged more than once");

    println!(
        "bench: orders={n} orders_per_s={:.0} baseline_per_s={:.0} ratio={:.2} pickup_p50_ms={p50} pickup_p99_ms={p99} wal_bytes_per_order={:.0} commits_per_order={:.2} scrape_ms_at_1m={}",
        through.orders_per_s,
        baseline.per_s(),
        through.orders_per_s / baseline.per_s(),
        through.wal_per_order,
        through.commits_per_order,
        scrape_ms.map_or("skipped".into(), |ms| format!("{ms:.1}")),
    );
    Ok(())
}

/// The in-process simulator the workers talk to: every order number exists, tickets come at
/// once, no gzip (it shares the machine's CPU with PostgreSQL and the workers).
async fn simulator_with(latency: Duration, jitter: Duration) -> anyhow::Result<SimHandle> {
    Ok(simulator::start(
        SimConfig {
            auto_create: true,
            ticketing_delay: Duration::ZERO,
            gzip: false,
            latency_mean: latency,
            latency_jitter: jitter,
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?)
}
