//! The bodies of the fuzz targets in `fuzz/`, shared with the regression test
//! that replays `tests/corpus/fuzz/<target>/` on stable Rust.
//!
//! Each body takes arbitrary bytes, runs them through the code a peer or a
//! user reaches with them, and checks a few properties that must hold for any
//! input (a document read back from its own JSON is the same document; a
//! request our client builds passes our own service's check). It must return
//! without panicking and in time. `fuzz/src/lib.rs` compiles this very file
//! (by `#[path]`), so a saved input replays through the code that found it.

use std::str::FromStr;
use std::sync::OnceLock;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bus_services::runtime::{TraceContext, check_request_envelope};
use bus_services::wire::{self, CorrelationId, Envelope};
use contracts::compat::{Mode, check_consumers, check_history, diff_contracts, diff_schemas};
use contracts::envelope::headers;
use contracts::lint::has_errors;
use contracts::parse::parse_json;
use contracts::{
    ContractDocument, ContractId, ContractRef, ErrorBody, ErrorCode, Limits, MemberName, SchemaSet, ServiceName,
    Subject, SubjectPattern, Version, check_document, compile_contract,
};
use serde_json::Value;

/// A fuzz target's body: any bytes in, no panic out.
pub type Body = fn(&[u8]);

/// Every fuzz target by name (the name of its binary in `fuzz/fuzz_targets/`
/// and of its folder in `tests/corpus/fuzz/`), with its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("contract_document", contract_document),
    ("compat", compat),
    ("envelope", envelope),
];

/// Separates the two documents of a [`compat`] input: a raw NUL byte cannot
/// occur in JSON text, so either side is any JSON the checker may be given.
pub const COMPAT_SEPARATOR: u8 = 0;

/// The shipped catalogue's contracts, as the registry would hold them: the
/// targets of `soa://` references and the served contract of [`envelope`].
const CATALOG: &[&str] = &[
    include_str!("../../contracts/catalog/fulfilment.v1.json"),
    include_str!("../../contracts/catalog/inventory.v1.json"),
    include_str!("../../contracts/catalog/notifications.v1.json"),
    include_str!("../../contracts/catalog/order-view.v1.json"),
    include_str!("../../contracts/catalog/orders.v1.json"),
    include_str!("../../contracts/catalog/payments.v1.json"),
    include_str!("../../contracts/catalog/registry.v1.json"),
    include_str!("../../contracts/catalog/shipping.v1.json"),
];

/// The catalogue's documents, parsed once.
fn catalog() -> &'static [ContractDocument] {
    static DOCUMENTS: OnceLock<Vec<ContractDocument>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        CATALOG
            .iter()
            .filter_map(|text| ContractDocument::parse("catalog", text, &Limits::default()).ok())
            .collect()
    })
}

/// The catalogue as a [`SchemaSet`], so `soa://` references in fuzzed
/// documents resolve as they would in the registry.
fn catalog_schemas() -> &'static SchemaSet {
    static SCHEMAS: OnceLock<SchemaSet> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut schemas = SchemaSet::default();
        for document in catalog() {
            schemas.add_contract(document);
        }
        schemas
    })
}

/// The contract parser: bytes through `check_document` (limits, JSON, the
/// meta-schema, the typed model, every lint including compiling each message
/// and checking its declared examples), as the CLI and the registry read a
/// document they are given. A document without lint errors must compile, its
/// validators must run, and its own JSON must read back as the same document.
pub fn contract_document(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let limits = Limits::default();
    let (document, findings) = match check_document("fuzz.json", &text, &limits, catalog_schemas()) {
        Ok(checked) => checked,
        Err(error) => {
            let problems = error.problems();
            assert!(!problems.is_empty(), "a refused document names no problem: {error}");
            let _ = error.to_string();
            return;
        }
    };
    for finding in &findings {
        let _ = finding.to_string();
    }
    let value = document.to_value();
    if !has_errors(&findings) {
        let compiled = compile_contract(&document, catalog_schemas());
        assert!(
            compiled.is_ok(),
            "a document that lints without errors does not compile: {:?}",
            compiled.as_ref().err()
        );
        for validator in compiled.iter().flat_map(|compiled| compiled.validators.values()) {
            // Any value will do as an instance; the document itself is at hand.
            let _ = validator.validate(&value);
            let _ = validator.validate_bytes(data);
        }
    }
    // The registry stores the canonical form and reads it again later.
    let pretty = document.to_pretty_json();
    let unlimited = Limits {
        max_document_bytes: usize::MAX,
        max_depth: usize::MAX,
    };
    let again = ContractDocument::parse("again.json", &pretty, &unlimited);
    assert_eq!(
        again.as_ref().map(ContractDocument::digest),
        Ok(document.digest()),
        "a document's own JSON does not read back as the same document"
    );
    let _ = ContractDocument::from_json_value("value", &value, None);
}

