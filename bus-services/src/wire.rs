//! The NATS side of the envelope: the soabus headers a message carries and the
//! NATS micro error headers of a failed request, written and read.
//!
//! The header names and the error body are defined in
//! [`contracts::envelope`]; this module only moves them in and out of
//! async-nats' [`HeaderMap`]. Every value written here is cleaned of the
//! carriage returns and line feeds that async-nats refuses (it panics on
//! them), so no message text can break a reply.

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use contracts::envelope::headers;
use contracts::{ContractId, ErrorBody, ErrorCode, MemberName};

/// Longest `Nats-Service-Error` value written; the full message is in the body.
const MAX_ERROR_HEADER_CHARS: usize = 512;

/// Longest correlation id accepted, in bytes.
pub const MAX_CORRELATION_ID_BYTES: usize = 256;

/// The headers of an error reply: `Nats-Service-Error` (the message) and
/// `Nats-Service-Error-Code` (the code's HTTP-like status), as NATS micro
/// clients expect. The body goes in the payload as JSON.
pub fn error_headers(body: &ErrorBody) -> HeaderMap {
    let mut map = HeaderMap::new();
    write_error_headers(&mut map, body);
    map
}

/// Adds the error headers of `body` to `map`, replacing any already there.
pub fn write_error_headers(map: &mut HeaderMap, body: &ErrorBody) {
    let message: String = body.message.chars().take(MAX_ERROR_HEADER_CHARS).collect();
    map.insert(HeaderName::from_static(headers::SERVICE_ERROR), header_value(&message));
    map.insert(
        HeaderName::from_static(headers::SERVICE_ERROR_CODE),
        HeaderValue::from(body.code.status()),
    );
}

/// Reads an error reply: `None` when the reply carries no error headers (it is
/// a success), otherwise the error.
///
/// The JSON body is the error when it is an [`ErrorBody`]; a service that is
/// not built on soabus may send anything, so otherwise the error is rebuilt
/// from the headers, with the code guessed from the status number.
pub fn decode_error(map: Option<&HeaderMap>, payload: &[u8]) -> Option<ErrorBody> {
    let map = map?;
    let message = header(Some(map), headers::SERVICE_ERROR);
    let status = header(Some(map), headers::SERVICE_ERROR_CODE);
    if message.is_none() && status.is_none() {
        return None;
    }
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(payload) {
        return Some(body);
    }
    let code = status
        .and_then(|status| status.trim().parse::<u16>().ok())
        .map_or(ErrorCode::Internal, code_for_status);
    let message = message
        .map(str::trim)
        .filter(|message| !message.is_empty())
        .map_or_else(
            || {
                format!(
                    "the service replied with error {} and no message",
                    status.unwrap_or("(no code)")
                )
            },
            str::to_owned,
        );
    Some(ErrorBody::new(code, message))
}

/// The common code a `Nats-Service-Error-Code` number stands for, the inverse
/// of [`ErrorCode::status`] where that is unambiguous.
///
/// A declared code (422) cannot be recovered from the number alone, nor can
/// another client error, so those become `ERROR_<status>`; any other number is
/// taken as the service's own failure.
pub fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::ValidationFailed,
        401 | 403 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        408 | 504 => ErrorCode::Timeout,
        503 => ErrorCode::Unavailable,
        402..=499 => ErrorCode::Declared(format!("ERROR_{status}")),
        _ => ErrorCode::Internal,
    }
}

/// A fresh, unique message id for `Nats-Msg-Id` (a NUID: 22 characters).
pub fn new_message_id() -> String {
    nuid::next().to_string()
}

/// The business key that ties one flow's messages together
/// (`Soa-Correlation-Id`), such as an order id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

/// Why a text is not a correlation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid correlation id {input:?}: it must be 1 to {MAX_CORRELATION_ID_BYTES} bytes without \
     control characters, such as an order id"
)]
pub struct CorrelationIdError {
    /// The text that was given.
    pub input: String,
}

