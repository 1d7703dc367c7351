//! `--against nats://HOST:PORT`: each document checked by a running
//! registry, as a registration would be (its `check` verb, which stores
//! nothing), against every version it holds of the service and against the
//! registered consumers of its events.
//!
//! The registry's answer joins the same [`DocumentReport`] the git
//! comparison fills: each breaking change an error placed at its pointer in
//! the file, each change the checker cannot decide a warning when the
//! registry accepts the document anyway (an error when it would refuse it
//! for them, unless `--lenient`), and the registry's other reasons to refuse
//! (a different document under the same version, another owner) as errors.
//! A document the registry would refuse always fails the check.

use contracts::Version;
use contracts::compat::{Effect, Role};
use contracts::locate::locate_nearest;
use contracts::registry_api::{BreakingChange, CheckRequest, CheckResponse, VersionsRequest, ops};

use super::compare::{in_document_order, mark_new};
use super::fingerprint::fingerprint;
use super::report::{
    ChangeDetail, Comparison, ComparisonOutcome, Diagnostic, DocumentReport, Kind, Level, Report, physical_pointer,
    policy_name,
};
use crate::cli::NatsOptions;
use crate::cli::registry_client::{RegistryClient, RegistryError, close, connect};

/// Whether `--against` names a registry (a NATS URL) rather than a git revision.
pub(crate) fn is_registry_url(against: &str) -> bool {
    ["nats://", "tls://"].iter().any(|scheme| against.starts_with(scheme))
}

/// Asks the registry at `url` to check each readable document of `report`
/// and adds its answers. No NATS connection or no registry answering is a
/// usage error (exit 2), and nothing is reported then.
pub(crate) async fn check_with_registry(report: &mut Report, url: &str, nats: &NatsOptions) -> anyhow::Result<()> {
    let options = NatsOptions {
        nats_url: url.to_owned(),
        ..nats.clone()
    };
    let client = connect(&options, "soa-contract-check", "check against the registry").await?;
    let registry = RegistryClient::new(client.clone(), url)?;
    let checked = check_documents(&registry, report, url).await;
    close(client).await;
    checked
}

async fn check_documents(registry: &RegistryClient, report: &mut Report, url: &str) -> anyhow::Result<()> {
    report.against = Some(url.to_owned());
    let lenient = report.lenient;
    for document in &mut report.documents {
        let Some((parsed, _)) = &document.parsed else {
            // A document that cannot be read has its own errors already.
            continue;
        };
        let request = CheckRequest {
            document: parsed.to_value(),
            owner_token: None,
        };
        let versions = VersionsRequest {
            service: parsed.service.clone(),
        };
        let answer = match registry.try_call::<ops::Check>(&request).await {
            Ok(response) => match registry.try_call::<ops::Versions>(&versions).await {
                Ok(registered) => {
                    let registered: Vec<Version> = registered.versions.into_iter().map(|info| info.version).collect();
                    Ok((response, registered))
                }
                Err(error) if error.is_not_found() => Ok((response, Vec::new())),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match answer {
            Ok((response, registered)) => apply_check(document, url, &response, &registered, lenient),
            Err(error @ (RegistryError::NoRegistry { .. } | RegistryError::Timeout { .. })) => {
                return Err(error.into_anyhow());
            }
            Err(error) => {
                let scope = document.scope();
                document.diagnostics.push(Diagnostic::new(
                    Level::Error,
                    Kind::Comparison,
                    &scope,
                    "registry-error",
                    format!("the registry at {url} could not check it: {error}"),
                ));
            }
        }
    }
    Ok(())
}

/// The registered version a candidate is compared with: itself when that
/// version is registered, else the latest earlier one of its major (or the
/// latest of its major); `None` when its major has none.
fn compared_with<'a>(candidate: &Version, registered: &'a [Version]) -> Option<&'a Version> {
    let same_major = || registered.iter().filter(|version| version.major() == candidate.major());
    same_major()
        .find(|version| *version == candidate)
        .or_else(|| same_major().filter(|version| *version < candidate).max())
        .or_else(|| same_major().max())
}

