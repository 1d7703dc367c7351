//! `soa contract check PATH... [--against REV|nats://HOST:PORT]`: reads
//! contract documents from files and folders, checks each one, optionally
//! compares each with the same file at a git revision or asks a running
//! registry whether it would accept it, and prints every finding with its
//! place.
//!
//! Checking is two passes over documents parsed once: first every readable
//! document joins one [`SchemaSet`], so `soa://` references between the
//! documents given resolve; then each is linted against that set. The result
//! is a [`Report`] of plain data that each output format renders.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use contracts::{ContractDocument, DocumentError, Limits, SchemaSet, lint};

use super::against::{FileAtRevision, GitRevision, ListedFile};
use super::against_registry::{check_with_registry, is_registry_url};
use super::compare::{compare_into, mark_new};
use super::report::{
    ChangeDetail, CommandKind, Comparison, ComparisonOutcome, Diagnostic, DocumentReport, Kind, Level, Report,
    file_scope,
};
use super::{OutputArgs, finish};
use crate::cli::{Exit, NatsOptions, UsageError};

/// Arguments of `soa contract check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Contract documents, or folders in which every *.json file is one (searched recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Compare each document with the same file at this git revision (such as
    /// origin/main), or ask the registry at a NATS URL (nats://HOST:PORT or
    /// tls://HOST:PORT) whether it would accept it; breaking changes fail the
    /// check.
    ///
    /// A file that does not exist at the revision is a new document. A
    /// document under a folder given that existed at the revision and is gone
    /// is reported as removed, unless a document of the same service and major
    /// now stands elsewhere (then that one is compared with it).
    ///
    /// Against a registry, each document is checked as a registration would
    /// be: against every registered version of its major and the registered
    /// consumers of its events. The NATS credential options apply to that
    /// connection.
    #[arg(long, value_name = "REV|URL")]
    pub against: Option<String>,
    /// Output, verdict and ignore options.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `soa contract check`.
pub(super) async fn run(
    args: &CheckArgs,
    nats: &NatsOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) -> anyhow::Result<Exit> {
    let files = collect_files(&args.paths)?;
    let ignore = args.output.ignore_list()?;
    if let Some(url) = args.against.as_deref().filter(|against| is_registry_url(against)) {
        let sources = files.iter().map(|path| Source::read(path)).collect();
        let mut report = check_sources(sources, &Limits::default());
        report.lenient = args.output.lenient;
        check_with_registry(&mut report, url, nats).await?;
        report.apply_ignores(&ignore);
        return finish(&report, &args.output, out, err, color);
    }
    // Git is asked first, so an unknown revision stops the check before any work.
    let mut revision = args.against.as_deref().map(GitRevision::new).transpose()?;
    let earlier = match &mut revision {
        Some(revision) => Some(EarlierVersions {
            files: revision.read_files(&files)?,
            listed: list_folders(revision, &args.paths)?,
        }),
        None => None,
    };
    let sources = files.iter().map(|path| Source::read(path)).collect();
    let limits = Limits::default();
    let mut report = check_sources(sources, &limits);
    report.lenient = args.output.lenient;
    if let (Some(revision), Some(earlier)) = (&revision, earlier) {
        compare_with_revision(&mut report, revision.name(), earlier, &limits);
    }
    report.apply_ignores(&ignore);
    finish(&report, &args.output, out, err, color)
}

/// One document to check: where it came from and its text, or why the text
/// could not be read.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path, as shown in the output.
    pub path: String,
    /// The text, or why it could not be read.
    pub text: Result<String, String>,
}

impl Source {
    /// Reads the file at `path`.
    pub fn read(path: &Path) -> Self {
        Self {
            path: path.display().to_string(),
            text: fs::read_to_string(path).map_err(|error| error.to_string()),
        }
    }
}

