//! `soa dlq list|show|replay`: the dead letters the runtime stores in the
//! dead-letter stream (`SOA_DEAD_LETTERS`, subjects `soa.dlq.<stream>.<consumer>`),
//! read by direct gets (never consumed away), and replayed to where they
//! came from.
//!
//! A replay republishes a dead letter's payload with its original headers
//! (without the `Soa-Dead-Letter-*` ones) to its original subject, under a
//! fresh `Nats-Msg-Id` derived from the one it was first published with
//! (`<original id>/replay/<sequence>`), so JetStream drops a second replay of
//! the same dead letter within its duplicate window, and with `Soa-Replay-Of:
//! <original id>`, so the consumer's handler sees the original id as the
//! event's id (a replay of an effect already done is then recognised); the
//! dead letter is deleted only once the publish is acknowledged.
//!
//! Exits 0 when done, 1 when a dead letter is missing or a replay failed,
//! 2 on bad arguments or when no NATS connection can be made.

use std::collections::BTreeMap;
use std::io::Write;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::StreamMessage, stream::LastRawMessageErrorKind};
use bus_services::wire;
use clap::{Args, Subcommand};
use contracts::envelope::headers;
use contracts::subjects;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::registry_client::{close, connect, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions, UsageError};

/// The longest reason `soa dlq list` prints; `show` prints it whole.
const SHORT_REASON_CHARS: usize = 60;

/// `soa dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters, oldest first: sequence, when, original subject, consumer, deliveries, reason.
    ///
    /// Reads them without consuming them. Exits 0 with the listing (empty
    /// too), 2 on a bad filter or when no NATS connection can be made.
    List(DlqListArgs),
    /// Show one dead letter whole: its headers (the original ones included), the reason and the payload.
    ///
    /// Exits 0 when shown, 1 when there is no such dead letter, 2 on a bad
    /// argument or when no NATS connection can be made.
    Show(DlqShowArgs),
    /// Republish dead letters to their original subjects with their original headers, then delete them.
    ///
    /// Each gets a fresh `Nats-Msg-Id` derived from the dead letter, so a
    /// replay run twice is dropped as a duplicate; the dead letter is deleted
    /// only after the publish was acknowledged. Exits 0 when every one was
    /// replayed, 1 when any was missing or failed, 2 on bad arguments or
    /// when no NATS connection can be made.
    Replay(DlqReplayArgs),
}

/// Arguments of `soa dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only dead letters taken from this stream (`SOA_EVENTS_INVENTORY_V1`).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Only dead letters given up by this durable consumer.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// At most this many dead letters.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
    /// Print the listing as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa dlq show`.
#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// The dead letter's sequence in the dead-letter stream (as `soa dlq list` prints it).
    #[arg(value_name = "SEQ")]
    pub sequence: u64,
    /// Print the dead letter as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa dlq replay`.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// The sequences of the dead letters to replay.
    #[arg(value_name = "SEQ", required_unless_present = "all", conflicts_with = "all")]
    pub sequences: Vec<u64>,
    /// Replay every dead letter (of --consumer, when given).
    #[arg(long)]
    pub all: bool,
    /// With --all: only the dead letters of this durable consumer.
    #[arg(long, value_name = "NAME", requires = "all")]
    pub consumer: Option<String>,
    /// Print what would be replayed; publish and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One dead letter as the commands print it.
#[derive(Debug, Clone, Serialize)]
struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    sequence: u64,
    /// When it was stored (RFC 3339, UTC).
    time: String,
    /// Its subject in the dead-letter stream.
    subject: String,
    /// The stream it was taken from.
    stream: Option<String>,
    /// The subject it was first published on.
    original_subject: Option<String>,
    /// Its sequence in the stream it was taken from.
    original_sequence: Option<u64>,
    /// The consumer that gave up on it.
    consumer: Option<String>,
    /// How many times it was delivered.
    deliveries: Option<u64>,
    /// Why it was given up.
    reason: Option<String>,
    /// Every header, the original ones included.
    headers: BTreeMap<String, Vec<String>>,
    /// The payload: JSON when it is JSON, text otherwise.
    payload: Value,
}

