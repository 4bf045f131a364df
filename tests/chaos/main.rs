//! The chaos run: real worker processes pay and follow orders against the ATRIP simulator in
//! chaos mode (timeouts after charging, resets before and after charging, 5xx, slow and garbled
//! answers, payment-in-progress windows), without its duplicate guard (overlapping pay.do
//! would charge twice) and with payments that take a processing time, while this program
//! SIGKILLs and restarts them, cuts PostgreSQL's sessions (or restarts it, when allowed),
//! freezes one worker past its lease, holds workers that stopped themselves right before a
//! pay.do (failpoint `stop-before-pay`) past their lease and then lets them send it late,
//! answers every order query with 429 for a while (storms), pauses paying (every method) for
//! three seconds mid-run as an operator would in an incident (no intent may be recorded
//! meanwhile), and retries (plain `retry`) every row that lands in `needs_review`. One worker's wall clock runs a minute ahead. Beside that:
//!
//! - The workers reach ATRIP through a hostile HTTP proxy (`atrip_proxy`) that now and then
//!   answers a pay.do or a query with a redirect (to a refused port, to itself), a reset in the
//!   middle of the body, a body over `atrip.max_answer_bytes` (declared, streamed, or a gzip
//!   bomb) or one that never ends, some before forwarding the request, some after ATRIP
//!   answered it (a pay.do charged while the worker sees garbage).
//! - The run's database lives on a real primary and SYNCHRONOUS standby (`database`,
//!   tests/common/pgpair.rs), behind TCP proxies switched at each failover: the primary is
//!   lost at once and the standby promoted, at least once (twice in the full run); without
//!   the server binaries the run says so and uses DATABASE_URL's server (a failure with
//!   CI=true).
//! - The workers' database connections are cut, and new ones held, for longer than the lease
//!   while a worker waits on ATRIP (its answer then has to be recorded across the cut).
//! - An outside session locks a random non-terminal row (`SELECT … FOR UPDATE`) for a few
//!   seconds, now and then (rule W4).
//! - Every worker runs with failpoints that panic, fail or pause a step at any of its awaits
//!   (`TICKETING_FAILPOINTS`, src/worker/failpoint.rs; rule W5), the pause just over a lease.
//!
//! Then it checks docs/design.md's invariants against the job table, the events, the
//! simulator's ledger and request log, and the ATRIP proxy's log of what each worker was
//! answered (`paid`: no answer ATRIP never gave is recorded, evidence seen reaches the row, no
//! order a worker could know was paid ends in `needs_review`), and prints one line of figures.
//!
//! `cargo test` runs it small, as a test of tests/api beside the others
//! (`adversarial_runs.rs`; `cargo test --test chaos` runs this program alone) (60 orders, 2 workers, 4 kills, one PostgreSQL cut, one
//! failover, one cut of the workers' database over the lease, two outside row locks, one
//! pause, at least one stop before pay.do, one storm, about six hostile pay.do answers and 3 %
//! of the queries, failpoints `panic:0.008,error:0.004,pause:0.003`); the full run is
//! `cargo test --release --test chaos -- --orders 1000 --workers 3 --kills 50` (at least five
//! stops, three storms, two failovers, three database cuts, twelve row locks, one pay.do in 24
//! hostile, failpoints `panic:0.003,error:0.003,pause:0.002`). Flags: `--orders N --workers W
//! --kills K --stops S --storms T --skew-ms MS --seed S --pg-restarts R --pg-restart-cmd CMD
//! --fault-rate P --failovers F --db-cuts C --row-locks L --hostile-rate P
//! --hostile-pay-every N --failpoints SPEC --deadline-s T --keep-logs` (`--failovers 0`: no
//! pair, DATABASE_URL's server; `--failpoints none`: none); anything a libtest runner passes is
//! tolerated. Exit status 1 when an invariant fails (each failure is printed, and the orders
//! involved are written in full to the run directory's `failures.txt`).
//!
//! Before the run, `selftest` feeds the checks a clean and a broken synthetic history.
//!
//! Files: `args` (the command line), `run` (setup, checks, figures), `schedule` (what goes
//! wrong when), `procs` (the worker processes), `pg` (restarts), `database` (the pair, its
//! proxies, failovers, cuts, outside row locks), `atrip_proxy` (the hostile proxy), `pause`
//! (SIGSTOP/SIGCONT, and stops before pay.do), `orders` (booking and enqueueing), `checks`,
//! `leases` and `paid` (the invariants). Shared with tests/upgrade, from tests/common:
//! `program` (libtest's flags, the runtime and stop signal, progress lines), `workers` (how a
//! worker starts, its configuration), `booking` (orders booked and enqueued), `records` (the
//! job table and events); with tests/api: `pgpair` and `tcpproxy`.

mod args;
mod atrip_proxy;
#[path = "../common/booking.rs"]
mod booking;
mod checks;
mod database;
mod leases;
mod orders;
mod paid;
mod pause;
mod pg;
#[path = "../common/pgbouncer.rs"]
mod pgbouncer;
#[path = "../common/pgpair.rs"]
mod pgpair;
mod procs;
#[path = "../common/program.rs"]
mod program;
#[path = "../common/records.rs"]
mod records;
mod run;
mod schedule;
mod selftest;
#[path = "../common/tcpproxy.rs"]
mod tcpproxy;
#[path = "../common/workers.rs"]
mod workers;

use std::time::Instant;

/// The program (`cargo test --test chaos -- FLAGS`).
// Unused where the run is a module of the `api` binary (tests/api/adversarial_runs.rs).
#[allow(dead_code)]
fn main() {
    let started = Instant::now();
    let args = program::parsed("chaos", args::Args::parse(std::env::args().skip(1)));
    if !args.libtest.wants_run("chaos") {
        return;
    }
    if let Err(e) = selftest::run() {
        program::result_line(&format!(
            "chaos: FAILED: the checks themselves are broken: {e}"
        ));
        std::process::exit(1);
    }
    std::process::exit(program::run_until_signal("chaos", run::run(args, started)));
}

/// The small run, as a test of the `api` binary (tests/api/adversarial_runs.rs): its exit status.
// Used by the `api` binary only.
#[allow(dead_code)]
pub fn small_run() -> i32 {
    let started = Instant::now();
    let args = program::parsed("chaos", args::Args::parse(std::iter::empty()));
    if let Err(e) = selftest::run() {
        program::result_line(&format!(
            "chaos: FAILED: the checks themselves are broken: {e}"
        ));
        return 1;
    }
    program::run_to_the_end(run::run(args, started))
}