impl CorrelationId {
    /// Parses a correlation id: 1 to 256 bytes, no control characters (a
    /// header value cannot hold a line break).
    pub fn parse(input: &str) -> Result<Self, CorrelationIdError> {
        let valid =
            !input.is_empty() && input.len() <= MAX_CORRELATION_ID_BYTES && !input.chars().any(char::is_control);
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(CorrelationIdError {
                input: input.to_owned(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a message belongs to: an operation (its request or its reply) or an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Sent as `Soa-Operation`.
    Operation(MemberName),
    /// Sent as `Soa-Event`.
    Event(MemberName),
}

/// The soabus headers of one outgoing message: which contract it speaks, what
/// it belongs to, its unique id and the flow it is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `Soa-Contract`, such as `orders@1.0.0`.
    pub contract: ContractId,
    /// `Soa-Operation` or `Soa-Event`.
    pub kind: MessageKind,
    /// `Nats-Msg-Id`; JetStream de-duplicates on it.
    pub message_id: String,
    /// `Soa-Correlation-Id`, when the message is part of a flow.
    pub correlation_id: Option<CorrelationId>,
}

impl Envelope {
    /// The envelope of a request to, or a reply from, `operation`, with a fresh message id.
    pub fn operation(contract: ContractId, operation: MemberName) -> Self {
        Self::new(contract, MessageKind::Operation(operation))
    }

    /// The envelope of an `event`, with a fresh message id.
    pub fn event(contract: ContractId, event: MemberName) -> Self {
        Self::new(contract, MessageKind::Event(event))
    }

    fn new(contract: ContractId, kind: MessageKind) -> Self {
        Self {
            contract,
            kind,
            message_id: new_message_id(),
            correlation_id: None,
        }
    }

    /// Ties the message to a flow.
    pub fn with_correlation_id(mut self, correlation_id: Option<CorrelationId>) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// The headers, ready to send.
    pub fn to_headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        self.write_into(&mut map);
        map
    }

    /// Adds the headers to `map`, replacing any soabus headers already there.
    pub fn write_into(&self, map: &mut HeaderMap) {
        map.insert(
            HeaderName::from_static(headers::CONTRACT),
            header_value(&self.contract.to_string()),
        );
        match &self.kind {
            MessageKind::Operation(name) => {
                map.insert(HeaderName::from_static(headers::OPERATION), header_value(name.as_str()));
            }
            MessageKind::Event(name) => {
                map.insert(HeaderName::from_static(headers::EVENT), header_value(name.as_str()))
            }
        }
        map.insert(
            HeaderName::from_static(headers::MESSAGE_ID),
            header_value(&self.message_id),
        );
        if let Some(correlation_id) = &self.correlation_id {
            map.insert(
                HeaderName::from_static(headers::CORRELATION_ID),
                header_value(correlation_id.as_str()),
            );
        }
    }
}

/// The value of header `name`, if the message has it (and `name` is a valid header name).
pub fn header<'a>(map: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let map = map?;
    map.get(header_name(name)?).map(HeaderValue::as_str)
}

/// The soabus and NATS header names the runtime reads and writes on every
/// message: looked up without allocating.
const KNOWN_HEADERS: [&str; 17] = [
    headers::CONTRACT,
    headers::OPERATION,
    headers::EVENT,
    headers::MESSAGE_ID,
    headers::CORRELATION_ID,
    headers::IDEMPOTENCY_KEY,
    headers::TRACEPARENT,
    headers::TRACESTATE,
    headers::SERVICE_ERROR,
    headers::SERVICE_ERROR_CODE,
    headers::DEAD_LETTER_REASON,
    headers::DEAD_LETTER_SUBJECT,
    headers::DEAD_LETTER_CONSUMER,
    headers::DEAD_LETTER_DELIVERIES,
    headers::DEAD_LETTER_SEQUENCE,
    headers::DEAD_LETTER_MESSAGE_ID,
    headers::REPLAY_OF,
];

/// `name` as a header name; `None` when it is not a valid one. Parsed
/// rather than passed to async-nats as `&str`, which panics on an invalid
/// name; the names of [`KNOWN_HEADERS`] cost no allocation.
fn header_name(name: &str) -> Option<HeaderName> {
    match KNOWN_HEADERS.iter().find(|known| **known == name) {
        Some(known) => Some(HeaderName::from_static(known)),
        None => name.parse().ok(),
    }
}

/// The correlation id a received message carries, if it carries a valid one.
pub fn correlation_id(map: Option<&HeaderMap>) -> Option<CorrelationId> {
    header(map, headers::CORRELATION_ID).and_then(|text| CorrelationId::parse(text).ok())
}

/// Why a round trip to the server did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RoundTripError {
    /// The probe subscription could not be made.
    #[error("could not subscribe to the round trip's inbox")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// The probe message could not be published.
    #[error("could not publish the round trip's probe")]
    Publish(#[source] async_nats::PublishError),
    /// The probe did not come back in time.
    #[error("the server did not echo the round trip's probe within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Waits until the server has processed everything this client sent before,
/// subscriptions included, by sending a message to itself and receiving it.
///
/// `Client::flush` only empties the client's socket buffer; a request from
/// another connection right after it can still find no responders. The server
/// handles one connection's messages in order, so once the probe is back,
/// every earlier subscription is in effect on that server (a cluster spreads
/// interest to other servers a moment later).
pub async fn round_trip(client: &async_nats::Client, timeout: std::time::Duration) -> Result<(), RoundTripError> {
    use futures::StreamExt;

    let inbox = client.new_inbox();
    let mut probe = client
        .subscribe(inbox.clone())
        .await
        .map_err(RoundTripError::Subscribe)?;
    client
        .publish(inbox, "".into())
        .await
        .map_err(RoundTripError::Publish)?;
    match tokio::time::timeout(timeout, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) | Err(_) => Err(RoundTripError::TimedOut(timeout)),
    }
}

/// Sets header `name` to `value`; control characters in the value become
/// spaces, and a name that is not a valid header name is skipped.
pub fn insert_header(map: &mut HeaderMap, name: &str, value: &str) {
    if let Some(name) = header_name(name) {
        map.insert(name, header_value(value));
    }
}

/// Adds `value` to header `name`; control characters in the value become spaces.
pub fn append_header(map: &mut HeaderMap, name: HeaderName, value: &str) {
    map.append(name, header_value(value));
}

/// A header value from any text: control characters (which async-nats refuses
/// with a panic) become spaces.
fn header_value(text: &str) -> HeaderValue {
    if !text.chars().any(char::is_control) {
        return text.parse().unwrap_or_default();
    }
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use contracts::ErrorDetail;

    use super::*;

    #[test]
    fn every_known_header_name_is_valid_and_found_without_parsing() {
        for name in KNOWN_HEADERS {
            assert!(name.parse::<HeaderName>().is_ok(), "{name}");
            let mut map = HeaderMap::new();
            insert_header(&mut map, name, "value");
            assert_eq!(header(Some(&map), name), Some("value"), "{name}");
            // Found by a parsed name too: a static name and a parsed one are equal.
            let parsed: HeaderName = name.parse().unwrap();
            assert_eq!(map.get(parsed).map(HeaderValue::as_str), Some("value"), "{name}");
        }
    }

    fn validation_error() -> ErrorBody {
        ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "the request of place does not match orders@1.0.0".to_owned(),
            details: vec![ErrorDetail {
                pointer: "/items/0/quantity".to_owned(),
                schema_path: Some("/properties/quantity/minimum".to_owned()),
                message: "0 is less than the minimum of 1".to_owned(),
            }],
        }
    }

