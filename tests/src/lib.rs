//! Helpers for the end-to-end tests of soabus, which run against real nats-server processes.
//!
//! [`harness`] starts a nats-server of the test's own, [`cluster`] three of
//! them forming a JetStream cluster; the tests themselves live in one
//! integration-test binary, `tests/e2e`, one module per feature.

pub mod cluster;
pub mod faults;
pub mod fuzz;
pub mod harness;
pub mod protocol;
pub mod python;
pub mod registry;
pub mod shop;
pub mod synthetic;
pub mod workflows;

pub use cluster::{ClusterError, NatsCluster};
pub use harness::{HarnessError, NatsServer, NatsServerBuilder, init_tracing};
