//! `blindface serve`: the remote matcher, the encrypted core behind HTTPS (axum + tokio +
//! rustls).
//!
//! Binds to loopback by default and speaks TLS with a self-signed certificate created on
//! first start (or the operator's), whose fingerprint clients pin; plain HTTP only on
//! loopback or when explicitly allowed. Keeps each tenant's encrypted gallery in memory
//! backed by the durable store (`crate::matcher::Store`) within per-tenant quotas and a
//! global memory budget, registers tenants by one-time invitation code (or openly, for
//! demos), authenticates them by bearer token, bounds every input and all work (body
//! limits, header and request timeouts, a per-tenant rate, a cap on concurrent matching),
//! exports Prometheus metrics, logs structurally (tracing) without tokens, names or
//! ciphertexts, and shuts down gracefully on Ctrl-C or SIGTERM.
//!
//! Routes are in `routes` (their bodies are `crate::matcher::api`'s, shared with the
//! client), the accept loop in `listen`, authentication (tenants' and the admin's) in
//! `auth`, the admin token and invitations in `admin` (their tables in `accounts`), work
//! bounds in `limits`, request bodies (read after authentication, bounded) in `body`, metrics and the request log in `metrics`, the certificate in `tls`,
//! error replies in `error` (hyper's own, for unparseable requests, in `parse_reply`); the state they share and `blocking` in `state`.
//! The files form a DAG: `state` holds what the handlers share, the handlers (`routes`,
//! `admin`) read it, and nothing below `state` knows of it.

mod accounts;
mod admin;
mod auth;
mod body;
mod changes;
mod cluster;
mod error;
mod ledger;
mod limits;
mod listen;
mod metrics;
mod observe;
mod parse_reply;
mod routes;
mod scatter;
mod shards;
mod snapshot;
mod stall;
mod state;
mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::matcher::{Galleries, Quotas};
use state::ServerState;

pub use auth::Registration;
pub use cluster::ClusterConfig;
pub use error::ApiError;
pub use tls::{TlsSource, SELF_SIGNED_CERT, SELF_SIGNED_KEY};

/// Default listening address (loopback only): the one both ends read.
pub use crate::matcher::spec::DEFAULT_ADDR;
/// Default bound on the number of tenants.
pub const DEFAULT_MAX_TENANTS: usize = 1_000;
/// Default bytes per tenant (about 14,000 templates at today's layout).
pub const DEFAULT_MAX_TENANT_BYTES: u64 = 256 << 20;
/// Default memory budget for every tenant together.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// Default bound on the bytes held by request bodies and identify responses in flight.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;

/// How the server bounds its work.
#[derive(Debug, Clone, Copy)]
pub struct WorkLimits {
    /// Time to finish the TLS handshake and each request's headers (and the longest a
    /// keep-alive connection may idle).
    pub header_timeout: Duration,
    /// Time for a whole request, body and work included.
    pub request_timeout: Duration,
    /// Requests per second per tenant (0: unlimited), and the burst allowed.
    pub rate_per_second: f64,
    pub rate_burst: u32,
    /// Verifies and identifies running at once, and waiting beyond those.
    pub max_matching: usize,
    pub match_queue: usize,
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections at once from one source address.
    pub max_connections_per_address: usize,
    /// Requests failing authentication per second per source address (0: unlimited),
    /// beyond a burst of four times that; more are answered 429.
    pub unauthenticated_rate: f64,
    /// Bytes request bodies and identify responses in flight may hold at once, across
    /// all connections; a request beyond that is answered 503.
    pub max_buffered_bytes: usize,
    /// Verifies and identifies in flight per tenant (until the response's last byte);
    /// more are answered 429.
    pub max_matching_per_tenant: usize,
    /// The longest a connection's write may make no progress (a client that stopped
    /// reading) before the connection is closed.
    pub write_timeout: Duration,
}

