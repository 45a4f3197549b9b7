//! Sources: fetching and parsing councils' committee systems and feeds (ModernGov web
//! service, iCalendar, RSS/Atom) and polling them into the meeting store. Sources never send
//! mail or touch web code.
//!
//! Parsers are pure functions from a response body to store-ready values (`moderngov`,
//! `ical`, `feed`, with `uktime` and `html` for the shared details); `fetch` is the one HTTP
//! client; `poll` runs one poll of many sources, one transaction per source.

pub mod feed;
pub mod fetch;
pub mod html;
pub mod ical;
pub mod moderngov;
pub mod poll;
pub mod uktime;
pub mod windows_zones;

use crate::store::StoreError;

/// Why a source's poll (or a whole poll run) failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be fetched (refused, timed out, an HTTP error, too large, an HTML
    /// page instead of data); retried later with backoff.
    #[error(transparent)]
    Fetch(crate::sources::fetch::FetchError),
    /// The source answered, but not with something readable; nothing of it was stored.
    #[error("{url}: {reason}")]
    Malformed { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built from the settings.
    #[error("{0}")]
    Client(String),
}
