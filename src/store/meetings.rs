//! The meeting store: meetings with their agenda, documents and attendees, the changes seen to
//! them, and council notices from news feeds.
//!
//! Rows are keyed on the source's own identity (a ModernGov meeting id, an iCalendar UID plus
//! RECURRENCE-ID, a feed item id), never on title and date. Every write takes the poll's
//! transaction, so one source's poll is stored whole or not at all. A second poll of unchanged
//! data writes nothing: each meeting keeps a hash of what the source said about it.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::from_ts;
use crate::store::{StepContext, Store, StoreError, WriteTx, flag, int_flag};

/// One meeting as stored, with its detail (empty for councils with limited support).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meeting {
    pub id: i64,
    pub council_id: i64,
    pub committee_title: String,
    /// The display title, in the committee system's own form.
    pub title: String,
    pub local_date: NaiveDate,
    pub local_time: Option<NaiveTime>,
    /// IANA name of the zone `local_date` and `local_time` are in.
    pub timezone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub all_day: bool,
    /// As the source says it (`Confirmed`, `Cancelled`, ...).
    pub status: String,
    pub cancelled: bool,
    pub location: Option<String>,
    pub url: Option<String>,
    /// Set when the time could not be read; the meeting then keeps its date.
    pub parse_warning: Option<String>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub first_seen_at: DateTime<Utc>,
    pub agenda_items: Vec<AgendaItem>,
    pub documents: Vec<Document>,
    pub attendees: Vec<Attendee>,
}