/// The compatibility checker: the input is two JSON texts separated by a NUL
/// byte (one text is compared with itself). Both are diffed as bare schemas
/// both ways, and, when both are contract documents, as contracts in every
/// mode, as a history and as producer and consumer. It must end, never panic,
/// and never call a schema a definite break of itself.
pub fn compat(data: &[u8]) {
    let (old_bytes, new_bytes) = match data.iter().position(|&byte| byte == COMPAT_SEPARATOR) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let limits = Limits::default();
    let read = |bytes: &[u8]| parse_json("fuzz.json", &String::from_utf8_lossy(bytes), &limits).ok();
    let (Some(old), Some(new)) = (read(old_bytes), read(new_bytes)) else {
        return;
    };
    for (a, b) in [(&old, &new), (&new, &old)] {
        let changes = diff_schemas(a, b);
        for change in &changes {
            let _ = change.breaks(Mode::Full);
        }
        let _ = contracts::compat::verdict(&changes, Mode::Backward);
    }
    for schema in [&old, &new] {
        let changes = diff_schemas(schema, schema);
        let breaking: Vec<_> = changes
            .iter()
            .filter(|change| change.breaks(Mode::Full) == Some(true))
            .collect();
        assert!(breaking.is_empty(), "a schema breaks itself: {breaking:?}");
    }
    let document = |value: &Value| ContractDocument::from_json_value("fuzz.json", value, None).ok();
    let (Some(old), Some(new)) = (document(&old), document(&new)) else {
        return;
    };
    for (a, b) in [(&old, &new), (&new, &old)] {
        for mode in [Mode::Backward, Mode::Forward, Mode::Full] {
            let _ = diff_contracts(a, b, mode);
        }
        let report = check_history(std::slice::from_ref(a), b);
        let _ = report.verdict();
        let _ = check_consumers(Some(a), b, &[a.clone(), b.clone()]);
    }
}

/// Envelope and header decoding: the input is a NATS header block as the
/// server sends it (`NATS/1.0` line, `Name: value` lines), an empty line,
/// then the payload. Every header a peer controls goes through the decoders
/// the runtime uses (trace context, correlation id, `Soa-Contract` and
/// `Soa-Operation` with the service's request check, error replies), and
/// every value through the name parsers. What decodes must encode and decode
/// back the same, and a request our own envelope describes must pass our own
/// service's check.
pub fn envelope(data: &[u8]) {
    let (head, payload) = split_header_block(data);
    let map = header_map(&String::from_utf8_lossy(head));

    for inbound in [None, Some(&map)] {
        if let Some(body) = wire::decode_error(inbound, payload) {
            let mut reply = HeaderMap::new();
            wire::write_error_headers(&mut reply, &body);
            assert!(
                wire::header(Some(&reply), headers::SERVICE_ERROR_CODE).is_some(),
                "an error reply's own headers lost its code"
            );
            let _ = serde_json::to_vec(&body);
        }
        if let Some(id) = wire::correlation_id(inbound) {
            let mut sent = HeaderMap::new();
            wire::insert_header(&mut sent, headers::CORRELATION_ID, id.as_str());
            assert_eq!(
                wire::correlation_id(Some(&sent)).as_ref(),
                Some(&id),
                "a correlation id does not survive being sent on"
            );
        }
        if let Some(parent) = wire::header(inbound, headers::TRACEPARENT)
            && let Some(trace) = TraceContext::parse(parent, wire::header(inbound, headers::TRACESTATE))
        {
            let child = trace.child();
            let mut sent = HeaderMap::new();
            wire::insert_header(&mut sent, headers::TRACEPARENT, &child.traceparent());
            if let Some(state) = child.tracestate() {
                wire::insert_header(&mut sent, headers::TRACESTATE, state);
            }
            let again = wire::header(Some(&sent), headers::TRACEPARENT)
                .and_then(|parent| TraceContext::parse(parent, wire::header(Some(&sent), headers::TRACESTATE)));
            assert_eq!(again, Some(child), "a trace context does not survive being sent on");
        }
        for served in catalog() {
            let served_id = served.id();
            for (name, operation) in &served.operations {
                let _ = check_request_envelope(&served_id, name, operation.subject.as_str(), inbound);
            }
        }
    }

    // Every value and the payload through every name parser: a name that
    // parses prints as itself.
    let payload_text = String::from_utf8_lossy(payload);
    let values = map
        .iter()
        .flat_map(|(_, values)| values.iter().map(HeaderValue::as_str))
        .chain([payload_text.as_ref()]);
    for value in values {
        parse_names(value);
    }

    // An error body is read back as it was written.
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(payload)
        && let Ok(bytes) = serde_json::to_vec(&body)
    {
        let again: Result<ErrorBody, _> = serde_json::from_slice(&bytes);
        assert_eq!(again.ok(), Some(body), "an error body does not read back");
    }

    // A request built by our own client for what the headers name passes our own check.
    let contract = wire::header(Some(&map), headers::CONTRACT).and_then(|text| ContractId::parse(text).ok());
    let operation = wire::header(Some(&map), headers::OPERATION).and_then(|text| MemberName::parse(text).ok());
    if let (Some(contract), Some(operation)) = (contract, operation) {
        let sent = Envelope::operation(contract.clone(), operation.clone())
            .with_correlation_id(wire::correlation_id(Some(&map)))
            .to_headers();
        assert_eq!(
            check_request_envelope(&contract, &operation, "fuzz.subject", Some(&sent)),
            None,
            "our own request envelope is refused by our own check"
        );
    }
}

