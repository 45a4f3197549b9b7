//! The command line: one subcommand per operator task, each with `--help`.

mod config_cmd;
mod councils;
mod deliveries;
mod digest;
mod meetings;
mod poll;
mod promote;
mod rank;
mod requests;
mod sources;
mod subscribers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::clock::Clock;
use crate::settings::{Settings, SettingsSource};

#[derive(Debug, Parser)]
#[command(
    name = "council-digest",
    version,
    about = "Weekly digests of UK council meetings"
)]
pub struct Cli {
    /// Settings file layered over the built-in defaults.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "COUNCIL_DIGEST_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: migrate, load the registry, poll, promote, send and serve.
    Run(crate::daemon::RunArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect the settings.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// The council registry and support levels.
    #[command(subcommand)]
    Councils(councils::CouncilsCommand),
    /// Weekly digests: build (and queue) a week's digests, send the queue.
    #[command(subcommand)]
    Digest(digest::DigestCommand),
    /// The delivery ledger: list deliveries, requeue failed ones.
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// Subscribers: add, list, remove, export and erase.
    #[command(subcommand)]
    Subscribers(subscribers::SubscribersCommand),
    /// The demand ranking of limited councils.
    Rank(rank::RankArgs),
    /// Run the promotion job now (or show what it would do).
    Promote(promote::PromoteArgs),
    /// Enablement requests: list, approve, reject.
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Poll council sources once, now, and report new / changed / unchanged / failed.
    Poll(poll::PollArgs),
    /// Council sources and their health.
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
    /// Stored meetings.
    #[command(subcommand)]
    Meetings(meetings::MeetingsCommand),
}

/// Runs one command and turns its outcome into the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let source = SettingsSource {
        file: cli.config.clone(),
    };

    // `config check` reports invalid settings itself instead of failing to start.
    if let Command::Config(command) = &cli.command {
        return config_cmd::run(command, &source);
    }

    let settings = match source.load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("council-digest: {err}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&settings.log);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("council-digest: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, source, settings)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("council-digest: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(
    command: Command,
    source: SettingsSource,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => crate::daemon::run(args, source, settings).await,
        Command::Migrate => {
            crate::startup::open_store(&settings, Clock::system()).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Councils(command) => councils::run(command, &settings).await,
        Command::Digest(command) => digest::run(command, &settings).await,
        Command::Deliveries(command) => deliveries::run(command, &settings).await,
        Command::Subscribers(command) => subscribers::run(command, &settings).await,
        Command::Rank(args) => rank::run(args, &settings).await,
        Command::Promote(args) => promote::run(args, &settings).await,
        Command::Requests(command) => requests::run(command, &settings).await,
        Command::Poll(args) => poll::run(args, &settings).await,
        Command::Sources(command) => sources::run(command, &settings).await,
        Command::Meetings(command) => meetings::run(command, &settings).await,
        Command::Config(_) => Ok(ExitCode::SUCCESS),
    }
}

/// Prints rows as aligned columns under a header.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
