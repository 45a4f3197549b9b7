//! A digest run: for every confirmed, non-suppressed subscriber, put together the week's
//! digest, record what it included and queue its delivery.
//!
//! Subscribers are read in pages by id, each council's week is read once per run and shared
//! (so one subscriber's cost depends only on the councils they follow), and the templates are
//! compiled once by the caller. Building the same week twice queues nothing twice: the digest
//! row is unique per subscriber and week, and the delivery's dedupe key is
//! `digest:{subscriber_id}:{week}`. A second run keeps the record the first one made.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::digest::DigestError;
use crate::digest::contents::{
    CONTENTS_VERSION, CouncilSection, DigestContents, DigestRecord, LimitedBlock, SectionRef,
};
use crate::digest::load::{CouncilWeek, Window, load_council_week};
use crate::domain::{EmailAddress, IsoWeek, SupportLevel};
use crate::mail::message::{MailContext, digest_message};
use crate::mail::templates::Renderer;
use crate::ranking::Standing;
use crate::settings::Settings;
use crate::store::councils::Council;
use crate::store::{StepContext, Store, StoreError};

/// Subscribers read per query.
const PAGE_SIZE: i64 = 500;

/// What a run does with the digests it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildMode {
    /// Record each digest and queue its delivery.
    Queue,
    /// Render each digest as an .eml file in `out` (or keep the first one in the report when
    /// `out` is `None`); nothing is recorded or queued.
    DryRun { out: Option<PathBuf> },
}

/// What a run did, for the log and the command's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// Confirmed, non-suppressed subscribers looked at.
    pub subscribers: u64,
    /// Digests recorded now (or rendered, on a dry run).
    pub built: u64,
    /// Deliveries queued now.
    pub queued: u64,
    /// Subscribers whose digest for the week had been built by an earlier run.
    pub already_built: u64,
    /// Subscribers left out because all their councils have limited support.
    pub all_limited: u64,
    /// Subscribers whose digest failed; the log has each cause.
    pub failed: u64,
    /// Councils whose week was read.
    pub councils_loaded: u64,
    /// Files written by a dry run.
    pub written: Vec<PathBuf>,
    /// The first message of a dry run without an output folder, as .eml text.
    pub preview: Option<String>,
}

/// What a run reads or writes once and shares between subscribers.
#[derive(Default)]
struct RunCache {
    /// Each fully supported council's week, by council id.
    weeks: HashMap<i64, CouncilWeek>,
    /// The `digest_sections` row of each council's shared part, once written.
    section_ids: HashMap<i64, i64>,
}

/// A subscriber due a digest: id, address and confirmed councils.
struct Recipient {
    id: i64,
    email: EmailAddress,
    council_ids: Vec<i64>,
}

/// Builds the digests of `week`, for every subscriber or only the one at `only`.
pub async fn build_week(
    store: &Store,
    settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    week: IsoWeek,
    only: Option<&EmailAddress>,
    mode: BuildMode,
) -> Result<BuildReport, DigestError> {
    build_week_with_progress(store, settings, renderer, ctx, week, only, mode, &|_, _| {}).await
}

/// How many subscribers a run will look at (for a progress bar).
pub async fn count_recipients(store: &Store) -> Result<u64, DigestError> {
    let row = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM subscribers s WHERE {DUE}"
    ))
    .fetch_one(store.pool())
    .await
    .step("count subscribers due a digest")?;
    let n: i64 = row.try_get("n").step("decode a count")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Subscribers due a digest: not suppressed, with an address, following a council.
const DUE: &str = "s.suppressed_at IS NULL AND s.email IS NOT NULL AND EXISTS (SELECT 1 FROM \
                   subscriptions x WHERE x.subscriber_id = s.id AND x.state = 'confirmed')";

