//! The `council-digest` command: parses the command line and hands over to the CLI module.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = council_digest::cli::Cli::parse();
    if !matches!(cli.command, council_digest::cli::Command::Run(_)) {
        stop_quietly_when_the_reader_goes();
    }
    council_digest::cli::main(cli)
}

/// A command piped into `head` stops when the reader closes the pipe, as other command-line
/// tools do, instead of panicking on the failed write. The daemon keeps Rust's default of
/// ignoring SIGPIPE, so that a closed log pipe is a failed write it survives.
fn stop_quietly_when_the_reader_goes() {
    // SAFETY: called before any other thread starts; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
