//! `council-digest poll`: poll sources once, now, and report what each one said.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::clock::Clock;
use crate::domain::CouncilSlug;
use crate::settings::Settings;
use crate::sources::fetch::Fetcher;
use crate::sources::poll::{PollFilter, PollStatus, count_sources, poll_sources_with};

#[derive(Debug, clap::Args)]
pub struct PollArgs {
    /// Poll only this council's sources (repeatable); all active sources when absent.
    #[arg(long = "council", value_name = "SLUG")]
    pub councils: Vec<CouncilSlug>,
    /// Skip sources still waiting out a backoff after failures.
    #[arg(long)]
    pub due_only: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PollArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_synced_store(settings, Clock::system()).await?;
    let filter = PollFilter {
        councils: args.councils,
        support: None,
        due_only: args.due_only,
    };
    for slug in &filter.councils {
        store.council_by_slug(slug).await?;
    }
    let fetcher = Fetcher::new(&settings.fetch).map_err(anyhow::Error::msg)?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(count_sources(&store, &filter).await?);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sources {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let report = poll_sources_with(&store, settings, &filter, &fetcher, |outcome| {
        if let Some(bar) = &progress {
            bar.set_message(outcome.council.to_string());
            bar.inc(1);
        }
    })
    .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    if args.json {
        let value = serde_json::json!({
            "sources": report.sources,
            "totals": report.totals(),
        });
        crate::cli::print_json(&value)?;
    } else {
        let rows: Vec<Vec<String>> = report
            .sources
            .iter()
            .map(|s| {
                let status = match s.status {
                    PollStatus::Stored => "stored",
                    PollStatus::NotModified => "not modified",
                    PollStatus::Failed => "FAILED",
                };
                vec![
                    s.council.to_string(),
                    s.kind.to_string(),
                    status.to_owned(),
                    s.new.to_string(),
                    s.changed.to_string(),
                    s.unchanged.to_string(),
                    s.withdrawn.to_string(),
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        crate::cli::print_table(
            &[
                "COUNCIL",
                "KIND",
                "STATUS",
                "NEW",
                "CHANGED",
                "UNCHANGED",
                "WITHDRAWN",
                "ERROR",
            ],
            &rows,
        );
        let totals = report.totals();
        println!(
            "{} sources: {} new, {} changed, {} unchanged, {} withdrawn, {} failed",
            totals.sources,
            totals.new,
            totals.changed,
            totals.unchanged,
            totals.withdrawn,
            totals.failed
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
