//! council-digest: polls UK councils' committee systems, ranks councils by subscriber demand,
//! and mails residents and professionals a weekly digest of what their councils will decide.
//!
//! Dependencies point inward: `domain` depends on nothing; `store`, `sources`, `ranking`,
//! `digest` and `mail` depend on `domain`; only the entry points (`cli`, `daemon`, `web`
//! handlers, scheduled jobs) wire the parts together.

pub mod cli;
pub mod clock;
pub mod daemon;
pub mod delivery;
pub mod digest;
pub mod domain;
pub mod mail;
pub mod ranking;
pub mod registry;
pub mod scheduler;
pub mod settings;
pub mod sources;
pub mod startup;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod tokens;
pub mod web;
