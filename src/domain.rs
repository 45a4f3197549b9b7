//! Plain domain types shared by every module. They depend on nothing else in the crate.
//!
//! Raw strings become these types once, where they enter (settings, CLI, forms, feeds), and are
//! not re-checked deeper in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The Europe/London zone: councils' committee systems publish UK local times.
pub const UK_ZONE: chrono_tz::Tz = chrono_tz::Europe::London;

/// An error turning a raw string into a domain value; the message is fit to show a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A council's identifier in the registry and in URLs, e.g. `wolverhampton`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CouncilSlug(String);

impl CouncilSlug {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CouncilSlug {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let valid = !raw.is_empty()
            && raw.len() <= 80
            && raw.split('-').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if valid {
            Ok(CouncilSlug(raw.to_owned()))
        } else {
            Err(ParseError(format!(
                "`{raw}` is not a council slug (lowercase letters and digits joined by `-`)"
            )))
        }
    }
}

impl TryFrom<String> for CouncilSlug {
    type Error = ParseError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<CouncilSlug> for String {
    fn from(slug: CouncilSlug) -> String {
        slug.0
    }
}

impl fmt::Display for CouncilSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a string-backed enum with its stored names, parsing and display.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    other => {
                        let expected = [$($text),+].join(", ");
                        Err(ParseError(format!(
                            "`{other}` is not a {}; expected one of: {expected}",
                            $what
                        )))
                    }
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Whether the service produces detailed digests for a council.
    SupportLevel, "support level" { Limited => "limited", Full => "full" }
);

named_enum!(
    /// The committee system a council publishes its meetings in.
    Platform, "platform" { ModernGov => "moderngov", Cmis => "cmis", Other => "other" }
);

named_enum!(
    /// Where a source's data comes from.
    SourceKind, "source kind" { ModernGov => "moderngov", Ical => "ical", Feed => "feed" }
);

named_enum!(
    /// Residents get the weekly e-mail; professionals can also ask for a council to be enabled.
    SubscriberKind, "subscriber kind" { Resident => "resident", Professional => "professional" }
);

named_enum!(
    /// The life of one subscription: double opt-in, then possibly unsubscribed.
    SubscriptionState, "subscription state" {
        Pending => "pending",
        Confirmed => "confirmed",
        Unsubscribed => "unsubscribed",
    }
);

named_enum!(
    /// An operator's decision on an enablement request.
    RequestState, "request state" {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
    }
);

named_enum!(
    /// Where one message stands in the delivery ledger.
    DeliveryState, "delivery state" {
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Retrying => "retrying",
        Failed => "failed",
    }
);

/// A validated, normalised e-mail address: surrounding space trimmed, domain lowercased.
///
/// Its `Debug` form hides the local part so that an address cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EmailAddress {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        if trimmed.chars().any(|c| c.is_control()) {
            return Err(ParseError(
                "an e-mail address cannot contain control characters".into(),
            ));
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            trimmed,
            email_address::Options::default().without_display_text(),
        )
        .map_err(|err| ParseError(format!("`{trimmed}` is not a valid e-mail address: {err}")))?;
        let domain = parsed.domain().to_ascii_lowercase();
        if !domain.contains('.') && domain != "localhost" {
            return Err(ParseError(format!(
                "`{trimmed}` is not a valid e-mail address: the domain has no dot"
            )));
        }
        Ok(EmailAddress(format!("{}@{}", parsed.local_part(), domain)))
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit('@').next().unwrap_or("");
        write!(f, "EmailAddress(***@{domain})")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO week in Europe/London, e.g. `2026-W07`: the unit of one weekly digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IsoWeek {
    pub year: i32,
    pub week: u32,
}

impl IsoWeek {
    /// The week that contains `at`, reckoned in UK local time.
    pub fn containing(at: chrono::DateTime<chrono::Utc>) -> IsoWeek {
        use chrono::Datelike;
        let local = at.with_timezone(&UK_ZONE).date_naive().iso_week();
        IsoWeek {
            year: local.year(),
            week: local.week(),
        }
    }

    /// The Monday that starts this week.
    pub fn monday(self) -> chrono::NaiveDate {
        chrono::NaiveDate::from_isoywd_opt(self.year, self.week, chrono::Weekday::Mon)
            .unwrap_or(chrono::NaiveDate::MIN)
    }
}

impl FromStr for IsoWeek {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError(format!("`{raw}` is not an ISO week such as 2026-W07"));
        let (year, week) = raw.trim().split_once("-W").ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        chrono::NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).ok_or_else(bad)?;
        Ok(IsoWeek { year, week })
    }
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_registry_forms_and_refuse_others() {
        for good in [
            "wolverhampton",
            "bath-and-north-east-somerset",
            "city-of-london",
            "a1",
        ] {
            assert!(good.parse::<CouncilSlug>().is_ok(), "{good}");
        }
        for bad in ["", "Wolverhampton", "-a", "a-", "a--b", "a b", "a/b", "é"] {
            assert!(bad.parse::<CouncilSlug>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_trimmed_and_their_domain_lowercased() {
        let address: EmailAddress = "  Jo.Bloggs@Example.ORG \n".parse().unwrap();
        assert_eq!(address.as_str(), "Jo.Bloggs@example.org");
    }

    #[test]
    fn addresses_with_header_injection_or_no_domain_are_refused() {
        for bad in [
            "a@b.org\r\nBcc: x@y.org",
            "no-at-sign",
            "a@",
            "@b.org",
            "a@nodot",
        ] {
            assert!(bad.parse::<EmailAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn address_debug_form_hides_the_local_part() {
        let address: EmailAddress = "secret.person@example.org".parse().unwrap();
        assert_eq!(format!("{address:?}"), "EmailAddress(***@example.org)");
    }

    #[test]
    fn iso_weeks_parse_print_and_start_on_monday() {
        let week: IsoWeek = "2026-W07".parse().unwrap();
        assert_eq!(week.to_string(), "2026-W07");
        assert_eq!(
            week.monday(),
            chrono::NaiveDate::from_ymd_opt(2026, 2, 9).unwrap()
        );
        assert!("2026-W54".parse::<IsoWeek>().is_err());
        assert!("2026-07".parse::<IsoWeek>().is_err());
    }

    #[test]
    fn the_week_of_an_instant_is_reckoned_in_uk_time() {
        // Sunday 2026-03-29 23:30 UTC is Monday 00:30 BST: already week 14 in the UK.
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-29T23:30:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(IsoWeek::containing(at).to_string(), "2026-W14");
    }
}
