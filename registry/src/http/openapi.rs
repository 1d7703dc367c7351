//! The OpenAPI 3.1 document of the HTTP API.
//!
//! utoipa describes the operations: each handler's `#[utoipa::path]` gives
//! its method, path, parameters and responses, and `utoipa_axum` builds the
//! router and the paths from the same list. The message schemas come from
//! schemars instead, because the API types live in `contracts` and derive
//! `JsonSchema` (the registry's own contract is built from them): the
//! [`components`] here are stand-ins that only name a schema, and
//! [`document`] replaces the stand-ins with schemars' JSON Schema 2020-12
//! output (OpenAPI 3.1's own dialect), written with references to
//! `#/components/schemas/`, and adds the contract document format from its
//! shipped meta-schema. Copying JSON keeps every keyword, which
//! utoipa's typed schema model would not (boolean schemas, `const`).

use std::borrow::Cow;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};

/// The name the contract document's schema has among the components.
const CONTRACT_DOCUMENT: &str = "ContractDocument";

/// Declares a stand-in per API type and the function that generates the
/// real schemas of all of them.
macro_rules! components {
    ($($name:ident => $type:ty),* $(,)?) => {
        /// Stand-ins for the API types in `#[utoipa::path]` annotations:
        /// each names the component its type's schemars schema becomes.
        pub(crate) mod components {
            use super::*;

            $(
                #[doc = concat!("The schema of `", stringify!($type), "`.")]
                pub(crate) struct $name;

                impl utoipa::PartialSchema for $name {
                    fn schema() -> RefOr<Schema> {
                        stand_in()
                    }
                }

                impl utoipa::ToSchema for $name {
                    fn name() -> Cow<'static, str> {
                        <$type as schemars::JsonSchema>::schema_name()
                    }
                }
            )*

            /// The contract document format (`contracts/schema/contract.schema.json`).
            pub(crate) struct ContractDocument;

            impl utoipa::PartialSchema for ContractDocument {
                fn schema() -> RefOr<Schema> {
                    stand_in()
                }
            }

            impl utoipa::ToSchema for ContractDocument {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(CONTRACT_DOCUMENT)
                }
            }
        }

        /// Adds every API type's schema, and those it refers to, to `generator`.
        fn generate_all(generator: &mut SchemaGenerator) {
            $( generator.subschema_for::<$type>(); )*
        }
    };
}

components! {
    ListResponse => contracts::registry_api::ListResponse,
    GetResponse => contracts::registry_api::GetResponse,
    VersionsResponse => contracts::registry_api::VersionsResponse,
    InstancesResponse => contracts::registry_api::InstancesResponse,
    RegisterResponse => contracts::registry_api::RegisterResponse,
    CheckResponse => contracts::registry_api::CheckResponse,
    ResolveResponse => contracts::registry_api::ResolveResponse,
    SearchResponse => contracts::registry_api::SearchResponse,
    ConsumersResponse => contracts::registry_api::ConsumersResponse,
    GraphResponse => contracts::registry_api::GraphResponse,
    ErrorBody => contracts::ErrorBody,
    Health => crate::http::routes::Health,
}

/// What a stand-in says until [`document`] replaces it.
fn stand_in() -> RefOr<Schema> {
    ObjectBuilder::new().build().into()
}

/// The document's top: title, version, tags, and the bearer scheme.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(
            title = "soabus registry",
            description = "Every contract version of every service, the live instances, and who depends on whom. \
                The same queries as the NATS API `soa.registry.v1.*`; errors are the bus's error body \
                `{\"code\", \"message\", \"details\"}` with the HTTP status of its code.",
            license(name = "Apache-2.0", identifier = "Apache-2.0"),
        ),
        tags(
            (name = "services", description = "Contracts, their versions and instances; registration and compatibility checks"),
            (name = "subjects", description = "Which operation or event a subject belongs to"),
            (name = "dependencies", description = "Consumers, callers and the dependency graph"),
            (name = "operations", description = "Health, metrics and this document"),
        )
    )]
    struct Base;

    let mut api = <Base as utoipa::OpenApi>::openapi();
    contracts::registry_api::CONTRACT_VERSION.clone_into(&mut api.info.version);
    api
}

/// The finished document: utoipa's paths with schemars' schemas.
pub(super) fn document(api: utoipa::openapi::OpenApi) -> Value {
    let mut document = match serde_json::to_value(&api) {
        Ok(document) => document,
        Err(err) => {
            tracing::error!(error = %err, "The OpenAPI document could not be written.");
            return json!({});
        }
    };
    if let Some(top) = document.as_object_mut() {
        let components = top.entry("components").or_insert_with(|| Value::Object(Map::new()));
        if let Some(components) = components.as_object_mut() {
            components.insert("schemas".to_owned(), Value::Object(schemas()));
            components.insert(
                "securitySchemes".to_owned(),
                json!({
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "The registry's write token (`soa registry serve --http-token`, or SOA_REGISTRY_TOKEN)"
                    }
                }),
            );
        }
    }
    document
}

/// Every component schema: the API types from schemars, and the contract
/// document format from its shipped meta-schema.
fn schemas() -> Map<String, Value> {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
        })
        // The API sends these types: describe what it writes.
        .for_serialize()
        .into_generator();
    generate_all(&mut generator);
    let mut schemas = generator.take_definitions(true);
    schemas.extend(contract_document_schemas());
    // `GetResponse.document` is a plain JSON value to schemars (the model
    // type has no schema of its own); over HTTP it is a contract document.
    if let Some(document) = schemas
        .get_mut("GetResponse")
        .and_then(|schema| schema.pointer_mut("/properties/document"))
        .and_then(Value::as_object_mut)
    {
        document.insert(
            "$ref".to_owned(),
            Value::String(format!("#/components/schemas/{CONTRACT_DOCUMENT}")),
        );
    }
    schemas
}

/// The contract meta-schema as components: `ContractDocument` and one
/// `ContractDocument.<name>` per definition of its `$defs`, its references
/// rewritten to point there. Tools that do not follow an embedded `$id`
/// (most OpenAPI renderers) can then resolve every reference.
fn contract_document_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    let mut root = match serde_json::from_str::<Value>(contracts::parse::CONTRACT_META_SCHEMA) {
        Ok(Value::Object(root)) => root,
        Ok(_) | Err(_) => {
            tracing::error!("The contract meta-schema is not a JSON object.");
            schemas.insert(CONTRACT_DOCUMENT.to_owned(), json!({"type": "object"}));
            return schemas;
        }
    };
    root.remove("$id");
    root.remove("$schema");
    if let Some(Value::Object(definitions)) = root.remove("$defs") {
        for (name, mut definition) in definitions {
            rewrite_references(&mut definition);
            schemas.insert(format!("{CONTRACT_DOCUMENT}.{name}"), definition);
        }
    }
    let mut root = Value::Object(root);
    rewrite_references(&mut root);
    schemas.insert(CONTRACT_DOCUMENT.to_owned(), root);
    schemas
}

/// `#/$defs/x` becomes `#/components/schemas/ContractDocument.x`.
fn rewrite_references(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(reference) if key == "$ref" => {
                        if let Some(name) = reference.strip_prefix("#/$defs/") {
                            *reference = format!("#/components/schemas/{CONTRACT_DOCUMENT}.{name}");
                        }
                    }
                    _ => rewrite_references(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_references),
        _ => {}
    }
}
