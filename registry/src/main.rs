//! The `soa` binary: sets up tracing, the runtime and signal handling, then
//! hands the arguments to [`registry::cli::run`], which does everything else.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use registry::cli::{self, CancellationToken, Exit};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    init_tracing();
    match run() {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            Exit::Failure.into()
        }
    }
}

fn run() -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        let terminal = cli::Terminal::detect();
        Ok(cli::run_on(std::env::args_os(), &mut stdout, &mut stderr, shutdown, terminal).await)
    })
}

/// Cancels `shutdown` on the first Ctrl-C or SIGTERM; commands then stop in
/// order. Signals are handled here only, never inside a command.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "Cannot listen for SIGTERM; only Ctrl-C stops soa cleanly.");
                std::future::pending::<()>().await;
            }
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %error, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received; shutting down."),
        () = interrupt => tracing::info!("Ctrl-C received; shutting down."),
    }
    shutdown.cancel();
}

/// Logs to standard error, filtered by `RUST_LOG` (default `warn`), so the
/// output on standard out stays clean.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
