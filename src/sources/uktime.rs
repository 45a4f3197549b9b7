//! UK committee-system dates and times: `13/01/2026`, `10.00 am`, `6.00 pm`, in Europe/London
//! (GMT in winter, BST in summer), and the display titles residents see on council sites,
//! such as `Audit Committee - Tuesday, 10th February, 2026 10.00 am`.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::domain::UK_ZONE;

/// Reads a `dd/mm/yyyy` date (surrounding space allowed).
pub fn parse_uk_date(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw.trim(), "%d/%m/%Y").ok()
}

/// Reads a UK clock time: `10.00 am`, `6.00 pm`, `6pm`, `10:30am`, `12.00 noon`, `18:00`.
pub fn parse_uk_time(raw: &str) -> Option<NaiveTime> {
    let text = raw.trim().to_ascii_lowercase().replace(['\u{a0}', ' '], "");
    if text.is_empty() {
        return None;
    }
    if matches!(
        text.as_str(),
        "noon" | "midday" | "12noon" | "12.00noon" | "12:00noon"
    ) {
        return NaiveTime::from_hms_opt(12, 0, 0);
    }
    if text.ends_with("midnight") {
        return NaiveTime::from_hms_opt(0, 0, 0);
    }
    let (clock, meridiem) = if let Some(rest) = text.strip_suffix("am") {
        (rest, Some(false))
    } else if let Some(rest) = text.strip_suffix("pm") {
        (rest, Some(true))
    } else if let Some(rest) = text.strip_suffix("noon") {
        (rest, Some(true))
    } else {
        (text.as_str(), None)
    };
    let clock = clock.trim_end_matches('.');
    let (hour, minute) = match clock.split_once(['.', ':']) {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None => (clock.parse::<u32>().ok()?, 0),
    };
    if minute > 59 {
        return None;
    }
    let hour = match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&hour) {
                return None;
            }
            match (hour, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, false) => h,
                (h, true) => h + 12,
            }
        }
        None if hour < 24 && clock.contains(['.', ':']) => hour,
        None => return None,
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// A wall-clock time in `zone` as a UTC instant. In the autumn hour that happens twice the
/// earlier one is taken; a time in the spring gap (which does not exist) is read as the same
/// number of minutes after the gap, as clocks do, and the second value says so.
pub fn local_to_utc<Z: TimeZone>(
    zone: &Z,
    local: NaiveDateTime,
) -> (DateTime<Utc>, Option<String>) {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => (at.with_timezone(&Utc), None),
        LocalResult::Ambiguous(first, _) => (first.with_timezone(&Utc), None),
        LocalResult::None => {
            let shifted = local + chrono::Duration::hours(1);
            let at = zone
                .from_local_datetime(&shifted)
                .earliest()
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&local));
            (
                at,
                Some(format!(
                    "{} does not exist in local time (the clocks go forward); read as {}",
                    local.format("%Y-%m-%d %H:%M"),
                    shifted.format("%H:%M")
                )),
            )
        }
    }
}

/// A UK meeting's start: the local date and time in Europe/London as UTC. Without a time the
/// meeting is placed at local midnight of its date, so it keeps its day.
pub fn uk_start(date: NaiveDate, time: Option<NaiveTime>) -> (DateTime<Utc>, Option<String>) {
    let local = date.and_time(time.unwrap_or(NaiveTime::MIN));
    local_to_utc(&UK_ZONE, local)
}

fn ordinal_suffix(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// A time in the committee system's form: `10.00 am`, `6.00 pm`, `12.30 pm`.
pub fn format_uk_time(time: NaiveTime) -> String {
    time.format("%-I.%M %P").to_string()
}

/// The date part of a display title: `Wednesday, 10th September, 2025`.
pub fn format_uk_long_date(date: NaiveDate) -> String {
    format!(
        "{}, {}{} {}, {}",
        date.format("%A"),
        date.day(),
        ordinal_suffix(date.day()),
        date.format("%B"),
        date.year()
    )
}

/// A meeting's display title as council sites show it:
/// `Children, Young and People Scrutiny Panel - Wednesday, 10th September, 2025 6.00 pm`.
pub fn display_title(committee: &str, date: NaiveDate, time: Option<NaiveTime>) -> String {
    let mut title = format!("{} - {}", committee.trim(), format_uk_long_date(date));
    if let Some(time) = time {
        title.push(' ');
        title.push_str(&format_uk_time(time));
    }
    title
}

/// A display title read back into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleParts {
    pub committee: String,
    pub date: NaiveDate,
    pub time: Option<NaiveTime>,
}

/// Reads the date part `Wednesday, 10th September, 2025 6.00 pm` (the weekday, the ordinal
/// suffix and the time are optional; a weekday that does not match the date is refused).
pub fn parse_uk_long_date(raw: &str) -> Option<(NaiveDate, Option<NaiveTime>)> {
    let text = raw.trim();
    let mut weekday = None;
    let mut rest = text;
    if let Some((head, tail)) = text.split_once(',') {
        if head.trim().parse::<chrono::Weekday>().is_ok() {
            weekday = head.trim().parse::<chrono::Weekday>().ok();
            rest = tail.trim();
        }
    }
    // `10th September, 2025 6.00 pm`
    let (day_month, year_time) = rest.split_once(',')?;
    let mut words = day_month.split_whitespace();
    let day_word = words.next()?;
    let month_word = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let day: u32 = day_word
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .ok()?;
    let month = month_word
        .parse::<chrono::Month>()
        .ok()?
        .number_from_month();
    let year_time = year_time.trim();
    let (year_word, time_text) = match year_time.split_once(' ') {
        Some((y, t)) => (y, Some(t)),
        None => (year_time, None),
    };
    let year: i32 = year_word.parse().ok()?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    if weekday.is_some_and(|w| w != date.weekday()) {
        return None;
    }
    let time = match time_text {
        Some(t) => Some(parse_uk_time(t)?),
        None => None,
    };
    Some((date, time))
}

