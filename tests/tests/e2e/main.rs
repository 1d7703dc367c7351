//! The end-to-end tests of soabus: one test binary, one module per feature.
//!
//! One binary links once and lets the tests run in parallel within it.

mod cli;
mod harness;
