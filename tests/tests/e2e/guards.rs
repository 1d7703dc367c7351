//! Registry write guards, with `soa registry serve` as a process and its log
//! read: the owner registers new versions over NATS; another owner is
//! refused over NATS and over HTTP; an HTTP write without the bearer token
//! or with a wrong one is 401 and with it is accepted; a registry on the
//! same store started with `--read-only` serves reads and heartbeats and
//! refuses writes over both APIs; every refusal is logged at warn with the
//! service, the API and the reason, never a secret, and the stored versions
//! change only by the writes that were accepted.
//!
//! What other tests cover already: the owner rule and the HTTP statuses
//! in-process (`registry.rs`, `http.rs`, `registry/src/http/tests.rs`).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_services::runtime::{CallError, ServiceClient};
use contracts::registry_api::{HeartbeatRequest, RegisterRequest, VersionsRequest, ops};
use contracts::{ContractDocument, ContractId, ErrorCode, ServiceName};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{registry_client, wait_until_answering};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::workflow_cli::soa_binary;

/// A generous bound against hangs.
const WITHIN: Duration = Duration::from_secs(20);

const HTTP_TOKEN: &str = "http-write-token-s3cret";
const WRONG_HTTP_TOKEN: &str = "not-the-token-s3cret";
const OWNER: &str = "owner-credential-s3cret";
const STRANGER: &str = "stranger-credential-s3cret";

/// A version of the `guarded` service's contract.
fn guarded(version: &str) -> Value {
    json!({
        "contract": "soabus/v1",
        "service": "guarded",
        "version": version,
        "description": "A service whose versions only its owner registers",
        "owner": "guard-team",
        "operations": {
            "get": {
                "subject": "guard.guarded.v1.get",
                "description": "Reads one thing",
                "request": {"type": "object"},
                "response": {"type": "object"}
            }
        }
    })
}

