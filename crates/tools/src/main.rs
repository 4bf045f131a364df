//! `ticketing-tracker-dev`: the product's commands and the development tools, one binary (the
//! workspace's `cargo run`).

use std::process::ExitCode;

use clap::Parser;
use ticketing_tracker::commands;
use ticketing_tracker_tools::cli::{Cli, DevCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let product = match &cli.command {
        DevCommand::Product(command) => Some(command),
        _ => None,
    };
    commands::before_runtime(product);
    commands::runtime().block_on(async {
        let result = match cli.command {
            DevCommand::Product(command) => return commands::main(command).await,
            DevCommand::Demo(args) => ticketing_tracker_tools::demo::run(args).await,
            DevCommand::Bench(args) => ticketing_tracker_tools::bench::run(args).await,
            DevCommand::Simulate(args) => atrip_simulator::args::serve(args).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", commands::say_once(&e));
                ExitCode::FAILURE
            }
        }
    })
}
