//! ticketing-tracker pays ATRIP airline orders exactly once (`pay.do`) and follows each one with
//! the order query until its PNR and every ticket number are final.
//!
//! An enqueuer inserts a row into `ticketing_jobs`. A worker claims due rows in batches
//! (`FOR NO KEY UPDATE SKIP LOCKED`, a lease token bumped per claim, every time the database's).
//! Claiming a `pending` row commits the pay intent, moving it to `paying`, before `pay.do`
//! leaves; the table's CHECKs refuse a second intent without a permit. The answer is recorded
//! by one fenced write:
//! - accepted (or already paid) → `ticketing`;
//! - a documented refusal → `failed`;
//! - anything unclear → stays `paying`: only the order query moves it on, and once a `pay.do`
//!   may have reached ATRIP the worker never sends another by itself; an order that keeps
//!   showing unpaid goes to `needs_review`.
//!
//! `ticketing` rows are followed with backoff until every passenger's ticket and a PNR have been
//! seen identically twice (→ `ticketed`), ATRIP cancels the order (→ `failed`), or a bound
//! passes (→ `needs_review`). Operators may `cancel` a row no `pay.do` reached ATRIP for, and
//! `retry` a `failed` or `needs_review` row (`--repay` to allow one more `pay.do`); a retry
//! resumes with an order query. Operators may also `pause` paying, for every method or one,
//! while the rest goes on (rows already paid are followed, webhooks recorded), and `resume`
//! it. `docs/design.md` states the rules one by one.
//!
//! Modules:
//! - [`domain`]: the vocabulary (states, methods, order numbers, tickets, event kinds);
//! - [`machine`]: the transition table, "state × what ATRIP answered → next";
//! - [`jobs`]: the job store, every SQL statement, and the writer that batches results;
//! - [`worker`]: the claim loop and the pay and query steps;
//! - [`atrip`]: codes, answer classification and the HTTP client;
//! - [`card`] and [`sealed`]: card data;
//! - [`config`] and [`telemetry`]: settings and logs;
//! - [`http`] and [`metrics`]: the endpoints;
//! - [`console`]: the operator console under `/console` (pages, sessions, actions);
//! - [`reconcile`]: the daily (and on demand) comparison of the job table with ATRIP's order
//!   list, which records evidence of payment and never pays;
//! - [`commands`]: one file per subcommand (`run`, `enqueue`, `status`, `retry`, `pause_resume`: `pause` and `resume` …)
//!   and their dispatch; [`cli`]: their arguments; [`input`]: what they read, bounded;
//!   [`paused`]: what a pause in force is said as, on every page and line;
//! - [`startup`]: the pool, migrations, the worker's wiring and the stop signal, below the
//!   commands.
//!
//! Beside the product, in `crates/`: the ATRIP simulator (`atrip-simulator`), the development
//! tools (`ticketing-tracker-tools`: demo, bench, a throwaway PostgreSQL) and the tests'
//! database helper (`test-support`); docs/architecture.md has the map.

pub mod atrip;
pub mod card;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod domain;
pub mod http;
pub mod input;
pub mod jobs;
pub mod machine;
pub mod metrics;
pub mod paused;
pub mod reconcile;
pub mod sealed;
pub mod startup;
pub mod surroundings;
pub mod telemetry;
pub mod webhook;
pub mod worker;

/// The embedded migrations: `run` and `migrate` apply them; tests migrate each fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