/// [`build_week`], calling `progress(done, failed)` after each subscriber.
#[allow(clippy::too_many_arguments)]
pub async fn build_week_with_progress(
    store: &Store,
    settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    week: IsoWeek,
    only: Option<&EmailAddress>,
    mode: BuildMode,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BuildReport, DigestError> {
    let span = tracing::info_span!("digest_build", week = %week);
    let _entered = span.enter();
    let now = store.clock().now();
    let window = Window::new(
        week.monday(),
        settings.digest.days_back,
        settings.digest.days_ahead,
    );
    if let BuildMode::DryRun { out: Some(dir) } = &mode {
        std::fs::create_dir_all(dir).map_err(|source| DigestError::Write {
            path: dir.clone(),
            source,
        })?;
    }

    let standings: HashMap<i64, Standing> = crate::ranking::demand_ranking(store, settings)
        .await?
        .into_iter()
        .map(|s| (s.council.id, s))
        .collect();
    let run = Run {
        store,
        settings,
        renderer,
        ctx,
        week_text: week.to_string(),
        window,
        now,
        standings,
        mode,
    };
    let mut cache = RunCache::default();
    let mut report = BuildReport::default();

    let mut after = 0;
    loop {
        let page = match only {
            Some(email) => {
                let one = recipient_by_email(store, email).await?;
                after = i64::MAX;
                vec![one]
            }
            None => recipients_after(store, after).await?,
        };
        let Some(last) = page.last() else { break };
        after = after.max(last.id);

        run.build_page(&page, &mut cache, &mut report, progress)
            .await;
        if only.is_some() || (page.len() as i64) < PAGE_SIZE {
            break;
        }
    }
    report.councils_loaded = cache.weeks.len() as u64;
    tracing::info!(
        subscribers = report.subscribers,
        built = report.built,
        queued = report.queued,
        already_built = report.already_built,
        all_limited = report.all_limited,
        failed = report.failed,
        councils = report.councils_loaded,
        "digest run finished"
    );
    Ok(report)
}

/// What one run knows before its first subscriber.
struct Run<'a> {
    store: &'a Store,
    settings: &'a Settings,
    renderer: &'a Renderer,
    ctx: &'a MailContext,
    week_text: String,
    window: Window,
    now: DateTime<Utc>,
    standings: HashMap<i64, Standing>,
    mode: BuildMode,
}

/// A page's digests to record in its one write: (subscriber id, record as JSON).
type NewRecords = Vec<(i64, String)>;

