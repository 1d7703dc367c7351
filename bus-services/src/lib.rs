//! Services on the soabus: the runtime that connects them to NATS.
//!
//! - [`connection`] connects a component to the NATS server and refuses a
//!   server too old for soabus.
//! - [`server_binary`] finds the nats-server binary and checks its version.
//! - [`local_server`] runs that binary as a child process when no server is
//!   reachable (`soa demo`, `soa up`).
//! - [`wire`] writes and reads the soabus and NATS micro headers.
//! - [`runtime`] builds services from contracts and calls them with typed
//!   clients.
//! - [`orchestrator`] runs durable workflows that call those services.
//! - [`shop`] is the demo domain's five services, orchestrated and choreographed.
//! - [`order_view`] is the shop's read model, built from the shop's events.
//! - [`replicas`] raises an existing stream or bucket to the replicas a
//!   component is configured for (a cluster's copies).
//! - [`patience`] sets JetStream assets up again when a request timed out
//!   while a cluster elects leaders.
//! - `recent` remembers what a process last read or wrote of recent KV
//!   keys, so a compare-and-set needs no read first.

pub mod connection;
pub mod local_server;
pub mod orchestrator;
pub mod order_view;
pub mod patience;
mod recent;
pub mod replicas;
pub mod runtime;
pub mod server_binary;
pub mod shop;
pub mod wire;
