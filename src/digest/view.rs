//! The view model of a digest: a [`DigestContents`] record turned into the words, dates and
//! links the templates print. Pure: no store, no clock.
//!
//! Every value here is plain text. The HTML templates escape it; the text templates print it
//! as it is.

use chrono::{Datelike, NaiveDate, NaiveTime};
use serde::Serialize;

use crate::digest::contents::{
    Change, ChangeEntry, CouncilSection, DigestContents, LimitedBlock, MeetingEntry,
};
use crate::domain::UK_ZONE;

/// The links a digest carries, made at render time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLinks {
    pub unsubscribe_url: String,
    pub preferences_url: String,
    /// The digest's web page; `None` in the web page itself.
    pub web_view_url: Option<String>,
    /// `web.base_url` without a trailing slash.
    pub base_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestView {
    pub week: String,
    /// `9 February 2026`, the Monday.
    pub week_label: String,
    /// Council names for the subject: `A`, `A and B`, or `A, B and 2 more`.
    pub subject_councils: String,
    /// `1 meeting`, `no meetings`, `3 meetings (1 cancelled)`; `support status` when every
    /// council is limited.
    pub meeting_count_label: String,
    /// The window in words: `Monday 2 February to Sunday 15 February 2026`.
    pub window_label: String,
    pub councils: Vec<CouncilView>,
    pub limited: Vec<LimitedView>,
    pub links: DigestLinks,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CouncilView {
    pub name: String,
    pub health: Option<String>,
    pub changes: Vec<String>,
    pub has_meetings: bool,
    pub no_meetings: String,
    pub periods: Vec<PeriodView>,
    pub notices: Vec<NoticeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodView {
    pub heading: String,
    pub days: Vec<DayView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayView {
    pub label: String,
    pub meetings: Vec<MeetingView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingView {
    pub title: String,
    /// `10.00 am`, or `Time not given`.
    pub time: String,
    pub location: Option<String>,
    pub status: String,
    pub cancelled: bool,
    pub withdrawn: bool,
    /// What changed since the last digest, in words (`New`, `Moved from ...`).
    pub marks: Vec<String>,
    pub url: Option<String>,
    pub items: Vec<ItemView>,
    pub documents: Vec<DocumentView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemView {
    pub number: String,
    pub title: String,
    pub extract: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentView {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeView {
    pub title: String,
    pub link: Option<String>,
    pub date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitedView {
    pub name: String,
    /// `12th of 317 waiting`.
    pub position: String,
    /// `It needs 13 more subscribers to be fully supported.`
    pub needed: String,
    pub request_url: String,
}

/// Builds the view of one digest.
pub fn digest_view(contents: &DigestContents, links: DigestLinks) -> DigestView {
    let names: Vec<&str> = contents
        .councils
        .iter()
        .map(|c| c.name.as_str())
        .chain(contents.limited.iter().map(|c| c.name.as_str()))
        .collect();
    let last_day = contents
        .window_end
        .pred_opt()
        .unwrap_or(contents.window_end);
    DigestView {
        week: contents.week.clone(),
        week_label: format_date(contents.week_start),
        subject_councils: join_names(&names),
        meeting_count_label: meeting_count_label(contents),
        window_label: format!(
            "{} to {}",
            format_day_short(contents.window_start),
            format_day(last_day)
        ),
        councils: contents
            .councils
            .iter()
            .map(|section| council_view(section, contents))
            .collect(),
        limited: contents
            .limited
            .iter()
            .map(|block| limited_view(block, &links.base_url))
            .collect(),
        links,
    }
}

fn council_view(section: &CouncilSection, contents: &DigestContents) -> CouncilView {
    let mut coming: Vec<DayView> = Vec::new();
    let mut past: Vec<DayView> = Vec::new();
    for meeting in &section.meetings {
        let days = if meeting.local_date >= contents.week_start {
            &mut coming
        } else {
            &mut past
        };
        let label = format_day(meeting.local_date);
        let view = meeting_view(meeting, &section.changes);
        match days.last_mut() {
            Some(day) if day.label == label => day.meetings.push(view),
            _ => days.push(DayView {
                label,
                meetings: vec![view],
            }),
        }
    }
    let mut periods = Vec::new();
    if !coming.is_empty() {
        periods.push(PeriodView {
            heading: "Coming up".to_owned(),
            days: coming,
        });
    }
    if !past.is_empty() {
        periods.push(PeriodView {
            heading: "Recent meetings".to_owned(),
            days: past,
        });
    }
    let last_day = contents
        .window_end
        .pred_opt()
        .unwrap_or(contents.window_end);
    CouncilView {
        name: section.name.clone(),
        health: section.source_failing_since.map(|since| {
            format!(
                "We have not been able to reach {}'s committee website since {}, so what \
                 follows may be out of date.",
                section.name,
                format_instant_day(since)
            )
        }),
        changes: section.changes.iter().map(change_line).collect(),
        has_meetings: !periods.is_empty(),
        no_meetings: format!(
            "No meetings of {} are listed from {} to {}.",
            section.name,
            format_day_short(contents.window_start),
            format_day(last_day)
        ),
        periods,
        notices: section
            .notices
            .iter()
            .map(|notice| NoticeView {
                title: notice.title.clone(),
                link: notice.link.as_deref().and_then(web_link),
                date: notice.published_at.map(format_instant_day),
            })
            .collect(),
    }
}

fn meeting_view(meeting: &MeetingEntry, changes: &[ChangeEntry]) -> MeetingView {
    let mut marks: Vec<String> = Vec::new();
    for entry in changes
        .iter()
        .filter(|c| c.meeting_id == meeting.meeting_id)
    {
        let mark = change_mark(&entry.change);
        if !marks.contains(&mark) {
            marks.push(mark);
        }
    }
    MeetingView {
        title: meeting.title.clone(),
        time: meeting
            .local_time
            .map(format_time)
            .unwrap_or_else(|| "Time not given".to_owned()),
        location: meeting.location.clone(),
        status: if meeting.withdrawn {
            "No longer listed by the council".to_owned()
        } else if meeting.cancelled {
            "Cancelled".to_owned()
        } else {
            meeting.status.clone()
        },
        cancelled: meeting.cancelled,
        withdrawn: meeting.withdrawn,
        marks,
        url: meeting.url.as_deref().and_then(web_link),
        items: meeting
            .items
            .iter()
            .map(|item| ItemView {
                number: item.number.clone().unwrap_or_default(),
                title: item.title.clone(),
                extract: item.extract.clone(),
            })
            .collect(),
        documents: meeting
            .documents
            .iter()
            .filter_map(|doc| {
                Some(DocumentView {
                    title: doc.title.clone(),
                    url: web_link(&doc.url)?,
                })
            })
            .collect(),
    }
}

/// A link from a council's data, kept only when it is an http or https URL (never
/// `javascript:` or `data:`).
fn web_link(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| raw.trim().to_owned())
}

/// A change as a short mark beside its meeting.
fn change_mark(change: &Change) -> String {
    match change {
        Change::New => "New".to_owned(),
        Change::Moved { from } => match format_moved_from(from) {
            Some(when) => format!("Moved from {when}"),
            None => "Moved".to_owned(),
        },
        Change::Cancelled => "Cancelled since your last digest".to_owned(),
        Change::Status { from, to } => match (from, to) {
            (Some(from), Some(to)) => format!("Status changed from {from} to {to}"),
            (_, Some(to)) => format!("Status now {to}"),
            _ => "Status changed".to_owned(),
        },
        Change::Location { from: Some(from) } => format!("Venue changed from {from}"),
        Change::Location { from: None } => "Venue changed".to_owned(),
        Change::Documents => "New documents published".to_owned(),
        Change::Minutes => "Minutes published".to_owned(),
        Change::Withdrawn => "No longer listed by the council".to_owned(),
    }
}

/// A change as a line of the "since your last digest" list.
fn change_line(entry: &ChangeEntry) -> String {
    let mark = change_mark(&entry.change);
    let title = format!(
        "{}, {}",
        entry.meeting_title,
        format_day_short(entry.local_date)
    );
    match &entry.change {
        Change::New => format!("New meeting: {title}"),
        Change::Cancelled => format!("Cancelled: {title}"),
        Change::Withdrawn => format!("No longer listed by the council: {title}"),
        _ => format!("{title}: {}", lowercase_first(&mark)),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn limited_view(block: &LimitedBlock, base_url: &str) -> LimitedView {
    let position = match block.position {
        Some(place) => format!(
            "{} of {} waiting",
            crate::ranking::ordinal(place),
            block.waiting
        ),
        None => "not yet in the queue".to_owned(),
    };
    let needed = match block.needed {
        0 => "It has enough subscribers and will be fully supported when there is room.".to_owned(),
        1 => "It needs 1 more subscriber to be fully supported.".to_owned(),
        n => format!("It needs {n} more subscribers to be fully supported."),
    };
    LimitedView {
        name: block.name.clone(),
        position,
        needed,
        request_url: format!("{base_url}/councils/{}", block.slug),
    }
}

fn meeting_count_label(contents: &DigestContents) -> String {
    // Only limited councils: their meetings are not read, so there is nothing to count.
    if contents.councils.is_empty() {
        return "support status".to_owned();
    }
    let this_week: Vec<&MeetingEntry> = contents
        .councils
        .iter()
        .flat_map(|c| &c.meetings)
        .filter(|m| m.local_date >= contents.week_start)
        .collect();
    let held = contents.meetings_this_week();
    let called_off = this_week.len() - held;
    let count = match held {
        0 => "no meetings".to_owned(),
        1 => "1 meeting".to_owned(),
        n => format!("{n} meetings"),
    };
    match called_off {
        0 => count,
        n => format!("{count} ({n} cancelled)"),
    }
}

/// `A`, `A and B`, `A, B and C`, then `A, B and 3 more`.
fn join_names(names: &[&str]) -> String {
    match names {
        [] => "Your councils".to_owned(),
        [one] => (*one).to_owned(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b} and {c}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
    }
}

/// `Tuesday 10 February 2026`.
pub fn format_day(date: NaiveDate) -> String {
    format!("{} {}", date.format("%A"), format_date(date))
}

/// `Tuesday 10 February`.
pub fn format_day_short(date: NaiveDate) -> String {
    format!("{} {} {}", date.format("%A"), date.day(), date.format("%B"))
}

/// `10 February 2026`.
pub fn format_date(date: NaiveDate) -> String {
    format!("{} {}", date.day(), date.format("%B %Y"))
}

/// `10.00 am`, `2.30 pm`, `12.00 pm` (noon), `12.15 am`: the councils' own style.
pub fn format_time(time: NaiveTime) -> String {
    use chrono::Timelike;
    let (pm, hour) = time.hour12();
    format!(
        "{hour}.{:02} {}",
        time.minute(),
        if pm { "pm" } else { "am" }
    )
}

/// The UK local day of an instant (epoch seconds), as `Monday 2 February 2026`.
pub fn format_instant_day(ts: i64) -> String {
    format_day(
        crate::clock::from_ts(ts)
            .with_timezone(&UK_ZONE)
            .date_naive(),
    )
}

/// An RFC 3339 start time as `Tuesday 10 February, 10.00 am` in UK local time.
pub fn format_moved_from(rfc3339: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339.trim()).ok()?;
    let local = at.with_timezone(&UK_ZONE);
    Some(format!(
        "{}, {}",
        format_day_short(local.date_naive()),
        format_time(local.time())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn times_are_written_in_the_councils_twelve_hour_style() {
        let cases = [
            ((10, 0), "10.00 am"),
            ((14, 30), "2.30 pm"),
            ((12, 0), "12.00 pm"),
            ((0, 15), "12.15 am"),
            ((18, 5), "6.05 pm"),
        ];
        for ((h, m), want) in cases {
            assert_eq!(format_time(NaiveTime::from_hms_opt(h, m, 0).unwrap()), want);
        }
    }

    #[test]
    fn days_are_written_with_weekday_day_and_month() {
        assert_eq!(format_day(date(2026, 2, 10)), "Tuesday 10 February 2026");
        assert_eq!(format_day_short(date(2026, 1, 13)), "Tuesday 13 January");
    }

    #[test]
    fn a_moved_meeting_names_its_old_local_time_across_summer_time() {
        assert_eq!(
            format_moved_from("2026-02-10T10:00:00+00:00").as_deref(),
            Some("Tuesday 10 February, 10.00 am")
        );
        // 09:00 UTC in June is 10.00 am British Summer Time.
        assert_eq!(
            format_moved_from("2026-06-16T09:00:00Z").as_deref(),
            Some("Tuesday 16 June, 10.00 am")
        );
        assert_eq!(format_moved_from("not a time"), None);
    }

    #[test]
    fn only_web_links_from_council_data_are_kept() {
        assert_eq!(
            web_link(" https://e.gov.uk/a?b=1&c=2 ").as_deref(),
            Some("https://e.gov.uk/a?b=1&c=2")
        );
        assert_eq!(web_link("javascript:alert(1)"), None);
        assert_eq!(web_link("data:text/html,x"), None);
        assert_eq!(web_link("/relative"), None);
    }

    #[test]
    fn council_names_in_subjects_are_joined_and_then_counted() {
        assert_eq!(join_names(&["A"]), "A");
        assert_eq!(join_names(&["A", "B"]), "A and B");
        assert_eq!(join_names(&["A", "B", "C"]), "A, B and C");
        assert_eq!(join_names(&["A", "B", "C", "D", "E"]), "A, B and 3 more");
    }
}
