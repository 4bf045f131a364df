//! `bench`: throughput and pickup latency against an in-process simulator with no latency.
//!
//! Two phases on one fresh database. Throughput: N orders inserted at once, timed until every
//! one is ticketed (pay, then two identical final answers). Pickup: with the workers idle,
//! orders inserted one at a time; the latency is INSERT (`created_at`) to the simulator
//! receiving `pay.do` (its ledger's `first_pay_at_ms`), which is what NOTIFY buys.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cli::BenchArgs;
use crate::config::Settings;
use crate::jobs::JobStore;
use crate::localpg::Scratch;
use crate::simulator::{self, SimConfig};
use crate::worker::{Clock, Worker};

/// Orders inserted one at a time for the pickup figure.
const PICKUP_SAMPLES: usize = 200;

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut log = Settings::defaults().log;
    log.level = "warn".into();
    crate::telemetry::init(&log);
    let db = Scratch::create("ticketing_bench").await?;
    let sim = simulator::start(
        SimConfig {
            auto_create: true,
            ticketing_delay: Duration::ZERO,
            // The simulator shares this process's CPU: spend it on the worker, not on gzip.
            gzip: false,
            ..SimConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let mut settings = Settings::defaults();
    settings.atrip.base_url = sim.base_url();
    settings.atrip.rate_limit_per_s = 1_000_000.0;
    settings.worker.concurrency = 64;
    settings.worker.first_poll_ms = 0;
    settings.worker.poll_initial_ms = 0;
    settings.worker.claim_interval_ms = 20;
    let store = JobStore::new(db.pool.clone());
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    for i in 0..args.workers.max(1) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .connect(&db.url)
            .await?;
        let w = Worker::new(
            JobStore::new(pool),
            crate::atrip::Client::new(&settings.atrip)?,
            settings.worker.clone(),
            settings.atrip.rate_limit_per_s,
            format!("bench-{i}"),
            Clock::default(),
        );
        let token = stop.clone();
        runs.push(tokio::spawn(async move { w.run(token).await }));
    }

    // Throughput.
    let n = args.orders.max(1);
    let numbers: Vec<String> = (0..n).map(|i| format!("BENCH{:015}", i)).collect();
    let started = Instant::now();
    for chunk in numbers.chunks(1000) {
        sqlx::query(
            "INSERT INTO ticketing_jobs (order_no, payment_method) SELECT o, 1 FROM unnest($1::text[]) AS o",
        )
        .bind(chunk)
        .execute(&db.pool)
        .await?;
    }
    println!(
        "bench: {n} orders enqueued; {} worker(s), concurrency {} each",
        args.workers.max(1),
        settings.worker.concurrency
    );
    wait_until_done(&store, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let per_s = n as f64 / elapsed.as_secs_f64();
    println!(
        "bench: {n} orders ticketed end to end in {:.2} s: {per_s:.0} orders/s",
        elapsed.as_secs_f64()
    );

    // Pickup latency.
    let mut pickup = Vec::with_capacity(PICKUP_SAMPLES);
    for i in 0..PICKUP_SAMPLES {
        let order_no = format!("PICKUP{:014}", i);
        sqlx::query("INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ($1, 1)")
            .bind(&order_no)
            .execute(&db.pool)
            .await?;
        let created: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT created_at FROM ticketing_jobs WHERE order_no = $1")
                .bind(&order_no)
                .fetch_one(&db.pool)
                .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let received = loop {
            let entry = sim.order_ledger(&order_no);
            if let Some(ms) = entry.and_then(|e| e["first_pay_at_ms"].as_i64()) {
                break ms;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "order {order_no} was not picked up within 10 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        pickup.push((received - created.timestamp_millis()) as f64);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until_done(&store, Duration::from_secs(60)).await?;
    pickup.sort_by(f64::total_cmp);
    let pct = |p: f64| pickup[((pickup.len() as f64 - 1.0) * p).round() as usize];
    let ledger = sim.ledger();
    let double = ledger["orders"].as_object().map_or(0, |o| {
        o.values()
            .filter(|v| v["charges"].as_i64().unwrap_or(0) > 1)
            .count()
    });
    println!(
        "bench: pickup (INSERT -> pay.do received) over {PICKUP_SAMPLES} orders: p50 {} ms, p99 {} ms; double charges: {double}",
        pct(0.5),
        pct(0.99)
    );
    stop.cancel();
    for r in runs {
        r.await??;
    }
    println!(
        "bench: orders={n} orders_per_s={per_s:.0} pickup_p50_ms={} pickup_p99_ms={}",
        pct(0.5),
        pct(0.99)
    );
    db.drop_database().await;
    anyhow::ensure!(double == 0, "{double} orders were charged more than once");
    Ok(())
}

/// Waits until no row needs the worker any more.
async fn wait_until_done(store: &JobStore, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if store.unfinished().await? == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "orders still unfinished after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
