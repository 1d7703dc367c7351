//! The fuzz targets' bodies: `tests/src/fuzz.rs`, compiled here as it is, so
//! the regression test in `tests` replays saved inputs through the same code.

#[path = "../../tests/src/fuzz.rs"]
pub mod bodies;

pub use bodies::{compat, contract_document, envelope};
