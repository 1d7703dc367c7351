//! `soa contract export [--out DIR] [--check]`: writes the shop's contract
//! documents as the Rust types define them, or with `--check` reports where
//! the written documents drifted from the types, so CI fails on drift.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use contracts::catalog::file_name;

use crate::cli::Exit;

/// Arguments of `soa contract export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The folder the documents are written to.
    #[arg(long, value_name = "DIR", default_value = "contracts/catalog")]
    pub out: PathBuf,
    /// Write nothing; exit 1 and list the files that differ from the Rust types.
    #[arg(long)]
    pub check: bool,
}

/// How a document on disk compares with the exported one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    /// Identical.
    Current,
    /// Present but different.
    Changed,
    /// Not there.
    Missing,
    /// A `*.json` file in the folder that no Rust type exports.
    Unknown,
}

/// One file of the export and how it compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportFile {
    pub(crate) path: PathBuf,
    pub(crate) state: FileState,
    /// What the file should hold; `None` for an unknown file.
    pub(crate) expected: Option<String>,
}

/// Runs `soa contract export`.
pub(super) fn run(args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let files = compare(&args.out)?;
    if args.check {
        report_drift(&args.out, &files, out).context("could not write the report")
    } else {
        write_documents(&args.out, &files, out)
    }
}

/// Compares the exported documents with what `dir` holds.
pub(crate) fn compare(dir: &Path) -> anyhow::Result<Vec<ExportFile>> {
    let documents = contracts::catalog::documents().context("the catalogue's contracts do not build")?;
    let mut files = Vec::new();
    let mut exported = BTreeSet::new();
    for document in &documents {
        let name = file_name(document);
        let path = dir.join(&name);
        let expected = document.to_pretty_json();
        let state = match fs::read(&path) {
            Ok(actual) if actual == expected.as_bytes() => FileState::Current,
            Ok(_) => FileState::Changed,
            Err(error) if error.kind() == io::ErrorKind::NotFound => FileState::Missing,
            Err(error) => {
                return Err(error).with_context(|| format!("could not read {}", path.display()));
            }
        };
        exported.insert(name);
        files.push(ExportFile {
            path,
            state,
            expected: Some(expected),
        });
    }
    let on_disk = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("could not list {}", dir.display()))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("could not list {}", dir.display()));
        }
    };
    let mut unknown: Vec<PathBuf> = on_disk
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".json") && !exported.contains(name))
        .map(|name| dir.join(name))
        .collect();
    unknown.sort();
    files.extend(unknown.into_iter().map(|path| ExportFile {
        path,
        state: FileState::Unknown,
        expected: None,
    }));
    Ok(files)
}

fn report_drift(dir: &Path, files: &[ExportFile], out: &mut dyn Write) -> io::Result<Exit> {
    let mut drifted = 0;
    for file in files {
        let problem = match file.state {
            FileState::Current => continue,
            FileState::Changed => "differs from what the Rust types export",
            FileState::Missing => "is missing",
            FileState::Unknown => "is exported by no Rust type",
        };
        drifted += 1;
        writeln!(out, "{}: {problem}", file.path.display())?;
    }
    if drifted == 0 {
        let count = files.len();
        writeln!(out, "{count} documents in {} match the Rust types", dir.display())?;
        return Ok(Exit::Success);
    }
    writeln!(
        out,
        "{drifted} of the documents in {} drifted from the Rust types; run `soa contract export --out {}` and commit the result",
        dir.display(),
        dir.display()
    )?;
    Ok(Exit::Failure)
}

fn write_documents(dir: &Path, files: &[ExportFile], out: &mut dyn Write) -> anyhow::Result<Exit> {
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let (mut written, mut current) = (0, 0);
    for file in files {
        match (file.state, &file.expected) {
            (FileState::Current, _) => current += 1,
            (FileState::Changed | FileState::Missing, Some(expected)) => {
                fs::write(&file.path, expected).with_context(|| format!("could not write {}", file.path.display()))?;
                writeln!(out, "wrote {}", file.path.display())?;
                written += 1;
            }
            (FileState::Unknown, _) | (_, None) => {
                writeln!(
                    out,
                    "{}: not exported by any Rust type; left alone",
                    file.path.display()
                )?;
            }
        }
    }
    writeln!(
        out,
        "{written} documents written to {}, {current} already current",
        dir.display()
    )?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_then_check_finds_no_drift_and_an_edit_is_drift() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("catalog");
        let mut out = Vec::new();
        let files = compare(&target).unwrap();
        assert!(files.iter().all(|file| file.state == FileState::Missing));
        assert_eq!(write_documents(&target, &files, &mut out).unwrap(), Exit::Success);

        let files = compare(&target).unwrap();
        assert!(files.iter().all(|file| file.state == FileState::Current), "{files:?}");
        assert_eq!(report_drift(&target, &files, &mut Vec::new()).unwrap(), Exit::Success);

        fs::write(target.join("orders.v1.json"), "{}").unwrap();
        fs::write(target.join("extra.v1.json"), "{}").unwrap();
        let files = compare(&target).unwrap();
        let mut report = Vec::new();
        assert_eq!(report_drift(&target, &files, &mut report).unwrap(), Exit::Failure);
        let report = String::from_utf8(report).unwrap();
        assert!(
            report.contains("orders.v1.json: differs from what the Rust types export"),
            "{report}"
        );
        assert!(
            report.contains("extra.v1.json: is exported by no Rust type"),
            "{report}"
        );
        assert!(report.contains("2 of the documents"), "{report}");
    }
}
