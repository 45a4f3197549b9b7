//! Subscribers and subscriptions: double opt-in, confirmation, unsubscribe and preferences.
//! These operations are shared by the web pages and the CLI.
