//! `soa orchestrator serve`: run one orchestrator replica (durable workflows
//! that call contract operations) until Ctrl-C or SIGTERM.
//!
//! Every replica on one NATS system shares the same JetStream buckets and
//! work queue, so running the command twice gives two replicas; a replica
//! that is killed leaves its work items to the others (or to itself when it
//! comes back) after `--ack-wait`.

use std::io::Write;
use std::time::Duration;

use bus_services::orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorError};
use bus_services::runtime::{CallOptions, RegistrationConfig, ServiceClient};
use clap::{Args, Subcommand};
use contracts::orchestrator_api::{DefinitionsRequest, ops};
use contracts::workflow::Interval;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::registry_client::connect;
use super::{Exit, NatsOptions};

/// How long the replica may take to answer its own API after it started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long draining the connection may take at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `soa orchestrator ...`.
#[derive(Debug, Subcommand)]
pub enum OrchestratorCommand {
    /// Run an orchestrator replica on NATS (`soa.orchestrator.v1.*` and every
    /// loaded workflow's `start`) until Ctrl-C or SIGTERM.
    ///
    /// Instances and definitions live in JetStream, so a replica that stops
    /// or is killed loses nothing: another replica, or this one restarted,
    /// carries on after the ack wait. Exits 0 after a clean shutdown, 1 when
    /// the orchestrator stops on an error, 2 when no NATS connection can be made.
    Serve(OrchestratorServeArgs),
}

/// Arguments of `soa orchestrator serve`.
#[derive(Debug, Args)]
pub struct OrchestratorServeArgs {
    /// How long the server waits for a silent replica before handing its work
    /// to another: recovery after a kill takes about this long (`250ms`, `2s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub ack_wait: Duration,
    /// Copies of the orchestrator's JetStream buckets and streams (3 on a
    /// three-node cluster): they are created with them, or raised to them
    /// when they have fewer; never lowered.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
    /// Instances this replica drives at once.
    #[arg(long, value_name = "N", default_value_t = OrchestratorConfig::default().max_in_flight,
          value_parser = parse_max_in_flight)]
    pub max_in_flight: usize,
    /// Do not register the orchestrator's and the workflows' services with
    /// the registry, nor heartbeat (loading a definition still asks the
    /// registry for the contracts it calls).
    #[arg(long)]
    pub no_register: bool,
    /// The owner credential presented when registering a workflow's generated
    /// contract (later versions of a workflow need the first one's). Prefer
    /// the environment variable: arguments are visible to every user of the machine.
    #[arg(long, env = "SOA_OWNER_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub owner_token: Option<String>,
}

/// Reads a duration written as `250ms`, `2s`, `1m` or `1h`; zero is refused.
pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let Interval(duration) = Interval::parse(text)?;
    if duration.is_zero() {
        return Err(format!(
            "{text:?} is zero; give a duration above zero, such as 250ms or 2s"
        ));
    }
    Ok(duration)
}

fn parse_max_in_flight(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(format!("{text:?} is not a positive whole number of instances")),
    }
}

/// Runs `soa orchestrator serve`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &OrchestratorCommand,
    stdout: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let OrchestratorCommand::Serve(args) = command;
    if args.owner_token.as_deref().is_some_and(|token| token.trim().is_empty()) {
        return Err(super::UsageError(
            "--owner-token (SOA_OWNER_TOKEN) is empty; give a token or leave it unset".to_owned(),
        )
        .into());
    }
    let client = connect(nats, "soa-orchestrator", "run the orchestrator").await?;
    let defaults = OrchestratorConfig::default();
    let config = OrchestratorConfig {
        replicas: usize::try_from(args.replicas).unwrap_or(1),
        ack_wait: args.ack_wait,
        max_in_flight: args.max_in_flight,
        registration: (!args.no_register).then(RegistrationConfig::default),
        owner_token: args.owner_token.clone(),
        ..defaults
    };
    let shutdown_timeout = config.shutdown_timeout;
    // Cancelled by Ctrl-C (through `shutdown`) or when this command gives up.
    let stop = shutdown.child_token();
    let mut running = tokio::spawn(Orchestrator::new(config).run(client.clone(), stop.clone()));

    let ready = wait_until_ready(&client, &mut running, &shutdown).await;
    let outcome = match ready {
        Ready::Answering { definitions } => {
            writeln!(
                stdout,
                "orchestrator ready on {} (ack wait {}, {definitions} workflow definition(s) loaded)",
                nats.nats_url,
                Interval(args.ack_wait)
            )?;
            stdout.flush()?;
            stop_when_asked(&mut running, &stop, shutdown_timeout).await
        }
        Ready::Interrupted => stop_when_asked(&mut running, &stop, shutdown_timeout).await,
        Ready::Ended(result) => result,
        Ready::Silent => {
            stop.cancel();
            let _ = stop_when_asked(&mut running, &stop, shutdown_timeout).await;
            Err(anyhow::anyhow!(
                "the orchestrator started but did not answer on its own API within {READY_TIMEOUT:?}; \
                 run with RUST_LOG=info to see what it is doing"
            ))
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, client.drain()).await.is_err() {
        tracing::warn!("Draining the NATS connection took too long; closing it anyway.");
    }
    outcome?;
    writeln!(stdout, "orchestrator: stopped")?;
    Ok(Exit::Success)
}

