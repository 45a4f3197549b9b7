//! One poll of many sources into the meeting store.
//!
//! Each source is fetched and parsed completely first, with no transaction open; only then is
//! what it said stored, in one transaction with its HTTP validators and its health record. So a
//! half-read or malformed response stores nothing and leaves the earlier data as it was, and a
//! slow council never holds the database's write lock. Sources are polled concurrently (within
//! the fetcher's global and per-host limits), and one failing source never stops the others:
//! its failure is recorded against it, with exponential backoff (and jitter) before its next
//! try, capped at `fetch.backoff_max_seconds`; it is never given up on.
//!
//! ModernGov councils are read as `GetCommittees`, then `GetMeetings` for each live committee
//! over the poll window, then `GetMeeting` for each meeting only when the council has full
//! support (the cost boundary). Detail and, for full councils, the meeting lists are fetched
//! without validators: minutes and documents appear without the list changing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use tracing::Instrument;

use crate::domain::{CouncilSlug, SourceKind, SupportLevel, UK_ZONE};
use crate::settings::Settings;
use crate::sources::fetch::{Expect, FetchError, Fetched, Fetcher};
use crate::sources::{SourceError, feed, ical, moderngov};
use crate::store::meetings::{
    NewCommittee, NewMeeting, NewNotice, Upserted, upsert_committee, upsert_meeting, upsert_notice,
    withdraw_unseen_meetings,
};
use crate::store::sources::{
    HttpValidators, PollTarget, prune_http_validators, record_source_success, save_http_validators,
};
use crate::store::{Store, StoreError};

/// Which sources one poll covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollFilter {
    /// Only these councils; empty for all.
    pub councils: Vec<CouncilSlug>,
    /// Only councils at this support level.
    pub support: Option<SupportLevel>,
    /// Skip sources still waiting out a backoff or a Retry-After.
    pub due_only: bool,
}

/// How one source's poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollStatus {
    /// Fetched and stored (possibly with nothing new).
    Stored,
    /// The source answered 304: nothing to store.
    NotModified,
    Failed,
}

/// One source's outcome. Counts are of meetings and notices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceOutcome {
    pub source_id: i64,
    pub council: CouncilSlug,
    pub kind: SourceKind,
    pub url: String,
    pub status: PollStatus,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub withdrawn: u64,
    /// Items skipped or guessed at (an unreadable date, an unknown zone), one line each.
    pub warnings: Vec<String>,
    pub error: Option<String>,
    pub next_poll_at: Option<DateTime<Utc>>,
}

/// What one poll did, source by source (in council, kind and URL order).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollReport {
    pub sources: Vec<SourceOutcome>,
}

/// Totals over a poll's sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PollTotals {
    pub sources: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub withdrawn: u64,
    pub failed: u64,
}

impl PollReport {
    pub fn totals(&self) -> PollTotals {
        let mut totals = PollTotals::default();
        for source in &self.sources {
            totals.sources += 1;
            totals.new += source.new;
            totals.changed += source.changed;
            totals.unchanged += source.unchanged;
            totals.withdrawn += source.withdrawn;
            totals.failed += u64::from(source.status == PollStatus::Failed);
        }
        totals
    }
}

/// Polls the sources the filter selects, with a fetcher built for this run.
pub async fn poll_sources(
    store: &Store,
    settings: &Settings,
    filter: &PollFilter,
) -> Result<PollReport, SourceError> {
    let fetcher = Fetcher::new(&settings.fetch).map_err(SourceError::Client)?;
    poll_sources_with(store, settings, filter, &fetcher, |_| {}).await
}

/// Polls with a given fetcher (shared between runs by a long-lived caller), calling
/// `on_done` as each source finishes (a progress bar).
pub async fn poll_sources_with(
    store: &Store,
    settings: &Settings,
    filter: &PollFilter,
    fetcher: &Fetcher,
    on_done: impl Fn(&SourceOutcome),
) -> Result<PollReport, SourceError> {
    let now = store.clock().now();
    let targets: Vec<PollTarget> = store
        .poll_targets(&filter.councils, filter.support)
        .await?
        .into_iter()
        .filter(|t| !filter.due_only || is_due(t, now))
        .collect();
    poll_each(store, settings, targets, fetcher, on_done).await
}

