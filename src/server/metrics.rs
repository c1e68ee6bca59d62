//! Observability: Prometheus metrics (`GET /metrics`, admin token required) and the one
//! request log line. Both name routes by their pattern (`/v1/verify/{id}`), never by the
//! path a client sent, and neither ever holds a token, a label or ciphertext bytes.
//!
//! Metrics: `blindface_requests_total{route,status}`, `blindface_request_seconds{route}`,
//! `blindface_rejected_total{code}` (every error reply by its code, plus refusals before
//! routing: `connection_limit`, `tls_handshake_timeout`, `header_timeout`), and gauges read
//! at scrape time: `blindface_tenants`, `blindface_templates`,
//! `blindface_memory_used_bytes`, `blindface_memory_budget_bytes`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::auth::require_admin;
use super::error::ErrorCode;
use super::{ApiError, ServerState};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rejected: IntCounterVec,
    tenants: IntGauge,
    templates: IntGauge,
    memory_used: IntGauge,
    memory_budget: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "blindface_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("blindface_request_seconds", "HTTP request latency by route")
                .buckets(exponential_buckets(0.000_5, 2.0, 16).expect("valid buckets")),
            &["route"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "blindface_rejected_total",
                "requests and connections refused, by error code",
            ),
            &["code"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let tenants = gauge("blindface_tenants", "tenants with a gallery in memory");
        let templates = gauge("blindface_templates", "templates enrolled, all tenants");
        let memory_used = gauge(
            "blindface_memory_used_bytes",
            "bytes charged against the memory budget",
        );
        let memory_budget = gauge("blindface_memory_budget_bytes", "the memory budget");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(rejected.clone()),
            Box::new(tenants.clone()),
            Box::new(templates.clone()),
            Box::new(memory_used.clone()),
            Box::new(memory_budget.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            rejected,
            tenants,
            templates,
            memory_used,
            memory_budget,
        }
    }

    /// Counts a refusal by its code.
    pub fn reject(&self, code: &str) {
        self.rejected.with_label_values(&[code]).inc();
    }

    fn render(&self, state: &ServerState) -> String {
        let g = &state.galleries;
        self.tenants.set(g.tenant_count() as i64);
        self.templates.set(g.template_count() as i64);
        self.memory_used
            .set(i64::try_from(g.used_bytes()).unwrap_or(i64::MAX));
        self.memory_budget
            .set(i64::try_from(g.quotas().memory_budget).unwrap_or(i64::MAX));
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Counts, times and logs every routed request (route pattern, status, milliseconds,
/// error code: nothing a client sent).
pub async fn observe(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    let m = &state.metrics;
    m.requests
        .with_label_values(&[route.as_str(), &status.to_string()])
        .inc();
    m.latency
        .with_label_values(&[route.as_str()])
        .observe(elapsed);
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(code) = code {
        m.reject(code);
    }
    tracing::info!(
        %method,
        route,
        status,
        code = code.unwrap_or(""),
        ms = format_args!("{:.2}", elapsed * 1e3),
        "request"
    );
    resp
}

/// `GET /metrics`: the Prometheus text format, for the admin token only.
pub async fn scrape(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let body = state.metrics.render(&state);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
