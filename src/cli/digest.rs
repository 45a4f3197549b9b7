//! `council-digest digest ...`: building (and, with the delivery engineer's `send`, sending)
//! the weekly digests by hand.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::clock::Clock;
use crate::digest::build::{BuildMode, build_week_with_progress, count_recipients};
use crate::domain::{EmailAddress, IsoWeek};
use crate::mail::message::MailContext;
use crate::mail::templates::Renderer;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum DigestCommand {
    /// Build a week's digests and queue their delivery (with --dry-run: render them only).
    Build(BuildArgs),
    /// Send what is due in the delivery queue once, and print how many were sent, will be
    /// retried, or failed.
    Send {
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The ISO week, such as 2026-W07; the current week in UK time when left out.
    #[arg(long, value_name = "WEEK")]
    pub week: Option<IsoWeek>,
    /// Only the subscriber with this address.
    #[arg(long, value_name = "EMAIL")]
    pub subscriber: Option<EmailAddress>,
    /// Render the messages without recording or queueing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: write one .eml file per digest into DIR instead of printing the first.
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    pub out: Option<PathBuf>,
}

pub async fn run(command: DigestCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        DigestCommand::Build(args) => build(args, settings).await,
        DigestCommand::Send { json } => send(json, settings).await,
    }
}

async fn build(args: BuildArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let store = crate::startup::open_store(settings, clock.clone()).await?;
    let renderer = Renderer::new(settings).context("mail.templates_dir")?;
    let key = crate::startup::signing_key(settings)?;
    let ctx = MailContext::new(settings, key, clock.clone()).context("mail settings")?;
    let week = args
        .week
        .unwrap_or_else(|| IsoWeek::containing(clock.now()));
    let mode = if args.dry_run {
        BuildMode::DryRun {
            out: args.out.clone(),
        }
    } else {
        BuildMode::Queue
    };

    let bar = if std::io::stderr().is_terminal() {
        let total = match args.subscriber {
            Some(_) => 1,
            None => count_recipients(&store).await?,
        };
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} subscribers ({msg}) {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let progress = |done: u64, failed: u64| {
        if let Some(bar) = &bar {
            bar.set_position(done);
            bar.set_message(format!("{failed} failed"));
        }
    };
    let report = build_week_with_progress(
        &store,
        settings,
        &renderer,
        &ctx,
        week,
        args.subscriber.as_ref(),
        mode,
        &progress,
    )
    .await
    .with_context(|| format!("building the digests of {week}"))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    if let Some(preview) = &report.preview {
        print!("{preview}");
    }
    for path in &report.written {
        eprintln!("wrote {}", path.display());
    }
    let verb = if args.dry_run { "rendered" } else { "built" };
    let summary = format!(
        "{week}: subscribers {}, {verb} {}, queued {}, already built {}, \
         only limited councils {}, failed {}, councils read {}",
        report.subscribers,
        report.built,
        report.queued,
        report.already_built,
        report.all_limited,
        report.failed,
        report.councils_loaded
    );
    // The counts go to stderr when stdout carries the message.
    if report.preview.is_some() {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Drains the delivery queue once. A delivery that failed is routine (it is in the ledger);
/// the exit status is 1 only when an outcome could not be recorded.
async fn send(json: bool, settings: &Settings) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let store = crate::startup::open_store(settings, clock.clone()).await?;
    let key = crate::startup::signing_key(settings)?;
    let mailer = crate::delivery::Mailer::from_settings(settings, key, clock)
        .context("preparing to send (smtp, mail and templates settings)")?;
    let report = mailer
        .drain(&store, settings)
        .await
        .context("draining the delivery queue")?;
    let outstanding = crate::store::ledger::count_outstanding(&store).await?;
    store.close().await;
    if json {
        crate::cli::print_json(&serde_json::json!({
            "sent": report.sent,
            "retrying": report.retrying,
            "failed": report.failed,
            "unrecorded": report.unrecorded,
            "outstanding": outstanding,
        }))?;
    } else {
        println!(
            "sent {}, retrying {}, failed {}; {} still queued or waiting for a retry",
            report.sent, report.retrying, report.failed, outstanding
        );
    }
    Ok(if report.unrecorded == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
