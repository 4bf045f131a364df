//! The development binary's command line: every command of `ticketing-tracker`, and the ones
//! that are not the product's (`demo`, `bench`, `simulate`).

use clap::{Args, Parser, Subcommand};

/// ticketing-tracker with its development tools: the demo, the bench and the ATRIP simulator
/// as a server, beside every command of the production binary.
///
/// Settings come from config/default.toml (built in), config/$APP_ENVIRONMENT.toml and
/// APP_<SECTION>__<KEY> environment variables; DATABASE_URL is honoured too.
#[derive(Debug, Parser)]
#[command(name = "ticketing-tracker-dev", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: DevCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Everything in one process: a throwaway PostgreSQL, the simulator and a worker paying
    /// about 20 orders, with a live table until all are done.
    Demo(DemoArgs),
    /// Run the ATRIP simulator as an HTTP server (for demos, benchmarks and local runs); the
    /// same as the `atrip-simulator` binary.
    Simulate(atrip_simulator::args::SimulateArgs),
    /// Measure throughput and pickup latency against an in-process simulator.
    Bench(BenchArgs),
    #[command(flatten)]
    Product(ticketing_tracker::cli::Command),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of orders.
    #[arg(long, default_value_t = 20)]
    pub orders: usize,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Orders for each throughput phase (and for the SQL-only baseline).
    #[arg(long, default_value_t = 5000)]
    pub orders: usize,
    /// Worker processes (each a `run` child of the bench).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Concurrency of each worker in the throughput phases.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Simulated ATRIP latency (mean) for the latency phases; 0 skips them.
    #[arg(long, default_value_t = 300)]
    pub latency_ms: u64,
    /// Uniform jitter around the mean latency.
    #[arg(long, default_value_t = 50)]
    pub latency_jitter_ms: u64,
    /// Worker concurrencies of the latency phases.
    #[arg(long, value_delimiter = ',', default_value = "64,512,2048")]
    pub latency_concurrency: Vec<usize>,
    /// Finished rows built for the last phase (throughput and a metrics scrape at that size);
    /// 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub big_rows: u64,
    /// Clients of the SQL-only baseline.
    #[arg(long, default_value_t = 8)]
    pub baseline_clients: usize,
    /// Instead of the phases above: the ATRIP client at the default concurrency against a
    /// hostile local ATRIP (oversized answers, gzip bombs, endless and trickling bodies) for
    /// --orders answers, then this process's peak RSS against the 128 MiB limit.
    #[arg(long)]
    pub hostile: bool,
    /// Instead of the phases above: backlogs with payment deadlines (docs/design.md, S1–S3),
    /// one line each: `backlog: shape=… orders=… missed=… feasible_min=… p99_pay_delay_ms=…`.
    /// Shapes: deadlines, deadlines-priority, slow-cards, while-following, claim-cost (one
    /// claim's round trip with 1,000 and 1,000,000 due), or all.
    #[arg(long, value_delimiter = ',', value_name = "SHAPES")]
    pub backlog: Vec<String>,
}