impl Meeting {
    /// The start in the meeting's own zone (the stored UTC instant when the zone is unknown).
    pub fn local_start(&self) -> DateTime<chrono::FixedOffset> {
        match self.timezone.parse::<chrono_tz::Tz>() {
            Ok(zone) => self.starts_at.with_timezone(&zone).fixed_offset(),
            Err(_) => self.starts_at.fixed_offset(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgendaItem {
    /// The display number, such as `9.`.
    pub number: Option<String>,
    pub title: String,
    /// Sanitised agenda text, and its plain-text form.
    pub text_html: Option<String>,
    pub text_plain: Option<String>,
    pub minutes_html: Option<String>,
    pub minutes_plain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub title: String,
    pub url: String,
    pub first_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attendee {
    pub name: String,
    pub role: Option<String>,
    pub attendance: Option<String>,
    pub party: Option<String>,
}

/// What changed about a meeting, for the digest's "what changed" section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    New,
    Moved,
    Status,
    Location,
    Documents,
    Minutes,
    Withdrawn,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::New => "new",
            ChangeKind::Moved => "moved",
            ChangeKind::Status => "status",
            ChangeKind::Location => "location",
            ChangeKind::Documents => "documents",
            ChangeKind::Minutes => "minutes",
            ChangeKind::Withdrawn => "withdrawn",
        }
    }

    fn parse(raw: &str) -> Option<ChangeKind> {
        [
            ChangeKind::New,
            ChangeKind::Moved,
            ChangeKind::Status,
            ChangeKind::Location,
            ChangeKind::Documents,
            ChangeKind::Minutes,
            ChangeKind::Withdrawn,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }
}

/// One change seen to a meeting. For `Moved`, the values are RFC 3339 local start times; for
/// `Documents`, the new documents' titles, one a line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingChange {
    pub meeting_id: i64,
    pub seen_at: DateTime<Utc>,
    pub kind: ChangeKind,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// A council notice from a news or committee-system feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub id: i64,
    pub council_id: i64,
    pub title: String,
    pub link: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub summary_plain: Option<String>,
    pub summary_html: Option<String>,
}

/// A meeting as a source describes it, ready to be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewMeeting {
    /// The source's own identity for the meeting.
    pub external_id: String,
    /// The committee's identity in the source, when it has committees.
    pub committee_external_id: Option<String>,
    pub committee_title: String,
    pub title: String,
    pub local_date: NaiveDate,
    pub local_time: Option<NaiveTime>,
    pub timezone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub all_day: bool,
    pub status: String,
    pub location: Option<String>,
    pub url: Option<String>,
    pub parse_warning: Option<String>,
    /// Not part of the list hash: see [`DetailState`].
    #[serde(skip)]
    pub detail: DetailState,
}

/// What a poll knows of a meeting's detail.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub enum DetailState {
    /// Not asked for (limited support, or a source without detail): the stored detail stays.
    #[default]
    NotFetched,
    Fetched(NewMeetingDetail),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewMeetingDetail {
    pub agenda_items: Vec<NewAgendaItem>,
    pub documents: Vec<NewDocument>,
    pub attendees: Vec<NewAttendee>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAgendaItem {
    pub external_id: String,
    pub number: Option<String>,
    pub title: String,
    pub text_html: Option<String>,
    pub text_plain: Option<String>,
    pub minutes_html: Option<String>,
    pub minutes_plain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDocument {
    pub external_id: String,
    pub agenda_item_external_id: Option<String>,
    pub title: String,
    pub url: String,
    pub published_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAttendee {
    pub external_id: String,
    pub name: String,
    pub role: Option<String>,
    pub attendance: Option<String>,
    pub party: Option<String>,
}

/// A notice as a feed describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewNotice {
    pub external_id: String,
    pub title: String,
    pub link: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub summary_html: Option<String>,
    pub summary_plain: Option<String>,
}

/// A committee as the ModernGov web service lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewCommittee {
    pub external_id: String,
    pub title: String,
    pub category: Option<String>,
    pub expired: bool,
    pub deleted: bool,
}

/// What storing one meeting or notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    New,
    Changed,
    Unchanged,
}

const MEETING_COLUMNS: &str = "id, council_id, committee_title, title, local_date, local_time, \
                               timezone, starts_at, ends_at, all_day, status, location, url, \
                               parse_warning, withdrawn_at, first_seen_at";

fn invalid_column(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}

fn meeting_from_row(row: &AnyRow) -> Result<Meeting, sqlx::Error> {
    let local_date: String = row.try_get("local_date")?;
    let local_time: Option<String> = row.try_get("local_time")?;
    let status: String = row.try_get("status")?;
    Ok(Meeting {
        id: row.try_get("id")?,
        council_id: row.try_get("council_id")?,
        committee_title: row.try_get("committee_title")?,
        title: row.try_get("title")?,
        local_date: NaiveDate::parse_from_str(&local_date, "%Y-%m-%d")
            .map_err(|e| invalid_column("local_date", e.to_string()))?,
        local_time: local_time
            .map(|t| NaiveTime::parse_from_str(&t, "%H:%M:%S"))
            .transpose()
            .map_err(|e| invalid_column("local_time", e.to_string()))?,
        timezone: row.try_get("timezone")?,
        starts_at: from_ts(row.try_get("starts_at")?),
        ends_at: row.try_get::<Option<i64>, _>("ends_at")?.map(from_ts),
        all_day: flag(row.try_get("all_day")?),
        cancelled: is_cancelled_status(&status),
        status,
        location: row.try_get("location")?,
        url: row.try_get("url")?,
        parse_warning: row.try_get("parse_warning")?,
        withdrawn_at: row.try_get::<Option<i64>, _>("withdrawn_at")?.map(from_ts),
        first_seen_at: from_ts(row.try_get("first_seen_at")?),
        agenda_items: Vec::new(),
        documents: Vec::new(),
        attendees: Vec::new(),
    })
}

/// Whether a source's status word means the meeting will not take place.
pub fn is_cancelled_status(status: &str) -> bool {
    let lower = status.trim().to_ascii_lowercase();
    lower == "cancelled" || lower == "canceled"
}

impl Store {
    /// A council's meetings starting in `[from, to)`, by start time, cancelled and withdrawn
    /// ones included, each with its agenda items, documents and attendees.
    ///
    /// Detail is read with three small queries per meeting: fine for a council's weeks (tens
    /// of meetings), not meant for listing a whole year of every council at once.
    pub async fn meetings_between(
        &self,
        council_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Meeting>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MEETING_COLUMNS} FROM meetings \
             WHERE council_id = $1 AND starts_at >= $2 AND starts_at < $3 \
             ORDER BY starts_at, committee_title, id"
        ))
        .bind(council_id)
        .bind(from.timestamp())
        .bind(to.timestamp())
        .fetch_all(self.pool())
        .await
        .step("list meetings")?;
        let mut meetings = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut meeting = meeting_from_row(row).step("decode a meeting")?;
            self.load_meeting_detail(&mut meeting).await?;
            meetings.push(meeting);
        }
        Ok(meetings)
    }

    /// One meeting with its detail.
    pub async fn meeting(&self, id: i64) -> Result<Meeting, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .step("read a meeting")?
        .ok_or_else(|| StoreError::NotFound(format!("meeting {id}")))?;
        let mut meeting = meeting_from_row(&row).step("decode a meeting")?;
        self.load_meeting_detail(&mut meeting).await?;
        Ok(meeting)
    }

    async fn load_meeting_detail(&self, meeting: &mut Meeting) -> Result<(), StoreError> {
        let items = sqlx::query(
            "SELECT number, title, text_html, text_plain, minutes_html, minutes_plain \
             FROM agenda_items WHERE meeting_id = $1 ORDER BY position, id",
        )
        .bind(meeting.id)
        .fetch_all(self.pool())
        .await
        .step("read agenda items")?;
        for row in items {
            meeting.agenda_items.push(AgendaItem {
                number: row.try_get("number").step("decode an agenda item")?,
                title: row.try_get("title").step("decode an agenda item")?,
                text_html: row.try_get("text_html").step("decode an agenda item")?,
                text_plain: row.try_get("text_plain").step("decode an agenda item")?,
                minutes_html: row.try_get("minutes_html").step("decode an agenda item")?,
                minutes_plain: row.try_get("minutes_plain").step("decode an agenda item")?,
            });
        }
        let documents = sqlx::query(
            "SELECT title, url, first_seen_at FROM documents WHERE meeting_id = $1 ORDER BY id",
        )
        .bind(meeting.id)
        .fetch_all(self.pool())
        .await
        .step("read documents")?;
        for row in documents {
            meeting.documents.push(Document {
                title: row.try_get("title").step("decode a document")?,
                url: row.try_get("url").step("decode a document")?,
                first_seen_at: from_ts(row.try_get("first_seen_at").step("decode a document")?),
            });
        }
        let attendees = sqlx::query(
            "SELECT name, role, attendance, party FROM attendees WHERE meeting_id = $1 \
             ORDER BY id",
        )
        .bind(meeting.id)
        .fetch_all(self.pool())
        .await
        .step("read attendees")?;
        for row in attendees {
            meeting.attendees.push(Attendee {
                name: row.try_get("name").step("decode an attendee")?,
                role: row.try_get("role").step("decode an attendee")?,
                attendance: row.try_get("attendance").step("decode an attendee")?,
                party: row.try_get("party").step("decode an attendee")?,
            });
        }
        Ok(())
    }

    /// Changes seen at or after `since` to a council's meetings, oldest first.
    pub async fn meeting_changes_since(
        &self,
        council_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<MeetingChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT mc.meeting_id, mc.seen_at, mc.kind, mc.old_value, mc.new_value \
             FROM meeting_changes mc JOIN meetings m ON m.id = mc.meeting_id \
             WHERE m.council_id = $1 AND mc.seen_at >= $2 ORDER BY mc.seen_at, mc.id",
        )
        .bind(council_id)
        .bind(since.timestamp())
        .fetch_all(self.pool())
        .await
        .step("list meeting changes")?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get("kind").step("decode a meeting change")?;
            let kind = ChangeKind::parse(&kind).ok_or_else(|| StoreError::Database {
                step: "decode a meeting change",
                source: invalid_column("kind", format!("unknown change kind `{kind}`")),
            })?;
            out.push(MeetingChange {
                meeting_id: row.try_get("meeting_id").step("decode a meeting change")?,
                seen_at: from_ts(row.try_get("seen_at").step("decode a meeting change")?),
                kind,
                old_value: row.try_get("old_value").step("decode a meeting change")?,
                new_value: row.try_get("new_value").step("decode a meeting change")?,
            });
        }
        Ok(out)
    }

    /// A council's notices published in `[from, to)`, newest first; undated notices count
    /// as published when first seen.
    pub async fn notices_between(
        &self,
        council_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, council_id, title, link, published_at, summary_plain, summary_html \
             FROM notices WHERE council_id = $1 \
             AND COALESCE(published_at, first_seen_at) >= $2 \
             AND COALESCE(published_at, first_seen_at) < $3 \
             ORDER BY COALESCE(published_at, first_seen_at) DESC, id DESC",
        )
        .bind(council_id)
        .bind(from.timestamp())
        .bind(to.timestamp())
        .fetch_all(self.pool())
        .await
        .step("list notices")?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Notice {
                id: row.try_get("id").step("decode a notice")?,
                council_id: row.try_get("council_id").step("decode a notice")?,
                title: row.try_get("title").step("decode a notice")?,
                link: row.try_get("link").step("decode a notice")?,
                published_at: row
                    .try_get::<Option<i64>, _>("published_at")
                    .step("decode a notice")?
                    .map(from_ts),
                summary_plain: row.try_get("summary_plain").step("decode a notice")?,
                summary_html: row.try_get("summary_html").step("decode a notice")?,
            });
        }
        Ok(out)
    }

    /// How many rows the meeting tables hold, for tests and `poll` reports.
    pub async fn meeting_row_counts(&self) -> Result<BTreeMap<&'static str, i64>, StoreError> {
        let mut out = BTreeMap::new();
        for table in [
            "meetings",
            "agenda_items",
            "documents",
            "attendees",
            "meeting_changes",
            "notices",
            "committees",
        ] {
            let count: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(self.pool())
                .await
                .step("count rows")?
                .try_get("n")
                .step("decode a row count")?;
            out.insert(table, count);
        }
        Ok(out)
    }
}

