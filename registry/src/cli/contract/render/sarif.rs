//! The SARIF 2.1.0 format, for code scanning (GitHub code scanning, IDEs):
//! one run of the `soa` tool whose driver lists the rules that fired (lint
//! rules by id, change codes by name), and a result per diagnostic with its
//! level, message, file, line and column, and our fingerprint as a partial
//! fingerprint. Ignored diagnostics carry an external suppression.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{Value, json};

use super::super::report::{Diagnostic, Kind, Report};
use super::description;

/// The key of our fingerprint among a result's partial fingerprints.
const FINGERPRINT_KEY: &str = "soaFingerprint/v1";

pub(super) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    // Rules in a stable order, so the same findings give the same file.
    let mut rules: BTreeMap<&str, &Diagnostic> = BTreeMap::new();
    for diagnostic in report.diagnostics() {
        rules.entry(diagnostic.rule.as_str()).or_insert(diagnostic);
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(index, id)| (*id, index)).collect();
    let rules: Vec<Value> = rules.values().map(|diagnostic| rule(diagnostic)).collect();

    let mut results = Vec::new();
    for document in &report.documents {
        for diagnostic in &document.diagnostics {
            let mut message = description(diagnostic);
            if let Some(hint) = &diagnostic.hint {
                message.push_str(&format!("\nHint: {hint}"));
            }
            let mut location = json!({
                "physicalLocation": {
                    "artifactLocation": { "uri": uri(document.annotation_path()) }
                }
            });
            if let Some(position) = diagnostic.position() {
                location["physicalLocation"]["region"] = json!({
                    "startLine": position.line,
                    "startColumn": position.column,
                });
            }
            if let Some(pointer) = &diagnostic.pointer {
                location["logicalLocations"] = json!([{ "fullyQualifiedName": pointer, "kind": "member" }]);
            }
            let mut result = json!({
                "ruleId": diagnostic.rule,
                "ruleIndex": index.get(diagnostic.rule.as_str()).copied().unwrap_or_default(),
                "level": diagnostic.level.as_str(),
                "message": { "text": message },
                "locations": [location],
                "partialFingerprints": { FINGERPRINT_KEY: diagnostic.fingerprint },
            });
            if let Some(class) = diagnostic.change_class() {
                result["properties"] = json!({ "change": class });
            }
            if diagnostic.ignored {
                result["suppressions"] = json!([{
                    "kind": "external",
                    "justification": format!("fingerprint {} is in the ignore file", diagnostic.fingerprint),
                }]);
            }
            results.push(result);
        }
    }

    let sarif = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "soa",
                    "fullName": "soa contract (soabus contract gate)",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": !report.has_input_error(),
                "exitCode": report.exit().code(),
            }],
            "results": results,
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &sarif).map_err(io::Error::other)?;
    writeln!(out)
}

/// The rule descriptor for the rule that produced `diagnostic`.
fn rule(diagnostic: &Diagnostic) -> Value {
    let (name, description) = match diagnostic.kind {
        Kind::Lint => {
            let name = diagnostic.name.clone().unwrap_or_else(|| diagnostic.rule.clone());
            let text = format!("Contract lint rule {} {name}", diagnostic.rule);
            (name, text)
        }
        Kind::Change => (
            diagnostic.rule.clone(),
            format!("Compatibility change {}", diagnostic.rule),
        ),
        Kind::Format => (diagnostic.rule.clone(), "Not a valid contract document".to_owned()),
        Kind::Input => (diagnostic.rule.clone(), "The input cannot be read".to_owned()),
        Kind::Comparison => (
            diagnostic.rule.clone(),
            format!("Comparison with the earlier version: {}", diagnostic.rule),
        ),
    };
    json!({
        "id": diagnostic.rule,
        "name": name,
        "shortDescription": { "text": description },
        "properties": { "kind": diagnostic.kind },
    })
}

/// A path as a SARIF artifact URI: relative paths stay relative (to the
/// repository root when the path came from git), characters outside the
/// URI path alphabet are percent-encoded, and absolute paths become `file://`.
fn uri(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b'@' | b'+' | b'=' => {
                encoded.push(char::from(byte));
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    if path.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uris() {
        assert_eq!(
            uri("contracts/catalog/orders.v1.json"),
            "contracts/catalog/orders.v1.json"
        );
        assert_eq!(uri("my contracts/a#1.json"), "my%20contracts/a%231.json");
        assert_eq!(uri("/tmp/x.json"), "file:///tmp/x.json");
    }
}
