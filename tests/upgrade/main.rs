//! The rolling-upgrade run (rules W1, W2): during a rollout the previous release's workers run
//! against the schema this tree migrated to, next to this tree's workers, with orders in
//! flight. Nothing may be lost, stranded, or paid twice.
//!
//! The previous release's binary comes from `PREVIOUS_BINARY` (`bash .ci/build-previous` builds
//! the commit named in `.ci/previous-release` and prints its path). Without it the run is
//! skipped (`upgrade: skipped ...`, exit 0), except under `CI=true`, where that is a failure.
//! `cargo test` runs it as a test of tests/api beside the others (`adversarial_runs.rs`);
//! `cargo test --test upgrade` runs this program alone.
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
//! report of what the old binary tripped on). Shared with tests/chaos, from tests/common:
//! `program` (libtest's flags, the runtime and stop signal, progress lines), `workers` (how a
//! worker starts, its configuration), `booking` (orders booked and enqueued), `records` (the
//! job table and events).

#[path = "../common/booking.rs"]
mod booking;
mod checks;
mod procs;
#[path = "../common/program.rs"]
mod program;
#[path = "../common/records.rs"]
mod records;
mod run;
#[path = "../common/workers.rs"]
mod workers;

use std::time::Instant;

use program::Libtest;

/// The command line: our flags and libtest's, tolerated.
#[derive(Debug, Clone)]
pub struct Args {
    pub orders: usize,
    pub seed: u64,
    pub keep_logs: bool,
    libtest: Libtest,
}

impl Args {
    fn parse(raw: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            orders: 300,
            seed: rand::random::<u32>() as u64,
            keep_logs: false,
            libtest: Libtest::default(),
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
                other => {
                    if a.libtest.take(other) {
                        let _ = it.next();
                    }
                }
            }
        }
        if a.orders == 0 {
            return Err("--orders must be at least 1".into());
        }
        Ok(a)
    }
}

/// The program (`cargo test --test upgrade`).
// Unused where the run is a module of the `api` binary (tests/api/adversarial_runs.rs).
#[allow(dead_code)]
fn main() {
    let started = Instant::now();
    let args = program::parsed("upgrade", Args::parse(std::env::args().skip(1)));
    if !args.libtest.wants_run("upgrade") {
        return;
    }
    std::process::exit(match previous_binary() {
        Ok(Some(previous)) => {
            program::run_until_signal("upgrade", run::run(&args, &previous, started))
        }
        Ok(None) => 0,
        Err(()) => 1,
    });
}

/// The default run, as a test of the `api` binary (tests/api/adversarial_runs.rs): its exit status.
// Used by the `api` binary only.
#[allow(dead_code)]
pub fn default_run() -> i32 {
    let started = Instant::now();
    let args = program::parsed("upgrade", Args::parse(std::iter::empty()));
    match previous_binary() {
        Ok(Some(previous)) => program::run_to_the_end(run::run(&args, &previous, started)),
        Ok(None) => 0,
        Err(()) => 1,
    }
}

/// The previous release's binary (`PREVIOUS_BINARY`); `None`, said, when it is not set (a
/// failure with CI=true, said).
fn previous_binary() -> Result<Option<std::path::PathBuf>, ()> {
    let previous = match std::env::var("PREVIOUS_BINARY") {
        Ok(path) if !path.trim().is_empty() => std::path::PathBuf::from(path.trim()),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                program::result_line("upgrade: FAILED: PREVIOUS_BINARY is not set and CI=true: build it with `PREVIOUS_BINARY=\"$(bash .ci/build-previous | tail -n 1)\"`");
                return Err(());
            }
            program::result_line("upgrade: skipped (set PREVIOUS_BINARY, see .ci/build-previous)");
            return Ok(None);
        }
    };
    if !previous.is_file() {
        program::result_line(&format!(
            "upgrade: FAILED: PREVIOUS_BINARY={} is not a file (see .ci/build-previous)",
            previous.display()
        ));
        return Err(());
    }
    Ok(Some(previous))
}