/// Polls every active source never polled, or whose next poll time has come: after a success
/// that is its schedule's next firing, after a failure the end of its backoff. This is what a
/// daemon owes its sources when it starts, rather than leaving them until the first firing of
/// their schedule; a source polled recently, or waiting out a backoff, is left alone.
pub async fn poll_overdue_sources(
    store: &Store,
    settings: &Settings,
) -> Result<PollReport, SourceError> {
    let fetcher = Fetcher::new(&settings.fetch).map_err(SourceError::Client)?;
    let now = store.clock().now();
    let targets: Vec<PollTarget> = store
        .poll_targets(&[], None)
        .await?
        .into_iter()
        .filter(|t| t.next_poll_at.is_none_or(|at| at <= now))
        .collect();
    poll_each(store, settings, targets, &fetcher, |_| {}).await
}

async fn poll_each(
    store: &Store,
    settings: &Settings,
    targets: Vec<PollTarget>,
    fetcher: &Fetcher,
    on_done: impl Fn(&SourceOutcome),
) -> Result<PollReport, SourceError> {
    let mut outcomes: Vec<SourceOutcome> = futures::stream::iter(targets)
        .map(|target| poll_one(store, settings, fetcher, target))
        .buffer_unordered(settings.fetch.global_concurrency.max(1))
        .inspect(|outcome| on_done(outcome))
        .collect()
        .await;
    outcomes.sort_by(|a, b| {
        (a.council.as_str(), a.kind, &a.url).cmp(&(b.council.as_str(), b.kind, &b.url))
    });
    Ok(PollReport { sources: outcomes })
}

/// The active sources a poll with this filter would cover (for a progress bar's length).
pub async fn count_sources(store: &Store, filter: &PollFilter) -> Result<u64, StoreError> {
    let now = store.clock().now();
    Ok(store
        .poll_targets(&filter.councils, filter.support)
        .await?
        .iter()
        .filter(|t| !filter.due_only || is_due(t, now))
        .count() as u64)
}

/// A source is due unless it is failing and its next try is still ahead.
fn is_due(target: &PollTarget, now: DateTime<Utc>) -> bool {
    target.consecutive_failures == 0 || target.next_poll_at.is_none_or(|at| at <= now)
}

