//! `blindface serve`: the remote matcher, the encrypted core behind HTTP (axum + tokio).
//!
//! Binds to loopback by default, keeps each tenant's encrypted gallery in memory backed by
//! the durable store (`crate::matcher::Store`), authenticates tenants by bearer token,
//! bounds every input, logs structurally (tracing) and shuts down gracefully on Ctrl-C or
//! SIGTERM. Routes are in `routes`, authentication in `auth`, error replies in `error`.

mod auth;
mod error;
mod routes;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::matcher::Galleries;

pub use error::ApiError;

/// Default listening address (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";
/// Default bound on the number of tenants.
pub const DEFAULT_MAX_TENANTS: usize = 1_000;

/// What `blindface serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub max_templates: usize,
    pub max_tenants: usize,
}

/// Shared server state.
pub(crate) struct AppState {
    pub galleries: Galleries,
    pub auth: auth::Tokens,
    pub max_tenants: usize,
}

/// Opens the store, binds, prints `listening on http://ADDR` on stdout and serves until
/// Ctrl-C or SIGTERM.
pub fn run(config: ServerConfig) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let galleries = Galleries::open(&config.data, &crate::he::Params::v1(), config.max_templates)?;
    let auth = auth::Tokens::load(galleries.store())?;
    for tenant in auth.tenants() {
        galleries.ensure_tenant(&tenant)?;
    }
    tracing::info!(
        store = %galleries.store().path().display(),
        tenants = galleries.tenant_count(),
        max_templates = config.max_templates,
        "store opened"
    );
    let state = Arc::new(AppState {
        galleries,
        auth,
        max_tenants: config.max_tenants,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is another server using it?)",
                    config.addr
                )
            })?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "listening beyond loopback: put TLS in front of this server");
        }
        println!("blindface matcher listening on http://{local}");
        std::io::stdout().flush().ok();
        tracing::info!(%local, "listening");
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
