//! The registry's metrics, served at `GET /metrics` in the OpenMetrics text
//! format (which Prometheus scrapes natively): HTTP requests by route and
//! status with their latency, registrations by outcome over either API, and
//! the catalogue's sizes, read when scraped.
//!
//! The [`Registry`](crate::server::Registry) owns one [`Metrics`] and
//! records every registration in it, whichever API it came through; the
//! HTTP side also records its requests.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as MetricRegistry;

use contracts::ErrorBody;
use contracts::registry_api::RegisterResponse;

use crate::catalog::Catalog;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which API a registration came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// `soa.registry.v1.register`.
    Nats,
    /// `POST /v1/services`.
    Http,
}

impl Via {
    /// `nats` or `http`, as metrics labels and logs name the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    via: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    via: &'static str,
    code: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 4 s, doubling.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 14))
}

/// Counters and gauges of one registry process.
pub struct Metrics {
    registry: MetricRegistry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    registrations: Family<RegistrationLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    services: Gauge,
    versions: Gauge,
    instances: Gauge,
    healthy: Gauge,
    drifting: Gauge,
    expired: Counter,
    nats_requests: Family<VerbLabels, Counter>,
    nats_errors: Family<VerbLabels, Counter>,
    nats_seconds: Family<VerbLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = MetricRegistry::with_prefix("soa_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by method, route template and status",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let registrations = Family::<RegistrationLabels, Counter>::default();
        registry.register(
            "registrations",
            "Registrations by API and outcome: created (a new version stored), unchanged (the same content again) or refused",
            registrations.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "registration_refusals",
            "Refused registrations by API and error code",
            refusals.clone(),
        );
        let gauge = |registry: &mut MetricRegistry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let services = gauge(&mut registry, "services", "Services with at least one stored version");
        let versions = gauge(&mut registry, "versions", "Stored contract versions");
        let instances = gauge(&mut registry, "instances", "Live instances, healthy or overdue");
        let healthy = gauge(
            &mut registry,
            "instances_healthy",
            "Live instances whose last heartbeat is within their time to live",
        );
        let drifting = gauge(
            &mut registry,
            "instances_drifting",
            "Live instances serving a contract that matches no registered version",
        );
        let expired = Counter::default();
        registry.register(
            "instances_expired",
            "Instances dropped after missing their heartbeats",
            expired.clone(),
        );
        let nats_requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "nats_requests",
            "Requests this instance answered on soa.registry.v1.<verb>, by verb",
            nats_requests.clone(),
        );
        let nats_errors = Family::<VerbLabels, Counter>::default();
        registry.register(
            "nats_errors",
            "Requests on soa.registry.v1.<verb> answered with an error, by verb",
            nats_errors.clone(),
        );
        let nats_seconds = Family::<VerbLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "nats_processing",
            "Time spent answering soa.registry.v1.<verb>, by verb (divide by the requests for the mean latency)",
            prometheus_client::registry::Unit::Seconds,
            nats_seconds.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            registrations,
            refusals,
            services,
            versions,
            instances,
            healthy,
            drifting,
            expired,
            nats_requests,
            nats_errors,
            nats_seconds,
        }
    }
}

impl Metrics {
    /// Counts the outcome of one call of
    /// [`Registry::register`](crate::server::Registry::register).
    pub fn record_registration(&self, via: Via, outcome: &Result<(RegisterResponse, bool), ErrorBody>) {
        let outcome = match outcome {
            Ok((_, true)) => "created",
            Ok((_, false)) => "unchanged",
            Err(refusal) => {
                self.refusals
                    .get_or_create(&RefusalLabels {
                        via: via.as_str(),
                        code: refusal.code.as_str().to_owned(),
                    })
                    .inc();
                "refused"
            }
        };
        self.registrations
            .get_or_create(&RegistrationLabels {
                via: via.as_str(),
                outcome,
            })
            .inc();
    }

    /// Counts one HTTP request. `route` is the matched route template
    /// (`/v1/services/{name}`), never the raw path, so the label set stays
    /// bounded whatever clients ask for.
    pub fn record_http_request(&self, method: &axum::http::Method, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts instances dropped for missing their heartbeats.
    pub fn record_expired(&self, count: usize) {
        self.expired.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Brings the per-verb NATS counters up to the registry service's own
    /// `$SRV.STATS` counters, which the runtime keeps per operation.
    pub fn observe_nats(&self, stats: &bus_services::runtime::micro::StatsResponse) {
        for endpoint in &stats.endpoints {
            let labels = VerbLabels {
                verb: endpoint.name.clone(),
            };
            let catch_up = |counter: &Counter, total: u64| {
                counter.inc_by(total.saturating_sub(counter.get()));
            };
            catch_up(&self.nats_requests.get_or_create(&labels), endpoint.num_requests);
            catch_up(&self.nats_errors.get_or_create(&labels), endpoint.num_errors);
            #[allow(clippy::cast_precision_loss, reason = "nanoseconds to seconds, for a metric")]
            let seconds = endpoint.processing_time as f64 / 1e9;
            let counter = self.nats_seconds.get_or_create(&labels);
            let behind = seconds - counter.get();
            if behind > 0.0 {
                counter.inc_by(behind);
            }
        }
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]), with
    /// the catalogue's sizes as of `now`.
    pub fn encode(&self, catalog: &Catalog, now: Instant) -> Result<String, std::fmt::Error> {
        let counts = catalog.instances().all_counts(now);
        let (mut instances, mut healthy, mut drifting) = (0_i64, 0_i64, 0_i64);
        for (all, up, drift) in counts.values() {
            instances += i64::from(*all);
            healthy += i64::from(*up);
            drifting += i64::from(*drift);
        }
        self.services.set(gauge_value(catalog.service_count()));
        self.versions.set(gauge_value(catalog.version_count()));
        self.instances.set(instances);
        self.healthy.set(healthy);
        self.drifting.set(drifting);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{ContractId, ErrorCode};

    #[test]
    fn registrations_are_counted_by_api_and_outcome() {
        let metrics = Metrics::default();
        let response = RegisterResponse {
            id: ContractId::parse("inventory@1.0.0").unwrap(),
            digest: "sha256:00".into(),
            created: true,
            warnings: Vec::new(),
            unclassified: Vec::new(),
        };
        metrics.record_registration(Via::Nats, &Ok((response.clone(), true)));
        metrics.record_registration(Via::Http, &Ok((response, false)));
        metrics.record_registration(
            Via::Http,
            &Err(ErrorBody::new(ErrorCode::Declared("INCOMPATIBLE".into()), "no")),
        );
        let text = metrics.encode(&Catalog::default(), Instant::now()).unwrap();
        for line in [
            r#"soa_registry_registrations_total{via="nats",outcome="created"} 1"#,
            r#"soa_registry_registrations_total{via="http",outcome="unchanged"} 1"#,
            r#"soa_registry_registrations_total{via="http",outcome="refused"} 1"#,
            r#"soa_registry_registration_refusals_total{via="http",code="INCOMPATIBLE"} 1"#,
            "soa_registry_services 0",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line} missing in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
