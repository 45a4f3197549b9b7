//! RSS and Atom feeds (feed-rs): council news as notices, and committee-system items whose
//! titles are in the display form (`Audit Committee - Tuesday, 10th February, 2026 10.00 am`)
//! as meetings.
//!
//! Bytes are decoded before parsing: a byte-order mark wins, then the XML declaration's
//! encoding (windows-1252 and the like, via encoding_rs), then UTF-8. One item with a broken
//! date or a missing field is kept as far as it goes or skipped with a warning; it never fails
//! the feed. An item's identity is its guid, else its link without volatile query parameters,
//! else its title and date, so it is the same item on every poll.

use chrono::{DateTime, Utc};

use crate::domain::UK_ZONE;
use crate::sources::html::{html_to_plain, sanitise_html};
use crate::sources::uktime::{parse_display_title, uk_start};
use crate::store::meetings::{DetailState, NewMeeting, NewNotice};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedFeed(pub String);

/// What one feed holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedContents {
    pub notices: Vec<NewNotice>,
    pub meetings: Vec<NewMeeting>,
    pub warnings: Vec<String>,
}

/// Query parameters that differ between fetches of the same item (tracking, sessions, cache
/// busters) and so must not be part of its identity.
const VOLATILE_PARAMS: &[&str] = &[
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "fbclid",
    "gclid",
    "sid",
    "sessionid",
    "jsessionid",
    "phpsessid",
    "aspsessionid",
    "_",
    "ts",
    "timestamp",
    "cb",
    "nocache",
];

/// Decodes feed bytes to text, honouring a byte-order mark or the declared encoding, and
/// drops the XML declaration (the text is UTF-8 from here on).
pub fn decode_xml(body: &[u8]) -> String {
    let (text, _) = match encoding_rs::Encoding::for_bom(body) {
        Some((encoding, bom)) => encoding.decode_without_bom_handling(&body[bom..]),
        None => {
            let declared = declared_encoding(body)
                .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
                .unwrap_or(encoding_rs::UTF_8);
            declared.decode_without_bom_handling(body)
        }
    };
    let text = text.trim_start();
    match text
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>"))
    {
        Some((_, rest)) => rest.trim_start().to_owned(),
        None => text.to_owned(),
    }
}

fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(200)];
    let head = String::from_utf8_lossy(head);
    let declaration = head
        .trim_start()
        .strip_prefix("<?xml")?
        .split("?>")
        .next()?;
    let at = declaration.find("encoding")?;
    let rest = declaration[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = rest[1..].split(quote).next()?;
    Some(value.trim().to_owned())
}

/// The link with volatile query parameters and the fragment removed.
pub fn stable_link(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(mut url) => {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !VOLATILE_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => raw.trim().to_owned(),
    }
}