/// The wait before the next try after `failures` consecutive failures: base x 2^(failures-1)
/// scaled by a random factor in [0.5, 1] (so failing sources spread out), at least what the
/// server asked for, and never more than `max`.
pub fn backoff_delay(
    base: Duration,
    max: Duration,
    failures: i64,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    let jittered = full.mul_f64(jitter.clamp(0.5, 1.0));
    jittered.max(retry_after.unwrap_or(Duration::ZERO)).min(max)
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn poll_one(
    store: &Store,
    settings: &Settings,
    fetcher: &Fetcher,
    target: PollTarget,
) -> SourceOutcome {
    let span = tracing::info_span!(
        "source_fetch",
        council = %target.council_slug,
        host = %host_of(&target.url),
        kind = %target.kind,
        source_id = target.source_id,
    );
    async move {
        let mut outcome = SourceOutcome {
            source_id: target.source_id,
            council: target.council_slug.clone(),
            kind: target.kind,
            url: target.url.clone(),
            status: PollStatus::Stored,
            new: 0,
            changed: 0,
            unchanged: 0,
            withdrawn: 0,
            warnings: Vec::new(),
            error: None,
            next_poll_at: None,
        };
        let result = poll_and_store(store, settings, fetcher, &target, &mut outcome).await;
        for warning in &outcome.warnings {
            tracing::debug!(warning = %warning, "source item skipped or guessed at");
        }
        match result {
            Ok(()) if outcome.new + outcome.changed + outcome.withdrawn > 0 => {
                tracing::info!(
                    new = outcome.new,
                    changed = outcome.changed,
                    unchanged = outcome.unchanged,
                    withdrawn = outcome.withdrawn,
                    warnings = outcome.warnings.len(),
                    "source polled with changes"
                );
            }
            Ok(()) => {
                tracing::debug!(
                    unchanged = outcome.unchanged,
                    warnings = outcome.warnings.len(),
                    "source polled, nothing changed"
                );
            }
            Err(err) => record_failure(store, settings, &target, &mut outcome, &err).await,
        }
        outcome
    }
    .instrument(span)
    .await
}

async fn record_failure(
    store: &Store,
    settings: &Settings,
    target: &PollTarget,
    outcome: &mut SourceOutcome,
    err: &SourceError,
) {
    let failures = target.consecutive_failures + 1;
    let retry_after = match err {
        SourceError::Fetch(fetch) => fetch.retry_after(),
        _ => None,
    };
    let delay = backoff_delay(
        Duration::from_secs(settings.fetch.backoff_base_seconds),
        Duration::from_secs(settings.fetch.backoff_max_seconds),
        failures,
        retry_after,
        rand::thread_rng().gen_range(0.5..=1.0),
    );
    let next = store.clock().now_ts() + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 4);
    let message = err.to_string();
    // Nothing of this poll was stored; the earlier data stays as it was.
    tracing::warn!(
        error = %message,
        consecutive_failures = failures,
        retry_in_seconds = delay.as_secs(),
        "source poll failed"
    );
    if let Err(store_err) = store
        .record_source_failure(target.source_id, &message, next)
        .await
    {
        tracing::error!(error = %store_err, "cannot record a source's failure");
    }
    outcome.status = PollStatus::Failed;
    outcome.error = Some(message);
    outcome.new = 0;
    outcome.changed = 0;
    outcome.unchanged = 0;
    outcome.withdrawn = 0;
    outcome.next_poll_at = Some(crate::clock::from_ts(next));
}