impl Default for WorkLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        WorkLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            rate_per_second: 20.0,
            rate_burst: 40,
            max_matching: cores,
            match_queue: 4 * cores,
            max_connections: 1024,
            max_connections_per_address: 64,
            unauthenticated_rate: 5.0,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_matching_per_tenant: 16,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What `blindface serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub quotas: Quotas,
    pub max_tenants: usize,
    /// `None`: plain HTTP (loopback only unless `insecure_http`).
    pub tls: Option<TlsSource>,
    pub insecure_http: bool,
    pub registration: Registration,
    /// Replace the admin token (printing the new one).
    pub new_admin_token: bool,
    pub limits: WorkLimits,
    /// `Some`: a cluster node (`--cluster`), its state in the cluster's JetStream log and
    /// `data` only its cache.
    pub cluster: Option<ClusterConfig>,
}

/// Opens the store, sets up TLS and the admin token, binds, prints the certificate
/// fingerprint, a new admin token (only when created) and `listening on https://ADDR` on
/// stdout, and serves until Ctrl-C or SIGTERM.
pub fn run(config: ServerConfig) -> Result<()> {
    if config.tls.is_none() && !config.addr.ip().is_loopback() && !config.insecure_http {
        bail!(
            "refusing to serve plain HTTP on {}: tokens, ciphertexts and answers would cross the \
             network unprotected, and anyone on the path could answer for this matcher (forcing \
             any verdict). Drop --plain-http (TLS is the default), or add --insecure-http if you \
             accept that",
            config.addr
        );
    }
    let l = config.limits;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // A tenant's gallery takes the parameters of its first template (`Galleries`).
        let params = crate::he::Params::current();
        // On a cluster: this node, the cluster's id and its settings.
        let (galleries, joined) = match &config.cluster {
            None => (Galleries::open_with(&config.data, &params, config.quotas)?, None),
            Some(c) => {
                let log = cluster::Log::connect(c).await?;
                let id = ledger::identity(&log).await?;
                let restored = snapshot::restore(&log, &config.data, id).await;
                // Nothing in memory until the node knows its shards (`shards::follow`).
                let open = || ledger::open_cache(&config.data, &params, config.quotas, shards::none(), id);
                let galleries = match (open(), restored) {
                    (Ok(g), _) => g,
                    (Err(e), Some(_)) => {
                        tracing::warn!(error = %e, "the restored snapshot does not open; building this node's cache from the log");
                        std::fs::remove_file(config.data.join(crate::matcher::STORE_FILE))?;
                        open()?
                    }
                    (Err(e), None) => return Err(e),
                };
                let position = galleries.store().log_position()?.unwrap_or(0);
                tracing::info!(nats = log.urls(), log_replicas = log.replicas(), cluster = %format!("{id:016x}"), position, "joined the cluster's log");
                let node = ledger::Node::new(log, position).map_err(|e| anyhow::anyhow!(e.message))?;
                (galleries, Some((node, id, c)))
            }
        };
        let auth = auth::Tokens::load(galleries.store())?;
        for tenant in auth.tenants() {
            galleries.ensure_tenant(&tenant)?;
        }
        let admin_hash = accounts::admin_token_hash(galleries.store())?;
        let metrics = Arc::new(metrics::Metrics::new());
        let state = Arc::new(ServerState {
            galleries,
            auth,
            max_tenants: config.max_tenants,
            registration: config.registration,
            admin_hash: parking_lot::RwLock::new(admin_hash),
            ledger: match &joined {
                None => ledger::Ledger::Standalone,
                Some((n, ..)) => ledger::Ledger::Cluster(n.clone()),
            },
            data: config.data.clone(),
            limits: limits::Limits {
                rate: limits::RateLimiter::new(l.rate_per_second, l.rate_burst),
                unauthenticated: limits::RateLimiter::new(
                    l.unauthenticated_rate,
                    (l.unauthenticated_rate * 4.0).ceil() as u32,
                ),
                matching: limits::MatchSlots::new(l.max_matching, l.match_queue),
                per_tenant: limits::TenantSlots::new(l.max_matching_per_tenant),
                buffered: limits::BufferBudget::new(l.max_buffered_bytes),
            },
            metrics: metrics.clone(),
        });
        let mut certificate_created = false;
        if let Some((node, id, c)) = &joined {
            node.follow(Arc::new(changes::StateMachine(state.clone())))
                .await?;
            tracing::info!(position = node.applied(), "caught up with the cluster's log");
            node.start_membership(c.replicas).await?;
            shards::follow(state.clone(), node);
            snapshot::follow(state.clone(), node.clone(), *id, c.snapshot_every);
            scatter::serve(state.clone(), node.clone()).await?;
            if config.tls == Some(TlsSource::SelfSigned)
                && !config.data.join(SELF_SIGNED_CERT).exists()
            {
                let (cert_pem, key_pem) = tls::self_signed_pems(&[])?;
                certificate_created = node
                    .create_once(ledger::Op::Certificate { cert_pem, key_pem })
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            }
        }
        let new_admin = admin::ensure_admin_token(&state, config.new_admin_token)
            .await
            .map_err(|e| anyhow::anyhow!("setting the admin token: {}", e.message))?;
        let tls = match &config.tls {
            None => None,
            Some(source) => {
                let names = (!config.addr.ip().is_unspecified())
                    .then(|| config.addr.ip().to_string())
                    .into_iter()
                    .collect::<Vec<_>>();
                let mut loaded = tls::load(source, &config.data, &names)?;
                loaded.created |= certificate_created;
                Some(loaded)
            }
        };
        let galleries = &state.galleries;
        tracing::info!(
            store = %galleries.store().path().display(),
            tenants = galleries.tenant_count(),
            templates = galleries.template_count(),
            max_templates = config.quotas.max_templates,
            bytes_per_template = Galleries::bytes_per_template(galleries.new_params()),
            memory_used = galleries.used_bytes(),
            memory_budget = config.quotas.memory_budget,
            registration = ?config.registration,
            "store opened"
        );
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is another server using it?)",
                    config.addr
                )
            })?;
        let local = listener.local_addr()?;
        let shutdown = shutdown_signal();
        let mut out = std::io::stdout().lock();
        if let Some(t) = &tls {
            writeln!(
                out,
                "TLS certificate SHA-256 {} ({}{}); clients pin it on first use: compare it with what they show",
                t.fingerprint,
                t.cert_path.display(),
                if t.created { ", created now" } else { "" }
            )?;
        } else if !local.ip().is_loopback() {
            tracing::warn!(%local, "plain HTTP beyond loopback (--insecure-http): tokens and answers travel unprotected");
        }
        if let Some(token) = &new_admin {
            writeln!(
                out,
                "admin token (shown once; only its hash is kept): {token}"
            )?;
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        writeln!(out, "blindface matcher listening on {scheme}://{local}")?;
        out.flush().ok();
        drop(out);
        tracing::info!(%local, scheme, "listening");
        listen::serve(
            listener,
            tls.map(|t| t.config),
            routes::router(state, l.request_timeout),
            listen::ConnLimits {
                header_timeout: l.header_timeout,
                max_connections: l.max_connections,
                max_per_address: l.max_connections_per_address.max(1),
                write_timeout: l.write_timeout,
            },
            metrics,
            shutdown,
        )
        .await;
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM, with the handlers installed now (before `listening on` is
/// printed): a signal that arrives as soon as a supervisor or test sees that line shuts
/// the server down gracefully instead of killing it (seen in CI: SIGTERM right after
/// the line, before the handler's first poll, ended the process with the signal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn wait(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}
