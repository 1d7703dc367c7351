//! `soa describe SERVICE[@VERSION]`: one contract version as the registry
//! holds it (`get`), with its versions (`versions`), who depends on each of
//! its events and operations (`consumers`) and its live instances
//! (`instances`).
//!
//! Message schemas are shown compactly: the top-level properties with their
//! types, required ones marked `*`, a local `$ref` followed one level into
//! `$defs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use contracts::registry_api::{
    ConsumersRequest, GetRequest, GetResponse, InstanceInfo, InstancesRequest, VersionInfo, VersionsRequest, ops,
};
use contracts::{ContractDocument, ContractId, MemberName};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, parse_get_target, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions};

/// Arguments of `soa describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The service, its latest version; or one version (`inventory@1.2.0`), or the latest of a major (`inventory@1`).
    #[arg(value_name = "SERVICE[@VERSION]")]
    pub service: String,
    /// Print one JSON object: {document, digest, registered_at_ms, versions, instances, consumers, callers}.
    #[arg(long)]
    pub json: bool,
}

/// Everything `describe` shows, as its JSON output.
#[derive(Debug, Serialize)]
struct Description {
    /// The contract document.
    document: ContractDocument,
    /// Its digest.
    digest: String,
    /// When it was registered.
    registered_at_ms: u64,
    /// Every version of the service, oldest first.
    versions: Vec<VersionInfo>,
    /// The live instances of the service.
    instances: Vec<InstanceInfo>,
    /// The latest version of each consumer of each event, by event.
    consumers: BTreeMap<MemberName, Vec<ContractId>>,
    /// The latest version of each caller of each operation, by operation.
    callers: BTreeMap<MemberName, Vec<ContractId>>,
}

/// Asks the registry everything `describe` shows.
async fn gather(registry: &RegistryClient, request: &GetRequest) -> anyhow::Result<Description> {
    let GetResponse {
        document,
        digest,
        registered_at_ms,
    } = registry.call::<ops::Get>(request).await?;
    let service = document.service.clone();
    let versions = registry
        .call::<ops::Versions>(&VersionsRequest {
            service: service.clone(),
        })
        .await?
        .versions;
    let instances = registry
        .call::<ops::Instances>(&InstancesRequest {
            service: Some(service.clone()),
        })
        .await?
        .instances;
    let mut consumers = BTreeMap::new();
    let mut callers = BTreeMap::new();
    let members = document
        .events
        .keys()
        .map(|name| (name, true))
        .chain(document.operations.keys().map(|name| (name, false)));
    for (member, is_event) in members {
        let request = ConsumersRequest {
            service: service.clone(),
            major: Some(document.version.major()),
            member: member.clone(),
        };
        let dependents = match registry.try_call::<ops::Consumers>(&request).await {
            Ok(found) if is_event => found.consumers,
            Ok(found) => found.callers,
            // An older version's member that the major's latest dropped has no dependents listed.
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(error.into_anyhow()),
        };
        if is_event {
            consumers.insert(member.clone(), dependents);
        } else {
            callers.insert(member.clone(), dependents);
        }
    }
    Ok(Description {
        document,
        digest,
        registered_at_ms,
        versions,
        instances,
        consumers,
        callers,
    })
}

/// Runs `soa describe`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &DescribeArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let request = parse_get_target(&args.service)?;
    let (registry, client) = RegistryClient::connect(nats, "soa-describe").await?;
    let gathered = until_cancelled(&shutdown, gather(&registry, &request)).await;
    close(client).await;
    let description = gathered?;
    if args.json {
        write_json(out, &description)?;
    } else {
        write_description(out, &description, now_ms())?;
    }
    Ok(Exit::Success)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The human output.
