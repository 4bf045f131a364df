//! The command line, parsed by hand: our own flags, and everything a libtest-style runner may
//! pass (`--nocapture`, `--test-threads 2`, `--quiet`, filters, `--list`) tolerated, so that a
//! plain `cargo test` (or `cargo test -- --nocapture`) never breaks on this program.

use std::time::Duration;

use super::program::Libtest;

/// The small run `cargo test` does: about a minute on a busy two-core machine.
const SMALL_ORDERS: usize = 60;
const SMALL_WORKERS: usize = 2;
const SMALL_KILLS: usize = 4;
/// Stops at send (stop-before-pay) the small run must see; the bigger runs see five.
const SMALL_STOPS: usize = 1;
const FULL_STOPS: usize = 5;
/// The skewed worker's wall clock runs this far ahead of the machine's.
const SKEW_MS: i64 = 60_000;
/// The failpoints every worker gets (`TICKETING_FAILPOINTS`, src/worker/failpoint.rs): the
/// small run's are higher, so that it sees a few panics, errors and pauses; the big runs'
/// give one or two of each per hundred steps.
const SMALL_FAILPOINTS: &str = "panic:0.008,error:0.004,pause:0.003";
const FULL_FAILPOINTS: &str = "panic:0.003,error:0.003,pause:0.002";
/// Every this many pay.do, the ATRIP proxy answers one with something hostile (before and
/// after ATRIP saw it, in turn): the small run gets about six.
const SMALL_HOSTILE_PAY_EVERY: usize = 10;
const FULL_HOSTILE_PAY_EVERY: usize = 24;

#[derive(Debug, Clone)]
pub struct Args {
    pub orders: usize,
    pub workers: usize,
    pub kills: usize,
    /// At least this many worker processes stop themselves (SIGSTOP) right before a pay.do
    /// (the `stop-before-pay` failpoint) and are held past their lease.
    pub stops: usize,
    /// Query rate-limit storms (every order query answers 429 for a while).
    pub storms: usize,
    /// How far ahead the skewed worker's wall clock runs (slot 0, every generation).
    pub skew_ms: i64,
    /// Seeds the simulator's faults and this program's choices (which worker, when).
    pub seed: u64,
    /// PostgreSQL "restarts": backends terminated, or a real restart when allowed.
    pub pg_restarts: usize,
    /// A command that restarts the database server for real (`sh -c`), e.g.
    /// `docker restart pg` or `pg_ctl -D … restart -m fast`: DATABASE_URL's server, so with
    /// `--failovers 0` (the pair's nodes belong to the run, which only terminates backends
    /// there).
    pub pg_restart_cmd: Option<String>,
    /// The simulator's per-request fault probability.
    pub fault_rate: f64,
    /// Failovers of the PostgreSQL pair the run's database lives on (0: no pair, DATABASE_URL's
    /// server instead).
    pub failovers: usize,
    /// Cuts of the workers' database connections (new ones held) longer than the lease.
    pub db_cuts: usize,
    /// Row locks taken by an outside session (`SELECT … FOR UPDATE`, held a few seconds).
    pub row_locks: usize,
    /// Each order query gets a hostile answer from the ATRIP proxy with this probability.
    pub hostile_rate: f64,
    /// Every this many pay.do, one gets a hostile answer (0: none).
    pub hostile_pay_every: usize,
    /// The failpoints every worker process gets beside `stop-before-pay` (empty: none).
    pub failpoints: String,
    /// How long every order may take to reach a terminal state, from the start of the run.
    pub deadline: Duration,
    /// Keep the worker logs of a passing run too (a failing run always keeps them).
    pub keep_logs: bool,
    /// The workers reach the database through a real PgBouncer in transaction mode
    /// (`database.pooler = transaction`, LISTEN on `database.listen_url`).
    pub pgbouncer: bool,
    /// What a libtest-style runner passed (`--list`, filters, ...).
    pub libtest: Libtest,
}

