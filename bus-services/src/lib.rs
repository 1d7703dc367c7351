//! Services on the soabus: the runtime that connects them to NATS.
//!
//! [`connection`] connects a component to the NATS server and refuses a
//! server too old for soabus.

pub mod connection;
