//! Benchmarks of `soa contract check` on 1,000 documents: the library call
//! the command makes (`check_sources`, parse + lint of every document against
//! one shared schema set), and the whole command on files in a folder.
//!
//! The documents are the shop's five contracts, 200 times over with renamed
//! services and subjects, versions that differ, and a `soa://` reference from
//! each group's payments into its orders, so references resolve across the
//! set as they do in a real catalogue.
//!
//! A third figure is the CI use, `--against HEAD` in a git repository where
//! every document has a new patch version and one changed description, so
//! each is read from git and compared in full; and a fourth splits off how
//! much of the check is parsing alone.
//!
//! Run with `cargo bench -p registry --bench check`. The goal for the whole
//! command is under 2 s.

// A benchmark, like a test, should stop at the line that failed.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use contracts::{ContractDocument, Limits};
use criterion::{Criterion, criterion_group, criterion_main};
use registry::cli::{self, CancellationToken, Exit, Source, check_sources};
use serde_json::{Value, json};

/// How many times the shop's five contracts are repeated.
const GROUPS: usize = 200;

/// 1,000 valid contract documents as (file name, text).
fn documents() -> Vec<(String, String)> {
    let shop = contracts::shop::contracts().expect("the shop's contracts build");
    let services: Vec<String> = shop.iter().map(|document| document.service.to_string()).collect();
    let mut documents = Vec::with_capacity(GROUPS * shop.len());
    for group in 0..GROUPS {
        let rename = |service: &str| format!("{service}-g{group}");
        for document in &shop {
            let mut value = document.to_value();
            let service = document.service.to_string();
            value["service"] = json!(rename(&service));
            value["version"] = json!(format!("1.{group}.0"));
            for members in ["operations", "events"] {
                if let Some(members) = value[members].as_object_mut() {
                    for member in members.values_mut() {
                        if let Some(subject) = member["subject"].as_str() {
                            member["subject"] =
                                json!(subject.replacen(&format!(".{service}."), &format!(".{}.", rename(&service)), 1));
                        }
                    }
                }
            }
            if let Some(consumes) = value["consumes"].as_array_mut() {
                for reference in consumes {
                    rename_reference(reference, &services, &rename);
                }
            }
            if service == "payments" {
                value["$defs"]["Price"] = json!({ "$ref": format!("soa://{}@1#/$defs/Money", rename("orders")) });
            }
            let text = serde_json::to_string_pretty(&value).expect("the benchmark can set up");
            documents.push((format!("{}.v1.json", rename(&service)), text));
        }
    }
    documents
}

/// `orders@1#placed` (or `{"event": "orders@1#placed", ...}`) with the service renamed.
fn rename_reference(reference: &mut Value, services: &[String], rename: &dyn Fn(&str) -> String) {
    let text = match reference {
        Value::String(text) => text,
        Value::Object(object) => match object.get_mut("event") {
            Some(Value::String(text)) => text,
            _ => return,
        },
        _ => return,
    };
    if let Some((service, rest)) = text.split_once('@')
        && services.iter().any(|known| known == service)
    {
        *text = format!("{}@{rest}", rename(service));
    }
}

fn sources(documents: &[(String, String)]) -> Vec<Source> {
    documents
        .iter()
        .map(|(name, text)| Source {
            path: name.clone(),
            text: Ok(text.clone()),
        })
        .collect()
}

fn check(c: &mut Criterion) {
    let documents = documents();
    let limits = Limits::default();

    // Once by hand, to show the figure and that every document is valid.
    let started = Instant::now();
    let report = check_sources(sources(&documents), &limits);
    eprintln!(
        "check_sources: {} documents in {:.3} s",
        report.document_count(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report.exit(), Exit::Success, "every generated document is valid");

    let dir = tempfile::tempdir().expect("the benchmark can set up");
    for (name, text) in &documents {
        std::fs::write(dir.path().join(name), text).expect("the benchmark can set up");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("the benchmark can set up");
    let command = || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = [
            "soa".as_ref(),
            "contract".as_ref(),
            "check".as_ref(),
            dir.path().as_os_str(),
        ];
        let exit = runtime.block_on(cli::run(args, &mut out, &mut err, CancellationToken::new()));
        (exit, out)
    };
    let started = Instant::now();
    let (exit, out) = command();
    eprintln!(
        "soa contract check DIR: {} in {:.3} s",
        String::from_utf8_lossy(&out).trim(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(exit, Exit::Success);

    // The same documents committed, then each one changed compatibly.
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "documents"]);
    for (name, text) in &documents {
        let mut value: Value = serde_json::from_str(text).expect("the benchmark can set up");
        let minor = value["version"].as_str().and_then(|version| version.strip_suffix(".0"));
        value["version"] = json!(format!("{}.1", minor.unwrap_or("1.0")));
        value["description"] = json!("Changed, compatibly");
        let text = serde_json::to_string_pretty(&value).expect("the benchmark can set up");
        std::fs::write(dir.path().join(name), text).expect("the benchmark can set up");
    }
    let against = || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = [
            "soa".as_ref(),
            "contract".as_ref(),
            "check".as_ref(),
            dir.path().as_os_str(),
            "--against".as_ref(),
            "main".as_ref(),
        ];
        let exit = runtime.block_on(cli::run(args, &mut out, &mut err, CancellationToken::new()));
        (exit, out, err)
    };
    let started = Instant::now();
    let (exit, out, err) = against();
    let out = String::from_utf8_lossy(&out);
    eprintln!(
        "soa contract check DIR --against main: {} in {:.3} s",
        out.lines().rev().take(2).collect::<Vec<_>>().join(" / "),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(exit, Exit::Success, "{out}{}", String::from_utf8_lossy(&err));

    let mut group = c.benchmark_group("check-1000-documents");
    group.sample_size(10);
    group.bench_function("parse only", |b| {
        b.iter(|| {
            documents
                .iter()
                .filter(|(name, text)| ContractDocument::parse(name, black_box(text), &limits).is_ok())
                .count()
        })
    });
    group.bench_function("check_sources", |b| {
        b.iter(|| check_sources(black_box(sources(&documents)), &limits))
    });
    group.bench_function("soa contract check DIR", |b| b.iter(command));
    group.bench_function("soa contract check DIR --against main", |b| b.iter(against));
    group.finish();
}

/// Runs git in `dir`, whatever the machine's git configuration.
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

criterion_group!(benches, check);
criterion_main!(benches);
