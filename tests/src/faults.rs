//! The shop as real processes for the fault tests: `soa registry serve
//! --store kv`, `soa orchestrator serve` and one `soa shop serve <service>`
//! per service, each a child process that can be killed with SIGKILL and
//! started again, on a harness server that can be stopped and restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bus_services::runtime::{CallOptions, ServiceClient};
use bus_services::shop::ShopService;
use contracts::registry_api::{InstancesRequest, ListRequest, RegisterRequest, ops as registry_ops};
use registry::cli::SoaProcess;
use tokio::process::Command;

use crate::NatsServer;
use crate::harness::workspace_root;
use crate::shop::{PLENTY, SOLD_OUT, STOCKED, load_fulfilment};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `soa` binary: `$SOA_BIN`, or built now (a debug build, incremental)
/// into the target directory this test binary was built in. Cargo gives
/// `CARGO_BIN_EXE_soa` only to the `registry` crate's own tests.
pub async fn soa_binary() -> Result<PathBuf, BoxError> {
    static BINARY: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    let binary = BINARY
        .get_or_try_init(|| async {
            if let Some(binary) = std::env::var_os("SOA_BIN") {
                return Ok::<_, BoxError>(PathBuf::from(binary));
            }
            // <target>/<profile>/deps/e2e-<hash>
            let exe = std::env::current_exe()?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or_else(|| format!("{} is not in <target>/<profile>/deps", exe.display()))?
                .to_owned();
            let target_dir = profile_dir
                .parent()
                .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?
                .to_owned();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "-p", "registry", "--bin", "soa", "--target-dir"])
                .arg(&target_dir)
                .current_dir(workspace_root());
            let profile = profile_dir
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("debug")
                .to_owned();
            if profile != "debug" {
                build.args(["--profile", &profile]);
            }
            let status = build.status().await?;
            if !status.success() {
                return Err(format!("building soa failed: {status}").into());
            }
            Ok(profile_dir.join("soa"))
        })
        .await?;
    Ok(binary.clone())
}

/// The stock the shop's processes start with: plenty of [`STOCKED`], none of [`SOLD_OUT`].
pub fn initial_stock() -> Vec<(String, u64)> {
    STOCKED
        .iter()
        .map(|sku| ((*sku).to_owned(), PLENTY))
        .chain(std::iter::once((SOLD_OUT.to_owned(), 0)))
        .collect()
}

/// A part of the shop that runs as its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// `soa registry serve --store kv`.
    Registry,
    /// `soa orchestrator serve`.
    Orchestrator,
    /// `soa shop serve <service>`.
    Service(ShopService),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry => f.write_str("registry"),
            Self::Orchestrator => f.write_str("orchestrator"),
            Self::Service(service) => write!(f, "{service}"),
        }
    }
}

/// The registry, the orchestrator (with `fulfilment@1` loaded) and the five
/// shop services, each a process on `url`; killed when dropped.
pub struct ShopProcesses {
    url: String,
    /// Kept when a test fails (removed by a clean [`ShopProcesses::terminate`]).
    logs: PathBuf,
    seed: u64,
    processes: BTreeMap<Part, SoaProcess>,
}

impl ShopProcesses {
    /// Starts everything on `server` with the shop's failure rules seeded by
    /// `seed` (5% declined, 5% unshippable) and returns once the fulfilment
    /// workflow is loaded.
    pub async fn start(server: &NatsServer, seed: u64) -> Result<Self, BoxError> {
        let mut shop = Self {
            url: server.url(),
            logs: tempfile::Builder::new().prefix("soa-faults-").tempdir()?.keep(),
            seed,
            processes: BTreeMap::new(),
        };
        shop.start_part(Part::Registry).await?;
        for service in ShopService::ALL {
            shop.start_part(Part::Service(service)).await?;
        }
        shop.start_part(Part::Orchestrator).await?;
        let nats = server.client().await?;
        let options = CallOptions {
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            ..CallOptions::default()
        };
        // The services register themselves as they start; the workflow's
        // load needs every contract it calls now, so they are registered
        // here too (the same document again changes nothing).
        let registry =
            ServiceClient::new(nats.clone(), contracts::registry_api::contract()?).with_options(options.clone());
        for document in contracts::shop::contracts()? {
            registry
                .call::<registry_ops::Register>(&RegisterRequest {
                    document: document.to_value(),
                    owner_token: None,
                })
                .await?;
        }
        load_fulfilment(&ServiceClient::new(nats, contracts::orchestrator_api::contract()?).with_options(options))
            .await?;
        Ok(shop)
    }

