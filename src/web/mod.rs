//! The web server: council status pages, subscription flows, meeting and digest pages.
