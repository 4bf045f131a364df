//! The model check of pay-once (docs/design.md, "What the model checks and what it assumes").
//!
//! Every interleaving of the modelled faults, up to a bound, explored breadth-first, with the
//! worker's decisions made by the product's own code. A program (not the libtest harness), so
//! that `cargo test` prints its one line:
//!
//! `model: states=<n> depth=<d> properties=<k> known_bugs_caught=<m>/<m>`
//!
//! `cargo test --test model` checks the CI bound; `MODEL_BOUND=long cargo test --release --test
//! model` the long one (README, "How pay-once is checked").
//!
//! Why not `stateright`: its checker wants the model's actions as data and its properties as
//! closures over one state type; ours need a liveness pass over fair moves only (faults stop
//! eventually), and a counterexample replayed in words. A breadth-first search with a hash
//! set is 150 lines (`explore.rs`), adds nothing to the build, and gives the shortest trace.

mod decide;
mod explore;
mod world;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use decide::Decider;
use world::{Bugs, Config, Setup};

/// The properties checked in every world (`World::check`) and over every run (liveness),
/// named as docs/design.md names them (M1-M5). The surroundings explored are bounded as
/// assumption A9 says (`configs`).
const PROPERTIES: [&str; 5] = [
    "M1 at most one charge per order, unless an operator gave --repay after ATRIP showed it unpaid",
    "M2 no pay.do after evidence of payment was seen (unless an operator's --repay came after)",
    "M3 evidence of payment, once seen by a live process, is held by it until the row has it durably",
    "M4 no card data in a resolved row",
    "M5 without further faults every order ends finished and no lease or evidence stays held",
];

/// One surroundings to explore completely.
fn config(setup: Setup, guard: bool, orders: usize, faults: u8, ops: u8) -> Config {
    Config {
        orders,
        workers: 2,
        setup,
        guard,
        faults,
        ops,
        bugs: Bugs::NONE,
        operator_waits: true,
    }
}

const SINGLE_SYNC_OFF: Setup = Setup::Single {
    sync_commit_off: true,
};

/// The surroundings checked with every switch off. The CI bound fits `cargo test` (under 20 s
/// in a debug build on two cores); the long bound is for a release build.
fn configs() -> (&'static str, Vec<Config>) {
    match std::env::var("MODEL_BOUND").as_deref() {
        Ok("long") => (
            "long",
            vec![
                config(SINGLE_SYNC_OFF, false, 2, 1, 1),
                config(SINGLE_SYNC_OFF, true, 2, 1, 1),
                config(Setup::Async, false, 1, 2, 0),
            ],
        ),
        _ => (
            "ci",
            vec![
                config(SINGLE_SYNC_OFF, false, 1, 2, 1),
                config(Setup::Async, false, 1, 1, 0),
            ],
        ),
    }
}

/// Where each old bug shows: the smallest surroundings that can show it.
fn bug_config(bugs: Bugs) -> Config {
    let setup = if bugs.durable_on_primary || bugs.no_server_fence {
        Setup::Async
    } else if bugs.unflushed_intent {
        Setup::Single {
            sync_commit_off: true,
        }
    } else {
        Setup::Single {
            sync_commit_off: false,
        }
    };
    Config {
        orders: 1,
        workers: 2,
        setup,
        guard: false,
        // One fault shows each, but the stale lease of a forgotten claim needs a failover and
        // a lost answer.
        faults: if bugs.no_server_fence { 2 } else { 1 },
        ops: 0,
        bugs,
        operator_waits: true,
    }
}

