//! The shop catalogue: the documents under `contracts/catalog/` are exactly
//! what the Rust types export, and every one of them is clean.
//!
//! `SOA_UPDATE_CATALOG=1 cargo test -p contracts` rewrites the documents.

use std::path::PathBuf;

use contracts::catalog::file_name;
use contracts::{Limits, SchemaSet, check_document, compile_contract};

/// The shop's contracts and the registry's own.
fn catalog_documents() -> Vec<contracts::ContractDocument> {
    contracts::catalog::documents().unwrap()
}

fn catalog_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("catalog")
}

#[test]
fn checked_in_documents_match_the_rust_types() {
    let update = std::env::var_os("SOA_UPDATE_CATALOG").is_some();
    let mut drifted = Vec::new();
    let documents = catalog_documents();
    for document in &documents {
        let path = catalog_dir().join(file_name(document));
        let expected = document.to_pretty_json();
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        if actual != expected {
            if update {
                std::fs::write(&path, &expected).unwrap();
            } else {
                drifted.push(path.display().to_string());
            }
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(catalog_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut exported: Vec<String> = documents.iter().map(file_name).collect();
    exported.sort();
    assert_eq!(
        on_disk, exported,
        "contracts/catalog/ holds documents no Rust type exports"
    );
    assert!(
        drifted.is_empty(),
        "these documents drifted from the Rust types: {drifted:?}; run `SOA_UPDATE_CATALOG=1 cargo test -p contracts` and commit the result"
    );
}

#[test]
fn every_catalog_document_parses_lints_clean_and_compiles() {
    let documents = catalog_documents();
    let mut external = SchemaSet::default();
    for document in &documents {
        external.add_contract(document);
    }
    for document in &documents {
        let text = document.to_pretty_json();
        let (parsed, findings) = check_document(&file_name(document), &text, &Limits::default(), &external).unwrap();
        assert_eq!(&parsed, document, "the document survives a round trip through text");
        assert!(findings.is_empty(), "{}: {findings:#?}", parsed.id());
        let compiled = compile_contract(document, &external).unwrap();
        assert_eq!(compiled.validators.len(), document.messages().count());
    }
}

#[test]
fn consumed_events_and_called_operations_exist_in_the_catalog() {
    let documents = catalog_documents();
    for document in &documents {
        for reference in document.consumes.iter().map(|consumption| &consumption.event) {
            let producer = documents
                .iter()
                .find(|other| other.service == reference.service && other.version.major() == reference.major)
                .unwrap_or_else(|| panic!("{} consumes {reference}, which no contract declares", document.id()));
            assert!(
                producer.events.contains_key(&reference.member),
                "{} consumes missing {reference}",
                document.id()
            );
        }
    }
}
