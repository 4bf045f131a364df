//! The chaos run and the rolling-upgrade run, as tests of this binary. Each starts worker
//! processes, the simulator and PostgreSQL servers of its own, and spends its time waiting on
//! them (the chaos run keeps about a seventh of a 2-core machine busy for its minute), so here
//! they run beside the other tests instead of after them, and start first (the harness takes
//! tests in the order of their names). Their programs take the flags of the
//! longer runs and of the PgBouncer variant (`cargo test --test chaos -- --pgbouncer`,
//! `cargo test --release --test chaos -- --orders 1000 …`, `cargo test --test upgrade`);
//! `cargo test` runs them here only (`test = false` in Cargo.toml). Each prints its result
//! line past the harness's capture; a failure shows the run's progress lines.

#[path = "../chaos/main.rs"]
mod chaos;
#[path = "../upgrade/main.rs"]
mod upgrade;

/// docs/design.md's invariants after the small chaos run (C1-C4, P1-P10, W1-W6 …: see the
/// run's own documentation), which fails naming each invariant broken.
#[test]
fn the_small_chaos_run_keeps_every_invariant() {
    assert_eq!(
        chaos::small_run(),
        0,
        "the chaos run failed: see its lines above"
    );
}

/// The rolling upgrade from the previous release (`PREVIOUS_BINARY`; said to be skipped
/// without it, a failure with CI=true) keeps every invariant.
#[test]
fn the_rolling_upgrade_from_the_previous_release_keeps_every_invariant() {
    assert_eq!(
        upgrade::default_run(),
        0,
        "the upgrade run failed: see its lines above"
    );
}
