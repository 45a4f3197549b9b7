//! iCalendar feeds: VEVENTs into meetings.
//!
//! Times come in four kinds: with a `TZID` (IANA, or a Windows name; see `windows_zones`), in
//! UTC (`...Z`), floating (no zone: read in the calendar's `X-WR-TIMEZONE`, else UK time), and
//! all-day (`VALUE=DATE`, kept on its one day). Recurring series (`RRULE`) are expanded within
//! the poll window by wall-clock time, so a weekly 18:00 meeting stays at 18:00 across a clock
//! change; `EXDATE` removes occurrences, and an event with a `RECURRENCE-ID` replaces (moves or
//! cancels) the one occurrence it names. An override without its series (Google exports only
//! the changed instances sometimes) is a meeting of its own at its new time.
//!
//! A meeting's identity is its UID, plus the original start for an occurrence of a series, so
//! a moved occurrence updates the meeting it moved rather than adding one. One broken event is
//! skipped with a warning; it never fails the calendar.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use icalendar::parser::{Component, Property};

use crate::domain::UK_ZONE;
use crate::sources::uktime::{display_title, local_to_utc, parse_display_title};
use crate::sources::windows_zones::resolve_tzid;
use crate::store::meetings::{DetailState, NewMeeting};

/// A calendar that cannot be read at all (an error page, a truncated download).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedCalendar(pub String);

/// The meetings of one calendar within a window, and what was skipped or guessed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalendarMeetings {
    pub meetings: Vec<NewMeeting>,
    pub warnings: Vec<String>,
}

/// Occurrences of one series expanded at most (a daily series over a long window).
const MAX_OCCURRENCES: u16 = 1000;

/// A DTSTART, DTEND, EXDATE or RECURRENCE-ID value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IcalTime {
    Date(NaiveDate),
    Utc(NaiveDateTime),
    Zoned(NaiveDateTime, Tz),
    Floating(NaiveDateTime),
}

impl IcalTime {
    /// The wall-clock time in `zone` (an all-day date is its midnight).
    fn wall_clock(self, zone: Tz) -> NaiveDateTime {
        match self {
            IcalTime::Date(date) => date.and_time(NaiveTime::MIN),
            IcalTime::Utc(at) => at.and_utc().with_timezone(&zone).naive_local(),
            IcalTime::Zoned(at, own) => local_to_utc(&own, at).0.with_timezone(&zone).naive_local(),
            IcalTime::Floating(at) => at,
        }
    }

    /// The zone this time is written in, when it has one.
    fn zone(self) -> Option<Tz> {
        match self {
            IcalTime::Zoned(_, zone) => Some(zone),
            IcalTime::Utc(_) => Some(Tz::UTC),
            _ => None,
        }
    }
}

fn prop<'a>(event: &'a Component<'a>, name: &str) -> Option<&'a Property<'a>> {
    event.find_prop(name)
}

fn param<'a>(property: &'a Property<'a>, key: &str) -> Option<&'a str> {
    property
        .params
        .iter()
        .find(|p| p.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|p| p.val.as_ref().map(|v| v.as_str()))
}

fn text_value(event: &Component<'_>, name: &str) -> Option<String> {
    let value = prop(event, name)?.val.clone().unescape_text();
    let trimmed = value.as_str().trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Reads one date or date-time value, with the zone its `TZID` parameter names.
fn parse_time(
    raw: &str,
    tzid: Option<&str>,
    date_only: bool,
    warnings: &mut Vec<String>,
) -> Option<IcalTime> {
    let raw = raw.trim();
    if date_only || (raw.len() == 8 && !raw.contains('T')) {
        return NaiveDate::parse_from_str(raw, "%Y%m%d")
            .ok()
            .map(IcalTime::Date);
    }
    if let Some(utc) = raw.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .ok()
            .map(IcalTime::Utc);
    }
    let local = NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S").ok()?;
    match tzid {
        Some(name) => match resolve_tzid(name) {
            Some(zone) => Some(IcalTime::Zoned(local, zone)),
            None => {
                warnings.push(format!(
                    "unknown time zone `{name}`; read as the calendar's default zone"
                ));
                Some(IcalTime::Floating(local))
            }
        },
        None => Some(IcalTime::Floating(local)),
    }
}

