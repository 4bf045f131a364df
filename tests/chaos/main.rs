//! The chaos run: real worker processes pay and follow orders against the ATRIP simulator in
//! chaos mode (timeouts after charging, resets before and after charging, 5xx, slow and garbled
//! answers, payment-in-progress windows), without its duplicate guard (overlapping pay.do
//! would charge twice) and with payments that take a processing time, while this program
//! SIGKILLs and restarts them, cuts PostgreSQL's sessions (or restarts it, when allowed),
//! freezes one worker past its lease, holds workers that stopped themselves right before a
//! pay.do (failpoint `stop-before-pay`) past their lease and then lets them send it late,
//! answers every order query with 429 for a while (storms), and retries (plain `retry`) every
//! row that lands in `needs_review`. One worker's wall clock runs a minute ahead. Then it checks
//! docs/design.md's invariants against the job table, the events, and the simulator's ledger
//! and request log, and prints one line of figures.
//!
//! `cargo test` runs it small (60 orders, 2 workers, 4 kills, one PostgreSQL cut, one pause,
//! at least one stop before pay.do, one storm); the full run is
//! `cargo test --release --test chaos -- --orders 1000 --workers 3 --kills 50` (at least five
//! stops, three storms). Flags: `--orders N --workers W --kills K --stops S --storms T
//! --skew-ms MS --seed S --pg-restarts R --pg-restart-cmd CMD --fault-rate P --deadline-s T
//! --keep-logs`; anything a libtest runner passes is tolerated. Exit status 1 when an
//! invariant fails (each failure is printed, and the orders involved are written in full to the
//! run directory's `failures.txt`).
//!
//! Before the run, `selftest` feeds the checks a clean and a broken synthetic history.
//!
//! Files: `args` (the command line), `run` (setup, checks, figures), `schedule` (what goes
//! wrong when), `procs` (the worker processes), `pg` (restarts), `pause` (SIGSTOP/SIGCONT, and
//! stops before pay.do), `orders` (booking and enqueueing), `checks` and `leases` (the
//! invariants). Shared with tests/upgrade, from tests/common: `program` (libtest's flags, the
//! runtime and stop signal, progress lines), `workers` (how a worker starts, its
//! configuration), `booking` (orders booked and enqueued), `records` (the job table and events).

mod args;
#[path = "../common/booking.rs"]
mod booking;
mod checks;
mod leases;
mod orders;
mod pause;
mod pg;
mod procs;
#[path = "../common/program.rs"]
mod program;
#[path = "../common/records.rs"]
mod records;
mod run;
mod schedule;
mod selftest;
#[path = "../common/workers.rs"]
mod workers;

use std::time::Instant;

fn main() {
    let started = Instant::now();
    let args = program::parsed("chaos", args::Args::parse(std::env::args().skip(1)));
    if !args.libtest.wants_run("chaos") {
        return;
    }
    if let Err(e) = selftest::run() {
        println!("chaos: FAILED: the checks themselves are broken: {e}");
        std::process::exit(1);
    }
    std::process::exit(program::run_until_signal("chaos", run::run(args, started)));
}
