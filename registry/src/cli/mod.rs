//! The `soa` command line: the arguments, the exit codes, and the dispatch to
//! each command's module.
//!
//! [`run`] is the whole program minus the process: it takes the arguments,
//! writers for standard output and error, and a cancellation token that `main`
//! cancels on Ctrl-C or SIGTERM, and returns the exit code. Tests call it
//! directly and read what it wrote.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use bus_services::connection::{self, ConnectConfig};
use clap::{Args, Parser, Subcommand};

pub use tokio_util::sync::CancellationToken;

mod asyncapi;
mod contract;
mod demo;
mod describe;
mod discover;
mod dlq;
mod graph;
mod orchestrator;
mod order;
mod order_view;
mod publish;
mod registry_client;
mod resolve;
mod search;
mod serve;
mod services;
mod shop;
mod soak;
mod table;
mod up;
mod workflow;

pub use asyncapi::AsyncApiArgs;
pub use contract::{
    CheckArgs, ContractCommand, DiffArgs, ExportArgs, ModeArg, OutputArgs, PermissionsArgs, PermissionsFormat, Report,
    ReportFormat, Source, check_sources,
};
pub use demo::DemoArgs;
pub use describe::DescribeArgs;
pub use discover::{DiscoverArgs, DiscoverFormat};
pub use dlq::{DlqCommand, DlqListArgs, DlqReplayArgs, DlqShowArgs};
pub use graph::{GraphArgs, GraphFormat};
pub use orchestrator::{OrchestratorCommand, OrchestratorServeArgs};
pub use order::{OrderCommand, TimelineArgs};
pub use order_view::{OrderViewCommand, OrderViewGetArgs, OrderViewJsonArgs, OrderViewListArgs};
pub use publish::{PublishArgs, RequestArgs};
pub use resolve::ResolveArgs;
pub use search::SearchArgs;
pub use serve::{RegistryCommand, ServeArgs, StoreKind};
pub use services::ServicesArgs;
pub use shop::{ShopCommand, ShopServeArgs};
pub use soak::{ProcessError, ServerProcess, SoaProcess, SoakArgs};
pub use up::UpArgs;
pub use workflow::{CancelArgs, DefinitionsArgs, ListArgs, LoadArgs, ShowArgs, StartArgs, WorkflowCommand};

/// How `soa` ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything checked out.
    Success,
    /// 1: a check failed (an invalid document, drift), or the command could not do its job.
    Failure,
    /// 2: the command line or its input was wrong (a bad flag, a missing path).
    Usage,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// The input given to a command is wrong (as opposed to a failed check or a
/// broken server): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What `soa` knows about where its output goes, decided by `main` (tests
/// and other embedders run without a terminal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Standard output is a terminal, not a pipe or a file.
    pub stdout_is_terminal: bool,
    /// `NO_COLOR` is set (to anything but the empty string): no colours, ever.
    pub no_color: bool,
}

impl Terminal {
    /// Looks at this process: whether standard output is a terminal, and `NO_COLOR`.
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        Self {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty()),
        }
    }
}

