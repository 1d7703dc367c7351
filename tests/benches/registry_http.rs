//! The registry's HTTP API under load, against the goal of its issue:
//! `GET /v1/services/{name}` on a registry holding 10,000 services, at least
//! 10,000 requests/s with p99 under 5 ms on a 2-core machine.
//!
//! `cargo bench -p tests --bench registry_http` registers the synthetic
//! services (`tests::synthetic`) in an in-process registry (memory store;
//! reads do not touch the store), serves its router on a loopback port, and
//! runs `wrk` (Debian's package: `apt-get install wrk`) against it: random
//! service names, 2 threads, 64 connections, 10 s. In the same run it loads
//! `GET /healthz` (a handler that does next to nothing) as a baseline of
//! what the HTTP stack and `wrk` itself cost on this machine, since `wrk`
//! shares the cores with the server. Figures are printed, never asserted on.
//!
//! `SOA_BENCH_SERVICES` (10000) and `SOA_BENCH_VERSIONS` (3) set the scale;
//! `SOA_BENCH_SECONDS` (10) the length of each load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use contracts::registry_api::RegisterRequest;
use registry::http::{CorsPolicy, HttpConfig, HttpState, router, serve_http};
use registry::metrics::Via;
use registry::server::Registry;
use registry::store::MemoryStore;
use tests::registry::test_options;
use tests::synthetic::{SyntheticCatalog, service_name};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let services = env_or("SOA_BENCH_SERVICES", 10_000);
    let versions = env_or("SOA_BENCH_VERSIONS", 3);
    let seconds = env_or("SOA_BENCH_SECONDS", 10);
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), then run this again".into());
    }

    let registry = Arc::new(Registry::open(Arc::new(MemoryStore::new()), test_options()).await?);
    let catalog = SyntheticCatalog::new()?;
    let started = Instant::now();
    for minor in 0..versions {
        for index in 0..services {
            let request = RegisterRequest {
                document: catalog.document(index, minor),
                owner_token: None,
            };
            let (_, created) = registry
                .register(request, Via::Http)
                .await
                .map_err(|err| format!("{}: {err}", service_name(index)))?;
            assert!(created);
        }
    }
    println!(
        "registered {} services x {versions} versions in {:.1} s",
        services,
        started.elapsed().as_secs_f64()
    );

    let state = HttpState::new(
        Arc::clone(&registry),
        HttpConfig {
            write_token: None,
            cors: CorsPolicy::Disabled,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_http(listener, router(state), shutdown.clone()));

    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        format!(
            "math.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", string.format(\"/v1/services/svc-%05d\", math.random(0, {})))\nend\n",
            services - 1
        ),
    )?;
    let script_path = script.path().to_string_lossy().into_owned();
    let baseline = tokio::task::spawn_blocking({
        let url = format!("{base}/healthz");
        move || wrk(&url, None, seconds)
    })
    .await??;
    let lookups = tokio::task::spawn_blocking({
        let url = base.clone();
        move || wrk(&url, Some(&script_path), seconds)
    })
    .await??;
    shutdown.cancel();
    server.await??;

    println!();
    println!("| load | requests/s | p50 | p99 | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| GET /v1/services/{{name}}, {services} services | {:.0} | {} | {} | >= 10,000/s, p99 < 5 ms |",
        lookups.requests_per_second, lookups.p50, lookups.p99
    );
    println!(
        "| GET /healthz (baseline) | {:.0} | {} | {} | - |",
        baseline.requests_per_second, baseline.p50, baseline.p99
    );
    println!(
        "\nratio lookups / baseline: {:.2}",
        lookups.requests_per_second / baseline.requests_per_second
    );
    Ok(())
}

/// What one `wrk` run reported.
struct Load {
    requests_per_second: f64,
    p50: String,
    p99: String,
}

/// Runs `wrk` against `url` (with a request script when given) and reads
/// its summary.
fn wrk(url: &str, script: Option<&str>, seconds: usize) -> Result<Load, BoxError> {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency"]);
    if let Some(script) = script {
        command.args(["-s", script]);
    }
    let output = command.arg(url).output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr)).into());
    }
    print!("{text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
            .ok_or_else(|| format!("wrk printed no {prefix:?} line"))
    };
    if text.contains("Non-2xx or 3xx responses") {
        return Err("some requests failed; see wrk's output above".into());
    }
    Ok(Load {
        requests_per_second: field("Requests/sec:")?.parse()?,
        p50: field("50%")?,
        p99: field("99%")?,
    })
}
