//! `bench --backlog SHAPE`: a backlog of orders, each with its own payment deadline, inserted
//! at once in no useful order, paid by worker processes against a simulator with latency.
//! Prints `backlog: shape=… orders=… missed=… feasible_min=… p99_pay_delay_ms=…`.
//!
//! `missed` counts the orders not paid before their deadline (not sent, or answered after it).
//! `feasible_min` is what earliest-deadline-first would miss at the pay rate this run
//! measured (payments answered over the time from the first send to the last answer):
//! `concurrency` slots, each taking `concurrency / rate` per payment (never less than the mean
//! `pay.do`), an order never started when it would end after its deadline (rule S3).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;

use super::database::Server;
use super::fleet::Fleet;
use atrip_simulator::{self as simulator, SimConfig};

/// One backlog to pay.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub orders: usize,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Deadlines uniform in this range of seconds from the insert.
    pub deadline_s: (u32, u32),
    /// The booking system sets `priority` from the deadline (lower first).
    pub priority_from_deadline: bool,
    /// Paid orders being followed (their tickets far off) when the backlog arrives.
    pub following: usize,
}

/// The backlog of issue #20: 300 orders due in 5 to 60 s, one worker at concurrency 4, answers
/// in 300 ± 50 ms.
const DEADLINES: Shape = Shape {
    name: "deadlines",
    orders: 300,
    concurrency: 4,
    latency_ms: 300,
    jitter_ms: 50,
    deadline_s: (5, 60),
    priority_from_deadline: false,
    following: 0,
};

/// The shapes, by name: that backlog, with priorities from the deadline, arriving while 2,000
/// paid orders are followed, and 20,000 slow card payments at the default concurrency.
pub const SHAPES: [Shape; 4] = [
    DEADLINES,
    Shape {
        name: "deadlines-priority",
        priority_from_deadline: true,
        ..DEADLINES
    },
    Shape {
        name: "slow-cards",
        orders: 20_000,
        concurrency: 128,
        latency_ms: 3000,
        jitter_ms: 500,
        deadline_s: (60, 480),
        ..DEADLINES
    },
    Shape {
        name: "while-following",
        following: 2000,
        ..DEADLINES
    },
];

