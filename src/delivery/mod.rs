//! Delivery: the ledger that sends every queued message exactly once, with leases, retries
//! and a rate limit.
