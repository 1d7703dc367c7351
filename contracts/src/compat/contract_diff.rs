//! Contract against contract, role-aware: requests must stay acceptable to
//! the new version, responses and events must stay acceptable to old readers
//! (under BACKWARD; FORWARD is the mirror and FULL is both), and a producer's
//! events must still satisfy what each registered consumer expects.

use serde::{Deserialize, Serialize};

use super::change::{Change, ChangeCode, Effect, Mode, Verdict};
use super::schema_diff::diff_schemas_sharing;
use crate::document::{CompatibilityPolicy, ContractDocument};
use crate::names::{ContractId, MemberName};
use crate::parse::escape_pointer;

/// Which side of the conversation a change concerns, which decides the
/// direction that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The contract's shape: operations, events, subjects, versions.
    Contract,
    /// A request the service reads: it must keep accepting old requests.
    Request,
    /// A response the service writes: old callers must accept it.
    Response,
    /// An event the service writes: old consumers must accept it.
    Event,
}

impl Role {
    /// The schema-level mode a contract-level policy mode asks of this role.
    pub fn schema_mode(self, mode: Mode) -> Mode {
        match self {
            Self::Contract | Self::Request => mode,
            Self::Response | Self::Event => mode.mirrored(),
        }
    }
}

/// One change between two versions of a contract, judged for its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractChange {
    /// The earlier version this change is against.
    pub against: ContractId,
    /// Which side of the conversation it concerns.
    pub role: Role,
    /// The operation or event, if the change is inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberName>,
    /// The change itself; its pointers are pointers into the documents.
    pub change: Change,
    /// `Some(true)`: breaks the policy; `None`: cannot be decided.
    pub breaking: Option<bool>,
}

/// Everything a new contract version changes against its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractReport {
    /// The new version.
    pub candidate: ContractId,
    /// The policy applied (the new document's own).
    pub policy: CompatibilityPolicy,
    /// Every change, against each version checked.
    pub changes: Vec<ContractChange>,
}

impl ContractReport {
    /// Strict and lenient verdicts of the whole report.
    pub fn verdict(&self) -> Verdict {
        Verdict::from_answers(self.changes.iter().map(|change| change.breaking))
    }

    /// The changes that break the policy for sure.
    pub fn breaking(&self) -> impl Iterator<Item = &ContractChange> {
        self.changes.iter().filter(|change| change.breaking == Some(true))
    }

    /// The changes the checker could not decide.
    pub fn unclassified(&self) -> impl Iterator<Item = &ContractChange> {
        self.changes.iter().filter(|change| change.breaking.is_none())
    }
}

/// The mode a policy checks, and whether it checks every earlier version.
pub fn policy_mode(policy: CompatibilityPolicy) -> Option<(Mode, bool)> {
    use CompatibilityPolicy as P;
    match policy {
        P::None => None,
        P::Backward => Some((Mode::Backward, false)),
        P::Forward => Some((Mode::Forward, false)),
        P::Full => Some((Mode::Full, false)),
        P::BackwardTransitive => Some((Mode::Backward, true)),
        P::ForwardTransitive => Some((Mode::Forward, true)),
        P::FullTransitive => Some((Mode::Full, true)),
    }
}

/// Checks `candidate` against the earlier versions of its service under the
/// candidate's own policy: the latest earlier version of the same major, or
/// all of them when the policy is transitive. A new major may break anything,
/// and only the move of its subjects is checked (by the lint).
pub fn check_history(history: &[ContractDocument], candidate: &ContractDocument) -> ContractReport {
    check_history_with(history, candidate, candidate.compatibility)
}