/// Adds the registry's answer about the document of `report` to its
/// diagnostics and comparison; `registered` is every version of the
/// service the registry holds.
pub(crate) fn apply_check(
    report: &mut DocumentReport,
    base: &str,
    response: &CheckResponse,
    registered: &[Version],
    lenient: bool,
) {
    let Some((new, text)) = &report.parsed else {
        return;
    };
    let scope = new.service.to_string();
    let root = new.to_value();
    let policy = policy_name(new.compatibility);

    // Lint findings only the registry saw (it knows the other contracts).
    let mut added: Vec<Diagnostic> = Vec::new();
    for finding in &response.findings {
        let known = report.diagnostics.iter().any(|diagnostic| {
            diagnostic.rule == finding.rule.id() && diagnostic.pointer.as_deref() == Some(finding.pointer.as_str())
        });
        if !known {
            let mut finding = finding.clone();
            finding.position = Some(locate_nearest(text, &finding.pointer));
            added.push(Diagnostic::from_finding(&scope, &finding));
        }
    }

    let mut changes: Vec<Diagnostic> = Vec::new();
    for change in &response.breaking {
        changes.push(change_diagnostic(&scope, text, &root, change, Level::Error, Some(true)));
    }
    let undecided_level = if lenient || response.accepted {
        Level::Warning
    } else {
        Level::Error
    };
    for change in &response.unclassified {
        changes.push(change_diagnostic(&scope, text, &root, change, undecided_level, None));
    }
    in_document_order(&mut changes);

    match compared_with(&new.version, registered) {
        Some(version) => {
            report.comparison = Some(Comparison {
                base: base.to_owned(),
                old_path: None,
                old_contract: Some(format!("{}@{version}", new.service)),
                policy: Some(policy),
                outcome: ComparisonOutcome::Compared,
            });
        }
        None => mark_new(report, base),
    }
    report.diagnostics.extend(added);
    report.diagnostics.extend(changes);

    if !response.accepted {
        // Lint errors found here already say why; the registry's refusal would repeat them.
        let already_failing = report.diagnostics.iter().any(Diagnostic::fails);
        if !already_failing {
            for refusal in &response.refusals {
                report.diagnostics.push(Diagnostic::new(
                    Level::Error,
                    Kind::Comparison,
                    &scope,
                    "registry-refusal",
                    format!("the registry at {base} would refuse it: {refusal}"),
                ));
            }
        }
        if !report.diagnostics.iter().any(Diagnostic::fails) {
            report.diagnostics.push(Diagnostic::new(
                Level::Error,
                Kind::Comparison,
                &scope,
                "registry-refusal",
                format!("the registry at {base} would refuse it"),
            ));
        }
    }
}

/// One change the registry reported, placed at its pointer in the file.
fn change_diagnostic(
    scope: &str,
    text: &str,
    root: &serde_json::Value,
    change: &BreakingChange,
    level: Level,
    breaking: Option<bool>,
) -> Diagnostic {
    let code = change_code(&change.reason);
    let rule = code.unwrap_or(if breaking == Some(true) {
        "breaking-change"
    } else {
        "unclassified-change"
    });
    // `response of reserve against inventory@1.0.0: ...`: the code is the rule already.
    let message = match code.and_then(|code| change.reason.strip_prefix(code)) {
        Some(rest) => format!("{}{rest}", change.message),
        None => format!("{}: {}", change.message, change.reason),
    };
    let mut diagnostic = Diagnostic::new(level, Kind::Change, scope, rule, message);
    let position = locate_nearest(text, &physical_pointer(root, &change.pointer));
    diagnostic.pointer = Some(change.pointer.clone());
    diagnostic.line = Some(position.line);
    diagnostic.column = Some(position.column);
    // The registry's message names the consumer when the change breaks one,
    // so two consumers broken at one pointer stay two fingerprints.
    diagnostic.fingerprint = fingerprint(scope, rule, &change.pointer, &change.message);
    let (role, member) = role_and_member(&change.message);
    diagnostic.change = Some(ChangeDetail {
        role,
        member,
        effect: if breaking == Some(true) {
            Effect::Changes
        } else {
            Effect::Unclassified
        },
        breaking,
    });
    diagnostic
}

/// The checker's change code when the reason starts with one
/// (`required-added against inventory@1.0.0: ...`).
fn change_code(reason: &str) -> Option<&str> {
    let first = reason.split_whitespace().next()?;
    let is_code = first.contains('-')
        && first
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    is_code.then_some(first)
}

