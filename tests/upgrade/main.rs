//! The rolling-upgrade run (issue 11): during a rollout the previous release's workers run
//! against the schema this tree migrated to, next to this tree's workers, with orders in
//! flight. Nothing may be lost, stranded, or paid twice.
//!
//! The previous release's binary comes from `PREVIOUS_BINARY` (`bash .ci/build-previous` builds
//! the commit named in `.ci/previous-release` and prints its path). Without it the run is
//! skipped (`upgrade: skipped ...`, exit 0), except under `CI=true`, where that is a failure.
//!
//! The run: a fresh database migrated by this tree (`MIGRATOR`); the ATRIP simulator in process,
//! without its duplicate guard (two overlapping pay.do would charge twice), with payments that
//! take a processing time, a ticketing delay and random faults; two OLD workers (`run`, never
//! migrating: the old binary cannot migrate a newer schema); orders enqueued in batches; after
//! a while two NEW workers start and the old ones are stopped with SIGTERM one by one, as a
//! rolling update does; then every order is waited for until it is terminal. Checked against
//! the job table, its events and the simulator's ledger and request log: no order lost, none
//! stranded, none charged twice, at most one pay.do per order, none after an answer showed the
//! order paid, the old workers started cleanly against the new schema (and did work), and
//! whatever the old binary tripped on in the new schema (a write refused by a constraint) is
//! reported with its log lines and how long it held the rows up. One closing line:
//! `upgrade: orders=N old_workers=2 new_workers=2 ticketed=… failed=… needs_review=… double_charges=0 lost=0 stranded=0 pay_requests_over_one=0 elapsed_s=…`.
//!
//! `cargo test --test upgrade` (with PREVIOUS_BINARY set). Flags: `--orders N --seed S
//! --keep-logs`; anything a libtest runner passes is tolerated. Exit status 1 when an invariant
//! fails.
//!
//! Files: `run` (the rollout), `procs` (the worker processes), `checks` (the invariants and the
//! report of what the old binary tripped on).

mod checks;
mod procs;
mod run;
#[path = "../common/signal.rs"]
mod signal;

use std::time::{Duration, Instant};

/// The command line: our flags and libtest's, tolerated.
#[derive(Debug, Clone)]
pub struct Args {
    pub orders: usize,
    pub seed: u64,
    pub keep_logs: bool,
    list: bool,
    ignored: bool,
    filters: Vec<String>,
    exact: bool,
}

impl Args {
    fn parse(raw: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            orders: 300,
            seed: rand::random::<u32>() as u64,
            keep_logs: false,
            list: false,
            ignored: false,
            filters: Vec::new(),
            exact: false,
        };
        let mut it = raw.into_iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--orders" => {
                    a.orders = value("--orders")?
                        .parse()
                        .map_err(|e| format!("--orders: {e}"))?
                }
                "--seed" => {
                    a.seed = value("--seed")?
                        .parse()
                        .map_err(|e| format!("--seed: {e}"))?
                }
                "--keep-logs" => a.keep_logs = true,
                "--list" => a.list = true,
                "--ignored" => a.ignored = true,
                "--exact" => a.exact = true,
                // libtest flags with a value.
                "--test-threads" | "--skip" | "--format" | "--color" | "--logfile"
                | "--shuffle-seed" | "-Z" => {
                    let _ = it.next();
                }
                other if other.starts_with('-') => {}
                filter => a.filters.push(filter.to_owned()),
            }
        }
        if a.orders == 0 {
            return Err("--orders must be at least 1".into());
        }
        Ok(a)
    }

    /// Whether libtest-style filters select this program's one test, `upgrade`.
    fn selected(&self) -> bool {
        !self.ignored
            && (self.filters.is_empty()
                || self.filters.iter().any(|f| {
                    if self.exact {
                        f == "upgrade"
                    } else {
                        "upgrade".contains(f.as_str())
                    }
                }))
    }
}

fn main() {
    let started = Instant::now();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("upgrade: {e}");
            std::process::exit(2);
        }
    };
    if args.list {
        if !args.ignored {
            println!("upgrade: test");
        }
        return;
    }
    if !args.selected() {
        println!("upgrade: skipped (not selected by the test filters)");
        return;
    }
    let previous = match std::env::var("PREVIOUS_BINARY") {
        Ok(path) if !path.trim().is_empty() => std::path::PathBuf::from(path.trim()),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                println!("upgrade: FAILED: PREVIOUS_BINARY is not set and CI=true: build it with `PREVIOUS_BINARY=\"$(bash .ci/build-previous | tail -n 1)\"`");
                std::process::exit(1);
            }
            println!("upgrade: skipped (set PREVIOUS_BINARY, see .ci/build-previous)");
            return;
        }
    };
    if !previous.is_file() {
        println!(
            "upgrade: FAILED: PREVIOUS_BINARY={} is not a file (see .ci/build-previous)",
            previous.display()
        );
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The run owns every worker process; when it ends (returns, panics, or is dropped here on
    // a signal) they are killed.
    let code = runtime.block_on(async {
        tokio::select! {
            code = run::run(&args, &previous, started) => code,
            signal = signal::stop_signal() => {
                eprintln!("upgrade: {signal}; stopping the workers");
                130
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}
