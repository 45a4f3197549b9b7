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
pub mod uktime;
pub mod windows_zones;
