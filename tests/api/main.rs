//! The integration tests: one binary, so the PostgreSQL server is found (or started) once and
//! every test gets a fresh, migrated database of its own on it (see `support::db`).

mod support;

mod bad_input;
mod cards;
mod cli;
mod client;
mod conformance;
mod console;
mod failover;
mod faults;
mod harness;
mod hostile;
mod http;
mod logs;
mod operator_errors;
mod pay_once;
mod pgpair_harness;
mod redaction;
mod retention;
mod table;
mod worker_bad_input;
mod worker_failures;
mod worker_fencing;
mod worker_flow;
mod worker_recovery;
mod worker_scale;
mod worker_shutdown;