    #[test]
    fn error_headers_carry_the_message_and_the_status() {
        let map = error_headers(&validation_error());
        assert_eq!(
            header(Some(&map), "Nats-Service-Error"),
            Some("the request of place does not match orders@1.0.0")
        );
        assert_eq!(header(Some(&map), "Nats-Service-Error-Code"), Some("400"));
        assert_eq!(header(Some(&map), "not: a header"), None);
    }

    #[test]
    fn line_breaks_in_a_message_cannot_break_the_headers() {
        let body = ErrorBody::new(ErrorCode::Internal, "first line\r\nsecond line");
        let map = error_headers(&body);
        assert_eq!(
            header(Some(&map), "Nats-Service-Error"),
            Some("first line  second line")
        );
        let long = ErrorBody::new(ErrorCode::Internal, "x".repeat(10_000));
        let map = error_headers(&long);
        assert_eq!(
            header(Some(&map), "Nats-Service-Error").map(str::len),
            Some(MAX_ERROR_HEADER_CHARS)
        );
    }

    #[test]
    fn an_error_reply_decodes_to_its_body() {
        let body = validation_error();
        let map = error_headers(&body);
        let payload = serde_json::to_vec(&body).unwrap();
        assert_eq!(decode_error(Some(&map), &payload), Some(body));
    }

