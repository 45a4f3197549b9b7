//! Helpers shared by the integration tests: `mod support;` in a test file.
#![allow(dead_code)]

pub mod seed;
pub mod smtp;