/// When to colour the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When standard output is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given where the output goes.
    pub fn enabled(self, terminal: Terminal) -> bool {
        match self {
            Self::Auto => terminal.stdout_is_terminal && !terminal.no_color,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// Contracts, services and the registry of a soabus on NATS.
#[derive(Debug, Parser)]
#[command(name = "soa", version)]
pub struct Cli {
    /// How to reach the NATS server; accepted by every command.
    #[command(flatten)]
    pub nats: NatsOptions,
    /// When to colour the output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `soa`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check and export contract documents, and print the NATS permissions each service needs.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Run the same orders through the orchestrated and the choreographed flow, and compare them.
    ///
    /// Starts the registry, the five shop services, the order view and an
    /// orchestrator; places the orders in each mode; audits every store;
    /// prints a side-by-side table and writes report.json and Mermaid
    /// diagrams. Uses the server at --nats-url, or starts the installed
    /// nats-server when none answers there.
    Demo(DemoArgs),
    /// List the NATS micro services on the bus, with their endpoints and counters.
    ///
    /// Asks $SRV.INFO, then $SRV.STATS, and gathers the replies of every
    /// instance. Exits 0 when at least one instance answered, 1 when none did,
    /// 2 on a bad name or when no NATS connection could be made.
    Discover(DiscoverArgs),
    /// Run the registry: every contract version, live instances, who depends on whom.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// List the services registered in the registry: latest version, live instances, owner, tags.
    ///
    /// Exits 0 with the listing, 1 when --tag/--owner match nothing, 2 when
    /// no NATS connection can be made or no registry answers.
    Services(ServicesArgs),
    /// Show one contract version: operations, events, their schemas and subjects, dependents, live instances.
    ///
    /// Exits 0 when shown, 1 when the registry has no such service or
    /// version, 2 when no registry answers.
    Describe(DescribeArgs),
    /// Find services by words, tag, owner, subject pattern or schema field.
    ///
    /// Exits 0 with the matches, 1 when nothing matches, 2 when no registry answers.
    Search(SearchArgs),
    /// Show which operations and events a subject, or a pattern with wildcards, belongs to.
    ///
    /// Exits 0 with the bindings, 1 when nothing matches, 2 when no registry answers.
    Resolve(ResolveArgs),
    /// Publish an event, validated against its registered contract first.
    ///
    /// Exits 0 when sent, 1 when the payload is invalid (nothing is sent) or
    /// the subject is no registered event, 2 on bad arguments or JSON, or
    /// when no registry answers.
    Publish(PublishArgs),
    /// Call an operation, validated against its registered contract first, and print the reply.
    ///
    /// Exits 0 with the reply, 1 when the request is invalid (nothing is
    /// sent), the subject is no registered operation or the service replies
    /// with an error, 2 on bad arguments or JSON, or when no registry answers.
    Request(RequestArgs),
    /// Write the AsyncAPI 3.0 document of a registered service version, or of every registered service.
    ///
    /// Exits 0 with the document, 1 when the registry has no such service or
    /// version, 2 on bad arguments or when no registry answers.
    Asyncapi(AsyncApiArgs),
    /// Show who calls whom and who consumes whose events, as Mermaid, Graphviz DOT, JSON or SVG.
    ///
    /// Exits 0 with the graph, 1 when --service names nothing the registry
    /// knows or Graphviz is missing for --svg, 2 when no registry answers.
    Graph(GraphArgs),
    /// Run an orchestrator replica: durable workflows (sagas) that call contract operations.
    #[command(subcommand)]
    Orchestrator(OrchestratorCommand),
    /// Load workflow definitions, start instances, and list, show or cancel them.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Run the registry (HTTP API and web page), the shop's five services, the order view and the orchestrator until Ctrl-C.
    ///
    /// Uses the server at --nats-url, or starts the installed nats-server
    /// when none answers there; prints where everything is and commands to
    /// try. Exits 0 after a clean stop, 2 when the HTTP address cannot be
    /// bound or the NATS options are wrong.
    Up(UpArgs),
    /// Follow the shop's orders: what happened to one, in order, with timings.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Ask the shop's read model: every order as the events tell it, rebuilt from the streams on request.
    #[command(subcommand)]
    OrderView(OrderViewCommand),
    /// Inspect the dead letters of durable consumers, and replay them to where they came from.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Run the shop's services as a process of their own, until Ctrl-C or SIGTERM.
    #[command(subcommand)]
    Shop(ShopCommand),
    /// Run the shop as child processes under load for a while, kill parts of it at random, and check the books.
    ///
    /// Starts a nats-server, the registry, an orchestrator and the shop's
    /// services as processes, places orders in both modes, kills (SIGKILL)
    /// and restarts the server, the orchestrator and a service at seeded
    /// random times, then waits for every order to settle and prints the
    /// invariants checked. Exits 0 when all hold, 1 when one does not.
    Soak(SoakArgs),
}

/// How to reach and authenticate with the NATS server.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "NATS connection")]
pub struct NatsOptions {
    /// The NATS server URL, or a cluster's seed list separated by commas
    /// (`nats://a:4222,nats://b:4222,nats://c:4222`).
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = connection::DEFAULT_URL,
        value_name = "URL"
    )]
    pub nats_url: String,
    /// A credentials file (user JWT and nkey seed).
    #[arg(long, global = true, env = "NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// A token for token authentication.
    #[arg(
        long,
        global = true,
        env = "NATS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A file holding an nkey seed (`SU...`) for nkey authentication.
    #[arg(long, global = true, env = "NATS_NKEY", value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// The user for user-and-password authentication.
    #[arg(long, global = true, env = "NATS_USER", value_name = "USER")]
    pub user: Option<String>,
    /// The password for user-and-password authentication.
    #[arg(
        long,
        global = true,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
    /// A PEM file with the root certificates the server's certificate must chain to; implies TLS.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate for mutual TLS; needs --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl NatsOptions {
    /// The connection configuration these options describe, with `name` as
    /// the connection name the server shows.
    ///
    /// TLS is required when any TLS file is given or the URL says `tls://`,
    /// so a certificate is never silently ignored by a plain connection.
    pub fn connect_config(&self, name: &str) -> ConnectConfig {
        let tls_required =
            self.tls_ca.is_some() || self.tls_cert.is_some() || self.nats_url.trim_start().starts_with("tls://");
        ConnectConfig {
            name: Some(name.to_owned()),
            credentials_file: self.creds.clone(),
            token: self.token.clone(),
            nkey_seed_file: self.nkey.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            tls_required,
            root_certificates: self.tls_ca.clone(),
            client_certificate: self.tls_cert.clone(),
            client_key: self.tls_key.clone(),
            ..ConnectConfig::for_url(self.nats_url.clone())
        }
    }
}