/// How the wait for the replica's first answer ended.
enum Ready {
    /// The API answered; this many definitions are loaded.
    Answering { definitions: usize },
    /// Ctrl-C came first.
    Interrupted,
    /// The replica stopped before it answered.
    Ended(anyhow::Result<()>),
    /// It neither answered nor stopped in time.
    Silent,
}

/// Asks the orchestrator's API until it answers. Another replica may be the
/// one that answers; the API is shared, so the bus is ready either way.
async fn wait_until_ready(
    client: &async_nats::Client,
    running: &mut JoinHandle<Result<(), OrchestratorError>>,
    shutdown: &CancellationToken,
) -> Ready {
    let contract = match contracts::orchestrator_api::contract() {
        Ok(contract) => contract,
        Err(error) => {
            return Ready::Ended(Err(anyhow::anyhow!(
                "the orchestrator's own contract does not build: {error}"
            )));
        }
    };
    let api = ServiceClient::new(client.clone(), contract).with_options(CallOptions {
        timeout: Duration::from_secs(1),
        max_attempts: 1,
        ..CallOptions::default()
    });
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        tokio::select! {
            ended = &mut *running => return Ready::Ended(finished(ended)),
            () = shutdown.cancelled() => return Ready::Interrupted,
            answer = api.call::<ops::Definitions>(&DefinitionsRequest {}) => {
                if let Ok(answer) = answer {
                    return Ready::Answering { definitions: answer.definitions.len() };
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Ready::Silent;
        }
        tokio::select! {
            ended = &mut *running => return Ready::Ended(finished(ended)),
            () = shutdown.cancelled() => return Ready::Interrupted,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Waits for the replica to stop: on its own (an error) or after `stop` is
/// cancelled, when it gets its own shutdown timeout and a little more
/// before it is aborted.
async fn stop_when_asked(
    running: &mut JoinHandle<Result<(), OrchestratorError>>,
    stop: &CancellationToken,
    shutdown_timeout: Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        ended = &mut *running => {
            stop.cancel();
            return finished(ended);
        }
        () = stop.cancelled() => {}
    }
    match tokio::time::timeout(shutdown_timeout + Duration::from_secs(5), &mut *running).await {
        Ok(ended) => finished(ended),
        Err(_) => {
            running.abort();
            Err(anyhow::anyhow!(
                "the orchestrator did not stop within {:?}; it was aborted, and its unfinished work \
                 items go to another replica after the ack wait",
                shutdown_timeout + Duration::from_secs(5)
            ))
        }
    }
}

/// The replica's result as the command's.
fn finished(ended: Result<Result<(), OrchestratorError>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow::Error::new(error).context("the orchestrator stopped")),
        Err(error) => Err(anyhow::anyhow!("the orchestrator's task failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_unit_and_are_not_zero() {
        assert_eq!(parse_positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_positive_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_positive_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_positive_duration("0s").unwrap_err().contains("zero"));
        assert!(parse_positive_duration("10").is_err());
        assert!(parse_positive_duration("fast").is_err());
        assert!(parse_max_in_flight("0").is_err());
        assert_eq!(parse_max_in_flight("16"), Ok(16));
    }
}