fn write_description(out: &mut dyn Write, description: &Description, now_ms: u64) -> std::io::Result<()> {
    let document = &description.document;
    let root = document.to_value();
    writeln!(out, "{}", document.id())?;
    writeln!(out, "  {}", document.description)?;
    let latest = description.versions.last().map(|info| &info.version);
    let versions: Vec<String> = description
        .versions
        .iter()
        .map(|info| {
            let mut marks = Vec::new();
            if info.version == document.version {
                marks.push("shown");
            }
            if Some(&info.version) == latest {
                marks.push("latest");
            }
            if marks.is_empty() {
                info.version.to_string()
            } else {
                format!("{} ({})", info.version, marks.join(", "))
            }
        })
        .collect();
    let header = [
        ["owner".to_owned(), document.owner.clone()],
        ["tags".to_owned(), list_or_dash(&document.tags)],
        ["compatibility".to_owned(), policy_name(document)],
        ["digest".to_owned(), description.digest.clone()],
        [
            "registered".to_owned(),
            ago(now_ms.saturating_sub(description.registered_at_ms)),
        ],
        ["versions".to_owned(), versions.join(", ")],
    ];
    write_table(out, 2, &header, &[false; 2])?;

    writeln!(out, "\nOperations (* = required)")?;
    if document.operations.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (name, operation) in &document.operations {
        let mut line = format!("  {name}  {}", operation.subject);
        if operation.idempotent {
            line.push_str("  idempotent");
        }
        writeln!(out, "{line}")?;
        if let Some(text) = &operation.description {
            writeln!(out, "    {text}")?;
        }
        let callers = description.callers.get(name).map(Vec::as_slice).unwrap_or_default();
        let rows = [
            ["request".to_owned(), message_summary(&operation.request, &root)],
            ["response".to_owned(), message_summary(&operation.response, &root)],
            ["errors".to_owned(), list_or_dash(&operation.errors)],
            ["callers".to_owned(), ids_or_none(callers)],
        ];
        write_table(out, 4, &rows, &[false; 2])?;
    }

    writeln!(out, "\nEvents (* = required)")?;
    if document.events.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (name, event) in &document.events {
        writeln!(out, "  {name}  {}", event.subject)?;
        if let Some(text) = &event.description {
            writeln!(out, "    {text}")?;
        }
        let consumers = description.consumers.get(name).map(Vec::as_slice).unwrap_or_default();
        let rows = [
            ["payload".to_owned(), message_summary(&event.payload, &root)],
            ["consumers".to_owned(), ids_or_none(consumers)],
        ];
        write_table(out, 4, &rows, &[false; 2])?;
    }

    if !document.calls.is_empty() || !document.consumes.is_empty() {
        writeln!(out, "\nDepends on")?;
        let calls: Vec<String> = document.calls.iter().map(ToString::to_string).collect();
        let consumes: Vec<String> = document
            .consumes
            .iter()
            .map(|consumption| consumption.event.to_string())
            .collect();
        let rows = [
            ["calls".to_owned(), list_or_dash(&calls)],
            ["consumes".to_owned(), list_or_dash(&consumes)],
        ];
        write_table(out, 2, &rows, &[false; 2])?;
    }

    let instances = &description.instances;
    if instances.is_empty() {
        writeln!(out, "\nNo live instances.")?;
    } else {
        writeln!(out, "\nInstances ({})", instances.len())?;
        let mut rows = vec![["ID", "CONTRACT", "HEALTHY", "DRIFT", "LAST BEAT"].map(str::to_owned)];
        rows.extend(instances.iter().map(|instance| {
            [
                instance.instance_id.clone(),
                instance.contract.to_string(),
                yes_no(instance.healthy),
                yes_no(instance.drift),
                ago(instance.last_beat_ms_ago),
            ]
        }));
        write_table(out, 2, &rows, &[false; 5])?;
    }
    Ok(())
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn ids_or_none(ids: &[ContractId]) -> String {
    if ids.is_empty() {
        "none registered".to_owned()
    } else {
        ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

fn policy_name(document: &ContractDocument) -> String {
    serde_json::to_value(document.compatibility)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", document.compatibility))
}

/// `350 ms ago`, `4.2 s ago`, `12 min ago`, `3 h ago`, `5 days ago`.
fn ago(ms: u64) -> String {
    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms < SECOND => format!("{ms} ms ago"),
        ms if ms < MINUTE => format!("{}.{} s ago", ms / SECOND, ms % SECOND / 100),
        ms if ms < HOUR => format!("{} min ago", ms / MINUTE),
        ms if ms < DAY => format!("{} h ago", ms / HOUR),
        ms if ms < 2 * DAY => "1 day ago".to_owned(),
        ms => format!("{} days ago", ms / DAY),
    }
}

/// The deepest a type is spelled out (`Line[][]`) before it is cut short.
const MAX_TYPE_DEPTH: usize = 4;

/// A message schema in one line: `ReserveStock {order_id*: OrderId, items*:
/// StockLine[]}` — a local `$ref` at the top followed one level into the
/// document, the properties of an object with their types (required first,
/// marked `*`), anything else as its type.
pub(super) fn message_summary(schema: &Value, root: &Value) -> String {
    let (name, target) = match local_target(schema, root) {
        Some((name, target)) => (Some(name), target),
        None => (None, schema),
    };
    let body = object_summary(target).unwrap_or_else(|| type_name(target, 0));
    match name {
        Some(name) if body.starts_with('{') => format!("{name} {body}"),
        Some(name) => format!("{name} ({body})"),
        None => body,
    }
}

/// The name and the schema a local `$ref` (`#/$defs/Name`) points to.
fn local_target<'a>(schema: &Value, root: &'a Value) -> Option<(String, &'a Value)> {
    let reference = schema.get("$ref")?.as_str()?;
    let pointer = reference.strip_prefix('#')?;
    let target = root.pointer(pointer)?;
    Some((last_segment(pointer), target))
}

/// `{a*: T, b: U}` for a schema with properties.
fn object_summary(schema: &Value) -> Option<String> {
    let properties = schema.get("properties")?.as_object()?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<String> = required
        .iter()
        .filter_map(|name| Some(format!("{name}*: {}", type_name(properties.get(*name)?, 1))))
        .collect();
    fields.extend(
        properties
            .iter()
            .filter(|(name, _)| !required.contains(&name.as_str()))
            .map(|(name, property)| format!("{name}: {}", type_name(property, 1))),
    );
    let open = match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => "",
        None if schema.get("unevaluatedProperties") == Some(&Value::Bool(false)) => "",
        _ if fields.is_empty() => "...",
        _ => ", ...",
    };
    Some(format!("{{{}{open}}}", fields.join(", ")))
}

