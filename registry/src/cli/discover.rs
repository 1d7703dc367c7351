//! `soa discover`: a NATS micro (ADR-32) discovery sweep of the bus.
//!
//! It asks `$SRV.INFO` (or `$SRV.INFO.<name>`) with a reply inbox, gathers
//! the answers until none came for a quiet period or the timeout passed, asks
//! `$SRV.STATS` the same way, and prints one line per instance: who it is,
//! the contract it serves and each endpoint with its counters. Any ADR-32
//! service answers, not only soabus ones, so replies are read leniently and
//! the JSON output passes them on as they came.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use async_nats::{Client, Message, StatusCode};
use bus_services::connection;
use clap::{Args, ValueEnum};
use contracts::subjects::{self, DiscoveryVerb};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::table::write_table;
use super::{Exit, NatsOptions, UsageError};

/// Arguments of `soa discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Only instances of this service (its NATS micro name, such as `inventory`).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// How to print what answered.
    #[arg(long, value_enum, default_value_t = DiscoverFormat::Human, value_name = "FORMAT")]
    pub format: DiscoverFormat,
    /// The longest each of the two sweeps ($SRV.INFO, then $SRV.STATS) waits, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// A sweep ends once no reply came for this long, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub quiet_ms: u64,
}

/// The output formats of `soa discover`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DiscoverFormat {
    /// One aligned line per instance, then a summary.
    #[default]
    Human,
    /// The raw INFO and STATS replies, grouped by service and instance.
    Json,
}

/// A service name as ADR-32 allows it (letters, digits, `-` and `_`), so it
/// is exactly one subject token: `a.b` or `*` would ask other services.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MicroServiceName(String);

impl MicroServiceName {
    fn parse(input: &str) -> Result<Self, UsageError> {
        let valid = !input.is_empty() && input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(UsageError(format!(
                "{input:?} is not a NATS micro service name: use letters, digits, '-' and '_' only"
            )))
        }
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long one scatter-gather collects replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// The sweep ends once no reply came for this long (counted from the
    /// request, then from each reply).
    pub(super) quiet: Duration,
    /// The sweep ends after this long whatever comes.
    pub(super) timeout: Duration,
}

/// What one scatter-gather collected.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    /// Every reply, in arrival order.
    pub(super) replies: Vec<Message>,
    /// The server said at once that nothing subscribes to the subject.
    pub(super) nobody_listens: bool,
}

/// Publishes an empty request on `subject` with a fresh inbox as its reply
/// subject, and collects what comes back within `window`, or until `shutdown`.
pub(super) async fn gather(
    client: &Client,
    subject: &str,
    window: Window,
    shutdown: &CancellationToken,
) -> anyhow::Result<Gathered> {
    let inbox = client.new_inbox();
    // Subscribed before publishing, on the same connection: the server sees
    // the subscription first, so no early reply is lost.
    let mut replies = client.subscribe(inbox.clone()).await?;
    client.publish_with_reply(subject.to_owned(), inbox, "".into()).await?;
    client.flush().await?;
    let deadline = Instant::now() + window.timeout;
    let mut gathered = Gathered::default();
    loop {
        let quiet_until = (Instant::now() + window.quiet).min(deadline);
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = tokio::time::timeout_at(quiet_until, replies.next()) => next,
        };
        match next {
            Ok(Some(message)) if message.status == Some(StatusCode::NO_RESPONDERS) => {
                gathered.nobody_listens = true;
                break;
            }
            Ok(Some(message)) => gathered.replies.push(message),
            Ok(None) | Err(_) => break,
        }
    }
    if let Err(error) = replies.unsubscribe().await {
        tracing::debug!(error = %error, "Could not unsubscribe the reply inbox; the connection is closing anyway.");
    }
    Ok(gathered)
}

/// The fields every ADR-32 reply starts with.
#[derive(Debug, Deserialize)]
struct IdentityView {
    name: String,
    id: String,
}