/// Reads an RSS or Atom feed.
pub fn parse_feed(body: &[u8]) -> Result<FeedContents, MalformedFeed> {
    let text = decode_xml(body);
    if text
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("<!doctype html")
        || text.trim_start().to_ascii_lowercase().starts_with("<html")
    {
        return Err(MalformedFeed("an HTML page, not a feed".to_owned()));
    }
    // An empty id marks an item without a guid: its identity is worked out below.
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|_, _, _| String::new())
        .build();
    let feed = parser
        .parse(text.as_bytes())
        .map_err(|err| MalformedFeed(format!("not a readable RSS or Atom feed: {err}")))?;

    let mut out = FeedContents::default();
    let mut seen = std::collections::HashSet::new();
    for (index, entry) in feed.entries.iter().enumerate() {
        let title = entry
            .title
            .as_ref()
            .map(|t| t.content.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty());
        let link = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .or_else(|| entry.links.first())
            .map(|l| l.href.trim().to_owned())
            .filter(|l| l.starts_with("http://") || l.starts_with("https://"));
        let published: Option<DateTime<Utc>> = entry.published.or(entry.updated);
        let Some(title) = title.or_else(|| link.clone()) else {
            out.warnings
                .push(format!("item {}: no title and no link; skipped", index + 1));
            continue;
        };
        let external_id = if !entry.id.trim().is_empty() {
            entry.id.trim().to_owned()
        } else if let Some(link) = &link {
            stable_link(link)
        } else {
            format!(
                "{title}|{}",
                published.map(|p| p.to_rfc3339()).unwrap_or_default()
            )
        };
        if !seen.insert(external_id.clone()) {
            out.warnings.push(format!(
                "item `{title}`: the same item appears twice; the second was skipped"
            ));
            continue;
        }

        if let Some(parts) = parse_display_title(&title) {
            let (starts_at, warning) = uk_start(parts.date, parts.time);
            out.meetings.push(NewMeeting {
                external_id,
                committee_external_id: None,
                committee_title: parts.committee,
                title,
                local_date: parts.date,
                local_time: parts.time,
                timezone: UK_ZONE.name().to_owned(),
                starts_at,
                ends_at: None,
                all_day: false,
                status: "Scheduled".to_owned(),
                location: None,
                url: link,
                parse_warning: warning,
                detail: DetailState::NotFetched,
            });
            continue;
        }

        let summary_raw = entry
            .summary
            .as_ref()
            .map(|s| s.content.clone())
            .or_else(|| entry.content.as_ref().and_then(|c| c.body.clone()));
        let summary_html = summary_raw.as_deref().and_then(sanitise_html);
        out.notices.push(NewNotice {
            external_id,
            title,
            link,
            published_at: published,
            summary_plain: summary_html.as_deref().map(html_to_plain),
            summary_html,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/feeds");

    fn own(name: &str) -> Vec<u8> {
        std::fs::read(format!("{OWN}/{name}")).unwrap()
    }

    #[test]
    fn a_windows_1252_feed_keeps_its_pound_sign() {
        let feed = parse_feed(&own("news_windows1252.rss")).unwrap();
        assert_eq!(
            feed.notices[0].title,
            "Council tax: £1,234 for a band D home"
        );
        assert_eq!(
            feed.notices[0].summary_plain.as_deref(),
            Some("Bills go out in March. The average rise is £56.")
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_feed() {
        let feed = parse_feed(&own("news_bom.atom")).unwrap();
        assert_eq!(feed.notices.len(), 1, "{:?}", feed.warnings);
        assert_eq!(feed.notices[0].title, "Library opening hours – summer");
        assert_eq!(
            feed.notices[0].external_id,
            "tag:example.gov.uk,2026:news/88"
        );
        assert_eq!(
            feed.notices[0].published_at,
            Some("2026-06-01T09:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn item_identity_is_the_guid_else_the_stable_link_else_title_and_date() {
        let feed = parse_feed(&own("news_windows1252.rss")).unwrap();
        let ids: Vec<&str> = feed
            .notices
            .iter()
            .map(|n| n.external_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "news-2026-001",
                "https://www.example.gov.uk/news/bins?id=7",
                "Road closure on the High Street|",
            ]
        );
        // The item with a broken date is kept, without a date.
        assert_eq!(feed.notices[1].published_at, None);
        assert_eq!(
            feed.notices[0].published_at,
            Some("2026-02-02T10:00:00Z".parse().unwrap())
        );
        // The summary is sanitised.
        let html = feed.notices[1].summary_html.as_deref().unwrap();
        assert!(!html.contains("script"), "{html}");
        assert_eq!(feed.warnings.len(), 1, "{:?}", feed.warnings);
    }

    #[test]
    fn committee_system_items_in_display_form_become_meetings() {
        let feed = parse_feed(&own("moderngov_meetings.rss")).unwrap();
        assert_eq!(feed.meetings.len(), 1);
        let meeting = &feed.meetings[0];
        assert_eq!(
            meeting.committee_title,
            "Children, Young and People Scrutiny Panel"
        );
        assert_eq!(
            meeting.starts_at,
            "2025-09-10T17:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            meeting.url.as_deref(),
            Some("https://democracy.example.gov.uk/ieListDocuments.aspx?CId=12&MId=345")
        );
        assert_eq!(feed.notices.len(), 1);
        assert_eq!(feed.notices[0].title, "New documents published");
    }

    #[test]
    fn volatile_query_parameters_are_not_part_of_a_link_identity() {
        assert_eq!(
            stable_link("https://e.gov.uk/news/1?utm_source=rss&id=4&_=1700000000#top"),
            "https://e.gov.uk/news/1?id=4"
        );
        assert_eq!(
            stable_link("https://e.gov.uk/news/1?utm_medium=x"),
            "https://e.gov.uk/news/1"
        );
    }

    #[test]
    fn an_html_page_is_not_a_feed() {
        let err = parse_feed(b"<!DOCTYPE html><html><body>Service unavailable</body></html>")
            .unwrap_err();
        assert!(err.0.contains("HTML"), "{err}");
        assert!(parse_feed(b"<rss><channel><item><title>x</ti").is_err());
    }
}
