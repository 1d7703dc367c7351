//! Fingerprints of diagnostics and the ignore file that accepts them.
//!
//! A fingerprint names one diagnostic by what it is about (the service, the
//! rule or change code, the JSON pointers), never by where it happens to sit
//! in the file, so it survives unrelated edits above it. A team that breaks a
//! contract on purpose lists the fingerprint in an ignore file (`.soa-ignore`
//! by default) and the gate reports that change as ignored instead of failing.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cli::UsageError;

/// The ignore file read when `--ignore` is not given, if it exists in the
/// current directory.
pub(crate) const DEFAULT_IGNORE_FILE: &str = ".soa-ignore";

/// How many hex digits a fingerprint has.
pub(crate) const FINGERPRINT_DIGITS: usize = 16;

/// The fingerprint of a diagnostic: the first 16 hex digits of a SHA-256
/// over its parts. `scope` is the service name (or, for something that is no
/// contract, the file), `rule` the lint rule id or change code.
///
/// A `$ref` segment in a pointer (`/request/$ref/properties/id`) names the
/// same place as the path without it, so it is left out: the fingerprint
/// does not depend on whether a path was spelled through the reference.
pub(crate) fn fingerprint(scope: &str, rule: &str, pointer: &str, old_pointer: &str) -> String {
    let (pointer, old_pointer) = (without_ref_segments(pointer), without_ref_segments(old_pointer));
    let mut hasher = Sha256::new();
    // A separator that no part can contain keeps ("ab", "c") apart from ("a", "bc").
    for part in ["soa-fingerprint/v1", scope, rule, &pointer, &old_pointer] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(FINGERPRINT_DIGITS);
    for byte in digest.iter().take(FINGERPRINT_DIGITS / 2) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `pointer` without its `/$ref` segments.
fn without_ref_segments(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|segment| *segment != "$ref")
        .collect::<Vec<_>>()
        .join("/")
}

/// The fingerprints a team has accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IgnoreList {
    /// Where the list came from, for the report; `None` when there is none.
    pub(crate) file: Option<PathBuf>,
    fingerprints: HashSet<String>,
}

impl IgnoreList {
    /// Reads the ignore file: `explicit` when given (it must exist), else
    /// `.soa-ignore` in the current directory when there is one.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<Self, UsageError> {
        let (path, required) = match explicit {
            Some(path) => (path.to_owned(), true),
            None => (PathBuf::from(DEFAULT_IGNORE_FILE), false),
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound && !required => return Ok(Self::default()),
            Err(error) => {
                return Err(UsageError(format!(
                    "cannot read the ignore file {}: {error}",
                    path.display()
                )));
            }
        };
        let mut list = Self::parse(&path.display().to_string(), &text)?;
        list.file = Some(path);
        Ok(list)
    }

    /// Parses an ignore file: one fingerprint a line, optionally followed by
    /// a `#` comment; blank lines and lines that are only a comment are
    /// skipped. Anything else is an error naming the line, since a typo
    /// would otherwise silently fail to accept the change it meant.
    pub(crate) fn parse(name: &str, text: &str) -> Result<Self, UsageError> {
        let mut fingerprints = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let content = line.split_once('#').map_or(line, |(before, _)| before).trim();
            if content.is_empty() {
                continue;
            }
            let well_formed = content.len() == FINGERPRINT_DIGITS
                && content
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
            if !well_formed {
                return Err(UsageError(format!(
                    "{name}:{}: {content:?} is not a fingerprint; each line holds one fingerprint of {FINGERPRINT_DIGITS} lowercase hex digits as printed by soa contract, optionally followed by a # comment",
                    index + 1
                )));
            }
            fingerprints.insert(content.to_owned());
        }
        Ok(Self {
            file: None,
            fingerprints,
        })
    }

    /// Whether `fingerprint` is accepted.
    pub(crate) fn contains(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_short_stable_and_tell_their_parts_apart() {
        let print = fingerprint("orders", "type-narrowed", "/a", "/a");
        assert_eq!(print.len(), FINGERPRINT_DIGITS);
        assert!(print.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(print, fingerprint("orders", "type-narrowed", "/a", "/a"));
        assert_ne!(print, fingerprint("orders", "type-narrowed", "/a", "/b"));
        assert_eq!(
            fingerprint("orders", "bound-tightened", "/request/$ref/properties/id", ""),
            fingerprint("orders", "bound-tightened", "/request/properties/id", ""),
            "a path through a reference is the same place"
        );
        assert_ne!(
            fingerprint("ab", "c", "", ""),
            fingerprint("a", "bc", "", ""),
            "the parts are separated"
        );
    }

    #[test]
    fn the_ignore_file_takes_fingerprints_and_comments() {
        let list = IgnoreList::parse(
            ".soa-ignore",
            "# accepted on purpose\n\n0123456789abcdef  # orders: quantity bound, ticket 42\n   fedcba9876543210\n",
        )
        .unwrap();
        assert!(list.contains("0123456789abcdef"));
        assert!(list.contains("fedcba9876543210"));
        assert!(!list.contains("0000000000000000"));
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let error = IgnoreList::parse(".soa-ignore", "0123456789abcdef\ntype-narrowed /a\n").unwrap_err();
        assert!(
            error
                .0
                .starts_with(".soa-ignore:2: \"type-narrowed /a\" is not a fingerprint"),
            "{error}"
        );
        let error = IgnoreList::parse("x", "0123456789ABCDEF").unwrap_err();
        assert!(error.0.starts_with("x:1: "), "{error}");
    }

    #[test]
    fn a_missing_default_file_is_no_list_but_a_missing_explicit_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = IgnoreList::load(Some(&dir.path().join("nope"))).unwrap_err();
        assert!(error.0.starts_with("cannot read the ignore file "), "{error}");
    }
}