/// Checks the documents: parse each once, make all of them available to each
/// other's `soa://` references, then lint each. This is all of `soa contract
/// check` but the files and the output.
pub fn check_sources(sources: Vec<Source>, limits: &Limits) -> Report {
    let parsed: Vec<(Source, Option<Result<ContractDocument, DocumentError>>)> = sources
        .into_iter()
        .map(|source| {
            let document = source
                .text
                .as_ref()
                .ok()
                .map(|text| ContractDocument::parse(&source.path, text, limits));
            (source, document)
        })
        .collect();
    let mut external = SchemaSet::default();
    for document in parsed
        .iter()
        .filter_map(|(_, document)| document.as_ref()?.as_ref().ok())
    {
        external.add_contract(document);
    }
    let mut report = Report::new(CommandKind::Check);
    report.documents = parsed
        .into_iter()
        .map(|(source, document)| {
            let mut result = DocumentReport::new(source.path);
            match (source.text, document) {
                (Err(reason), _) => result.diagnostics.push(Diagnostic::new(
                    Level::Error,
                    Kind::Input,
                    &file_scope(&result.path),
                    "unreadable",
                    format!("could not read the file: {reason}"),
                )),
                (Ok(text), Some(Ok(document))) => {
                    let scope = document.service.to_string();
                    result.diagnostics = lint(&document, Some(&text), &external)
                        .iter()
                        .map(|finding| Diagnostic::from_finding(&scope, finding))
                        .collect();
                    result.contract = Some(document.id());
                    result.parsed = Some((document, text));
                }
                (Ok(_), Some(Err(error))) => {
                    result.diagnostics = Diagnostic::from_document_error(&result.path, &error);
                }
                // Every readable source was parsed above.
                (Ok(_), None) => result.diagnostics.push(Diagnostic::new(
                    Level::Error,
                    Kind::Input,
                    &file_scope(&result.path),
                    "unreadable",
                    "the file was not parsed".to_owned(),
                )),
            }
            result
        })
        .collect();
    report
}

/// What the revision held: each checked file, and the documents that were
/// under the folders given and are gone.
struct EarlierVersions {
    /// Each checked file at the revision, in the order of the files.
    files: Vec<FileAtRevision>,
    /// Each gone file, with the folder (as given) it was under.
    listed: Vec<(PathBuf, ListedFile)>,
}

/// The `*.json` files that were under the folders among `paths` at the
/// revision and are no longer in the working tree.
fn list_folders(revision: &mut GitRevision, paths: &[PathBuf]) -> Result<Vec<(PathBuf, ListedFile)>, UsageError> {
    let mut listed = Vec::new();
    for folder in paths.iter().filter(|path| path.is_dir()) {
        for file in revision.gone_json_files_under(folder)? {
            listed.push((folder.clone(), file));
        }
    }
    Ok(listed)
}

/// Compares each checked document with its earlier version at `base`, and
/// reports the documents that are gone since.
fn compare_with_revision(report: &mut Report, base: &str, earlier: EarlierVersions, limits: &Limits) {
    report.against = Some(base.to_owned());
    let lenient = report.lenient;
    for (document, old) in report.documents.iter_mut().zip(earlier.files) {
        document.repo_path = Some(old.repo_path.clone());
        let Some(policy) = document.parsed.as_ref().map(|(parsed, _)| parsed.compatibility) else {
            // A document that cannot be read now has its own errors already.
            continue;
        };
        let Some(bytes) = old.content else {
            mark_new(document, base);
            continue;
        };
        match read_earlier(base, &old.repo_path, bytes, limits) {
            Ok(old_document) => compare_into(document, base, &old.repo_path, &old_document, policy, lenient),
            Err(reason) => not_compared(document, base, &old.repo_path, &reason),
        }
    }
    for (folder, gone) in earlier.listed {
        // A file that was no contract at the revision is not missed.
        let Ok(old_document) = read_earlier(base, &gone.repo_path, gone.content, limits) else {
            continue;
        };
        let moved_to = report.documents.iter_mut().find(|document| {
            document
                .comparison
                .as_ref()
                .is_some_and(|comparison| comparison.outcome == ComparisonOutcome::NewDocument)
                && document.parsed.as_ref().is_some_and(|(new, _)| {
                    new.service == old_document.service && new.version.major() == old_document.version.major()
                })
        });
        match moved_to {
            Some(document) => {
                document
                    .diagnostics
                    .retain(|diagnostic| diagnostic.rule != "new-document");
                let scope = document.scope();
                document.diagnostics.push(Diagnostic::new(
                    Level::Note,
                    Kind::Comparison,
                    &scope,
                    "document-moved",
                    format!(
                        "moved: at {base} the contract {} was at {}; compared with that",
                        old_document.id(),
                        gone.repo_path
                    ),
                ));
                let policy = document
                    .parsed
                    .as_ref()
                    .map_or(old_document.compatibility, |(new, _)| new.compatibility);
                compare_into(document, base, &gone.repo_path, &old_document, policy, lenient);
            }
            None => {
                let path = folder.join(&gone.under_folder).display().to_string();
                report
                    .documents
                    .push(removed(path, base, &gone.repo_path, &old_document));
            }
        }
    }
}

/// The earlier version of a document, read as a contract; why not, if it cannot be.
fn read_earlier(base: &str, repo_path: &str, bytes: Vec<u8>, limits: &Limits) -> Result<ContractDocument, String> {
    let text = String::from_utf8(bytes).map_err(|_| format!("{base}:{repo_path} is not UTF-8 text"))?;
    ContractDocument::parse(&format!("{base}:{repo_path}"), &text, limits).map_err(|error| error.to_string())
}

