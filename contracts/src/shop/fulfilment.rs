//! The `fulfilment` workflow: the orchestrated way through the shop. Its
//! definition is checked in as `contracts/workflows/fulfilment.v1.json` and
//! embedded here, so the orders service starts it and consumes its
//! `finished` event without reading a file; its generated contract is part
//! of the catalogue like any service's.
//!
//! The definition lives beside `catalog/`, not inside it: everything under
//! `catalog/` is a contract document (`soa contract check contracts/catalog`
//! checks every JSON file there), and a workflow definition is not one.

use crate::document::ContractDocument;
use crate::names::NameError;
use crate::parse::{DocumentError, Limits};
use crate::workflow::{WorkflowDefinition, parse_definition, workflow_contract};

/// The definition's source text, as checked in.
pub const DEFINITION: &str = include_str!("../../workflows/fulfilment.v1.json");

/// The file name the definition is reported under.
pub const DEFINITION_FILE: &str = "fulfilment.v1.json";

/// The workflow's name: its generated contract's service name.
pub const NAME: &str = "fulfilment";

/// The parsed definition.
pub fn definition() -> Result<WorkflowDefinition, DocumentError> {
    parse_definition(DEFINITION_FILE, DEFINITION, &Limits::default())
}

/// The `fulfilment@1` contract the orchestrator publishes the workflow
/// under: `start` and the `finished` event.
pub fn contract() -> Result<ContractDocument, NameError> {
    // The embedded text is checked by the tests below; a definition that no
    // longer parses is reported like any other broken catalogue entry.
    let definition =
        definition().map_err(|error| NameError::new("workflow definition", DEFINITION_FILE, error.to_string()))?;
    workflow_contract(&definition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_definition_parses_and_yields_the_fulfilment_contract() {
        let definition = definition().unwrap();
        assert_eq!(definition.name.as_str(), NAME);
        let contract = contract().unwrap();
        assert_eq!(contract.id().to_string(), "fulfilment@1.1.0");
        assert!(contract.events.keys().any(|event| event.as_str() == "finished"));
        assert!(
            contract
                .operations
                .keys()
                .any(|operation| operation.as_str() == "start")
        );
    }

    #[test]
    fn the_embedded_definition_is_the_one_the_workflow_tests_use() {
        // The workflow module's unit tests read their own copy under
        // tests/data; both must describe the same workflow.
        assert_eq!(
            DEFINITION,
            include_str!("../../tests/data/workflows/fulfilment.v1.json")
        );
    }
}
