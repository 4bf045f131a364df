//! ticketing-tracker (map written at the end of the foundation work).

pub mod app;
pub mod atrip;
pub mod bench;
pub mod card;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod jobs;
pub mod localpg;
pub mod metrics;
pub mod ops;
pub mod sealed;
pub mod simulator;
pub mod telemetry;
pub mod worker;

/// The embedded migrations: `run` and `migrate` apply them; tests migrate each fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
