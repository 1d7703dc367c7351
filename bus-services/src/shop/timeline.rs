//! What happened to one order, read back from where the shop keeps it: the
//! orders service's record (which names an orchestrated order's workflow
//! instance) and, for a choreographed order, the services' event streams,
//! scanned for the messages that carry the order's correlation id.
//!
//! The scan is the price of choreography: nobody holds the whole flow, so
//! every message of every shop stream is read to find the few of one order.
//! An orchestrated order's history is one read of its instance instead.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use contracts::envelope::headers;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::orders::OrderRecord;
use super::state::{Bucket, ORDERS_BUCKET, StoreError, is_order_id};

/// How long the scan waits for the next message of a stream before it
/// takes what came as all there is (a message deleted after the stream's
/// last sequence was read never comes).
const NEXT_MESSAGE_WAIT: Duration = Duration::from_secs(5);

/// Why an order's timeline could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The orders service's bucket could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A shop contract does not build, so its stream is unknown.
    #[error("the shop's contracts do not build: {0}")]
    Contract(#[from] contracts::NameError),
    /// An event stream could not be read.
    #[error("JetStream stream {stream}: {doing}: {message}; is JetStream enabled on the server?")]
    Stream {
        /// The stream.
        stream: String,
        /// What was being done.
        doing: String,
        /// What JetStream reported.
        message: String,
    },
}

/// What the orders service stored of one order beyond what `get` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredOrder {
    /// When it was placed, ms since the Unix epoch.
    pub placed_at_ms: u64,
    /// When it was completed or cancelled.
    pub finished_at_ms: Option<u64>,
    /// The fulfilment workflow instance, when orchestrated and started.
    pub instance: Option<String>,
}

/// Reads the orders service's record of `order_id` (KV bucket
/// [`ORDERS_BUCKET`]); `None` when the bucket or the order does not exist,
/// or `order_id` could be no order's id.
pub async fn stored_order(nats: &async_nats::Client, order_id: &str) -> Result<Option<StoredOrder>, TimelineError> {
    if !is_order_id(order_id) {
        return Ok(None);
    }
    let js = jetstream::new(nats.clone());
    let Some(bucket) = Bucket::existing(&js, ORDERS_BUCKET).await else {
        return Ok(None);
    };
    let record: Option<OrderRecord> = bucket.get(order_id).await?;
    Ok(record.map(|record| StoredOrder {
        placed_at_ms: record.placed_at_ms,
        finished_at_ms: record.finished_at_ms,
        instance: record.instance,
    }))
}

/// One shop service's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventStream {
    /// The service that publishes to it.
    pub service: String,
    /// The stream's name, `SOA_EVENTS_<SERVICE>_V<major>`.
    pub stream: String,
}

/// The event streams of the shop's services, in the order an order meets them.
pub fn event_streams() -> Result<Vec<EventStream>, TimelineError> {
    Ok(contracts::shop::contracts()?
        .into_iter()
        .map(|document| EventStream {
            stream: contracts::subjects::event_stream(&document.service, document.version.major()),
            service: document.service.as_str().to_owned(),
        })
        .collect())
}

/// How much of one stream a scan read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamScan {
    /// The stream and its service.
    #[serde(flatten)]
    pub stream: EventStream,
    /// False when the stream does not exist (its service never started).
    pub exists: bool,
    /// Its last sequence when the scan began; the scan stopped there.
    pub last_sequence: u64,
    /// Messages read from it.
    pub messages_read: u64,
}

/// One event of an order's flow, as stored in its stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowEvent {
    /// The service whose stream holds it.
    pub service: String,
    /// The stream.
    pub stream: String,
    /// Its sequence in the stream.
    pub sequence: u64,
    /// Its subject, `shop.<service>.v<major>.<event>`.
    pub subject: String,
    /// The producer's contract (`Soa-Contract`), when the header is there.
    pub contract: Option<String>,
    /// The event's name (`Soa-Event`), or the subject's last token.
    pub event: String,
    /// When the server stored it, microseconds since the Unix epoch.
    pub published_at_us: u64,
    /// Its payload (a JSON string of the text when it is not JSON).
    pub payload: Value,
}

/// What a scan of the shop's streams found for one correlation id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventScan {
    /// Every stream asked, with what was read from it.
    pub streams: Vec<StreamScan>,
    /// The matching events, oldest first.
    pub events: Vec<FlowEvent>,
}

impl EventScan {
    /// Messages read, all streams together.
    pub fn messages_read(&self) -> u64 {
        self.streams.iter().map(|stream| stream.messages_read).sum()
    }

    /// Streams that exist and were read.
    pub fn streams_read(&self) -> usize {
        self.streams.iter().filter(|stream| stream.exists).count()
    }
}

