//! What every integration test shares: a database of its own, and logs only when asked for.

pub mod app;
pub mod binary;
pub mod db;
#[path = "../../common/pgbouncer.rs"]
pub mod pgbouncer;
#[path = "../../common/pgpair.rs"]
pub mod pgpair;
#[path = "../../common/tcpproxy.rs"]
pub mod tcpproxy;

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber that writes through the test harness's capture, but only when
/// `TEST_LOG` is set: a passing run stays silent, and a failing test can be rerun with
/// `TEST_LOG=1` (and optionally `RUST_LOG=…`) to see what the code did.
///
/// Safe to call from every test; only the first call does anything.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,ticketing_tracker=debug"));
        // Another subscriber may already be installed (a test set its own); keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
