//! The binary: parse the command line, load settings, start telemetry, hand over to the library.

use clap::Parser;
use ticketing_tracker::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    ticketing_tracker::app::main(cli.command).await
}
