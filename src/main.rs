//! The binary: parse the command line and hand over to the library.

use clap::Parser;
use ticketing_tracker::cli::Cli;
use ticketing_tracker::commands;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    commands::before_runtime(Some(&cli.command));
    commands::runtime().block_on(commands::main(cli.command))
}