    /// Where each process logs (kept when a test fails, for a look).
    pub fn log_dir(&self) -> &Path {
        &self.logs
    }

    /// Starts `part` (again).
    pub async fn start_part(&mut self, part: Part) -> Result<(), BoxError> {
        let mut args: Vec<String> = vec!["--nats-url".to_owned(), self.url.clone()];
        let ready = match part {
            Part::Registry => {
                args.extend(["registry", "serve", "--store", "kv"].map(str::to_owned));
                "registry:"
            }
            Part::Orchestrator => {
                args.extend(["orchestrator", "serve", "--ack-wait", "2s"].map(str::to_owned));
                "orchestrator ready"
            }
            Part::Service(service) => {
                args.extend(["shop", "serve", service.name()].map(str::to_owned));
                args.extend([
                    "--seed".to_owned(),
                    self.seed.to_string(),
                    "--decline-rate".to_owned(),
                    "0.05".to_owned(),
                    "--shipping-failure-rate".to_owned(),
                    "0.05".to_owned(),
                ]);
                for (sku, units) in initial_stock() {
                    args.push("--stock".to_owned());
                    args.push(format!("{sku}={units}"));
                }
                "shop: serving"
            }
        };
        let log = self.logs.join(format!("{part}.log"));
        let process = SoaProcess::start(&part.to_string(), &soa_binary().await?, &args, ready, &log).await?;
        self.processes.insert(part, process);
        Ok(())
    }

    /// Kills `part` with SIGKILL (nothing drained, acked or deregistered).
    pub async fn kill(&mut self, part: Part) -> Result<(), BoxError> {
        if let Some(process) = self.processes.remove(&part) {
            process.kill().await?;
        }
        Ok(())
    }

    /// Parts that exited though nobody killed them.
    pub fn exited(&mut self) -> Vec<Part> {
        self.processes
            .iter_mut()
            .filter_map(|(part, process)| process.has_exited().then_some(*part))
            .collect()
    }

    /// Stops every part with SIGTERM, the orchestrator first and the
    /// registry last; returns the parts that did not exit with 0.
    pub async fn terminate(mut self) -> Result<Vec<Part>, BoxError> {
        let mut order: Vec<Part> = vec![Part::Orchestrator];
        order.extend(ShopService::ALL.map(Part::Service));
        order.push(Part::Registry);
        let mut failed = Vec::new();
        for part in order {
            if let Some(process) = self.processes.remove(&part)
                && !process.terminate().await?
            {
                failed.push(part);
            }
        }
        if failed.is_empty() {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
        Ok(failed)
    }
}

/// Every registered service and its versions, from the registry on `nats`.
pub async fn registrations(nats: &async_nats::Client) -> Result<BTreeMap<String, Vec<String>>, BoxError> {
    let client = ServiceClient::new(nats.clone(), contracts::registry_api::contract()?).with_options(CallOptions {
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        ..CallOptions::default()
    });
    let mut found = BTreeMap::new();
    let mut after = None;
    loop {
        let page = client
            .call::<registry_ops::List>(&ListRequest { after, limit: None })
            .await?;
        for service in page.services {
            found.insert(
                service.name.as_str().to_owned(),
                service.versions.iter().map(ToString::to_string).collect(),
            );
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(found),
        }
    }
}

/// Instances per service that beat within their time to live and since
/// `since`, from the registry on `nats`.
pub async fn instances(
    nats: &async_nats::Client,
    since: tokio::time::Instant,
) -> Result<BTreeMap<String, usize>, BoxError> {
    let client = ServiceClient::new(nats.clone(), contracts::registry_api::contract()?).with_options(CallOptions {
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        ..CallOptions::default()
    });
    let listed = client
        .call::<registry_ops::Instances>(&InstancesRequest { service: None })
        .await?;
    let quiet_for = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut counts = BTreeMap::new();
    for instance in listed
        .instances
        .iter()
        .filter(|instance| instance.healthy && instance.last_beat_ms_ago < quiet_for)
    {
        *counts.entry(instance.contract.service.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Waits until every one of `services` has an instance in the registry
/// that beat since `since`; the counts after `timeout` otherwise.
pub async fn wait_registered(
    nats: &async_nats::Client,
    services: &[&str],
    since: tokio::time::Instant,
    timeout: Duration,
) -> Result<BTreeMap<String, usize>, BoxError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let counts = instances(nats, since).await.unwrap_or_default();
        let all = services
            .iter()
            .all(|service| counts.get(*service).is_some_and(|count| *count > 0));
        if all || tokio::time::Instant::now() > deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
