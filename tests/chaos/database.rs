//! The run's database. By default it lives on a real primary and SYNCHRONOUS standby
//! (tests/common/pgpair.rs), reached through two TCP proxies standing where a virtual IP
//! would (tests/common/tcpproxy.rs): one for the worker processes, which the run also holds
//! and cuts for longer than a lease, and one for this program (its enqueues, retries, outside
//! row locks, restarts and final reads), never cut. A failover kills the primary, holds both
//! proxies, promotes the standby, switches both proxies to it and lets them go, then builds a
//! new synchronous standby, so that the next failover finds a pair again; meanwhile the
//! promoted primary has no standby, and the workers may pay nothing (rule P1b).
//!
//! Without the server binaries a pair needs, the run says so and uses DATABASE_URL's server
//! (or a throwaway cluster) with no failover, the workers still behind their proxy; with
//! CI=true that is a failure. `--failovers 0` chooses that on purpose.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use ticketing_tracker_tools::localpg::Scratch;
use tokio::sync::Mutex;

use super::pgpair::{self, PgPair, Replication};
use super::tcpproxy::TcpProxy;

/// The run's database on the pair.
const DB: &str = "chaos";

/// Where the run's database lives.
pub struct Database {
    /// This program's pool (through its own proxy on the pair).
    pub pool: PgPool,
    /// This program's URL for its own connections (restarts, the final reads).
    pub url: String,
    /// The workers' URL: through their proxy.
    pub workers_url: String,
    workers_proxy: Option<Arc<TcpProxy>>,
    own_proxy: Option<Arc<TcpProxy>>,
    pair: Option<Arc<Mutex<PgPair>>>,
    scratch: Option<Scratch>,
    /// One line: where it lives.
    pub on: String,
    /// For `pg::Restarter::choose`: the server's maintenance URL, and whether the server is
    /// one this program started (never restarted through the machine's cluster).
    pub server_url: String,
    pub own_server: bool,
}

impl Database {
    /// On a pair when `failovers > 0` and the machine has the binaries; else on DATABASE_URL's
    /// server. `Err` when a pair was wanted and cannot be had under CI=true, or cannot start.
    pub async fn open(failovers: usize, say: impl Fn(String)) -> Result<Database, String> {
        if failovers > 0 {
            match pgpair::available() {
                Ok(()) => return Database::on_pair().await,
                Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                    return Err(format!(
                        "no PostgreSQL pair for the failovers (CI=true): {why}"
                    ))
                }
                Err(why) => say(format!(
                    "NO FAILOVERS: no PostgreSQL primary + standby pair can run here ({why}); the run uses DATABASE_URL's server instead (with CI=true this is a failure)"
                )),
            }
        }
        Database::on_server().await
    }

    async fn on_pair() -> Result<Database, String> {
        let pair = PgPair::start(Replication::Synchronous)
            .await
            .map_err(|e| format!("starting the PostgreSQL pair: {e}"))?;
        let start = |target| {
            TcpProxy::start_on_thread(target)
                .map(Arc::new)
                .map_err(|e| format!("a TCP proxy: {e}"))
        };
        let workers_proxy = start(pair.primary_addr())?;
        let own_proxy = start(pair.primary_addr())?;
        pair.create_database(DB).await?;
        let url = pgpair::url_at(own_proxy.addr(), DB);
        let pool = pool(&url, 40)?;
        ticketing_tracker::MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| format!("migrating the pair's database: {e}"))?;
        pair.wait_standby_flushed().await?;
        Ok(Database {
            pool,
            workers_url: pgpair::url_at(workers_proxy.addr(), DB),
            on: format!(
                "a PostgreSQL pair, {} (workers through {}, this program through {})",
                pair.describe(),
                workers_proxy.addr(),
                own_proxy.addr()
            ),
            server_url: pair.primary_url(),
            own_server: true,
            url,
            workers_proxy: Some(workers_proxy),
            own_proxy: Some(own_proxy),
            pair: Some(Arc::new(Mutex::new(pair))),
            scratch: None,
        })
    }

    async fn on_server() -> Result<Database, String> {
        let db = Scratch::create("chaos")
            .await
            .map_err(|e| format!("no database: {e:#}"))?;
        let on = if db.cluster.is_some() {
            "a throwaway local cluster"
        } else {
            "DATABASE_URL's server"
        };
        // The workers go through a proxy all the same, for the cuts.
        let (workers_url, workers_proxy, how) = match server_addr(&db.url) {
            Some(addr) => {
                let proxy =
                    TcpProxy::start_on_thread(addr).map_err(|e| format!("a TCP proxy: {e}"))?;
                (
                    via(&db.url, proxy.addr()),
                    Some(Arc::new(proxy)),
                    "workers through a proxy",
                )
            }
            None => (
                db.url.clone(),
                None,
                "workers direct: its address is not host:port, so no cuts",
            ),
        };
        Ok(Database {
            pool: db.pool.clone(),
            url: db.url.clone(),
            workers_url,
            workers_proxy,
            own_proxy: None,
            pair: None,
            on: format!("{on}, database {} ({how})", db.name),
            server_url: db.server_url.clone(),
            own_server: db.cluster.is_some(),
            scratch: Some(db),
        })
    }

    /// Whether failovers can happen (the database is on a pair).
    pub fn has_pair(&self) -> bool {
        self.pair.is_some()
    }

    /// Whether the workers' connections can be held and cut.
    pub fn can_cut(&self) -> bool {
        self.workers_proxy.is_some()
    }

    /// Starts a failover in a task of its own; its result says what happened.
    pub fn failover(&self) -> Option<tokio::task::JoinHandle<Result<String, String>>> {
        let pair = self.pair.clone()?;
        let proxies: Vec<Arc<TcpProxy>> = self
            .workers_proxy
            .iter()
            .chain(&self.own_proxy)
            .cloned()
            .collect();
        Some(tokio::spawn(failover(pair, proxies)))
    }

    /// The workers' database is away: their new connections wait, the open ones are reset.
    /// Returns how many were open.
    pub fn cut_workers(&self) -> usize {
        match &self.workers_proxy {
            Some(proxy) => {
                proxy.hold();
                proxy.cut_all()
            }
            None => 0,
        }
    }

    /// The workers' database is back: the connections that waited go through.
    pub fn release_workers(&self) {
        if let Some(proxy) = &self.workers_proxy {
            proxy.release();
        }
    }

    /// The pair as it is now, for the progress lines.
    pub async fn describe(&self) -> String {
        match &self.pair {
            Some(pair) => pair.lock().await.describe(),
            None => self.on.clone(),
        }
    }

    /// Closes the pool; drops a database made on DATABASE_URL's server; stops the pair.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(db) = self.scratch {
            db.drop_database().await;
        }
        drop(self.pair);
        drop(self.workers_proxy);
        drop(self.own_proxy);
    }
}

