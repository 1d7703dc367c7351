//! `soa resolve SUBJECT`: which operations and events a subject, or a
//! pattern with wildcards, belongs to, from the registry's `resolve`.

use std::io::Write;

use clap::Args;
use contracts::SubjectPattern;
use contracts::registry_api::{BindingKind, ResolveRequest, SubjectBinding, ops};
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions, UsageError};

/// Arguments of `soa resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A subject (`shop.inventory.v1.reserve`) or a pattern with `*` and `>` wildcards (`shop.*.v1.>`).
    #[arg(value_name = "SUBJECT")]
    pub subject: String,
    /// Print the bindings as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soa resolve`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &ResolveArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let subject = SubjectPattern::parse(&args.subject).map_err(|error| UsageError(error.to_string()))?;
    let (registry, client) = RegistryClient::connect(nats, "soa-resolve").await?;
    let resolved = until_cancelled(
        &shutdown,
        registry.call::<ops::Resolve>(&ResolveRequest {
            subject: subject.clone(),
        }),
    )
    .await;
    close(client).await;
    let bindings = resolved?.bindings;
    if args.json {
        write_json(out, &bindings)?;
    } else if !bindings.is_empty() {
        write_table(out, 0, &binding_rows(&bindings), &[false; 4])?;
    }
    if bindings.is_empty() {
        let what = if subject.has_wildcards() { "matches" } else { "is" };
        writeln!(
            err,
            "No registered operation or event {what} {subject}; `soa services` lists the registered services."
        )?;
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// `operation` or `event`.
pub(super) fn kind_name(kind: BindingKind) -> &'static str {
    match kind {
        BindingKind::Operation => "operation",
        BindingKind::Event => "event",
    }
}

/// The table of bindings: a header and one row each.
fn binding_rows(bindings: &[SubjectBinding]) -> Vec<[String; 4]> {
    let mut rows = vec![["SUBJECT", "KIND", "CONTRACT", "NAME"].map(str::to_owned)];
    rows.extend(bindings.iter().map(|binding| {
        [
            binding.subject.to_string(),
            kind_name(binding.kind).to_owned(),
            binding.contract.to_string(),
            binding.name.to_string(),
        ]
    }));
    rows
}
