//! `simulate`: the ATRIP simulator as a server.

use std::time::Duration;

use anyhow::Context;

use crate::cli::SimulateArgs;
use crate::simulator::{self, SimConfig};
use crate::startup::stop_on_signal;

/// `simulate`: the ATRIP simulator as a server until SIGTERM or Ctrl-C.
pub(super) async fn command(args: SimulateArgs) -> anyhow::Result<()> {
    crate::telemetry::init(&crate::config::Settings::defaults().log);
    let listen = args.listen;
    let config = sim_config(args);
    let handle = simulator::start(config, listen)
        .await
        .with_context(|| format!("the simulator cannot listen on {listen} (--listen)"))?;
    println!("ATRIP simulator listening on {}", handle.base_url());
    let token = handle.shutdown_token();
    tokio::spawn(stop_on_signal(token));
    handle.stopped().await;
    Ok(())
}

/// The simulator's configuration from `simulate`'s flags.
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