/// One exploration of the run.
enum Job {
    /// The surroundings with every switch off: no property may fail.
    Clean,
    /// A bug of the past put back: the model must find it.
    Bug(&'static str),
    /// Assumption A7 dropped: the model must find a second charge.
    WithoutA7,
}

/// Explores every job on the machine's cores, taken in the order given; each outcome with the
/// time it took, in the jobs' order, and the number of decisions the product's code made.
fn explore_all(jobs: &[(Job, Config)]) -> (Vec<(explore::Outcome, Duration)>, u64) {
    const CAP: usize = 40_000_000;
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(jobs.len()));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let decisions: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let d = Decider::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((_, c)) = jobs.get(i) else { break };
                        let t = Instant::now();
                        let out = explore::explore(c, &d, CAP);
                        done.lock().unwrap().push((i, out, t.elapsed()));
                    }
                    let calls = *d.calls.borrow();
                    calls
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _, _)| *i);
    (
        done.into_iter().map(|(_, out, t)| (out, t)).collect(),
        decisions,
    )
}

fn main() {
    // `cargo test -- --list` and filters: this program has one test, named "model".
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("model: test");
        return;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-')) {
        if !"model".contains(filter.as_str()) {
            return;
        }
    }
    let (bound, configs) = configs();
    let only = std::env::var("MODEL_SETUP").ok();
    // Every exploration is independent: the clean surroundings, each re-introduced bug, the
    // check that assumption A7 is needed. They run on every core, each thread with a decider
    // of its own (its memo is not shared), and are reported in this order.
    let mut jobs: Vec<(Job, Config)> = configs
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| format!("{:?}", c.setup).starts_with(o))
        })
        .map(|c| (Job::Clean, c))
        .collect();
    for (name, bugs) in Bugs::ALL {
        jobs.push((Job::Bug(name), bug_config(bugs)));
    }
    let mut a7 = config(SINGLE_SYNC_OFF, false, 1, 1, 1);
    a7.operator_waits = false;
    jobs.push((Job::WithoutA7, a7));
    let started = Instant::now();
    let (outcomes, decisions) = explore_all(&jobs);
    let (mut states, mut depth, mut edges) = (0, 0, 0);
    let mut failed = false;
    let mut caught = 0;
    for ((job, c), (out, took)) in jobs.iter().zip(outcomes) {
        match job {
            Job::Clean => {
                states += out.states;
                depth = depth.max(out.depth);
                edges += out.edges;
                eprintln!(
                    "model: {:?}, guard {}, {} order(s), 2 workers, {} faults, {} operator action(s): {} states, depth {}, {:.1} s",
                    c.setup, c.guard, c.orders, c.faults, c.ops, out.states, out.depth, took.as_secs_f64()
                );
                if let Some((v, steps)) = out.violation {
                    failed = true;
                    eprintln!("model: VIOLATION {v:?} with every switch off:");
                    for line in steps {
                        eprintln!("  {line}");
                    }
                }
            }
            Job::Bug(name) => match out.violation {
                Some((v, steps)) => {
                    caught += 1;
                    eprintln!(
                        "model: re-introduced \"{name}\": counterexample {v:?} in {} steps",
                        steps.len() / 2
                    );
                    for line in steps {
                        eprintln!("  {line}");
                    }
                }
                None => {
                    failed = true;
                    eprintln!(
                        "model: re-introduced \"{name}\": NO counterexample in {} states: the model would not catch it",
                        out.states
                    );
                }
            },
            // Assumption A7 is needed: without it the model finds a second charge.
            Job::WithoutA7 => match out.violation {
                Some((v, steps)) => {
                    eprintln!("model: without assumption A7 (an operator's --repay waits for frozen workers): {v:?} in {} steps", steps.len() / 2);
                    for line in steps {
                        eprintln!("  {line}");
                    }
                }
                None => {
                    failed = true;
                    eprintln!("model: without assumption A7 no counterexample: the assumption is not needed, drop it");
                }
            },
        }
    }
    eprintln!(
        "model: bound {} ({} decisions by the product's code, {} edges, {:.1} s)",
        bound,
        decisions,
        edges,
        started.elapsed().as_secs_f64()
    );
    println!(
        "model: states={states} depth={depth} properties={} known_bugs_caught={caught}/{}",
        PROPERTIES.len(),
        Bugs::ALL.len()
    );
    if failed {
        std::process::exit(1);
    }
}
