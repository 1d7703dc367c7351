//! Comparing a contract document with its earlier version, for both
//! `check --against` and `diff`: which checker call answers the question,
//! and how its changes become diagnostics placed in the new document's text.

use contracts::compat::{ContractChange, check_history_with, diff_contracts, policy_mode};
use contracts::{CompatibilityPolicy, ContractDocument};

use super::report::{Comparison, ComparisonOutcome, Diagnostic, DocumentReport, Kind, Level, policy_name};

/// Every change from `old` to `new` under `policy`.
///
/// Within a major and with a new version this is exactly the registry's
/// question, [`check_history_with`]. Two cases the registry never sees are
/// answered by the plain diff instead, because a CI gate must not wave them
/// through: the same version with different content (an edit that forgot to
/// bump the version, reported as `version-not-increased` with every change)
/// and a new major (reported as a note: anything may change on new subjects).
/// Identical documents have no changes.
pub(crate) fn contract_changes(
    old: &ContractDocument,
    new: &ContractDocument,
    policy: CompatibilityPolicy,
) -> Vec<ContractChange> {
    if old == new {
        return Vec::new();
    }
    let Some((mode, _transitive)) = policy_mode(policy) else {
        return Vec::new();
    };
    if old.version != new.version && old.version.major() == new.version.major() {
        check_history_with(std::slice::from_ref(old), new, policy).changes
    } else {
        diff_contracts(old, new, mode)
    }
}

/// Compares the document of `report` (parsed, with its text) with `old`
/// under `policy` and adds the changes to its diagnostics and the
/// comparison to its report. `base` names what `old` came from.
pub(crate) fn compare_into(
    report: &mut DocumentReport,
    base: &str,
    old_path: &str,
    old: &ContractDocument,
    policy: CompatibilityPolicy,
    lenient: bool,
) {
    let Some((new, text)) = &report.parsed else {
        return;
    };
    let scope = new.service.to_string();
    let mut comparison = Comparison {
        base: base.to_owned(),
        old_path: Some(old_path.to_owned()),
        old_contract: Some(old.id().to_string()),
        policy: Some(policy_name(policy)),
        outcome: ComparisonOutcome::Compared,
    };
    if old.service != new.service {
        // A different service at the same path is a new document that took
        // the old one's place; the old one's removal is not this file's to judge.
        comparison.outcome = ComparisonOutcome::NotCompared;
        report.diagnostics.push(Diagnostic::new(
            Level::Warning,
            Kind::Comparison,
            &scope,
            "service-changed",
            format!(
                "{old_path} held the contract of {} at {base}, not of {}; nothing to compare",
                old.service, new.service
            ),
        ));
        report.comparison = Some(comparison);
        return;
    }
    if policy_mode(policy).is_none() {
        report.diagnostics.push(Diagnostic::new(
            Level::Note,
            Kind::Comparison,
            &scope,
            "policy-none",
            "the compatibility policy is NONE, so no change is checked".to_owned(),
        ));
    }
    let changes = contract_changes(old, new, policy);
    // The checker's pointers are into the document's value, which the text spells.
    let root = if changes.is_empty() {
        serde_json::Value::Null
    } else {
        new.to_value()
    };
    let mut changes: Vec<Diagnostic> = changes
        .iter()
        .map(|change| Diagnostic::from_contract_change(&scope, (text, &root), change, lenient))
        .collect();
    in_document_order(&mut changes);
    report.diagnostics.extend(changes);
    report.comparison = Some(comparison);
}

/// Notes that the document of `report` has no earlier version at `base`.
pub(crate) fn mark_new(report: &mut DocumentReport, base: &str) {
    let scope = report.scope();
    report.diagnostics.push(Diagnostic::new(
        Level::Note,
        Kind::Comparison,
        &scope,
        "new-document",
        format!("new document, nothing to compare: it does not exist at {base}"),
    ));
    report.comparison = Some(Comparison {
        base: base.to_owned(),
        old_path: None,
        old_contract: None,
        policy: None,
        outcome: ComparisonOutcome::NewDocument,
    });
}

/// Sorts changes by where they are in the new text (a stable sort, so
/// changes at one place keep the checker's order).
pub(crate) fn in_document_order(changes: &mut [Diagnostic]) {
    changes.sort_by_key(Diagnostic::position);
}
