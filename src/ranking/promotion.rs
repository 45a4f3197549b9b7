//! The promotion run: limited councils with enough demand become fully supported, within the
//! operator's limits, and (when switched on) full councils whose demand has stayed low return to
//! limited support.
//!
//! One run is one write transaction. On PostgreSQL it starts by taking an advisory lock, so two
//! daemons running the job at the same moment take turns and the second sees what the first
//! did: each council is promoted once. Settings are read when the run starts, so a changed
//! threshold applies from the next run and nothing already decided is revisited.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::AnyConnection;

use crate::domain::{CouncilSlug, SupportLevel};
use crate::ranking::{RankingError, Standing, ranking_on, reaches};
use crate::settings::Settings;
use crate::store::deliveries::{Enqueued, NewDelivery, enqueue_delivery};
use crate::store::ranking::{
    NewPromotion, below_demote_since, change_support, clear_demotion_clocks,
    confirmed_subscriber_ids, latest_support_changes, lock_promotion, record_promotion,
    set_below_demote_since,
};
use crate::store::requests::{EnablementRequest, approved_awaiting_promotion};
use crate::store::{Backend, StepContext, Store, WriteTx};

/// Why a support level changed, as recorded in the promotions history (an operator's
/// `councils set-support` records `operator`, and the settings `settings`).
pub const REASON_THRESHOLD: &str = "threshold";
pub const REASON_REQUEST: &str = "request";

/// One council whose support level changed (or would, in a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupportChange {
    pub council: CouncilSlug,
    pub name: String,
    pub score: f64,
    /// Place among the limited councils when promoted by demand.
    pub rank: Option<u32>,
    /// `threshold` or `request`.
    pub reason: String,
    pub request_id: Option<i64>,
    /// The promotions-history entry; `None` in a dry run.
    pub promotion_id: Option<i64>,
    /// Notices queued for the council's confirmed subscribers.
    pub notices: u64,
}

/// Why a council that qualified was not promoted in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// `promotion.max_full_councils` reached.
    Capacity,
    /// `promotion.max_per_run` reached.
    RunLimit,
    /// Its support level is named in the settings.
    Pinned,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    pub council: CouncilSlug,
    pub score: f64,
    pub rank: Option<u32>,
    pub request_id: Option<i64>,
    pub because: HoldReason,
}

/// A full council below the demotion floor, waiting out `promotion.demote_after_days`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingDemotion {
    pub council: CouncilSlug,
    pub score: f64,
    pub below_since: i64,
    pub demote_at: i64,
}

/// What one promotion run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotionReport {
    pub dry_run: bool,
    pub promoted: Vec<SupportChange>,
    pub demoted: Vec<SupportChange>,
    pub held_back: Vec<HeldBack>,
    pub demotion_pending: Vec<PendingDemotion>,
    /// Full councils counted against the capacity after the run.
    pub full_councils: u32,
    pub max_full_councils: u32,
    pub notices_queued: u64,
}

/// What the run knows at its start, read inside its transaction.
struct Snapshot {
    ranking: Vec<Standing>,
    latest: HashMap<i64, (String, String)>,
    /// Full councils counted against `promotion.max_full_councils`.
    counted_full: u32,
}

impl Snapshot {
    async fn read(conn: &mut AnyConnection, settings: &Settings) -> Result<Snapshot, RankingError> {
        let ranking = ranking_on(conn, settings).await?;
        let latest = latest_support_changes(conn).await?;
        let counted_full = ranking
            .iter()
            .filter(|s| s.council.support == SupportLevel::Full)
            .filter(|s| {
                settings.promotion.requests_count_against_capacity
                    || !promoted_by(&latest, s.council.id, REASON_REQUEST)
            })
            .count() as u32;
        Ok(Snapshot {
            ranking,
            latest,
            counted_full,
        })
    }

    fn standing(&self, council_id: i64) -> Option<&Standing> {
        self.ranking.iter().find(|s| s.council.id == council_id)
    }
}

/// Whether a council's current full support came from a promotion for `reason`.
fn promoted_by(latest: &HashMap<i64, (String, String)>, council_id: i64, reason: &str) -> bool {
    latest
        .get(&council_id)
        .is_some_and(|(direction, why)| direction == "promote" && why == reason)
}

/// Opens the run's transaction and, on PostgreSQL, takes the promotion lock.
pub(crate) async fn begin_locked(store: &Store) -> Result<WriteTx, RankingError> {
    let mut tx = store.begin_write().await?;
    if store.backend() == Backend::Postgres {
        lock_promotion(&mut tx).await?;
    }
    Ok(tx)
}

