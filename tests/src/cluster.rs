//! A three-node NATS cluster of the test's own: three nats-servers on loopback
//! with routes to each other and JetStream clustered, one node killed and
//! restarted at will, all killed on drop.
//!
//! Each node is a [`NatsServer`] of the harness (its own client port, store,
//! log and ports file) started with a configuration file holding the cluster
//! block. Routes name the other nodes' cluster ports, which therefore have to
//! be known before any node starts: the harness picks three free loopback
//! ports and keeps them for the cluster's life, so a restarted node listens
//! where the others look for it. Client ports are chosen by each server, as
//! for a single test server, and kept across restarts too.
//!
//! A cluster is ready when every node answers JetStream's account request
//! (`$JS.API.INFO`: a node answers it only once it knows the meta leader) and
//! a stream with three replicas can be placed, which needs all three peers
//! known to the meta leader; the probe stream is deleted again.

use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use bus_services::connection::{self, ConnectConfig};

use crate::harness::{HarnessError, NatsServer};

/// How many nodes a [`NatsCluster`] has: the smallest cluster that keeps a
/// quorum with one node down.
pub const NODES: usize = 3;

/// How long the cluster, or a restarted node, may take to be ready.
///
/// Generous: an election takes seconds, and the machine may be busy.
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// How many times [`NatsCluster::start`] picks route ports.
const START_ATTEMPTS: u32 = 3;

/// The stream placed to check that three replicas fit.
const PROBE_STREAM: &str = "SOABUS_CLUSTER_PROBE";

