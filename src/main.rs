//! The `council-digest` command: parses the command line and hands over to the CLI module.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = council_digest::cli::Cli::parse();
    council_digest::cli::main(cli)
}