/// Changes a council's support level, records it, and queues a notice (`promoted` or
/// `demoted`, payload `{"council_id": N}`) for each confirmed subscriber under the key
/// `notice:{kind}:{promotion_id}:{subscriber_id}`. `None` when the level had already changed.
async fn apply_change(
    tx: &mut WriteTx,
    standing: &Standing,
    level: SupportLevel,
    rank: Option<u32>,
    reason: &str,
    request_id: Option<i64>,
    now: i64,
) -> Result<Option<SupportChange>, RankingError> {
    let council = &standing.council;
    if !change_support(tx, council.id, level, now).await? {
        return Ok(None);
    }
    let (direction, kind) = match level {
        SupportLevel::Full => ("promote", "promoted"),
        SupportLevel::Limited => ("demote", "demoted"),
    };
    let promotion_id = record_promotion(
        tx,
        &NewPromotion {
            council_id: council.id,
            direction,
            score: standing.score,
            rank: rank.map(i64::from),
            reason,
            request_id,
        },
        now,
    )
    .await?;
    let mut notices = 0;
    for subscriber_id in confirmed_subscriber_ids(tx, council.id).await? {
        let delivery = NewDelivery {
            dedupe_key: format!("notice:{kind}:{promotion_id}:{subscriber_id}"),
            kind: kind.to_owned(),
            subscriber_id: Some(subscriber_id),
            digest_id: None,
            payload: serde_json::json!({ "council_id": council.id }),
        };
        if let Enqueued::Queued(_) = enqueue_delivery(tx, &delivery, now).await? {
            notices += 1;
        }
    }
    tracing::info!(
        council = %council.slug,
        direction,
        reason,
        score = standing.score,
        notices,
        "council support changed"
    );
    Ok(Some(SupportChange {
        council: council.slug.clone(),
        name: council.name.clone(),
        score: standing.score,
        rank,
        reason: reason.to_owned(),
        request_id,
        promotion_id: Some(promotion_id),
        notices,
    }))
}

/// What happened to an approved request's council.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RequestPromotion {
    Promoted(SupportChange),
    /// The council was already fully supported; nothing to do.
    AlreadyFull,
    /// Its support level is named in the settings, which promotion leaves alone.
    Pinned,
    /// Approved requests count against capacity and `max_full_councils` is reached; a later
    /// run promotes it when there is room.
    WaitingForCapacity,
}

/// Promotes the council of an approved request, regardless of its score, inside `tx` (which
/// holds the promotion lock). It counts against `max_full_councils` only when
/// `promotion.requests_count_against_capacity` is set.
async fn promote_for_request(
    tx: &mut WriteTx,
    snapshot: &mut Snapshot,
    settings: &Settings,
    request: &EnablementRequest,
    now: i64,
) -> Result<RequestPromotion, RankingError> {
    let standing = snapshot
        .standing(request.council_id)
        .cloned()
        .ok_or(RankingError::UnknownCouncilId(request.council_id))?;
    if standing.council.support == SupportLevel::Full {
        return Ok(RequestPromotion::AlreadyFull);
    }
    if standing.council.support_pinned {
        return Ok(RequestPromotion::Pinned);
    }
    let counts = settings.promotion.requests_count_against_capacity;
    if counts && snapshot.counted_full >= settings.promotion.max_full_councils {
        return Ok(RequestPromotion::WaitingForCapacity);
    }
    let change = apply_change(
        tx,
        &standing,
        SupportLevel::Full,
        standing.position,
        REASON_REQUEST,
        Some(request.id),
        now,
    )
    .await?;
    let Some(change) = change else {
        return Ok(RequestPromotion::AlreadyFull);
    };
    if counts {
        snapshot.counted_full += 1;
    }
    if let Some(s) = snapshot
        .ranking
        .iter_mut()
        .find(|s| s.council.id == request.council_id)
    {
        s.council.support = SupportLevel::Full;
    }
    Ok(RequestPromotion::Promoted(change))
}

/// Promotes an approved request's council now if it can be (the operator's approval, or an
/// automatic one), in the caller's transaction after it took [`begin_locked`].
pub(crate) async fn promote_approved(
    tx: &mut WriteTx,
    settings: &Settings,
    request: &EnablementRequest,
    now: i64,
) -> Result<RequestPromotion, RankingError> {
    let mut snapshot = Snapshot::read(tx, settings).await?;
    promote_for_request(tx, &mut snapshot, settings, request, now).await
}

