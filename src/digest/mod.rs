//! The weekly digest: what goes into one subscriber's e-mail for one ISO week. It reads the
//! store and never fetches.
//!
//! - `contents`: the record of what one digest included (kept in `digests.contents`).
//! - `view`: that record in words, dates and links, for the templates.

pub mod contents;
pub mod view;
