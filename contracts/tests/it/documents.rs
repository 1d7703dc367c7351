//! Reading documents.