/// Runs the promotion job once; with `dry_run`, works everything out and changes nothing.
///
/// In order, in one transaction:
/// 1. approved enablement requests whose council is still limited: promoted regardless of
///    score (not limited by `max_per_run`; counted against capacity per
///    `requests_count_against_capacity`);
/// 2. limited councils not pinned in the settings whose score reaches `promotion.threshold`,
///    in rank order, while the full councils counted against capacity stay within
///    `max_full_councils` and this run's demand promotions within `max_per_run`; the others
///    are reported as held back. When more councils are already full than the capacity allows
///    (the capacity was lowered), nothing is promoted and nobody is demoted for it;
/// 3. when `promotion.demote_below` is set (non-negative): each full council whose current
///    support came from demand (a `threshold` promotion, not pinned, not an approved request or
///    an operator's decision, which stand until an operator reverses them) and whose score is
///    below it starts a clock (`below_demote_since`); once the score has stayed below for
///    `demote_after_days` it returns to limited. A score back at or above the floor stops the
///    clock. With demotion off, every clock is cleared.
///
/// Each change is recorded in the promotions history and its notices are queued; a second run
/// with nothing new changes nothing and queues nothing.
pub async fn run_promotion(
    store: &Store,
    settings: &Settings,
    dry_run: bool,
) -> Result<PromotionReport, RankingError> {
    let now = store.clock().now_ts();
    let limits = &settings.promotion;
    let mut tx = begin_locked(store).await?;
    let mut snapshot = Snapshot::read(&mut tx, settings).await?;
    let mut report = PromotionReport {
        dry_run,
        promoted: Vec::new(),
        demoted: Vec::new(),
        held_back: Vec::new(),
        demotion_pending: Vec::new(),
        full_councils: 0,
        max_full_councils: limits.max_full_councils,
        notices_queued: 0,
    };

    for request in approved_awaiting_promotion(&mut tx).await? {
        match promote_for_request(&mut tx, &mut snapshot, settings, &request, now).await? {
            RequestPromotion::Promoted(change) => report.promoted.push(change),
            RequestPromotion::WaitingForCapacity => {
                let standing = snapshot
                    .standing(request.council_id)
                    .ok_or(RankingError::UnknownCouncilId(request.council_id))?;
                report.held_back.push(HeldBack {
                    council: standing.council.slug.clone(),
                    score: standing.score,
                    rank: standing.position,
                    request_id: Some(request.id),
                    because: HoldReason::Capacity,
                });
            }
            RequestPromotion::AlreadyFull | RequestPromotion::Pinned => {}
        }
    }

    let candidates: Vec<Standing> = snapshot
        .ranking
        .iter()
        .filter(|s| s.council.support == SupportLevel::Limited)
        .filter(|s| reaches(s.score, limits.threshold))
        .cloned()
        .collect();
    let mut promoted_by_demand = 0;
    for standing in candidates {
        let held = |because| HeldBack {
            council: standing.council.slug.clone(),
            score: standing.score,
            rank: standing.position,
            request_id: None,
            because,
        };
        if standing.council.support_pinned {
            report.held_back.push(held(HoldReason::Pinned));
        } else if snapshot.counted_full >= limits.max_full_councils {
            report.held_back.push(held(HoldReason::Capacity));
        } else if promoted_by_demand >= limits.max_per_run {
            report.held_back.push(held(HoldReason::RunLimit));
        } else if let Some(change) = apply_change(
            &mut tx,
            &standing,
            SupportLevel::Full,
            standing.position,
            REASON_THRESHOLD,
            None,
            now,
        )
        .await?
        {
            snapshot.counted_full += 1;
            promoted_by_demand += 1;
            report.promoted.push(change);
        }
    }

    match limits.demotion_floor() {
        Some(floor) => {
            let clocks = below_demote_since(&mut tx).await?;
            let wait = i64::from(limits.demote_after_days) * 86_400;
            let promoted_now: Vec<CouncilSlug> =
                report.promoted.iter().map(|c| c.council.clone()).collect();
            for standing in &snapshot.ranking {
                let council = &standing.council;
                let eligible = council.support == SupportLevel::Full
                    && !council.support_pinned
                    && !promoted_now.contains(&council.slug)
                    && promoted_by(&snapshot.latest, council.id, REASON_THRESHOLD);
                if !eligible {
                    continue;
                }
                let since = clocks.get(&council.id).copied();
                if reaches(standing.score, floor) {
                    if since.is_some() {
                        set_below_demote_since(&mut tx, council.id, None).await?;
                    }
                    continue;
                }
                match since {
                    Some(since) if now - since >= wait => {
                        let change = apply_change(
                            &mut tx,
                            standing,
                            SupportLevel::Limited,
                            None,
                            REASON_THRESHOLD,
                            None,
                            now,
                        )
                        .await?;
                        if let Some(change) = change {
                            snapshot.counted_full = snapshot.counted_full.saturating_sub(1);
                            report.demoted.push(change);
                        }
                    }
                    since => {
                        let since = match since {
                            Some(since) => since,
                            None => {
                                set_below_demote_since(&mut tx, council.id, Some(now)).await?;
                                now
                            }
                        };
                        report.demotion_pending.push(PendingDemotion {
                            council: council.slug.clone(),
                            score: standing.score,
                            below_since: since,
                            demote_at: since + wait,
                        });
                    }
                }
            }
        }
        None => {
            clear_demotion_clocks(&mut tx).await?;
        }
    }

    report.full_councils = snapshot.counted_full;
    report.notices_queued = report
        .promoted
        .iter()
        .chain(&report.demoted)
        .map(|c| c.notices)
        .sum();
    if dry_run {
        for change in report.promoted.iter_mut().chain(report.demoted.iter_mut()) {
            change.promotion_id = None;
        }
        tx.rollback().await.step("roll back a dry promotion run")?;
    } else {
        tx.commit().await.step("commit a promotion run")?;
    }
    tracing::info!(
        dry_run,
        promoted = report.promoted.len(),
        demoted = report.demoted.len(),
        held_back = report.held_back.len(),
        full_councils = report.full_councils,
        max_full_councils = report.max_full_councils,
        "promotion run finished"
    );
    Ok(report)
}
