//! `council-digest promote`: runs the promotion job now, or shows what it would do.

use std::process::ExitCode;

use crate::cli::rank::format_score;
use crate::clock::Clock;
use crate::ranking::ordinal;
use crate::ranking::promotion::{HoldReason, run_promotion};
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// Work out and print what the run would do, changing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PromoteArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    let report = run_promotion(&store, settings, args.dry_run).await;
    store.close().await;
    let report = report?;

    if args.json {
        crate::cli::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = |done: &str, would: &str| {
        if report.dry_run {
            would.to_owned()
        } else {
            done.to_owned()
        }
    };
    for change in &report.promoted {
        let rank = change
            .rank
            .map(|r| format!(", {}", ordinal(r)))
            .unwrap_or_default();
        println!(
            "{} {} (score {}{rank}, by {}); {} notices",
            verb("promoted", "would promote"),
            change.council,
            format_score(change.score),
            change.reason,
            change.notices
        );
    }
    for change in &report.demoted {
        println!(
            "{} {} (score {}); {} notices",
            verb("demoted", "would demote"),
            change.council,
            format_score(change.score),
            change.notices
        );
    }
    for held in &report.held_back {
        let because = match held.because {
            HoldReason::Capacity => "promotion.max_full_councils reached",
            HoldReason::RunLimit => "promotion.max_per_run reached",
            HoldReason::Pinned => "support level set in the settings",
        };
        println!(
            "held back {} (score {}): {because}",
            held.council,
            format_score(held.score)
        );
    }
    for pending in &report.demotion_pending {
        println!(
            "{} is below the demotion floor (score {}); demoted from {} if it stays there",
            pending.council,
            format_score(pending.score),
            crate::clock::from_ts(pending.demote_at).format("%Y-%m-%d %H:%M UTC")
        );
    }
    println!(
        "{} promoted, {} demoted; {} of {} full councils{}",
        report.promoted.len(),
        report.demoted.len(),
        report.full_councils,
        report.max_full_councils,
        if report.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
