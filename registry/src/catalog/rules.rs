//! Registration rules: what a new contract version must pass before it is
//! stored, shared by `register` (which then stores it) and `check` (which
//! only reports).
//!
//! In order: the document parses and lints without errors (with `soa://`
//! references resolved against the stored contracts); the same
//! `service@version` with the same content is a no-op, with other content a
//! conflict; a later version must come from the service's owner; it must pass
//! the service's compatibility policy against its history, and every
//! registered consumer of its events must still accept them.

use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

use contracts::compat::{ConsumerBreak, ContractChange, check_consumers, check_history, policy_mode};
use contracts::registry_api::{BreakingChange, CheckResponse, INCOMPATIBLE, RegisterResponse};
use contracts::schema::soa_reference_target;
use contracts::{
    ContractDocument, ContractRef, ErrorBody, ErrorCode, ErrorDetail, Finding, Limits, SchemaSet, ServiceName,
    Severity, check_document,
};

use super::Catalog;
use crate::store::ContractRecord;

/// What a registration will do, once it passed every rule.
#[derive(Debug)]
pub enum Registration {
    /// The same content is stored already: answer, store nothing.
    AlreadyStored(RegisterResponse),
    /// A new version: store `record`, then answer `response`.
    New {
        /// What to store.
        record: Box<ContractRecord>,
        /// The answer once it is stored.
        response: RegisterResponse,
    },
}

/// Why a registration is refused; each maps to one error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationRefusal {
    /// The document does not parse or lints with errors.
    Invalid {
        /// One sentence.
        message: String,
        /// Each problem with its pointer.
        details: Vec<ErrorDetail>,
    },
    /// The version is stored with other content.
    Conflict(String),
    /// The service belongs to another credential.
    Unauthorized(String),
    /// A stored document could not be read back (a bug or a damaged store).
    Internal(ErrorBody),
    /// It breaks the policy or a consumer.
    Incompatible {
        /// One sentence.
        message: String,
        /// Every breaking change.
        changes: Vec<BreakingChange>,
    },
}

impl RegistrationRefusal {
    /// The error reply.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Invalid { message, details } => ErrorBody {
                code: ErrorCode::ValidationFailed,
                message: message.clone(),
                details: details.clone(),
            },
            Self::Conflict(message) => ErrorBody::new(ErrorCode::Conflict, message.clone()),
            Self::Unauthorized(message) => ErrorBody::new(ErrorCode::Unauthorized, message.clone()),
            Self::Internal(body) => body.clone(),
            Self::Incompatible { message, changes } => ErrorBody {
                code: ErrorCode::Declared(INCOMPATIBLE.to_owned()),
                message: message.clone(),
                details: changes
                    .iter()
                    .map(|change| ErrorDetail {
                        pointer: change.pointer.clone(),
                        schema_path: None,
                        message: format!("{}: {}", change.message, change.reason),
                    })
                    .collect(),
            },
        }
    }
}

