//! Demand: ranking limited councils by their confirmed subscribers and promoting them to
//! full support within the limits operators set.
//!
//! - this file: the demand score, the ranking and each council's standing;
//! - [`promotion`]: the promotion (and demotion) run;
//! - [`requests`]: enablement requests and the operator's decisions on them.

pub mod promotion;
pub mod requests;

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::Serialize;

use crate::domain::{CouncilSlug, SupportLevel};
use crate::settings::{RankingSettings, Settings};
use crate::store::councils::Council;
use crate::store::ranking::{DemandCount, all_councils, demand_counts};
use crate::store::{StepContext, Store, StoreError};

/// Why a ranking, promotion or request operation did not happen; plain messages.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    #[error("there is no council `{0}`")]
    UnknownCouncil(CouncilSlug),
    #[error("there is no council with id {0}")]
    UnknownCouncilId(i64),
    #[error("there is no enablement request {0}")]
    UnknownRequest(i64),
    #[error("enablement request {id} has already been {state}")]
    AlreadyDecided {
        id: i64,
        state: crate::domain::RequestState,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Slack for comparing scores made of weighted counts, so that, say, 0.1 x 3 reaches 0.3.
const SCORE_EPSILON: f64 = 1e-9;

/// Whether a score reaches a threshold.
pub fn reaches(score: f64, threshold: f64) -> bool {
    score + SCORE_EPSILON >= threshold
}

/// A council's demand score: residents x resident_weight + professionals x professional_weight.
pub fn demand_score(residents: i64, professionals: i64, weights: &RankingSettings) -> f64 {
    residents as f64 * weights.resident_weight + professionals as f64 * weights.professional_weight
}

/// More subscribers needed before `score` reaches `threshold`: resident subscribers when a
/// resident counts at all (`resident_weight > 0`), otherwise professional ones; zero once it is
/// reached. (Settings refuse weights that are both zero.)
pub fn subscribers_needed(score: f64, threshold: f64, weights: &RankingSettings) -> u64 {
    if reaches(score, threshold) {
        return 0;
    }
    let weight = if weights.resident_weight > 0.0 {
        weights.resident_weight
    } else {
        weights.professional_weight
    };
    if weight <= 0.0 {
        return 0;
    }
    let needed = ((threshold - score) / weight - SCORE_EPSILON).ceil();
    if needed.is_finite() && needed > 0.0 {
        needed as u64
    } else {
        0
    }
}

/// Where one council stands in the demand ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub council: Council,
    /// Confirmed subscriptions of residents and of professionals (suppressed subscribers left
    /// out).
    pub residents: i64,
    pub professionals: i64,
    pub score: f64,
    /// Place among the limited councils, from 1; `None` for a fully supported council.
    pub position: Option<u32>,
    /// Limited councils in all: "12th of 317 waiting".
    pub waiting: u32,
    /// More subscribers needed to reach `promotion.threshold` (see [`subscribers_needed`]).
    pub needed: u64,
    /// When the council reached its current count: the latest confirmation among its counted
    /// subscriptions (epoch seconds); `None` with no confirmed subscriptions.
    pub reached_at: Option<i64>,
}