impl Args {
    pub fn parse(raw: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            orders: SMALL_ORDERS,
            workers: SMALL_WORKERS,
            kills: SMALL_KILLS,
            stops: usize::MAX,
            storms: usize::MAX,
            skew_ms: SKEW_MS,
            seed: rand::random::<u32>() as u64,
            pg_restarts: usize::MAX,
            pg_restart_cmd: None,
            fault_rate: 0.2,
            failovers: usize::MAX,
            db_cuts: usize::MAX,
            row_locks: usize::MAX,
            hostile_rate: 0.03,
            hostile_pay_every: usize::MAX,
            failpoints: String::new(),
            deadline: Duration::ZERO,
            keep_logs: false,
            pgbouncer: false,
            libtest: Libtest::default(),
        };
        let mut deadline_s = None;
        let mut failpoints = None;
        let mut it = raw.into_iter().peekable();
        while let Some(arg) = it.next() {
            // `--flag=value` and `--flag value` alike.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
                v.parse()
                    .map_err(|_| format!("{name}: {v:?} is not a valid number"))
            }
            match flag.as_str() {
                "--orders" => a.orders = num("--orders", value("--orders")?)?,
                "--workers" => a.workers = num("--workers", value("--workers")?)?,
                "--kills" => a.kills = num("--kills", value("--kills")?)?,
                "--stops" => a.stops = num("--stops", value("--stops")?)?,
                "--storms" => a.storms = num("--storms", value("--storms")?)?,
                "--skew-ms" => a.skew_ms = num("--skew-ms", value("--skew-ms")?)?,
                "--seed" => a.seed = num("--seed", value("--seed")?)?,
                "--pg-restarts" => a.pg_restarts = num("--pg-restarts", value("--pg-restarts")?)?,
                "--pg-restart-cmd" => a.pg_restart_cmd = Some(value("--pg-restart-cmd")?),
                "--fault-rate" => a.fault_rate = num("--fault-rate", value("--fault-rate")?)?,
                "--failovers" => a.failovers = num("--failovers", value("--failovers")?)?,
                "--db-cuts" => a.db_cuts = num("--db-cuts", value("--db-cuts")?)?,
                "--row-locks" => a.row_locks = num("--row-locks", value("--row-locks")?)?,
                "--hostile-rate" => {
                    a.hostile_rate = num("--hostile-rate", value("--hostile-rate")?)?
                }
                "--hostile-pay-every" => {
                    a.hostile_pay_every = num("--hostile-pay-every", value("--hostile-pay-every")?)?
                }
                "--failpoints" => failpoints = Some(value("--failpoints")?),
                "--deadline-s" => {
                    deadline_s = Some(num::<u64>("--deadline-s", value("--deadline-s")?)?)
                }
                "--keep-logs" => a.keep_logs = true,
                "--pgbouncer" => a.pgbouncer = true,
                f => {
                    if a.libtest.take(f) && inline.is_none() {
                        it.next();
                    }
                }
            }
        }
        if a.orders == 0 || a.workers == 0 {
            return Err("--orders and --workers must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&a.fault_rate) {
            return Err("--fault-rate must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&a.hostile_rate) {
            return Err("--hostile-rate must be between 0 and 1".into());
        }
        let small = a.orders <= 200;
        if a.failovers == usize::MAX {
            // One per 1000 orders, at least one: the small run does one, the full run two.
            a.failovers = 1 + a.orders / 1000;
        }
        if a.db_cuts == usize::MAX {
            a.db_cuts = 1 + a.orders / 500;
        }
        if a.row_locks == usize::MAX {
            a.row_locks = 2 + a.orders / 100;
        }
        if a.hostile_pay_every == usize::MAX {
            a.hostile_pay_every = if small {
                SMALL_HOSTILE_PAY_EVERY
            } else {
                FULL_HOSTILE_PAY_EVERY
            };
        }
        a.failpoints = match failpoints.as_deref().map(str::trim) {
            Some("" | "none") => String::new(),
            Some(spec) => spec.to_owned(),
            None if small => SMALL_FAILPOINTS.to_owned(),
            None => FULL_FAILPOINTS.to_owned(),
        };
        if a.failpoints.contains("stop-before-pay") {
            return Err("--failpoints: stop-before-pay is the run's own (see --stops)".into());
        }
        if a.pg_restarts == usize::MAX {
            // One per 500 orders, at least one: the small run does one, the full run three.
            a.pg_restarts = 1 + a.orders / 500;
        }
        if a.stops == usize::MAX {
            a.stops = if a.orders <= 200 {
                SMALL_STOPS
            } else {
                FULL_STOPS
            };
        }
        if a.storms == usize::MAX {
            // One per 400 orders, at least one: the small run has one, the full run three.
            a.storms = 1 + a.orders / 400;
        }
        // Bounded waits: about three minutes for the small run, fifteen for the big ones.
        a.deadline = Duration::from_secs(deadline_s.unwrap_or(if small { 180 } else { 900 }));
        Ok(a)
    }
}
