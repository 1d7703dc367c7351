//! The hostile-input corpus (`tests/corpus/hostile/`) run against the real
//! thing: the `contracts` checks directly, and a registry, a runtime service
//! and an event consumer on a harness nats-server.
//!
//! Every case in `cases.json` names its target (`contracts`, `requests`,
//! `events`, `headers`, `registry`), its input (a file, or a `generate` spec
//! for the inputs too big to keep in the repository) and its expected
//! outcome: a clear error (the code, and the pointer or words it must name),
//! a dead letter, or a message dropped without a reply. After the whole
//! corpus the registry and the service still answer, the consumer still
//! handles a valid event, and the registry holds exactly what it held before.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bus_services::runtime::{ConsumerConfig, consume_json, ensure_event_stream};
use bus_services::runtime::{Service, ServiceConfig, serve};
use bus_services::wire;
use contracts::compat::{Mode, check_history, diff_contracts};
use contracts::registry_api::{ListRequest, RegisterRequest, RegistryRequest, ops};
use contracts::{ContractDocument, DocumentError, ErrorBody, Limits, SchemaSet, Severity, check_document};
use futures::StreamExt;
use registry::store::MemoryStore;
use serde_json::{Value, json};
use tests::NatsServer;
use tests::registry::{RunningRegistry, registry_client, test_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The owner credential the base contract is registered with.
const OWNER: &str = "corpus-owner";

/// The corpus must hold at least this many cases.
const MINIMUM_CASES: usize = 200;

/// The longest a single pure check may take: a backtracking regular
/// expression or an unbounded walk would blow through it (a busy two-core
/// CI machine would not).
const PURE_CHECK_BUDGET: Duration = Duration::from_secs(10);

/// The longest one case may take on the bus, reply included; generous for a
/// busy two-core CI machine, and still far below what a backtracking
/// pattern or a stuck handler would take.
const CASE_BUDGET: Duration = Duration::from_secs(10);

/// The largest error reply accepted as "clear": an error that echoes a huge
/// hostile input back is not.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// One case of the corpus, as `cases.json` lists it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Case {
    id: String,
    target: String,
    what: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    generate: Option<String>,
    expect: Value,
    /// For `contracts`: the owner token to register with; absent means the
    /// owner's, `null` none at all.
    #[serde(default, deserialize_with = "present")]
    owner_token: Option<Option<String>>,
    /// For `registry`: the verb the payload is sent to.
    #[serde(default)]
    verb: Option<String>,
    /// For `events`: headers the event is published with.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

impl Case {
    fn label(&self) -> String {
        format!("{}/{} ({})", self.target, self.id, self.what)
    }

    fn expect_str(&self, key: &str) -> Option<&str> {
        self.expect.get(key).and_then(Value::as_str)
    }

    /// The input: the file's bytes, or the generated ones.
    fn bytes(&self) -> Vec<u8> {
        if let Some(file) = &self.file {
            return std::fs::read(corpus_dir().join(file)).unwrap();
        }
        generate(
            self.generate
                .as_deref()
                .unwrap_or_else(|| panic!("{}: no file, no generate", self.label())),
        )
    }
}

fn corpus_dir() -> PathBuf {
    tests::harness::workspace_root().join("tests/corpus/hostile")
}

fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_dir().join("cases.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(manifest["cases"].clone()).unwrap()
}

fn base_document() -> ContractDocument {
    let text = std::fs::read_to_string(corpus_dir().join("base.json")).unwrap();
    ContractDocument::parse("base.json", &text, &Limits::default()).unwrap()
}

fn base_value() -> Value {
    serde_json::from_str(&std::fs::read_to_string(corpus_dir().join("base.json")).unwrap()).unwrap()
}

/// Builds a generated input from its spec, `kind:size` (or `kind:field:size`).
fn generate(spec: &str) -> Vec<u8> {
    let parts: Vec<&str> = spec.split(':').collect();
    let size: usize = parts.last().unwrap().parse().unwrap();
    let base = base_value();
    let note = |extra: (&str, Value)| {
        let mut note = json!({"id": "note-1", "text": "hello", "count": 1});
        note[extra.0] = extra.1;
        note.to_string().into_bytes()
    };
    let with_def = |nested: String| {
        let text = base.to_string();
        let (head, _) = text.rsplit_once('}').unwrap();
        format!("{head},\"Deep\":{nested}}}").into_bytes()
    };
    let contract_with = |key: &str, value: Value| {
        let mut document = base.clone();
        document[key] = value;
        document.to_string().into_bytes()
    };
    match parts[0] {
        "contract-deep-arrays" => with_def(format!("{}{}", "[".repeat(size), "]".repeat(size))),
        "contract-deep-objects" => with_def(format!("{}1{}", "{\"a\":".repeat(size), "}".repeat(size))),
        "contract-deep-unclosed" => with_def("[".repeat(size)),
        "contract-huge-description" => contract_with("description", json!("d".repeat(size))),
        "contract-huge-service" => contract_with("service", json!("s".repeat(size))),
        "contract-huge-tags" => contract_with("tags", json!((0..size).map(|i| format!("t{i}")).collect::<Vec<_>>())),
        "contract-many-operations" => {
            let mut document = base.clone();
            let operations = document["operations"].as_object_mut().unwrap();
            for index in 0..size {
                let name = format!("op{index}");
                operations.insert(
                    name.clone(),
                    json!({"subject": format!("corpus.hostile.v1.{name}"), "description": "one of many",
                           "request": {"type": "object"}, "response": {"type": "object"}}),
                );
            }
            document.to_string().into_bytes()
        }
        "request-deep-arrays" => format!("{}{}", "[".repeat(size), "]".repeat(size)).into_bytes(),
        "request-deep-objects" => format!("{}1{}", "{\"a\":".repeat(size), "}".repeat(size)).into_bytes(),
        "request-deep-in-field" => {
            let mut text = String::from("{\"id\":\"note-1\",\"text\":\"a\",\"count\":1,\"meta\":");
            text.push_str(&"[".repeat(size));
            text.push_str(&"]".repeat(size));
            text.push('}');
            text.into_bytes()
        }
        "request-huge-field" => match parts[1] {
            "code-evil" => note(("code", json!(format!("{}!", "a".repeat(size))))),
            field => note((field, json!("x".repeat(size)))),
        },
        "request-huge-tags" => note(("tags", json!(vec!["t"; size]))),
        "request-huge-root-array" => json!(vec![1; size]).to_string().into_bytes(),
        "request-huge-meta" => note((
            "meta",
            Value::Object((0..size).map(|i| (format!("k{i}"), json!("v"))).collect()),
        )),
        "request-extra-fields" => {
            let mut value = json!({"id": "note-1", "text": "hello", "count": 1});
            for index in 0..size {
                value[format!("extra{index}")] = json!(index);
            }
            value.to_string().into_bytes()
        }
        "request-over-max-payload" | "request-over-max-payload-client" => note(("text", json!("x".repeat(size)))),
        "registry-deep-text" => format!("{{\"text\":{}{}}}", "[".repeat(size), "]".repeat(size)).into_bytes(),
        other => panic!("unknown generator {other}"),
    }
}

#[test]
fn the_corpus_is_large_and_every_file_is_a_listed_case() {
    let cases = load_cases();
    assert!(cases.len() >= MINIMUM_CASES, "{} cases", cases.len());
    let mut ids = std::collections::BTreeSet::new();
    let mut files = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(
            ids.insert((case.target.clone(), case.id.clone())),
            "duplicate case {}",
            case.label()
        );
        assert!(!case.what.is_empty() && case.expect.is_object(), "{}", case.label());
        assert!(
            case.file.is_some() != case.generate.is_some(),
            "{}: a case has a file or a generator",
            case.label()
        );
        if let Some(file) = &case.file {
            assert!(file.starts_with(&format!("{}/", case.target)), "{}", case.label());
            files.insert(file.clone());
        }
    }
    for target in ["contracts", "requests", "events", "headers", "registry"] {
        for entry in std::fs::read_dir(corpus_dir().join(target)).unwrap() {
            let name = format!("{target}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(files.contains(&name), "{name} is in the corpus but not in cases.json");
        }
    }
}

/// Reads a contract case's text the way every entry point does, and checks
/// the outcome: the kind of error, and the pointer it names.
#[test]
fn contract_documents_get_clear_errors_from_parse_lint_and_compatibility() {
    let base = base_document();
    let mut failures = Vec::new();
    for case in load_cases().into_iter().filter(|case| case.target == "contracts") {
        let bytes = case.bytes();
        let started = Instant::now();
        let outcome = check_contract_case(&case, &bytes, &base);
        let took = started.elapsed();
        if took > PURE_CHECK_BUDGET {
            failures.push(format!("{}: took {took:?}", case.label()));
        }
        if let Err(problem) = outcome {
            failures.push(format!("{}: {problem}", case.label()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_contract_case(case: &Case, bytes: &[u8], base: &ContractDocument) -> Result<(), String> {
    let expected = case.expect_str("parse").ok_or("no expected parse outcome")?;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return if expected == "not_utf8" {
            Ok(())
        } else {
            Err(format!("not UTF-8, expected {expected}"))
        };
    };
    let checked = check_document(&case.id, text, &Limits::default(), &SchemaSet::default());
    let (document, findings) = match checked {
        Err(error) => {
            let kind = match &error {
                DocumentError::Syntax { .. } => "syntax",
                DocumentError::TooDeep { .. } => "too_deep",
                DocumentError::TooLarge { .. } => "too_large",
                DocumentError::Invalid { .. } => "invalid",
            };
            if kind != expected {
                return Err(format!("got a {kind} error, expected {expected}: {error}"));
            }
            let message = error.to_string();
            if message.len() > MAX_ERROR_BYTES {
                return Err(format!("the error is {} bytes long", message.len()));
            }
            if !message.starts_with(&case.id) {
                return Err(format!("the error does not name its source: {message}"));
            }
            if let Some(pointer) = case.expect_str("pointer")
                && !error.problems().iter().any(|problem| problem.pointer == pointer)
            {
                return Err(format!("no problem at {pointer:?}: {message}"));
            }
            if let Some(words) = case.expect_str("mentions")
                && !message.contains(words)
            {
                return Err(format!("the error does not mention {words:?}: {message}"));
            }
            return Ok(());
        }
        Ok(parsed) => parsed,
    };
    let errors: Vec<_> = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .collect();
    match expected {
        "lint" => {
            let rule = case.expect_str("rule").ok_or("no expected rule")?;
            let Some(finding) = errors.iter().find(|finding| finding.rule.id() == rule) else {
                return Err(format!("no {rule} finding; found {errors:?}"));
            };
            if let Some(pointer) = case.expect_str("pointer")
                && !errors
                    .iter()
                    .any(|finding| finding.rule.id() == rule && finding.pointer == pointer)
            {
                return Err(format!("{rule} is not at {pointer}: {finding}"));
            }
            if let Some(words) = case.expect_str("mentions")
                && !errors
                    .iter()
                    .any(|finding| finding.rule.id() == rule && finding.message.contains(words))
            {
                return Err(format!("no {rule} finding mentions {words:?}: {finding}"));
            }
            if finding.message.len() > MAX_ERROR_BYTES {
                return Err(format!("the finding is {} bytes long", finding.message.len()));
            }
        }
        "ok" => {
            if !errors.is_empty() {
                return Err(format!("expected no lint errors, found {errors:?}"));
            }
        }
        other => return Err(format!("parsed and linted, but expected {other}")),
    }
    // The compatibility checker takes whatever parsed, both ways, and ends.
    let report = check_history(std::slice::from_ref(base), &document);
    diff_contracts(base, &document, Mode::Full);
    diff_contracts(&document, base, Mode::Full);
    if case.expect_str("compat") == Some("breaking") && report.breaking().next().is_none() {
        return Err(format!("expected a breaking change against the base: {report:?}"));
    }
    Ok(())
}

/// What the bus parts of the test share.
struct Bus {
    server: NatsServer,
    nats: async_nats::Client,
    registry: RunningRegistry,
    service: Service,
    service_stop: CancellationToken,
    service_task: tokio::task::JoinHandle<()>,
    consumer_stop: CancellationToken,
    consumer_task: tokio::task::JoinHandle<()>,
    handled_events: Arc<AtomicUsize>,
}

async fn start_bus() -> Bus {
    tests::harness::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let registry = RunningRegistry::start(&server, Arc::new(MemoryStore::new()), test_options())
        .await
        .unwrap();
    let client = registry_client(&server).await.unwrap();
    let created = client
        .call::<ops::Register>(&RegisterRequest {
            document: base_value(),
            owner_token: Some(OWNER.to_owned()),
        })
        .await
        .unwrap();
    assert!(created.created);

    let base = base_document();
    let service = echo_service();
    let service_stop = CancellationToken::new();
    let service_task = tokio::spawn({
        let service = service.clone();
        let nats = server.client().await.unwrap();
        let stop = service_stop.clone();
        async move { service.run(nats, stop).await.unwrap() }
    });

    let nats = server.client().await.unwrap();
    ensure_event_stream(&async_nats::jetstream::new(nats.clone()), &base)
        .await
        .unwrap();
    let handled_events = Arc::new(AtomicUsize::new(0));
    let consumer_stop = CancellationToken::new();
    let consumer_task = tokio::spawn({
        let nats = server.client().await.unwrap();
        let handled = Arc::clone(&handled_events);
        let stop = consumer_stop.clone();
        async move {
            consume_json(
                nats,
                base,
                "noted",
                ConsumerConfig::new("hostile-corpus"),
                move |_ctx, _payload| {
                    let handled = Arc::clone(&handled);
                    async move {
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                },
                stop,
            )
            .await
            .unwrap();
        }
    });
    let bus = Bus {
        server,
        nats,
        registry,
        service,
        service_stop,
        service_task,
        consumer_stop,
        consumer_task,
        handled_events,
    };
    // Up once it echoes.
    for _ in 0..200 {
        if echoes(&bus.nats).await {
            return bus;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the corpus service did not come up");
}

/// The corpus service: the base contract's `echo`, not registered.
fn echo_service() -> Service {
    Service::builder(base_document())
        .config(ServiceConfig {
            registration: None,
            ..ServiceConfig::default()
        })
        .handle_json("echo", |_ctx, request: Value| async move { Ok(request) })
        .build()
        .unwrap()
}

/// Whether the corpus service echoes a valid note now.
async fn echoes(nats: &async_nats::Client) -> bool {
    request(nats, "corpus.hostile.v1.echo", HeaderMap::new(), valid_note())
        .await
        .is_ok_and(|reply| wire::decode_error(reply.headers.as_ref(), &reply.payload).is_none())
}

fn valid_note() -> Vec<u8> {
    br#"{"id":"note-1","text":"hello","count":1}"#.to_vec()
}

async fn request(
    nats: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> Result<async_nats::Message, async_nats::RequestError> {
    nats.send_request(
        subject.to_owned(),
        async_nats::Request::new()
            .headers(headers)
            .payload(payload.into())
            .timeout(Some(Duration::from_secs(5))),
    )
    .await
}

/// The registry's services and their versions, to compare before and after.
async fn registry_state(nats: &async_nats::Client) -> BTreeMap<String, Vec<String>> {
    let payload = serde_json::to_vec(&ListRequest::default()).unwrap();
    let reply = request(nats, &ListRequest::subject(), HeaderMap::new(), payload)
        .await
        .unwrap();
    let list: contracts::registry_api::ListResponse = serde_json::from_slice(&reply.payload).unwrap();
    list.services
        .into_iter()
        .map(|summary| {
            (
                summary.name.to_string(),
                summary.versions.iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

/// Checks an error reply against the case: its code, its size, and the
/// pointer and words it must name.
fn check_error_reply(case: &Case, reply: &async_nats::Message) -> Result<ErrorBody, String> {
    let Some(body) = wire::decode_error(reply.headers.as_ref(), &reply.payload) else {
        return Err(format!(
            "no error reply: {}",
            String::from_utf8_lossy(&reply.payload[..reply.payload.len().min(300)])
        ));
    };
    let expected = case.expect_str("code").ok_or("no expected code")?;
    if body.code.as_str() != expected {
        return Err(format!("got {}, expected {expected}: {}", body.code, body.message));
    }
    if body.message.trim().is_empty() {
        return Err("the error has no message".to_owned());
    }
    if reply.payload.len() > MAX_ERROR_BYTES {
        return Err(format!("the error reply is {} bytes long", reply.payload.len()));
    }
    if let Some(pointer) = case.expect_str("pointer")
        && !body.details.iter().any(|detail| detail.pointer == pointer)
    {
        return Err(format!("no detail at {pointer:?}: {body:?}"));
    }
    if let Some(words) = case.expect_str("mentions") {
        let said = std::iter::once(body.message.as_str())
            .chain(body.details.iter().map(|detail| detail.message.as_str()))
            .any(|text| text.contains(words));
        if !said {
            return Err(format!("the error does not mention {words:?}: {body:?}"));
        }
    }
    Ok(body)
}

/// Sends a message over a bare TCP connection, as a client that ignores the
/// server's max payload would; returns what the server answered.
async fn raw_publish(server: &NatsServer, subject: &str, payload: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let mut info = vec![0_u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut info)).await;
    let head = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}}\r\nPUB {subject} _INBOX.hostile {}\r\n",
        payload.len()
    );
    // The server may close the connection before the payload is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(payload).await;
    let _ = stream.write_all(b"\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn refused_by_server(answer: &str) -> Result<(), String> {
    if answer.contains("Maximum Payload") {
        Ok(())
    } else {
        Err(format!("the server did not refuse it: {answer:?}"))
    }
}

async fn run_contract_case(bus: &Bus, case: &Case) -> Result<(), String> {
    let register = case.expect.get("register").cloned().unwrap_or(Value::Null);
    let mut payload = b"{".to_vec();
    match &case.owner_token {
        None => payload.extend_from_slice(format!("\"owner_token\":\"{OWNER}\",").as_bytes()),
        Some(Some(token)) => payload.extend_from_slice(format!("\"owner_token\":{},", json!(token)).as_bytes()),
        Some(None) => {}
    }
    payload.extend_from_slice(b"\"document\":");
    payload.extend_from_slice(&case.bytes());
    payload.push(b'}');
    if register.get("outcome").and_then(Value::as_str) == Some("refused_by_server") {
        return refused_by_server(&raw_publish(&bus.server, &RegisterRequest::subject(), &payload).await);
    }
    let reply = request(&bus.nats, &RegisterRequest::subject(), HeaderMap::new(), payload)
        .await
        .map_err(|err| format!("no reply: {err}"))?;
    let as_case = Case {
        expect: register,
        ..case.clone()
    };
    check_error_reply(&as_case, &reply).map(drop)
}

async fn run_registry_case(bus: &Bus, case: &Case) -> Result<(), String> {
    let verb = case.verb.as_deref().ok_or("no verb")?;
    let subject = contracts::subjects::registry_api(verb);
    let reply = request(&bus.nats, &subject, HeaderMap::new(), case.bytes())
        .await
        .map_err(|err| format!("no reply: {err}"))?;
    match case.expect_str("outcome") {
        Some("ok") => match wire::decode_error(reply.headers.as_ref(), &reply.payload) {
            None => Ok(()),
            Some(body) => Err(format!("refused: {body:?}")),
        },
        Some("refusals") => {
            let answer: Value = serde_json::from_slice(&reply.payload).map_err(|err| err.to_string())?;
            if answer["accepted"] == false && answer["refusals"].as_array().is_some_and(|list| !list.is_empty()) {
                Ok(())
            } else {
                Err(format!("expected refusals: {answer}"))
            }
        }
        _ => check_error_reply(case, &reply).map(drop),
    }
}

async fn run_request_case(bus: &Bus, case: &Case) -> Result<(), String> {
    const SUBJECT: &str = "corpus.hostile.v1.echo";
    let payload = case.bytes();
    match case.expect_str("outcome") {
        Some("refused_by_server") => return refused_by_server(&raw_publish(&bus.server, SUBJECT, &payload).await),
        Some("refused_by_client") => {
            return match bus.nats.publish(SUBJECT, payload.into()).await {
                Err(error) if error.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => Ok(()),
                other => Err(format!("async-nats sent it: {other:?}")),
            };
        }
        Some("dropped") => {
            let before = served(&bus.service);
            bus.nats.publish(SUBJECT, payload.into()).await.unwrap();
            // A valid request behind it on the same subscription is answered,
            // and it is the only one counted: the first was dropped unanswered.
            let reply = request(&bus.nats, SUBJECT, HeaderMap::new(), valid_note())
                .await
                .map_err(|err| format!("the service stopped answering: {err}"))?;
            if let Some(body) = wire::decode_error(reply.headers.as_ref(), &reply.payload) {
                return Err(format!("the valid request behind it failed: {body:?}"));
            }
            let after = served(&bus.service);
            return if after == before + 1 {
                Ok(())
            } else {
                Err(format!("the service counted {} requests, not 1", after - before))
            };
        }
        _ => {}
    }
    let reply = request(&bus.nats, SUBJECT, HeaderMap::new(), payload)
        .await
        .map_err(|err| format!("no reply: {err}"))?;
    check_error_reply(case, &reply).map(drop)
}

fn served(service: &Service) -> u64 {
    service
        .stats()
        .endpoints
        .iter()
        .map(|endpoint| endpoint.num_requests)
        .sum()
}

async fn run_header_case(bus: &Bus, case: &Case) -> Result<(), String> {
    let input: Value = serde_json::from_slice(&case.bytes()).map_err(|err| err.to_string())?;
    let mut headers = HeaderMap::new();
    let mut sent_traceparent = None;
    for (name, value) in input["headers"].as_object().ok_or("no headers")? {
        let value = value.as_str().ok_or("a header value is not a string")?;
        if name == "traceparent" {
            sent_traceparent = Some(value.to_owned());
        }
        headers.insert(
            name.parse::<async_nats::HeaderName>()
                .map_err(|err| format!("{name}: {err:?}"))?,
            value
                .parse::<async_nats::HeaderValue>()
                .map_err(|err| format!("{name}: {err}"))?,
        );
    }
    let payload = serde_json::to_vec(&input["payload"]).unwrap();
    let reply = request(&bus.nats, "corpus.hostile.v1.echo", headers, payload.clone())
        .await
        .map_err(|err| format!("no reply: {err}"))?;
    if case.expect_str("outcome") != Some("ok") {
        return check_error_reply(case, &reply).map(drop);
    }
    if let Some(body) = wire::decode_error(reply.headers.as_ref(), &reply.payload) {
        return Err(format!("refused: {body:?}"));
    }
    let echoed: Value = serde_json::from_slice(&reply.payload).map_err(|err| err.to_string())?;
    if echoed != input["payload"] {
        return Err(format!("echoed {echoed}"));
    }
    let reply_headers = reply.headers.as_ref();
    if let Some(expected) = case.expect.get("correlation") {
        let got = wire::header(reply_headers, "Soa-Correlation-Id");
        if got != expected.as_str() {
            return Err(format!("the reply's correlation id is {got:?}, expected {expected}"));
        }
    }
    if case.expect.get("new_trace").is_some() {
        let traceparent = wire::header(reply_headers, "traceparent").ok_or("no traceparent")?;
        let parsed = bus_services::runtime::TraceContext::parse(traceparent, None);
        if parsed.is_none() || sent_traceparent.as_deref() == Some(traceparent) {
            return Err(format!("the reply's traceparent is {traceparent:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_refuses_the_corpus_clearly_and_keeps_its_state() {
    let bus = start_bus().await;
    let before = registry_state(&bus.nats).await;
    assert_eq!(before.get("hostile"), Some(&vec!["1.0.0".to_owned()]), "{before:?}");
    let cases = load_cases();
    let mut failures = Vec::new();

    // Events first: the consumer works through them while the rest runs.
    let mut dead_letters = bus.nats.subscribe("soa.dlq.>").await.unwrap();
    let js = async_nats::jetstream::new(bus.nats.clone());
    let events: Vec<&Case> = cases.iter().filter(|case| case.target == "events").collect();
    // Each event's sequence in the stream, which its dead letter names.
    let mut sequences = BTreeMap::new();
    for case in &events {
        let mut headers = HeaderMap::new();
        for (name, value) in &case.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        let ack = js
            .publish_with_headers("corpus.hostile.v1.noted", headers, case.bytes().into())
            .await
            .unwrap();
        sequences.insert(case.id.clone(), ack.await.unwrap().sequence.to_string());
    }

    for case in &cases {
        let started = Instant::now();
        let outcome = match case.target.as_str() {
            "contracts" => run_contract_case(&bus, case).await,
            "registry" => run_registry_case(&bus, case).await,
            "requests" => run_request_case(&bus, case).await,
            "headers" => run_header_case(&bus, case).await,
            "events" => continue,
            other => Err(format!("unknown target {other}")),
        };
        if let Err(problem) = outcome {
            failures.push(format!("{}: {problem}", case.label()));
        }
        if started.elapsed() > CASE_BUDGET {
            failures.push(format!("{}: took {:?}", case.label(), started.elapsed()));
        }
    }

    // Every hostile event is a dead letter that says why; none reached the handler.
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reasons.len() < events.len() {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, dead_letters.next()).await else {
            break;
        };
        let sequence = wire::header(message.headers.as_ref(), "Soa-Dead-Letter-Sequence").unwrap_or_default();
        let reason = wire::header(message.headers.as_ref(), "Soa-Dead-Letter-Reason").unwrap_or_default();
        reasons.insert(sequence.to_owned(), reason.to_owned());
    }
    for case in &events {
        let words = case.expect_str("mentions").unwrap_or_default();
        match reasons.get(&sequences[&case.id]) {
            Some(reason) if reason.contains(words) => {}
            Some(reason) => failures.push(format!("{}: dead letter reason {reason:?}", case.label())),
            None => failures.push(format!("{}: no dead letter", case.label())),
        }
    }
    assert_eq!(
        bus.handled_events.load(Ordering::SeqCst),
        0,
        "a hostile event reached the handler"
    );

    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_still_serving(&bus).await;
    assert_eq!(
        registry_state(&bus.nats).await,
        before,
        "the corpus changed the registry"
    );
    stop_bus(bus).await;
}

/// After the corpus: the service echoes, the consumer handles a valid event,
/// both the registry and the service answer `$SRV.PING`, and no task died.
async fn assert_still_serving(bus: &Bus) {
    let reply = request(&bus.nats, "corpus.hostile.v1.echo", HeaderMap::new(), valid_note())
        .await
        .unwrap();
    assert!(wire::decode_error(reply.headers.as_ref(), &reply.payload).is_none());
    let echoed: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(echoed, serde_json::from_slice::<Value>(&valid_note()).unwrap());

    let js = async_nats::jetstream::new(bus.nats.clone());
    js.publish("corpus.hostile.v1.noted", valid_note().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.handled_events.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the consumer no longer handles valid events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let inbox = bus.nats.new_inbox();
    let mut replies = bus.nats.subscribe(inbox.clone()).await.unwrap();
    bus.nats
        .publish_with_reply("$SRV.PING", inbox, "".into())
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(500), replies.next()).await {
        let ping: Value = serde_json::from_slice(&message.payload).unwrap();
        names.push(ping["name"].as_str().unwrap_or_default().to_owned());
    }
    names.sort();
    assert_eq!(names, ["hostile", "registry"], "$SRV.PING answers");
    assert!(!bus.service_task.is_finished(), "the service task ended");
    assert!(!bus.consumer_task.is_finished(), "the consumer task ended");
}

async fn stop_bus(bus: Bus) {
    bus.service_stop.cancel();
    bus.consumer_stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), bus.service_task)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), bus.consumer_task)
        .await
        .unwrap()
        .unwrap();
    bus.registry.stop().await.unwrap();
    drop(bus.server);
}

/// Sends `HPUB subject` with a header value holding a lone carriage return
/// over a bare TCP connection; the server forwards it as it is.
pub(crate) async fn raw_publish_lone_carriage_return(server: &NatsServer, subject: &str) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let mut info = vec![0_u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut info)).await;
    let headers = b"NATS/1.0\r\nX-Hostile: a\rb\r\n\r\n";
    let payload = br#"{"id":"note-1","text":"hello","count":1}"#;
    let head = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}}\r\nHPUB {subject} {} {}\r\n",
        headers.len(),
        headers.len() + payload.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(headers).await.unwrap();
    stream.write_all(payload).await.unwrap();
    stream.write_all(b"\r\nPING\r\n").await.unwrap();
    let mut answer = vec![0_u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
    assert!(
        answered.is_ok_and(|read| read.is_ok_and(|n| String::from_utf8_lossy(&answer[..n]).contains("PONG"))),
        "the server did not take the message"
    );
}

/// async-nats 0.51 panics in its connection task on a header value with a
/// lone carriage return (nats-io/nats.rs#1612, open upstream), which any
/// publisher on a subject can send: the client's connection is then dead.
/// A service or consumer on that connection must stop and say why, so a
/// supervisor restarts it, instead of staying up and serving nothing.
#[tokio::test]
async fn a_header_the_client_library_cannot_parse_stops_the_service_loudly() {
    tests::harness::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let base = base_document();
    let service = echo_service();
    let service_nats = server.client().await.unwrap();
    let service_task = tokio::spawn(service.run(service_nats.clone(), CancellationToken::new()));
    let probe = server.client().await.unwrap();
    let mut up = false;
    for _ in 0..100 {
        if echoes(&probe).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the service did not come up");

    raw_publish_lone_carriage_return(&server, "corpus.hostile.v1.echo").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), service_task)
        .await
        .expect("the service kept running on a dead connection")
        .unwrap();
    let error = ended.expect_err("the service ended as if shut down");
    assert!(
        matches!(error, bus_services::runtime::RunError::SubscriptionEnded),
        "{error:?}"
    );
    assert!(error.to_string().contains("restart the service"), "{error}");

    // A durable consumer the same message reaches stops with its own error.
    let consumer_nats = server.client().await.unwrap();
    ensure_event_stream(&async_nats::jetstream::new(consumer_nats.clone()), &base)
        .await
        .unwrap();
    let consumer = tokio::spawn(consume_json(
        consumer_nats,
        base,
        "noted",
        ConsumerConfig::new("hostile-lone-cr"),
        |_ctx, _payload| async { Ok(()) },
        CancellationToken::new(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw_publish_lone_carriage_return(&server, "corpus.hostile.v1.noted").await;
    let ended = tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .expect("the consumer kept running on a dead connection")
        .unwrap();
    let error = ended.expect_err("the consumer ended as if shut down");
    assert!(
        matches!(error, bus_services::runtime::EventError::ConsumerEnded { .. }),
        "{error:?}"
    );

    // Started again, the consumer would be given the same stored event and
    // stop again. Instead it moves it to the dead letters unread, deletes it
    // from the stream, and handles what follows.
    let watcher = server.client().await.unwrap();
    let mut dead_letters = watcher.subscribe("soa.dlq.>").await.unwrap();
    watcher.flush().await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let restarted = tokio::spawn(consume_json(
        server.client().await.unwrap(),
        base_document(),
        "noted",
        ConsumerConfig::new("hostile-lone-cr"),
        {
            let handled = Arc::clone(&handled);
            move |_ctx, _payload| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            }
        },
        stop.clone(),
    ));
    let letter = tokio::time::timeout(Duration::from_secs(20), dead_letters.next())
        .await
        .expect("the unreadable event never reached the dead letters")
        .unwrap();
    let reason = wire::header(letter.headers.as_ref(), "Soa-Dead-Letter-Reason").unwrap_or_default();
    assert!(reason.contains("lone carriage return"), "{reason}");
    assert_eq!(
        wire::header(letter.headers.as_ref(), "X-Hostile"),
        Some("a b"),
        "the dead letter keeps the header, made readable"
    );
    assert_eq!(letter.payload.as_ref(), br#"{"id":"note-1","text":"hello","count":1}"#);
    assert!(
        wire::header(letter.headers.as_ref(), "Soa-Dead-Letter-Sequence")
            .is_some_and(|text| text.parse::<u64>().is_ok()),
        "the dead letter names its sequence"
    );
    // Deleted from its stream (which held nothing else) once stored as a dead letter.
    let js = async_nats::jetstream::new(watcher.clone());
    let base = base_document();
    let stream_name = contracts::subjects::event_stream(&base.service, base.version.major());
    let mut stream = js.get_stream(stream_name).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.info().await.unwrap().state.messages > 0 {
        assert!(Instant::now() < deadline, "the unreadable event is still in its stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    watcher
        .publish("corpus.hostile.v1.noted", valid_note().into())
        .await
        .unwrap();
    watcher.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "the restarted consumer handled no valid event"
    );
    assert!(!restarted.is_finished(), "the restarted consumer stopped");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), restarted)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// `serve` replaces a connection that died under its services: after a
/// request whose header kills async-nats' connection task, the service
/// answers again on a new connection, without a supervisor.
#[tokio::test]
async fn serve_connects_again_when_a_header_kills_the_connection() {
    tests::harness::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let service = echo_service();
    let stop = CancellationToken::new();
    let served = {
        let (config, stop) = (server.connect_config(), stop.clone());
        tokio::spawn(async move { serve(&config, vec![service], stop).await })
    };
    let probe = server.client().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !echoes(&probe).await {
        assert!(Instant::now() < deadline, "the service did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    raw_publish_lone_carriage_return(&server, "corpus.hostile.v1.echo").await;
    // The connection is dead now; a new one comes after a short pause.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !echoes(&probe).await {
        assert!(!served.is_finished(), "serve stopped instead of connecting again");
        assert!(Instant::now() < deadline, "the service never answered again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