fn sha256_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// The hash part for a meeting that never had detail stored.
const NO_DETAIL: &str = "-";

/// Stores a committee, writing only when something about it changed; returns its row id.
pub async fn upsert_committee(
    tx: &mut WriteTx,
    council_id: i64,
    source_id: i64,
    committee: &NewCommittee,
    now: i64,
) -> Result<i64, StoreError> {
    let existing = sqlx::query(
        "SELECT id, title, category, expired, deleted FROM committees \
         WHERE source_id = $1 AND external_id = $2",
    )
    .bind(source_id)
    .bind(&committee.external_id)
    .fetch_optional(&mut **tx)
    .await
    .step("read a committee")?;
    if let Some(row) = existing {
        let id: i64 = row.try_get("id").step("decode a committee")?;
        let title: String = row.try_get("title").step("decode a committee")?;
        let category: Option<String> = row.try_get("category").step("decode a committee")?;
        let expired = flag(row.try_get("expired").step("decode a committee")?);
        let deleted = flag(row.try_get("deleted").step("decode a committee")?);
        if title != committee.title
            || category != committee.category
            || expired != committee.expired
            || deleted != committee.deleted
        {
            sqlx::query(
                "UPDATE committees SET title = $1, category = $2, expired = $3, deleted = $4, \
                 updated_at = $5 WHERE id = $6",
            )
            .bind(&committee.title)
            .bind(committee.category.clone())
            .bind(int_flag(committee.expired))
            .bind(int_flag(committee.deleted))
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .step("update a committee")?;
        }
        return Ok(id);
    }
    sqlx::query(
        "INSERT INTO committees (council_id, source_id, external_id, title, category, expired, \
         deleted, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(council_id)
    .bind(source_id)
    .bind(&committee.external_id)
    .bind(&committee.title)
    .bind(committee.category.clone())
    .bind(int_flag(committee.expired))
    .bind(int_flag(committee.deleted))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .step("add a committee")?
    .try_get("id")
    .step("read a new committee's id")
}

impl Store {
    /// The stored committees of a source with their row ids: used when the committee list
    /// itself answered 304 Not Modified.
    pub async fn stored_committees(
        &self,
        source_id: i64,
    ) -> Result<Vec<(i64, NewCommittee)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, external_id, title, category, expired, deleted FROM committees \
             WHERE source_id = $1 ORDER BY id",
        )
        .bind(source_id)
        .fetch_all(self.pool())
        .await
        .step("read a source's committees")?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push((
                row.try_get("id").step("decode a committee")?,
                NewCommittee {
                    external_id: row.try_get("external_id").step("decode a committee")?,
                    title: row.try_get("title").step("decode a committee")?,
                    category: row.try_get("category").step("decode a committee")?,
                    expired: flag(row.try_get("expired").step("decode a committee")?),
                    deleted: flag(row.try_get("deleted").step("decode a committee")?),
                },
            ));
        }
        Ok(out)
    }
}

