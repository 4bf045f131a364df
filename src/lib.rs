//! ticketing-tracker pays ATRIP airline orders exactly once (`pay.do`) and follows each one with
//! the order query until its PNR and every ticket number are final.
//!
//! An enqueuer inserts a row into `ticketing_jobs`. A worker claims due rows in batches
//! (`FOR NO KEY UPDATE SKIP LOCKED`, a lease token bumped per claim). Claiming a `pending` row
//! commits the pay intent, moving it to `paying`, before `pay.do` leaves. The answer is
//! recorded by one fenced write:
//! - accepted → `ticketing`;
//! - definitive refusal → `failed`;
//! - anything unclear → stays `paying`, and only an order query moves it on.
//!
//! `ticketing` rows are polled with backoff until every passenger's ticket has been seen
//! identically twice (→ `ticketed`), ATRIP cancels the order (→ `failed`), or a bound passes
//! (→ `needs_review`). Operators may `cancel` a row before any payment was sent, and `retry`
//! a `failed` or `needs_review` row; a retry resumes with an order query.
//!
//! Modules:
//! - [`jobs`]: the job store, every SQL statement;
//! - [`worker`]: the claim loop and the pay, recovery and follow steps;
//! - [`atrip`]: codes, answer classification and the HTTP client;
//! - [`simulator`]: the ATRIP simulator;
//! - [`card`] and [`sealed`]: card data;
//! - [`config`] and [`telemetry`]: settings and logs;
//! - [`http`] and [`metrics`]: the endpoints;
//! - [`console`]: the operator console under `/console` (pages, sessions, actions);
//! - [`ops`], [`demo`] and [`mod@bench`]: the commands;
//! - [`app`] and [`cli`]: wiring;
//! - [`localpg`]: a throwaway PostgreSQL.

pub mod app;
pub mod atrip;
pub mod bench;
pub mod card;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod localpg;
pub mod machine;
pub mod metrics;
pub mod ops;
pub mod sealed;
pub mod simulator;
pub mod telemetry;
pub mod worker;

/// The embedded migrations: `run` and `migrate` apply them; tests migrate each fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
