//! The command line: what each subcommand is for, in words a newcomer understands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Pays ATRIP airline orders exactly once and follows each until its PNR and ticket numbers
/// are final. Orders are enqueued by inserting rows into the Postgres table `ticketing_jobs`.
///
/// Settings come from config/default.toml (built in), config/$APP_ENVIRONMENT.toml and
/// APP_<SECTION>__<KEY> environment variables; DATABASE_URL is honoured too.
#[derive(Debug, Parser)]
#[command(name = "ticketing-tracker", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker (and its HTTP endpoints) until SIGTERM or Ctrl-C.
    Run,
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Run the ATRIP simulator as an HTTP server (for demos, benchmarks and local runs).
    Simulate(SimulateArgs),
    /// Everything in one process: a throwaway PostgreSQL, the simulator and a worker paying
    /// about 20 orders, with a live table until all are done.
    Demo(DemoArgs),
    /// Enqueue one order (card data from a file or stdin, never from the command line).
    Enqueue(EnqueueArgs),
    /// Show one order's row and its event timeline.
    Status(StatusArgs),
    /// List orders, newest first.
    List(ListArgs),
    /// Put a failed or needs_review order back to work. It always starts with an order query:
    /// an order ATRIP once showed paid is followed again and never paid twice; otherwise it is
    /// paid again only if no pay.do may have reached ATRIP, if ATRIP's answer said nothing was
    /// charged, or with --repay.
    Retry(RetryArgs),
    /// Cancel an order no pay.do was ever sent for.
    Cancel(CancelArgs),
    /// Measure throughput and pickup latency against an in-process simulator.
    Bench(BenchArgs),
    /// Write a key pair for sealed card data: card_key.secret (the worker's, mode 0600) and
    /// card_key.pub (for enqueuers, who seal cards to it).
    Keygen(KeygenArgs),
    /// Read a password from stdin and print its hash for the operator console
    /// (console.viewer_password_hash or console.operator_password_hash). The password is never
    /// an argument, where any user of the machine could read it in the process list.
    ConsoleHash(ConsoleHashArgs),
}

#[derive(Debug, Args)]
pub struct ConsoleHashArgs {
    /// PBKDF2 iterations: more makes a leaked hash slower to guess, and every login slower.
    #[arg(long, default_value_t = crate::console::DEFAULT_ITERATIONS)]
    pub iterations: u32,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write the two files into (they must not exist yet).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// Client id the simulator accepts (x-atlas-client-id).
    #[arg(long, default_value = "sim-client")]
    pub client_id: String,
    /// Client secret the simulator accepts (x-atlas-client-secret).
    #[arg(
        long,
        default_value = "sim-secret",
        env = "SIM_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// Treat any unknown orderNo as an existing unpaid order.
    #[arg(long)]
    pub auto_create: bool,
    /// Milliseconds from payment to ticketed.
    #[arg(long, default_value_t = 1000)]
    pub ticketing_delay_ms: u64,
    /// Issue tickets one passenger at a time over the ticketing delay.
    #[arg(long)]
    pub one_passenger_at_a_time: bool,
    /// What pay.do answers for an already paid order: 404 or 402.
    #[arg(long, default_value_t = 404)]
    pub repay_status: i64,
    /// Simulate an ATRIP without its duplicate guard: every pay.do arriving before the order's
    /// first payment has settled is taken and charged, so overlapping pay.do charge twice
    /// (later ones still answer 404/402: the order is paid). Default: a pay.do during another's
    /// processing answers 406 and charges nothing.
    #[arg(long)]
    pub no_duplicate_guard: bool,
    /// Milliseconds from pay.do's decision to the charge: the request is held that long, then
    /// answered 0; meanwhile the order query shows "0".
    #[arg(long, default_value_t = 0)]
    pub payment_processing_ms: u64,
    /// Card declines ("Reject", "Three DS") come later as a cancelled order instead of a
    /// pay.do error.
    #[arg(long)]
    pub card_decline_async: bool,
    /// A pay.do card decline (604/616) leaves the order unpaid ("0") instead of cancelling it
    /// ("-3" with that errorCode, which the worker's order query settles).
    #[arg(long)]
    pub decline_keeps_order: bool,
    /// pay.do refusals answer "orderNo": null (as ATRIP's apifox example shows) instead of
    /// echoing the requested order number.
    #[arg(long)]
    pub error_order_no_null: bool,
    /// orderStatus an unpaid order shows past its deadline: "0" or "-3".
    #[arg(long, default_value = "0")]
    pub expired_order_status: String,
    /// POST webhooks (order.ticketed / order.cancelled) to this URL.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Secret sent with each webhook as the x-webhook-secret header.
    #[arg(long, env = "SIM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Probability (0..1) that a request meets a random fault.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Seed for the random faults.
    #[arg(long)]
    pub fault_seed: Option<u64>,
    /// Delay every ATRIP answer (order.do, pay.do, queryOrderDetails.do; not /sim/...) by this
    /// many milliseconds on average, as a real round trip would.
    #[arg(long, value_name = "MEAN")]
    pub latency_ms: Option<u64>,
    /// Spread the latency uniformly over MEAN ± J milliseconds (never below 0).
    #[arg(long, value_name = "J", requires = "latency_ms")]
    pub latency_jitter_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of orders.
    #[arg(long, default_value_t = 20)]
    pub orders: usize,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// ATRIP order number.
    #[arg(long, required_unless_present = "from_json")]
    pub order_no: Option<String>,
    /// Payment method: 1 deposit, 3 VCC, 4 BYOA, 5 MoR.
    #[arg(long, required_unless_present = "from_json")]
    pub method: Option<i16>,
    /// File holding the card JSON (ATRIP's creditCard object); "-" reads stdin.
    #[arg(long)]
    pub card_file: Option<PathBuf>,
    /// Payment deadline (RFC 3339).
    #[arg(long)]
    pub pay_deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// The agency's own reference.
    #[arg(long)]
    pub client_order_no: Option<String>,
    /// A JSON file with the whole row: {"order_no", "payment_method", "card", ...}; "-" reads stdin.
    #[arg(long, conflicts_with_all = ["order_no", "method"])]
    pub from_json: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub order_no: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this state.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        ["pending", "paying", "ticketing", "ticketed", "failed", "needs_review", "cancelled"]))]
    pub state: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub order_no: String,
    /// Allow one more pay.do after an unclear one: say this only after checking in ATRIP that
    /// the order is unpaid. The worker still queries first and pays only if ATRIP shows the
    /// order unpaid; refused when an answer ever showed the order paid.
    #[arg(long)]
    pub repay: bool,
    /// Fresh card JSON for a card order that will pay again (its card was erased when the
    /// payment resolved); "-" reads stdin.
    #[arg(long)]
    pub card_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub order_no: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
}
