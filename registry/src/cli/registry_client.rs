//! The registry as the commands that query it see it: one NATS connection,
//! the runtime's typed client of the registry's own contract, and errors
//! that say what to do.
//!
//! Every registry call of the CLI goes through [`RegistryClient`], so the
//! exit codes agree across commands: no NATS connection, or no registry
//! answering, is a usage error (exit 2: the command cannot do anything);
//! a refusal of the registry (`NOT_FOUND`, ...) is a failure (exit 1).

use std::io::Write;
use std::time::Duration;

use bus_services::connection;
use bus_services::runtime::{CallError, CallOptions, ServiceClient};
use contracts::registry_api::{GetRequest, ListRequest, ServiceSummary, ops};
use contracts::{ErrorBody, ErrorCode, OperationType, ServiceName, Version};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{NatsOptions, UsageError};

/// How long the CLI waits for each registry reply.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// The page size asked of the registry's `list` (it may cap it).
const LIST_PAGE: u32 = 500;

/// Connects to the NATS server of `nats` under the connection name `name`.
/// Failing to is a usage error that says what the connection was for.
pub(super) async fn connect(nats: &NatsOptions, name: &str, purpose: &str) -> anyhow::Result<async_nats::Client> {
    connection::connect(&nats.connect_config(name)).await.map_err(|error| {
        anyhow::Error::new(error).context(UsageError(format!(
            "cannot {purpose} without a NATS connection to {}",
            nats.nats_url
        )))
    })
}

/// Why a registry call did not return an answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum RegistryError {
    /// Nothing listens on the registry's subject.
    #[error("no registry answered on {subject} at {url}; start one with `soa registry serve`")]
    NoRegistry {
        /// The subject asked.
        subject: String,
        /// The NATS server asked.
        url: String,
    },
    /// A registry listens but did not answer in time.
    #[error("the registry did not answer on {subject} at {url} within {timeout:?}")]
    Timeout {
        /// The subject asked.
        subject: String,
        /// The NATS server asked.
        url: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The registry answered with an error.
    #[error("{}", refusal(.0))]
    Refused(ErrorBody),
    /// The connection or the reply broke in another way.
    #[error("{0}")]
    Other(String),
}

/// A refusal as a sentence: the message of a `NOT_FOUND` (which says it
/// all), the code and message of anything else, and each detail.
fn refusal(body: &ErrorBody) -> String {
    let mut text = if body.code == ErrorCode::NotFound {
        body.message.clone()
    } else {
        format!("the registry refused: {}: {}", body.code, body.message)
    };
    for detail in &body.details {
        text.push_str(&format!("; {detail}"));
    }
    text
}

impl RegistryError {
    /// True when the registry said the thing asked for does not exist.
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused(body) if body.code == ErrorCode::NotFound)
    }

    /// The error for a command to return: a usage error (exit 2) when no
    /// registry answered, a failure (exit 1) otherwise.
    pub(super) fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::NoRegistry { .. } | Self::Timeout { .. } => anyhow::Error::new(UsageError(self.to_string())),
            other => anyhow::Error::new(other),
        }
    }
}

/// The registry's NATS API, through the runtime's typed client of the
/// registry's own contract.
#[derive(Debug, Clone)]
pub(super) struct RegistryClient {
    client: ServiceClient,
    url: String,
}