/// Why a test cluster could not be started or a node restarted.
#[derive(thiserror::Error)]
pub enum ClusterError {
    /// A node could not be started, stopped or reached.
    #[error(transparent)]
    Node(#[from] HarnessError),

    /// No free loopback port could be found for the routes.
    #[error("could not find a free loopback port for the cluster's routes")]
    Ports(#[source] std::io::Error),

    /// The nodes did not form a cluster with a JetStream meta leader in time.
    #[error("the cluster was not ready within {timeout:?}: {problem}")]
    NotReady {
        /// How long the harness waited.
        timeout: Duration,
        /// What was last wrong.
        problem: String,
    },

    /// There is no node with this index.
    #[error("the cluster has nodes 0 to {}, not {index}", NODES - 1)]
    NoSuchNode {
        /// The index asked for.
        index: usize,
    },
}

impl fmt::Debug for ClusterError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(formatter, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Three nats-servers forming one JetStream cluster.
///
/// Dropping it kills every node and removes their stores.
#[derive(Debug)]
pub struct NatsCluster {
    name: String,
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three nodes and waits until they form a cluster that can place
    /// streams with three replicas.
    pub async fn start() -> Result<Self, ClusterError> {
        let mut attempt = 1;
        loop {
            match Self::start_once().await {
                // A route port is free when picked but may be taken before
                // its node starts (by another test's server): pick again.
                Err(ClusterError::Node(HarnessError::ExitedEarly { log, .. }))
                    if log.contains("address already in use") && attempt < START_ATTEMPTS =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once() -> Result<Self, ClusterError> {
        let name = unique_cluster_name();
        let route_ports = free_ports(NODES)?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect();
        let mut nodes = Vec::with_capacity(NODES);
        for (index, port) in route_ports.iter().enumerate() {
            // Each node lists every route, its own included: a server skips
            // the route to itself, and one list keeps the nodes alike.
            let config = format!(
                "cluster {{\n  name: {name}\n  listen: 127.0.0.1:{port}\n  routes: [\n    {}\n  ]\n}}\n",
                routes.join("\n    ")
            );
            let node = NatsServer::builder()
                .name(format!("{name}-n{index}"))
                .config(config)
                .start()
                .await?;
            nodes.push(node);
        }
        let cluster = Self { name, nodes };
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// The cluster's name (`cluster { name }`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node at `index` (0, 1 or 2).
    pub fn node(&self, index: usize) -> Result<&NatsServer, ClusterError> {
        self.nodes.get(index).ok_or(ClusterError::NoSuchNode { index })
    }

    /// The nodes' client URLs separated by commas, as `--nats-url` and
    /// [`ConnectConfig::url`] take a seed list.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// How a component connects to the cluster: the seed list of every node,
    /// and a connection name.
    pub fn connect_config(&self, name: &str) -> ConnectConfig {
        ConnectConfig {
            url: self.urls(),
            name: Some(name.to_owned()),
            ..ConnectConfig::default()
        }
    }

    /// A client connected to the cluster through the seed list.
    pub async fn client(&self, name: &str) -> Result<async_nats::Client, ClusterError> {
        Ok(connection::connect(&self.connect_config(name))
            .await
            .map_err(HarnessError::from)?)
    }

    /// The index of the node listening for clients on `port`, such as the
    /// one a client is connected to (`client.server_info().port`).
    pub fn node_with_client_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|node| node.port() == port)
    }

    /// The index of the node called `server_name`, as JetStream names a
    /// stream's leader and replicas.
    pub fn node_named(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name() == server_name)
    }

    /// Kills node `index` (SIGKILL, no goodbye to its peers), keeping its store.
    pub fn kill(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.nodes.get_mut(index).ok_or(ClusterError::NoSuchNode { index })?;
        node.stop()?;
        Ok(())
    }

    /// Starts node `index` again on the same ports with the same store, and
    /// waits until it is back in the cluster (it answers JetStream requests).
    pub async fn restart(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.nodes.get_mut(index).ok_or(ClusterError::NoSuchNode { index })?;
        node.restart().await?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut problem = String::new();
        while tokio::time::Instant::now() < deadline {
            match node_answers_jetstream(&self.nodes[index]).await {
                Ok(()) => return Ok(()),
                Err(why) => problem = why,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ClusterError::NotReady {
            timeout: READY_TIMEOUT,
            problem: format!("restarted node {index}: {problem}"),
        })
    }

    /// Waits until every node knows the JetStream meta leader and a stream
    /// with three replicas can be placed.
    async fn wait_until_ready(&self) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut problem = String::new();
        while tokio::time::Instant::now() < deadline {
            match self.ready().await {
                Ok(()) => return Ok(()),
                Err(why) => problem = why,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ClusterError::NotReady {
            timeout: READY_TIMEOUT,
            problem,
        })
    }

    /// One check of readiness; what is missing when not ready.
    async fn ready(&self) -> Result<(), String> {
        for (index, node) in self.nodes.iter().enumerate() {
            node_answers_jetstream(node)
                .await
                .map_err(|why| format!("node {index}: {why}"))?;
        }
        let client = self
            .client("soabus-cluster-probe")
            .await
            .map_err(|error| error.to_string())?;
        let js = jetstream::new(client.clone());
        let placed = js
            .create_stream(jetstream::stream::Config {
                name: PROBE_STREAM.to_owned(),
                subjects: vec!["soabus.cluster.probe".to_owned()],
                num_replicas: NODES,
                ..Default::default()
            })
            .await;
        let outcome = match placed {
            Ok(_) => js
                .delete_stream(PROBE_STREAM)
                .await
                .map(|_| ())
                .map_err(|error| format!("could not delete the probe stream: {error}")),
            Err(error) => Err(format!("a stream with {NODES} replicas could not be placed: {error}")),
        };
        // Best effort: the probe's outcome is what matters.
        let _ = client.drain().await;
        outcome
    }
}

/// Whether `node` answers `$JS.API.INFO`, which it does once it knows the
/// meta leader; why not otherwise.
async fn node_answers_jetstream(node: &NatsServer) -> Result<(), String> {
    let client = node.client().await.map_err(|error| format!("{error:?}"))?;
    let answered = tokio::time::timeout(Duration::from_secs(2), jetstream::new(client.clone()).query_account()).await;
    // Best effort: the answer is what matters.
    let _ = client.drain().await;
    match answered {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("JetStream is not available there: {error}")),
        Err(_) => Err("JetStream did not answer within 2 s".to_owned()),
    }
}

/// `count` distinct free loopback ports, found by binding to port 0 while
/// holding the others, so no two are the same.
fn free_ports(count: usize) -> Result<Vec<u16>, ClusterError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClusterError::Ports)?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClusterError::Ports)
}

/// A unique cluster name, so that logs of parallel tests can be told apart.
fn unique_cluster_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "soabus-cluster-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
