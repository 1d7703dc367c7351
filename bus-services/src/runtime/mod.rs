//! The service runtime: build a service from a contract and handlers, call
//! services with a typed client, and carry the flow's correlation id and
//! trace context across every message.

mod client;
mod context;
mod error;
mod events;
pub mod micro;
mod registration;
mod serve;
mod service;
pub mod trace;
pub(crate) mod unreadable;

pub use client::{CallError, CallOptions, ServiceClient};
pub use context::{Context, Propagation};
pub use error::ServiceError;
pub use events::{
    ConsumerConfig, EventContext, EventError, EventPublisher, PULL_EXPIRY, ProcessedKeys, consume, consume_json,
    dead_letter, ensure_event_stream, ensure_event_stream_with_replicas,
};
pub use registration::RegistrationConfig;
pub use serve::{ServeError, serve};
pub use service::{BuildError, RunError, Service, ServiceBuilder, ServiceConfig, check_request_envelope};
pub use trace::TraceContext;