fn property_time(
    event: &Component<'_>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<IcalTime> {
    let property = prop(event, name)?;
    let date_only = param(property, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    parse_time(
        property.val.as_str(),
        param(property, "TZID"),
        date_only,
        warnings,
    )
}

/// Every value of every `EXDATE` line (each may hold a comma-separated list).
fn exdates(event: &Component<'_>, warnings: &mut Vec<String>) -> Vec<IcalTime> {
    let mut out = Vec::new();
    for property in event.properties.iter().filter(|p| p.name == "EXDATE") {
        let date_only = param(property, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
        for raw in property.val.as_str().split(',') {
            if let Some(at) = parse_time(raw, param(property, "TZID"), date_only, warnings) {
                out.push(at);
            }
        }
    }
    out
}

/// The identity suffix of an occurrence: its original start in UTC.
fn occurrence_key(start: DateTime<Utc>) -> String {
    start.format("%Y%m%dT%H%M%SZ").to_string()
}

/// One VEVENT, read once.
struct Event<'a> {
    component: &'a Component<'a>,
    uid: String,
    start: IcalTime,
    end: Option<IcalTime>,
    duration: Option<Duration>,
    recurrence_id: Option<IcalTime>,
}

/// Reads a calendar and returns its meetings starting in `[from, to)`.
pub fn parse_calendar(
    body: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<CalendarMeetings, MalformedCalendar> {
    let body = body.trim_start_matches('\u{feff}');
    if !body.trim_start().starts_with("BEGIN:VCALENDAR") {
        let start: String = body.trim_start().chars().take(40).collect();
        return Err(MalformedCalendar(format!(
            "not an iCalendar file (it starts `{start}`)"
        )));
    }
    if !body.trim_end().ends_with("END:VCALENDAR") {
        return Err(MalformedCalendar(
            "the calendar is cut short (no END:VCALENDAR)".to_owned(),
        ));
    }
    let normalised = body.replace("\r\n", "\n");
    let unfolded = icalendar::parser::unfold(&normalised);
    let calendar = icalendar::parser::read_calendar(&unfolded)
        .map_err(|err| MalformedCalendar(format!("the calendar cannot be parsed: {err}")))?;

    let default_zone = calendar
        .properties
        .iter()
        .find(|p| p.name == "X-WR-TIMEZONE")
        .and_then(|p| resolve_tzid(p.val.as_str()))
        .unwrap_or(UK_ZONE);

    let mut out = CalendarMeetings::default();
    let mut events = Vec::new();
    for component in calendar.components.iter().filter(|c| c.name == "VEVENT") {
        let mut warnings = Vec::new();
        let summary = text_value(component, "SUMMARY");
        let Some(start) = property_time(component, "DTSTART", &mut warnings) else {
            out.warnings.push(format!(
                "event `{}`: no readable DTSTART; skipped",
                summary.as_deref().unwrap_or("(untitled)")
            ));
            continue;
        };
        let uid = text_value(component, "UID").unwrap_or_else(|| {
            warnings.push("no UID; identified by its summary and start".to_owned());
            format!(
                "{}@{}",
                summary.as_deref().unwrap_or(""),
                start.wall_clock(default_zone)
            )
        });
        let end = property_time(component, "DTEND", &mut warnings);
        let duration = text_value(component, "DURATION").and_then(|d| parse_duration(&d));
        let recurrence_id = property_time(component, "RECURRENCE-ID", &mut warnings);
        out.warnings
            .extend(warnings.into_iter().map(|w| format!("event {uid}: {w}")));
        events.push(Event {
            component,
            uid,
            start,
            end,
            duration,
            recurrence_id,
        });
    }

    // Overrides by UID and the original start they replace.
    let mut overridden: HashMap<&str, HashSet<DateTime<Utc>>> = HashMap::new();
    for event in &events {
        if let Some(original) = event.recurrence_id {
            let zone = event.start.zone().unwrap_or(default_zone);
            let at = instant(original, zone);
            overridden.entry(event.uid.as_str()).or_default().insert(at);
        }
    }

    let mut seen = HashSet::new();
    for event in &events {
        let zone = event.start.zone().unwrap_or(default_zone);
        let zone = if zone == Tz::UTC { default_zone } else { zone };
        let rrule = text_value(event.component, "RRULE");
        let mut starts: Vec<(IcalTime, String)> = Vec::new();

        match (&event.recurrence_id, &rrule) {
            (Some(original), _) => {
                let key = occurrence_key(instant(*original, zone));
                starts.push((event.start, format!("{}/{key}", event.uid)));
            }
            (None, Some(rule)) => {
                let mut warnings = Vec::new();
                let excluded = exdates(event.component, &mut warnings);
                match expand_series(event.start, zone, rule, &excluded, from, to) {
                    Ok(occurrences) => {
                        let moved = overridden.get(event.uid.as_str());
                        for occurrence in occurrences {
                            let at = instant(occurrence, zone);
                            if moved.is_some_and(|m| m.contains(&at)) {
                                continue;
                            }
                            starts.push((
                                occurrence,
                                format!("{}/{}", event.uid, occurrence_key(at)),
                            ));
                        }
                    }
                    Err(err) => warnings.push(format!("RRULE `{rule}` cannot be expanded: {err}")),
                }
                out.warnings.extend(
                    warnings
                        .into_iter()
                        .map(|w| format!("event {}: {w}", event.uid)),
                );
            }
            (None, None) => starts.push((event.start, event.uid.clone())),
        }

        for (start, external_id) in starts {
            let meeting = build_meeting(event, start, external_id, zone);
            if meeting.starts_at < from || meeting.starts_at >= to {
                continue;
            }
            if !seen.insert(meeting.external_id.clone()) {
                out.warnings.push(format!(
                    "event {}: the same event appears twice; the second was skipped",
                    meeting.external_id
                ));
                continue;
            }
            out.meetings.push(meeting);
        }
    }
    out.meetings.sort_by_key(|m| m.starts_at);
    Ok(out)
}

/// The UTC instant of a value; floating and all-day values are read in `zone`.
fn instant(at: IcalTime, zone: Tz) -> DateTime<Utc> {
    match at {
        IcalTime::Utc(utc) => utc.and_utc(),
        IcalTime::Zoned(local, own) => local_to_utc(&own, local).0,
        IcalTime::Floating(local) => local_to_utc(&zone, local).0,
        IcalTime::Date(date) => local_to_utc(&zone, date.and_time(NaiveTime::MIN)).0,
    }
}

/// A meeting from one occurrence (or a single event) starting at `start`.
fn build_meeting(event: &Event<'_>, start: IcalTime, external_id: String, zone: Tz) -> NewMeeting {
    let summary = text_value(event.component, "SUMMARY").unwrap_or_else(|| "Meeting".to_owned());
    let all_day = matches!(start, IcalTime::Date(_));
    let wall = start.wall_clock(zone);
    let (starts_at, gap_warning) = match start {
        IcalTime::Utc(utc) => (utc.and_utc(), None),
        _ => local_to_utc(&zone, wall),
    };
    let length = match (event.end, event.duration) {
        (Some(end), _) => Some(instant(end, zone) - instant(event.start, zone)),
        (None, Some(duration)) => Some(duration),
        (None, None) if all_day => Some(Duration::days(1)),
        (None, None) => None,
    };
    let ends_at = length.filter(|l| *l > Duration::zero()).map(|length| {
        if all_day {
            let days = length.num_days().max(1);
            local_to_utc(&zone, wall + Duration::days(days)).0
        } else {
            starts_at + length
        }
    });
    let status = match text_value(event.component, "STATUS")
        .map(|s| s.to_ascii_uppercase())
        .as_deref()
    {
        Some("CANCELLED") => "Cancelled",
        Some("TENTATIVE") => "Tentative",
        Some("CONFIRMED") => "Confirmed",
        _ => "Scheduled",
    };
    let local_date = wall.date();
    let local_time = (!all_day).then(|| wall.time());
    let (committee_title, title) = match parse_display_title(&summary) {
        Some(parts) => (parts.committee, summary.clone()),
        None => (
            summary.clone(),
            display_title(&summary, local_date, local_time),
        ),
    };
    NewMeeting {
        external_id,
        committee_external_id: None,
        committee_title,
        title,
        local_date,
        local_time,
        timezone: zone.name().to_owned(),
        starts_at,
        ends_at,
        all_day,
        status: status.to_owned(),
        location: text_value(event.component, "LOCATION"),
        url: text_value(event.component, "URL")
            .filter(|u| u.starts_with("http://") || u.starts_with("https://")),
        parse_warning: gap_warning,
        detail: DetailState::NotFetched,
    }
}

/// Expands a series by wall-clock time in `zone` and returns its occurrences whose start may
/// fall in `[from, to)` (a day either side, the caller filters exactly).
fn expand_series(
    start: IcalTime,
    zone: Tz,
    rule: &str,
    excluded: &[IcalTime],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<IcalTime>, String> {
    let first = start.wall_clock(zone);
    // The wall-clock series is computed as if in UTC, which has no clock changes; UNTIL, when
    // given in UTC, is moved to the same wall clock.
    let rule = rewrite_until(rule, zone);
    let text = format!("DTSTART:{}Z\nRRULE:{}", first.format("%Y%m%dT%H%M%S"), rule);
    let set = rrule::RRuleSet::from_str(&text).map_err(|err| err.to_string())?;
    let utc = rrule::Tz::UTC;
    let window_from = from.with_timezone(&zone).naive_local() - Duration::days(1);
    let window_to = to.with_timezone(&zone).naive_local() + Duration::days(1);
    let result = set
        .after(window_from.and_utc().with_timezone(&utc))
        .before(window_to.and_utc().with_timezone(&utc))
        .all(MAX_OCCURRENCES);
    let excluded_walls: Vec<NaiveDateTime> = excluded.iter().map(|e| e.wall_clock(zone)).collect();
    let excluded_days: Vec<NaiveDate> = excluded
        .iter()
        .filter_map(|e| match e {
            IcalTime::Date(date) => Some(*date),
            _ => None,
        })
        .collect();
    Ok(result
        .dates
        .into_iter()
        .map(|at| at.naive_utc())
        .filter(|wall| !excluded_walls.contains(wall) && !excluded_days.contains(&wall.date()))
        .map(|wall| match start {
            IcalTime::Date(_) => IcalTime::Date(wall.date()),
            IcalTime::Floating(_) => IcalTime::Floating(wall),
            _ => IcalTime::Zoned(wall, zone),
        })
        .collect())
}

/// Moves a UTC `UNTIL` of a rule to the wall clock of `zone`.
fn rewrite_until(rule: &str, zone: Tz) -> String {
    rule.split(';')
        .map(|part| match part.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("UNTIL") => {
                let value = value.trim();
                if let Some(utc) = value.strip_suffix('Z') {
                    if let Ok(at) = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S") {
                        let wall = at.and_utc().with_timezone(&zone).naive_local();
                        return format!("UNTIL={}Z", wall.format("%Y%m%dT%H%M%S"));
                    }
                }
                if let Ok(date) = NaiveDate::parse_from_str(value, "%Y%m%d") {
                    return format!("UNTIL={}T235959Z", date.format("%Y%m%d"));
                }
                if let Ok(at) = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S") {
                    return format!("UNTIL={}Z", at.format("%Y%m%dT%H%M%S"));
                }
                part.to_owned()
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// An RFC 5545 duration such as `PT1H30M` or `P1D`.
fn parse_duration(raw: &str) -> Option<Duration> {
    let text = raw.trim().trim_start_matches('+');
    let text = text.strip_prefix('P')?;
    let (days_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, t),
        None => (text, ""),
    };
    let mut total = Duration::zero();
    let mut number = String::new();
    for c in days_part.chars() {
        match c {
            '0'..='9' => number.push(c),
            'W' => total += Duration::weeks(number.parse().ok()?),
            'D' => total += Duration::days(number.parse().ok()?),
            _ => return None,
        }
        if !c.is_ascii_digit() {
            number.clear();
        }
    }
    for c in time_part.chars() {
        match c {
            '0'..='9' => number.push(c),
            'H' => total += Duration::hours(number.parse().ok()?),
            'M' => total += Duration::minutes(number.parse().ok()?),
            'S' => total += Duration::seconds(number.parse().ok()?),
            _ => return None,
        }
        if !c.is_ascii_digit() {
            number.clear();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/real/ics");
    const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ical");

    fn real(name: &str) -> Option<String> {
        let path = format!("{REAL}/{name}");
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(_) => {
                eprintln!("skipping: the real capture {path} is not here");
                None
            }
        }
    }

    fn own(name: &str) -> String {
        std::fs::read_to_string(format!("{OWN}/{name}")).unwrap()
    }

    fn utc(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn all_time() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc("2000-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"))
    }

    fn find<'a>(meetings: &'a [NewMeeting], summary: &str, local: &str) -> Option<&'a NewMeeting> {
        meetings.iter().find(|m| {
            m.committee_title == summary
                && format!(
                    "{}T{}",
                    m.local_date,
                    m.local_time.unwrap_or(NaiveTime::MIN)
                ) == local
        })
    }

    #[test]
    fn the_chicago_export_keeps_chicago_local_times_and_all_day_days() {
        let Some(text) = real("chicago_clihtf_tribe_events.ics") else {
            return;
        };
        let (from, to) = all_time();
        let calendar = parse_calendar(&text, from, to).unwrap();
        assert_eq!(calendar.meetings.len(), 30, "{:?}", calendar.warnings);
        let timed: Vec<&NewMeeting> = calendar.meetings.iter().filter(|m| !m.all_day).collect();
        assert_eq!(timed.len(), 7);
        // 9 May 2024 08:30 CDT (UTC-5) is 13:30 UTC.
        let outreach = find(
            &calendar.meetings,
            "Outreach Meeting",
            "2024-05-09T08:30:00",
        )
        .unwrap();
        assert_eq!(outreach.starts_at, utc("2024-05-09T13:30:00Z"));
        assert_eq!(outreach.timezone, "America/Chicago");
        assert_eq!(outreach.ends_at, Some(utc("2024-05-09T14:30:00Z")));
        // An all-day event stays on its one day.
        let closed = calendar
            .meetings
            .iter()
            .find(|m| m.all_day && m.local_date == NaiveDate::from_ymd_opt(2024, 5, 8).unwrap())
            .unwrap();
        assert_eq!(closed.committee_title, "Administrative Day");
        assert_eq!(closed.local_time, None);
    }

    #[test]
    fn the_detroit_export_reads_utc_times_and_trims_summaries() {
        let Some(text) = real("detroit_dpscd_board_schoolwires.ics") else {
            return;
        };
        let (from, to) = all_time();
        let calendar = parse_calendar(&text, from, to).unwrap();
        assert_eq!(calendar.meetings.len(), 33, "{:?}", calendar.warnings);
        let first = calendar
            .meetings
            .iter()
            .find(|m| m.external_id == "7856")
            .unwrap();
        assert_eq!(first.starts_at, utc("2019-04-16T21:30:00Z"));
        assert_eq!(first.status, "Confirmed");
        assert_eq!(
            first.location.as_deref(),
            Some("Renaissance High School, Detroit, MI 48235, USA")
        );
        let special = calendar
            .meetings
            .iter()
            .find(|m| m.external_id == "15351")
            .unwrap();
        assert_eq!(special.committee_title, "DPSCD Special Meeting (Open)");
    }

    #[test]
    fn moved_st_paul_occurrences_appear_at_their_new_times_only() {
        let Some(text) = real("stpaul_schools_google_recurrence_ids.ics") else {
            return;
        };
        let (from, to) = all_time();
        let calendar = parse_calendar(&text, from, to).unwrap();
        assert_eq!(calendar.meetings.len(), 34, "{:?}", calendar.warnings);
        let committee = "Committee of the Board Meeting";
        // The 13 January occurrence was moved to 6 January, 16:30 CST (UTC-6).
        let moved = find(&calendar.meetings, committee, "2026-01-06T16:30:00").unwrap();
        assert_eq!(moved.starts_at, utc("2026-01-06T22:30:00Z"));
        assert!(find(&calendar.meetings, committee, "2026-01-13T16:30:00").is_none());
        assert_eq!(
            moved.external_id,
            "7nrg0i7s8lak92s1mdrb2iag1p_R20240213T223000@google.com/20260113T223000Z"
        );
        // 16 June (CDT, UTC-5) moved to 23 June.
        let board = "Regular Board of Education Meeting";
        let june = find(&calendar.meetings, board, "2026-06-23T17:30:00").unwrap();
        assert_eq!(june.starts_at, utc("2026-06-23T22:30:00Z"));
        assert!(find(&calendar.meetings, board, "2026-06-16T17:30:00").is_none());
        assert!(
            calendar
                .meetings
                .iter()
                .all(|m| m.timezone == "America/Chicago")
        );
    }

    #[test]
    fn the_wichita_export_unescapes_commas_and_keeps_non_ascii_text() {
        let Some(text) = real("wichita_win_tribe_events.ics") else {
            return;
        };
        let (from, to) = all_time();
        let calendar = parse_calendar(&text, from, to).unwrap();
        assert_eq!(calendar.meetings.len(), 14, "{:?}", calendar.warnings);
        // 8 March 2024 is before the 10 March clock change: 18:00 CST is 00:00 UTC next day.
        let march = find(
            &calendar.meetings,
            "Executive Board Meeting",
            "2024-03-08T18:00:00",
        )
        .unwrap();
        assert_eq!(march.starts_at, utc("2024-03-09T00:00:00Z"));
        let april = find(
            &calendar.meetings,
            "Executive Board Meeting",
            "2024-04-11T18:00:00",
        )
        .unwrap();
        assert_eq!(april.starts_at, utc("2024-04-11T23:00:00Z"));
        assert_eq!(
            march.location.as_deref(),
            Some(
                "General Membership Meeting Locale, 2418 E 9th St N, Wichita, KS, 67214, \
                 United States"
            )
        );
    }

    #[test]
    fn a_weekly_series_keeps_its_wall_clock_time_skips_exdates_and_takes_overrides() {
        let text = own("series_with_overrides.ics");
        let calendar = parse_calendar(
            &text,
            utc("2026-03-01T00:00:00Z"),
            utc("2026-04-30T00:00:00Z"),
        )
        .unwrap();
        assert!(calendar.warnings.is_empty(), "{:?}", calendar.warnings);
        let planning: Vec<(String, String, &str)> = calendar
            .meetings
            .iter()
            .filter(|m| m.committee_title == "Planning Committee")
            .map(|m| {
                (
                    m.local_date.to_string(),
                    m.starts_at.to_rfc3339(),
                    m.status.as_str(),
                )
            })
            .collect();
        // Thursdays at 18:00 London from 5 March, six times; 19 March is an EXDATE; 26 March
        // is moved to Friday 27 March 19:00 (still GMT); 2 April is cancelled. BST starts on
        // 29 March, so the April meetings are at 17:00 UTC.
        assert_eq!(
            planning,
            [
                (
                    "2026-03-05".into(),
                    "2026-03-05T18:00:00+00:00".into(),
                    "Confirmed"
                ),
                (
                    "2026-03-12".into(),
                    "2026-03-12T18:00:00+00:00".into(),
                    "Confirmed"
                ),
                (
                    "2026-03-27".into(),
                    "2026-03-27T19:00:00+00:00".into(),
                    "Confirmed"
                ),
                (
                    "2026-04-02".into(),
                    "2026-04-02T17:00:00+00:00".into(),
                    "Cancelled"
                ),
                (
                    "2026-04-09".into(),
                    "2026-04-09T17:00:00+00:00".into(),
                    "Confirmed"
                ),
            ]
        );
        let moved = calendar
            .meetings
            .iter()
            .find(|m| m.local_date.to_string() == "2026-03-27")
            .unwrap();
        assert_eq!(
            moved.external_id,
            "planning-2026@example.gov.uk/20260326T180000Z"
        );
        assert_eq!(
            moved.location.as_deref(),
            Some("Committee Room 2, Civic Centre")
        );
    }

    #[test]
    fn windows_zone_names_floating_times_and_all_day_events_are_placed_right() {
        let text = own("outlook_windows_zones.ics");
        let (from, to) = all_time();
        let calendar = parse_calendar(&text, from, to).unwrap();
        assert!(calendar.warnings.is_empty(), "{:?}", calendar.warnings);
        let by_id = |id: &str| {
            calendar
                .meetings
                .iter()
                .find(|m| m.external_id == id)
                .unwrap()
        };
        // "GMT Standard Time" in July is BST: 10:00 local is 09:00 UTC.
        let cabinet = by_id("cabinet-0701@example.gov.uk");
        assert_eq!(cabinet.starts_at, utc("2026-07-01T09:00:00Z"));
        assert_eq!(cabinet.timezone, "Europe/London");
        assert_eq!(cabinet.committee_title, "Cabinet, with guests");
        assert_eq!(
            cabinet.location.as_deref(),
            Some("Salle d’Honneur; Town Hall")
        );
        // A floating time is read in UK time (X-WR-TIMEZONE is absent).
        let floating = by_id("floating@example.gov.uk");
        assert_eq!(floating.starts_at, utc("2026-01-20T19:00:00Z"));
        // An all-day event stays on its one day and starts at local midnight.
        let holiday = by_id("allday@example.gov.uk");
        assert!(holiday.all_day);
        assert_eq!(holiday.local_date.to_string(), "2026-08-31");
        assert_eq!(holiday.starts_at, utc("2026-08-30T23:00:00Z"));
        assert_eq!(holiday.ends_at, Some(utc("2026-08-31T23:00:00Z")));
        // A ModernGov-style summary keeps its title and gives its committee.
        let council = by_id("council-0915@example.gov.uk");
        assert_eq!(council.committee_title, "Full Council");
        assert_eq!(
            council.title,
            "Full Council - Tuesday, 15th September, 2026 7.00 pm"
        );
        assert_eq!(council.starts_at, utc("2026-09-15T18:00:00Z"));
    }

    #[test]
    fn an_error_page_or_a_cut_short_calendar_is_refused() {
        let (from, to) = all_time();
        let err = parse_calendar("<!DOCTYPE html><html>Oops</html>", from, to).unwrap_err();
        assert!(err.0.contains("not an iCalendar file"), "{err}");
        let err =
            parse_calendar("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\n", from, to).unwrap_err();
        assert!(err.0.contains("cut short"), "{err}");
    }

    #[test]
    fn one_event_without_a_start_is_skipped_and_the_rest_are_kept() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Broken\r\n\
                    DTSTART:not-a-date\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b\r\nSUMMARY:Fine\r\n\
                    DTSTART:20260301T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let (from, to) = all_time();
        let calendar = parse_calendar(text, from, to).unwrap();
        assert_eq!(calendar.meetings.len(), 1);
        assert_eq!(calendar.meetings[0].external_id, "b");
        assert_eq!(calendar.warnings.len(), 1);
        assert!(calendar.warnings[0].contains("Broken"));
    }

    #[test]
    fn durations_are_read() {
        assert_eq!(parse_duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("P1D"), Some(Duration::days(1)));
        assert_eq!(parse_duration("P1W"), Some(Duration::weeks(1)));
        assert_eq!(parse_duration("1H"), None);
    }
}
