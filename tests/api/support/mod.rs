//! What every integration test shares: a database of its own, and logs only when asked for.

pub mod app;
pub mod binary;
/// A database of its own per test (the test-support crate).
pub use test_support as db;
pub use test_support::init_tracing;
#[path = "../../common/pgbouncer.rs"]
pub mod pgbouncer;
#[path = "../../common/pgpair.rs"]
pub mod pgpair;
#[path = "../../common/tcpproxy.rs"]
pub mod tcpproxy;