    #[test]
    fn a_success_is_not_an_error() {
        let payload = br#"{"code":"NOT_FOUND","message":"looks like an error but is data"}"#;
        assert_eq!(decode_error(None, payload), None);
        let mut map = HeaderMap::new();
        map.insert("Soa-Operation", "place");
        assert_eq!(decode_error(Some(&map), payload), None);
    }

    #[test]
    fn a_body_that_is_not_json_falls_back_to_the_headers() {
        let mut map = HeaderMap::new();
        map.insert("Nats-Service-Error", "no such order");
        map.insert("Nats-Service-Error-Code", "404");
        let error = decode_error(Some(&map), b"not json").unwrap();
        assert_eq!(error, ErrorBody::new(ErrorCode::NotFound, "no such order"));

        let mut code_only = HeaderMap::new();
        code_only.insert("Nats-Service-Error-Code", "500");
        let error = decode_error(Some(&code_only), b"").unwrap();
        assert_eq!(error.code, ErrorCode::Internal);
        assert!(error.message.contains("500"), "{}", error.message);

        let mut garbage = HeaderMap::new();
        garbage.insert("Nats-Service-Error", "boom");
        garbage.insert("Nats-Service-Error-Code", "twelve");
        assert_eq!(decode_error(Some(&garbage), b"").unwrap().code, ErrorCode::Internal);
    }

    #[test]
    fn statuses_map_back_to_the_codes_that_send_them() {
        for code in ErrorCode::COMMON {
            assert_eq!(code_for_status(code.status()), code);
        }
        assert_eq!(code_for_status(422), ErrorCode::Declared("ERROR_422".to_owned()));
        assert_eq!(code_for_status(502), ErrorCode::Internal);
        assert_eq!(code_for_status(200), ErrorCode::Internal);
    }

    #[test]
    fn an_operation_envelope_writes_every_header() {
        let contract = ContractId::parse("orders@1.0.0").unwrap();
        let operation = MemberName::parse("place").unwrap();
        let envelope = Envelope::operation(contract, operation)
            .with_correlation_id(Some(CorrelationId::parse("ord-1001").unwrap()));
        let map = envelope.to_headers();
        assert_eq!(header(Some(&map), "Soa-Contract"), Some("orders@1.0.0"));
        assert_eq!(header(Some(&map), "Soa-Operation"), Some("place"));
        assert_eq!(header(Some(&map), "Soa-Event"), None);
        assert_eq!(header(Some(&map), "Nats-Msg-Id"), Some(envelope.message_id.as_str()));
        assert_eq!(
            correlation_id(Some(&map)).map(|id| id.to_string()),
            Some("ord-1001".to_owned())
        );
    }

    #[test]
    fn an_event_envelope_names_the_event_and_message_ids_are_unique() {
        let contract = ContractId::parse("orders@1.0.0").unwrap();
        let placed = MemberName::parse("placed").unwrap();
        let first = Envelope::event(contract.clone(), placed.clone());
        let second = Envelope::event(contract, placed);
        assert_ne!(first.message_id, second.message_id);
        assert_eq!(first.message_id.len(), 22);
        let map = first.to_headers();
        assert_eq!(header(Some(&map), "Soa-Event"), Some("placed"));
        assert_eq!(header(Some(&map), "Soa-Operation"), None);
        assert_eq!(header(Some(&map), "Soa-Correlation-Id"), None);
    }

    #[test]
    fn correlation_ids_hold_no_line_breaks() {
        assert!(CorrelationId::parse("ord-1001").is_ok());
        assert!(CorrelationId::parse("order 17 / customer 4").is_ok());
        for bad in ["", "a\nb", "a\rb"] {
            assert!(CorrelationId::parse(bad).is_err(), "{bad:?}");
        }
        let too_long = "x".repeat(MAX_CORRELATION_ID_BYTES + 1);
        assert!(CorrelationId::parse(&too_long).is_err());
        let mut map = HeaderMap::new();
        map.insert("Soa-Correlation-Id", "");
        assert_eq!(correlation_id(Some(&map)), None);
    }
}