/// [`check_history`] under an explicit policy (for `soa contract diff --mode`).
pub fn check_history_with(
    history: &[ContractDocument],
    candidate: &ContractDocument,
    policy: CompatibilityPolicy,
) -> ContractReport {
    let mut report = ContractReport {
        candidate: candidate.id(),
        policy,
        changes: Vec::new(),
    };
    let mut same_major: Vec<&ContractDocument> = history
        .iter()
        .filter(|old| {
            old.service == candidate.service
                && old.version.major() == candidate.version.major()
                && old.version != candidate.version
        })
        .collect();
    same_major.sort_by(|a, b| a.version.cmp(&b.version));
    let Some((mode, transitive)) = policy_mode(policy) else {
        return report;
    };
    let against: Vec<&ContractDocument> = if transitive {
        same_major
    } else {
        same_major.last().copied().into_iter().collect()
    };
    for old in against {
        report.changes.extend(diff_contracts(old, candidate, mode));
    }
    report
}

/// Every change from `old` to `new`, judged for `mode` by role.
pub fn diff_contracts(old: &ContractDocument, new: &ContractDocument, mode: Mode) -> Vec<ContractChange> {
    let old_root = old.to_value();
    let new_root = new.to_value();
    // One bound on the schema checker's work for the whole pair of documents.
    let mut spent = 0;
    let mut changes = Vec::new();
    let against = old.id();
    let mut push = |role: Role, member: Option<&MemberName>, change: Change| {
        let breaking = change.breaks(role.schema_mode(mode));
        changes.push(ContractChange {
            against: against.clone(),
            role,
            member: member.cloned(),
            change,
            breaking,
        });
    };
    let contract_change = |code, pointer: String, effect, message: String| Change {
        code,
        old_pointer: pointer.clone(),
        pointer,
        effect,
        message,
        hint: None,
    };

    if old.version.major() != new.version.major() {
        push(
            Role::Contract,
            None,
            contract_change(
                ChangeCode::MajorVersionChanged,
                "/version".to_owned(),
                Effect::None,
                format!(
                    "major version {} -> {}: a new major may change anything, on new subjects",
                    old.version.major(),
                    new.version.major()
                ),
            ),
        );
        return changes;
    }
    if new.version <= old.version {
        push(
            Role::Contract,
            None,
            contract_change(
                ChangeCode::VersionNotIncreased,
                "/version".to_owned(),
                Effect::Changes,
                format!(
                    "version {} is not greater than {}; registered versions are immutable, so a change needs a new version",
                    new.version, old.version
                ),
            ),
        );
    }
    if old.compatibility != new.compatibility {
        push(
            Role::Contract,
            None,
            contract_change(
                ChangeCode::PolicyChanged,
                "/compatibility".to_owned(),
                Effect::None,
                format!(
                    "compatibility policy changed from {:?} to {:?}",
                    old.compatibility, new.compatibility
                ),
            ),
        );
    }

    for (name, old_operation) in &old.operations {
        let base = format!("/operations/{}", escape_pointer(name.as_str()));
        let Some(new_operation) = new.operations.get(name) else {
            push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::OperationRemoved,
                    base,
                    Effect::Narrows,
                    format!(
                        "operation {name} was removed; callers of {} get no reply",
                        old_operation.subject
                    ),
                ),
            );
            continue;
        };
        if old_operation.subject != new_operation.subject {
            push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::SubjectChanged,
                    format!("{base}/subject"),
                    Effect::Changes,
                    format!(
                        "operation {name} moved from {} to {}; callers address the old subject",
                        old_operation.subject, new_operation.subject
                    ),
                ),
            );
        }
        for (part, role) in [("request", Role::Request), ("response", Role::Response)] {
            let pointer = format!("{base}/{part}");
            for change in diff_schemas_sharing(&old_root, &pointer, &new_root, &pointer, &mut spent) {
                push(role, Some(name), change);
            }
        }
        for code in new_operation
            .errors
            .iter()
            .filter(|code| !old_operation.errors.contains(code))
        {
            push(
                Role::Response,
                Some(name),
                contract_change(
                    ChangeCode::ErrorCodeAdded,
                    format!("{base}/errors"),
                    Effect::Widens,
                    format!("operation {name} may now reply with error {code}, which existing callers do not expect"),
                ),
            );
        }
        for code in old_operation
            .errors
            .iter()
            .filter(|code| !new_operation.errors.contains(code))
        {
            push(
                Role::Response,
                Some(name),
                contract_change(
                    ChangeCode::ErrorCodeRemoved,
                    format!("{base}/errors"),
                    Effect::Narrows,
                    format!("operation {name} no longer replies with error {code}"),
                ),
            );
        }
        match (old_operation.idempotent, new_operation.idempotent) {
            (true, false) => push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::IdempotencyDropped,
                    format!("{base}/idempotent"),
                    Effect::Narrows,
                    format!("operation {name} is no longer idempotent, but existing clients retry it"),
                ),
            ),
            (false, true) => push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::IdempotencyAdded,
                    format!("{base}/idempotent"),
                    Effect::Widens,
                    format!("operation {name} became idempotent"),
                ),
            ),
            _ => {}
        }
    }
    for (name, new_operation) in new
        .operations
        .iter()
        .filter(|(name, _)| !old.operations.contains_key(*name))
    {
        push(
            Role::Contract,
            Some(name),
            contract_change(
                ChangeCode::OperationAdded,
                format!("/operations/{}", escape_pointer(name.as_str())),
                Effect::Widens,
                format!(
                    "operation {name} was added on {}; instances of the old version do not answer it",
                    new_operation.subject
                ),
            ),
        );
    }

    for (name, old_event) in &old.events {
        let base = format!("/events/{}", escape_pointer(name.as_str()));
        let Some(new_event) = new.events.get(name) else {
            push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::EventRemoved,
                    base,
                    Effect::Narrows,
                    format!(
                        "event {name} was removed; consumers of {} wait in vain",
                        old_event.subject
                    ),
                ),
            );
            continue;
        };
        if old_event.subject != new_event.subject {
            push(
                Role::Contract,
                Some(name),
                contract_change(
                    ChangeCode::SubjectChanged,
                    format!("{base}/subject"),
                    Effect::Changes,
                    format!(
                        "event {name} moved from {} to {}; consumers listen on the old subject",
                        old_event.subject, new_event.subject
                    ),
                ),
            );
        }
        let pointer = format!("{base}/payload");
        for change in diff_schemas_sharing(&old_root, &pointer, &new_root, &pointer, &mut spent) {
            push(Role::Event, Some(name), change);
        }
    }
    for name in new.events.keys().filter(|name| !old.events.contains_key(*name)) {
        push(
            Role::Contract,
            Some(name),
            contract_change(
                ChangeCode::EventAdded,
                format!("/events/{}", escape_pointer(name.as_str())),
                Effect::None,
                format!("event {name} was added"),
            ),
        );
    }
    changes
}