/// The role and member a registry message names: `request of reserve`,
/// `response of reserve`, `event reserved` (`... as consumed by orders@1.0.0`).
fn role_and_member(message: &str) -> (Option<Role>, Option<String>) {
    let member = |rest: &str| rest.split_whitespace().next().map(str::to_owned);
    if let Some(rest) = message.strip_prefix("request of ") {
        (Some(Role::Request), member(rest))
    } else if let Some(rest) = message.strip_prefix("response of ") {
        (Some(Role::Response), member(rest))
    } else if let Some(rest) = message.strip_prefix("event ") {
        (Some(Role::Event), member(rest))
    } else if message == "contract" {
        (Some(Role::Contract), None)
    } else {
        (None, Some(message.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use contracts::{ContractId, Limits};

    use super::super::check::{Source, check_sources};
    use super::super::render::{ReportFormat, render};
    use super::*;
    use crate::cli::Exit;

    fn checked(text: &str) -> Report {
        check_sources(
            vec![Source {
                path: "inventory.v1.json".to_owned(),
                text: Ok(text.to_owned()),
            }],
            &Limits::default(),
        )
    }

    fn human(report: &Report) -> String {
        let mut out = Vec::new();
        render(report, ReportFormat::Human, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn registered() -> Vec<Version> {
        vec![Version::new(1, 0, 0)]
    }

    fn response(accepted: bool, breaking: Vec<BreakingChange>, unclassified: Vec<BreakingChange>) -> CheckResponse {
        CheckResponse {
            accepted,
            against: vec![ContractId::parse("inventory@1.0.0").unwrap()],
            findings: Vec::new(),
            breaking,
            unclassified,
            refusals: Vec::new(),
        }
    }

    fn text() -> String {
        crate::sample::shop_contract("inventory").to_pretty_json()
    }

    #[test]
    fn breaking_changes_fail_at_their_place_in_the_file() {
        let mut report = checked(&text());
        let change = BreakingChange {
            message: "response of reserve".to_owned(),
            pointer: "/operations/reserve/response/required".to_owned(),
            reason: "required-added against inventory@1.0.0: the response no longer always has items".to_owned(),
        };
        apply_check(
            &mut report.documents[0],
            "nats://127.0.0.1:4222",
            &response(false, vec![change], vec![]),
            &registered(),
            false,
        );
        report.against = Some("nats://127.0.0.1:4222".to_owned());
        assert_eq!(report.exit(), Exit::Failure);
        let output = human(&report);
        assert!(
            output.starts_with(
                "inventory 1.1.0 (inventory.v1.json), against nats://127.0.0.1:4222 (inventory@1.0.0, BACKWARD): strict incompatible, lenient incompatible\n"
            ),
            "{output}"
        );
        assert!(
            output.contains(
                ": error[required-added] breaking change at /operations/reserve/response/required: \
                 response of reserve against inventory@1.0.0: the response no longer always has items (fingerprint "
            ),
            "{output}"
        );
        let diagnostic = report.documents[0].diagnostics.last().unwrap();
        // Placed where the schema is written: in $defs, through the $ref.
        assert!(diagnostic.line.unwrap() > 1);
        assert_eq!(diagnostic.change.as_ref().unwrap().role, Some(Role::Response));
    }

    #[test]
    fn undecided_changes_warn_when_accepted_and_a_new_document_is_a_note() {
        let mut report = checked(&text());
        let change = BreakingChange {
            message: "event reserved".to_owned(),
            pointer: "/events/reserved/payload".to_owned(),
            reason: "not-changed against inventory@1.0.0: cannot be decided".to_owned(),
        };
        apply_check(
            &mut report.documents[0],
            "nats://x:4222",
            &response(true, vec![], vec![change]),
            &registered(),
            false,
        );
        assert_eq!(report.exit(), Exit::Success);
        assert_eq!(report.documents[0].diagnostics[0].level, Level::Warning);

        let mut new = checked(&text());
        let mut fresh = response(true, vec![], vec![]);
        fresh.against.clear();
        apply_check(&mut new.documents[0], "nats://x:4222", &fresh, &[], false);
        assert_eq!(new.exit(), Exit::Success);
        assert_eq!(new.documents[0].diagnostics[0].rule, "new-document");
    }

    #[test]
    fn refusals_fail_even_without_a_change() {
        let mut report = checked(&text());
        let mut refused = response(false, vec![], vec![]);
        refused.refusals = vec!["inventory@1.0.0 is registered with different content".to_owned()];
        apply_check(
            &mut report.documents[0],
            "nats://x:4222",
            &refused,
            &registered(),
            false,
        );
        assert_eq!(report.exit(), Exit::Failure);
        assert!(human(&report).contains(
            "error[registry-refusal]: the registry at nats://x:4222 would refuse it: inventory@1.0.0 is registered with different content"
        ));
    }

    #[test]
    fn a_candidate_is_compared_with_itself_or_the_latest_earlier_version_of_its_major() {
        let registered = [
            Version::new(1, 0, 0),
            Version::new(1, 2, 0),
            Version::new(2, 0, 0),
            Version::new(1, 1, 0),
        ];
        let with = |major, minor| compared_with(&Version::new(major, minor, 0), &registered).map(ToString::to_string);
        assert_eq!(with(1, 1).as_deref(), Some("1.1.0"));
        assert_eq!(with(1, 3).as_deref(), Some("1.2.0"));
        assert_eq!(with(2, 1).as_deref(), Some("2.0.0"));
        assert_eq!(with(3, 0), None);
    }
}