/// What the human output reads from an INFO or STATS reply. Lenient on
/// purpose: other implementations send `null` metadata or leave out fields.
#[derive(Debug, Default, Deserialize)]
struct ReplyView {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    endpoints: Option<Vec<EndpointView>>,
}

/// One endpoint of an INFO or STATS reply.
#[derive(Debug, Deserialize)]
struct EndpointView {
    name: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    num_requests: Option<u64>,
    #[serde(default)]
    num_errors: Option<u64>,
}

/// One instance that answered, with its raw replies.
#[derive(Debug, Default)]
struct Instance {
    info: Option<Value>,
    stats: Option<Value>,
}

/// A reply that is not an ADR-32 reply, kept to say so.
#[derive(Debug)]
struct Unreadable {
    subject: String,
    reason: String,
    payload: String,
}

/// Everything the two sweeps found: instances by service name, then id.
#[derive(Debug, Default)]
struct Discovery {
    services: BTreeMap<String, BTreeMap<String, Instance>>,
    unreadable: Vec<Unreadable>,
}

impl Discovery {
    /// Files the replies of one sweep under their instances.
    fn add(&mut self, subject: &str, verb: DiscoveryVerb, replies: &[Message]) {
        for message in replies {
            let parsed = serde_json::from_slice::<Value>(&message.payload)
                .map_err(|error| format!("not JSON: {error}"))
                .and_then(|value| {
                    // Only the two identity fields are required; the view must read too,
                    // so a reply the human output cannot show is reported, not dropped silently.
                    let identity = IdentityView::deserialize(&value).map_err(|error| error.to_string())?;
                    ReplyView::deserialize(&value).map_err(|error| error.to_string())?;
                    Ok((identity, value))
                });
            match parsed {
                Ok((identity, value)) => {
                    let instance = self
                        .services
                        .entry(identity.name)
                        .or_default()
                        .entry(identity.id)
                        .or_default();
                    match verb {
                        DiscoveryVerb::Stats => instance.stats = Some(value),
                        DiscoveryVerb::Info | DiscoveryVerb::Ping => instance.info = Some(value),
                    }
                }
                Err(reason) => self.unreadable.push(Unreadable {
                    subject: subject.to_owned(),
                    reason,
                    payload: String::from_utf8_lossy(&message.payload).into_owned(),
                }),
            }
        }
    }

    fn instance_count(&self) -> usize {
        self.services.values().map(BTreeMap::len).sum()
    }

    /// The JSON output: the raw replies grouped by service and instance.
    fn to_json(&self, info_subject: &str, stats_subject: &str) -> Value {
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|(name, instances)| {
                let instances: Vec<Value> = instances
                    .iter()
                    .map(|(id, instance)| json!({"id": id, "info": instance.info, "stats": instance.stats}))
                    .collect();
                json!({"name": name, "instances": instances})
            })
            .collect();
        let unreadable: Vec<Value> = self
            .unreadable
            .iter()
            .map(|reply| json!({"subject": reply.subject, "reason": reply.reason, "payload": reply.payload}))
            .collect();
        json!({
            "subjects": {"info": info_subject, "stats": stats_subject},
            "services": services,
            "unreadable": unreadable,
        })
    }

    /// The human output: a header and one row per instance.
    fn rows(&self) -> Vec<[String; 5]> {
        let mut rows = vec![[
            "SERVICE".to_owned(),
            "VERSION".to_owned(),
            "INSTANCE".to_owned(),
            "CONTRACT".to_owned(),
            "ENDPOINTS".to_owned(),
        ]];
        for (name, instances) in &self.services {
            for (id, instance) in instances {
                let info = view(instance.info.as_ref());
                let stats = view(instance.stats.as_ref());
                let identity = if instance.info.is_some() { &info } else { &stats };
                let version = identity.version.clone().unwrap_or_else(|| "-".to_owned());
                let contract = identity
                    .metadata
                    .as_ref()
                    .and_then(|metadata| metadata.get("soa.contract"))
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned());
                rows.push([
                    name.clone(),
                    version,
                    id.clone(),
                    contract,
                    endpoints(&info, &stats, instance.stats.is_some()),
                ]);
            }
        }
        rows
    }
}

