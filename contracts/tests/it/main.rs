//! Integration tests of the `contracts` crate: one binary, one module per feature.

// Test helpers stop at the line that failed, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod catalog;
mod compat_contracts;
mod compat_properties;
mod compat_table;
mod documents;
mod validation;

/// A minimal valid contract document, as text, for tests to start from.
pub(crate) fn sample_document() -> serde_json::Value {
    serde_json::json!({
        "contract": "soabus/v1",
        "service": "inventory",
        "version": "1.3.0",
        "description": "Stock levels and reservations",
        "owner": "fulfilment-team",
        "tags": ["shop"],
        "operations": {
            "reserve": {
                "subject": "shop.inventory.v1.reserve",
                "description": "Reserve stock for an order",
                "request": {"$ref": "#/$defs/Reservation"},
                "response": {"type": "object", "properties": {"reservation_id": {"type": "string"}}, "required": ["reservation_id"]},
                "errors": ["OUT_OF_STOCK"],
                "idempotent": true
            }
        },
        "events": {
            "reserved": {
                "subject": "shop.inventory.v1.reserved",
                "description": "Stock was reserved",
                "payload": {"type": "object", "properties": {"order_id": {"type": "string"}}}
            }
        },
        "consumes": ["orders@1#placed"],
        "$defs": {
            "Reservation": {
                "type": "object",
                "additionalProperties": false,
                "required": ["order_id", "quantity"],
                "properties": {
                    "order_id": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                    "quantity": {"type": "integer", "minimum": 1}
                }
            }
        }
    })
}