impl DeadLetter {
    fn new(message: &StreamMessage) -> Self {
        let map = Some(&message.headers);
        let header = |name: &str| wire::header(map, name).map(str::to_owned);
        let mut all = BTreeMap::<String, Vec<String>>::new();
        for (name, values) in message.headers.iter() {
            all.entry(name.to_string())
                .or_default()
                .extend(values.iter().map(|value| value.as_str().to_owned()));
        }
        let payload = serde_json::from_slice(&message.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
        let at_ms = u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Self {
            sequence: message.sequence,
            time: bus_services::shop::utc_time(at_ms),
            subject: message.subject.to_string(),
            stream: message.subject.as_str().split('.').nth(2).map(str::to_owned),
            original_subject: header(headers::DEAD_LETTER_SUBJECT),
            original_sequence: header(headers::DEAD_LETTER_SEQUENCE).and_then(|text| text.parse().ok()),
            consumer: header(headers::DEAD_LETTER_CONSUMER),
            deliveries: header(headers::DEAD_LETTER_DELIVERIES).and_then(|text| text.parse().ok()),
            reason: header(headers::DEAD_LETTER_REASON),
            headers: all,
            payload,
        }
    }
}

/// Runs `soa dlq ...`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &DlqCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    // Arguments first: a bad one needs no server.
    let filter = match command {
        DlqCommand::List(args) => {
            if args.limit == 0 {
                return Err(UsageError("--limit must be at least 1".to_owned()).into());
            }
            filter_subject(args.stream.as_deref(), args.consumer.as_deref())?
        }
        DlqCommand::Replay(args) => filter_subject(None, args.consumer.as_deref())?,
        DlqCommand::Show(_) => subjects::DEAD_LETTER_SUBJECTS.to_owned(),
    };
    let client = connect(nats, "soa-dlq", "read the dead letters").await?;
    let js = jetstream::new(client.clone());
    let result = until_cancelled(&shutdown, async {
        let stream = match js.get_stream(subjects::DEAD_LETTER_STREAM).await {
            Ok(stream) => Some(stream),
            // No dead letter was ever stored, so the runtime never made the stream.
            Err(error)
                if matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                None
            }
            Err(error) => return Err(anyhow::Error::new(error).context("could not open the dead-letter stream")),
        };
        match command {
            DlqCommand::List(args) => {
                let letters = match &stream {
                    Some(stream) => read_all(stream, &filter, args.limit).await?,
                    None => Vec::new(),
                };
                if args.json {
                    write_json(out, &letters)?;
                } else if letters.is_empty() {
                    writeln!(out, "No dead letters.")?;
                } else {
                    write_list(out, &letters)?;
                }
                Ok(Exit::Success)
            }
            DlqCommand::Show(args) => {
                let found = match &stream {
                    Some(stream) => get(stream, args.sequence).await?,
                    None => None,
                };
                let Some(letter) = found else {
                    writeln!(
                        err,
                        "error: no dead letter {} in {}",
                        args.sequence,
                        subjects::DEAD_LETTER_STREAM
                    )?;
                    return Ok(Exit::Failure);
                };
                if args.json {
                    write_json(out, &letter)?;
                } else {
                    write_letter(out, &letter)?;
                }
                Ok(Exit::Success)
            }
            DlqCommand::Replay(args) => {
                let Some(stream) = &stream else {
                    if args.all {
                        writeln!(out, "No dead letters.")?;
                        return Ok(Exit::Success);
                    }
                    for sequence in &args.sequences {
                        writeln!(
                            err,
                            "error: no dead letter {sequence} in {}",
                            subjects::DEAD_LETTER_STREAM
                        )?;
                    }
                    return Ok(Exit::Failure);
                };
                replay(&js, stream, args, &filter, out, err).await
            }
        }
    })
    .await;
    close(client).await;
    result
}

/// The subject filter of `--stream` and `--consumer`: `soa.dlq.<stream>.<consumer>`, `*` for either missing.
fn filter_subject(stream: Option<&str>, consumer: Option<&str>) -> Result<String, UsageError> {
    for (flag, value) in [("--stream", stream), ("--consumer", consumer)] {
        if let Some(value) = value
            && (value.is_empty() || value.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace()))
        {
            return Err(UsageError(format!(
                "{flag} {value:?} is no stream or consumer name (no dots, wildcards or spaces)"
            )));
        }
    }
    if stream.is_none() && consumer.is_none() {
        return Ok(subjects::DEAD_LETTER_SUBJECTS.to_owned());
    }
    Ok(subjects::dead_letter(stream.unwrap_or("*"), consumer.unwrap_or("*")))
}

