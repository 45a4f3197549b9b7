//! Mail: handlebars templates, well-formed messages (lettre), and the transports that carry
//! them (SMTP or .eml files).
//!
//! `templates` compiles the text and HTML templates once; `message` turns a view model or a
//! queued delivery into a `lettre::Message` with the list headers mail clients expect; `body`
//! encodes bodies once for the many recipients of a shared rendering.

pub mod body;
pub mod message;
mod smtp_send;
pub mod templates;
pub mod transport;

use crate::store::StoreError;

/// Failures while rendering or building a message; a caller acts on the variant.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A template does not parse or refers to a value the model lacks (strict mode).
    #[error("template `{name}`: {detail}")]
    Template { name: String, detail: String },
    /// A template file of the operator's folder cannot be read or is not one we know.
    #[error("template file {path}: {detail}")]
    TemplateFile { path: String, detail: String },
    /// A sender, recipient or reply address that lettre refuses.
    #[error("invalid address in {field}: {detail}")]
    Address { field: &'static str, detail: String },
    /// The message itself cannot be assembled.
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
    /// The DKIM key named in the settings cannot be used.
    #[error("DKIM: {0}")]
    Dkim(String),
    /// The delivery, digest, subscriber or council a message needs is gone.
    #[error("{0} not found")]
    NotFound(String),
    /// A stored payload or digest record cannot be read back.
    #[error("stored record {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