pub async fn run(names: &[String]) -> anyhow::Result<()> {
    let server = Server::find().await?;
    let all = names.iter().any(|n| n == "all");
    if all || names.iter().any(|n| n == "claim-cost") {
        for due in [1_000, 1_000_000] {
            println!("{}", claim_cost(&server, due).await?);
        }
    }
    let shapes: Vec<Shape> = if all {
        SHAPES.to_vec()
    } else {
        names
            .iter()
            .filter(|n| *n != "claim-cost")
            .map(|n| {
                SHAPES
                    .iter()
                    .find(|s| s.name == n)
                    .copied()
                    .with_context(|| {
                        format!(
                            "--backlog {n}: no such shape; the shapes are all, claim-cost, {}",
                            SHAPES.map(|s| s.name).join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    for shape in shapes {
        println!("{}", one(&server, shape).await?);
    }
    Ok(())
}

async fn one(server: &Server, shape: Shape) -> anyhow::Result<String> {
    let db = server.scratch("ticketing_bench_backlog").await?;
    let sim = simulator::start(
        SimConfig {
            auto_create: true,
            // Tickets far off: paid orders stay followed for the whole run.
            ticketing_delay: Duration::from_secs(3600),
            gzip: false,
            latency_mean: Duration::from_millis(shape.latency_ms),
            latency_jitter: Duration::from_millis(shape.jitter_ms),
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await?;
    if shape.following > 0 {
        follow_paid_orders(&db, &sim, shape.following).await?;
    }
    // The production poll settings (not the throughput phases' fast ones): follow-ups take
    // their slots as they would in production.
    let env = [
        ("APP_WORKER__FIRST_POLL_MS", "2000".to_owned()),
        ("APP_WORKER__POLL_INITIAL_MS", "2000".to_owned()),
        ("APP_WORKER__CLAIM_INTERVAL_MS", "1000".to_owned()),
    ];
    let fleet = Fleet::start_with(&db, &sim, 1, shape.concurrency, &env).await?;
    let started = Instant::now();
    let numbers: Vec<String> = (0..shape.orders)
        .map(|i| format!("BACKLOG{i:012}"))
        .collect();
    let (lo, hi) = shape.deadline_s;
    for chunk in numbers.chunks(5000) {
        sqlx::query!(
            r#"
INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline, priority)
SELECT o, 1, ticketing_now() + d * interval '1 second',
       CASE WHEN $4 THEN floor(d)::smallint ELSE 0 END
FROM (SELECT o, $2::float8 + random() * ($3::float8 - $2::float8) AS d
      FROM unnest($1::text[]) AS o) AS x
"#,
            chunk,
            f64::from(lo),
            f64::from(hi),
            shape.priority_from_deadline
        )
        .execute(&db.pool)
        .await?;
    }
    let limit = Duration::from_secs(u64::from(hi) + 300);
    loop {
        let open = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ticketing_jobs
               WHERE order_no LIKE 'BACKLOG%' AND paid_at IS NULL
                 AND state IN ('pending', 'paying')"#
        )
        .fetch_one(&db.pool)
        .await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{open} orders neither paid nor failed after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet.stop().await?;
    let rows = sqlx::query!(
        r#"
SELECT EXTRACT(EPOCH FROM pay_deadline - created_at)::float8 AS "deadline_s!",
       paid_at IS NOT NULL AND paid_at <= pay_deadline AS "in_time!",
       (EXTRACT(EPOCH FROM paid_at - pay_started_at) * 1000)::float8 AS pay_ms,
       (EXTRACT(EPOCH FROM pay_started_at - created_at) * 1000)::float8 AS delay_ms,
       paid_at IS NULL AND pay_attempts = pay_not_sent AS "not_sent!",
       (EXTRACT(EPOCH FROM pay_started_at - min(created_at) OVER ()) * 1000)::float8 AS sent_ms,
       (EXTRACT(EPOCH FROM paid_at - min(created_at) OVER ()) * 1000)::float8 AS paid_ms
FROM ticketing_jobs WHERE order_no LIKE 'BACKLOG%'
"#
    )
    .fetch_all(&db.pool)
    .await?;
    let double = sim.ledger()["totals"]["double_charges"]
        .as_i64()
        .unwrap_or(0);
    db.drop().await;
    anyhow::ensure!(double == 0, "{double} orders were charged more than once");

    let missed = rows.iter().filter(|r| !r.in_time).count();
    let not_sent = rows.iter().filter(|r| r.not_sent).count();
    let pays: Vec<f64> = rows.iter().filter_map(|r| r.pay_ms).collect();
    let mean_pay_ms = pays.iter().sum::<f64>() / pays.len().max(1) as f64;
    // The measured pay rate: payments answered over the time from the first send to the last
    // answer. Each of the slots then takes concurrency / rate per payment, the worker's own
    // gaps between a slot freeing and its next claim included.
    let paid: Vec<f64> = rows
        .iter()
        .filter(|r| r.pay_ms.is_some())
        .filter_map(|r| r.paid_ms)
        .collect();
    let first_send = rows
        .iter()
        .filter_map(|r| r.sent_ms)
        .fold(f64::MAX, f64::min);
    let last_answer = paid.iter().copied().fold(0.0, f64::max);
    let rate = paid.len() as f64 / ((last_answer - first_send) / 1000.0).max(0.001);
    let slot_s = (shape.concurrency as f64 / rate).max(mean_pay_ms / 1000.0);
    let deadlines: Vec<f64> = rows.iter().map(|r| r.deadline_s).collect();
    let feasible = edf_misses(&deadlines, shape.concurrency, slot_s);
    let mut delays: Vec<f64> = rows.iter().filter_map(|r| r.delay_ms).collect();
    delays.sort_by(f64::total_cmp);
    let p99 = delays
        .get(((delays.len() as f64 - 1.0) * 0.99).round() as usize)
        .copied()
        .unwrap_or(0.0);
    Ok(format!(
        "backlog: shape={} orders={} missed={missed} feasible_min={feasible} p99_pay_delay_ms={p99:.0} not_sent={not_sent} concurrency={} latency_ms={}±{} deadlines_s={lo}-{hi} priority_from_deadline={} following={} mean_pay_ms={mean_pay_ms:.0} pay_rate_per_s={rate:.1} elapsed_s={:.1}",
        shape.name,
        shape.orders,
        shape.concurrency,
        shape.latency_ms,
        shape.jitter_ms,
        shape.priority_from_deadline,
        shape.following,
        started.elapsed().as_secs_f64()
    ))
}

/// What one claim of 8 rows costs with `due` payments due, in a table that nothing analyzed
/// since they came (rule S1): 100 claims, p50 and p99 of their round trips.
async fn claim_cost(server: &Server, due: i64) -> anyhow::Result<String> {
    let db = server.scratch("ticketing_bench_claim").await?;
    sqlx::query("ANALYZE ticketing_jobs")
        .execute(&db.pool)
        .await?;
    sqlx::query!(
        r#"
INSERT INTO ticketing_jobs (order_no, payment_method, pay_deadline, priority, run_at)
SELECT 'DUE' || lpad(g::text, 12, '0'), 1, ticketing_now() + random() * interval '1 hour',
       (g % 3)::smallint, ticketing_now() - interval '1 second'
FROM generate_series(1, $1::bigint) AS g
"#,
        due
    )
    .execute(&db.pool)
    .await?;
    let store = ticketing_tracker::jobs::JobStore::new(db.pool.clone());
    let mut times = Vec::with_capacity(100);
    for i in 0..100 {
        let started = Instant::now();
        let got = store
            .claim(
                "bench",
                8,
                Duration::from_secs(60),
                true,
                true,
                &format!("c{i}"),
            )
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(got.len() == 8, "claim {i} took {} rows", got.len());
    }
    db.drop().await;
    times.sort_by(f64::total_cmp);
    Ok(format!(
        "claim: due={due} rows_per_claim=8 claims=100 p50_ms={:.2} p99_ms={:.2}",
        times[49], times[98]
    ))
}

/// How many of these deadlines (seconds from a common start) earliest-deadline-first misses
/// with `slots` servers each taking `pay_s` per order, never starting an order that would end
/// after its deadline.
pub fn edf_misses(deadlines: &[f64], slots: usize, pay_s: f64) -> usize {
    let mut sorted = deadlines.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut free_at = vec![0.0_f64; slots.max(1)];
    let mut missed = 0;
    for d in sorted {
        let (slot, at) = free_at
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("one slot at least");
        if at + pay_s <= d {
            free_at[slot] = at + pay_s;
        } else {
            missed += 1;
        }
    }
    missed
}

/// `n` orders paid at the simulator and in `ticketing` in the table, due now: the follow-ups
/// a backlog arrives into.
async fn follow_paid_orders(
    db: &super::database::Scratch,
    sim: &atrip_simulator::SimHandle,
    n: usize,
) -> anyhow::Result<()> {
    use ticketing_tracker::atrip::{Client, PayRequest};
    use ticketing_tracker::domain::PaymentMethod;
    let mut settings = ticketing_tracker::config::Settings::defaults().atrip;
    settings.base_url = sim.base_url();
    let client = Client::new(&settings)?;
    let numbers: Vec<String> = (0..n).map(|i| format!("FOLLOW{i:012}")).collect();
    let paid = futures_util::stream::iter(numbers.iter())
        .map(|o| {
            let client = &client;
            async move {
                client
                    .pay(&PayRequest::new(o, PaymentMethod::Deposit, None))
                    .await
            }
        })
        .buffer_unordered(256)
        .filter(|a| {
            std::future::ready(matches!(
                a,
                ticketing_tracker::atrip::PayAnswer::Accepted { .. }
            ))
        })
        .count()
        .await;
    anyhow::ensure!(
        paid == n,
        "{paid} of {n} follow-up orders paid at the simulator"
    );
    sqlx::query!(
        r#"
INSERT INTO ticketing_jobs (order_no, payment_method, state, pay_attempts, pay_started_at,
                            paid_at, paid_evidence, last_pay_outcome, phase_started_at, run_at)
SELECT o, 1, 'ticketing', 1, ticketing_now(), ticketing_now(), 'pay_accepted', 'accepted',
       ticketing_now(), ticketing_now()
FROM unnest($1::text[]) AS o
"#,
        &numbers
    )
    .execute(&db.pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::edf_misses;

    #[test]
    fn edf_misses_only_what_no_order_of_service_could_pay() {
        // One slot, 1 s per order: deadlines 1, 2, 3 all fit; a fourth at 3 does not.
        assert_eq!(edf_misses(&[3.0, 1.0, 2.0], 1, 1.0), 0);
        assert_eq!(edf_misses(&[3.0, 1.0, 2.0, 3.0], 1, 1.0), 1);
        // Two slots double the rate.
        assert_eq!(edf_misses(&[1.0, 1.0, 2.0, 2.0], 2, 1.0), 0);
        // An order already impossible costs nothing to the others.
        assert_eq!(edf_misses(&[0.5, 1.0, 2.0], 1, 1.0), 1);
    }
}
