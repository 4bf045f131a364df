//! Worker processes for the bench: `ticketing-tracker-dev run` children pointed at a scratch
//! database and the in-process simulator, each on its own HTTP port, as they run in production
//! (so that their memory, connections and CPU are their own, not the bench's).

use std::fmt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::database::Scratch;
use atrip_simulator::SimHandle;

/// One throughput phase.
#[derive(Clone, Copy)]
pub struct Phase {
    pub workers: usize,
    pub concurrency: usize,
    pub orders: usize,
    /// Order numbers of this phase start with it (each phase's are its own).
    pub prefix: &'static str,
}

/// What a phase measured.
pub struct Figures {
    pub orders: usize,
    pub elapsed: Duration,
    pub orders_per_s: f64,
    /// WAL written while the orders were processed (the whole server's), per order.
    pub wal_per_order: f64,
    /// Transactions committed in the phase's database, per order, the bench's own excluded.
    pub commits_per_order: f64,
    /// The largest peak RSS of a worker process.
    pub rss_mib: f64,
    /// Sampled from each worker's `/metrics`: the most rows one process had in flight, the
    /// most busy connections in one pool, and how many connection requests waited for a slot.
    pub max_in_flight: i64,
    pub max_busy_connections: i64,
    pub acquire_waits: i64,
    pub acquires: i64,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} orders in {:.2} s: {:.0} orders/s, {:.0} WAL bytes and {:.2} commits per order, worker RSS {:.1} MiB, in flight max {}, busy connections max {}, pool waits {} of {} acquires",
            self.orders,
            self.elapsed.as_secs_f64(),
            self.orders_per_s,
            self.wal_per_order,
            self.commits_per_order,
            self.rss_mib,
            self.max_in_flight,
            self.max_busy_connections,
            self.acquire_waits,
            self.acquires
        )
    }
}

pub struct Fleet {
    children: Vec<(tokio::process::Child, u16)>,
    http: reqwest::Client,
}

impl Fleet {
    async fn start(
        db: &Scratch,
        sim: &SimHandle,
        workers: usize,
        concurrency: usize,
    ) -> anyhow::Result<Fleet> {
        Self::start_with(db, sim, workers, concurrency, &[]).await
    }

