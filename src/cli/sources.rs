//! `council-digest sources list`: each source's health.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::Clock;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// List active sources with their last success, last error and next poll.
    List {
        /// Only sources whose last poll failed.
        #[arg(long)]
        failing: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: SourcesCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    match command {
        SourcesCommand::List { failing, json } => {
            let sources = store.list_sources(failing).await?;
            if json {
                crate::cli::print_json(&sources)?;
            } else {
                let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
                    at.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "-".to_owned())
                };
                let rows: Vec<Vec<String>> = sources
                    .iter()
                    .map(|s| {
                        vec![
                            s.council_slug.clone(),
                            s.kind.to_string(),
                            s.url.clone(),
                            when(s.last_success_at),
                            s.consecutive_failures.to_string(),
                            when(s.next_poll_at),
                            s.last_error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                crate::cli::print_table(
                    &[
                        "COUNCIL",
                        "KIND",
                        "URL",
                        "LAST SUCCESS",
                        "FAILURES",
                        "NEXT POLL",
                        "LAST ERROR",
                    ],
                    &rows,
                );
                println!("{} sources", sources.len());
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
