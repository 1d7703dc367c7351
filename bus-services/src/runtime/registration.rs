//! Keeping a service known to the registry: register the contract, then
//! heartbeat; keep serving while the registry is away and register again
//! when it answers; deregister on a clean shutdown.

use std::time::Duration;

use contracts::registry_api::{DeregisterRequest, HeartbeatRequest, RegisterRequest, RegistryRequest};
use contracts::{ContractDocument, ErrorCode};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::connection::refusals::{self, PermissionRefusal, RefusedAction};
use crate::wire;

/// How a service talks to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// How long the registry may keep the instance without a beat; a few
    /// intervals, so one lost beat does not expire it.
    pub ttl: Duration,
    /// How long to wait for each registry reply.
    pub request_timeout: Duration,
    /// The owner credential presented when registering the contract.
    pub owner_token: Option<String>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            ttl: Duration::from_secs(20),
            request_timeout: Duration::from_secs(2),
            owner_token: None,
        }
    }
}

/// Why one registry exchange failed.
#[derive(Debug, thiserror::Error)]
enum RegistryCallError {
    #[error("the registry did not answer: {0}")]
    Unreachable(String),
    #[error("the registry refused: {0}")]
    Refused(contracts::ErrorBody),
    #[error("the registry's reply could not be read: {0}")]
    Garbled(String),
    #[error(
        "{0}; grant the registry's register, heartbeat and deregister subjects to this service's NATS \
         user (`soa contract permissions` includes them)"
    )]
    NotPermitted(PermissionRefusal),
}

async fn call<R: RegistryRequest>(
    nats: &async_nats::Client,
    request: &R,
    timeout: Duration,
) -> Result<R::Response, RegistryCallError>
where
    R::Response: DeserializeOwned,
{
    let payload = serde_json::to_vec(request).map_err(|err| RegistryCallError::Garbled(err.to_string()))?;
    let message = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    let subject = R::subject();
    let sent_at = std::time::Instant::now();
    let reply = nats.send_request(subject.clone(), message).await.map_err(|err| {
        // A request the server refused for lack of permission times out: say why.
        match refusals::recent(nats, RefusedAction::Publish, &subject, sent_at) {
            Some(refusal) => RegistryCallError::NotPermitted(refusal),
            None => RegistryCallError::Unreachable(err.to_string()),
        }
    })?;
    if let Some(body) = wire::header(reply.headers.as_ref(), contracts::envelope::headers::SERVICE_ERROR_CODE)
        .and_then(|_| wire::decode_error(reply.headers.as_ref(), &reply.payload))
    {
        return Err(RegistryCallError::Refused(body));
    }
    serde_json::from_slice(&reply.payload).map_err(|err| RegistryCallError::Garbled(err.to_string()))
}

/// Registers `document`, heartbeats as `instance_id` until `shutdown`, then
/// deregisters. Never fails: while the registry is unreachable the service
/// keeps serving and tries again at the next beat.
pub(crate) async fn keep_registered(
    nats: async_nats::Client,
    document: ContractDocument,
    instance_id: String,
    config: RegistrationConfig,
    shutdown: CancellationToken,
) {
    let register = RegisterRequest {
        document: document.to_value(),
        owner_token: config.owner_token.clone(),
    };
    let heartbeat = HeartbeatRequest {
        instance_id: instance_id.clone(),
        contract: document.id(),
        digest: document.digest(),
        ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
    };
    let mut registered = false;
    // After a refusal, wait longer each time (up to five minutes): retrying
    // at every beat would not change the answer.
    let mut refusals: u32 = 0;
    let mut next_register_attempt = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if !registered {
            if tokio::time::Instant::now() < next_register_attempt {
                continue;
            }
            match call(&nats, &register, config.request_timeout).await {
                Ok(response) => {
                    tracing::info!(contract = %response.id, created = response.created, "Registered the contract.");
                    registered = true;
                    refusals = 0;
                }
                Err(RegistryCallError::Refused(body)) => {
                    refusals = refusals.saturating_add(1);
                    let wait = config
                        .heartbeat_interval
                        .saturating_mul(2u32.saturating_pow(refusals.min(16)))
                        .min(std::time::Duration::from_secs(300));
                    next_register_attempt = tokio::time::Instant::now() + wait;
                    tracing::error!(code = %body.code, error = %body.message, retry_in = ?wait, "The registry refused the contract; the service keeps serving unregistered.");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Could not register; will try again at the next heartbeat.");
                    continue;
                }
            }
        }
        match call(&nats, &heartbeat, config.request_timeout).await {
            Ok(response) => {
                if response.drift {
                    tracing::warn!(contract = %heartbeat.contract, "The registry reports contract drift: the served contract differs from every registered version.");
                }
            }
            Err(RegistryCallError::Refused(body)) if body.code == ErrorCode::NotFound => {
                // The registry forgot us (restarted from an older state, say): register again.
                registered = false;
            }
            Err(error) => {
                tracing::warn!(error = %error, "A heartbeat failed; will register again when the registry answers.");
                registered = false;
            }
        }
    }
    let deregister = DeregisterRequest { instance_id };
    match call(&nats, &deregister, config.request_timeout).await {
        Ok(_) => tracing::info!("Deregistered."),
        Err(error) => tracing::warn!(error = %error, "Could not deregister; the registry will expire this instance."),
    }
}