/// One failover: the primary lost at once, both proxies held, the standby promoted, the
/// proxies switched to it (their open connections cut) and let go, then a new synchronous
/// standby built from it.
async fn failover(pair: Arc<Mutex<PgPair>>, proxies: Vec<Arc<TcpProxy>>) -> Result<String, String> {
    let mut pair = pair.lock().await;
    let before = pair.describe();
    let started = Instant::now();
    pair.kill_primary().await?;
    for proxy in &proxies {
        proxy.hold();
    }
    let promoted = pair.promote().await;
    for proxy in &proxies {
        proxy.switch_to(pair.primary_addr());
        proxy.cut_all();
        proxy.release();
    }
    promoted?;
    let writable = started.elapsed();
    pair.add_standby().await?;
    Ok(format!(
        "{before} lost; the standby was promoted and took writes after {:.1} s; now {} after {:.1} s",
        writable.as_secs_f64(),
        pair.describe(),
        started.elapsed().as_secs_f64()
    ))
}

/// Takes a row lock from outside, as a person's `SELECT … FOR UPDATE` in a console would: a
/// random non-terminal row (one a worker holds a lease on, when there is one), held for `hold`,
/// then the transaction rolled back. Returns the order locked, or `None` when no row was
/// there to lock (or it was locked already and stayed so for a second).
pub async fn lock_a_row(pool: PgPool, hold: Duration) -> Result<Option<String>, String> {
    let picked: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM ticketing_jobs WHERE state IN ('pending', 'paying', 'ticketing')
         ORDER BY (lease_owner IS NOT NULL) DESC, random() LIMIT 1",
    )
    .fetch_optional(&pool)
    .await
    .map_err(|e| e.to_string())?;
    let Some(id) = picked else {
        return Ok(None);
    };
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let locked: Option<(String, String)> =
        match sqlx::query_as("SELECT order_no, state FROM ticketing_jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
        {
            Ok(row) => row,
            // 55P03: the row stayed locked by a worker's own write for a second.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Ok(None)
            }
            Err(e) => return Err(e.to_string()),
        };
    let Some((order_no, state)) = locked else {
        return Ok(None);
    };
    tokio::time::sleep(hold).await;
    tx.rollback().await.map_err(|e| e.to_string())?;
    Ok(Some(format!("{order_no} ({state})")))
}

/// A random hold for an outside row lock: a few seconds, under the lease (so that a renewal
/// that skipped the row leaves its holder a lease when the lock goes).
pub fn row_lock_hold(rng: &mut impl Rng, lease: Duration) -> Duration {
    let most = (lease.as_millis() as u64 * 4 / 5).max(1500);
    Duration::from_millis(rng.gen_range(1500..=most))
}

fn pool(url: &str, max: u32) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .map_err(|e| format!("{url}: {e}"))
}

/// The `host:port` of a `postgres://` URL, resolved (5432 when no port is given); `None`
/// for a socket path or anything else.
fn server_addr(url: &str) -> Option<SocketAddr> {
    let (_, authority, _) = split_url(url)?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() || hostport.contains('/') {
        return None;
    }
    let with_port = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:5432")
    } else {
        hostport.to_owned()
    };
    with_port.to_socket_addrs().ok()?.next()
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    match split_url(url) {
        Some((scheme, authority, rest)) => {
            let user = authority
                .rsplit_once('@')
                .map(|(u, _)| format!("{u}@"))
                .unwrap_or_default();
            format!("{scheme}://{user}{addr}{rest}")
        }
        None => url.to_owned(),
    }
}

/// `(scheme, authority, rest)` of a URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// The URL helpers, checked by the selftest (this program has no unit tests of its own).
pub fn selftest() -> Result<(), String> {
    let url = "postgres://postgres:secret@127.0.0.1:5432/chaos_1?sslmode=disable";
    let addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    let checks = [
        (
            via(url, addr),
            "postgres://postgres:secret@127.0.0.1:6000/chaos_1?sslmode=disable".to_owned(),
        ),
        (
            server_addr(url).map(|a| a.to_string()).unwrap_or_default(),
            "127.0.0.1:5432".to_owned(),
        ),
        (
            server_addr("postgres://u@127.0.0.1/db")
                .map(|a| a.to_string())
                .unwrap_or_default(),
            "127.0.0.1:5432".to_owned(),
        ),
    ];
    for (got, want) in checks {
        if got != want {
            return Err(format!("database URL helpers: {got:?}, not {want:?}"));
        }
    }
    Ok(())
}
