//! The web server: council status pages, subscription flows, meeting and digest pages.
//!
//! - [`server`]: the shared state, the routes and layers, serving until shutdown;
//! - [`pages`]: pages that only read (find a council, a council, a meeting, a digest, health);
//! - [`forms`]: pages that change something (subscribe, request, confirm, preferences,
//!   unsubscribe);
//! - [`security`]: anti-forgery tokens, rate limits, field checks, security headers;
//! - [`mailer`]: the e-mails the forms send at once;
//! - [`metrics`]: the Prometheus exposition;
//! - [`views`]: the page templates.

pub mod forms;
pub mod mailer;
pub mod metrics;
pub mod pages;
pub mod security;
pub mod server;
pub mod views;

pub use server::{AppState, StartError, WebError, router, serve};