/// The RFC 3339 local form of a start, as recorded in `Moved` changes.
fn local_rfc3339(ts: i64, timezone: &str) -> String {
    let at = from_ts(ts);
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(zone) => at.with_timezone(&zone).to_rfc3339(),
        Err(_) => at.to_rfc3339(),
    }
}

async fn record_change(
    tx: &mut WriteTx,
    meeting_id: i64,
    now: i64,
    kind: ChangeKind,
    old_value: Option<String>,
    new_value: Option<String>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meeting_changes (meeting_id, seen_at, kind, old_value, new_value) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(meeting_id)
    .bind(now)
    .bind(kind.as_str())
    .bind(old_value)
    .bind(new_value)
    .execute(&mut **tx)
    .await
    .step("record a meeting change")?;
    Ok(())
}

/// Stores one meeting of a source: inserts it, updates what changed (recording the changes),
/// or, when the source says exactly what it said last time, writes nothing.
pub async fn upsert_meeting(
    tx: &mut WriteTx,
    council_id: i64,
    source_id: i64,
    committee_id: Option<i64>,
    meeting: &NewMeeting,
    now: i64,
) -> Result<(i64, Upserted), StoreError> {
    let list_hash = sha256_json(meeting);
    let existing = sqlx::query(
        "SELECT id, content_hash, starts_at, status, location, timezone, withdrawn_at \
         FROM meetings WHERE source_id = $1 AND external_id = $2",
    )
    .bind(source_id)
    .bind(&meeting.external_id)
    .fetch_optional(&mut **tx)
    .await
    .step("read a stored meeting")?;

    let Some(row) = existing else {
        let detail_hash = match &meeting.detail {
            DetailState::Fetched(detail) => sha256_json(detail),
            DetailState::NotFetched => NO_DETAIL.to_owned(),
        };
        let id: i64 = sqlx::query(
            "INSERT INTO meetings (council_id, source_id, committee_id, external_id, \
             committee_title, title, local_date, local_time, timezone, starts_at, ends_at, \
             all_day, status, location, url, parse_warning, detail_fetched_at, content_hash, \
             first_seen_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19, $19) RETURNING id",
        )
        .bind(council_id)
        .bind(source_id)
        .bind(committee_id)
        .bind(&meeting.external_id)
        .bind(&meeting.committee_title)
        .bind(&meeting.title)
        .bind(meeting.local_date.format("%Y-%m-%d").to_string())
        .bind(meeting.local_time.map(|t| t.format("%H:%M:%S").to_string()))
        .bind(&meeting.timezone)
        .bind(meeting.starts_at.timestamp())
        .bind(meeting.ends_at.map(|t| t.timestamp()))
        .bind(int_flag(meeting.all_day))
        .bind(&meeting.status)
        .bind(meeting.location.clone())
        .bind(meeting.url.clone())
        .bind(meeting.parse_warning.clone())
        .bind(matches!(meeting.detail, DetailState::Fetched(_)).then_some(now))
        .bind(format!("{list_hash}:{detail_hash}"))
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .step("add a meeting")?
        .try_get("id")
        .step("read a new meeting's id")?;
        if let DetailState::Fetched(detail) = &meeting.detail {
            replace_detail(tx, id, detail, now).await?;
        }
        record_change(tx, id, now, ChangeKind::New, None, None).await?;
        return Ok((id, Upserted::New));
    };

    let id: i64 = row.try_get("id").step("decode a stored meeting")?;
    let stored_hash: String = row
        .try_get("content_hash")
        .step("decode a stored meeting")?;
    let old_starts: i64 = row.try_get("starts_at").step("decode a stored meeting")?;
    let old_status: String = row.try_get("status").step("decode a stored meeting")?;
    let old_location: Option<String> = row.try_get("location").step("decode a stored meeting")?;
    let old_zone: String = row.try_get("timezone").step("decode a stored meeting")?;
    let withdrawn: Option<i64> = row
        .try_get("withdrawn_at")
        .step("decode a stored meeting")?;
    let (old_list_hash, old_detail_hash) = stored_hash
        .split_once(':')
        .unwrap_or((&stored_hash, NO_DETAIL));
    let new_detail_hash = match &meeting.detail {
        DetailState::Fetched(detail) => sha256_json(detail),
        _ => old_detail_hash.to_owned(),
    };
    let list_changed = old_list_hash != list_hash || withdrawn.is_some();
    let detail_changed = new_detail_hash != old_detail_hash;
    if !list_changed && !detail_changed {
        return Ok((id, Upserted::Unchanged));
    }

    if list_changed {
        let new_starts = meeting.starts_at.timestamp();
        if old_starts != new_starts {
            record_change(
                tx,
                id,
                now,
                ChangeKind::Moved,
                Some(local_rfc3339(old_starts, &old_zone)),
                Some(local_rfc3339(new_starts, &meeting.timezone)),
            )
            .await?;
        }
        if old_status != meeting.status {
            record_change(
                tx,
                id,
                now,
                ChangeKind::Status,
                Some(old_status),
                Some(meeting.status.clone()),
            )
            .await?;
        }
        // A list without locations (the ModernGov meeting list) does not clear a known one.
        let location_known =
            meeting.location.is_some() || matches!(meeting.detail, DetailState::Fetched(_));
        if location_known && old_location != meeting.location {
            record_change(
                tx,
                id,
                now,
                ChangeKind::Location,
                old_location.clone(),
                meeting.location.clone(),
            )
            .await?;
        }
        let location = if location_known {
            meeting.location.clone()
        } else {
            old_location
        };
        sqlx::query(
            "UPDATE meetings SET committee_id = COALESCE($1, committee_id), committee_title = $2, \
             title = $3, local_date = $4, local_time = $5, timezone = $6, starts_at = $7, \
             ends_at = $8, all_day = $9, status = $10, location = $11, url = $12, \
             parse_warning = $13, withdrawn_at = NULL, updated_at = $14 WHERE id = $15",
        )
        .bind(committee_id)
        .bind(&meeting.committee_title)
        .bind(&meeting.title)
        .bind(meeting.local_date.format("%Y-%m-%d").to_string())
        .bind(meeting.local_time.map(|t| t.format("%H:%M:%S").to_string()))
        .bind(&meeting.timezone)
        .bind(new_starts)
        .bind(meeting.ends_at.map(|t| t.timestamp()))
        .bind(int_flag(meeting.all_day))
        .bind(&meeting.status)
        .bind(location)
        .bind(meeting.url.clone())
        .bind(meeting.parse_warning.clone())
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .step("update a meeting")?;
    }

    if let (true, DetailState::Fetched(detail)) = (detail_changed, &meeting.detail) {
        let had_detail = old_detail_hash != NO_DETAIL;
        let (new_documents, minutes_added) = replace_detail(tx, id, detail, now).await?;
        if had_detail && !new_documents.is_empty() {
            record_change(
                tx,
                id,
                now,
                ChangeKind::Documents,
                None,
                Some(new_documents.join("\n")),
            )
            .await?;
        }
        if minutes_added {
            record_change(tx, id, now, ChangeKind::Minutes, None, None).await?;
        }
    }
    sqlx::query(
        "UPDATE meetings SET content_hash = $1, updated_at = $2, \
         detail_fetched_at = CASE WHEN $3 = 1 THEN $2 ELSE detail_fetched_at END WHERE id = $4",
    )
    .bind(format!("{list_hash}:{new_detail_hash}"))
    .bind(now)
    .bind(int_flag(matches!(meeting.detail, DetailState::Fetched(_))))
    .bind(id)
    .execute(&mut **tx)
    .await
    .step("save a meeting's hash")?;
    Ok((id, Upserted::Changed))
}