/// `soa registry serve` as a process, its standard error gathered line by line.
struct ServeProcess {
    child: Child,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts one on `url` with the embedded store in `data_dir`, the HTTP
    /// API on a free loopback port with the write token, and `extra`
    /// arguments; returns once its HTTP API line is printed.
    async fn start(url: &str, data_dir: &Path, extra: &[&str]) -> (Self, Vec<String>) {
        let mut child = Command::new(soa_binary().await)
            .args(["--nats-url", url, "registry", "serve", "--data-dir"])
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .env("SOA_REGISTRY_TOKEN", HTTP_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    log.lock().unwrap().push(line);
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let http = loop {
            let line = tokio::time::timeout(WITHIN, stdout.next_line())
                .await
                .expect("soa registry serve printed nothing in time")
                .unwrap()
                .unwrap_or_else(|| panic!("soa registry serve ended early; log: {:?}", log.lock().unwrap()));
            if let Some(rest) = line.strip_prefix("registry: HTTP API on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            printed.push(line);
        };
        // The rest of standard output is not needed; keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        (Self { child, http, log }, printed)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(WITHIN, self.child.wait()).await.unwrap().unwrap();
        assert!(exit.success(), "soa registry serve exited with {exit}:\n{}", self.log());
        self.log()
    }
}

async fn register(client: &ServiceClient, version: &str, owner: &str) -> Result<bool, CallError> {
    client
        .call::<ops::Register>(&RegisterRequest {
            document: guarded(version),
            owner_token: Some(owner.to_owned()),
        })
        .await
        .map(|response| response.created)
}

async fn versions(client: &ServiceClient) -> Vec<String> {
    let reply = client
        .call::<ops::Versions>(&VersionsRequest {
            service: ServiceName::parse("guarded").unwrap(),
        })
        .await
        .unwrap();
    reply.versions.iter().map(|info| info.version.to_string()).collect()
}

/// `POST /v1/services` with `version`, the owner credential `owner` and the bearer token `token`.
async fn post(
    http: &reqwest::Client,
    base: &str,
    version: &str,
    owner: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = http
        .post(format!("{base}/v1/services"))
        .header("X-Soa-Owner-Token", owner)
        .json(&guarded(version));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[track_caller]
fn assert_refused_with(error: &CallError, code: ErrorCode, words: &str) {
    match error {
        CallError::Service { body, .. } => {
            assert_eq!(body.code, code, "{body:?}");
            assert!(
                body.message.contains(words),
                "{words:?} missing from {:?}",
                body.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The log lines of refused writes of `named` through `api`.
fn refusals<'a>(log: &'a str, named: &str, api: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| {
            line.contains("WARN")
                && line.contains("Refused a registry write")
                && line.contains(&format!("service={named}"))
                && line.contains(&format!("api=\"{api}\""))
        })
        .collect()
}

#[tokio::test]
async fn only_the_owner_writes_the_token_guards_http_and_a_read_only_registry_writes_nothing() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    let data = tempfile::tempdir().unwrap();
    let bus = registry_client(&server).await.unwrap();
    let http = reqwest::Client::builder().timeout(WITHIN).build().unwrap();

    // A writable registry.
    let (registry, _) = ServeProcess::start(&url, data.path(), &[]).await;
    wait_until_answering(&bus).await.unwrap();
    assert!(register(&bus, "1.0.0", OWNER).await.unwrap());
    assert!(register(&bus, "1.1.0", OWNER).await.unwrap());

    // Another owner, over NATS and over HTTP (with the right bearer token).
    let refused = register(&bus, "1.2.0", STRANGER).await.unwrap_err();
    assert_refused_with(
        &refused,
        ErrorCode::Unauthorized,
        "belongs to the credential that registered it first",
    );
    let (status, body) = post(&http, &registry.http, "1.2.0", STRANGER, Some(HTTP_TOKEN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    // The owner over HTTP without the token, and with a wrong one.
    let (status, body) = post(&http, &registry.http, "1.2.0", OWNER, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = post(&http, &registry.http, "1.2.0", OWNER, Some(WRONG_HTTP_TOKEN)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not the registry's write token"),
        "{body}"
    );
    assert_eq!(
        versions(&bus).await,
        ["1.0.0", "1.1.0"],
        "a refused write changed the store"
    );
    // The owner with the token.
    let (status, body) = post(&http, &registry.http, "1.2.0", OWNER, Some(HTTP_TOKEN)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(versions(&bus).await, ["1.0.0", "1.1.0", "1.2.0"]);

    let log = registry.stop().await;
    assert_eq!(refusals(&log, "guarded@1.2.0", "nats").len(), 1, "{log}");
    let http_refusals = refusals(&log, "guarded@1.2.0", "http");
    assert_eq!(http_refusals.len(), 3, "{log}");
    for reason in [
        "belongs to the credential that registered it first",
        "needs `Authorization: Bearer <token>`",
        "not the registry's write token",
    ] {
        assert!(
            log.lines()
                .any(|line| line.contains("Refused a registry write") && line.contains(reason)),
            "no refusal logged for {reason:?}:\n{log}"
        );
    }

    // Read-only, on the same store.
    let (registry, printed) = ServeProcess::start(&url, data.path(), &["--read-only"]).await;
    assert!(printed.iter().any(|line| line.contains("read-only")), "{printed:?}");
    wait_until_answering(&bus).await.unwrap();
    assert_eq!(versions(&bus).await, ["1.0.0", "1.1.0", "1.2.0"]);
    let reply = http
        .get(format!("{}/v1/services/guarded/versions", registry.http))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    // Writes are refused over both APIs, by the owner too.
    let refused = register(&bus, "1.3.0", OWNER).await.unwrap_err();
    assert_refused_with(&refused, ErrorCode::Unauthorized, "the registry is read-only");
    let (status, body) = post(&http, &registry.http, "1.3.0", OWNER, Some(HTTP_TOKEN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("the registry is read-only"),
        "{body}"
    );
    // A version exactly as stored is answered (a restarting service), and its instances beat.
    assert!(!register(&bus, "1.1.0", OWNER).await.unwrap());
    let stored = ContractDocument::from_json_value("test", &guarded("1.1.0"), None).unwrap();
    let beat = bus
        .call::<ops::Heartbeat>(&HeartbeatRequest {
            instance_id: "guarded-instance-1".to_owned(),
            contract: ContractId::parse("guarded@1.1.0").unwrap(),
            digest: stored.digest(),
            ttl_ms: 10_000,
        })
        .await
        .unwrap();
    assert!(!beat.drift);
    assert_eq!(versions(&bus).await, ["1.0.0", "1.1.0", "1.2.0"]);

    let log = registry.stop().await;
    for api in ["nats", "http"] {
        let lines = refusals(&log, "guarded@1.3.0", api);
        assert_eq!(lines.len(), 1, "{api}:\n{log}");
        assert!(lines[0].contains("read-only"), "{}", lines[0]);
    }
    // No secret in either log.
    for secret in [HTTP_TOKEN, WRONG_HTTP_TOKEN, OWNER, STRANGER] {
        assert!(!log.contains(secret), "the log shows {secret}");
    }
}