/// The view of a reply that [`Discovery::add`] already read once.
fn view(reply: Option<&Value>) -> ReplyView {
    reply
        .and_then(|value| ReplyView::deserialize(value).ok())
        .unwrap_or_default()
}

/// `name (subject) N requests, M errors` for each endpoint, the subjects from
/// INFO and the counters from STATS (or the STATS endpoints alone when the
/// instance did not answer INFO).
fn endpoints(info: &ReplyView, stats: &ReplyView, has_stats: bool) -> String {
    let counted = stats.endpoints.as_deref().unwrap_or_default();
    let listed = info
        .endpoints
        .as_deref()
        .filter(|listed| !listed.is_empty())
        .unwrap_or(counted);
    if listed.is_empty() {
        return "(none)".to_owned();
    }
    listed
        .iter()
        .map(|endpoint| {
            let subject = endpoint.subject.as_deref().unwrap_or("?");
            let counters = counted.iter().find(|counted| counted.name == endpoint.name);
            let counts = match counters.and_then(|c| Some((c.num_requests?, c.num_errors.unwrap_or(0)))) {
                Some((requests, errors)) => format!(
                    "{requests} {}, {errors} {}",
                    plural(requests, "request", "requests"),
                    plural(errors, "error", "errors")
                ),
                None if has_stats => "no counters".to_owned(),
                None => "no stats".to_owned(),
            };
            format!("{} ({subject}) {counts}", endpoint.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn plural<'a>(count: u64, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// Runs `soa discover`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &DiscoverArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let service = args.service.as_deref().map(MicroServiceName::parse).transpose()?;
    let window = Window {
        quiet: Duration::from_millis(args.quiet_ms),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let name = service.as_ref().map(MicroServiceName::as_str);
    let info_subject = subjects::discovery(DiscoveryVerb::Info, name, None);
    let stats_subject = subjects::discovery(DiscoveryVerb::Stats, name, None);

    let client = connection::connect(&nats.connect_config("soa-discover"))
        .await
        .map_err(|error| {
            anyhow::Error::new(error).context(UsageError(
                "cannot discover services without a NATS connection".to_owned(),
            ))
        })?;
    let swept = async {
        let info = gather(&client, &info_subject, window, &shutdown).await?;
        let stats = if shutdown.is_cancelled() {
            Gathered::default()
        } else {
            gather(&client, &stats_subject, window, &shutdown).await?
        };
        anyhow::Ok((info, stats))
    }
    .await;
    if let Err(error) = client.drain().await {
        tracing::debug!(error = %error, "Could not drain the connection; it closes anyway.");
    }
    let (info, stats) = swept.map_err(|error| {
        error.context(UsageError(
            "the NATS connection failed during the discovery sweep".to_owned(),
        ))
    })?;

    let mut discovery = Discovery::default();
    discovery.add(&info_subject, DiscoveryVerb::Info, &info.replies);
    discovery.add(&stats_subject, DiscoveryVerb::Stats, &stats.replies);
    for reply in &discovery.unreadable {
        writeln!(
            err,
            "warning: skipped a reply on {} that is not an ADR-32 reply ({}): {}",
            reply.subject, reply.reason, reply.payload
        )?;
    }

    let instances = discovery.instance_count();
    let nobody = if instances == 0 {
        let who = name.map_or_else(|| "No service".to_owned(), |name| format!("No instance of {name}"));
        let why = if info.nobody_listens {
            "nothing on that server subscribes to it".to_owned()
        } else if shutdown.is_cancelled() {
            "interrupted before any reply came".to_owned()
        } else {
            format!("no reply came within {} ms", args.timeout_ms.min(args.quiet_ms))
        };
        Some(format!("{who} answered {info_subject} at {}: {why}.", nats.nats_url))
    } else {
        None
    };
    match args.format {
        DiscoverFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &discovery.to_json(&info_subject, &stats_subject))?;
            writeln!(out)?;
            if let Some(nobody) = &nobody {
                writeln!(err, "{nobody}")?;
            }
        }
        DiscoverFormat::Human => match &nobody {
            Some(nobody) => writeln!(out, "{nobody}")?,
            None => {
                write_table(out, 0, &discovery.rows(), &[false; 5])?;
                let all = || discovery.services.values().flat_map(BTreeMap::values);
                let answered_info = all().filter(|instance| instance.info.is_some()).count();
                let answered_stats = all().filter(|instance| instance.stats.is_some()).count();
                let services = discovery.services.len();
                writeln!(
                    out,
                    "\n{answered_info} {} of {services} {} answered {info_subject}; {answered_stats} answered {stats_subject}.",
                    plural(count(answered_info), "instance", "instances"),
                    plural(count(services), "service", "services"),
                )?;
            }
        },
    }
    Ok(if nobody.is_some() { Exit::Failure } else { Exit::Success })
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_one_subject_token() {
        assert_eq!(MicroServiceName::parse("inventory").unwrap().as_str(), "inventory");
        assert!(MicroServiceName::parse("Order_View-2").is_ok());
        for bad in ["", "a.b", "*", ">", "two words", "orders\n"] {
            assert!(MicroServiceName::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn message(subject: &str, payload: &str) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: payload.to_owned().into(),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn replies_are_filed_by_instance_and_shown_from_info_and_stats() {
        let mut discovery = Discovery::default();
        let info = json!({
            "type": "io.nats.micro.v1.info_response", "name": "inventory", "id": "inv-a", "version": "1.0.0",
            "metadata": {"soa.contract": "inventory@1.0.0"}, "description": "Stock",
            "endpoints": [
                {"name": "reserve", "subject": "shop.inventory.v1.reserve", "queue_group": "inventory"},
                {"name": "stock", "subject": "shop.inventory.v1.stock", "queue_group": "inventory"}
            ]
        });
        let stats = json!({
            "type": "io.nats.micro.v1.stats_response", "name": "inventory", "id": "inv-a", "version": "1.0.0",
            "endpoints": [
                {"name": "reserve", "subject": "shop.inventory.v1.reserve", "num_requests": 3, "num_errors": 1},
                {"name": "stock", "subject": "shop.inventory.v1.stock", "num_requests": 1, "num_errors": 0}
            ]
        });
        // Another implementation: null metadata, no stats reply.
        let other = json!({"name": "Echo", "id": "e1", "version": "0.1.0", "metadata": null, "endpoints": null});
        discovery.add(
            "$SRV.INFO",
            DiscoveryVerb::Info,
            &[
                message("_INBOX.1", &info.to_string()),
                message("_INBOX.1", &other.to_string()),
                message("_INBOX.1", "not json"),
                message("_INBOX.1", r#"{"name": "nameless-id"}"#),
            ],
        );
        discovery.add(
            "$SRV.STATS",
            DiscoveryVerb::Stats,
            &[message("_INBOX.2", &stats.to_string())],
        );
        assert_eq!(discovery.instance_count(), 2);
        assert_eq!(discovery.unreadable.len(), 2);
        let rows = discovery.rows();
        assert_eq!(rows[1][0], "Echo");
        assert_eq!(rows[1][3], "-");
        assert_eq!(rows[1][4], "(none)");
        assert_eq!(
            rows[2],
            [
                "inventory",
                "1.0.0",
                "inv-a",
                "inventory@1.0.0",
                "reserve (shop.inventory.v1.reserve) 3 requests, 1 error; \
                 stock (shop.inventory.v1.stock) 1 request, 0 errors"
            ]
            .map(str::to_owned)
        );
        let json = discovery.to_json("$SRV.INFO", "$SRV.STATS");
        assert_eq!(json["services"][1]["name"], "inventory");
        assert_eq!(json["services"][1]["instances"][0]["info"], info);
        assert_eq!(json["services"][1]["instances"][0]["stats"], stats);
        assert_eq!(json["services"][0]["instances"][0]["stats"], Value::Null);
        assert_eq!(json["unreadable"][0]["payload"], "not json");
    }
}
