//! NATS micro (ADR-32) discovery: the `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` replies of a service, and the per-endpoint counters behind
//! them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `type` of a ping reply.
pub const PING_RESPONSE_TYPE: &str = "io.nats.micro.v1.ping_response";
/// The `type` of an info reply.
pub const INFO_RESPONSE_TYPE: &str = "io.nats.micro.v1.info_response";
/// The `type` of a stats reply.
pub const STATS_RESPONSE_TYPE: &str = "io.nats.micro.v1.stats_response";

/// Who a service instance is; every discovery reply starts with this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The service name.
    pub name: String,
    /// This instance's id.
    pub id: String,
    /// The contract version it serves.
    pub version: String,
    /// `soa.contract` (`inventory@1.3.0`) and `soa.digest`.
    pub metadata: BTreeMap<String, String>,
}

/// `$SRV.PING` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// Always [`PING_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Who answers.
    #[serde(flatten)]
    pub identity: Identity,
}

/// One endpoint in an info reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// The operation's name.
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// The queue group instances share.
    pub queue_group: String,
    /// `soa.operation`, and `soa.idempotent` when it is.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `$SRV.INFO` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// Always [`INFO_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Who answers.
    #[serde(flatten)]
    pub identity: Identity,
    /// What the service does.
    pub description: String,
    /// Its operations.
    pub endpoints: Vec<EndpointInfo>,
}

/// One endpoint in a stats reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// The operation's name.
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// The queue group instances share.
    pub queue_group: String,
    /// Requests handled by this instance.
    pub num_requests: u64,
    /// Requests answered with an error.
    pub num_errors: u64,
    /// The last error, as `CODE: message`; empty when none.
    pub last_error: String,
    /// Total time spent handling, in nanoseconds.
    pub processing_time: u64,
    /// Average time per request, in nanoseconds.
    pub average_processing_time: u64,
}

/// `$SRV.STATS` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Always [`STATS_RESPONSE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Who answers.
    #[serde(flatten)]
    pub identity: Identity,
    /// When the instance started (RFC 3339).
    pub started: String,
    /// Per-endpoint counters.
    pub endpoints: Vec<EndpointStats>,
}

/// Counters of one endpoint, updated without locks on the request path
/// (the last error takes a short lock only when there is one).
#[derive(Debug, Default)]
pub(crate) struct EndpointCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<String>,
}

impl EndpointCounters {
    pub(crate) fn record(&self, elapsed: Duration, error: Option<String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.processing_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = error;
            }
        }
    }

    pub(crate) fn snapshot(&self, info: &EndpointInfo) -> EndpointStats {
        let num_requests = self.requests.load(Ordering::Relaxed);
        let processing_time = self.processing_nanos.load(Ordering::Relaxed);
        EndpointStats {
            name: info.name.clone(),
            subject: info.subject.clone(),
            queue_group: info.queue_group.clone(),
            num_requests,
            num_errors: self.errors.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|last| last.clone()).unwrap_or_default(),
            processing_time,
            average_processing_time: processing_time.checked_div(num_requests).unwrap_or(0),
        }
    }
}

/// The current time in RFC 3339, for `started`.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
