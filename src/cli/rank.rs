//! `council-digest rank`: the demand ranking, as operators and pages see it.

use std::process::ExitCode;

use crate::clock::Clock;
use crate::ranking::demand_ranking;
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct RankArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RankArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    let ranking = demand_ranking(&store, settings).await;
    store.close().await;
    let ranking = ranking?;

    if args.json {
        let rows: Vec<serde_json::Value> = ranking
            .iter()
            .map(|s| {
                serde_json::json!({
                    "position": s.position,
                    "waiting": s.waiting,
                    "council": s.council.slug,
                    "name": s.council.name,
                    "residents": s.residents,
                    "professionals": s.professionals,
                    "score": s.score,
                    "needed": s.needed,
                    "support": s.council.support,
                    "pinned": s.council.support_pinned,
                    "reached_at": s.reached_at,
                })
            })
            .collect();
        crate::cli::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }

    let rows: Vec<Vec<String>> = ranking
        .iter()
        .map(|s| {
            vec![
                s.position
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.council.slug.to_string(),
                s.residents.to_string(),
                s.professionals.to_string(),
                format_score(s.score),
                s.needed.to_string(),
                format!(
                    "{}{}",
                    s.council.support,
                    if s.council.support_pinned {
                        " (pinned)"
                    } else {
                        ""
                    }
                ),
            ]
        })
        .collect();
    crate::cli::print_table(
        &[
            "POSITION",
            "COUNCIL",
            "RESIDENTS",
            "PROFESSIONALS",
            "SCORE",
            "NEEDED",
            "SUPPORT",
        ],
        &rows,
    );
    let waiting = ranking.first().map_or(0, |s| s.waiting);
    println!(
        "{waiting} limited councils waiting; promotion at a score of {}",
        format_score(settings.promotion.threshold)
    );
    Ok(ExitCode::SUCCESS)
}

/// A score with at most two decimals and no trailing zeros: 25, 7.5, 0.33.
pub(crate) fn format_score(score: f64) -> String {
    let text = format!("{score:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::format_score;

    #[test]
    fn scores_print_without_trailing_zeros() {
        assert_eq!(format_score(25.0), "25");
        assert_eq!(format_score(7.5), "7.5");
        assert_eq!(format_score(1.0 / 3.0), "0.33");
        assert_eq!(format_score(0.0), "0");
    }
}
