//! One council's week, read from the store once per digest run and shared by every
//! subscriber who follows the council.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::digest::DigestError;
use crate::digest::contents::{
    Change, ChangeEntry, CouncilSection, DocumentEntry, ItemEntry, MeetingEntry, NoticeEntry,
};
use crate::domain::{SourceKind, UK_ZONE};
use crate::store::Store;
use crate::store::councils::Council;
use crate::store::meetings::{AgendaItem, ChangeKind, Meeting, MeetingChange};

/// How far back changes are read once per council; a subscriber whose previous digest is
/// older than this is told only of the changes of this period.
pub const CHANGES_LOOKBACK_DAYS: i64 = 35;

/// Changes listed per council at most (the meetings themselves still show every mark).
pub const MAX_CHANGE_LINES: usize = 12;

/// Feed notices listed per council at most, newest first.
pub const MAX_NOTICES: usize = 8;

/// The days a digest covers, in UK local dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub week_start: NaiveDate,
    pub start: NaiveDate,
    /// The day after the last day covered.
    pub end: NaiveDate,
}

impl Window {
    pub fn new(week_start: NaiveDate, days_back: u32, days_ahead: u32) -> Window {
        Window {
            week_start,
            start: week_start - Duration::days(i64::from(days_back)),
            end: week_start + Duration::days(i64::from(days_ahead)),
        }
    }

    pub fn start_utc(&self) -> DateTime<Utc> {
        uk_midnight(self.start)
    }

    pub fn end_utc(&self) -> DateTime<Utc> {
        uk_midnight(self.end)
    }
}

/// The instant a UK local day begins (midnight never falls in a clock change in the UK).
pub fn uk_midnight(date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_time(chrono::NaiveTime::MIN);
    UK_ZONE
        .from_local_datetime(&naive)
        .earliest()
        .map(|at| at.to_utc())
        .unwrap_or_else(|| naive.and_utc())
}

/// What a fully supported council contributes to every digest of the week.
#[derive(Debug, Clone)]
pub struct CouncilWeek {
    /// The section without changes; each subscriber gets the changes since their last digest.
    pub section: CouncilSection,
    /// Changes since the lookback, oldest first.
    pub changes: Vec<ChangeEntry>,
    /// When the council last changed support level (epoch seconds).
    pub support_changed_at: Option<i64>,
}

impl CouncilWeek {
    /// The section for a subscriber whose previous digest was built at `since`.
    pub fn section_since(&self, since: Option<i64>) -> CouncilSection {
        let mut section = self.section.clone();
        section.changes = self.changes_since(since);
        section
    }

    /// The changes a subscriber whose previous digest was built at `since` is told of.
    pub fn changes_since(&self, since: Option<i64>) -> Vec<ChangeEntry> {
        // Just promoted: its whole detail arrived at once, so "what changed" would list every
        // meeting; the subscriber has not had it in full before, so all of it is news anyway.
        let promoted_since = matches!(
            (self.support_changed_at, since),
            (Some(changed), Some(since)) if changed > since
        );
        match (since, promoted_since) {
            (Some(since), false) => collapse_changes(
                self.changes
                    .iter()
                    .filter(|change| change.seen_at > since)
                    .cloned()
                    .collect(),
            ),
            _ => self.section.changes.clone(),
        }
    }
}

