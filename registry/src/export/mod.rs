//! What the registry knows, written for other tools: AsyncAPI 3.0 documents
//! of one service or of the whole system ([`asyncapi`]), and the dependency
//! graph as Mermaid or Graphviz DOT ([`graph`]).
//!
//! Everything here is sans I/O: owned contract documents and graph answers
//! in, JSON values and text out. The `soa asyncapi` and `soa graph` commands
//! fetch the inputs from the registry over NATS and only print.

pub mod asyncapi;
pub mod graph;
mod payload;

#[cfg(test)]
mod tests;
