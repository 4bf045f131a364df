//! What develops and measures ticketing-tracker without being part of it: the demo, the bench
//! and a throwaway PostgreSQL. The `ticketing-tracker-dev` binary runs them beside every
//! command of the product (`cargo run -- demo`).
//!
//! - [`demo`]: a throwaway PostgreSQL, the simulator and a worker paying about 20 orders;
//! - [`bench`]: throughput, pickup, latency and backlog phases, and the client against a
//!   hostile ATRIP;
//! - [`localpg`]: a throwaway PostgreSQL cluster from the machine's binaries;
//! - [`cli`]: the development binary's commands.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod localpg;