/// Runs `soa` with `args` (the program name first, as in `std::env::args_os`),
/// writing its output to `stdout` and its errors to `stderr`, as into a pipe
/// (no colours unless `--color always`).
///
/// `shutdown` is cancelled by `main` on Ctrl-C or SIGTERM; long-running
/// commands stop cleanly when it is. Errors are printed with their whole
/// chain; the returned [`Exit`] is the process's exit code.
pub async fn run<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write, shutdown: CancellationToken) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_on(args, stdout, stderr, shutdown, Terminal::default()).await
}

/// [`run`], told by `terminal` where the output goes (`main` passes
/// [`Terminal::detect`]), which decides colours under `--color auto`.
pub async fn run_on<I, T>(
    args: I,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    shutdown: CancellationToken,
    terminal: Terminal,
) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and --version are not errors and go to standard output.
            // Nothing sensible is left to do if the terminal is gone.
            return if error.use_stderr() {
                let _ = write!(stderr, "{}", error.render());
                Exit::Usage
            } else {
                let _ = write!(stdout, "{}", error.render());
                Exit::Success
            };
        }
    };
    let result = match &cli.command {
        Command::Contract(command) => {
            contract::run(command, &cli.nats, stdout, stderr, cli.color.enabled(terminal)).await
        }
        Command::Demo(args) => demo::run(&cli.nats, args, stdout, shutdown).await,
        Command::Discover(args) => discover::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Registry(command) => serve::run(&cli.nats, command, stdout, shutdown).await,
        Command::Services(args) => services::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Describe(args) => describe::run(&cli.nats, args, stdout, shutdown).await,
        Command::Search(args) => search::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Resolve(args) => resolve::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Publish(args) => publish::run_publish(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Request(args) => publish::run_request(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Asyncapi(args) => asyncapi::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Graph(args) => graph::run(&cli.nats, args, stdout, stderr, shutdown).await,
        Command::Orchestrator(command) => orchestrator::run(&cli.nats, command, stdout, shutdown).await,
        Command::Workflow(command) => workflow::run(&cli.nats, command, stdout, stderr, shutdown).await,
        Command::Up(args) => up::run(&cli.nats, args, stdout, shutdown).await,
        Command::Order(command) => order::run(&cli.nats, command, stdout, stderr, shutdown).await,
        Command::OrderView(command) => order_view::run(&cli.nats, command, stdout, stderr, shutdown).await,
        Command::Dlq(command) => dlq::run(&cli.nats, command, stdout, stderr, shutdown).await,
        Command::Shop(command) => shop::run(&cli.nats, command, stdout, shutdown).await,
        Command::Soak(args) => soak::run(args, stdout, shutdown).await,
    };
    // Whatever was written must reach the terminal before the error does.
    let _ = stdout.flush();
    match result {
        Ok(exit) => exit,
        Err(error) => {
            let _ = writeln!(stderr, "error: {error:#}");
            // Found whether the usage error is the root cause or a context.
            if error.downcast_ref::<UsageError>().is_some() {
                Exit::Usage
            } else {
                Exit::Failure
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn nats_options_are_accepted_after_the_command() {
        let cli = parse(&[
            "soa",
            "demo",
            "--nats-url",
            "nats://example:4333",
            "--user",
            "alice",
            "--password",
            "secret",
        ]);
        let config = cli.nats.connect_config("test");
        assert_eq!(config.url, "nats://example:4333");
        assert_eq!(config.user.as_deref(), Some("alice"));
        assert_eq!(config.password.as_deref(), Some("secret"));
        assert_eq!(config.name.as_deref(), Some("test"));
        assert!(!config.tls_required);
    }

    #[test]
    fn tls_files_require_tls() {
        let cli = parse(&["soa", "--tls-ca", "ca.pem", "contract", "check", "contracts/catalog"]);
        let config = cli.nats.connect_config("test");
        assert!(config.tls_required);
        assert_eq!(config.root_certificates, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn colour_is_automatic_on_a_terminal_without_no_color() {
        let terminal = Terminal {
            stdout_is_terminal: true,
            no_color: false,
        };
        assert!(ColorChoice::Auto.enabled(terminal));
        assert!(!ColorChoice::Auto.enabled(Terminal {
            no_color: true,
            ..terminal
        }));
        assert!(!ColorChoice::Auto.enabled(Terminal::default()));
        assert!(ColorChoice::Always.enabled(Terminal::default()));
        assert!(!ColorChoice::Never.enabled(terminal));
        assert_eq!(
            parse(&["soa", "contract", "check", "x", "--color", "never"]).color,
            ColorChoice::Never
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_a_usage_error() {
        let error = Cli::try_parse_from(["soa", "demo", "--tls-cert", "client.pem"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[tokio::test]
    async fn a_user_without_a_password_is_a_usage_error_when_connecting() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = run(
            ["soa", "demo", "--user", "alice"],
            &mut out,
            &mut err,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(exit, Exit::Usage);
        let err = String::from_utf8_lossy(&err);
        assert!(err.contains("only the user was given"), "{err}");
    }

    #[tokio::test]
    async fn usage_errors_exit_2_and_help_exits_0() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = run(
            ["soa", "contract", "frobnicate"],
            &mut out,
            &mut err,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(exit, Exit::Usage);
        assert!(String::from_utf8_lossy(&err).contains("frobnicate"));

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = run(["soa", "--help"], &mut out, &mut err, CancellationToken::new()).await;
        assert_eq!(exit, Exit::Success);
        let help = String::from_utf8_lossy(&out);
        for expected in ["contract", "demo", "--nats-url", "--creds", "--tls-key"] {
            assert!(help.contains(expected), "{help}");
        }
    }
}