/// Makes a meeting's agenda items, documents and attendees those of `detail`. Documents keep
/// the time they were first seen. Returns the titles of documents not seen before and whether
/// minutes appeared for an item that had none.
async fn replace_detail(
    tx: &mut WriteTx,
    meeting_id: i64,
    detail: &NewMeetingDetail,
    now: i64,
) -> Result<(Vec<String>, bool), StoreError> {
    let old_items =
        sqlx::query("SELECT external_id, minutes_html FROM agenda_items WHERE meeting_id = $1")
            .bind(meeting_id)
            .fetch_all(&mut **tx)
            .await
            .step("read agenda items")?;
    let mut had_minutes = HashSet::new();
    for row in &old_items {
        let minutes: Option<String> = row.try_get("minutes_html").step("decode an agenda item")?;
        if minutes.is_some() {
            had_minutes.insert(
                row.try_get::<String, _>("external_id")
                    .step("decode an item")?,
            );
        }
    }
    let minutes_added = detail
        .agenda_items
        .iter()
        .any(|item| item.minutes_html.is_some() && !had_minutes.contains(&item.external_id));

    sqlx::query("DELETE FROM agenda_items WHERE meeting_id = $1")
        .bind(meeting_id)
        .execute(&mut **tx)
        .await
        .step("clear agenda items")?;
    for (position, item) in detail.agenda_items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO agenda_items (meeting_id, external_id, position, number, title, \
             text_html, text_plain, minutes_html, minutes_plain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (meeting_id, external_id) DO NOTHING",
        )
        .bind(meeting_id)
        .bind(&item.external_id)
        .bind(position as i64)
        .bind(item.number.clone())
        .bind(&item.title)
        .bind(item.text_html.clone())
        .bind(item.text_plain.clone())
        .bind(item.minutes_html.clone())
        .bind(item.minutes_plain.clone())
        .execute(&mut **tx)
        .await
        .step("add an agenda item")?;
    }

    let old_documents = sqlx::query("SELECT external_id FROM documents WHERE meeting_id = $1")
        .bind(meeting_id)
        .fetch_all(&mut **tx)
        .await
        .step("read documents")?;
    let mut known = HashSet::new();
    for row in &old_documents {
        known.insert(
            row.try_get::<String, _>("external_id")
                .step("decode a document")?,
        );
    }
    let wanted: HashSet<&str> = detail
        .documents
        .iter()
        .map(|d| d.external_id.as_str())
        .collect();
    for gone in known.iter().filter(|id| !wanted.contains(id.as_str())) {
        sqlx::query("DELETE FROM documents WHERE meeting_id = $1 AND external_id = $2")
            .bind(meeting_id)
            .bind(gone)
            .execute(&mut **tx)
            .await
            .step("remove a withdrawn document")?;
    }
    let mut new_titles = Vec::new();
    for document in &detail.documents {
        let published = document
            .published_on
            .map(|d| d.format("%Y-%m-%d").to_string());
        if known.contains(&document.external_id) {
            sqlx::query(
                "UPDATE documents SET title = $1, url = $2, agenda_item_external_id = $3, \
                 published_on = $4 WHERE meeting_id = $5 AND external_id = $6",
            )
            .bind(&document.title)
            .bind(&document.url)
            .bind(document.agenda_item_external_id.clone())
            .bind(published)
            .bind(meeting_id)
            .bind(&document.external_id)
            .execute(&mut **tx)
            .await
            .step("update a document")?;
        } else {
            let inserted = sqlx::query(
                "INSERT INTO documents (meeting_id, agenda_item_external_id, external_id, \
                 title, url, published_on, first_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (meeting_id, external_id) DO NOTHING",
            )
            .bind(meeting_id)
            .bind(document.agenda_item_external_id.clone())
            .bind(&document.external_id)
            .bind(&document.title)
            .bind(&document.url)
            .bind(published)
            .bind(now)
            .execute(&mut **tx)
            .await
            .step("add a document")?
            .rows_affected();
            if inserted == 1 {
                new_titles.push(document.title.clone());
            }
        }
    }

    sqlx::query("DELETE FROM attendees WHERE meeting_id = $1")
        .bind(meeting_id)
        .execute(&mut **tx)
        .await
        .step("clear attendees")?;
    for attendee in &detail.attendees {
        sqlx::query(
            "INSERT INTO attendees (meeting_id, external_id, name, role, attendance, party) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, external_id) DO NOTHING",
        )
        .bind(meeting_id)
        .bind(&attendee.external_id)
        .bind(&attendee.name)
        .bind(attendee.role.clone())
        .bind(attendee.attendance.clone())
        .bind(attendee.party.clone())
        .execute(&mut **tx)
        .await
        .step("add an attendee")?;
    }
    Ok((new_titles, minutes_added))
}

