//! What one digest included.
//!
//! [`DigestContents`] holds the facts as they stood when the digest was built (meetings, items,
//! documents, changes, notices, limited-support standings), which is enough to render the
//! e-mail again at send time, to show the web view, and to tell next week what is new. It holds
//! no rendered text, no links and no tokens: those are made at render time from the settings.
//!
//! It is stored in two parts. Each council's shared part ([`SharedSection`]: the same for every
//! subscriber that week) is a row of `digest_sections`, written once per run; the subscriber's
//! own record ([`DigestRecord`], in `digests.contents`) refers to those rows and adds what is
//! theirs alone: the changes since their previous digest and their limited councils.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

/// Bumped when the shape changes in a way older records cannot be read as.
pub const CONTENTS_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestContents {
    pub version: u32,
    /// The ISO week, e.g. `2026-W07`.
    pub week: String,
    /// Monday of the week (local date).
    pub week_start: NaiveDate,
    /// First local day in the window, and the day after the last.
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
    /// When the digest was built (epoch seconds).
    pub built_at: i64,
    /// Changes are those seen after this time (the previous digest's build); `None` for a
    /// subscriber's first digest, which marks nothing as changed.
    pub changes_since: Option<i64>,
    pub councils: Vec<CouncilSection>,
    pub limited: Vec<LimitedBlock>,
}

impl DigestContents {
    /// Meetings in the week itself (not the days before it), cancelled and withdrawn ones left
    /// out: the number the subject line reports.
    pub fn meetings_this_week(&self) -> usize {
        self.councils
            .iter()
            .flat_map(|c| &c.meetings)
            .filter(|m| m.local_date >= self.week_start && !m.cancelled && !m.withdrawn)
            .count()
    }
}

/// A fully supported council's part of the digest, as rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CouncilSection {
    pub council_id: i64,
    pub slug: String,
    pub name: String,
    /// Meetings in the window, in start order.
    pub meetings: Vec<MeetingEntry>,
    /// What changed since the previous digest, in the order seen.
    pub changes: Vec<ChangeEntry>,
    /// Set when the council's committee website has been failing.
    pub source_failing_since: Option<i64>,
    pub notices: Vec<NoticeEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingEntry {
    pub meeting_id: i64,
    pub title: String,
    pub committee: String,
    pub local_date: NaiveDate,
    /// `None` when the council gives no time or the meeting lasts all day.
    pub local_time: Option<NaiveTime>,
    pub starts_at: i64,
    /// The status as the council words it (`Confirmed`, `Cancelled`, ...).
    pub status: String,
    pub cancelled: bool,
    /// The council's website no longer lists it.
    pub withdrawn: bool,
    pub location: Option<String>,
    pub url: Option<String>,
    pub items: Vec<ItemEntry>,
    pub documents: Vec<DocumentEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEntry {
    pub number: Option<String>,
    pub title: String,
    /// A short plain-text extract of the minutes, or else of the agenda text.
    pub extract: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentEntry {
    pub title: String,
    pub url: String,
}

/// One change to a meeting, as the subscriber is told of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub meeting_id: i64,
    pub meeting_title: String,
    /// The meeting's local date now (it may have moved out of the window).
    pub local_date: NaiveDate,
    pub seen_at: i64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    New,
    /// `from` is the old local start time, RFC 3339.
    Moved {
        from: String,
    },
    Cancelled,
    Status {
        from: Option<String>,
        to: Option<String>,
    },
    Location {
        from: Option<String>,
    },
    Documents,
    Minutes,
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeEntry {
    pub title: String,
    pub link: Option<String>,
    pub published_at: Option<i64>,
}

/// A limited-support council's status block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitedBlock {
    pub council_id: i64,
    pub slug: String,
    pub name: String,
    /// Place in the queue of limited councils by demand, from 1; `None` when not ranked.
    pub position: Option<u32>,
    /// How many limited councils are waiting.
    pub waiting: u32,
    /// How many more subscribers it needs to be promoted.
    pub needed: u64,
}

/// The part of a [`CouncilSection`] that every subscriber of the council shares in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedSection {
    pub council_id: i64,
    pub slug: String,
    pub name: String,
    pub meetings: Vec<MeetingEntry>,
    pub source_failing_since: Option<i64>,
    pub notices: Vec<NoticeEntry>,
}

impl CouncilSection {
    pub fn from_parts(shared: SharedSection, changes: Vec<ChangeEntry>) -> CouncilSection {
        CouncilSection {
            council_id: shared.council_id,
            slug: shared.slug,
            name: shared.name,
            meetings: shared.meetings,
            changes,
            source_failing_since: shared.source_failing_since,
            notices: shared.notices,
        }
    }

    /// The shared part, and the subscriber's changes.
    pub fn into_parts(self) -> (SharedSection, Vec<ChangeEntry>) {
        (
            SharedSection {
                council_id: self.council_id,
                slug: self.slug,
                name: self.name,
                meetings: self.meetings,
                source_failing_since: self.source_failing_since,
                notices: self.notices,
            },
            self.changes,
        )
    }
}

/// One subscriber's record of a digest, as kept in `digests.contents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestRecord {
    pub version: u32,
    pub week: String,
    pub week_start: NaiveDate,
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
    pub built_at: i64,
    pub changes_since: Option<i64>,
    pub councils: Vec<SectionRef>,
    pub limited: Vec<LimitedBlock>,
}

/// A council's section of a digest: the shared row and the subscriber's changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRef {
    /// The `digest_sections` row.
    pub section_id: i64,
    pub changes: Vec<ChangeEntry>,
}

impl DigestRecord {
    /// The record of `contents`, whose councils' shared parts are the rows `section_ids` (in
    /// the same order).
    pub fn of(contents: &DigestContents, section_ids: &[i64]) -> DigestRecord {
        DigestRecord {
            version: contents.version,
            week: contents.week.clone(),
            week_start: contents.week_start,
            window_start: contents.window_start,
            window_end: contents.window_end,
            built_at: contents.built_at,
            changes_since: contents.changes_since,
            councils: contents
                .councils
                .iter()
                .zip(section_ids)
                .map(|(section, id)| SectionRef {
                    section_id: *id,
                    changes: section.changes.clone(),
                })
                .collect(),
            limited: contents.limited.clone(),
        }
    }

    /// The full contents again, given the shared sections in the record's order.
    pub fn into_contents(self, shared: Vec<SharedSection>) -> DigestContents {
        DigestContents {
            version: self.version,
            week: self.week,
            week_start: self.week_start,
            window_start: self.window_start,
            window_end: self.window_end,
            built_at: self.built_at,
            changes_since: self.changes_since,
            councils: self
                .councils
                .into_iter()
                .zip(shared)
                .map(|(reference, shared)| CouncilSection::from_parts(shared, reference.changes))
                .collect(),
            limited: self.limited,
        }
    }
}
