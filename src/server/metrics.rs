//! Observability: Prometheus metrics (`GET /metrics`, admin token required) and the one
//! request log line. Both name routes by their pattern (`/v1/verify/{id}`), never by the
//! path a client sent, and neither ever holds a token, a label or ciphertext bytes.
//!
//! Metrics: `blindface_requests_total{route,status}`, `blindface_request_seconds{route}`,
//! `blindface_rejected_total{code}` (every error reply by its code, plus refusals before
//! routing: `connection_limit`, `address_connection_limit`, `tls_handshake_timeout`,
//! `header_timeout`; connections closed to make room, `evicted_idle` and
//! `evicted_slow_body`; and `write_timeout`, a client that took none of its response
//! for the write deadline), and gauges read
//! at scrape time: `blindface_tenants`, `blindface_templates`,
//! `blindface_memory_used_bytes`, `blindface_memory_budget_bytes`, `blindface_blocks`
//! (gallery blocks, all tenants) and `blindface_blocks_held` (those whose ciphertext is
//! in memory: all of them on a single server, a node's shards' on a cluster node);
//! `blindface_matched_blocks_total` (blocks this server matched: identify and verify);
//! on a cluster node `blindface_log_position` (the last op of the cluster's log applied
//! here: nodes in step show the same), `blindface_cluster_nodes` (the live nodes it
//! hears) and `blindface_shard_held{shard}` (1 for each shard it holds).

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::matcher::Galleries;

/// A cluster node's place in its cluster, read at scrape time (all zero standalone).
#[derive(Debug, Default)]
pub struct ClusterView {
    pub log_position: u64,
    pub nodes: usize,
    pub shards: Vec<usize>,
}

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
    blocks: IntGauge,
    blocks_held: IntGauge,
    matched_blocks: prometheus::IntCounter,
    log_position: IntGauge,
    cluster_nodes: IntGauge,
    shard_held: prometheus::IntGaugeVec,
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
        let blocks = gauge("blindface_blocks", "gallery blocks, all tenants");
        let blocks_held = gauge(
            "blindface_blocks_held",
            "gallery blocks whose ciphertext this server holds in memory",
        );
        let matched_blocks = prometheus::IntCounter::new(
            "blindface_matched_blocks_total",
            "gallery blocks this server matched (one external product each)",
        )
        .expect("valid metric");
        let log_position = gauge(
            "blindface_log_position",
            "the last op of the cluster's log this node applied (0: standalone)",
        );
        let cluster_nodes = gauge(
            "blindface_cluster_nodes",
            "live matcher nodes this node hears (0: standalone)",
        );
        let shard_held = prometheus::IntGaugeVec::new(
            Opts::new("blindface_shard_held", "1 for each shard this node holds"),
            &["shard"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(rejected.clone()),
            Box::new(tenants.clone()),
            Box::new(templates.clone()),
            Box::new(memory_used.clone()),
            Box::new(memory_budget.clone()),
            Box::new(blocks.clone()),
            Box::new(blocks_held.clone()),
            Box::new(matched_blocks.clone()),
            Box::new(log_position.clone()),
            Box::new(cluster_nodes.clone()),
            Box::new(shard_held.clone()),
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
            blocks,
            blocks_held,
            matched_blocks,
            log_position,
            cluster_nodes,
            shard_held,
        }
    }

    /// Counts blocks matched.
    pub fn matched(&self, blocks: usize) {
        self.matched_blocks.inc_by(blocks as u64);
    }

    /// Counts a routed request and its time, by route pattern and status.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts a refusal by its code.
    pub fn reject(&self, code: &str) {
        self.rejected.with_label_values(&[code]).inc();
    }

    /// The Prometheus text, with the gauges read from `g` and the cluster now.
    pub fn render(&self, g: &Galleries, cluster: &ClusterView) -> String {
        self.log_position
            .set(i64::try_from(cluster.log_position).unwrap_or(i64::MAX));
        self.cluster_nodes.set(cluster.nodes as i64);
        self.shard_held.reset();
        for shard in &cluster.shards {
            self.shard_held
                .with_label_values(&[&shard.to_string()])
                .set(1);
        }
        self.tenants.set(g.tenant_count() as i64);
        self.templates.set(g.template_count() as i64);
        self.memory_used
            .set(i64::try_from(g.used_bytes()).unwrap_or(i64::MAX));
        self.memory_budget
            .set(i64::try_from(g.quotas().memory_budget).unwrap_or(i64::MAX));
        let (held, all) = g.held_blocks();
        self.blocks.set(all as i64);
        self.blocks_held.set(held as i64);
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
