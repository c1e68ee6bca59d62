//! `blindface serve` (the remote matcher's options, parsed into a `ServerConfig`) and
//! `blindface admin` (the operator's commands against a running server: invitation codes,
//! metrics), which reach it through the same pinned endpoint as every client.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use blindface::client::{endpoint, remember_pin};
use blindface::matcher::{MatcherSpec, Quotas, TokenStore};
use blindface::server::{self, ClusterConfig, Registration, ServerConfig, TlsSource, WorkLimits};

use super::output::{emit, Globals};

/// Options of `blindface serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = server::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// TLS certificate chain (PEM) instead of the self-signed one in the data directory.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS: on a loopback address only (behind an SSH tunnel
    /// or a TLS proxy), unless --insecure-http is also given.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    plain_http: bool,
    /// Let anyone who reaches the server register a gallery (demos); by default
    /// registration needs a one-time code from `blindface admin invite`.
    #[arg(long)]
    open_registration: bool,
    /// Replace the admin token and print the new one (the old one stops working).
    #[arg(long)]
    new_admin_token: bool,
    /// Largest gallery per tenant, in templates.
    #[arg(long, default_value_t = blindface::matcher::DEFAULT_MAX_TEMPLATES)]
    max_templates: usize,
    /// Largest gallery per tenant, in bytes of memory (e.g. 256MiB).
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_MAX_TENANT_BYTES, value_parser = parse_bytes)]
    max_tenant_bytes: u64,
    /// Memory for every gallery together (e.g. 4GiB): registrations and enrolments
    /// beyond it are refused.
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_MEMORY_BUDGET, value_parser = parse_bytes)]
    memory_budget: u64,
    /// Largest number of tenants.
    #[arg(long, default_value_t = server::DEFAULT_MAX_TENANTS)]
    max_tenants: usize,
    /// Seconds to finish the TLS handshake and each request's headers [default: 10].
    #[arg(long, value_name = "SECONDS")]
    header_timeout: Option<f64>,
    /// Seconds for a whole request [default: 60].
    #[arg(long, value_name = "SECONDS")]
    request_timeout: Option<f64>,
    /// Requests per second per tenant (0: unlimited); bursts of twice that [default: 20].
    #[arg(long, value_name = "N")]
    rate_limit: Option<f64>,
    /// Verifies and identifies running at once (default: the number of cores); up to
    /// four times as many wait, more are answered 503.
    #[arg(long, value_name = "N")]
    max_matching: Option<usize>,
    /// Open connections at once [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Open connections at once from one source address [default: 64].
    #[arg(long, value_name = "N")]
    max_connections_per_address: Option<usize>,
    /// Requests failing authentication per second per source address (0: unlimited),
    /// bursts of four times that; more are answered 429 [default: 5].
    #[arg(long, value_name = "N")]
    unauthenticated_rate: Option<f64>,
    /// Bytes request bodies and identify responses in flight may hold at once (suffixes
    /// K, M, G); a request beyond that is answered 503 [default: 256M].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    max_buffered_bytes: Option<u64>,
    /// Verifies and identifies one gallery may have in flight, until each response's
    /// last byte is sent; more are answered 429 [default: 16].
    #[arg(long, value_name = "N")]
    max_matching_per_tenant: Option<usize>,
    /// Seconds a connection may go without taking any of its response (a client that
    /// stopped reading) before it is closed [default: 30].
    #[arg(long, value_name = "SECONDS")]
    write_timeout: Option<f64>,
    /// Run as a node of a cluster whose state lives in NATS JetStream: the NATS servers'
    /// URLs, comma-separated (nats://HOST:4222,...). Every node given the same NATS
    /// serves the same galleries; --data is then only this node's cache.
    #[arg(long, value_name = "URLS")]
    cluster: Option<String>,
    /// With --cluster: replicas of the cluster's log when this node creates it (at most
    /// the number of NATS servers; 3 survives the loss of one).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "cluster")]
    log_replicas: usize,
    /// With --cluster: a NATS credentials file (JWT + NKey) for servers that require one.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    nats_credentials: Option<PathBuf>,
    /// With --cluster: the CA certificate (PEM) that signed the NATS servers' TLS
    /// certificates; TLS to NATS is then required.
    #[arg(long, value_name = "PEM", requires = "cluster")]
    nats_ca: Option<PathBuf>,
    /// With --cluster: nodes that answer for each shard of a gallery in an identify (2:
    /// an identify survives one of them stopping).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "cluster")]
    replicas: usize,
    /// With --cluster: a snapshot of the matcher's state goes to NATS's object store every
    /// N changes (one node takes it), so a new node starts from it instead of replaying
    /// the whole log; 0: never.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        requires = "cluster"
    )]
    snapshot_every: u64,
}

