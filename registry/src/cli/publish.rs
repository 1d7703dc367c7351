//! `soa publish SUBJECT PAYLOAD` and `soa request SUBJECT PAYLOAD`: a
//! message sent by hand, checked against the registered contract first.
//!
//! The subject is resolved through the registry (exactly one binding: an
//! event for `publish`, an operation for `request`), the contract version
//! the binding names is fetched with every contract its `soa://` references
//! reach, the message schema is compiled and the payload validated. An
//! invalid payload is never sent: every failing JSON pointer is printed and
//! the exit code is 1. A valid one goes out with the headers the runtime
//! sets (`Soa-Contract`, `Soa-Event`/`Soa-Operation`, `Nats-Msg-Id`,
//! `Soa-Correlation-Id`, `traceparent`): events through JetStream when a
//! stream captures the subject (plain NATS otherwise, said so), requests
//! through the runtime's own client.
//!
//! `--no-validate` skips the validation, and lets a subject no contract
//! declares (or a bus without a registry) be sent raw.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::client::RequestErrorKind;
use async_nats::jetstream::{self, context::GetStreamByNameErrorKind};
use bus_services::runtime::{CallError, CallOptions, Propagation, ServiceClient, TraceContext};
use bus_services::wire::{self, CorrelationId, Envelope};
use clap::Args;
use contracts::envelope::headers;
use contracts::registry_api::{BindingKind, GetRequest, ResolveRequest, SubjectBinding, ops};
use contracts::{
    ContractDocument, ErrorBody, ErrorDetail, MessageKey, SchemaSet, ServiceName, Subject, SubjectPattern,
    ValidationFailure, compile_contract,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, RegistryError, close, until_cancelled, write_json};
use super::resolve::kind_name;
use super::{Exit, NatsOptions, UsageError};

/// Arguments of `soa publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event's subject, such as `shop.inventory.v1.reserved`.
    #[arg(value_name = "SUBJECT")]
    pub subject: String,
    /// The payload: JSON text, or @FILE to read it from a file (@- for standard input).
    #[arg(value_name = "JSON|@FILE")]
    pub payload: String,
    /// Send without validating the payload; a subject no contract declares is sent raw.
    #[arg(long)]
    pub no_validate: bool,
    /// The flow the event belongs to (`Soa-Correlation-Id`), such as an order id; a fresh one by default.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// The message id (`Nats-Msg-Id`) JetStream de-duplicates on; a fresh one by default.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// Print what was sent and where it was stored as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The operation's subject, such as `shop.inventory.v1.reserve`.
    #[arg(value_name = "SUBJECT")]
    pub subject: String,
    /// The request: JSON text, or @FILE to read it from a file (@- for standard input).
    #[arg(value_name = "JSON|@FILE")]
    pub payload: String,
    /// Send without validating the request; a subject no contract declares is sent raw.
    #[arg(long)]
    pub no_validate: bool,
    /// The flow the request belongs to (`Soa-Correlation-Id`); a fresh one by default.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// How long to wait for the reply: `500ms`, `5s`, `1m`.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the reply (or the error) inside a JSON object with the contract and correlation id.
    #[arg(long)]
    pub json: bool,
}

/// Parses `500ms`, `5s`, `1.5s`, `2m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration; write 500ms, 5s, 1m or 1h");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if seconds <= 0.0 {
        return Err(format!("{text:?}: the duration must be more than zero"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Reads the payload argument: JSON text, `@FILE`, or `@-` for standard input.
fn read_payload(argument: &str) -> Result<Value, UsageError> {
    let (text, source) = match argument.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| UsageError(format!("could not read the payload from standard input: {error}")))?;
            (text, "standard input".to_owned())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| UsageError(format!("could not read the payload from {path}: {error}")))?;
            (text, path.to_owned())
        }
        None => (argument.to_owned(), "the payload argument".to_owned()),
    };
    serde_json::from_str(&text).map_err(|error| UsageError(format!("{source} is not valid JSON: {error}")))
}