impl Run<'_> {
    /// Builds one page of subscribers. In queue mode the page's history is read in two
    /// queries and its digests and deliveries are written in one transaction, so the cost of
    /// a subscriber is a share of a few statements rather than a round trip of its own.
    async fn build_page(
        &self,
        page: &[Recipient],
        cache: &mut RunCache,
        report: &mut BuildReport,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) {
        let history = match page_history(self.store, page, &self.week_text).await {
            Ok(history) => history,
            Err(err) => {
                self.page_failed(page.len(), &err, report, progress);
                return;
            }
        };

        let mut records: NewRecords = Vec::with_capacity(page.len());
        let mut recorded: Vec<(i64, i64)> = Vec::new();
        for recipient in page {
            report.subscribers += 1;
            let existing = history.this_week.get(&recipient.id).copied();
            match (existing, &self.mode) {
                (Some(digest_id), BuildMode::Queue) => recorded.push((recipient.id, digest_id)),
                _ => {
                    let since = history.previous.get(&recipient.id).copied();
                    match self.build_one(recipient, since, cache, report).await {
                        Ok(Some(json)) => records.push((recipient.id, json)),
                        Ok(None) => {}
                        Err(err) => {
                            report.failed += 1;
                            tracing::warn!(
                                subscriber = recipient.id,
                                error = %err,
                                "digest for a subscriber failed; the others go on"
                            );
                        }
                    }
                }
            }
            progress(report.subscribers, report.failed);
        }

        if self.mode != BuildMode::Queue {
            return;
        }
        let (new_count, earlier_count) = (records.len(), recorded.len());
        match record_and_queue(self.store, &self.week_text, records, recorded, self.now).await {
            Ok(written) => {
                report.built += written.built;
                report.already_built += written.already_built;
                report.queued += written.queued;
            }
            Err(err) => {
                // Nothing of the page was written; the next run builds it again.
                report.failed += (new_count + earlier_count) as u64;
                tracing::warn!(
                    subscribers = new_count + earlier_count,
                    error = %err,
                    "recording a page of digests failed; the other pages go on"
                );
                progress(report.subscribers, report.failed);
            }
        }
    }

    fn page_failed(
        &self,
        count: usize,
        err: &DigestError,
        report: &mut BuildReport,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) {
        report.subscribers += count as u64;
        report.failed += count as u64;
        tracing::warn!(
            subscribers = count,
            error = %err,
            "reading a page of digest history failed; the other pages go on"
        );
        progress(report.subscribers, report.failed);
    }

    /// Puts one subscriber's digest together. In queue mode returns its record as JSON, to be
    /// written with the page; a dry run renders it instead. `None` when all the subscriber's
    /// councils are limited and the settings send those no digest.
    async fn build_one(
        &self,
        recipient: &Recipient,
        since: Option<i64>,
        cache: &mut RunCache,
        report: &mut BuildReport,
    ) -> Result<Option<String>, DigestError> {
        let mut councils: Vec<Council> = Vec::with_capacity(recipient.council_ids.len());
        for id in &recipient.council_ids {
            match self.standings.get(id) {
                Some(standing) => councils.push(standing.council.clone()),
                None => councils.push(self.store.council_by_id(*id).await?),
            }
        }
        councils.sort_by(|a, b| a.name.cmp(&b.name));
        let any_full = councils.iter().any(|c| c.support == SupportLevel::Full);
        if !any_full && !self.settings.digest.send_when_all_limited {
            report.all_limited += 1;
            tracing::debug!(subscriber = recipient.id, "all councils limited: no digest");
            return Ok(None);
        }

        let mut contents = DigestContents {
            version: CONTENTS_VERSION,
            week: self.week_text.clone(),
            week_start: self.window.week_start,
            window_start: self.window.start,
            window_end: self.window.end,
            built_at: self.now.timestamp(),
            changes_since: since,
            councils: Vec::new(),
            limited: Vec::new(),
        };
        let mut references = Vec::new();
        for council in &councils {
            match council.support {
                SupportLevel::Full => {
                    let loaded = self.council_week(council, cache).await?;
                    match self.mode {
                        BuildMode::Queue => references.push(SectionRef {
                            section_id: self.section_id(council.id, cache).await?,
                            changes: cached_week(cache, council.id)?.changes_since(since),
                        }),
                        BuildMode::DryRun { .. } => {
                            contents.councils.push(loaded.section_since(since));
                        }
                    }
                }
                SupportLevel::Limited => {
                    let standing = self.standings.get(&council.id);
                    contents.limited.push(LimitedBlock {
                        council_id: council.id,
                        slug: council.slug.to_string(),
                        name: council.name.clone(),
                        position: standing.and_then(|s| s.position),
                        waiting: standing.map(|s| s.waiting).unwrap_or(0),
                        needed: standing.map(|s| s.needed).unwrap_or(0),
                    });
                }
            }
        }

        match &self.mode {
            BuildMode::Queue => {
                let mut record = DigestRecord::of(&contents, &[]);
                record.councils = references;
                let json = serde_json::to_string(&record).map_err(DigestError::Encode)?;
                Ok(Some(json))
            }
            BuildMode::DryRun { out } => {
                self.write_dry_run(recipient, &contents, out.as_deref(), report)?;
                Ok(None)
            }
        }
    }

    /// The council's week, read once per run.
    async fn council_week<'c>(
        &self,
        council: &Council,
        cache: &'c mut RunCache,
    ) -> Result<&'c CouncilWeek, DigestError> {
        Ok(match cache.weeks.entry(council.id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(
                load_council_week(
                    self.store,
                    council,
                    &self.window,
                    self.settings.digest.extract_chars,
                    self.now,
                )
                .await?,
            ),
        })
    }

    /// The `digest_sections` row of a loaded council's shared part, written once per run.
    async fn section_id(&self, council_id: i64, cache: &mut RunCache) -> Result<i64, DigestError> {
        if let Some(id) = cache.section_ids.get(&council_id) {
            return Ok(*id);
        }
        let section = cached_week(cache, council_id)?.section.clone();
        let id = store_section(self.store, &self.week_text, section, self.now).await?;
        cache.section_ids.insert(council_id, id);
        Ok(id)
    }

    fn write_dry_run(
        &self,
        recipient: &Recipient,
        contents: &DigestContents,
        out: Option<&std::path::Path>,
        report: &mut BuildReport,
    ) -> Result<(), DigestError> {
        let rendered = digest_message(
            self.ctx,
            self.renderer,
            &recipient.email,
            recipient.id,
            None,
            contents,
        )?;
        let eml = rendered.message.formatted();
        report.built += 1;
        match out {
            Some(dir) => {
                let path = dir.join(format!(
                    "digest-{}-subscriber-{}.eml",
                    self.week_text, recipient.id
                ));
                std::fs::write(&path, &eml).map_err(|source| DigestError::Write {
                    path: path.clone(),
                    source,
                })?;
                report.written.push(path);
            }
            None => {
                if report.preview.is_none() {
                    report.preview = Some(String::from_utf8_lossy(&eml).into_owned());
                }
            }
        }
        Ok(())
    }
}

