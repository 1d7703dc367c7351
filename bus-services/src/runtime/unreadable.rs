//! Stored events whose headers async-nats cannot read, set aside before a
//! durable consumer starts.
//!
//! async-nats 0.51 panics in its connection task on a header value holding a
//! lone carriage return (nats-io/nats.rs#1612) and drops the connection on a
//! header block it cannot parse; nats-server stores and forwards such
//! headers from any client allowed to publish. Once one is stored, every
//! consumer that reads it loses its connection, and after a restart it is
//! delivered again: the consumer would stop for good. So before a consumer
//! takes deliveries, the messages it was given and has not acked are read
//! through the JetStream API (JSON, the headers base64-encoded, which no
//! client library parses) and any with unreadable headers goes to the
//! dead-letter stream and is deleted from its own.

use async_nats::jetstream::{self, consumer, response::Response};
use async_nats::{HeaderMap, HeaderName, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::events::{EventError, Origin, jetstream_error, store_dead_letter};
use crate::wire;

/// The most unacked messages looked at before a consumer starts (a
/// consumer's unacked window is bounded by its ack-pending limit).
const MAX_LOOKED_AT: usize = 4_096;

/// The JetStream error code of "no message found".
const NO_MESSAGE: usize = 404;

/// `STREAM.MSG.GET`: the next message on `next_by_subj` from sequence `seq`.
#[derive(Serialize)]
struct NextRequest<'a> {
    seq: u64,
    next_by_subj: &'a str,
}

/// A `STREAM.MSG.GET` reply.
#[derive(Deserialize)]
struct Stored {
    message: StoredMessage,
}

/// A stored message as the JSON API returns it: nothing parsed yet.
#[derive(Deserialize)]
struct StoredMessage {
    subject: String,
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: String,
}

/// Where a consumer's unacked messages are: its stream, filter and name.
pub(crate) struct Window<'a> {
    /// The stream the consumer reads.
    pub stream: &'a str,
    /// The consumer's filter subject (`>` for all).
    pub filter: &'a str,
    /// The durable consumer.
    pub durable: &'a str,
}

/// [`set_aside`], saying what it moved; a failure is logged and the consumer
/// starts anyway (the look is a safety net, not a condition to start).
pub(crate) async fn set_aside_or_warn(js: &jetstream::Context, window: &Window<'_>, info: &consumer::Info) {
    match set_aside(js, window, info).await {
        Ok(0) => {}
        Ok(moved) => tracing::warn!(
            durable = window.durable,
            moved,
            "Moved events async-nats cannot read to the dead letters before consuming."
        ),
        Err(error) => tracing::warn!(
            durable = window.durable,
            error = %error,
            "Could not look for events async-nats cannot read among the unacked ones; consuming anyway. \
             Grant the consumer's user $JS.API.STREAM.MSG.GET and .DELETE on the stream (`soa contract permissions`)."
        ),
    }
}

/// Moves the messages `info`'s consumer was given and has not acked whose
/// headers async-nats cannot read to the dead-letter stream, deleting them
/// from `window.stream`. Returns how many it moved.
async fn set_aside(js: &jetstream::Context, window: &Window<'_>, info: &consumer::Info) -> Result<usize, EventError> {
    let last = info.delivered.stream_sequence;
    let mut next = info.ack_floor.stream_sequence.saturating_add(1);
    let mut moved = 0;
    for _ in 0..MAX_LOOKED_AT {
        if next > last {
            break;
        }
        let request = NextRequest {
            seq: next,
            next_by_subj: window.filter,
        };
        let response: Response<Stored> = js
            .request(format!("STREAM.MSG.GET.{}", window.stream), &request)
            .await
            .map_err(jetstream_error)?;
        let stored = match response {
            Response::Ok(stored) => stored.message,
            Response::Err { error } if error.code() == NO_MESSAGE => break,
            Response::Err { error } => return Err(jetstream_error(error)),
        };
        if stored.seq > last {
            break;
        }
        next = stored.seq.saturating_add(1);
        let block = match stored.hdrs.as_deref().map(|text| STANDARD.decode(text)) {
            None => continue,
            Some(Ok(block)) => block,
            Some(Err(error)) => {
                return Err(EventError::JetStream(format!(
                    "message {} of {} came with headers that are not base64: {error}",
                    stored.seq, window.stream
                )));
            }
        };
        let Some(problem) = unreadable(&block) else {
            continue;
        };
        move_to_dead_letters(js, window, &stored, &block, problem).await?;
        moved += 1;
    }
    Ok(moved)
}

/// Stores `stored` as a dead letter of `window`'s consumer, its headers made
/// readable, then deletes it from its stream.
async fn move_to_dead_letters(
    js: &jetstream::Context,
    window: &Window<'_>,
    stored: &StoredMessage,
    block: &[u8],
    problem: &str,
) -> Result<(), EventError> {
    let payload = STANDARD.decode(&stored.data).map_err(|error| {
        EventError::JetStream(format!(
            "message {} of {} came with a body that is not base64: {error}",
            stored.seq, window.stream
        ))
    })?;
    let reason = format!(
        "async-nats cannot read this event's headers ({problem}); it was set aside unread before \
         the consumer started, and deleted from {}",
        window.stream
    );
    tracing::error!(
        stream = window.stream,
        sequence = stored.seq,
        consumer = window.durable,
        problem,
        "An event's headers would stop every consumer that reads it; moving it to the dead letters."
    );
    let origin = origin(window, stored, &reason);
    store_dead_letter(js, Some(&readable_headers(block)), payload.into(), &origin).await?;
    let stream = js.get_stream(window.stream).await.map_err(jetstream_error)?;
    stream.delete_message(stored.seq).await.map_err(|error| {
        EventError::JetStream(format!(
            "message {} of {} is stored as a dead letter but could not be deleted from its stream \
             ({error}); delete it by hand (`nats stream rmm {} {}`) or every consumer reading it stops",
            stored.seq, window.stream, window.stream, stored.seq
        ))
    })?;
    Ok(())
}

