//! The weekly digest: what goes into one subscriber's e-mail for one ISO week. It reads the
//! store and never fetches.
//!
//! - `load`: one council's week (meetings, changes, notices, source health), read once per run.
//! - `build`: the run itself: per subscriber, put the digest together, record it, queue it.
//! - `contents`: the record of what one digest included (kept in `digests.contents`).
//! - `view`: that record in words, dates and links, for the templates.

pub mod build;
pub mod contents;
pub mod load;
pub mod view;

use std::path::PathBuf;

pub use build::{BuildMode, BuildReport, build_week};

use crate::mail::MailError;
use crate::mail::message::{MailContext, stored_digest};
use crate::mail::templates::{MailTemplate, Renderer};
use crate::ranking::RankingError;
use crate::settings::Settings;
use crate::store::{Store, StoreError};

/// Failures of a digest run.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the demand ranking: {0}")]
    Ranking(#[from] RankingError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("no confirmed, unsuppressed subscriber has that address")]
    NoSuchSubscriber,
    #[error("cannot encode a digest record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a recorded digest included, put back together from its record and its sections.
pub async fn stored_contents(
    store: &Store,
    digest_id: i64,
) -> Result<contents::DigestContents, MailError> {
    Ok(stored_digest(store, digest_id).await?.1)
}

/// The HTML of a recorded digest for its web page (`/digests/{token}`), with the same
/// unsubscribe and preferences links as the e-mail and no link to itself.
pub async fn render_digest_html_for_web(
    store: &Store,
    _settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    digest_id: i64,
) -> Result<String, MailError> {
    let (subscriber_id, contents) = stored_digest(store, digest_id).await?;
    let subscriber_id = subscriber_id
        .ok_or_else(|| MailError::NotFound(format!("the subscriber of digest {digest_id}")))?;
    let view = view::digest_view(&contents, ctx.digest_links(subscriber_id, None));
    renderer.render_html(MailTemplate::Digest, &view)
}
