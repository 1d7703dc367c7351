//! The `soa workflow` and `soa orchestrator` commands against a real
//! nats-server, a registry holding the ledger's contract and the scripted
//! ledger: definitions checked locally with `file:line:col` before anything
//! is sent, refusals placed in the file, starts followed to their end,
//! listings, instances and cancels in tables and JSON, exit 2 without an
//! orchestrator, a clean stop on Ctrl-C, and a `soa orchestrator serve`
//! process killed with SIGKILL in the middle of twenty instances, each of
//! which still completes with every effect applied exactly once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bus_services::runtime::ServiceClient;
use contracts::orchestrator_api::{InstanceStatus, ops};
use registry::cli::{CancellationToken, Exit};
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::RunningRegistry;
use tests::workflows::{
    Ledger, LedgerBus, RunningOrchestrator, Script, ledger_step, ledger_workflow, orchestrator_client, test_config,
    wait_final,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::cli::{Run, assert_exit, soa, soa_at, soa_until};

const WAIT: Duration = Duration::from_secs(30);

/// A server, a registry holding the ledger's contract, the ledger serving,
/// an orchestrator in this process (unless asked not to), and a folder for
/// definition files.
struct Bus {
    server: NatsServer,
    _registry: RunningRegistry,
    ledger: Ledger,
    _ledger_stop: tokio_util::sync::DropGuard,
    orchestrator: Option<RunningOrchestrator>,
    client: ServiceClient,
    dir: tempfile::TempDir,
}

async fn bus(with_orchestrator: bool) -> Bus {
    let LedgerBus {
        server,
        registry,
        ledger,
        ledger_stop,
    } = LedgerBus::start().await.unwrap();
    let orchestrator = if with_orchestrator {
        Some(RunningOrchestrator::start(&server, test_config()).await.unwrap())
    } else {
        None
    };
    let client = orchestrator_client(&server).await.unwrap();
    Bus {
        server,
        _registry: registry,
        ledger,
        _ledger_stop: ledger_stop,
        orchestrator,
        client,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Bus {
    /// Runs `soa --nats-url <this server> <args>`.
    async fn soa(&self, args: &[&str]) -> Run {
        soa_at(&self.server.url(), args).await
    }

    /// Writes `definition` as pretty JSON (so it has lines to point at) and
    /// returns its path.
    fn write(&self, name: &str, definition: &Value) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(definition).unwrap()).unwrap();
        path
    }

    fn applied(&self, order: &str) -> Vec<String> {
        self.ledger.read(|log| {
            log.applied
                .iter()
                .filter(|(o, _)| o == order)
                .map(|(_, step)| step.clone())
                .collect()
        })
    }
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The 1-based line of `path` holding `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().position(|line| line.contains(needle)).unwrap() + 1
}

/// Asserts that `output` has a line `<file>:<line>:<column>: <rest...>`.
#[track_caller]
fn assert_problem(output: &str, file: &Path, line: usize, rest: &str) {
    let prefix = format!("{}:{line}:", file.display());
    let found = output.lines().any(|candidate| {
        candidate.strip_prefix(&prefix).is_some_and(|after| {
            after
                .split_once(": ")
                .is_some_and(|(column, tail)| column.parse::<usize>().is_ok() && tail.starts_with(rest))
        })
    });
    assert!(found, "no line {prefix}<column>: {rest}… in:\n{output}");
}

#[tokio::test]
async fn definitions_are_checked_here_with_their_line_and_column_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut step = ledger_step("s1", "2s");
    let timeout = step.as_object_mut().unwrap().remove("timeout").unwrap();
    step["timout"] = timeout;
    let typo = dir.path().join("typo.json");
    std::fs::write(
        &typo,
        serde_json::to_string_pretty(&ledger_workflow("typo", vec![step])).unwrap(),
    )
    .unwrap();
    let malformed = dir.path().join("malformed.json");
    std::fs::write(
        &malformed,
        "{\n  \"workflow\": \"soabus/workflow/v1\",\n  \"name\": \"flow\"\n  \"version\": \"1.0.0\"\n}\n",
    )
    .unwrap();
    // Nothing listens there: the checks need no server, and nothing is sent.
    let nowhere = "nats://127.0.0.1:1";

    let run = soa_at(nowhere, &["workflow", "load", text(&typo)]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_problem(
        &run.stderr,
        &typo,
        line_of(&typo, "\"timout\""),
        "/steps/0/timout: unknown field \"timout\"",
    );
    assert!(
        run.stderr.ends_with(&format!(
            "error: {} is not a valid workflow definition (2 problem(s)); nothing was sent to the orchestrator\n",
            typo.display()
        )),
        "{}",
        run.stderr
    );

    let run = soa_at(nowhere, &["workflow", "load", text(&malformed)]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(
        run.stderr,
        format!(
            "error: {}:4:3: not valid JSON: expected `,` or `}}`\n",
            malformed.display()
        )
    );

    // A file that cannot be read is an input error (2), the worst of the run;
    // the other files are still checked.
    let missing = dir.path().join("missing.json");
    let run = soa_at(nowhere, &["workflow", "load", text(&missing), text(&typo)]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot read {}: ", missing.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("/steps/0/timout: unknown field"), "{}", run.stderr);
}

#[tokio::test]
async fn without_an_orchestrator_every_command_exits_2_and_says_what_to_start() {
    let bus = bus(false).await;
    let valid = bus.write("valid.json", &ledger_workflow("flow", vec![ledger_step("s1", "2s")]));
    let hint = "is `soa orchestrator serve` running?";
    for args in [
        vec!["workflow", "load", text(&valid)],
        vec!["workflow", "definitions"],
        vec!["workflow", "start", "flow", "--input", r#"{"order": "o-1"}"#],
        vec!["workflow", "list"],
        vec!["workflow", "show", "flow-1"],
        vec!["workflow", "cancel", "flow-1"],
    ] {
        let run = bus.soa(&args).await;
        assert_exit(&run, Exit::Usage);
        assert!(
            run.stderr
                .starts_with("error: no orchestrator answered on soa.orchestrator.v1."),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.trim_end().ends_with(hint), "{args:?}: {}", run.stderr);
    }
    // Without a NATS server at all, too.
    let run = soa_at("nats://127.0.0.1:1", &["workflow", "list"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr
            .starts_with("error: cannot reach the orchestrator without a NATS connection"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn definitions_are_loaded_and_instances_started_listed_shown_and_cancelled() {
    let bus = bus(true).await;

    // Refused by the orchestrator: an operation the ledger does not have,
    // placed at its line in the file.
    let mut step = ledger_step("s1", "2s");
    step["call"] = json!("ledger@1#aply");
    let unknown = bus.write("unknown.json", &ledger_workflow("flow", vec![step]));
    let run = bus.soa(&["workflow", "load", text(&unknown)]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_problem(
        &run.stderr,
        &unknown,
        line_of(&unknown, "ledger@1#aply"),
        "/steps/0/call: ",
    );
    assert!(run.stderr.contains("aply"), "{}", run.stderr);
    assert!(
        run.stderr.ends_with("; nothing was loaded\n") && run.stderr.contains("error: the orchestrator refused "),
        "{}",
        run.stderr
    );

    // Loaded, then unchanged; other content under the same version conflicts.
    let definition = ledger_workflow("flow", vec![ledger_step("s1", "2s"), ledger_step("s2", "2s")]);
    let valid = bus.write("flow.json", &definition);
    let run = bus.soa(&["workflow", "load", text(&valid)]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout, "loaded flow@1.0.0 (start: test.flow.v1.start)\n");
    assert_eq!(run.stderr, "");
    let run = bus.soa(&["workflow", "load", text(&valid)]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout, "unchanged flow@1.0.0 (start: test.flow.v1.start)\n");
    let mut changed = definition.clone();
    changed["steps"][1]["timeout"] = json!("5s");
    let changed = bus.write("changed.json", &changed);
    let run = bus.soa(&["workflow", "load", text(&changed)]).await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr.starts_with(&format!(
            "error: {}: not loaded: flow@1.0.0 is already loaded",
            changed.display()
        )),
        "{}",
        run.stderr
    );

    let run = bus.soa(&["workflow", "definitions"]).await;
    assert_exit(&run, Exit::Success);
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["WORKFLOW", "STEPS", "START", "SUBJECT", "LOADED", "DESCRIPTION"]
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("flow@1.0.0      2  test.flow.v1.start"),
        "{}",
        run.stdout
    );
    let run = bus.soa(&["workflow", "definitions", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["workflow"], "flow@1.0.0");
    assert_eq!(listed[0]["steps"], 2);

    // Started and followed to the end.
    let run = bus
        .soa(&[
            "workflow",
            "start",
            "flow",
            "--input",
            r#"{"order": "o-1"}"#,
            "--correlation-id",
            "o-1",
            "--wait",
        ])
        .await;
    assert_exit(&run, Exit::Success);
    let mut lines = run.stdout.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("started flow-") && first.ends_with(" (flow@1.0.0)"),
        "{}",
        run.stdout
    );
    let instance = first.split_whitespace().nth(1).unwrap().to_owned();
    let second = lines.next().unwrap();
    assert!(
        second.starts_with(&format!("{instance} completed after ")),
        "{}",
        run.stdout
    );
    let output: Value = serde_json::from_str(run.stdout.split_once("output: ").unwrap().1).unwrap();
    assert_eq!(output["s1"]["step"], "s1");
    assert_eq!(output["s2"]["order"], "o-1");
    assert_eq!(bus.applied("o-1"), ["s1", "s2"]);

    // As JSON; the same key starts one instance.
    let keyed = [
        "workflow",
        "start",
        "flow@1.0.0",
        "--input",
        r#"{"order": "o-2"}"#,
        "--key",
        "checkout-2",
        "--wait",
        "20s",
        "--json",
    ];
    let run = bus.soa(&keyed).await;
    assert_exit(&run, Exit::Success);
    let first: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(first["status"], "completed");
    assert_eq!(first["workflow"], "flow@1.0.0");
    assert_eq!(first["output"]["s2"]["step"], "s2");
    let run = bus.soa(&keyed).await;
    assert_exit(&run, Exit::Success);
    let again: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (&again["instance"], &again["created"]),
        (&first["instance"], &json!(false))
    );
    let run = bus
        .soa(&[
            "workflow",
            "start",
            "flow",
            "--input",
            r#"{"order": "o-2"}"#,
            "--key",
            "checkout-2",
        ])
        .await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.starts_with("already started flow-"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("(flow@1.0.0, completed): the key \"checkout-2\" started it before"),
        "{}",
        run.stdout
    );
    assert_eq!(bus.applied("o-2"), ["s1", "s2"]);

    // Refused starts: an input that breaks the schema (each pointer), a
    // workflow that is not loaded, input that is not JSON.
    let run = bus
        .soa(&["workflow", "start", "flow", "--input", r#"{"order": 42}"#])
        .await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr.starts_with("error: the orchestrator refused the start: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\n  at /input/order: "), "{}", run.stderr);
    let run = bus
        .soa(&["workflow", "start", "nope", "--input", r#"{"order": "o-3"}"#])
        .await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stderr.contains("no workflow \"nope\" is loaded"), "{}", run.stderr);
    let run = bus.soa(&["workflow", "start", "flow", "--input", "{order}"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.starts_with("error: --input is not JSON"), "{}", run.stderr);

    // A step that is refused for good: compensated, exit 1, with the reason.
    bus.ledger.script("r2", Script::Refuse);
    let refusing = bus.write(
        "refusing.json",
        &ledger_workflow("refusing", vec![ledger_step("r1", "2s"), ledger_step("r2", "2s")]),
    );
    assert_exit(&bus.soa(&["workflow", "load", text(&refusing)]).await, Exit::Success);
    let run = bus
        .soa(&[
            "workflow",
            "start",
            "refusing",
            "--input",
            r#"{"order": "o-4"}"#,
            "--wait",
            "20s",
        ])
        .await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stdout.contains(" compensated after "), "{}", run.stdout);
    assert!(run.stdout.contains("\nreason: "), "{}", run.stdout);
    let refused_instance = run.stdout.split_whitespace().nth(1).unwrap().to_owned();

    // list: the table, the counts, the filters, JSON.
    let run = bus.soa(&["workflow", "list"]).await;
    assert_exit(&run, Exit::Success);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["INSTANCE", "WORKFLOW", "STATUS", "CURRENT", "STARTED", "CORRELATION"]
    );
    // Newest first.
    assert!(lines[1].starts_with(&refused_instance), "{}", run.stdout);
    assert_eq!(
        lines.last().unwrap(),
        &"3 of 3 shown; by status: 1 compensated, 2 completed",
        "{}",
        run.stdout
    );
    let row = |stdout: &str, id: &str| -> Vec<String> {
        let line = stdout.lines().find(|line| line.starts_with(id)).unwrap_or_default();
        line.split_whitespace().map(str::to_owned).collect()
    };
    let cells = row(&run.stdout, &instance);
    assert_eq!(cells[1..4], ["flow@1.0.0", "completed", "-"], "{}", run.stdout);
    assert_eq!(cells.last().unwrap(), "o-1", "{}", run.stdout);
    let run = bus
        .soa(&[
            "workflow",
            "list",
            "--workflow",
            "flow",
            "--status",
            "completed",
            "--json",
        ])
        .await;
    assert_exit(&run, Exit::Success);
    let listed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["instances"].as_array().unwrap().len(), 2);
    assert_eq!(listed["by_status"], json!({"completed": 2}));
    let run = bus.soa(&["workflow", "list", "--limit", "1"]).await;
    assert!(
        run.stdout
            .ends_with("1 of 3 shown; by status: 1 compensated, 2 completed\n"),
        "{}",
        run.stdout
    );
    let run = bus.soa(&["workflow", "list", "--status", "running"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "No instance matches the filters.\n");
    let run = bus.soa(&["workflow", "list", "--status", "done"]).await;
    assert_exit(&run, Exit::Usage);
    let run = bus.soa(&["workflow", "list", "--workflow", "Flow"]).await;
    assert_exit(&run, Exit::Usage);

    // show: the header, the steps, the timeline; JSON; an unknown instance.
    let run = bus.soa(&["workflow", "show", &instance]).await;
    assert_exit(&run, Exit::Success);
    let out = &run.stdout;
    for expected in [
        format!("{instance}\n  workflow     flow@1.0.0\n  status       completed\n"),
        "  current      -\n  correlation  o-1\n  input        {\"order\":\"o-1\"}\n".to_owned(),
        "\nSteps\n  STEP  STATUS     ATTEMPT  STARTED  ERROR\n".to_owned(),
        "\nOutput\n  {".to_owned(),
        "\nHistory (ms from the start)\n".to_owned(),
    ] {
        assert!(out.contains(&expected), "no {expected:?} in:\n{out}");
    }
    // The timeline: offset, event, step, attempt.
    let timeline: Vec<Vec<&str>> = out
        .split_once("History (ms from the start)\n")
        .unwrap()
        .1
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(timeline[0][..2], ["AT", "EVENT"]);
    assert_eq!(timeline[1][..2], ["+0", "started"]);
    assert!(
        timeline.iter().any(|row| row[1..] == ["step-succeeded", "s2", "1"]),
        "{out}"
    );
    assert_eq!(timeline.last().unwrap()[1], "completed", "{out}");
    assert!(
        out.lines().any(|line| line.starts_with("  s1    succeeded        1")),
        "{out}"
    );
    let run = bus.soa(&["workflow", "show", &refused_instance]).await;
    assert!(run.stdout.contains("  r2    failed           "), "{}", run.stdout);
    assert!(run.stdout.contains("\nReason\n  "), "{}", run.stdout);
    let run = bus.soa(&["workflow", "show", &instance, "--json"]).await;
    assert_exit(&run, Exit::Success);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["instance"]["id"], instance.as_str());
    assert_eq!(shown["instance"]["status"], "completed");
    assert_eq!(shown["current"], json!([]));
    let run = bus.soa(&["workflow", "show", "flow-nope"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(
        run.stderr,
        "error: no instance \"flow-nope\"; `soa workflow list` shows them\n"
    );

    // cancel: accepted while a step runs, and its completed steps undone;
    // a second cancel finds it ended.
    bus.ledger.script("c2", Script::Delay(Duration::from_millis(1_500)));
    let slow = bus.write(
        "slow.json",
        &ledger_workflow("slow", vec![ledger_step("c1", "2s"), ledger_step("c2", "5s")]),
    );
    assert_exit(&bus.soa(&["workflow", "load", text(&slow)]).await, Exit::Success);
    let run = bus
        .soa(&["workflow", "start", "slow", "--input", r#"{"order": "o-5"}"#, "--json"])
        .await;
    assert_exit(&run, Exit::Success);
    let started: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(started["status"], "running");
    let slow_instance = started["instance"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let run = bus.soa(&["workflow", "list", "--status", "running"]).await;
    let cells = row(&run.stdout, &slow_instance);
    assert_eq!(cells[1..4], ["slow@1.0.0", "running", "c2"], "{}", run.stdout);
    let run = bus
        .soa(&[
            "workflow",
            "cancel",
            &slow_instance,
            "--reason",
            "the customer changed their mind",
        ])
        .await;
    assert_exit(&run, Exit::Success);
    assert_eq!(
        run.stdout,
        format!("cancel accepted for {slow_instance} (it was running); its completed steps are compensated next\n")
    );
    let state = wait_final(&bus.client, &slow_instance, WAIT).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Cancelled, "{state:#?}");
    let run = bus.soa(&["workflow", "cancel", &slow_instance]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(
        run.stderr,
        format!("{slow_instance} already ended (cancelled); nothing to cancel\n")
    );
    let run = bus.soa(&["workflow", "cancel", &slow_instance, "--json"]).await;
    assert_exit(&run, Exit::Failure);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        answer,
        json!({"instance": slow_instance, "status": "cancelled", "accepted": false})
    );
    let run = bus.soa(&["workflow", "show", &slow_instance]).await;
    assert!(run.stdout.contains("cancel-requested"), "{}", run.stdout);
    assert!(run.stdout.contains("the customer changed their mind"), "{}", run.stdout);
    let run = bus.soa(&["workflow", "cancel", "slow-nope"]).await;
    assert_exit(&run, Exit::Failure);

    bus.orchestrator.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_served_orchestrator_stops_cleanly_on_ctrl_c() {
    let bus = bus(false).await;
    let valid = bus.write("flow.json", &ledger_workflow("flow", vec![ledger_step("s1", "2s")]));
    let shutdown = CancellationToken::new();
    let url = bus.server.url();
    let args = [
        "--nats-url",
        &url,
        "orchestrator",
        "serve",
        "--ack-wait",
        "2s",
        "--no-register",
    ];
    let (served, ()) = tokio::join!(soa_until(&args, shutdown.clone()), async {
        // Served from the command: loads and starts work through it.
        let deadline = tokio::time::Instant::now() + WAIT;
        while bus.client.call::<ops::Definitions>(&Default::default()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the orchestrator never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let run = bus.soa(&["workflow", "load", text(&valid)]).await;
        assert_exit(&run, Exit::Success);
        let run = bus
            .soa(&[
                "workflow",
                "start",
                "flow",
                "--input",
                r#"{"order": "o-1"}"#,
                "--wait",
                "20s",
            ])
            .await;
        assert_exit(&run, Exit::Success);
        shutdown.cancel();
    });
    assert_exit(&served, Exit::Success);
    assert_eq!(
        served.stdout,
        format!("orchestrator ready on {url} (ack wait 2s, 0 workflow definition(s) loaded)\norchestrator: stopped\n")
    );
    // Stopped: nobody answers any more.
    let run = bus.soa(&["workflow", "list"]).await;
    assert_exit(&run, Exit::Usage);

    let run = soa(&["orchestrator", "serve", "--ack-wait", "0s"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("is zero"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------
// `soa` as a process.

/// The `soa` binary ([`tests::faults::soa_binary`]: `$SOA_BIN`, or built
/// now into this test binary's target directory).
pub(crate) async fn soa_binary() -> PathBuf {
    tests::faults::soa_binary().await.unwrap()
}

/// A `soa orchestrator serve` process, killed when dropped.
struct ServeProcess {
    child: Child,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl ServeProcess {
    /// Starts one and waits for its ready line, which counts `definitions`.
    async fn start(url: &str, definitions: usize) -> Self {
        let log = if std::env::var_os(tests::harness::LOG_ENV_VAR).is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(soa_binary().await)
            .args(["--nats-url", url, "orchestrator", "serve", "--ack-wait", "2s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("no ready line in time")
            .unwrap()
            .expect("soa orchestrator serve ended before it was ready");
        assert_eq!(
            ready,
            format!("orchestrator ready on {url} (ack wait 2s, {definitions} workflow definition(s) loaded)")
        );
        Self { child, stdout }
    }

    /// SIGKILL: nothing is committed, handed back or drained.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, as `main` turns it into a shutdown: exits 0 and says so.
    async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(
            exit.success(),
            "soa orchestrator serve exited with {exit} after SIGTERM"
        );
        let mut rest = Vec::new();
        while let Some(line) = self.stdout.next_line().await.unwrap() {
            rest.push(line);
        }
        assert_eq!(rest, ["orchestrator: stopped"]);
    }
}

/// Runs the `soa` binary with `args`, asserts that it exits 0, and returns its standard output.
async fn soa_process(url: &str, args: &[&str]) -> String {
    soa_process_with_input(url, args, None).await
}

/// [`soa_process`], with `input` on its standard input.
async fn soa_process_with_input(url: &str, args: &[&str], input: Option<&[u8]>) -> String {
    use tokio::io::AsyncWriteExt;

    let mut child = Command::new(soa_binary().await)
        .arg("--nats-url")
        .arg(url)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        // Dropped: the end of the input.
    }
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "soa {args:?} exited with {}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The "done when" scenario, with real processes: twenty instances of a
/// three-step workflow whose steps each take 150 ms, the orchestrator
/// process killed with SIGKILL mid-run, a new one started: every instance
/// completes, and the ledger applied each (order, step) exactly once.
#[tokio::test]
async fn a_killed_orchestrator_process_is_replaced_and_every_instance_completes_once() {
    let bus = bus(false).await;
    let url = bus.server.url();
    for step in ["s1", "s2", "s3"] {
        bus.ledger.script(step, Script::Delay(Duration::from_millis(150)));
    }
    let definition = bus.write(
        "durable.json",
        &ledger_workflow(
            "durable",
            vec![
                ledger_step("s1", "3s"),
                ledger_step("s2", "3s"),
                ledger_step("s3", "3s"),
            ],
        ),
    );
    let first = ServeProcess::start(&url, 0).await;
    // From standard input, as in `... | soa workflow load -`.
    let loaded = soa_process_with_input(
        &url,
        &["workflow", "load", "-"],
        Some(&std::fs::read(&definition).unwrap()),
    )
    .await;
    assert_eq!(loaded, "loaded durable@1.0.0 (start: test.durable.v1.start)\n");
    let orders: Vec<String> = (0..20).map(|n| format!("k-{n}")).collect();
    let starts = orders.iter().map(|order| {
        let input = json!({"order": order}).to_string();
        let url = url.clone();
        async move {
            let stdout = soa_process(
                &url,
                &[
                    "workflow",
                    "start",
                    "durable",
                    "--input",
                    &input,
                    "--correlation-id",
                    order,
                    "--json",
                ],
            )
            .await;
            let started: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(started["created"], true);
            started["instance"].as_str().unwrap().to_owned()
        }
    });
    let instances = futures::future::join_all(starts).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Mid-run: some effects are applied, not all of them.
    let applied = bus.ledger.read(|log| log.applied.len());
    assert!(
        0 < applied && applied < 60,
        "the kill must come mid-run: {applied} of 60 effects applied"
    );
    first.kill().await;

    // The replacement finds the definition in JetStream.
    let second = ServeProcess::start(&url, 1).await;
    for instance in &instances {
        let state = wait_final(&bus.client, instance, WAIT).await.unwrap();
        assert_eq!(state.status, InstanceStatus::Completed, "{state:#?}");
    }
    for order in &orders {
        assert_eq!(bus.applied(order), ["s1", "s2", "s3"], "order {order}");
    }
    let listed = soa_process(&url, &["workflow", "list", "--workflow", "durable", "--json"]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["by_status"], json!({"completed": 20}));
    second.terminate().await;
}