/// The owner credential as stored: `sha256:<hex>` of the token.
pub fn owner_digest(token: Option<&str>) -> Option<String> {
    token.map(|token| {
        let hash = Sha256::digest(token.as_bytes());
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in hash {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    })
}

/// Everything the rules found about one candidate.
struct Evaluation {
    document: ContractDocument,
    digest: String,
    warnings: Vec<Finding>,
    against: Vec<contracts::ContractId>,
    breaking: Vec<BreakingChange>,
    unclassified: Vec<BreakingChange>,
    /// Set when the same content is stored already.
    already_stored: bool,
}

impl Catalog {
    /// Applies every rule to a registration of `document` by `owner_token`.
    pub fn prepare_registration(
        &self,
        document: &Value,
        owner_token: Option<&str>,
        now_ms: u64,
    ) -> Result<Registration, RegistrationRefusal> {
        let evaluation = self.evaluate(document, owner_token, true)?;
        let response = RegisterResponse {
            id: evaluation.document.id(),
            digest: evaluation.digest.clone(),
            created: !evaluation.already_stored,
            warnings: evaluation.warnings,
            unclassified: evaluation.unclassified.clone(),
        };
        if evaluation.already_stored {
            return Ok(Registration::AlreadyStored(response));
        }
        if !evaluation.breaking.is_empty() || (self.strict && !evaluation.unclassified.is_empty()) {
            let mut changes = evaluation.breaking;
            if self.strict {
                changes.extend(evaluation.unclassified);
            }
            return Err(RegistrationRefusal::Incompatible {
                message: format!(
                    "{} is not compatible with what is registered ({} policy and registered consumers): {} breaking change(s); keep the change compatible or publish it as a new major version",
                    evaluation.document.id(),
                    evaluation.document.compatibility,
                    changes.len()
                ),
                changes,
            });
        }
        let owner = match self.owner_of(&evaluation.document.service) {
            Some(owner) => owner,
            None => owner_digest(owner_token),
        };
        Ok(Registration::New {
            record: Box::new(ContractRecord {
                document: evaluation.document,
                digest: evaluation.digest,
                registered_at_ms: now_ms,
                owner,
            }),
            response,
        })
    }

    /// What a registration of `document` would meet, storing nothing.
    /// Ownership is checked only when `owner_token` is given.
    pub fn check_candidate(&self, document: &Value, owner_token: Option<&str>) -> CheckResponse {
        match self.evaluate(document, owner_token, owner_token.is_some()) {
            Ok(evaluation) => {
                let accepted = evaluation.breaking.is_empty() && (!self.strict || evaluation.unclassified.is_empty());
                CheckResponse {
                    accepted,
                    against: evaluation.against,
                    findings: evaluation.warnings,
                    breaking: evaluation.breaking,
                    unclassified: evaluation.unclassified,
                    refusals: Vec::new(),
                }
            }
            Err(RegistrationRefusal::Invalid { message, details }) => CheckResponse {
                accepted: false,
                against: Vec::new(),
                findings: Vec::new(),
                breaking: Vec::new(),
                unclassified: Vec::new(),
                refusals: std::iter::once(message)
                    .chain(
                        details
                            .iter()
                            .map(|detail| format!("{}: {}", detail.pointer, detail.message)),
                    )
                    .collect(),
            },
            Err(other) => CheckResponse {
                accepted: false,
                against: Vec::new(),
                findings: Vec::new(),
                breaking: Vec::new(),
                unclassified: Vec::new(),
                refusals: vec![other.body().message],
            },
        }
    }

    fn evaluate(
        &self,
        value: &Value,
        owner_token: Option<&str>,
        check_owner: bool,
    ) -> Result<Evaluation, RegistrationRefusal> {
        let text = serde_json::to_string(value).map_err(|err| RegistrationRefusal::Invalid {
            message: format!("the document could not be read: {err}"),
            details: Vec::new(),
        })?;
        let external = self.schema_set_for(value);
        let (document, findings) = check_document("the registered document", &text, &Limits::default(), &external)
            .map_err(|err| RegistrationRefusal::Invalid {
                message: format!("the contract document is not valid: {err}"),
                details: err
                    .problems()
                    .into_iter()
                    .map(|problem| ErrorDetail {
                        pointer: problem.pointer,
                        schema_path: None,
                        message: problem.message,
                    })
                    .collect(),
            })?;
        let (errors, warnings): (Vec<Finding>, Vec<Finding>) = findings
            .into_iter()
            .partition(|finding| finding.severity == Severity::Error);
        if !errors.is_empty() {
            return Err(RegistrationRefusal::Invalid {
                message: format!(
                    "{} has {} lint error(s); fix them and register again",
                    document.id(),
                    errors.len()
                ),
                details: errors
                    .into_iter()
                    .map(|finding| ErrorDetail {
                        pointer: finding.pointer,
                        schema_path: None,
                        message: format!("{} {}: {}", finding.rule.id(), finding.rule.name(), finding.message),
                    })
                    .collect(),
            });
        }
        let digest = document.digest();
        let id = document.id();
        if let Some(stored) = self.stored(&document.service, &document.version) {
            if stored.digest == digest {
                return Ok(Evaluation {
                    against: vec![document.id()],
                    document,
                    digest,
                    warnings,
                    breaking: Vec::new(),
                    unclassified: Vec::new(),
                    already_stored: true,
                });
            }
            return Err(RegistrationRefusal::Conflict(format!(
                "{id} is already registered with other content (digest {}, yours {digest}); a version is immutable once registered: publish your change under a new version",
                stored.digest
            )));
        }
        if check_owner
            && let Some(owner) = self.owner_of(&document.service)
            && owner != owner_digest(owner_token)
        {
            return Err(RegistrationRefusal::Unauthorized(format!(
                "service {} belongs to the credential that registered it first; {} it to register {id}",
                document.service,
                if owner_token.is_some() {
                    "yours differs: use"
                } else {
                    "present"
                }
            )));
        }
        let history: Vec<ContractDocument> = self
            .history(&document.service)
            .iter()
            .map(|stored| stored.document())
            .collect::<Result<_, _>>()
            .map_err(RegistrationRefusal::Internal)?;
        let report = check_history(&history, &document);
        // Every stored version the policy compares with, changed or not.
        let mut same_major: Vec<&ContractDocument> = history
            .iter()
            .filter(|old| old.version.major() == document.version.major())
            .collect();
        same_major.sort_by(|a, b| a.version.cmp(&b.version));
        let compared: Vec<&ContractDocument> = match policy_mode(document.compatibility) {
            None => Vec::new(),
            Some((_, true)) => same_major,
            Some((_, false)) => same_major.last().copied().into_iter().collect(),
        };
        let mut against: BTreeSet<contracts::ContractId> = compared.iter().map(|old| old.id()).collect();
        against.extend(report.changes.iter().map(|change| change.against.clone()));
        let mut breaking = Vec::new();
        let mut unclassified = Vec::new();
        for change in &report.changes {
            match change.breaking {
                Some(true) => breaking.push(describe_change(change)),
                None => unclassified.push(describe_change(change)),
                Some(false) => {}
            }
        }
        let previous = history
            .iter()
            .filter(|old| old.version.major() == document.version.major() && old.version < document.version)
            .max_by(|a, b| a.version.cmp(&b.version));
        let consumers = self.consumers_of_major(&document.service, document.version.major());
        against.extend(consumers.iter().map(ContractDocument::id));
        for consumer_break in check_consumers(previous, &document, &consumers) {
            let target = if consumer_break.breaking == Some(true) {
                &mut breaking
            } else {
                &mut unclassified
            };
            target.extend(describe_consumer_break(&consumer_break));
        }
        Ok(Evaluation {
            document,
            digest,
            warnings,
            against: against.into_iter().collect(),
            breaking,
            unclassified,
            already_stored: false,
        })
    }

    /// The stored heads that `soa://` references in `value` point into.
    fn schema_set_for(&self, value: &Value) -> SchemaSet {
        let mut wanted: BTreeSet<(ServiceName, u64)> = BTreeSet::new();
        collect_soa_refs(value, &mut wanted);
        let mut set = SchemaSet::default();
        for (service, major) in wanted {
            if let Some(head) = self
                .heads(&service)
                .into_iter()
                .find(|head| head.version().major() == major)
                && let Ok(document) = head.document()
            {
                set.add_contract(&document);
            }
        }
        set
    }
}

/// Every `soa://<service>@<major>` a `$ref` in `value` names.
fn collect_soa_refs(value: &Value, wanted: &mut BTreeSet<(ServiceName, u64)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if key == "$ref" {
                    if let Some(reference) = child.as_str().and_then(soa_reference_target) {
                        wanted.insert(reference);
                    }
                } else {
                    collect_soa_refs(child, wanted);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_soa_refs(item, wanted)),
        _ => {}
    }
}