fn cached_week(cache: &RunCache, council_id: i64) -> Result<&CouncilWeek, DigestError> {
    cache
        .weeks
        .get(&council_id)
        .ok_or_else(|| DigestError::Store(StoreError::NotFound(format!("council {council_id}"))))
}

/// What the page's subscribers already have: this week's digest (id) and the build time of
/// the latest digest before this week.
struct PageHistory {
    this_week: HashMap<i64, i64>,
    previous: HashMap<i64, i64>,
}

async fn page_history(
    store: &Store,
    page: &[Recipient],
    week: &str,
) -> Result<PageHistory, DigestError> {
    let mut history = PageHistory {
        this_week: HashMap::new(),
        previous: HashMap::new(),
    };
    let (Some(first), Some(last)) = (
        page.iter().map(|r| r.id).min(),
        page.iter().map(|r| r.id).max(),
    ) else {
        return Ok(history);
    };
    let rows = sqlx::query(
        "SELECT subscriber_id, id FROM digests WHERE week = $1 AND subscriber_id >= $2 \
         AND subscriber_id <= $3",
    )
    .bind(week)
    .bind(first)
    .bind(last)
    .fetch_all(store.pool())
    .await
    .step("look for this week's digests")?;
    for row in &rows {
        history.this_week.insert(
            row.try_get("subscriber_id").step("decode a digest")?,
            row.try_get("id").step("decode a digest")?,
        );
    }
    let rows = sqlx::query(
        "SELECT d.subscriber_id, d.built_at FROM digests d WHERE d.subscriber_id >= $1 \
         AND d.subscriber_id <= $2 AND d.week = (SELECT MAX(p.week) FROM digests p \
         WHERE p.subscriber_id = d.subscriber_id AND p.week < $3)",
    )
    .bind(first)
    .bind(last)
    .bind(week)
    .fetch_all(store.pool())
    .await
    .step("read the previous digests")?;
    for row in &rows {
        history.previous.insert(
            row.try_get("subscriber_id").step("decode a digest")?,
            row.try_get("built_at").step("read a digest time")?,
        );
    }
    Ok(history)
}

/// Rows per multi-row INSERT: well inside SQLite's and PostgreSQL's bind-parameter limits.
const ROWS_PER_INSERT: usize = 100;

/// What a page's write did.
struct PageWritten {
    built: u64,
    already_built: u64,
    queued: u64,
}

