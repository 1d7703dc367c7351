//! The end-to-end tests of soabus: one test binary, one module per feature.
//!
//! One binary links once and lets the tests run in parallel within it.

// All of this binary is tests, helpers included: as clippy.toml allows in
// tests, a failed set-up stops at the line that failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod cli;
mod cluster;
mod contract_gate;
mod discover;
mod dlq;
mod events;
mod export;
mod faults;
mod guards;
mod harness;
mod hostile;
mod http;
mod orchestrator;
mod order_view;
mod permissions;
mod polyglot;
mod registry;
mod registry_cli;
mod runtime;
mod shop;
mod slow_poison;
mod stores;
mod up_timeline;
mod web;
mod workflow_cli;