impl RegistryClient {
    /// A client of the registry on `nats`, which is connected to `url` (named in errors).
    pub(super) fn new(nats: async_nats::Client, url: &str) -> anyhow::Result<Self> {
        let contract = contracts::registry_api::contract()
            .map_err(|error| anyhow::anyhow!("the registry's own contract does not build: {error}"))?;
        let client = ServiceClient::new(nats, contract).with_options(CallOptions {
            timeout: REGISTRY_TIMEOUT,
            max_attempts: 2,
            ..CallOptions::default()
        });
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// Connects to the server of `nats` and makes a client of the registry there.
    pub(super) async fn connect(nats: &NatsOptions, name: &str) -> anyhow::Result<(Self, async_nats::Client)> {
        let client = connect(nats, name, "reach the registry").await?;
        Ok((Self::new(client.clone(), &nats.nats_url)?, client))
    }

    /// Calls `Op`; the error says whether a registry answered at all.
    pub(super) async fn try_call<Op: OperationType>(
        &self,
        request: &Op::Request,
    ) -> Result<Op::Response, RegistryError> {
        let subject = contracts::subjects::registry_api(Op::NAME);
        self.client.call::<Op>(request).await.map_err(|error| match error {
            CallError::Unavailable { .. } => RegistryError::NoRegistry {
                subject,
                url: self.url.clone(),
            },
            CallError::Timeout { timeout, .. } => RegistryError::Timeout {
                subject,
                url: self.url.clone(),
                timeout,
            },
            CallError::Service { body, .. } => RegistryError::Refused(body),
            other => RegistryError::Other(format!("calling {subject}: {other}")),
        })
    }

    /// Calls `Op`, with the error ready for a command to return.
    pub(super) async fn call<Op: OperationType>(&self, request: &Op::Request) -> anyhow::Result<Op::Response> {
        self.try_call::<Op>(request).await.map_err(RegistryError::into_anyhow)
    }

    /// Every registered service, by name, following the pages of `list`.
    pub(super) async fn list_all(&self) -> anyhow::Result<Vec<ServiceSummary>> {
        let mut services = Vec::new();
        let mut request = ListRequest {
            after: None,
            limit: Some(LIST_PAGE),
        };
        loop {
            let page = self.call::<ops::List>(&request).await?;
            services.extend(page.services);
            match page.next {
                // A registry that repeats itself would page forever.
                Some(next) if request.after.as_ref() != Some(&next) => request.after = Some(next),
                _ => break,
            }
        }
        Ok(services)
    }
}

/// Reads a `SERVICE[@VERSION]` argument as the `get` request it names:
/// `inventory` (the latest version), `inventory@1.2.0` (that version) or
/// `inventory@1` (the latest of that major).
pub(super) fn parse_get_target(text: &str) -> Result<GetRequest, UsageError> {
    let (service, version) = match text.split_once('@') {
        Some((service, version)) => (service, Some(version)),
        None => (text, None),
    };
    let service = ServiceName::parse(service).map_err(|error| UsageError(error.to_string()))?;
    let mut request = GetRequest {
        service,
        version: None,
        major: None,
    };
    match version {
        None => {}
        Some(major) if !major.is_empty() && major.bytes().all(|byte| byte.is_ascii_digit()) => {
            request.major = Some(
                major
                    .parse()
                    .map_err(|_| UsageError(format!("{major:?} is not a major version")))?,
            );
        }
        Some(version) => {
            request.version = Some(Version::parse(version).map_err(|error| UsageError(error.to_string()))?);
        }
    }
    Ok(request)
}

/// Writes `value` as pretty JSON and a line break.
pub(super) fn write_json(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Runs `work` unless `shutdown` (Ctrl-C) comes first.
pub(super) async fn until_cancelled<T>(
    shutdown: &CancellationToken,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
    }
}

/// Closes the connection, flushing what is still to be sent.
pub(super) async fn close(client: async_nats::Client) {
    if let Err(error) = client.drain().await {
        tracing::debug!(error = %error, "Could not drain the connection; it closes anyway.");
    }
}

#[cfg(test)]
mod tests {
    use contracts::ErrorDetail;

    use super::*;

    #[test]
    fn targets_name_a_version_a_major_or_the_latest() {
        let latest = parse_get_target("inventory").unwrap();
        assert_eq!((latest.version, latest.major), (None, None));
        let exact = parse_get_target("inventory@1.2.0").unwrap();
        assert_eq!(exact.version, Some(Version::new(1, 2, 0)));
        let major = parse_get_target("inventory@2").unwrap();
        assert_eq!(major.major, Some(2));
        for bad in ["Inventory", "inventory@", "inventory@one", "inventory@1.x"] {
            assert!(parse_get_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_registry_is_a_usage_error_and_a_refusal_a_failure() {
        let none = RegistryError::NoRegistry {
            subject: "soa.registry.v1.list".to_owned(),
            url: "nats://127.0.0.1:4222".to_owned(),
        };
        assert_eq!(
            none.to_string(),
            "no registry answered on soa.registry.v1.list at nats://127.0.0.1:4222; start one with `soa registry serve`"
        );
        assert!(none.into_anyhow().downcast_ref::<UsageError>().is_some());

        let missing = RegistryError::Refused(ErrorBody::new(ErrorCode::NotFound, "no service nope is registered"));
        assert!(missing.is_not_found());
        assert_eq!(missing.to_string(), "no service nope is registered");
        assert!(missing.into_anyhow().downcast_ref::<UsageError>().is_none());

        let invalid = RegistryError::Refused(ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "the request of get does not match registry@1.0.0".to_owned(),
            details: vec![ErrorDetail {
                pointer: "/service".to_owned(),
                schema_path: None,
                message: "\"Nope\" does not match".to_owned(),
            }],
        });
        assert!(!invalid.is_not_found());
        assert_eq!(
            invalid.to_string(),
            "the registry refused: VALIDATION_FAILED: the request of get does not match registry@1.0.0; at /service: \"Nope\" does not match"
        );
    }
}
