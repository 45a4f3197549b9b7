//! Time zone names as calendars write them in `TZID`, resolved to IANA zones.
//!
//! Exchange and Outlook export Windows zone names (`GMT Standard Time`) or their display names
//! (`(UTC+00:00) Dublin, Edinburgh, Lisbon, London`); some tools prefix IANA names with a path
//! (`/mozilla.org/20050126_1/Europe/London`). No well-kept Rust crate maps Windows names, so
//! this is a documented table: the "territory 001" rows of the Unicode CLDR `windowsZones.xml`
//! for the zones a UK or US council calendar plausibly uses. A name not here and not IANA is
//! reported by the caller, which then falls back to the calendar's default zone.

use chrono_tz::Tz;

/// Windows zone id → IANA zone, from CLDR `windowsZones.xml` (territory 001).
const WINDOWS_TO_IANA: &[(&str, &str)] = &[
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("UTC", "Etc/UTC"),
    ("Coordinated Universal Time", "Etc/UTC"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("India Standard Time", "Asia/Calcutta"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("Eastern Standard Time", "America/New_York"),
    ("US Eastern Standard Time", "America/Indianapolis"),
    ("Central Standard Time", "America/Chicago"),
    ("Canada Central Standard Time", "America/Regina"),
    ("Mountain Standard Time", "America/Denver"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
];

/// Cities that identify a zone in Outlook display names such as
/// `(UTC+00:00) Dublin, Edinburgh, Lisbon, London`.
const DISPLAY_CITIES: &[(&str, &str)] = &[
    ("London", "Europe/London"),
    ("Amsterdam, Berlin", "Europe/Berlin"),
    ("Brussels, Copenhagen, Madrid, Paris", "Europe/Paris"),
    ("Eastern Time (US & Canada)", "America/New_York"),
    ("Central Time (US & Canada)", "America/Chicago"),
    ("Mountain Time (US & Canada)", "America/Denver"),
    ("Pacific Time (US & Canada)", "America/Los_Angeles"),
];

/// The IANA zone a `TZID` value names, if it can be told.
pub fn resolve_tzid(raw: &str) -> Option<Tz> {
    let name = raw.trim().trim_matches('"').trim();
    if let Ok(zone) = name.parse::<Tz>() {
        return Some(zone);
    }
    if let Some((_, iana)) = WINDOWS_TO_IANA
        .iter()
        .find(|(windows, _)| windows.eq_ignore_ascii_case(name))
    {
        return iana.parse().ok();
    }
    if name.starts_with("(UTC") || name.starts_with("(GMT") {
        if let Some((_, iana)) = DISPLAY_CITIES.iter().find(|(city, _)| name.contains(city)) {
            return iana.parse().ok();
        }
    }
    // `/mozilla.org/20050126_1/Europe/London`, `/Europe/London`
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    for take in [3, 2] {
        if parts.len() >= take {
            if let Ok(zone) = parts[parts.len() - take..].join("/").parse::<Tz>() {
                return Some(zone);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_windows_display_and_prefixed_names_resolve() {
        let cases = [
            ("Europe/London", Some("Europe/London")),
            ("America/Chicago", Some("America/Chicago")),
            ("GMT Standard Time", Some("Europe/London")),
            ("\"Central Standard Time\"", Some("America/Chicago")),
            (
                "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
                Some("Europe/London"),
            ),
            (
                "/mozilla.org/20050126_1/Europe/London",
                Some("Europe/London"),
            ),
            (
                "/softwarestudio.org/Olson_20011030_5/America/Argentina/Buenos_Aires",
                Some("America/Argentina/Buenos_Aires"),
            ),
            ("Customized Time Zone", None),
        ];
        for (raw, want) in cases {
            assert_eq!(resolve_tzid(raw).map(|z| z.name()), want, "{raw}");
        }
    }

    #[test]
    fn every_table_entry_is_a_known_iana_zone() {
        for (windows, iana) in WINDOWS_TO_IANA.iter().chain(DISPLAY_CITIES) {
            assert!(iana.parse::<Tz>().is_ok(), "{windows} -> {iana}");
        }
    }
}