/// Reports that the earlier version exists but cannot be compared: a
/// warning, not a failure, since the change at hand may be what fixes it.
fn not_compared(document: &mut DocumentReport, base: &str, repo_path: &str, reason: &str) {
    let scope = document.scope();
    document.diagnostics.push(Diagnostic::new(
        Level::Warning,
        Kind::Comparison,
        &scope,
        "earlier-version-unreadable",
        format!("the version at {base} is not a valid contract document, so nothing is compared: {reason}"),
    ));
    document.comparison = Some(Comparison {
        base: base.to_owned(),
        old_path: Some(repo_path.to_owned()),
        old_contract: None,
        policy: None,
        outcome: ComparisonOutcome::NotCompared,
    });
}

/// The report of a document that existed at `base` and is gone.
fn removed(path: String, base: &str, repo_path: &str, old: &ContractDocument) -> DocumentReport {
    let scope = old.service.to_string();
    let id = old.id();
    let mut diagnostic = Diagnostic::new(
        Level::Error,
        Kind::Change,
        &scope,
        "document-removed",
        format!(
            "the contract {id} was at {repo_path} at {base} and is gone, so its callers and consumers lose it; if it moved, keep its service and major; if it is retired on purpose, accept this change by its fingerprint"
        ),
    );
    diagnostic.change = Some(ChangeDetail {
        role: Some(contracts::compat::Role::Contract),
        member: None,
        effect: contracts::compat::Effect::Narrows,
        breaking: Some(true),
    });
    let mut document = DocumentReport::new(path);
    document.removed = true;
    document.repo_path = Some(repo_path.to_owned());
    document.contract = Some(id.clone());
    document.diagnostics.push(diagnostic);
    document.comparison = Some(Comparison {
        base: base.to_owned(),
        old_path: Some(repo_path.to_owned()),
        old_contract: Some(id.to_string()),
        policy: Some(super::report::policy_name(old.compatibility)),
        outcome: ComparisonOutcome::Compared,
    });
    document
}

/// The files to check: each path that is a file, and every `*.json` file
/// under each path that is a folder (sorted, recursively). A path that does
/// not exist, or a folder without documents, is a usage error.
pub(crate) fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(path.display().to_string()),
            Err(error) => {
                return Err(UsageError(format!("cannot read {}: {error}", path.display())));
            }
            Ok(metadata) if metadata.is_dir() => {
                let mut found = Vec::new();
                find_json_files(path, &mut found)
                    .map_err(|error| UsageError(format!("cannot search {}: {error}", path.display())))?;
                if found.is_empty() {
                    return Err(UsageError(format!(
                        "{} holds no *.json contract documents",
                        path.display()
                    )));
                }
                found.sort();
                files.extend(found);
            }
            Ok(_) => files.push(path.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(UsageError(format!("no such file or directory: {}", missing.join(", "))));
    }
    let mut seen = HashSet::new();
    files.retain(|file| seen.insert(file.clone()));
    Ok(files)
}

