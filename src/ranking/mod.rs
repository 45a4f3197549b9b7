//! Demand: ranking limited councils by their confirmed subscribers and promoting them to
//! full support within the limits operators set.
