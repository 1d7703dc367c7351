//! Tests of the `soa` command line, through `registry::cli::run` with captured
//! output: contract check and export on real files, and the demo on a real
//! nats-server. The contract gate's formats, git comparison and diff have
//! their own module, `contract_gate`; `soa discover` has `discover`.

use std::path::{Path, PathBuf};

use registry::cli::{self, CancellationToken, Exit};
use tests::harness::{NatsServer, workspace_root};

/// What one run of `soa` did.
pub(crate) struct Run {
    pub(crate) exit: Exit,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `soa` with `args` (without the program name) and captures its output.
pub(crate) async fn soa<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    soa_until(args, CancellationToken::new()).await
}

/// Runs `soa --nats-url <url> <args>`.
pub(crate) async fn soa_at(url: &str, args: &[&str]) -> Run {
    let mut argv = vec!["--nats-url", url];
    argv.extend_from_slice(args);
    soa(&argv).await
}

/// Asserts that `run` ended with `exit`, showing its output when not.
#[track_caller]
pub(crate) fn assert_exit(run: &Run, exit: Exit) {
    assert_eq!(run.exit, exit, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

/// [`soa`], stopped as by Ctrl-C when `shutdown` is cancelled.
pub(crate) async fn soa_until<S: AsRef<std::ffi::OsStr>>(args: &[S], shutdown: CancellationToken) -> Run {
    let mut argv = vec![std::ffi::OsString::from("soa")];
    argv.extend(args.iter().map(|arg| arg.as_ref().to_owned()));
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let exit = cli::run(argv, &mut stdout, &mut stderr, shutdown).await;
    Run {
        exit,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn catalog_dir() -> PathBuf {
    workspace_root().join("contracts/catalog")
}

/// Asserts that `output` has a line `<file>:<line>:<column>: <rest...>` that
/// starts with `rest`, whatever the line and column (and its indentation).
#[track_caller]
fn assert_diagnostic(output: &str, file: &Path, rest: &str) {
    let prefix = format!("{}:", file.display());
    let found = output.lines().any(|line| {
        let Some(after_file) = line.trim_start().strip_prefix(&prefix) else {
            return false;
        };
        let mut parts = after_file.splitn(3, ':');
        let (Some(row), Some(column), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        row.parse::<usize>().is_ok()
            && column.parse::<usize>().is_ok()
            && tail.strip_prefix(' ').is_some_and(|tail| tail.starts_with(rest))
    });
    assert!(found, "no line {prefix}<line>:<column>: {rest}… in:\n{output}");
}

/// The orders contract as a JSON value, to break in one place per test.
fn orders_value() -> Result<serde_json::Value, contracts::NameError> {
    Ok(contracts::shop::orders::contract()?.to_value())
}

fn write_json(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
}

#[tokio::test]
async fn the_checked_in_catalogue_passes_the_check() {
    let run = soa(&["contract".as_ref(), "check".as_ref(), catalog_dir().as_os_str()]).await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "8 documents, 0 errors, 0 warnings\n");
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn bad_documents_fail_the_check_with_a_line_each_and_unreadable_ones_exit_2() {
    let dir = tempfile::tempdir().unwrap();

    let mut remote_ref = orders_value().unwrap();
    remote_ref["$defs"]["Money"] = serde_json::json!({"$ref": "https://example.com/money.json"});
    let remote_ref_path = dir.path().join("remote-ref.json");
    write_json(&remote_ref_path, &remote_ref).unwrap();

    let mut no_major = orders_value().unwrap();
    no_major["operations"]["get"]["subject"] = "shop.orders.get".into();
    no_major["operations"]["list"]["subject"] = "shop.orders.current.list".into();
    let no_major_path = dir.path().join("no-major.json");
    write_json(&no_major_path, &no_major).unwrap();

    let malformed_path = dir.path().join("malformed.json");
    std::fs::write(
        &malformed_path,
        "{\n  \"contract\": \"soabus/v1\",\n  \"service\": \"orders\"\n  \"version\": \"1.0.0\"\n}\n",
    )
    .unwrap();

    let run = soa(&["contract".as_ref(), "check".as_ref(), dir.path().as_os_str()]).await;
    // A file that is not JSON cannot be checked at all: exit 2, though it is
    // reported in its place among the others.
    assert_eq!(run.exit, Exit::Usage, "{}{}", run.stdout, run.stderr);
    let mut lines = run.stdout.lines();
    assert_eq!(
        (lines.next(), lines.next()),
        (
            Some(malformed_path.display().to_string().as_str()),
            Some(
                format!(
                    "  {}:4:3: error[json-syntax]: not valid JSON: expected `,` or `}}`",
                    malformed_path.display()
                )
                .as_str()
            )
        ),
        "documents are checked in sorted order:\n{}",
        run.stdout
    );
    assert_diagnostic(
        &run.stdout,
        &no_major_path,
        "error[SOA001 subject-shape] at /operations/get/subject: subject shop.orders.get has 3 tokens",
    );
    assert_diagnostic(
        &run.stdout,
        &no_major_path,
        "error[SOA003 subject-major-version] at /operations/list/subject: subject shop.orders.current.list has \"current\" where the major version belongs",
    );
    assert_diagnostic(
        &run.stdout,
        &remote_ref_path,
        "error[SOA020 remote-ref] at /$defs/Money/$ref: \"https://example.com/money.json\" would be fetched from outside the registry",
    );
    assert!(
        run.stdout.ends_with("\n3 documents, 4 errors, 0 warnings\nTo accept a finding or change on purpose, add its fingerprint to .soa-ignore.\n"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stderr, "");

    // Without the malformed file, the others fail policy: exit 1.
    std::fs::remove_file(&malformed_path).unwrap();
    let run = soa(&["contract".as_ref(), "check".as_ref(), dir.path().as_os_str()]).await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
}

#[tokio::test]
async fn the_json_format_reports_each_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut no_major = orders_value().unwrap();
    no_major["operations"]["get"]["subject"] = "shop.orders.get".into();
    write_json(&dir.path().join("no-major.json"), &no_major).unwrap();

    let run = soa(&[
        "contract".as_ref(),
        "check".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        dir.path().as_os_str(),
        catalog_dir().join("orders.v1.json").as_os_str(),
    ])
    .await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let documents = &report["documents"];
    assert_eq!(documents.as_array().map(Vec::len), Some(2));
    assert_eq!(documents[0]["service"], "orders");
    assert_eq!(documents[0]["diagnostics"][0]["rule"], "SOA001");
    assert_eq!(documents[0]["diagnostics"][0]["name"], "subject-shape");
    assert_eq!(documents[0]["diagnostics"][0]["pointer"], "/operations/get/subject");
    assert!(documents[0]["diagnostics"][0]["line"].as_u64().is_some());
    assert_eq!(documents[1]["diagnostics"], serde_json::json!([]));
    assert_eq!(report["summary"]["exit_code"], 1);
}

#[tokio::test]
async fn a_missing_path_is_a_usage_error() {
    let run = soa(&["contract", "check", "no/such/contract.json"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, "error: no such file or directory: no/such/contract.json\n");
    assert_eq!(run.stdout, "");
}

#[tokio::test]
async fn the_checked_in_catalogue_has_not_drifted_from_the_rust_types() {
    let run = soa(&[
        "contract".as_ref(),
        "export".as_ref(),
        "--check".as_ref(),
        "--out".as_ref(),
        catalog_dir().as_os_str(),
    ])
    .await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.ends_with("match the Rust types\n"), "{}", run.stdout);
}

#[tokio::test]
async fn an_edited_export_is_drift() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("catalog");
    let export = soa(&[
        "contract".as_ref(),
        "export".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .await;
    assert_eq!(export.exit, Exit::Success, "{}{}", export.stdout, export.stderr);
    for file in std::fs::read_dir(catalog_dir()).unwrap() {
        let file = file.unwrap();
        assert_eq!(
            std::fs::read(out.join(file.file_name())).unwrap(),
            std::fs::read(file.path()).unwrap(),
            "{:?} differs from the checked-in one",
            file.file_name()
        );
    }

    let edited = out.join("payments.v1.json");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, text.replace("Charges customers", "Charges clients")).unwrap();
    let check = soa(&[
        "contract".as_ref(),
        "export".as_ref(),
        "--check".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .await;
    assert_eq!(check.exit, Exit::Failure, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.starts_with(&format!(
            "{}: differs from what the Rust types export\n",
            edited.display()
        )),
        "{}",
        check.stdout
    );
    assert_eq!(check.stdout.lines().count(), 2, "{}", check.stdout);
}

#[tokio::test]
async fn the_demo_runs_both_flows_on_the_given_server_and_its_report_adds_up() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let out = data_dir.path().join("report");
    let run = soa(&[
        "--nats-url".as_ref(),
        server.url().as_ref(),
        "demo".as_ref(),
        "--orders".as_ref(),
        "200".as_ref(),
        "--decline-rate".as_ref(),
        "0.1".as_ref(),
        "--out-of-stock-rate".as_ref(),
        "0.1".as_ref(),
        "--shipping-failure-rate".as_ref(),
        "0.1".as_ref(),
        "--data-dir".as_ref(),
        data_dir.path().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    let output = &run.stdout;
    for expected in [
        format!("Using nats-server 2.15.1 at {}.", server.url()),
        "the orchestrator with fulfilment@1.1.0 are up.".to_owned(),
        "2. The orchestrated flow:\n   200 of 200 orders ended in ".to_owned(),
        "3. The choreographed flow:\n   200 of 200 orders ended in ".to_owned(),
        "messages on the bus per order".to_owned(),
        "Stock, money and shipments add up in both modes".to_owned(),
    ] {
        assert!(output.contains(&expected), "{expected:?} missing from:\n{output}");
    }
    // The demo used the server it was given and started none of its own.
    assert!(!data_dir.path().join("nats").exists());

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["orders"], 200);
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["outcome_mismatches"], serde_json::json!([]));
    let mut outcomes = Vec::new();
    for mode in ["orchestrated", "choreographed"] {
        let figures = &report["modes"][mode];
        let count = |name: &str| figures[name].as_u64().unwrap();
        assert_eq!(
            count("completed") + count("compensated") + count("stuck"),
            200,
            "{mode}: {figures}"
        );
        assert_eq!(count("stuck"), 0, "{mode}: {figures}");
        assert!(
            count("compensated") > 0,
            "the failure rates compensate some orders: {figures}"
        );
        let failures: u64 = figures["failures"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(failures, count("compensated"), "{mode}: {figures}");
        assert!(figures["messages_per_order"].as_f64().unwrap() > 5.0, "{figures}");
        let latency = &figures["latency_ms"];
        assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
        assert!(figures["throughput_per_s"].as_f64().unwrap() > 0.0);
        outcomes.push((count("completed"), figures["failures"].clone()));
    }
    // The same orders end the same way, whoever drives them.
    assert_eq!(outcomes[0], outcomes[1]);
    // Coupling from the registry's graph: the workflow knows the services it
    // calls and they know nobody; choreographed services know each other.
    let orchestrated = &report["modes"]["orchestrated"]["coupling"];
    assert_eq!(
        orchestrated["fulfilment"],
        serde_json::json!(["inventory", "notifications", "payments", "shipping"])
    );
    assert_eq!(orchestrated["inventory"], serde_json::json!([]));
    let choreographed = &report["modes"]["choreographed"]["coupling"];
    assert!(
        choreographed["payments"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("inventory"))
    );
    assert_eq!(report["tradeoffs"]["units_to_add_a_step"]["orchestrated"], 1);
    // The read model, built from the events of both modes, matches the
    // owning services, and its lag behind the events is measured.
    let view = &report["order_view"];
    assert_eq!(view["mismatch_count"], 0, "{view:#}");
    assert_eq!(view["orders_checked"], 400, "{view:#}");
    assert_eq!(view["caught_up"], true, "{view:#}");
    assert!(view["events"].as_u64().unwrap() >= 400 * 4, "{view:#}");
    let (p50, p99) = (
        view["lag_p50_ms"].as_f64().unwrap(),
        view["lag_p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{view:#}");
    for mode in ["orchestrated", "choreographed"] {
        assert!(view["by_mode"][mode]["events"].as_u64().unwrap() >= 200 * 4, "{view:#}");
        assert!(view["by_mode"][mode]["lag_p99_ms"].as_f64().unwrap() > 0.0, "{view:#}");
    }
    assert!(output.contains("order view lag p50 / p99 (ms)"), "{output}");
    assert!(
        output.contains("The order view (built from events only) matches the owning services for all 400 orders"),
        "{output}"
    );
    for diagram in ["orchestrated.mmd", "choreographed.mmd"] {
        let text = std::fs::read_to_string(out.join(diagram)).unwrap();
        assert!(
            text.starts_with("flowchart") || text.starts_with("graph"),
            "{diagram}: {text}"
        );
        assert!(text.contains("inventory"), "{diagram}: {text}");
    }
}

#[tokio::test]
async fn the_demo_starts_its_own_server_when_none_answers_and_recovers_from_kills() {
    tests::init_tracing();
    let data_dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback is privileged and has nothing listening in a test environment.
    let run = soa(&[
        "--nats-url".as_ref(),
        "nats://127.0.0.1:1".as_ref(),
        "demo".as_ref(),
        "--orders".as_ref(),
        "200".as_ref(),
        "--concurrency".as_ref(),
        "8".as_ref(),
        "--kill-orchestrator-every".as_ref(),
        "2".as_ref(),
        "--ack-wait".as_ref(),
        "1".as_ref(),
        "--restart-service".as_ref(),
        "payments".as_ref(),
        // Faults and throughput without the message counter.
        "--no-message-count".as_ref(),
        "--data-dir".as_ref(),
        data_dir.path().as_os_str(),
        "--out".as_ref(),
        data_dir.path().join("report").as_os_str(),
    ])
    .await;
    assert_eq!(run.exit, Exit::Success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("No NATS server answered at nats://127.0.0.1:1, so the demo started nats-server"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Stopped the nats-server the demo started (pid "),
        "{}",
        run.stdout
    );
    let log = std::fs::read_to_string(data_dir.path().join("nats/nats-server.log")).unwrap();
    assert!(log.contains("Server Exiting"), "{log}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.path().join("report/report.json")).unwrap()).unwrap();
    let orchestrated = &report["modes"]["orchestrated"];
    assert_eq!(orchestrated["stuck"], 0, "{orchestrated}");
    let outages = orchestrated["outages"].as_array().unwrap();
    assert!(
        outages.iter().any(|outage| outage["what"] == "orchestrator killed"),
        "{outages:?}"
    );
    assert!(
        outages.iter().any(|outage| outage["what"] == "payments restarted"),
        "{outages:?}"
    );
    assert_eq!(report["modes"]["choreographed"]["stuck"], 0);
    assert_eq!(report["violations"], serde_json::json!([]));
    // Not counted is said so, never printed as zero.
    for mode in ["orchestrated", "choreographed"] {
        assert_eq!(report["modes"][mode]["messages_per_order"], serde_json::Value::Null);
    }
    let counted_row = run
        .stdout
        .lines()
        .find(|line| line.contains("messages on the bus per order"))
        .unwrap_or_default();
    assert_eq!(counted_row.matches("not counted").count(), 2, "{}", run.stdout);
    assert!(!run.stdout.contains("of which replies"), "{}", run.stdout);
}

/// Serves the NATS handshake as a nats-server of `version` would, on a free
/// port, for as long as the test runs; returns its URL.
async fn fake_server(version: &'static str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (reader, mut writer) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"{version}\",\"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"proto\":1}}\r\n"
                );
                if writer.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && writer.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("nats://127.0.0.1:{port}")
}

#[tokio::test]
async fn the_demo_refuses_a_server_older_than_2_10() {
    tests::init_tracing();
    let url = fake_server("2.9.10").await;
    let data_dir = tempfile::tempdir().unwrap();
    let run = soa(&[
        "--nats-url".as_ref(),
        url.as_ref(),
        "demo".as_ref(),
        "--data-dir".as_ref(),
        data_dir.path().as_os_str(),
    ])
    .await;
    assert_eq!(run.exit, Exit::Failure, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "error: nats-server 2.9.10 at {url} is too old: soabus needs nats-server 2.10.0 or newer"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("scripts/install-nats-server"), "{}", run.stderr);
    // A refused server is not replaced by one of the demo's own.
    assert!(!data_dir.path().join("nats").exists());
}