/// A consumer that a producer's new version would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerBreak {
    /// The consuming contract.
    pub consumer: ContractId,
    /// The event concerned.
    pub event: MemberName,
    /// The changes that break it (or cannot be decided); pointers are into
    /// the producer's new document (`pointer`) and the consumer's document
    /// or the producer's old one (`old_pointer`).
    pub changes: Vec<Change>,
    /// `Some(true)` when it breaks for sure, `None` when undecided.
    pub breaking: Option<bool>,
}

/// Checks a producer's new version against every consumer of its events.
/// A consumer that declared `expects` is held to that schema; one that did
/// not is held to the event schema of `previous` (the producer version it
/// has been consuming), when given.
pub fn check_consumers(
    previous: Option<&ContractDocument>,
    candidate: &ContractDocument,
    consumers: &[ContractDocument],
) -> Vec<ConsumerBreak> {
    let candidate_root = candidate.to_value();
    let previous_root = previous.map(ContractDocument::to_value);
    let mut breaks = Vec::new();
    for consumer in consumers {
        let consumer_root = consumer.to_value();
        // One bound on the schema checker's work per consumer.
        let mut spent = 0;
        for (index, consumption) in consumer.consumes.iter().enumerate() {
            let event = &consumption.event;
            if event.service != candidate.service || event.major != candidate.version.major() {
                continue;
            }
            let new_pointer = format!("/events/{}/payload", escape_pointer(event.member.as_str()));
            if !candidate.events.contains_key(&event.member) {
                breaks.push(ConsumerBreak {
                    consumer: consumer.id(),
                    event: event.member.clone(),
                    changes: vec![Change {
                        code: ChangeCode::EventRemoved,
                        pointer: "/events".to_owned(),
                        old_pointer: format!("/consumes/{index}"),
                        effect: Effect::Narrows,
                        message: format!(
                            "{} consumes {event}, which {} no longer publishes",
                            consumer.id(),
                            candidate.id()
                        ),
                        hint: None,
                    }],
                    breaking: Some(true),
                });
                continue;
            }
            // What the consumer relies on: its own declaration, or what the producer sent so far.
            let expected = match (&consumption.expects, &previous_root) {
                (Some(_), _) => Some((&consumer_root, format!("/consumes/{index}/expects"))),
                (None, Some(root)) => {
                    Some((root, new_pointer.clone())).filter(|(root, pointer)| root.pointer(pointer).is_some())
                }
                (None, None) => None,
            };
            let Some((expected_root, expected_pointer)) = expected else {
                continue;
            };
            let changes: Vec<Change> = diff_schemas_sharing(
                expected_root,
                &expected_pointer,
                &candidate_root,
                &new_pointer,
                &mut spent,
            )
            .into_iter()
            .filter(|change| change.breaks(Mode::Forward) != Some(false))
            .collect();
            if changes.is_empty() {
                continue;
            }
            let breaking = if changes.iter().any(|change| change.breaks(Mode::Forward) == Some(true)) {
                Some(true)
            } else {
                None
            };
            breaks.push(ConsumerBreak {
                consumer: consumer.id(),
                event: event.member.clone(),
                changes,
                breaking,
            });
        }
    }
    breaks
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;

    /// A contract whose `operations` each take `anyOf`s nested `depth` deep;
    /// `widened` adds an alternative at every level.
    fn nested(operations: usize, depth: u64, widened: bool) -> ContractDocument {
        let mut schema = json!({"type": "integer"});
        for level in 0..depth {
            schema = if widened {
                json!({"anyOf": [schema, {"type": "integer", "maximum": level}, {"type": "string"}]})
            } else {
                json!({"anyOf": [schema, {"type": "integer", "minimum": level}]})
            };
        }
        let operations: serde_json::Map<String, Value> = (0..operations)
            .map(|index| {
                let name = format!("op{index}");
                let operation = json!({
                    "subject": format!("test.nested.v1.{name}"),
                    "description": "Takes nested alternatives",
                    "request": schema,
                    "response": {"type": "object"}
                });
                (name, operation)
            })
            .collect();
        let document = json!({
            "contract": "soabus/v1",
            "service": "nested",
            "version": if widened { "1.1.0" } else { "1.0.0" },
            "description": "Nested alternatives",
            "owner": "tests",
            "operations": operations
        });
        ContractDocument::from_json_value("nested.json", &document, None).unwrap()
    }

    #[test]
    fn a_contracts_messages_share_one_bound_on_the_checkers_work() {
        // 12 levels take 16,381 steps: each message alone is decided, but
        // eight of them are more than one contract's share.
        let (old, new) = (nested(8, 12, false), nested(8, 12, true));
        let changes = diff_contracts(&old, &new, Mode::Backward);
        let too_complex = |change: &&ContractChange| change.change.code == ChangeCode::TooComplexToCompare;
        let decided: BTreeSet<_> = changes
            .iter()
            .filter(|change| !too_complex(change))
            .filter_map(|change| change.member.clone())
            .collect();
        let undecided: BTreeSet<_> = changes
            .iter()
            .filter(too_complex)
            .filter_map(|change| change.member.clone())
            .collect();
        assert!(decided.len() >= 2, "{decided:?}");
        assert!(undecided.len() >= 4, "{undecided:?}");
        assert!(decided.is_disjoint(&undecided));

        let one = diff_contracts(&nested(1, 12, false), &nested(1, 12, true), Mode::Backward);
        assert!(!one.is_empty());
        assert!(!one.iter().any(|change| too_complex(&change)), "{one:#?}");
    }
}
