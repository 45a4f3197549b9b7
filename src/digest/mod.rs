//! The weekly digest: what goes into one subscriber's e-mail for one ISO week. It reads the
//! store and never fetches.