/// The dead letter at `sequence`, or `None` when there is none.
async fn get(stream: &jetstream::stream::Stream, sequence: u64) -> anyhow::Result<Option<DeadLetter>> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(DeadLetter::new(&message))),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(anyhow::Error::new(error).context(format!("could not read dead letter {sequence}"))),
    }
}

/// Whether a get failed only because there is no such message.
fn is_missing(error: &jetstream::stream::RawMessageError) -> bool {
    match error.kind() {
        LastRawMessageErrorKind::NoMessageFound => true,
        LastRawMessageErrorKind::JetStream(error) => error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND,
        _ => false,
    }
}

/// Up to `limit` dead letters on `filter`, oldest first, read one by one
/// (the next on the subject from a sequence), so nothing is consumed.
async fn read_all(stream: &jetstream::stream::Stream, filter: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    let mut from = 1;
    while letters.len() < limit {
        match stream.get_first_raw_message_by_subject(filter, from).await {
            Ok(message) => {
                from = message.sequence.saturating_add(1);
                letters.push(DeadLetter::new(&message));
            }
            Err(error) if is_missing(&error) => break,
            Err(error) => return Err(anyhow::Error::new(error).context("could not read the dead letters")),
        }
    }
    Ok(letters)
}

/// Cuts `text` to `max` characters, marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

fn write_list(out: &mut dyn Write, letters: &[DeadLetter]) -> anyhow::Result<()> {
    let mut rows = vec![[
        "SEQ".to_owned(),
        "WHEN".to_owned(),
        "SUBJECT".to_owned(),
        "CONSUMER".to_owned(),
        "DELIVERIES".to_owned(),
        "REASON".to_owned(),
    ]];
    for letter in letters {
        rows.push([
            letter.sequence.to_string(),
            letter.time.clone(),
            or_dash(letter.original_subject.as_deref()),
            or_dash(letter.consumer.as_deref()),
            letter
                .deliveries
                .map_or_else(|| "-".to_owned(), |count| count.to_string()),
            shorten(letter.reason.as_deref().unwrap_or("-"), SHORT_REASON_CHARS),
        ]);
    }
    write_table(out, 0, &rows, &[true, false, false, false, true, false])?;
    writeln!(out, "\n{} dead letter(s).", letters.len())?;
    Ok(())
}

