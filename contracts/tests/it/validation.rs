//! Validating messages against compiled contracts.
