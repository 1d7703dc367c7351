//! `soa services`: every registered service, one line each, from the
//! registry's `list` (page after page), or its `search` when a tag or an
//! owner narrows the listing.

use std::io::Write;

use clap::Args;
use contracts::registry_api::{SearchRequest, ServiceSummary, ops};
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions};

/// Arguments of `soa services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only the services with this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only the services of this owning team.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Print the service summaries as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soa services`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &ServicesArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let (registry, client) = RegistryClient::connect(nats, "soa-services").await?;
    let filtered = args.tag.is_some() || args.owner.is_some();
    let listed = until_cancelled(&shutdown, async {
        if filtered {
            let request = SearchRequest {
                tag: args.tag.clone(),
                owner: args.owner.clone(),
                ..SearchRequest::default()
            };
            Ok(registry.call::<ops::Search>(&request).await?.services)
        } else {
            registry.list_all().await
        }
    })
    .await;
    close(client).await;
    let services = listed?;
    let nothing = if filtered {
        "No registered service matches the filters."
    } else {
        "No service is registered yet; services register themselves when they start, or with `soa registry serve`."
    };
    print_summaries(out, err, &services, args.json, nothing)?;
    // An empty registry is an answer; an empty filtered listing found nothing.
    Ok(if services.is_empty() && filtered {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// Prints `services`: a table, or a JSON array with `--json`; when there are
/// none, `nothing` on standard error (and `[]` as JSON).
pub(super) fn print_summaries(
    out: &mut dyn Write,
    err: &mut dyn Write,
    services: &[ServiceSummary],
    json: bool,
    nothing: &str,
) -> anyhow::Result<()> {
    if json {
        write_json(out, &services)?;
    } else if !services.is_empty() {
        write_table(out, 0, &summary_rows(services), &[false; 5])?;
    }
    if services.is_empty() {
        writeln!(err, "{nothing}")?;
    }
    Ok(())
}

/// The table of services: a header and one row each.
fn summary_rows(services: &[ServiceSummary]) -> Vec<[String; 5]> {
    let mut rows = vec![["NAME", "LATEST", "INSTANCES", "OWNER", "TAGS"].map(str::to_owned)];
    rows.extend(services.iter().map(|service| {
        [
            service.name.to_string(),
            service.latest.to_string(),
            instances_cell(service),
            service.owner.clone(),
            if service.tags.is_empty() {
                "-".to_owned()
            } else {
                service.tags.join(", ")
            },
        ]
    }));
    rows
}

/// `healthy/total`, and how many drift when some do.
fn instances_cell(service: &ServiceSummary) -> String {
    let mut cell = format!("{}/{}", service.healthy, service.instances);
    if service.drifting > 0 {
        cell.push_str(&format!(", {} drifting", service.drifting));
    }
    cell
}

#[cfg(test)]
mod tests {
    use contracts::{ServiceName, Version};

    use super::*;

    fn summary(name: &str, instances: u32, healthy: u32, drifting: u32, tags: &[&str]) -> ServiceSummary {
        ServiceSummary {
            name: ServiceName::parse(name).unwrap(),
            latest: Version::new(1, 2, 0),
            versions: vec![Version::new(1, 0, 0), Version::new(1, 2, 0)],
            owner: "fulfilment-team".to_owned(),
            description: "Stock".to_owned(),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            instances,
            healthy,
            drifting,
        }
    }

    #[test]
    fn the_table_shows_health_and_drift() {
        let services = [
            summary("inventory", 3, 2, 1, &["shop", "stock"]),
            summary("orders", 0, 0, 0, &[]),
        ];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_summaries(&mut out, &mut err, &services, false, "none").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME       LATEST  INSTANCES        OWNER            TAGS\n\
             inventory  1.2.0   2/3, 1 drifting  fulfilment-team  shop, stock\n\
             orders     1.2.0   0/0              fulfilment-team  -\n"
        );
        assert!(err.is_empty());

        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_summaries(&mut out, &mut err, &[], true, "none").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
        assert_eq!(String::from_utf8(err).unwrap(), "none\n");
    }
}