/// `12345`, `64KiB`, `256MiB`, `4GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB` as powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 4GiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{s}`: unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn seconds(s: Option<f64>, default: Duration) -> Duration {
    s.map_or(default, |s| {
        Duration::try_from_secs_f64(s.max(0.001)).unwrap_or(Duration::MAX)
    })
}

/// The server's log: stderr, filtered by `RUST_LOG` (default `info`), in colour only when
/// stderr is a terminal (never escape codes in a log file or a pipe). The library never
/// sets up logging itself: the edge does, here.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub fn serve(globals: &Globals, a: ServeArgs) -> Result<()> {
    init_logging();
    let data = globals
        .data
        .clone()
        .unwrap_or_else(|| blindface::paths::data_dir().join("server"));
    let defaults = WorkLimits::default();
    let max_matching = a.max_matching.unwrap_or(defaults.max_matching);
    let rate = a.rate_limit.unwrap_or(defaults.rate_per_second);
    let tls = match (a.plain_http, a.tls_cert, a.tls_key) {
        (true, _, _) => None,
        (false, Some(cert), Some(key)) => Some(TlsSource::Files { cert, key }),
        _ => Some(TlsSource::SelfSigned),
    };
    server::run(ServerConfig {
        addr: a.addr,
        data,
        quotas: Quotas {
            max_templates: a.max_templates,
            max_tenant_bytes: a.max_tenant_bytes,
            memory_budget: a.memory_budget,
        },
        max_tenants: a.max_tenants,
        tls,
        insecure_http: globals.access.insecure_http,
        registration: if a.open_registration {
            Registration::Open
        } else {
            Registration::InviteOnly
        },
        new_admin_token: a.new_admin_token,
        limits: WorkLimits {
            header_timeout: seconds(a.header_timeout, defaults.header_timeout),
            request_timeout: seconds(a.request_timeout, defaults.request_timeout),
            rate_per_second: rate.max(0.0),
            rate_burst: (rate * 2.0).ceil().max(1.0) as u32,
            max_matching,
            match_queue: 4 * max_matching,
            max_connections: a.max_connections.unwrap_or(defaults.max_connections).max(1),
            max_connections_per_address: a
                .max_connections_per_address
                .unwrap_or(defaults.max_connections_per_address)
                .max(1),
            unauthenticated_rate: a
                .unauthenticated_rate
                .unwrap_or(defaults.unauthenticated_rate)
                .max(0.0),
            max_buffered_bytes: a
                .max_buffered_bytes
                .map_or(defaults.max_buffered_bytes, |b| b as usize),
            max_matching_per_tenant: a
                .max_matching_per_tenant
                .unwrap_or(defaults.max_matching_per_tenant)
                .max(1),
            write_timeout: seconds(a.write_timeout, defaults.write_timeout),
        },
        cluster: a.cluster.map(|urls| ClusterConfig {
            urls,
            log_replicas: a.log_replicas.max(1),
            credentials: a.nats_credentials,
            ca: a.nats_ca,
            replicas: a.replicas.max(1),
            snapshot_every: a.snapshot_every,
        }),
    })
}

/// The operator's commands (`--matcher URL` names the server).
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create one-time registration codes (each registers one gallery, with --invite).
    Invite {
        /// How many codes.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// The admin token `blindface serve` printed when it created it.
        #[arg(long, env = "BLINDFACE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
    /// Print the server's Prometheus metrics.
    Metrics {
        #[arg(long, env = "BLINDFACE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
}

#[derive(Serialize)]
struct InviteOutput {
    matcher: String,
    codes: Vec<String>,
}

pub fn admin(globals: &Globals, command: AdminCommand) -> Result<()> {
    let MatcherSpec::Remote { url } = &globals.matcher else {
        bail!("admin commands need the server: --matcher https://HOST:PORT");
    };
    let tokens = TokenStore::beside_key(&globals.key);
    let endpoint = endpoint(url, &tokens, &globals.access)?;
    match command {
        AdminCommand::Invite { count, admin_token } => {
            let codes = endpoint.create_invites(&admin_token, count)?;
            super::gallery::tell_new_pin(remember_pin(&tokens, &endpoint)?, url);
            let out = InviteOutput {
                matcher: url.clone(),
                codes,
            };
            emit(globals, &out, || {
                let mut s = format!(
                    "{} one-time registration code(s) for {}; each registers one gallery (`--invite CODE`):\n",
                    out.codes.len(),
                    out.matcher
                );
                for c in &out.codes {
                    s.push_str(&format!("  {c}\n"));
                }
                s
            });
        }
        AdminCommand::Metrics { admin_token } => {
            let text = endpoint.metrics(&admin_token)?;
            super::gallery::tell_new_pin(remember_pin(&tokens, &endpoint)?, url);
            print!("{text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("12345"), Ok(12_345));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("GiB").is_err());
    }
}