impl Standing {
    /// "12th of 317 waiting; 8 more subscribers needed", or "fully supported".
    pub fn summary(&self) -> String {
        match self.position {
            None => "fully supported".to_owned(),
            Some(position) if self.needed == 0 => format!(
                "{} of {} waiting; enough subscribers for promotion",
                ordinal(position),
                self.waiting
            ),
            Some(position) => format!(
                "{} of {} waiting; {} more subscriber{} needed",
                ordinal(position),
                self.waiting,
                self.needed,
                if self.needed == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The order of the ranking: higher score first; on equal scores, the council that reached its
/// score first (earlier [`Standing::reached_at`]; a council with no confirmation sorts after
/// one with); then by name, then by slug. Scores are compared as numbers worked out in Rust,
/// so the order is the same on SQLite and PostgreSQL.
pub fn ranking_order(a: &Standing, b: &Standing) -> Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| match (a.reached_at, b.reached_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.council.name.cmp(&b.council.name))
        .then_with(|| a.council.slug.cmp(&b.council.slug))
}

/// Ranks councils from their demand counts: limited councils first, in [`ranking_order`] with
/// their positions, then the fully supported ones in the same order without a position.
pub fn rank_councils(
    councils: Vec<Council>,
    counts: &HashMap<i64, DemandCount>,
    settings: &Settings,
) -> Vec<Standing> {
    let mut standings: Vec<Standing> = councils
        .into_iter()
        .map(|council| {
            let count = counts.get(&council.id).copied().unwrap_or_default();
            let score = demand_score(count.residents, count.professionals, &settings.ranking);
            Standing {
                needed: subscribers_needed(score, settings.promotion.threshold, &settings.ranking),
                council,
                residents: count.residents,
                professionals: count.professionals,
                score,
                position: None,
                waiting: 0,
                reached_at: count.last_confirmed_at,
            }
        })
        .collect();
    standings.sort_by(|a, b| {
        let level = |s: &Standing| u8::from(s.council.support == SupportLevel::Full);
        level(a).cmp(&level(b)).then_with(|| ranking_order(a, b))
    });
    let waiting = standings
        .iter()
        .filter(|s| s.council.support == SupportLevel::Limited)
        .count() as u32;
    let mut position = 0;
    for standing in &mut standings {
        standing.waiting = waiting;
        if standing.council.support == SupportLevel::Limited {
            position += 1;
            standing.position = Some(position);
        }
    }
    standings
}

/// Every council's standing, limited councils first in rank order (see [`rank_councils`]).
pub async fn demand_ranking(
    store: &Store,
    settings: &Settings,
) -> Result<Vec<Standing>, RankingError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    ranking_on(&mut conn, settings).await
}

/// The ranking as read on one connection (inside a transaction, for the promotion run).
pub(crate) async fn ranking_on(
    conn: &mut sqlx::AnyConnection,
    settings: &Settings,
) -> Result<Vec<Standing>, RankingError> {
    let councils = all_councils(conn).await?;
    let counts = demand_counts(conn).await?;
    Ok(rank_councils(councils, &counts, settings))
}

/// One council's standing in the ranking.
pub async fn council_standing(
    store: &Store,
    settings: &Settings,
    council_id: i64,
) -> Result<Standing, RankingError> {
    demand_ranking(store, settings)
        .await?
        .into_iter()
        .find(|s| s.council.id == council_id)
        .ok_or(RankingError::UnknownCouncilId(council_id))
}

/// An English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 112th.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Platform;

    fn council(id: i64, slug: &str, name: &str, support: SupportLevel) -> Council {
        Council {
            id,
            slug: slug.parse().unwrap(),
            name: name.to_owned(),
            gss_code: format!("E0{id}"),
            nation: "England".into(),
            council_type: "district".into(),
            platform: Platform::ModernGov,
            base_url: None,
            support,
            support_pinned: false,
            support_changed_at: None,
        }
    }

    fn count(council_id: i64, residents: i64, professionals: i64, last: i64) -> DemandCount {
        DemandCount {
            council_id,
            residents,
            professionals,
            last_confirmed_at: Some(last),
        }
    }

    #[test]
    fn ordinals_follow_english_usage() {
        let cases = [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (4, "4th"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (22, "22nd"),
            (101, "101st"),
            (111, "111th"),
            (112, "112th"),
            (317, "317th"),
        ];
        for (n, text) in cases {
            assert_eq!(ordinal(n), text, "{n}");
        }
    }

    #[test]
    fn needed_counts_whole_residents_up_to_the_threshold() {
        let weights = RankingSettings {
            resident_weight: 1.0,
            professional_weight: 3.0,
        };
        // 17 towards 25 leaves 8; 24.5 leaves one; reaching or passing it leaves none.
        assert_eq!(subscribers_needed(17.0, 25.0, &weights), 8);
        assert_eq!(subscribers_needed(24.5, 25.0, &weights), 1);
        assert_eq!(subscribers_needed(25.0, 25.0, &weights), 0);
        assert_eq!(subscribers_needed(30.0, 25.0, &weights), 0);
        // With residents at 0.1 each, 0.3 short is exactly three more, not four.
        let tenths = RankingSettings {
            resident_weight: 0.1,
            professional_weight: 0.0,
        };
        assert_eq!(subscribers_needed(0.7, 1.0, &tenths), 3);
        // Residents that count for nothing: professionals are what is needed.
        let pros_only = RankingSettings {
            resident_weight: 0.0,
            professional_weight: 2.0,
        };
        assert_eq!(subscribers_needed(0.0, 5.0, &pros_only), 3);
    }

    #[test]
    fn ties_go_to_the_council_that_reached_its_score_first_then_by_name() {
        let settings = Settings::defaults();
        let councils = vec![
            council(1, "bravo", "Bravo", SupportLevel::Limited),
            council(2, "alpha", "Alpha", SupportLevel::Limited),
            council(3, "charlie", "Charlie", SupportLevel::Limited),
            council(4, "delta", "Delta", SupportLevel::Limited),
            council(5, "echo", "Echo", SupportLevel::Full),
            council(6, "foxtrot", "Foxtrot", SupportLevel::Limited),
        ];
        // Scores with weights 1 and 3: bravo 3 (reached at 200), alpha 3 (at 200),
        // charlie 3 (one professional, at 100), delta 5, echo 9 (full), foxtrot 0.
        let counts: HashMap<i64, DemandCount> = [
            count(1, 3, 0, 200),
            count(2, 3, 0, 200),
            count(3, 0, 1, 100),
            count(4, 2, 1, 900),
            count(5, 9, 0, 50),
        ]
        .into_iter()
        .map(|c| (c.council_id, c))
        .collect();
        let ranked = rank_councils(councils, &counts, &settings);
        let order: Vec<(&str, Option<u32>, f64)> = ranked
            .iter()
            .map(|s| (s.council.slug.as_str(), s.position, s.score))
            .collect();
        assert_eq!(
            order,
            vec![
                ("delta", Some(1), 5.0),
                ("charlie", Some(2), 3.0),
                ("alpha", Some(3), 3.0),
                ("bravo", Some(4), 3.0),
                ("foxtrot", Some(5), 0.0),
                ("echo", None, 9.0),
            ]
        );
        assert!(ranked.iter().all(|s| s.waiting == 5));
        assert_eq!(ranked[0].needed, 20);
        assert_eq!(
            ranked[0].summary(),
            "1st of 5 waiting; 20 more subscribers needed"
        );
        assert_eq!(ranked[5].summary(), "fully supported");
    }
}