    /// [`Fleet::start`] with more settings for the workers (`env` wins over the bench's).
    pub async fn start_with(
        db: &Scratch,
        sim: &SimHandle,
        workers: usize,
        concurrency: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("the bench's own binary")?;
        let mut children = Vec::with_capacity(workers);
        for _ in 0..workers {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = tokio::process::Command::new(&exe)
                .arg("run")
                .env_remove("APP_ENVIRONMENT")
                .env("DATABASE_URL", &db.url)
                .env("APP_DATABASE__MIGRATE_ON_START", "false")
                .env("APP_ATRIP__BASE_URL", sim.base_url())
                .env("APP_ATRIP__RATE_LIMIT_PER_S", "100000")
                .env("APP_WORKER__CONCURRENCY", concurrency.to_string())
                .env("APP_WORKER__FIRST_POLL_MS", "0")
                .env("APP_WORKER__POLL_INITIAL_MS", "1")
                .env("APP_WORKER__CLAIM_INTERVAL_MS", "20")
                .env("APP_WORKER__RETENTION_DAYS", "0")
                .env("APP_HTTP__HOST", "127.0.0.1")
                .env("APP_HTTP__PORT", port.to_string())
                .env("APP_LOG__LEVEL", "warn")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            children.push((child, port));
        }
        let fleet = Fleet {
            children,
            http: reqwest::Client::new(),
        };
        for (_, port) in &fleet.children {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = fleet
                    .http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "a worker did not get ready in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(fleet)
    }

    /// One worker's `/metrics`, as (name with labels, value) pairs.
    async fn metrics(&self, port: u16) -> Vec<(String, f64)> {
        let Ok(resp) = self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            return Vec::new();
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// The largest peak RSS (VmHWM) of the workers, in MiB.
    fn rss_mib(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|(c, _)| c.id())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .fold(0.0, f64::max)
            / 1024.0
    }

    /// SIGTERM to every worker, then waits: their connections close, so PostgreSQL has
    /// counted every transaction they made.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for (child, _) in &self.children {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for (child, _) in &mut self.children {
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("a worker did not stop on SIGTERM")??;
        }
        Ok(())
    }

    /// `phase.orders` orders at once, until every one is done. WAL and commits are read only
    /// when the workers' `/metrics` are not sampled (a scrape reads the database too), that is
    /// with a latency of zero; with latency, the in-flight figures are sampled instead.
    pub async fn throughput(
        db: &Scratch,
        sim: &SimHandle,
        phase: &Phase,
    ) -> anyhow::Result<Figures> {
        let fleet = Fleet::start(db, sim, phase.workers, phase.concurrency).await?;
        let sample = sim.latency_mean() > Duration::ZERO;
        let before = wal_and_commits(db).await?;
        let numbers: Vec<String> = (0..phase.orders)
            .map(|i| format!("{}{:015}", phase.prefix, i))
            .collect();
        let started = Instant::now();
        for chunk in numbers.chunks(1000) {
            sqlx::query!(
                "INSERT INTO ticketing_jobs (order_no, payment_method) SELECT o, 1 FROM unnest($1::text[]) AS o",
                chunk
            )
            .execute(&db.pool)
            .await?;
        }
        let (mut own, mut max_in_flight, mut max_busy) = (2_i64, 0_i64, 0_i64);
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            own += 1;
            if unfinished(db).await? == 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "orders unfinished after 15 min");
            if sample {
                for (_, port) in &fleet.children {
                    let m = fleet.metrics(*port).await;
                    let get =
                        |name: &str| m.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
                    max_in_flight = max_in_flight.max(get("ticketing_in_flight") as i64);
                    max_busy =
                        max_busy.max(get("ticketing_db_pool_connections{use=\"busy\"}") as i64);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        let wal_after = wal_and_commits(db).await?.0;
        let mut waits = (0, 0);
        for (_, port) in &fleet.children {
            let m = fleet.metrics(*port).await;
            let get =
                |name: &str| m.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v) as i64;
            waits.0 += get("ticketing_db_acquire_waits_total");
            waits.1 += get("ticketing_db_acquires_total");
        }
        let rss_mib = fleet.rss_mib();
        fleet.stop().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let commits_after = wal_and_commits(db).await?.1;
        let orders = phase.orders as f64;
        Ok(Figures {
            orders: phase.orders,
            elapsed,
            orders_per_s: orders / elapsed.as_secs_f64(),
            wal_per_order: (wal_after - before.0) as f64 / orders,
            // The bench's own reads (and the final scrape) are not the worker's work.
            commits_per_order: (commits_after - before.1 - own - 3 * phase.workers as i64) as f64
                / orders,
            rss_mib,
            max_in_flight,
            max_busy_connections: max_busy,
            acquire_waits: waits.0,
            acquires: waits.1,
        })
    }

    /// INSERT to `pay.do` received, one order at a time into an idle worker: (p50, p99) in ms,
    /// and the median time from INSERT to `ticketed` of the same orders.
    pub async fn pickup(db: &Scratch, sim: &SimHandle) -> anyhow::Result<(i64, i64, f64)> {
        let fleet = Fleet::start(db, sim, 1, 64).await?;
        let mut pickup = Vec::with_capacity(200);
        for i in 0..200 {
            let order_no = format!("PICKUP{i:014}");
            let created = sqlx::query_scalar!(
                "INSERT INTO ticketing_jobs (order_no, payment_method) VALUES ($1, 1) RETURNING created_at",
                order_no
            )
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
            pickup.push(received - created.timestamp_millis());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while unfinished(db).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fleet.stop().await?;
        let to_ticket_ms = sqlx::query_scalar!(
            r#"SELECT (EXTRACT(EPOCH FROM percentile_cont(0.5) WITHIN GROUP
                       (ORDER BY ticketed_at - created_at)) * 1000)::float8 AS "ms!"
               FROM ticketing_jobs WHERE order_no LIKE 'PICKUP%' AND state = 'ticketed'"#
        )
        .fetch_one(&db.pool)
        .await?;
        pickup.sort_unstable();
        let pct = |p: f64| pickup[((pickup.len() as f64 - 1.0) * p).round() as usize];
        Ok((pct(0.5), pct(0.99), to_ticket_ms))
    }

    /// The median time of seven `/metrics` scrapes of one running worker, in ms.
    pub async fn scrape_ms(db: &Scratch, sim: &SimHandle) -> anyhow::Result<f64> {
        let fleet = Fleet::start(db, sim, 1, 64).await?;
        let port = fleet.children[0].1;
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let body = fleet
                .http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                body.contains("ticketing_jobs{"),
                "no job counts in the scrape"
            );
        }
        fleet.stop().await?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}

/// The server's WAL position (bytes) and the phase database's committed transactions.
async fn wal_and_commits(db: &Scratch) -> anyhow::Result<(i64, i64)> {
    let row = sqlx::query!(
        r#"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS "wal!",
                  (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS "commits!""#
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((row.wal, row.commits))
}

async fn unfinished(db: &Scratch) -> anyhow::Result<i64> {
    Ok(ticketing_tracker::jobs::JobStore::new(db.pool.clone())
        .unfinished()
        .await?)
}

/// `n` finished (ticketed) rows, as months of work leave them, built in one statement; then
/// VACUUM ANALYZE, as autovacuum would have. Returns how long it took.
pub async fn build_finished_rows(db: &Scratch, n: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sqlx::query!(
        r#"
INSERT INTO ticketing_jobs (order_no, payment_method, state, pay_attempts, pay_started_at,
                            paid_at, paid_evidence, last_pay_outcome, phase_started_at,
                            poll_attempts, ticketed_at, finalized_at, order_status, atrip_status,
                            atrip_message, atrip_pnr, pnr, ticket_numbers, created_at, updated_at,
                            run_at)
SELECT 'OLD' || lpad(i::text, 12, '0'), 1, 'ticketed', 1, t, t, 'pay_accepted', 'accepted', t,
       2, t, t, '2', 0, 'success', 'OPLGS4', 'S' || lpad((i % 99999)::text, 5, '0'),
       jsonb_build_array(jsonb_build_object(
           'passenger', 'DOE/JANE',
           'ticket_numbers', jsonb_build_array('S' || lpad((i % 99999)::text, 5, '0')),
           'airline_pnrs', jsonb_build_array('S' || lpad((i % 99999)::text, 5, '0')))),
       t, t, t
FROM generate_series(1, $1::bigint) AS i,
     LATERAL (SELECT now() - interval '40 days' + i * interval '1 second') AS x(t)
"#,
        n as i64
    )
    .execute(&db.pool)
    .await?;
    sqlx::query("VACUUM (ANALYZE) ticketing_jobs")
        .execute(&db.pool)
        .await?;
    Ok(started.elapsed())
}