/// Splits a raw message at the first empty line (`\r\n\r\n`): the header
/// block, then the payload. Without one, everything is the header block.
fn split_header_block(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(4).position(|window| window == b"\r\n\r\n") {
        Some(at) => (&data[..at], &data[at + 4..]),
        None => (data, &[]),
    }
}

/// Reads a header block the way async-nats reads the server's `HMSG`
/// (`NATS/1.0` status line, `Name: value` lines, continuation lines that
/// start with white space), skipping what async-nats would refuse.
fn header_map(head: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut lines = head.lines().peekable();
    if lines.peek().is_some_and(|line| line.starts_with("NATS/")) {
        lines.next();
    }
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let mut value = value.trim_start().to_owned();
        while let Some(more) = lines.next_if(|line| line.starts_with(char::is_whitespace)) {
            value.push_str(more);
        }
        value.truncate(value.trim_end().len());
        // async-nats asserts on a value with a carriage return (it panics);
        // that is its reader's business, not ours, so such a value is skipped.
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_str(&value)) {
            map.append(name, value);
        }
    }
    map
}

/// Runs `text` through every parser of a name a peer can send; whatever
/// parses must print as the text it came from, or at least parse again to
/// the same value.
fn parse_names(text: &str) {
    fn round_trip<T, E>(text: &str, parse: impl Fn(&str) -> Result<T, E>)
    where
        T: std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        if let Ok(value) = parse(text) {
            let printed = value.to_string();
            let again = parse(&printed).ok();
            assert_eq!(
                again.as_ref(),
                Some(&value),
                "{text:?} parses, but its print {printed:?} does not"
            );
        }
    }
    round_trip(text, ContractId::parse);
    round_trip(text, ContractRef::parse);
    round_trip(text, ServiceName::parse);
    round_trip(text, MemberName::parse);
    round_trip(text, Version::parse);
    round_trip(text, Subject::parse);
    round_trip(text, SubjectPattern::parse);
    round_trip(text, ErrorCode::parse);
    round_trip(text, CorrelationId::parse);
    if let Ok(status) = text.trim().parse::<u16>() {
        let _ = wire::code_for_status(status);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every input the fuzzers found, and a few dozen that cover the targets
    /// well, replayed through the fuzz targets' bodies.
    #[test]
    fn every_saved_fuzz_input_replays_without_a_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/fuzz");
        for (target, body) in TARGETS {
            let folder = root.join(target);
            let mut files: Vec<_> = std::fs::read_dir(&folder)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", folder.display()))
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "{} holds no inputs", folder.display());
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| body(&data));
                assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
            }
        }
    }
}
