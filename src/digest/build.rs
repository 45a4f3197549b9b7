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
    CONTENTS_VERSION, CouncilSection, DigestContents, DigestRecord, LimitedBlock,
};
use crate::digest::load::{CouncilWeek, Window, load_council_week};
use crate::domain::{EmailAddress, IsoWeek, SupportLevel};
use crate::mail::message::{MailContext, digest_message};
use crate::mail::templates::Renderer;
use crate::ranking::Standing;
use crate::settings::Settings;
use crate::store::councils::Council;
use crate::store::deliveries::{Enqueued, NewDelivery, enqueue_delivery};
use crate::store::{StepContext, Store};

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

        for recipient in &page {
            report.subscribers += 1;
            let outcome = build_one(
                store,
                settings,
                renderer,
                ctx,
                week,
                &window,
                now,
                recipient,
                &standings,
                &mut cache,
                &mode,
                &mut report,
            )
            .await;
            match outcome {
                Ok(()) => {}
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(
                        subscriber = recipient.id,
                        error = %err,
                        "digest for a subscriber failed; the others go on"
                    );
                }
            }
            progress(report.subscribers, report.failed);
        }
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

#[allow(clippy::too_many_arguments)]
async fn build_one(
    store: &Store,
    settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    week: IsoWeek,
    window: &Window,
    now: DateTime<Utc>,
    recipient: &Recipient,
    standings: &HashMap<i64, Standing>,
    cache: &mut RunCache,
    mode: &BuildMode,
    report: &mut BuildReport,
) -> Result<(), DigestError> {
    let week_text = week.to_string();
    let existing = digest_id_for(store, recipient.id, &week_text).await?;
    if let (Some(digest_id), BuildMode::Queue) = (existing, mode) {
        report.already_built += 1;
        if queue_delivery(store, recipient.id, &week_text, digest_id, now).await? {
            report.queued += 1;
        }
        return Ok(());
    }

    let mut councils: Vec<Council> = Vec::with_capacity(recipient.council_ids.len());
    for id in &recipient.council_ids {
        match standings.get(id) {
            Some(standing) => councils.push(standing.council.clone()),
            None => councils.push(store.council_by_id(*id).await?),
        }
    }
    councils.sort_by(|a, b| a.name.cmp(&b.name));
    let any_full = councils.iter().any(|c| c.support == SupportLevel::Full);
    if !any_full && !settings.digest.send_when_all_limited {
        report.all_limited += 1;
        tracing::debug!(subscriber = recipient.id, "all councils limited: no digest");
        return Ok(());
    }

    let since = previous_build(store, recipient.id, &week_text).await?;
    let mut contents = DigestContents {
        version: CONTENTS_VERSION,
        week: week_text.clone(),
        week_start: window.week_start,
        window_start: window.start,
        window_end: window.end,
        built_at: now.timestamp(),
        changes_since: since,
        councils: Vec::new(),
        limited: Vec::new(),
    };
    for council in &councils {
        match council.support {
            SupportLevel::Full => {
                let loaded = match cache.weeks.entry(council.id) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert(
                        load_council_week(
                            store,
                            council,
                            window,
                            settings.digest.extract_chars,
                            now,
                        )
                        .await?,
                    ),
                };
                contents.councils.push(loaded.section_since(since));
            }
            SupportLevel::Limited => {
                let standing = standings.get(&council.id);
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

    match mode {
        BuildMode::Queue => {
            let mut section_ids = Vec::with_capacity(contents.councils.len());
            for section in &contents.councils {
                let id = match cache.section_ids.get(&section.council_id) {
                    Some(id) => *id,
                    None => {
                        let id = store_section(store, &week_text, section, now).await?;
                        cache.section_ids.insert(section.council_id, id);
                        id
                    }
                };
                section_ids.push(id);
            }
            let record = DigestRecord::of(&contents, &section_ids);
            let (digest_id, queued) = record_and_queue(store, recipient.id, &record, now).await?;
            report.built += 1;
            if queued {
                report.queued += 1;
            }
            tracing::debug!(
                subscriber = recipient.id,
                digest = digest_id,
                "digest recorded"
            );
        }
        BuildMode::DryRun { out } => {
            let rendered = digest_message(
                ctx,
                renderer,
                &recipient.email,
                recipient.id,
                None,
                &contents,
            )?;
            let eml = rendered.message.formatted();
            report.built += 1;
            match out {
                Some(dir) => {
                    let path = dir.join(format!(
                        "digest-{week_text}-subscriber-{}.eml",
                        recipient.id
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
        }
    }
    Ok(())
}

/// Records the digest and queues its delivery in one transaction; returns the digest's id and
/// whether a delivery was queued now.
async fn record_and_queue(
    store: &Store,
    subscriber_id: i64,
    contents: &DigestRecord,
    now: DateTime<Utc>,
) -> Result<(i64, bool), DigestError> {
    let json = serde_json::to_string(contents).map_err(DigestError::Encode)?;
    let mut tx = store.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO digests (subscriber_id, week, built_at, contents) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (subscriber_id, week) DO NOTHING RETURNING id",
    )
    .bind(subscriber_id)
    .bind(&contents.week)
    .bind(now.timestamp())
    .bind(json)
    .fetch_optional(&mut *tx)
    .await
    .step("record a digest")?;
    let digest_id: i64 = match inserted {
        Some(row) => row.try_get("id").step("read a digest id")?,
        None => sqlx::query("SELECT id FROM digests WHERE subscriber_id = $1 AND week = $2")
            .bind(subscriber_id)
            .bind(&contents.week)
            .fetch_one(&mut *tx)
            .await
            .step("read a digest recorded meanwhile")?
            .try_get("id")
            .step("read a digest id")?,
    };
    let enqueued = enqueue_delivery(
        &mut tx,
        &digest_delivery(subscriber_id, &contents.week, digest_id),
        now.timestamp(),
    )
    .await?;
    tx.commit().await.step("commit a digest and its delivery")?;
    Ok((digest_id, matches!(enqueued, Enqueued::Queued(_))))
}

/// Stores a council's shared part of the week's digests once (identical content is one row)
/// and returns its id.
async fn store_section(
    store: &Store,
    week: &str,
    section: &CouncilSection,
    now: DateTime<Utc>,
) -> Result<i64, DigestError> {
    use sha2::Digest as _;
    let (shared, _) = section.clone().into_parts();
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

/// Queues the delivery of an already recorded digest, if it is not queued yet.
async fn queue_delivery(
    store: &Store,
    subscriber_id: i64,
    week: &str,
    digest_id: i64,
    now: DateTime<Utc>,
) -> Result<bool, DigestError> {
    let mut tx = store.begin_write().await?;
    let enqueued = enqueue_delivery(
        &mut tx,
        &digest_delivery(subscriber_id, week, digest_id),
        now.timestamp(),
    )
    .await?;
    tx.commit().await.step("commit a digest delivery")?;
    Ok(matches!(enqueued, Enqueued::Queued(_)))
}

fn digest_delivery(subscriber_id: i64, week: &str, digest_id: i64) -> NewDelivery {
    NewDelivery {
        dedupe_key: format!("digest:{subscriber_id}:{week}"),
        kind: "digest".to_owned(),
        subscriber_id: Some(subscriber_id),
        digest_id: Some(digest_id),
        payload: serde_json::json!({ "week": week }),
    }
}

async fn digest_id_for(
    store: &Store,
    subscriber_id: i64,
    week: &str,
) -> Result<Option<i64>, DigestError> {
    let row = sqlx::query("SELECT id FROM digests WHERE subscriber_id = $1 AND week = $2")
        .bind(subscriber_id)
        .bind(week)
        .fetch_optional(store.pool())
        .await
        .step("look for this week's digest")?;
    Ok(match row {
        Some(row) => Some(row.try_get("id").step("read a digest id")?),
        None => None,
    })
}

/// When the subscriber's latest digest before `week` was built.
async fn previous_build(
    store: &Store,
    subscriber_id: i64,
    week: &str,
) -> Result<Option<i64>, DigestError> {
    let row = sqlx::query(
        "SELECT built_at FROM digests WHERE subscriber_id = $1 AND week < $2 \
         ORDER BY week DESC LIMIT 1",
    )
    .bind(subscriber_id)
    .bind(week)
    .fetch_optional(store.pool())
    .await
    .step("read the previous digest")?;
    Ok(match row {
        Some(row) => Some(row.try_get("built_at").step("read a digest time")?),
        None => None,
    })
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