/// Reads a display title back into committee, date and time; `None` when it is not in the
/// committee system's form.
pub fn parse_display_title(raw: &str) -> Option<TitleParts> {
    let text = raw.trim();
    let mut search_end = text.len();
    // The committee name may itself contain ` - `; the date is after the last one that works.
    while let Some(at) = text[..search_end].rfind(" - ") {
        let committee = text[..at].trim();
        if let Some((date, time)) = parse_uk_long_date(&text[at + 3..]) {
            if !committee.is_empty() {
                return Some(TitleParts {
                    committee: committee.to_owned(),
                    date,
                    time,
                });
            }
        }
        search_end = at;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn uk_clock_times_are_read_in_their_usual_forms() {
        let cases = [
            ("10.00 am", Some(time(10, 0))),
            ("6.00 pm", Some(time(18, 0))),
            (" 6.30pm ", Some(time(18, 30))),
            ("12.00 pm", Some(time(12, 0))),
            ("12.15 am", Some(time(0, 15))),
            ("12.00 noon", Some(time(12, 0))),
            ("noon", Some(time(12, 0))),
            ("7pm", Some(time(19, 0))),
            ("10:30 AM", Some(time(10, 30))),
            ("18:00", Some(time(18, 0))),
            ("", None),
            ("TBC", None),
            ("13.00 pm", None),
            ("10.75 am", None),
            ("18", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_uk_time(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn uk_dates_are_day_first() {
        assert_eq!(parse_uk_date("13/01/2026"), Some(date(2026, 1, 13)));
        assert_eq!(parse_uk_date(" 02/02/2026\n"), Some(date(2026, 2, 2)));
        assert_eq!(parse_uk_date("31/02/2026"), None);
        assert_eq!(parse_uk_date("2026-01-13"), None);
    }

    #[test]
    fn summer_meetings_are_an_hour_ahead_of_utc_and_winter_ones_are_not() {
        // 10 Sep 2025 is in BST (UTC+1): 18:00 local is 17:00 UTC.
        let (summer, warning) = uk_start(date(2025, 9, 10), Some(time(18, 0)));
        assert_eq!(summer.to_rfc3339(), "2025-09-10T17:00:00+00:00");
        assert_eq!(warning, None);
        // 13 Jan 2026 is in GMT: 10:00 local is 10:00 UTC.
        let (winter, _) = uk_start(date(2026, 1, 13), Some(time(10, 0)));
        assert_eq!(winter.to_rfc3339(), "2026-01-13T10:00:00+00:00");
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_past_it_with_a_warning() {
        // Clocks went forward at 01:00 UTC on 29 March 2026; 01:30 local never happened.
        let (at, warning) = uk_start(date(2026, 3, 29), Some(time(1, 30)));
        assert_eq!(at.to_rfc3339(), "2026-03-29T01:30:00+00:00");
        assert!(warning.unwrap().contains("does not exist"));
        // 01:30 on 25 October 2026 happens twice; the first (BST) is taken.
        let (at, warning) = uk_start(date(2026, 10, 25), Some(time(1, 30)));
        assert_eq!(at.to_rfc3339(), "2026-10-25T00:30:00+00:00");
        assert_eq!(warning, None);
    }

    #[test]
    fn display_titles_follow_the_committee_system_form() {
        assert_eq!(
            display_title(
                "Children, Young and People Scrutiny Panel",
                date(2025, 9, 10),
                Some(time(18, 0))
            ),
            "Children, Young and People Scrutiny Panel - Wednesday, 10th September, 2025 6.00 pm"
        );
        assert_eq!(
            display_title("Audit Committee", date(2026, 1, 13), Some(time(10, 0))),
            "Audit Committee - Tuesday, 13th January, 2026 10.00 am"
        );
        assert_eq!(
            display_title("Council", date(2026, 3, 1), None),
            "Council - Sunday, 1st March, 2026"
        );
        for (day, suffix) in [
            (2, "nd"),
            (3, "rd"),
            (11, "th"),
            (12, "th"),
            (22, "nd"),
            (23, "rd"),
        ] {
            assert!(format_uk_long_date(date(2026, 1, day)).contains(&format!("{day}{suffix} ")));
        }
    }

    #[test]
    fn a_display_title_reads_back_into_committee_and_utc_start() {
        let parts = parse_display_title(
            "Children, Young and People Scrutiny Panel - Wednesday, 10th September, 2025 6.00 pm",
        )
        .unwrap();
        assert_eq!(parts.committee, "Children, Young and People Scrutiny Panel");
        assert_eq!(parts.date, date(2025, 9, 10));
        assert_eq!(parts.time, Some(time(18, 0)));
        let (at, _) = uk_start(parts.date, parts.time);
        assert_eq!(at, "2025-09-10T17:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    #[test]
    fn a_committee_name_with_a_dash_keeps_it() {
        let parts =
            parse_display_title("Planning - Strategic Sub-Committee - Monday, 2nd March, 2026")
                .unwrap();
        assert_eq!(parts.committee, "Planning - Strategic Sub-Committee");
        assert_eq!(parts.time, None);
    }

    #[test]
    fn titles_not_in_the_form_are_not_read_as_meetings() {
        for raw in [
            "Council tax bills for 2026 - what you need to know",
            "Audit Committee - Monday, 10th February, 2026 10.00 am", // 10 Feb 2026 is a Tuesday
            "Audit Committee - 10th Febtember, 2026",
            " - Tuesday, 10th February, 2026",
        ] {
            assert_eq!(parse_display_title(raw), None, "{raw}");
        }
    }
}