/// Reads a fully supported council's meetings, changes, notices and source health.
pub async fn load_council_week(
    store: &Store,
    council: &Council,
    window: &Window,
    extract_chars: usize,
    now: DateTime<Utc>,
) -> Result<CouncilWeek, DigestError> {
    let meetings = store
        .meetings_between(council.id, window.start_utc(), window.end_utc())
        .await?;
    let changes = store
        .meeting_changes_since(council.id, now - Duration::days(CHANGES_LOOKBACK_DAYS))
        .await?;
    let notices = store
        .notices_between(council.id, window.start_utc(), window.end_utc())
        .await?;
    let sources = store.council_sources(council.id).await?;

    let source_failing_since = sources
        .iter()
        .filter(|source| source.kind != SourceKind::Feed)
        .filter_map(|source| source.failing_since)
        .min()
        .map(|at| at.timestamp());

    let mut known: HashMap<i64, (String, NaiveDate)> = meetings
        .iter()
        .map(|m| (m.id, (m.title.clone(), local_date_and_time(m).0)))
        .collect();
    let mut change_entries = Vec::with_capacity(changes.len());
    for change in changes.iter().filter(|c| c.seen_at <= now) {
        if !known.contains_key(&change.meeting_id) {
            let meeting = store.meeting(change.meeting_id).await?;
            known.insert(
                meeting.id,
                (meeting.title.clone(), local_date_and_time(&meeting).0),
            );
        }
        let Some((title, date)) = known.get(&change.meeting_id) else {
            continue;
        };
        // Changes to meetings already over before the window are no news to anyone.
        if *date < window.start {
            continue;
        }
        change_entries.push(ChangeEntry {
            meeting_id: change.meeting_id,
            meeting_title: title.clone(),
            local_date: *date,
            seen_at: change.seen_at.timestamp(),
            change: change_of(change),
        });
    }

    Ok(CouncilWeek {
        section: CouncilSection {
            council_id: council.id,
            slug: council.slug.to_string(),
            name: council.name.clone(),
            meetings: meetings
                .iter()
                .map(|m| meeting_entry(m, extract_chars))
                .collect(),
            changes: Vec::new(),
            source_failing_since,
            notices: notices
                .into_iter()
                .take(MAX_NOTICES)
                .map(|notice| NoticeEntry {
                    title: notice.title,
                    link: notice.link,
                    published_at: notice.published_at.map(|at| at.timestamp()),
                })
                .collect(),
        },
        changes: change_entries,
        support_changed_at: council.support_changed_at,
    })
}

fn change_of(change: &MeetingChange) -> Change {
    match change.kind {
        ChangeKind::New => Change::New,
        ChangeKind::Moved => Change::Moved {
            from: change.old_value.clone().unwrap_or_default(),
        },
        ChangeKind::Status
            if change
                .new_value
                .as_deref()
                .is_some_and(crate::store::meetings::is_cancelled_status) =>
        {
            Change::Cancelled
        }
        ChangeKind::Status => Change::Status {
            from: change.old_value.clone(),
            to: change.new_value.clone(),
        },
        ChangeKind::Location => Change::Location {
            from: change.old_value.clone(),
        },
        ChangeKind::Documents => Change::Documents,
        ChangeKind::Minutes => Change::Minutes,
        ChangeKind::Withdrawn => Change::Withdrawn,
    }
}

/// One line per meeting and kind of change: a meeting moved twice is "moved from" where it
/// first was; the list is capped at [`MAX_CHANGE_LINES`].
fn collapse_changes(changes: Vec<ChangeEntry>) -> Vec<ChangeEntry> {
    let mut out: Vec<ChangeEntry> = Vec::new();
    for change in changes {
        let same = |kept: &ChangeEntry| {
            kept.meeting_id == change.meeting_id
                && std::mem::discriminant(&kept.change) == std::mem::discriminant(&change.change)
        };
        match out.iter_mut().find(|kept| same(kept)) {
            Some(kept) => {
                if let (Change::Status { to, .. }, Change::Status { to: later, .. }) =
                    (&mut kept.change, &change.change)
                {
                    to.clone_from(later);
                }
                kept.seen_at = change.seen_at;
            }
            None => out.push(change),
        }
    }
    // A meeting new since the last digest needs no further marks.
    let new: Vec<i64> = out
        .iter()
        .filter(|c| c.change == Change::New)
        .map(|c| c.meeting_id)
        .collect();
    out.retain(|c| {
        c.change == Change::New
            || !new.contains(&c.meeting_id)
            || matches!(c.change, Change::Cancelled | Change::Withdrawn)
    });
    out.truncate(MAX_CHANGE_LINES);
    out
}

fn meeting_entry(meeting: &Meeting, extract_chars: usize) -> MeetingEntry {
    let (local_date, local_time) = local_date_and_time(meeting);
    MeetingEntry {
        meeting_id: meeting.id,
        title: meeting.title.clone(),
        committee: meeting.committee_title.clone(),
        local_date,
        local_time,
        starts_at: meeting.starts_at.timestamp(),
        status: meeting.status.clone(),
        cancelled: meeting.cancelled,
        withdrawn: meeting.withdrawn_at.is_some(),
        location: meeting.location.clone().filter(|l| !l.trim().is_empty()),
        url: meeting.url.clone(),
        items: meeting
            .agenda_items
            .iter()
            .map(|item| ItemEntry {
                number: item.number.clone().filter(|n| !n.trim().is_empty()),
                title: item.title.clone(),
                extract: item_extract(item, extract_chars),
            })
            .collect(),
        documents: meeting
            .documents
            .iter()
            .map(|doc| DocumentEntry {
                title: doc.title.clone(),
                url: doc.url.clone(),
            })
            .collect(),
    }
}