/// Adds every `*.json` file under `dir` to `found`. Symbolic links to folders
/// are not followed, so a link loop cannot make the search endless.
fn find_json_files(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            find_json_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "json") && path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::render::{ReportFormat, render};
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: path.to_owned(),
            text: Ok(text.to_owned()),
        }
    }

    fn output(report: &Report, format: ReportFormat) -> String {
        let mut out = Vec::new();
        render(report, format, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn human(report: &Report) -> String {
        output(report, ReportFormat::Human)
    }

    fn orders_text() -> String {
        contracts::shop::orders::contract().unwrap().to_pretty_json()
    }

    #[test]
    fn clean_documents_print_only_the_summary() {
        let report = check_sources(vec![source("orders.v1.json", &orders_text())], &Limits::default());
        assert!(!report.failed());
        assert_eq!(report.exit(), Exit::Success);
        assert_eq!(human(&report), "1 document, 0 errors, 0 warnings\n");
    }

    #[test]
    fn references_between_the_documents_given_resolve() {
        let mut payments = contracts::shop::payments::contract().unwrap().to_value();
        payments["$defs"]["Price"] = serde_json::json!({"$ref": "soa://orders@1#/$defs/Money"});
        let payments = serde_json::to_string_pretty(&payments).unwrap();
        let alone = check_sources(vec![source("payments.json", &payments)], &Limits::default());
        assert!(alone.failed(), "{}", human(&alone));
        assert!(
            human(&alone).contains("error[SOA021 unresolved-ref]"),
            "{}",
            human(&alone)
        );

        let together = check_sources(
            vec![
                source("payments.json", &payments),
                source("orders.json", &orders_text()),
            ],
            &Limits::default(),
        );
        assert!(!together.failed(), "{}", human(&together));
    }

    #[test]
    fn a_finding_line_names_the_place_the_rule_the_pointer_and_the_fingerprint() {
        let text = orders_text().replace("\"shop.orders.v1.get\"", "\"shop.orders.get\"");
        let report = check_sources(vec![source("bad.json", &text)], &Limits::default());
        let output = human(&report);
        let mut lines = output.lines();
        assert_eq!(lines.next(), Some("orders 1.2.0 (bad.json)"), "{output}");
        let line = lines.next().unwrap();
        assert!(
            line.starts_with("  bad.json:")
                && line.contains(": error[SOA001 subject-shape] at /operations/get/subject: ")
                && line.ends_with(&format!(
                    " (fingerprint {})",
                    super::super::fingerprint::fingerprint("orders", "SOA001", "/operations/get/subject", "")
                )),
            "{output}"
        );
        assert!(output.ends_with("\n1 document, 1 error, 0 warnings\nTo accept a finding or change on purpose, add its fingerprint to .soa-ignore.\n"), "{output}");
        assert_eq!(report.exit(), Exit::Failure);
    }

    #[test]
    fn unreadable_input_is_exit_2_and_format_problems_exit_1() {
        let report = check_sources(
            vec![
                source("broken.json", "{\n  \"contract\": \"soabus/v1\",\n  oops\n}"),
                Source {
                    path: "binary.json".to_owned(),
                    text: Err("stream did not contain valid UTF-8".to_owned()),
                },
                source("other.json", r#"{"contract": "soabus/v1", "colour": "blue"}"#),
            ],
            &Limits::default(),
        );
        assert_eq!(report.exit(), Exit::Usage);
        let output = human(&report);
        assert!(
            output.contains("  broken.json:3:3: error[json-syntax]: not valid JSON: key must be a string\n"),
            "{output}"
        );
        assert!(
            output.contains(
                "  binary.json: error[unreadable]: could not read the file: stream did not contain valid UTF-8\n"
            ),
            "{output}"
        );
        assert!(
            output.contains("  other.json:1:37: error[contract-format] at /colour: unknown field \"colour\""),
            "{output}"
        );

        let invalid_only = check_sources(
            vec![source("other.json", r#"{"contract": "soabus/v1", "colour": "blue"}"#)],
            &Limits::default(),
        );
        assert_eq!(invalid_only.exit(), Exit::Failure);
    }

    #[test]
    fn too_large_and_too_deep_documents_are_input_errors() {
        let limits = Limits {
            max_document_bytes: 64,
            max_depth: 3,
        };
        let report = check_sources(
            vec![source("deep.json", "[[[[[]]]]]"), source("large.json", &" ".repeat(65))],
            &limits,
        );
        let rules: Vec<&str> = report
            .diagnostics()
            .map(|diagnostic| diagnostic.rule.as_str())
            .collect();
        assert_eq!(rules, ["too-deep", "too-large"]);
        assert_eq!(report.exit(), Exit::Usage);
    }

    #[test]
    fn the_json_format_has_the_documents_and_a_summary() {
        let report = check_sources(
            vec![source("orders.v1.json", &orders_text()), source("broken.json", "{")],
            &Limits::default(),
        );
        let json: serde_json::Value = serde_json::from_str(&output(&report, ReportFormat::Json)).unwrap();
        let documents = &json["documents"];
        assert_eq!(documents[0]["path"], "orders.v1.json");
        assert_eq!(documents[0]["service"], "orders");
        assert_eq!(documents[0]["version"], "1.2.0");
        assert_eq!(documents[0]["diagnostics"], serde_json::json!([]));
        assert_eq!(documents[1]["path"], "broken.json");
        assert_eq!(documents[1]["diagnostics"][0]["rule"], "json-syntax");
        assert_eq!(documents[1]["diagnostics"][0]["kind"], "input");
        assert_eq!(documents[1]["diagnostics"][0]["line"], 1);
        assert_eq!(json["summary"]["errors"], 1);
        assert_eq!(json["summary"]["exit_code"], 2);
    }

    #[test]
    fn folders_are_searched_recursively_in_order_and_missing_paths_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("nested")).unwrap();
        for name in ["b.json", "a.json", "nested/c.json", "notes.txt"] {
            fs::write(dir.path().join(name), "{}").unwrap();
        }
        let files = collect_files(&[dir.path().to_owned(), dir.path().join("a.json")]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|file| file.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "nested/c.json"]);

        let missing = collect_files(&[dir.path().join("nope.json")]).unwrap_err();
        assert!(
            missing.to_string().starts_with("no such file or directory: "),
            "{missing}"
        );
        fs::create_dir(dir.path().join("empty")).unwrap();
        let empty = collect_files(&[dir.path().join("empty")]).unwrap_err();
        assert!(
            empty.to_string().ends_with("holds no *.json contract documents"),
            "{empty}"
        );
    }
}