/// Marks withdrawn the source's meetings starting in `[from, to)` that this poll did not see,
/// leaving alone those of committees in `untouched` (whose lists answered 304). Nothing is
/// deleted. Returns how many were marked.
pub async fn withdraw_unseen_meetings(
    tx: &mut WriteTx,
    source_id: i64,
    seen: &HashSet<String>,
    untouched_committees: &HashSet<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: i64,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT id, external_id, committee_id FROM meetings WHERE source_id = $1 \
         AND withdrawn_at IS NULL AND starts_at >= $2 AND starts_at < $3",
    )
    .bind(source_id)
    .bind(from.timestamp())
    .bind(to.timestamp())
    .fetch_all(&mut **tx)
    .await
    .step("read meetings in the poll window")?;
    let mut withdrawn = 0;
    for row in rows {
        let id: i64 = row.try_get("id").step("decode a meeting")?;
        let external_id: String = row.try_get("external_id").step("decode a meeting")?;
        let committee: Option<i64> = row.try_get("committee_id").step("decode a meeting")?;
        if seen.contains(&external_id)
            || committee.is_some_and(|c| untouched_committees.contains(&c))
        {
            continue;
        }
        sqlx::query("UPDATE meetings SET withdrawn_at = $1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .step("mark a meeting withdrawn")?;
        record_change(tx, id, now, ChangeKind::Withdrawn, None, None).await?;
        withdrawn += 1;
    }
    Ok(withdrawn)
}

