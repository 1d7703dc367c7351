//! `soa registry serve`: run the registry on NATS until Ctrl-C.
//!
//! The embedded store (a redb file under `--data-dir`) is the default and
//! needs nothing set up; `--store kv` shares one JetStream KV bucket between
//! replicas; `--store memory` forgets everything on exit. `--http ADDR` also
//! serves the HTTP API from the same catalogue; `--read-only` serves the
//! stored contracts without changing them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bus_services::connection;
use bus_services::runtime::{RegistrationConfig, ServiceConfig};
use clap::{Args, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::{Exit, NatsOptions, UsageError};
use crate::catalog::EvictionGuard;
use crate::http::{CorsPolicy, HttpConfig, HttpState};
use crate::server::{Registry, RegistryOptions};
use crate::store::{EmbeddedStore, KvStore, MemoryStore, Store};

/// `soa registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Run the registry service on NATS (`soa.registry.v1.*`) until Ctrl-C.
    Serve(ServeArgs),
}

/// Where the registry keeps contracts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb file under --data-dir: durable, nothing to set up.
    #[default]
    Embedded,
    /// A JetStream KV bucket shared by registry replicas.
    Kv,
    /// In memory only: everything is forgotten on exit.
    Memory,
}

/// Arguments of `soa registry serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where contracts are stored.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// The data directory of the embedded store.
    #[arg(long, value_name = "DIR", default_value = ".data/registry")]
    pub data_dir: PathBuf,
    /// The KV bucket of `--store kv`.
    #[arg(long, value_name = "NAME", default_value = "soa_registry")]
    pub bucket: String,
    /// Replicas of the KV bucket (3 on a three-node cluster): it is created
    /// with them, or raised to them when it has fewer; never lowered.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
    /// Refuse registrations with changes the checker cannot decide, instead
    /// of accepting and reporting them.
    #[arg(long)]
    pub strict: bool,
    /// Most instances that may expire in one sweep, as a share of all.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    pub max_eviction: f64,
    /// Only register and print how long loading took, then exit (for restart timings).
    #[arg(long, hide = true)]
    pub load_only: bool,
    /// Also serve the HTTP API (`/v1/...`, `/openapi.json`, `/metrics`,
    /// `/healthz`) on this address, such as 127.0.0.1:8080 (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The bearer token `POST /v1/services` requires; without one, the HTTP
    /// write API is off. Prefer the environment variable: arguments are
    /// visible to every user of the machine.
    // No `requires = "http"`: a token in the environment must not stop a
    // registry that serves NATS only.
    #[arg(long, env = "SOA_REGISTRY_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub http_token: Option<String>,
    /// A browser origin allowed to call the HTTP API (CORS), such as
    /// `https://catalog.example.com`; repeat for more, `*` for any. None by default.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    pub cors_origin: Vec<String>,
    /// Serve the stored contracts without changing them: every registration
    /// that would store a version is refused (UNAUTHORIZED over NATS, 403
    /// over HTTP) and logged; reads, heartbeats and deregistrations of
    /// instances go on, and a service re-registering a version exactly as
    /// stored gets the usual answer, so services keep serving and beating.
    #[arg(long)]
    pub read_only: bool,
}

pub(super) async fn run(
    nats: &NatsOptions,
    command: &RegistryCommand,
    stdout: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let RegistryCommand::Serve(args) = command;
    if !(0.0..=1.0).contains(&args.max_eviction) {
        return Err(UsageError(format!(
            "--max-eviction must be between 0 and 1, not {}",
            args.max_eviction
        ))
        .into());
    }
    let cors = CorsPolicy::parse(&args.cors_origin).map_err(UsageError)?;
    if args.http_token.as_deref().is_some_and(|token| token.trim().is_empty()) {
        return Err(UsageError(
            "--http-token (SOA_REGISTRY_TOKEN) is empty; give a token or leave it unset".to_owned(),
        )
        .into());
    }
    let client = connection::connect(&nats.connect_config("soa-registry"))
        .await
        .map_err(|err| {
            // The chain keeps async-nats' own words (the TLS or authorization failure) after ours.
            anyhow::Error::new(err).context(UsageError(format!("could not connect to NATS at {}", nats.nats_url)))
        })?;
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Embedded => {
            let path = args.data_dir.join("registry.redb");
            Arc::new(EmbeddedStore::open(&path).with_context(|| format!("opening the store at {}", path.display()))?)
        }
        StoreKind::Kv => Arc::new(
            KvStore::open(
                async_nats::jetstream::new(client.clone()),
                &args.bucket,
                usize::try_from(args.replicas).unwrap_or(1),
            )
            .await
            .with_context(|| format!("opening the KV bucket {}", args.bucket))?,
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    };
    let options = RegistryOptions {
        strict: args.strict,
        guard: EvictionGuard {
            max_fraction: args.max_eviction,
            ..EvictionGuard::default()
        },
        observe_all_beats: args.store == StoreKind::Kv,
        service: ServiceConfig {
            registration: Some(RegistrationConfig {
                heartbeat_interval: Duration::from_secs(5),
                ..RegistrationConfig::default()
            }),
            ..ServiceConfig::default()
        },
        read_only: args.read_only,
        ..RegistryOptions::default()
    };
    let registry = Registry::open(store, options).await?;
    writeln!(
        stdout,
        "registry: {} service(s), {} version(s) loaded from the {} store in {} ms; serving soa.registry.v1.* on {}",
        registry.catalog().service_count(),
        registry.catalog().version_count(),
        match args.store {
            StoreKind::Embedded => "embedded",
            StoreKind::Kv => "kv",
            StoreKind::Memory => "memory",
        },
        registry.load_time().as_millis(),
        nats.nats_url
    )?;
    if args.read_only {
        writeln!(
            stdout,
            "registry: read-only: registrations that would store a version are refused"
        )?;
    }
    stdout.flush()?;
    if args.load_only {
        return Ok(Exit::Success);
    }
    let registry = Arc::new(registry);
    let http = match args.http {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| UsageError(format!("could not listen for HTTP on {address}: {err}")))?;
            let bound = listener.local_addr()?;
            writeln!(
                stdout,
                "registry: HTTP API on http://{bound} (OpenAPI at /openapi.json){}",
                if args.http_token.is_some() {
                    ""
                } else {
                    "; writes are off without --http-token"
                }
            )?;
            stdout.flush()?;
            let state = HttpState::new(
                Arc::clone(&registry),
                HttpConfig {
                    write_token: args.http_token.clone(),
                    cors,
                },
            );
            Some((listener, crate::http::router(state)))
        }
        None => None,
    };
    // Either side stopping stops the other: a registry half up is worse than one that is down.
    let stop = shutdown.child_token();
    let nats_side = async {
        let result = Arc::clone(&registry).run_shared(client.clone(), stop.clone()).await;
        stop.cancel();
        result
    };
    match http {
        Some((listener, router)) => {
            let http_side = async {
                let result = crate::http::serve_http(listener, router, stop.clone()).await;
                stop.cancel();
                result.context("serving the HTTP API")
            };
            let (nats_result, http_result) = tokio::join!(nats_side, http_side);
            nats_result?;
            http_result?;
        }
        None => nats_side.await?,
    }
    let _ = client.drain().await;
    writeln!(stdout, "registry: stopped")?;
    Ok(Exit::Success)
}