/// The subject of a command line, without wildcards.
fn parse_subject(text: &str) -> Result<Subject, UsageError> {
    Subject::parse(text).map_err(|error| UsageError(format!("{error}; a message goes to one subject, no wildcards")))
}

/// The correlation id given, or a fresh one.
fn correlation_id(given: Option<&str>) -> Result<CorrelationId, UsageError> {
    match given {
        Some(text) => CorrelationId::parse(text).map_err(|error| UsageError(error.to_string())),
        None => CorrelationId::parse(&wire::new_message_id()).map_err(|error| UsageError(error.to_string())),
    }
}

/// What both `publish` and `request` send, read from their arguments.
struct Message {
    /// Where it goes.
    subject: Subject,
    /// The payload, parsed.
    payload: Value,
    /// The flow it belongs to (`Soa-Correlation-Id`).
    correlation: CorrelationId,
}

impl Message {
    /// Reads the subject, the payload (`JSON|@FILE`) and the correlation id
    /// (a fresh one unless given) of a command line.
    fn parse(subject: &str, payload: &str, given_correlation_id: Option<&str>) -> Result<Self, UsageError> {
        Ok(Self {
            subject: parse_subject(subject)?,
            payload: read_payload(payload)?,
            correlation: correlation_id(given_correlation_id)?,
        })
    }
}

/// A member of a registered contract that a subject belongs to.
struct Known {
    /// The subject's binding.
    binding: SubjectBinding,
    /// The contract version the binding names.
    document: ContractDocument,
    /// Its compiled schemas, unless validation is off.
    compiled: Option<contracts::CompiledContract>,
}

impl Known {
    /// Checks `value` against the schema of `key`; anything passes when
    /// validation is off (`--no-validate`), as the contract was not compiled.
    fn validate(&self, key: &MessageKey, value: &Value) -> Result<(), ValidationFailure> {
        match self.compiled.as_ref().and_then(|compiled| compiled.validators.get(key)) {
            Some(validator) => validator.validate(value),
            None => Ok(()),
        }
    }
}

/// Where a message goes: a member of a registered contract, or nowhere the registry knows.
enum Target {
    /// A registered operation or event.
    Known(Box<Known>),
    /// Sent as it is (`--no-validate`): no contract declares the subject,
    /// or no registry answered.
    Raw,
}

/// Connects to the registry, resolves `message`'s subject to a binding of
/// the `wanted` kind (or to a raw target, as `--no-validate` allows), and
/// hands the connection and the target to `send`; unless Ctrl-C comes
/// first. The connection is closed either way.
async fn send_to_target(
    nats: &NatsOptions,
    message: &Message,
    wanted: BindingKind,
    no_validate: bool,
    err: &mut dyn Write,
    shutdown: CancellationToken,
    send: impl AsyncFnOnce(&async_nats::Client, &Target, &mut dyn Write) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    let connection_name = match wanted {
        BindingKind::Event => "soa-publish",
        BindingKind::Operation => "soa-request",
    };
    let (registry, client) = RegistryClient::connect(nats, connection_name).await?;
    let result = until_cancelled(&shutdown, async {
        let target = resolve_target(&registry, &message.subject, wanted, no_validate, err).await?;
        send(&client, &target, err).await
    })
    .await;
    close(client).await;
    result
}