/// Stores one notice of a feed, writing only when the feed says something new about it.
pub async fn upsert_notice(
    tx: &mut WriteTx,
    council_id: i64,
    source_id: i64,
    notice: &NewNotice,
    now: i64,
) -> Result<Upserted, StoreError> {
    let existing = sqlx::query(
        "SELECT id, title, link, published_at, summary_html, summary_plain FROM notices \
         WHERE source_id = $1 AND external_id = $2",
    )
    .bind(source_id)
    .bind(&notice.external_id)
    .fetch_optional(&mut **tx)
    .await
    .step("read a stored notice")?;
    let published = notice.published_at.map(|t| t.timestamp());
    match existing {
        None => {
            sqlx::query(
                "INSERT INTO notices (council_id, source_id, external_id, title, link, \
                 published_at, summary_html, summary_plain, first_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(council_id)
            .bind(source_id)
            .bind(&notice.external_id)
            .bind(&notice.title)
            .bind(notice.link.clone())
            .bind(published)
            .bind(notice.summary_html.clone())
            .bind(notice.summary_plain.clone())
            .bind(now)
            .execute(&mut **tx)
            .await
            .step("add a notice")?;
            Ok(Upserted::New)
        }
        Some(row) => {
            let id: i64 = row.try_get("id").step("decode a notice")?;
            let same = row.try_get::<String, _>("title").step("decode a notice")? == notice.title
                && row
                    .try_get::<Option<String>, _>("link")
                    .step("decode a notice")?
                    == notice.link
                && row
                    .try_get::<Option<i64>, _>("published_at")
                    .step("decode a notice")?
                    == published
                && row
                    .try_get::<Option<String>, _>("summary_html")
                    .step("decode a notice")?
                    == notice.summary_html;
            if same {
                return Ok(Upserted::Unchanged);
            }
            sqlx::query(
                "UPDATE notices SET title = $1, link = $2, published_at = $3, \
                 summary_html = $4, summary_plain = $5 WHERE id = $6",
            )
            .bind(&notice.title)
            .bind(notice.link.clone())
            .bind(published)
            .bind(notice.summary_html.clone())
            .bind(notice.summary_plain.clone())
            .bind(id)
            .execute(&mut **tx)
            .await
            .step("update a notice")?;
            Ok(Upserted::Changed)
        }
    }
}