/// The day and time a meeting is printed with: its own local date and time, as its display
/// title and the council's website give them (for UK councils, UK time). An all-day meeting
/// has no time.
fn local_date_and_time(meeting: &Meeting) -> (NaiveDate, Option<chrono::NaiveTime>) {
    if meeting.all_day {
        (meeting.local_date, None)
    } else {
        (meeting.local_date, meeting.local_time)
    }
}

/// The minutes when published, else the agenda text, as plain text cut to `chars`.
fn item_extract(item: &AgendaItem, chars: usize) -> Option<String> {
    let plain = |plain: &Option<String>, html: &Option<String>| -> Option<String> {
        plain
            .clone()
            .or_else(|| {
                html.as_deref()
                    .and_then(|h| html2text::from_read(h.as_bytes(), 10_000).ok())
            })
            .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|text| !text.is_empty())
    };
    let text = plain(&item.minutes_plain, &item.minutes_html)
        .or_else(|| plain(&item.text_plain, &item.text_html))?;
    Some(shorten(&text, chars))
}

/// Cuts `text` to at most `chars` characters at a word boundary, marking the cut with `…`.
pub fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > cut.len() / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!(
        "{}…",
        at_word.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == ';')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(meeting_id: i64, seen_at: i64, change: Change) -> ChangeEntry {
        ChangeEntry {
            meeting_id,
            meeting_title: format!("Meeting {meeting_id}"),
            local_date: NaiveDate::from_ymd_opt(2026, 2, 10).unwrap(),
            seen_at,
            change,
        }
    }

    #[test]
    fn the_window_runs_from_days_back_to_days_ahead_in_uk_midnights() {
        let monday = NaiveDate::from_ymd_opt(2026, 3, 30).unwrap();
        let window = Window::new(monday, 7, 7);
        assert_eq!(window.start, NaiveDate::from_ymd_opt(2026, 3, 23).unwrap());
        assert_eq!(window.end, NaiveDate::from_ymd_opt(2026, 4, 6).unwrap());
        // 23 March is GMT; 6 April is BST, so its midnight is 23:00 UTC the day before.
        assert_eq!(window.start_utc().to_rfc3339(), "2026-03-23T00:00:00+00:00");
        assert_eq!(window.end_utc().to_rfc3339(), "2026-04-05T23:00:00+00:00");
    }

    #[test]
    fn long_text_is_cut_at_a_word_with_an_ellipsis() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(
            shorten("To approve the minutes of the meeting", 20),
            "To approve the…"
        );
        assert_eq!(shorten("abcdefghijklmnop", 8), "abcdefg…");
    }

    #[test]
    fn a_meeting_moved_twice_is_one_line_from_where_it_first_was() {
        let changes = vec![
            entry(
                1,
                10,
                Change::Moved {
                    from: "2026-02-10T10:00:00+00:00".into(),
                },
            ),
            entry(
                1,
                20,
                Change::Moved {
                    from: "2026-02-11T10:00:00+00:00".into(),
                },
            ),
        ];
        let collapsed = collapse_changes(changes);
        assert_eq!(collapsed.len(), 1);
        assert_eq!(
            collapsed[0].change,
            Change::Moved {
                from: "2026-02-10T10:00:00+00:00".into()
            }
        );
    }

    #[test]
    fn a_new_meeting_keeps_only_its_new_and_cancelled_marks() {
        let changes = vec![
            entry(1, 10, Change::New),
            entry(1, 20, Change::Documents),
            entry(1, 30, Change::Cancelled),
            entry(2, 30, Change::Documents),
        ];
        let kinds: Vec<(i64, Change)> = collapse_changes(changes)
            .into_iter()
            .map(|c| (c.meeting_id, c.change))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (1, Change::New),
                (1, Change::Cancelled),
                (2, Change::Documents)
            ]
        );
    }

    #[test]
    fn the_change_list_is_capped() {
        let changes = (0..30).map(|id| entry(id, 1, Change::New)).collect();
        assert_eq!(collapse_changes(changes).len(), MAX_CHANGE_LINES);
    }
}
