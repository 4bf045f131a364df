//! `atrip-simulator`: the ATRIP simulator as an HTTP server until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use atrip_simulator::args::{serve, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ticketing_tracker::commands::before_runtime(None);
    ticketing_tracker::commands::runtime().block_on(async {
        match serve(cli.args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", ticketing_tracker::commands::say_once(&e));
                ExitCode::FAILURE
            }
        }
    })
}