fn describe_change(change: &ContractChange) -> BreakingChange {
    let message = match (&change.role, &change.member) {
        (contracts::compat::Role::Request, Some(member)) => format!("request of {member}"),
        (contracts::compat::Role::Response, Some(member)) => format!("response of {member}"),
        (contracts::compat::Role::Event, Some(member)) => format!("event {member}"),
        (_, Some(member)) => member.to_string(),
        (_, None) => "contract".to_owned(),
    };
    let mut reason = format!(
        "{} against {}: {}",
        change.change.code, change.against, change.change.message
    );
    if let Some(hint) = &change.change.hint {
        reason.push_str(&format!(" ({hint})"));
    }
    BreakingChange {
        message,
        pointer: change.change.pointer.clone(),
        reason,
    }
}

fn describe_consumer_break(consumer_break: &ConsumerBreak) -> Vec<BreakingChange> {
    consumer_break
        .changes
        .iter()
        .map(|change| BreakingChange {
            message: format!(
                "event {} as consumed by {}",
                consumer_break.event, consumer_break.consumer
            ),
            pointer: change.pointer.clone(),
            reason: format!("{}: {}", change.code, change.message),
        })
        .collect()
}

/// The `service@major#member` of a dependency key.
pub(crate) fn reference_of(service: &ServiceName, major: u64, member: &contracts::MemberName) -> String {
    ContractRef {
        service: service.clone(),
        major,
        member: member.clone(),
    }
    .to_string()
}