/// Records a page's new digests and queues the deliveries of those and of the page's digests
/// recorded earlier (`recorded`: subscriber and digest id), in one transaction. A digest
/// another run recorded meanwhile is kept, and counted as already built.
async fn record_and_queue(
    store: &Store,
    week: &str,
    records: NewRecords,
    mut recorded: Vec<(i64, i64)>,
    now: DateTime<Utc>,
) -> Result<PageWritten, DigestError> {
    let mut written = PageWritten {
        built: 0,
        already_built: recorded.len() as u64,
        queued: 0,
    };
    if records.is_empty() && recorded.is_empty() {
        return Ok(written);
    }
    let mut tx = store.begin_write().await?;
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|n| format!("(${}, $1, $2, ${})", 3 + 2 * n, 4 + 2 * n))
            .collect();
        let sql = format!(
            "INSERT INTO digests (subscriber_id, week, built_at, contents) VALUES {} \
             ON CONFLICT (subscriber_id, week) DO NOTHING RETURNING id, subscriber_id",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(week).bind(now.timestamp());
        for (subscriber_id, json) in chunk {
            query = query.bind(*subscriber_id).bind(json.as_str());
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .step("record a page of digests")?;
        let mut inserted: HashMap<i64, i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            inserted.insert(
                row.try_get("subscriber_id").step("read a digest id")?,
                row.try_get("id").step("read a digest id")?,
            );
        }
        written.built += inserted.len() as u64;
        let meanwhile: Vec<i64> = chunk
            .iter()
            .map(|(subscriber_id, _)| *subscriber_id)
            .filter(|id| !inserted.contains_key(id))
            .collect();
        recorded.extend(inserted);
        if !meanwhile.is_empty() {
            written.already_built += meanwhile.len() as u64;
            recorded.extend(digests_recorded_meanwhile(&mut tx, week, &meanwhile).await?);
        }
    }

    let payload = serde_json::json!({ "week": week }).to_string();
    for chunk in recorded.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|n| {
                let at = 3 + 3 * n;
                format!(
                    "(${at}, 'digest', ${}, ${}, $2, 'queued', 0, $1, $1)",
                    at + 1,
                    at + 2
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO deliveries (dedupe_key, kind, subscriber_id, digest_id, payload, state, \
             attempts, next_attempt_at, created_at) VALUES {} \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(now.timestamp())
            .bind(payload.as_str());
        for (subscriber_id, digest_id) in chunk {
            query = query
                .bind(format!("digest:{subscriber_id}:{week}"))
                .bind(*subscriber_id)
                .bind(*digest_id);
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .step("queue a page of digest deliveries")?;
        written.queued += rows.len() as u64;
    }
    tx.commit()
        .await
        .step("commit a page of digests and deliveries")?;
    Ok(written)
}

/// The ids of digests of `week` that another run recorded for `subscribers` meanwhile.
async fn digests_recorded_meanwhile(
    tx: &mut crate::store::WriteTx,
    week: &str,
    subscribers: &[i64],
) -> Result<Vec<(i64, i64)>, DigestError> {
    let placeholders: Vec<String> = (0..subscribers.len())
        .map(|n| format!("${}", n + 2))
        .collect();
    let sql = format!(
        "SELECT subscriber_id, id FROM digests WHERE week = $1 AND subscriber_id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(week);
    for id in subscribers {
        query = query.bind(*id);
    }
    let rows = query
        .fetch_all(&mut **tx)
        .await
        .step("read digests recorded meanwhile")?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("subscriber_id").step("read a digest id")?,
                row.try_get("id").step("read a digest id")?,
            ))
        })
        .collect()
}