/// A property's type in a few characters: a `$ref` by its name, `T[]` for an
/// array, alternatives with `|`, an enumeration by its values.
fn type_name(schema: &Value, depth: usize) -> String {
    if depth > MAX_TYPE_DEPTH {
        return "…".to_owned();
    }
    let Value::Object(object) = schema else {
        return match schema {
            Value::Bool(false) => "never".to_owned(),
            _ => "any".to_owned(),
        };
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return ref_name(reference);
    }
    if let Some(constant) = object.get("const") {
        return constant.to_string();
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array) {
        let mut shown: Vec<String> = values.iter().take(5).map(Value::to_string).collect();
        if values.len() > shown.len() {
            shown.push("…".to_owned());
        }
        return shown.join("|");
    }
    for (keyword, separator) in [("oneOf", "|"), ("anyOf", "|"), ("allOf", " & ")] {
        if let Some(branches) = object.get(keyword).and_then(Value::as_array) {
            let names: Vec<String> = branches.iter().map(|branch| type_name(branch, depth + 1)).collect();
            return names.join(separator);
        }
    }
    match object.get("type") {
        Some(Value::String(kind)) => one_type(kind, object, depth),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(|kind| one_type(kind, object, depth))
            .collect::<Vec<_>>()
            .join("|"),
        _ if object.contains_key("properties") => "object".to_owned(),
        _ => "any".to_owned(),
    }
}

/// One JSON Schema type; an array with the type of its items.
fn one_type(kind: &str, object: &serde_json::Map<String, Value>, depth: usize) -> String {
    if kind != "array" {
        return kind.to_owned();
    }
    match object.get("items") {
        Some(items) => {
            let item = type_name(items, depth + 1);
            if item.contains(['|', ' ']) {
                format!("({item})[]")
            } else {
                format!("{item}[]")
            }
        }
        None => "array".to_owned(),
    }
}

/// `Name` for `#/$defs/Name`, `payments@1#Money` for `soa://payments@1#/$defs/Money`.
fn ref_name(reference: &str) -> String {
    match reference.split_once('#') {
        Some(("", pointer)) => last_segment(pointer),
        Some((base, pointer)) => format!(
            "{}#{}",
            base.strip_prefix(contracts::schema::SOA_SCHEME).unwrap_or(base),
            last_segment(pointer)
        ),
        None => reference.to_owned(),
    }
}

/// The last token of a JSON pointer, unescaped.
fn last_segment(pointer: &str) -> String {
    pointer
        .rsplit('/')
        .next()
        .unwrap_or(pointer)
        .replace("~1", "/")
        .replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schemas_are_summarized_in_one_line() {
        let root = json!({
            "$defs": {
                "Reserve": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "note": {"type": ["string", "null"]},
                        "order_id": {"$ref": "#/$defs/OrderId"},
                        "items": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
                        "price": {"$ref": "soa://payments@1#/$defs/Money"},
                        "mode": {"enum": ["fast", "slow"]}
                    },
                    "required": ["order_id", "items"]
                },
                "OrderId": {"type": "string"}
            }
        });
        assert_eq!(
            message_summary(&json!({"$ref": "#/$defs/Reserve"}), &root),
            "Reserve {order_id*: OrderId, items*: Line[], mode: \"fast\"|\"slow\", note: string|null, price: payments@1#Money}"
        );
        assert_eq!(
            message_summary(&json!({"$ref": "#/$defs/OrderId"}), &root),
            "OrderId (string)"
        );
        assert_eq!(
            message_summary(
                &json!({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
                &root
            ),
            "{ok: boolean, ...}"
        );
        assert_eq!(message_summary(&json!({}), &root), "any");
        assert_eq!(
            message_summary(
                &json!({"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}),
                &root
            ),
            "(string|integer)[]"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(ago(350), "350 ms ago");
        assert_eq!(ago(4_250), "4.2 s ago");
        assert_eq!(ago(12 * 60_000 + 5), "12 min ago");
        assert_eq!(ago(3 * 3_600_000), "3 h ago");
        assert_eq!(ago(5 * 86_400_000), "5 days ago");
    }
}
