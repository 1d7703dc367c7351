//! A shared cache of compiled message validators, keyed by contract version
//! and message, so each schema is compiled once per process.

use std::sync::Arc;

use dashmap::DashMap;

use crate::document::{ContractDocument, MessageKey};
use crate::names::ContractId;
use crate::schema::{CompiledContract, SchemaProblem, SchemaSet, compile_message};
use crate::validate::MessageValidator;

/// Compiled validators by `(contract, message)`. Contract versions are
/// immutable once registered, so an entry never goes stale.
#[derive(Debug, Default)]
pub struct ValidatorCache {
    validators: DashMap<(ContractId, MessageKey), Arc<MessageValidator>>,
}

impl ValidatorCache {
    /// The validator of `key` in `document`, compiled on first use.
    pub fn get_or_compile(
        &self,
        document: &ContractDocument,
        key: &MessageKey,
        external: &SchemaSet,
    ) -> Result<Arc<MessageValidator>, SchemaProblem> {
        let cache_key = (document.id(), key.clone());
        if let Some(found) = self.get(&cache_key) {
            return Ok(found);
        }
        // Compile outside any map guard: compiling may take a while and two
        // racing compilations of the same schema give equal validators.
        let compiled = Arc::new(compile_message(document, key, external)?);
        Ok(self.validators.entry(cache_key).or_insert(compiled).value().clone())
    }

    /// The cached validator of a message, if it was compiled already.
    pub fn get(&self, cache_key: &(ContractId, MessageKey)) -> Option<Arc<MessageValidator>> {
        self.validators.get(cache_key).map(|entry| entry.value().clone())
    }

    /// Adds every validator of an already compiled contract.
    pub fn insert_contract(&self, compiled: &CompiledContract) {
        for (key, validator) in &compiled.validators {
            self.validators
                .insert((compiled.id.clone(), key.clone()), validator.clone());
        }
    }

    /// Drops every validator of one contract version.
    pub fn remove_contract(&self, contract: &ContractId) {
        self.validators.retain(|(id, _), _| id != contract);
    }

    /// How many validators are cached.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }
}