fn write_letter(out: &mut dyn Write, letter: &DeadLetter) -> anyhow::Result<()> {
    writeln!(out, "Dead letter {} ({})", letter.sequence, letter.subject)?;
    writeln!(out, "  stored:      {}", letter.time)?;
    writeln!(out, "  subject:     {}", or_dash(letter.original_subject.as_deref()))?;
    writeln!(
        out,
        "  stream:      {}{}",
        or_dash(letter.stream.as_deref()),
        letter
            .original_sequence
            .map_or_else(String::new, |sequence| format!(" (sequence {sequence})"))
    )?;
    writeln!(out, "  consumer:    {}", or_dash(letter.consumer.as_deref()))?;
    writeln!(
        out,
        "  deliveries:  {}",
        letter
            .deliveries
            .map_or_else(|| "-".to_owned(), |count| count.to_string())
    )?;
    writeln!(out, "  reason:      {}", or_dash(letter.reason.as_deref()))?;
    writeln!(out, "\nHeaders:")?;
    for (name, values) in &letter.headers {
        for value in values {
            writeln!(out, "  {name}: {value}")?;
        }
    }
    writeln!(out, "\nPayload:")?;
    match &letter.payload {
        Value::String(text) => writeln!(out, "{text}")?,
        json => {
            serde_json::to_writer_pretty(&mut *out, json)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Whether header `name` belongs to the dead letter rather than to the original message.
fn is_dead_letter_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("soa-dead-letter-") || lower.starts_with("nats-")
}

/// The `Nats-Msg-Id` the dead-lettered message was published with, when the
/// runtime kept it.
fn original_id(message: &StreamMessage) -> Option<&str> {
    wire::header(Some(&message.headers), headers::DEAD_LETTER_MESSAGE_ID)
}

/// The `Nats-Msg-Id` of the replay of `message`: the original message's id
/// or, without one, the dead letter's own id (unique to it) or the stream's
/// name, then `/replay/<sequence>`.
fn replay_id(message: &StreamMessage) -> String {
    let base = original_id(message)
        .or_else(|| wire::header(Some(&message.headers), headers::MESSAGE_ID))
        .map_or_else(|| subjects::DEAD_LETTER_STREAM.to_owned(), str::to_owned);
    format!("{base}/replay/{}", message.sequence)
}

/// Replays the dead letters `args` names, one by one; exits 1 when any failed.
async fn replay(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    args: &DlqReplayArgs,
    filter: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let sequences: Vec<u64> = if args.all {
        read_all(stream, filter, usize::MAX)
            .await?
            .iter()
            .map(|letter| letter.sequence)
            .collect()
    } else {
        args.sequences.clone()
    };
    if sequences.is_empty() {
        writeln!(out, "No dead letters.")?;
        return Ok(Exit::Success);
    }
    let mut failed = 0usize;
    let mut replayed = 0usize;
    for sequence in sequences {
        match replay_one(js, stream, sequence, args.dry_run).await {
            Ok(done) => {
                replayed += 1;
                writeln!(out, "{done}")?;
            }
            Err(error) => {
                failed += 1;
                writeln!(err, "error: dead letter {sequence}: {error:#}")?;
            }
        }
    }
    let verb = if args.dry_run { "would replay" } else { "replayed" };
    writeln!(out, "{replayed} dead letter(s) {verb}, {failed} failed.")?;
    Ok(if failed == 0 { Exit::Success } else { Exit::Failure })
}

/// Replays one dead letter and returns the line that says so.
async fn replay_one(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    sequence: u64,
    dry_run: bool,
) -> anyhow::Result<String> {
    let message = match stream.get_raw_message(sequence).await {
        Ok(message) => message,
        Err(error) if is_missing(&error) => {
            anyhow::bail!("no dead letter {sequence} in {}", subjects::DEAD_LETTER_STREAM)
        }
        Err(error) => return Err(anyhow::Error::new(error).context("could not read it")),
    };
    let Some(subject) = wire::header(Some(&message.headers), headers::DEAD_LETTER_SUBJECT).map(str::to_owned) else {
        anyhow::bail!(
            "it has no {} header; cannot tell where it came from",
            headers::DEAD_LETTER_SUBJECT
        );
    };
    let id = replay_id(&message);
    if dry_run {
        return Ok(format!("would replay {sequence} to {subject} as {id}"));
    }
    let mut map = HeaderMap::new();
    for (name, values) in message.headers.iter() {
        if !is_dead_letter_header(name.as_ref()) {
            for value in values {
                map.append(name.clone(), value.clone());
            }
        }
    }
    wire::insert_header(&mut map, headers::MESSAGE_ID, &id);
    // A replay of a replay keeps the first original id.
    if let Some(original) = original_id(&message)
        && wire::header(Some(&map), headers::REPLAY_OF).is_none()
    {
        wire::insert_header(&mut map, headers::REPLAY_OF, original);
    }
    let ack = js
        .publish_with_headers(subject.clone(), map, message.payload.clone())
        .await
        .map_err(|error| anyhow::Error::new(error).context(format!("could not publish to {subject}")))?
        .await
        .map_err(|error| {
            anyhow::Error::new(error).context(format!("{subject} was not acknowledged (is a stream on it?)"))
        })?;
    // Stored again (or already, by an earlier replay): the dead letter can go.
    stream
        .delete_message(sequence)
        .await
        .map_err(|error| anyhow::Error::new(error).context("replayed, but could not delete the dead letter"))?;
    let note = if ack.duplicate {
        " (a duplicate of an earlier replay)"
    } else {
        ""
    };
    Ok(format!(
        "replayed {sequence} to {subject} as {} sequence {}{note}",
        ack.stream, ack.sequence
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_a_stream_and_a_consumer() {
        assert_eq!(filter_subject(None, None).unwrap(), "soa.dlq.>");
        assert_eq!(filter_subject(Some("S"), None).unwrap(), "soa.dlq.S.*");
        assert_eq!(filter_subject(None, Some("shipping")).unwrap(), "soa.dlq.*.shipping");
        assert!(filter_subject(None, Some("a.b")).is_err());
        assert!(filter_subject(Some(">"), None).is_err());
    }

    #[test]
    fn reasons_are_shortened_with_a_mark() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdefgh", 5), "abcd…");
        assert!(is_dead_letter_header("Soa-Dead-Letter-Reason"));
        assert!(is_dead_letter_header("Nats-Msg-Id"));
        assert!(!is_dead_letter_header("Soa-Contract"));
    }
}