/// Resolves `subject` to one binding of the `wanted` kind and fetches and
/// compiles its contract.
async fn resolve_target(
    registry: &RegistryClient,
    subject: &Subject,
    wanted: BindingKind,
    no_validate: bool,
    err: &mut dyn Write,
) -> anyhow::Result<Target> {
    let pattern = SubjectPattern::parse(subject.as_str())?;
    let bindings = match registry
        .try_call::<ops::Resolve>(&ResolveRequest { subject: pattern })
        .await
    {
        Ok(resolved) => resolved.bindings,
        Err(error @ RegistryError::NoRegistry { .. }) if no_validate => {
            writeln!(err, "warning: {error}; sending without a contract (--no-validate)")?;
            return Ok(Target::Raw);
        }
        Err(error) => return Err(error.into_anyhow()),
    };
    let (verb, other_verb) = match wanted {
        BindingKind::Event => ("publish", "request"),
        BindingKind::Operation => ("request", "publish"),
    };
    let binding = match bindings.as_slice() {
        [] if no_validate => {
            writeln!(
                err,
                "warning: no registered contract declares {subject}; sending it raw, without contract headers (--no-validate)"
            )?;
            return Ok(Target::Raw);
        }
        [] => anyhow::bail!(
            "no registered contract declares the subject {subject}, so there is nothing to validate against; \
             `soa resolve '>'` lists the registered subjects, and --no-validate sends it anyway"
        ),
        [binding] if binding.kind == wanted => binding.clone(),
        [binding] => anyhow::bail!(
            "{subject} is the {} {} of {}, not {}; use `soa {other_verb}`",
            kind_name(binding.kind),
            binding.name,
            binding.contract,
            match wanted {
                BindingKind::Event => "an event",
                BindingKind::Operation => "an operation",
            }
        ),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|binding| format!("{} {} of {}", kind_name(binding.kind), binding.name, binding.contract))
                .collect();
            anyhow::bail!(
                "{subject} is declared by several contracts ({}); `soa {verb}` needs exactly one",
                names.join(", ")
            )
        }
    };
    let document = registry
        .call::<ops::Get>(&GetRequest {
            service: binding.contract.service.clone(),
            version: Some(binding.contract.version.clone()),
            major: None,
        })
        .await?
        .document;
    let compiled = if no_validate {
        None
    } else {
        let schemas = referenced_contracts(registry, &document).await?;
        Some(compile_contract(&document, &schemas).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "the registered contract {} does not compile, so nothing can be validated: {}",
                document.id(),
                problems.join("; ")
            )
        })?)
    };
    Ok(Target::Known(Box::new(Known {
        binding,
        document,
        compiled,
    })))
}

/// Every contract that `document`'s `soa://` references reach (the latest
/// of each major, as the registry resolves them), fetched from the registry.
async fn referenced_contracts(registry: &RegistryClient, document: &ContractDocument) -> anyhow::Result<SchemaSet> {
    let mut schemas = SchemaSet::default();
    let mut seen = HashSet::from([(document.service.clone(), document.version.major())]);
    let mut pending = vec![document.to_value()];
    while let Some(value) = pending.pop() {
        for (service, major) in soa_references(&value) {
            if !seen.insert((service.clone(), major)) {
                continue;
            }
            let request = GetRequest {
                service: service.clone(),
                version: None,
                major: Some(major),
            };
            let found = match registry.try_call::<ops::Get>(&request).await {
                Ok(found) => found,
                Err(error) if error.is_not_found() => anyhow::bail!(
                    "{} refers to soa://{service}@{major}, which the registry does not hold: {error}",
                    document.id()
                ),
                Err(error) => return Err(error.into_anyhow()),
            };
            schemas.add_contract(&found.document);
            pending.push(found.document.to_value());
        }
    }
    Ok(schemas)
}

