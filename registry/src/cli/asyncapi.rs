//! `soa asyncapi [SERVICE[@VERSION]]`: the AsyncAPI 3.0 document of one
//! registered service version, or of every registered service, from the
//! registry's `get` and `list`.
//!
//! A service's document needs the contracts of the events it consumes, of
//! the operations it calls and of the schemas it references (`soa://`):
//! each is asked for as the latest version of its major. The system's
//! document holds the latest version of every major of every service. The
//! document is checked against the AsyncAPI 3.0.0 schema before it is
//! written; what could not be carried over is said on standard error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use contracts::ContractDocument;
use contracts::registry_api::{GetRequest, ops};
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, parse_get_target, until_cancelled};
use super::{Exit, NatsOptions, UsageError};
use crate::export::asyncapi::{self, ContractMajor, ExportOptions, ServerAddress};

/// Registry calls in flight at once while gathering contracts.
const CONCURRENT_GETS: usize = 8;

/// The most contracts gathered for one document, so that a registry that
/// keeps naming new ones cannot keep the command going.
const MAX_CONTRACTS: usize = 4096;

/// Arguments of `soa asyncapi`.
#[derive(Debug, Args)]
pub struct AsyncApiArgs {
    /// The service, its latest version; or one version (`inventory@1.2.0`), or the latest of a major
    /// (`inventory@1`). Without it, one document for every registered service.
    #[arg(value_name = "SERVICE[@VERSION]")]
    pub service: Option<String>,
    /// Write the document to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The NATS server the document names (nats://host:port or tls://host:port); without it, a `host`
    /// variable whose default is localhost:4222.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// Runs `soa asyncapi`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &AsyncApiArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let target = args.service.as_deref().map(parse_get_target).transpose()?;
    let server = args
        .server
        .as_deref()
        .map(ServerAddress::parse)
        .transpose()
        .map_err(|message| UsageError(format!("--server: {message}")))?;
    let options = ExportOptions { server };
    let (registry, client) = RegistryClient::connect(nats, "soa-asyncapi").await?;
    let built = until_cancelled(&shutdown, async {
        match &target {
            Some(request) => {
                let document = registry.call::<ops::Get>(request).await?.document;
                let dependencies = gather(&registry, std::slice::from_ref(&document), false).await?;
                Ok(asyncapi::service_document(&document, &dependencies, &options))
            }
            None => {
                let heads = heads(&registry).await?;
                let documents = gather(&registry, &heads, true).await?;
                Ok(asyncapi::system_document(&documents, &options))
            }
        }
    })
    .await;
    close(client).await;
    let document = built?;
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    match &args.out {
        Some(path) => {
            tokio::fs::write(path, text)
                .await
                .with_context(|| format!("could not write {}", path.display()))?;
        }
        None => out.write_all(text.as_bytes())?,
    }
    for warning in asyncapi::warnings(&document) {
        writeln!(err, "warning: {warning}")?;
    }
    if let Err(problems) = asyncapi::validate(&document) {
        writeln!(
            err,
            "error: the document does not validate against the AsyncAPI {} schema; this is a bug in soa:",
            asyncapi::ASYNCAPI_VERSION
        )?;
        for problem in problems {
            writeln!(err, "  {problem}")?;
        }
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// The latest version of every major of every registered service.
async fn heads(registry: &RegistryClient) -> anyhow::Result<Vec<ContractDocument>> {
    let services = registry.list_all().await?;
    let majors: BTreeSet<ContractMajor> = services
        .iter()
        .flat_map(|summary| {
            summary
                .versions
                .iter()
                .chain([&summary.latest])
                .map(|version| ContractMajor {
                    service: summary.name.clone(),
                    major: version.major(),
                })
        })
        .collect();
    let found = get_latest(registry, majors.into_iter().take(MAX_CONTRACTS)).await?;
    Ok(found.into_values().collect())
}

/// `documents` and the contracts they depend on, each the latest of its
/// major, following references from what is found in turn. With `whole`,
/// everything each document depends on (consumed events and called
/// operations too); otherwise, beyond the first documents, only the
/// contracts schemas reference. A dependency the registry does not hold is
/// left for the export to warn about.
async fn gather(
    registry: &RegistryClient,
    documents: &[ContractDocument],
    whole: bool,
) -> anyhow::Result<Vec<ContractDocument>> {
    let mut known: BTreeMap<ContractMajor, ContractDocument> = documents
        .iter()
        .map(|document| (ContractMajor::of(document), document.clone()))
        .collect();
    let mut asked: BTreeSet<ContractMajor> = known.keys().cloned().collect();
    let mut wanted: BTreeSet<ContractMajor> = documents.iter().flat_map(asyncapi::dependencies_of).collect();
    while !wanted.is_empty() && asked.len() < MAX_CONTRACTS {
        let batch: Vec<ContractMajor> = wanted
            .iter()
            .filter(|key| !asked.contains(*key))
            .take(MAX_CONTRACTS - asked.len())
            .cloned()
            .collect();
        wanted.clear();
        asked.extend(batch.iter().cloned());
        for (key, document) in get_latest(registry, batch.into_iter()).await? {
            wanted.extend(if whole {
                asyncapi::dependencies_of(&document)
            } else {
                asyncapi::schema_references_of(&document)
            });
            known.insert(key, document);
        }
    }
    Ok(known.into_values().collect())
}

/// The latest version of each of `majors` the registry holds.
async fn get_latest(
    registry: &RegistryClient,
    majors: impl Iterator<Item = ContractMajor>,
) -> anyhow::Result<BTreeMap<ContractMajor, ContractDocument>> {
    let requests = majors.map(|key| async move {
        let request = GetRequest {
            service: key.service.clone(),
            version: None,
            major: Some(key.major),
        };
        match registry.try_call::<ops::Get>(&request).await {
            Ok(found) => Ok(Some((key, found.document))),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error.into_anyhow()),
        }
    });
    let found: Vec<Option<(ContractMajor, ContractDocument)>> = futures::stream::iter(requests)
        .buffered(CONCURRENT_GETS)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}