/// Stores a council's shared part of the week's digests once (identical content is one row)
/// and returns its id.
async fn store_section(
    store: &Store,
    week: &str,
    section: CouncilSection,
    now: DateTime<Utc>,
) -> Result<i64, DigestError> {
    use sha2::Digest as _;
    let (shared, _) = section.into_parts();
    let json = serde_json::to_string(&shared).map_err(DigestError::Encode)?;
    let hash = hex::encode(sha2::Sha256::digest(json.as_bytes()));
    let mut tx = store.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO digest_sections (council_id, week, content_hash, contents, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (council_id, week, content_hash) DO NOTHING \
         RETURNING id",
    )
    .bind(shared.council_id)
    .bind(week)
    .bind(&hash)
    .bind(&json)
    .bind(now.timestamp())
    .fetch_optional(&mut *tx)
    .await
    .step("store a council's digest section")?;
    let id: i64 = match inserted {
        Some(row) => row.try_get("id").step("read a section id")?,
        None => sqlx::query(
            "SELECT id FROM digest_sections WHERE council_id = $1 AND week = $2 \
             AND content_hash = $3",
        )
        .bind(shared.council_id)
        .bind(week)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await
        .step("read a stored digest section")?
        .try_get("id")
        .step("read a section id")?,
    };
    tx.commit().await.step("commit a digest section")?;
    Ok(id)
}

/// The next page of subscribers due a digest, with their confirmed councils.
async fn recipients_after(store: &Store, after: i64) -> Result<Vec<Recipient>, DigestError> {
    let rows = sqlx::query(&format!(
        "SELECT s.id, s.email FROM subscribers s WHERE s.id > $1 AND {DUE} ORDER BY s.id LIMIT $2"
    ))
    .bind(after)
    .bind(PAGE_SIZE)
    .fetch_all(store.pool())
    .await
    .step("read a page of subscribers")?;
    let mut recipients = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").step("decode a subscriber")?;
        let email: String = row.try_get("email").step("decode a subscriber")?;
        match email.parse::<EmailAddress>() {
            Ok(email) => recipients.push(Recipient {
                id,
                email,
                council_ids: Vec::new(),
            }),
            Err(_) => tracing::warn!(subscriber = id, "stored address does not parse; skipped"),
        }
    }
    if let (Some(first), Some(last)) = (recipients.first(), recipients.last()) {
        let rows = sqlx::query(
            "SELECT subscriber_id, council_id FROM subscriptions WHERE state = 'confirmed' \
             AND subscriber_id >= $1 AND subscriber_id <= $2 ORDER BY subscriber_id, council_id",
        )
        .bind(first.id)
        .bind(last.id)
        .fetch_all(store.pool())
        .await
        .step("read a page of subscriptions")?;
        let mut by_subscriber: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in &rows {
            let subscriber: i64 = row.try_get("subscriber_id").step("decode a subscription")?;
            let council: i64 = row.try_get("council_id").step("decode a subscription")?;
            by_subscriber.entry(subscriber).or_default().push(council);
        }
        for recipient in &mut recipients {
            recipient.council_ids = by_subscriber.remove(&recipient.id).unwrap_or_default();
        }
    }
    Ok(recipients)
}

/// The one subscriber at `email`, when they are due a digest.
async fn recipient_by_email(store: &Store, email: &EmailAddress) -> Result<Recipient, DigestError> {
    let row = sqlx::query(&format!(
        "SELECT s.id FROM subscribers s WHERE s.email = $1 AND {DUE}"
    ))
    .bind(email.as_str())
    .fetch_optional(store.pool())
    .await
    .step("read a subscriber by address")?
    .ok_or(DigestError::NoSuchSubscriber)?;
    let id: i64 = row.try_get("id").step("decode a subscriber")?;
    let rows = sqlx::query(
        "SELECT council_id FROM subscriptions WHERE subscriber_id = $1 AND state = 'confirmed' \
         ORDER BY council_id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await
    .step("read a subscriber's councils")?;
    let council_ids = rows
        .iter()
        .map(|row| row.try_get("council_id"))
        .collect::<Result<Vec<i64>, _>>()
        .step("decode a subscription")?;
    Ok(Recipient {
        id,
        email: email.clone(),
        council_ids,
    })
}
