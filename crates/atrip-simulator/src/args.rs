//! The simulator as a server: its flags (the `atrip-simulator` binary's, and
//! `ticketing-tracker-dev simulate`'s) and the server they configure.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser};
use ticketing_tracker::startup::stop_on_signal;

use crate::SimConfig;

/// An ATRIP simulator speaking order.do, pay.do, queryOrderDetails.do and orderList.do, with
/// a ledger of every charge (GET /sim/ledger), for demos, benchmarks and local runs.
#[derive(Debug, Parser)]
#[command(name = "atrip-simulator", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub args: SimulateArgs,
}

/// The ATRIP simulator as a server until SIGTERM or Ctrl-C.
pub async fn serve(args: SimulateArgs) -> anyhow::Result<()> {
    ticketing_tracker::telemetry::init(&ticketing_tracker::config::Settings::defaults().log);
    let listen = args.listen;
    let config = sim_config(args);
    let handle = crate::start(config, listen)
        .await
        .with_context(|| format!("the simulator cannot listen on {listen} (--listen)"))?;
    println!("ATRIP simulator listening on {}", handle.base_url());
    let token = handle.shutdown_token();
    tokio::spawn(stop_on_signal(token));
    handle.stopped().await;
    Ok(())
}

/// The simulator's configuration from its flags.
pub fn sim_config(args: SimulateArgs) -> SimConfig {
    SimConfig {
        client_id: args.client_id,
        client_secret: args.client_secret,
        auto_create: args.auto_create,
        ticketing_delay: Duration::from_millis(args.ticketing_delay_ms),
        one_passenger_at_a_time: args.one_passenger_at_a_time,
        repay_status: args.repay_status,
        duplicate_guard: !args.no_duplicate_guard,
        payment_processing: Duration::from_millis(args.payment_processing_ms),
        card_decline_sync: !args.card_decline_async,
        decline_cancels_order: !args.decline_keeps_order,
        error_echoes_order_no: !args.error_order_no_null,
        expired_order_status: args.expired_order_status,
        webhook_url: args.webhook_url,
        webhook_secret: args.webhook_secret,
        fault_rate: args.fault_rate,
        fault_seed: args.fault_seed,
        latency_mean: Duration::from_millis(args.latency_ms.unwrap_or_default()),
        latency_jitter: Duration::from_millis(args.latency_jitter_ms.unwrap_or_default()),
        list_first_page: args.list_first_page,
        list_total_field: args.list_total_field,
        list_counts_as_strings: args.list_counts_as_strings,
        ..SimConfig::default()
    }
}

/// The simulator's flags.
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
    /// Secret sent with each webhook as the URL's ?secret= (as the URL registered with ATRIP).
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
    /// orderList.do: the number of its first page (ATRIP documents 1).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub list_first_page: i64,
    /// orderList.do: the name of the total number of orders in its answer (ATRIP documents
    /// totalRecords); "" sends none.
    #[arg(long, default_value = "totalRecords")]
    pub list_total_field: String,
    /// orderList.do: page, pageSize and the total as strings (the schema's types) instead of
    /// integers (its example).
    #[arg(long)]
    pub list_counts_as_strings: bool,
}
