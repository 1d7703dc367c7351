//! W3C Trace Context (`traceparent`/`tracestate`): one business flow is one
//! trace, carried across every call and event.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The trace a message belongs to and the span that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    state: Option<String>,
}

/// The longest `tracestate` passed on; a longer one is dropped, as the
/// specification allows, rather than forwarded on every call.
const MAX_TRACESTATE_CHARS: usize = 512;

impl TraceContext {
    /// A new trace, as started by a flow's first message. It is not marked
    /// sampled: soabus records no spans to a tracing backend itself, and a
    /// sampled `traceparent` makes nats-server (2.11+) read every message's
    /// headers into a map in case message tracing is on. A caller's own
    /// flags (sampled or not) pass through unchanged.
    pub fn new_root() -> Self {
        Self {
            trace_id: (u128::from(random_u64()) << 64) | u128::from(random_u64()),
            span_id: random_u64(),
            flags: 0x00,
            state: None,
        }
    }

    /// Parses `traceparent` (version 00: `00-<32 hex>-<16 hex>-<2 hex>`) and
    /// keeps `tracestate` as it came when it is printable ASCII. `None` when the header is malformed, so
    /// the receiver starts a new trace instead.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version 00 has exactly four fields; later versions may add fields
        // and are read as 00; ff is invalid (W3C Trace Context, section 3.2).
        let extra_fields = parts.next().is_some();
        if !hex(version, 2) || version == "ff" || (version == "00" && extra_fields) {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
            // The header is printable ASCII (W3C Trace Context, section
            // 3.3.1): anything else is dropped rather than passed on altered,
            // since a header value written on cannot hold control characters.
            state: tracestate.map(str::to_owned).filter(|state| {
                !state.is_empty()
                    && state.len() <= MAX_TRACESTATE_CHARS
                    && state.bytes().all(|byte| (b' '..=b'~').contains(&byte))
            }),
        })
    }

    /// A span within the same trace, as a handler's call or event starts.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_u64(),
            ..self.clone()
        }
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// The `tracestate` header value, if any came in.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The trace id as 32 hex digits, for logs.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// A non-zero random number: the standard library's per-process random hash
/// keys applied to a counter, so ids never repeat within a process and are
/// unpredictable across processes.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header, Some("rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(context.traceparent(), header);
        assert_eq!(context.tracestate(), Some("rojo=00f067aa0ba902b7"));
        let child = context.child();
        assert_eq!(child.trace_id(), context.trace_id());
        assert_ne!(child.traceparent(), context.traceparent());
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn later_versions_are_read_as_00_and_flags_are_kept() {
        let later = TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra", None).unwrap();
        assert_eq!(
            later.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
        let long_state = "a=b,".repeat(200);
        let context = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some(&long_state),
        )
        .unwrap();
        assert_eq!(context.tracestate(), None);
    }

    #[test]
    fn a_tracestate_outside_printable_ascii_is_dropped_so_what_is_kept_is_what_is_sent_on() {
        // Found by fuzzing (tests/corpus/fuzz/envelope/tracestate-control-character):
        // a control character was kept, then turned into a space when sent on.
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for bad in ["r\u{1f}ojo=1", "rojo=1\t", "r\u{fffd}ojo=1", "rojo=\u{7f}"] {
            let context = TraceContext::parse(parent, Some(bad)).unwrap();
            assert_eq!(context.tracestate(), None, "{bad:?}");
        }
        let kept = TraceContext::parse(parent, Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")).unwrap();
        assert_eq!(kept.tracestate(), Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"));
    }

    #[test]
    fn new_traces_differ() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert!(TraceContext::parse(&a.traceparent(), None).is_some());
        // Not sampled: nothing here records them.
        assert!(a.traceparent().ends_with("-00"), "{}", a.traceparent());
        // A caller's sampled flag passes on to the children.
        let sampled = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
        assert!(sampled.child().traceparent().ends_with("-01"));
    }
}
