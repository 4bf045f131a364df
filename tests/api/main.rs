//! The integration tests: one binary, so the PostgreSQL server is found (or started) once and
//! every test gets a fresh, migrated database of its own on it (see `support::db`).

// The chaos and upgrade programs (`adversarial_runs`) are compiled here as they are on their own,
// each with its copy of the modules they share with these tests (tests/common): separate
// types, never mixed.
#![allow(clippy::duplicate_mod)]

mod support;

mod adversarial_runs;
mod bad_input;
mod balance_precheck;
mod cards;
mod claim_rule;
mod cli;
mod cli_bounds;
mod client;
mod conformance;
mod console;
mod failover;
mod faults;
mod following;
mod harness;
mod hostile;
mod http;
mod logs;
mod migrations;
mod operator_errors;
mod pause;
mod pay_once;
mod pgpair_harness;
mod pooler;
mod reconcile;
mod redaction;
mod retention;
mod scheduling;
mod surroundings;
mod table;
mod tls;
mod traces;
mod webhooks;
mod worker_bad_input;
mod worker_failures;
mod worker_fencing;
mod worker_flow;
mod worker_recovery;
mod worker_scale;
mod worker_shutdown;