/// Where the dead letter of `stored` comes from. Its id is the same each
/// time: a restart that set it aside before but could not delete it stores
/// no second dead letter.
fn origin<'a>(window: &Window<'a>, stored: &'a StoredMessage, reason: &'a str) -> Origin<'a> {
    Origin {
        stream: window.stream,
        consumer: window.durable,
        subject: &stored.subject,
        reason,
        deliveries: None,
        sequence: Some(stored.seq),
        message_id: Some(format!("unreadable-{}-{}", window.stream, stored.seq)),
    }
}

/// Why async-nats 0.51 cannot read header block `block` when it delivers
/// the message, or `None` when it can. Mirrors its parser: UTF-8, a
/// `NATS/1.0` line with an optional status, then `name: value` lines whose
/// names are valid and whose values (continuation lines joined, ends
/// trimmed) hold no carriage return or line feed.
fn unreadable(block: &[u8]) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(block) else {
        return Some("the header block is not UTF-8");
    };
    let mut lines = text.lines().peekable();
    let Some(version) = lines.next().and_then(|line| line.strip_prefix("NATS/1.0")) else {
        return Some("the header block does not begin with NATS/1.0");
    };
    let version = version.trim();
    let status = version.split_once(' ').map_or(version, |(status, _)| status.trim());
    if !status.is_empty() && status.parse::<StatusCode>().is_err() {
        return Some("the header block's status is not a status code");
    }
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Some("a header line has no colon");
        };
        if name.parse::<HeaderName>().is_err() {
            return Some("a header name holds a character headers may not");
        }
        let mut value = value.trim_start().to_owned();
        while let Some(more) = lines.next_if(|more| more.starts_with(char::is_whitespace)) {
            value.push_str(more);
        }
        if value.trim_end().contains(['\r', '\n']) {
            return Some("a header value holds a lone carriage return");
        }
    }
    None
}

/// The headers of `block` that can be read, control characters in values
/// made spaces; lines that are not `name: value` with a valid name are left
/// out.
fn readable_headers(block: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    let text = String::from_utf8_lossy(block);
    for line in text.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let Ok(name) = name.parse::<HeaderName>() {
            wire::append_header(&mut map, name, value.trim());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use contracts::envelope::headers;

    use super::*;
    use crate::runtime::events::dead_letter_headers;

    #[test]
    fn headers_async_nats_reads_are_readable() {
        for block in [
            &b"NATS/1.0\r\n\r\n"[..],
            b"NATS/1.0\r\nSoa-Event: noted\r\nNats-Msg-Id: abc\r\n\r\n",
            b"NATS/1.0 503\r\n\r\n",
            b"NATS/1.0\r\nX-Trailing: value \r\r\n\r\n",
            b"NATS/1.0\r\nX-Folded: one\r\n two\r\n\r\n",
        ] {
            assert_eq!(unreadable(block), None, "{}", String::from_utf8_lossy(block));
        }
    }

    #[test]
    fn headers_async_nats_cannot_read_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"NATS/1.0\r\nX-Hostile: a\rb\r\n\r\n", "lone carriage return"),
            (b"NATS/1.0\r\nX-Folded: a\r\n \rb\r\n\r\n", "lone carriage return"),
            (b"NATS/1.0\r\nno colon here\r\n\r\n", "no colon"),
            (b"NATS/1.0\r\nX Bad\x01: value\r\n\r\n", "header name"),
            (b"HTTP/1.1\r\n\r\n", "NATS/1.0"),
            (b"NATS/1.0\r\nX: \xff\r\n\r\n", "UTF-8"),
        ];
        for (block, named) in cases {
            let problem = unreadable(block).unwrap_or_default();
            assert!(
                problem.contains(named),
                "{:?}: {problem:?}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn a_dead_letter_keeps_the_readable_headers_and_cleans_the_rest() {
        let block = b"NATS/1.0\r\nX-Hostile: a\rb\r\nSoa-Event: noted\r\nNats-Msg-Id: abc\r\nbroken\r\n\r\n";
        let stored = StoredMessage {
            subject: "corpus.hostile.v1.noted".to_owned(),
            seq: 7,
            hdrs: None,
            data: String::new(),
        };
        let window = Window {
            stream: "SOA_EVENTS_CORPUS_V1",
            filter: "corpus.hostile.v1.noted",
            durable: "noted",
        };
        let map = dead_letter_headers(Some(&readable_headers(block)), &origin(&window, &stored, "unreadable"));
        assert_eq!(wire::header(Some(&map), "X-Hostile"), Some("a b"));
        assert_eq!(wire::header(Some(&map), headers::EVENT), Some("noted"));
        assert_eq!(wire::header(Some(&map), headers::DEAD_LETTER_MESSAGE_ID), Some("abc"));
        assert_eq!(
            wire::header(Some(&map), headers::MESSAGE_ID),
            Some("unreadable-SOA_EVENTS_CORPUS_V1-7")
        );
        assert_eq!(wire::header(Some(&map), headers::DEAD_LETTER_SEQUENCE), Some("7"));
        assert!(map.iter().all(|(name, _)| name.to_string() != "broken"));
    }
}
