//! The soabus registry and the `soa` command-line tool.
//!
//! This edition holds the command line only: [`cli`] parses the arguments and
//! runs `soa contract check|diff|export`, `soa discover` and `soa demo`. The
//! registry service (catalogue indexes, stores, NATS and HTTP APIs) joins it
//! as its own modules; the CLI will then reach it through NATS messages whose
//! types live in `contracts`, as any other client does.
//!
//! The `soa` binary (`src/main.rs`) only sets up tracing, the runtime and the
//! signal handling, and calls [`cli::run`]; everything else is here, so tests
//! drive the command line through [`cli::run`] with captured output.

pub mod catalog;
pub mod cli;
pub mod export;
pub mod http;
pub mod metrics;
#[cfg(test)]
mod sample;
pub mod server;
pub mod store;
