//! `council-digest councils ...`: the registry as loaded, and the operator's support lever.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::Clock;
use crate::domain::{CouncilSlug, Platform, SupportLevel};
use crate::registry::Registry;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum CouncilsCommand {
    /// Load the registry and the per-council settings into the database (idempotent).
    Sync,
    /// List councils.
    List {
        /// Only councils on this committee platform (moderngov, cmis, other).
        #[arg(long)]
        platform: Option<Platform>,
        /// Only councils with this support level (limited, full).
        #[arg(long)]
        support: Option<SupportLevel>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one council.
    Show {
        /// The council's slug, as in `councils list` (such as `wolverhampton`).
        slug: CouncilSlug,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a council's support level directly (recorded as an operator decision).
    SetSupport {
        /// The council's slug, as in `councils list`.
        slug: CouncilSlug,
        /// `full` or `limited`.
        level: SupportLevel,
    },
}

pub async fn run(command: CouncilsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    match command {
        CouncilsCommand::Sync => {
            let report = store.sync_councils(Registry::builtin(), settings).await?;
            println!(
                "councils: {} added, {} updated, {} unchanged; sources: {} added, {} retired",
                report.councils_added,
                report.councils_updated,
                report.councils_unchanged,
                report.sources_added,
                report.sources_retired
            );
        }
        CouncilsCommand::List {
            platform,
            support,
            json,
        } => {
            let councils = store.list_councils(platform, support).await?;
            if json {
                crate::cli::print_json(&councils)?;
            } else {
                let rows: Vec<Vec<String>> = councils
                    .iter()
                    .map(|c| {
                        vec![
                            c.slug.to_string(),
                            c.name.clone(),
                            c.platform.to_string(),
                            c.support.to_string(),
                        ]
                    })
                    .collect();
                crate::cli::print_table(&["SLUG", "NAME", "PLATFORM", "SUPPORT"], &rows);
                println!("{} councils", councils.len());
            }
        }
        CouncilsCommand::Show { slug, json } => {
            let council = store.council_by_slug(&slug).await?;
            let feeds = store.council_feeds(council.id).await?;
            if json {
                let mut value = serde_json::to_value(&council)?;
                value["feeds"] = serde_json::json!(feeds);
                crate::cli::print_json(&value)?;
            } else {
                println!("{} ({})", council.name, council.slug);
                println!("  GSS code:  {}", council.gss_code);
                println!("  nation:    {}", council.nation);
                println!("  type:      {}", council.council_type);
                println!("  platform:  {}", council.platform);
                println!(
                    "  base URL:  {}",
                    council.base_url.as_deref().unwrap_or("(none)")
                );
                println!(
                    "  support:   {}{}",
                    council.support,
                    if council.support_pinned {
                        " (set in the settings)"
                    } else {
                        ""
                    }
                );
                for feed in feeds {
                    println!("  feed:      {feed}");
                }
            }
        }
        CouncilsCommand::SetSupport { slug, level } => {
            if store.set_council_support(&slug, level, "operator").await? {
                println!("{slug} now has {level} support");
            } else {
                println!("{slug} already has {level} support");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
