//! Synthetic contract documents for benchmarks at scale: the shop's
//! inventory contract renamed to `svc-00000`, `svc-00001`, ..., with
//! subjects `bench.<service>.v1.<member>`, no dependencies, and each later
//! minor version a compatible change (a new operation description and one
//! more optional request property).

use serde_json::{Value, json};

/// The operation whose description changes between versions.
pub const CHANGED_OPERATION: &str = "reserve";

/// Generates the documents.
#[derive(Debug, Clone)]
pub struct SyntheticCatalog {
    base: Value,
}

impl SyntheticCatalog {
    /// A generator based on the inventory contract, without its dependencies.
    pub fn new() -> Result<Self, contracts::NameError> {
        let mut base = contracts::shop::inventory::contract()?.to_value();
        if let Some(object) = base.as_object_mut() {
            object.remove("consumes");
            object.remove("calls");
        }
        Ok(Self { base })
    }

    /// Version `1.<minor>.0` of service number `index`.
    pub fn document(&self, index: usize, minor: usize) -> Value {
        let service = service_name(index);
        let mut document = self.base.clone();
        document["service"] = json!(service);
        document["version"] = json!(format!("1.{minor}.0"));
        for members in ["operations", "events"] {
            if let Some(members) = document[members].as_object_mut() {
                for (name, member) in members.iter_mut() {
                    member["subject"] = json!(subject(&service, name));
                }
            }
        }
        if minor > 0 {
            document["operations"][CHANGED_OPERATION]["description"] =
                json!(format!("Reserve stock for an order (revision {minor})"));
            let properties = &mut document["$defs"]["ReserveStock"]["properties"];
            for field in 1..=minor {
                properties[format!("hint_{field}")] = json!({
                    "type": "string",
                    "maxLength": 64,
                    "description": format!("A free-form hint for the warehouse, added in 1.{field}.0."),
                });
            }
        }
        document
    }
}

/// The name of service number `index`: `svc-00042`.
pub fn service_name(index: usize) -> String {
    format!("svc-{index:05}")
}

/// The subject of `member` of `service`: `bench.<service>.v1.<member>`.
pub fn subject(service: &str, member: &str) -> String {
    format!("bench.{service}.v1.{member}")
}