/// The `service@major` of every `soa://` reference in `value`.
fn soa_references(value: &Value) -> Vec<(ServiceName, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    if let ("$ref" | "$dynamicRef", Value::String(target)) = (key.as_str(), child)
                        && let Some(reference) = contracts::schema::soa_reference_target(target)
                    {
                        found.push(reference);
                    }
                    stack.push(child);
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// Prints why the payload was not sent: every failing value with its pointer.
fn report_invalid(
    out: &mut dyn Write,
    err: &mut dyn Write,
    failure: &contracts::ValidationFailure,
    subject: &Subject,
    json: bool,
) -> anyhow::Result<Exit> {
    if json {
        write_json(
            out,
            &json!({
                "sent": false,
                "subject": subject.as_str(),
                "contract": failure.contract.to_string(),
                "message": failure.message.to_string(),
                "errors": failure.details,
            }),
        )?;
    }
    writeln!(
        err,
        "error: the payload does not match the {} of {}; nothing was sent:",
        failure.message, failure.contract
    )?;
    write_details(err, &failure.details)?;
    Ok(Exit::Failure)
}

/// One line per failing value: `  at /items/0/quantity: ...`.
fn write_details(err: &mut dyn Write, details: &[ErrorDetail]) -> std::io::Result<()> {
    for detail in details {
        writeln!(err, "  {detail}")?;
    }
    Ok(())
}

/// The headers of a message outside any contract: a message id, the flow and a new trace.
fn raw_headers(message_id: &str, correlation_id: &CorrelationId, trace: &TraceContext) -> HeaderMap {
    let mut map = HeaderMap::new();
    wire::insert_header(&mut map, headers::MESSAGE_ID, message_id);
    wire::insert_header(&mut map, headers::CORRELATION_ID, correlation_id.as_str());
    wire::insert_header(&mut map, headers::TRACEPARENT, &trace.traceparent());
    map
}

/// Runs `soa publish`.
pub(super) async fn run_publish(
    nats: &NatsOptions,
    args: &PublishArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let message = Message::parse(&args.subject, &args.payload, args.correlation_id.as_deref())?;
    let message_id = match args.message_id.as_deref() {
        Some(id) if id.trim().is_empty() || id.chars().any(char::is_control) => {
            return Err(UsageError(format!("--message-id {id:?} is empty or holds control characters")).into());
        }
        Some(id) => id.to_owned(),
        None => wire::new_message_id(),
    };
    send_to_target(
        nats,
        &message,
        BindingKind::Event,
        args.no_validate,
        err,
        shutdown,
        async |client, target, err| publish(client, target, &message, &message_id, args.json, out, err).await,
    )
    .await
}

/// Validates (unless told not to) and publishes one event.
async fn publish(
    client: &async_nats::Client,
    target: &Target,
    message: &Message,
    message_id: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let Message {
        subject,
        payload,
        correlation,
    } = message;
    let trace = TraceContext::new_root();
    let (map, what) = match target {
        Target::Known(known) => {
            let binding = &known.binding;
            if let Err(failure) = known.validate(&MessageKey::Event(binding.name.clone()), payload) {
                return report_invalid(out, err, &failure, subject, json);
            }
            let mut envelope = Envelope::event(binding.contract.clone(), binding.name.clone())
                .with_correlation_id(Some(correlation.clone()));
            message_id.clone_into(&mut envelope.message_id);
            let mut map = envelope.to_headers();
            wire::insert_header(&mut map, headers::TRACEPARENT, &trace.traceparent());
            (map, format!("event {} of {}", binding.name, binding.contract))
        }
        Target::Raw => (raw_headers(message_id, correlation, &trace), "message".to_owned()),
    };
    let body = serde_json::to_vec(payload)?;
    let (stored, summary) = match capturing_stream(client, subject).await {
        Ok(_) => {
            let js = jetstream::new(client.clone());
            let sent = js
                .publish_with_headers(subject.to_string(), map, body.into())
                .await
                .map_err(|error| anyhow::anyhow!("could not publish on {subject}: {error}"))?;
            let ack = sent
                .await
                .map_err(|error| anyhow::anyhow!("JetStream did not acknowledge the {what} on {subject}: {error}"))?;
            let mut line = format!(
                "Published the {what} on {subject}: stored in stream {} at sequence {}",
                ack.stream, ack.sequence
            );
            if ack.duplicate {
                line.push_str(" (a duplicate: the stream already held this message id, and kept the first)");
            }
            (
                json!({"stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate}),
                line,
            )
        }
        Err(why) => {
            client
                .publish_with_headers(subject.to_string(), map, body.into())
                .await
                .map_err(|error| anyhow::anyhow!("could not publish on {subject}: {error}"))?;
            client
                .flush()
                .await
                .map_err(|error| anyhow::anyhow!("could not send the {what} on {subject}: {error}"))?;
            (
                Value::Null,
                format!(
                    "Published the {what} on {subject} as a plain NATS message: {why}, so it was not stored \
                     (only subscribers listening now received it)"
                ),
            )
        }
    };
    if json {
        let contract = match target {
            Target::Known(known) => {
                json!({"contract": known.binding.contract.to_string(), "event": known.binding.name})
            }
            Target::Raw => json!({"contract": null, "event": null}),
        };
        write_json(
            out,
            &json!({
                "sent": true,
                "subject": subject.as_str(),
                "contract": contract["contract"],
                "event": contract["event"],
                "message_id": message_id,
                "correlation_id": correlation.as_str(),
                "traceparent": trace.traceparent(),
                "stored": stored,
            }),
        )?;
    } else {
        writeln!(out, "{summary}.")?;
        writeln!(
            out,
            "  message id {message_id}, correlation id {}, trace {}",
            correlation,
            trace.trace_id()
        )?;
    }
    Ok(Exit::Success)
}

/// The JetStream stream that captures `subject`, or why the message goes out as a plain NATS message.
async fn capturing_stream(client: &async_nats::Client, subject: &Subject) -> Result<String, String> {
    match jetstream::new(client.clone()).stream_by_subject(subject.as_str()).await {
        Ok(stream) => Ok(stream),
        Err(error) if matches!(error.kind(), GetStreamByNameErrorKind::NotFound) => {
            Err("no JetStream stream captures the subject".to_owned())
        }
        Err(error) => Err(format!("JetStream did not answer ({error})")),
    }
}

/// Runs `soa request`.
pub(super) async fn run_request(
    nats: &NatsOptions,
    args: &RequestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let message = Message::parse(&args.subject, &args.payload, args.correlation_id.as_deref())?;
    send_to_target(
        nats,
        &message,
        BindingKind::Operation,
        args.no_validate,
        err,
        shutdown,
        async |client, target, err| request(client, target, &message, args, out, err).await,
    )
    .await
}

/// Validates (unless told not to) and sends one request, and prints the reply.
async fn request(
    client: &async_nats::Client,
    target: &Target,
    message: &Message,
    args: &RequestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let Message {
        subject,
        payload,
        correlation,
    } = message;
    let body = serde_json::to_vec(payload)?;
    let trace = TraceContext::new_root();
    let (reply, contract, operation) = match target {
        Target::Known(known) => {
            let binding = &known.binding;
            if let Err(failure) = known.validate(&MessageKey::Request(binding.name.clone()), payload) {
                return report_invalid(out, err, &failure, subject, args.json);
            }
            // The runtime's own client sets the headers, as any service's call would.
            let propagation = Propagation {
                correlation_id: Some(correlation.clone()),
                trace: trace.clone(),
            };
            let caller = ServiceClient::new(client.clone(), known.document.clone())
                .with_options(CallOptions {
                    timeout: args.timeout,
                    max_attempts: 1,
                    ..CallOptions::default()
                })
                .in_flow(&propagation);
            let reply = caller.call_bytes(binding.name.as_str(), body).await;
            (
                reply,
                Some(binding.contract.to_string()),
                Some(binding.name.to_string()),
            )
        }
        Target::Raw => (
            raw_request(client, subject, body, correlation, &trace, args.timeout).await,
            None,
            None,
        ),
    };
    // Where the request went, for --json; the reply or the error joins it.
    let mut answer = json!({
        "subject": subject.as_str(),
        "contract": contract,
        "operation": operation,
        "correlation_id": correlation.as_str(),
    });
    match reply {
        Ok(bytes) => {
            let value = serde_json::from_slice::<Value>(&bytes);
            if let (Ok(value), Target::Known(known)) = (&value, target)
                && let Err(failure) = known.validate(&MessageKey::Response(known.binding.name.clone()), value)
            {
                writeln!(
                    err,
                    "warning: the reply does not match the {} of {}:",
                    failure.message, failure.contract
                )?;
                write_details(err, &failure.details)?;
            }
            if args.json {
                let reply = match value {
                    Ok(value) => value,
                    Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                };
                answer["reply"] = reply;
                write_json(out, &answer)?;
            } else {
                match value {
                    Ok(value) => write_json(out, &value)?,
                    Err(_) => writeln!(out, "{}", String::from_utf8_lossy(&bytes))?,
                }
            }
            Ok(Exit::Success)
        }
        Err(error) => {
            let body = error.body();
            if args.json {
                answer["error"] = json!(body);
                write_json(out, &answer)?;
            }
            write_error_reply(err, &error, &body)?;
            Ok(Exit::Failure)
        }
    }
}

/// Prints an error reply (or a call that got none): the code, the message,
/// then each detail's pointer.
fn write_error_reply(err: &mut dyn Write, error: &CallError, body: &ErrorBody) -> std::io::Result<()> {
    match error {
        CallError::Service { .. } => writeln!(err, "error: the service replied {}: {}", body.code, body.message)?,
        other => writeln!(err, "error: {other}")?,
    }
    write_details(err, &body.details)
}

/// Sends a request outside any contract and reads the reply or the error reply.
async fn raw_request(
    client: &async_nats::Client,
    subject: &Subject,
    body: Vec<u8>,
    correlation: &CorrelationId,
    trace: &TraceContext,
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let request = async_nats::Request::new()
        .payload(body.into())
        .headers(raw_headers(&wire::new_message_id(), correlation, trace))
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.to_string(), request)
        .await
        .map_err(|error| match error.kind() {
            RequestErrorKind::NoResponders => CallError::Unavailable {
                service: "(unregistered)".to_owned(),
                subject: subject.to_string(),
            },
            RequestErrorKind::TimedOut => CallError::Timeout {
                subject: subject.to_string(),
                timeout,
            },
            _ => CallError::Nats {
                subject: subject.to_string(),
                message: error.to_string(),
            },
        })?;
    match wire::decode_error(reply.headers.as_ref(), &reply.payload) {
        Some(body) => Err(CallError::Service {
            // The error reply's operation is unknown to a raw request; the subject's last token stands in.
            operation: contracts::MemberName::parse(subject.tokens().last().unwrap_or_default())
                .or_else(|_| contracts::MemberName::parse("request"))
                .map_err(|error| CallError::Codec(error.to_string()))?,
            body,
        }),
        None => Ok(reply.payload.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "s", "5 parsecs", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_are_json_text_or_files() {
        assert_eq!(read_payload(r#"{"a": 1}"#).unwrap(), json!({"a": 1}));
        let error = read_payload("{oops").unwrap_err();
        assert!(
            error.0.starts_with("the payload argument is not valid JSON: "),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("payload.json");
        std::fs::write(&file, "[1, 2]").unwrap();
        assert_eq!(read_payload(&format!("@{}", file.display())).unwrap(), json!([1, 2]));
        let missing = read_payload("@/nonexistent/payload.json").unwrap_err();
        assert!(
            missing
                .0
                .starts_with("could not read the payload from /nonexistent/payload.json")
        );
    }

    #[test]
    fn soa_references_are_found_anywhere_in_a_document() {
        let value = json!({
            "operations": {"pay": {"request": {"$ref": "soa://payments@1#/$defs/Money"}}},
            "$defs": {"A": {"items": [{"$ref": "soa://orders@2#/$defs/Id"}, {"$ref": "#/$defs/B"}]}}
        });
        let mut found: Vec<String> = soa_references(&value)
            .into_iter()
            .map(|(service, major)| format!("{service}@{major}"))
            .collect();
        found.sort();
        assert_eq!(found, ["orders@2", "payments@1"]);
    }
}
