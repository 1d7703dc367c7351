//! `soa search`: the services matching words, a tag, an owner, a subject
//! pattern or a schema field, all given criteria together, from the
//! registry's `search`.

use std::io::Write;

use clap::Args;
use contracts::SubjectPattern;
use contracts::registry_api::{SearchRequest, ops};
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, until_cancelled};
use super::services::print_summaries;
use super::{Exit, NatsOptions, UsageError};

/// Arguments of `soa search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to find in names and descriptions of services, operations and events (every word must appear).
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
    /// Only the services with this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only the services of this owning team.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only the services with a subject matching this pattern (`*` and `>` wildcards allowed).
    #[arg(long, value_name = "PATTERN")]
    pub subject: Option<String>,
    /// Only the services with a message schema that declares this property.
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,
    /// Print the service summaries as a JSON array.
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// The registry request these arguments ask for.
    fn request(&self) -> Result<SearchRequest, UsageError> {
        let subject = self
            .subject
            .as_deref()
            .map(SubjectPattern::parse)
            .transpose()
            .map_err(|error| UsageError(format!("--subject: {error}")))?;
        let text = self.text.clone().filter(|text| !text.trim().is_empty());
        Ok(SearchRequest {
            text,
            tag: self.tag.clone(),
            owner: self.owner.clone(),
            subject,
            field: self.field.clone(),
        })
    }
}

/// Runs `soa search`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &SearchArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let request = args.request()?;
    let (registry, client) = RegistryClient::connect(nats, "soa-search").await?;
    let found = until_cancelled(&shutdown, registry.call::<ops::Search>(&request)).await;
    close(client).await;
    let services = found?.services;
    print_summaries(out, err, &services, args.json, "No registered service matches.")?;
    Ok(if services.is_empty() {
        Exit::Failure
    } else {
        Exit::Success
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SearchArgs,
    }

    #[test]
    fn criteria_become_the_request_and_a_bad_pattern_is_a_usage_error() {
        let parsed = Wrapper::parse_from(["search", "stock level", "--tag", "shop", "--subject", "shop.*.v1.>"]);
        let request = parsed.args.request().unwrap();
        assert_eq!(request.text.as_deref(), Some("stock level"));
        assert_eq!(request.tag.as_deref(), Some("shop"));
        assert_eq!(request.subject.unwrap().as_str(), "shop.*.v1.>");
        let bad = Wrapper::parse_from(["search", "--subject", "shop..x"]);
        assert!(bad.args.request().unwrap_err().0.starts_with("--subject: "));
    }
}
