//! `soa contract permissions FILE...`: the NATS permissions each service's
//! instances need, derived from the contract documents (`contracts::
//! permissions`), printed as a nats-server configuration (one permissions
//! variable and one user per service major) or as JSON for other tooling.
//!
//! Every file given is read; the callees' and producers' documents among
//! them supply the subjects of the calls and consumed events, so pass the
//! documents of the whole system (a folder works) and pick the services to
//! print with `--service`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use contracts::permissions::{self, PermissionOptions, ServicePermissions, UserPassword};
use contracts::{ContractDocument, Limits};

use super::check::collect_files;
use crate::cli::{Exit, UsageError};

/// How the permissions are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PermissionsFormat {
    /// A nats-server configuration: one permissions variable per service
    /// major and an `authorization` block with one user each, whose password
    /// is read from the environment (`<SERVICE>_V<MAJOR>_PASSWORD`).
    #[default]
    Conf,
    /// JSON: one object per service major with its subject lists.
    Json,
}

/// Arguments of `soa contract permissions`.
#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// Contract documents, or folders searched for `*.json` documents: every
    /// service to print and every service they call or consume from.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print only this service (repeat for more); every given one by default.
    #[arg(long, value_name = "NAME")]
    pub service: Vec<String>,
    /// A key-value bucket a service keeps state in, as SERVICE=BUCKET
    /// (repeat for more).
    #[arg(long, value_name = "SERVICE=BUCKET")]
    pub kv: Vec<String>,
    /// How to print.
    #[arg(long, value_enum, default_value_t = PermissionsFormat::Conf)]
    pub format: PermissionsFormat,
}

/// Runs `soa contract permissions`.
pub(super) fn run(args: &PermissionsArgs, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let mut documents = Vec::new();
    for file in collect_files(&args.files)? {
        let source = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|err| UsageError(format!("cannot read {source}: {err}")))?;
        let document = ContractDocument::parse(&source, &text, &Limits::default())
            .map_err(|err| UsageError(format!("{err}; run `soa contract check {source}` for every problem")))?;
        documents.push(document);
    }
    let mut buckets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &args.kv {
        let (service, bucket) = entry
            .split_once('=')
            .filter(|(service, bucket)| !service.is_empty() && !bucket.is_empty())
            .ok_or_else(|| {
                UsageError(format!(
                    "--kv {entry:?}: write SERVICE=BUCKET, such as payments=shop_payments"
                ))
            })?;
        if !documents.iter().any(|doc| doc.service.as_str() == service) {
            return Err(UsageError(format!("--kv {entry:?}: no contract of {service:?} was given")).into());
        }
        buckets.entry(service.to_owned()).or_default().push(bucket.to_owned());
    }
    for wanted in &args.service {
        if !documents.iter().any(|doc| doc.service.as_str() == wanted) {
            return Err(UsageError(format!("--service {wanted:?}: no contract of {wanted:?} was given")).into());
        }
    }

    // One block per service major: its latest given version. The registry's
    // own contract is left out unless asked for: the registry process needs
    // far more than its contract says (its store, announcements), as the
    // orchestrator and the `soa` tools do; they run as platform users.
    let mut latest: BTreeMap<(String, u64), &ContractDocument> = BTreeMap::new();
    for document in &documents {
        let selected = if args.service.is_empty() {
            document.service.as_str() != contracts::subjects::REGISTRY_SERVICE
        } else {
            args.service.iter().any(|name| name == document.service.as_str())
        };
        if !selected {
            continue;
        }
        let key = (document.service.to_string(), document.version.major());
        let newer = latest.get(&key).is_none_or(|known| known.version < document.version);
        if newer {
            latest.insert(key, document);
        }
    }
    let mut blocks: Vec<ServicePermissions> = Vec::new();
    for ((service, _), document) in &latest {
        let options = PermissionOptions {
            kv_buckets: buckets.get(service).cloned().unwrap_or_default(),
        };
        let block = permissions::service_permissions(document, &documents, &options)
            .map_err(|err| UsageError(err.to_string()))?;
        blocks.push(block);
    }
    match args.format {
        PermissionsFormat::Conf => {
            let users: Vec<(ServicePermissions, UserPassword)> = blocks
                .into_iter()
                .map(|block| {
                    let password = UserPassword::Environment(block.password_variable());
                    (block, password)
                })
                .collect();
            writeln!(
                out,
                "# NATS permissions of soabus services, generated by `soa contract permissions` from their \
                 contracts.\n# Each service's instances connect as its user, with the inbox prefix named \
                 above its block.\n"
            )?;
            out.write_all(permissions::nats_config(&users).as_bytes())?;
        }
        PermissionsFormat::Json => {
            let text = serde_json::to_string_pretty(&blocks).context("could not encode the permissions")?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(Exit::Success)
}