/// Scans every shop event stream, from its first message to its last
/// sequence at the time of the call, for the messages whose
/// `Soa-Correlation-Id` is `correlation_id`, and returns them sorted by the
/// time the server stored them.
pub async fn scan_events(nats: &async_nats::Client, correlation_id: &str) -> Result<EventScan, TimelineError> {
    let js = jetstream::new(nats.clone());
    let mut scan = EventScan {
        streams: Vec::new(),
        events: Vec::new(),
    };
    for stream in event_streams()? {
        let read = scan_stream(&js, &stream, correlation_id, &mut scan.events).await?;
        scan.streams.push(read);
    }
    scan.events.sort_by(|a, b| {
        a.published_at_us
            .cmp(&b.published_at_us)
            .then_with(|| a.stream.cmp(&b.stream))
            .then_with(|| a.sequence.cmp(&b.sequence))
    });
    Ok(scan)
}

/// Reads one stream with an ordered consumer (ephemeral, in memory, no
/// acks), adding the matching messages to `found`.
async fn scan_stream(
    js: &jetstream::Context,
    stream: &EventStream,
    correlation_id: &str,
    found: &mut Vec<FlowEvent>,
) -> Result<StreamScan, TimelineError> {
    let fail = |doing: &str, error: &dyn std::fmt::Display| TimelineError::Stream {
        stream: stream.stream.clone(),
        doing: doing.to_owned(),
        message: error.to_string(),
    };
    let mut scan = StreamScan {
        stream: stream.clone(),
        exists: false,
        last_sequence: 0,
        messages_read: 0,
    };
    let mut handle = match js.get_stream(&stream.stream).await {
        Ok(handle) => handle,
        Err(error) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(inner) = error.kind()
                && inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            {
                return Ok(scan);
            }
            return Err(fail("looking it up", &error));
        }
    };
    scan.exists = true;
    let state = handle
        .info()
        .await
        .map_err(|error| fail("reading its state", &error))?
        .state
        .clone();
    scan.last_sequence = state.last_sequence;
    if state.messages == 0 {
        return Ok(scan);
    }
    let consumer = handle
        .create_consumer(OrderedConfig {
            description: Some("soa order timeline: a scan for one correlation id".to_owned()),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|error| fail("creating an ordered consumer", &error))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| fail("reading its messages", &error))?;
    loop {
        let message = match tokio::time::timeout(NEXT_MESSAGE_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => return Err(fail("reading its messages", &error)),
            // Messages deleted after the state was read never come: what came is all there is.
            Ok(None) | Err(_) => break,
        };
        let info = message
            .info()
            .map_err(|error| fail("reading a message's metadata", &error))?;
        let (sequence, published) = (info.stream_sequence, info.published);
        scan.messages_read += 1;
        let matches = message
            .headers
            .as_ref()
            .and_then(|map| map.get(headers::CORRELATION_ID))
            .is_some_and(|value| value.as_str() == correlation_id);
        if matches {
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|map| map.get(name))
                    .map(|value| value.as_str().to_owned())
            };
            let subject = message.subject.to_string();
            let event =
                header(headers::EVENT).unwrap_or_else(|| subject.rsplit('.').next().unwrap_or_default().to_owned());
            let payload = serde_json::from_slice(&message.payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
            let micros = published.unix_timestamp_nanos() / 1_000;
            found.push(FlowEvent {
                service: stream.service.clone(),
                stream: stream.stream.clone(),
                sequence,
                contract: header(headers::CONTRACT),
                event,
                subject,
                published_at_us: u64::try_from(micros).unwrap_or(0),
                payload,
            });
        }
        if sequence >= state.last_sequence {
            break;
        }
    }
    Ok(scan)
}

/// `at_ms` (ms since the Unix epoch) as an RFC 3339 UTC time with
/// milliseconds: `2025-01-31T12:34:56.789Z`.
pub fn utc_time(at_ms: u64) -> String {
    let nanos = i128::from(at_ms).saturating_mul(1_000_000);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ),
        // Beyond the year 9999: no clock reads that.
        Err(_) => format!("{at_ms} ms since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_time(1_738_326_896_789), "2025-01-31T12:34:56.789Z");
    }

    #[test]
    fn every_shop_service_has_its_stream() {
        let streams = event_streams().unwrap();
        let names: Vec<&str> = streams.iter().map(|stream| stream.stream.as_str()).collect();
        assert_eq!(
            names,
            [
                "SOA_EVENTS_ORDERS_V1",
                "SOA_EVENTS_INVENTORY_V1",
                "SOA_EVENTS_PAYMENTS_V1",
                "SOA_EVENTS_SHIPPING_V1",
                "SOA_EVENTS_NOTIFICATIONS_V1"
            ]
        );
    }
}