/// The poll window in UK local dates, and as UTC instants `[from, to)`.
struct Window {
    first_day: chrono::NaiveDate,
    last_day: chrono::NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn poll_window(settings: &Settings, now: DateTime<Utc>) -> Window {
    let today = now.with_timezone(&UK_ZONE).date_naive();
    let first_day = today - chrono::Days::new(u64::from(settings.poll.window_days_back));
    let last_day = today + chrono::Days::new(u64::from(settings.poll.window_days_ahead));
    let midnight = |day: chrono::NaiveDate| {
        crate::sources::uktime::local_to_utc(&UK_ZONE, day.and_time(NaiveTime::MIN)).0
    };
    Window {
        first_day,
        last_day,
        from: midnight(first_day),
        to: midnight(last_day + chrono::Days::new(1)),
    }
}

/// What one source said, fetched and parsed in full, ready to store.
#[derive(Default)]
struct SourceData {
    /// Committees as freshly listed; `None` when the list answered 304.
    committees: Option<Vec<NewCommittee>>,
    /// (committee external id or none, meeting)
    meetings: Vec<NewMeeting>,
    notices: Vec<NewNotice>,
    /// Committees whose meeting list answered 304: their stored meetings stay as they are.
    untouched_committees: HashSet<String>,
    /// Whether meetings missing from the window are withdrawn (not for news feeds, which show
    /// only their latest items).
    withdraw_unseen: bool,
    /// Validators to save, by URL, for every URL fetched this poll.
    validators: Vec<(String, HttpValidators)>,
    not_modified: bool,
}

async fn poll_and_store(
    store: &Store,
    settings: &Settings,
    fetcher: &Fetcher,
    target: &PollTarget,
    outcome: &mut SourceOutcome,
) -> Result<(), SourceError> {
    let now = store.clock().now();
    let window = poll_window(settings, now);
    let saved = store.http_validators(target.source_id).await?;

    let data = match target.kind {
        SourceKind::ModernGov => {
            fetch_moderngov(store, fetcher, target, &window, &saved, outcome).await?
        }
        SourceKind::Ical => fetch_calendar(fetcher, target, &window, &saved, outcome).await?,
        SourceKind::Feed => fetch_feed(fetcher, target, &saved, outcome).await?,
    };
    if data.not_modified {
        outcome.status = PollStatus::NotModified;
    }

    let ts = now.timestamp();
    let schedule = match target.support {
        SupportLevel::Full => &settings.schedule.poll_full,
        SupportLevel::Limited => &settings.schedule.poll_limited,
    };
    let next_poll_at = schedule.next_after(now);
    outcome.next_poll_at = next_poll_at;

    // Read before the transaction: on SQLite a second connection wanted while holding the
    // write lock could wait on connections that are themselves waiting for that lock.
    let mut committee_ids: HashMap<String, i64> = HashMap::new();
    if data.committees.is_none() && target.kind == SourceKind::ModernGov {
        for (id, committee) in store.stored_committees(target.source_id).await? {
            committee_ids.insert(committee.external_id, id);
        }
    }

    let mut tx = store.begin_write().await?;
    for committee in data.committees.iter().flatten() {
        let id =
            upsert_committee(&mut tx, target.council_id, target.source_id, committee, ts).await?;
        committee_ids.insert(committee.external_id.clone(), id);
    }

    let mut seen = HashSet::new();
    for meeting in &data.meetings {
        let committee_id = meeting
            .committee_external_id
            .as_ref()
            .and_then(|c| committee_ids.get(c).copied());
        let (_, result) = upsert_meeting(
            &mut tx,
            target.council_id,
            target.source_id,
            committee_id,
            meeting,
            ts,
        )
        .await?;
        count(outcome, result);
        seen.insert(meeting.external_id.clone());
    }
    for notice in &data.notices {
        let result =
            upsert_notice(&mut tx, target.council_id, target.source_id, notice, ts).await?;
        count(outcome, result);
    }
    if data.withdraw_unseen && !data.not_modified {
        let untouched: HashSet<i64> = data
            .untouched_committees
            .iter()
            .filter_map(|c| committee_ids.get(c).copied())
            .collect();
        outcome.withdrawn = withdraw_unseen_meetings(
            &mut tx,
            target.source_id,
            &seen,
            &untouched,
            window.from,
            window.to,
            ts,
        )
        .await?;
    }

    let mut fetched_urls = Vec::new();
    for (url, validators) in &data.validators {
        save_http_validators(&mut tx, target.source_id, url, validators, ts).await?;
        fetched_urls.push(url.clone());
    }
    if !data.not_modified {
        prune_http_validators(&mut tx, target.source_id, &fetched_urls).await?;
    }
    record_source_success(
        &mut tx,
        target.source_id,
        ts,
        next_poll_at.map(|t| t.timestamp()),
    )
    .await?;
    tx.commit().await.map_err(|source| StoreError::Database {
        step: "commit a source's poll",
        source,
    })?;
    Ok(())
}

fn count(outcome: &mut SourceOutcome, result: Upserted) {
    match result {
        Upserted::New => outcome.new += 1,
        Upserted::Changed => outcome.changed += 1,
        Upserted::Unchanged => outcome.unchanged += 1,
    }
}

/// The body as text: a byte-order mark is honoured, otherwise UTF-8 (invalid bytes replaced).
fn body_text(bytes: &[u8]) -> String {
    match encoding_rs::Encoding::for_bom(bytes) {
        Some((encoding, bom)) => encoding
            .decode_without_bom_handling(&bytes[bom..])
            .0
            .into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

async fn fetch_calendar(
    fetcher: &Fetcher,
    target: &PollTarget,
    window: &Window,
    saved: &HashMap<String, HttpValidators>,
    outcome: &mut SourceOutcome,
) -> Result<SourceData, SourceError> {
    let mut data = SourceData {
        withdraw_unseen: true,
        ..SourceData::default()
    };
    match fetcher
        .fetch(&target.url, saved.get(&target.url), Expect::Calendar)
        .await?
    {
        Fetched::NotModified => {
            data.not_modified = true;
            if let Some(validators) = saved.get(&target.url) {
                data.validators
                    .push((target.url.clone(), validators.clone()));
            }
        }
        Fetched::Body { bytes, validators } => {
            let calendar = ical::parse_calendar(&body_text(&bytes), window.from, window.to)
                .map_err(|err| SourceError::Malformed {
                    url: target.url.clone(),
                    reason: err.to_string(),
                })?;
            outcome.warnings.extend(calendar.warnings);
            data.meetings = calendar.meetings;
            data.validators.push((target.url.clone(), validators));
        }
    }
    Ok(data)
}

async fn fetch_feed(
    fetcher: &Fetcher,
    target: &PollTarget,
    saved: &HashMap<String, HttpValidators>,
    outcome: &mut SourceOutcome,
) -> Result<SourceData, SourceError> {
    let mut data = SourceData::default();
    match fetcher
        .fetch(&target.url, saved.get(&target.url), Expect::Feed)
        .await?
    {
        Fetched::NotModified => {
            data.not_modified = true;
            if let Some(validators) = saved.get(&target.url) {
                data.validators
                    .push((target.url.clone(), validators.clone()));
            }
        }
        Fetched::Body { bytes, validators } => {
            let contents = feed::parse_feed(&bytes).map_err(|err| SourceError::Malformed {
                url: target.url.clone(),
                reason: err.to_string(),
            })?;
            outcome.warnings.extend(contents.warnings);
            data.meetings = contents.meetings;
            data.notices = contents.notices;
            data.validators.push((target.url.clone(), validators));
        }
    }
    Ok(data)
}

async fn fetch_moderngov(
    store: &Store,
    fetcher: &Fetcher,
    target: &PollTarget,
    window: &Window,
    saved: &HashMap<String, HttpValidators>,
    outcome: &mut SourceOutcome,
) -> Result<SourceData, SourceError> {
    let base = target
        .council_base_url
        .clone()
        .unwrap_or_else(|| target.url.clone());
    let base = base.trim_end_matches('/').to_owned();
    let full = target.support == SupportLevel::Full;
    let malformed = |url: &str, err: moderngov::MalformedXml| SourceError::Malformed {
        url: url.to_owned(),
        reason: err.to_string(),
    };
    let mut data = SourceData {
        withdraw_unseen: true,
        ..SourceData::default()
    };

    let committees_url = moderngov::committees_url(&base);
    let mut all_not_modified = true;
    let committees = match fetcher
        .fetch(&committees_url, saved.get(&committees_url), Expect::Xml)
        .await?
    {
        Fetched::NotModified => {
            if let Some(validators) = saved.get(&committees_url) {
                data.validators
                    .push((committees_url.clone(), validators.clone()));
            }
            store
                .stored_committees(target.source_id)
                .await?
                .into_iter()
                .map(|(_, c)| c)
                .collect()
        }
        Fetched::Body { bytes, validators } => {
            all_not_modified = false;
            let parsed = moderngov::parse_committees(&body_text(&bytes))
                .map_err(|err| malformed(&committees_url, err))?;
            data.validators.push((committees_url.clone(), validators));
            data.committees = Some(parsed.clone());
            parsed
        }
    };

    for committee in committees.iter().filter(|c| !c.expired && !c.deleted) {
        let list_url = moderngov::meetings_url(
            &base,
            &committee.external_id,
            window.first_day,
            window.last_day,
        );
        // Full councils need every meeting's detail, so their lists are always read whole.
        let conditional = if full { None } else { saved.get(&list_url) };
        let list = match fetcher.fetch(&list_url, conditional, Expect::Xml).await? {
            Fetched::NotModified => {
                data.untouched_committees
                    .insert(committee.external_id.clone());
                if let Some(validators) = saved.get(&list_url) {
                    data.validators.push((list_url.clone(), validators.clone()));
                }
                continue;
            }
            Fetched::Body { bytes, validators } => {
                all_not_modified = false;
                let list = moderngov::parse_meetings(&body_text(&bytes))
                    .map_err(|err| malformed(&list_url, err))?;
                if !full {
                    data.validators.push((list_url.clone(), validators));
                }
                list
            }
        };
        outcome.warnings.extend(
            list.warnings
                .iter()
                .map(|w| format!("{}: {w}", committee.title)),
        );

        // Details are fetched a few at a time (the fetcher's per-host limit still applies),
        // in list order; the first failure fails the source.
        let details: Vec<Option<moderngov::MeetingDetail>> = if full {
            // Owned URLs and a named `async fn`: a closure over borrowed meetings returning an
            // async block makes the poll's future not provably `Send` (rust-lang/rust#102211).
            let urls: Vec<String> = list
                .meetings
                .iter()
                .map(|listed| moderngov::meeting_url(&base, &listed.meeting_id))
                .collect();
            futures::stream::iter(urls)
                .map(|url| fetch_meeting_detail(fetcher, &base, url))
                .buffered(fetcher.per_host_limit())
                .collect::<Vec<Result<_, SourceError>>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?
        } else {
            vec![None; list.meetings.len()]
        };
        for (listed, detail) in list.meetings.iter().zip(details) {
            data.meetings.push(moderngov::build_meeting(
                &base,
                &committee.external_id,
                &committee.title,
                listed,
                detail,
            ));
        }
    }
    // Every answer was 304: the source said nothing new.
    data.not_modified = all_not_modified;
    Ok(data)
}

/// One meeting's detail from `GetMeeting`; `None` when the server answered 304.
async fn fetch_meeting_detail(
    fetcher: &Fetcher,
    base: &str,
    detail_url: String,
) -> Result<Option<moderngov::MeetingDetail>, SourceError> {
    match fetcher.fetch(&detail_url, None, Expect::Xml).await? {
        Fetched::Body { bytes, .. } => moderngov::parse_meeting_detail(&body_text(&bytes), base)
            .map(Some)
            .map_err(|err| SourceError::Malformed {
                url: detail_url,
                reason: err.to_string(),
            }),
        Fetched::NotModified => Ok(None),
    }
}

/// Makes a fetch error a source error (used by `?`).
impl From<FetchError> for SourceError {
    fn from(err: FetchError) -> SourceError {
        SourceError::Fetch(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let base = Duration::from_secs(300);
        let max = Duration::from_secs(86_400);
        let at = |failures, jitter| backoff_delay(base, max, failures, None, jitter).as_secs();
        assert_eq!(at(1, 1.0), 300);
        assert_eq!(at(2, 1.0), 600);
        assert_eq!(at(4, 1.0), 2_400);
        assert_eq!(at(4, 0.5), 1_200);
        assert_eq!(at(20, 1.0), 86_400);
        assert_eq!(at(1_000, 1.0), 86_400);
        // Jitter never pushes past the cap nor below half.
        assert_eq!(at(20, 0.1), 43_200);
    }

    #[test]
    fn retry_after_is_honoured_but_still_capped() {
        let base = Duration::from_secs(300);
        let max = Duration::from_secs(3_600);
        let wait = |retry| backoff_delay(base, max, 1, Some(Duration::from_secs(retry)), 1.0);
        assert_eq!(wait(1_200).as_secs(), 1_200);
        assert_eq!(wait(10).as_secs(), 300);
        assert_eq!(wait(100_000).as_secs(), 3_600);
    }

    #[test]
    fn the_poll_window_runs_from_uk_midnight_to_uk_midnight() {
        let mut settings = Settings::defaults();
        settings.poll.window_days_back = 1;
        settings.poll.window_days_ahead = 2;
        // 23:30 UTC on 30 June is already 1 July in the UK.
        let now: DateTime<Utc> = "2026-06-30T23:30:00Z".parse().unwrap();
        let window = poll_window(&settings, now);
        assert_eq!(window.first_day.to_string(), "2026-06-30");
        assert_eq!(window.last_day.to_string(), "2026-07-03");
        assert_eq!(window.from.to_rfc3339(), "2026-06-29T23:00:00+00:00");
        assert_eq!(window.to.to_rfc3339(), "2026-07-03T23:00:00+00:00");
    }
}
