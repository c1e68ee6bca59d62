//! Test support shared by the integration tests: a real `blindface serve` process on an
//! ephemeral loopback port.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;

use blindface::he::{encrypt_template, SecretKey, Template, TemplateId};
use blindface::matcher::{Credentials, Galleries};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_blindface");

/// A `blindface serve` child process, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The certificate fingerprint it printed (TLS only).
    pub fingerprint: Option<String>,
    /// The admin token it printed (only when it created one).
    pub admin_token: Option<String>,
}

impl Server {
    /// Plain HTTP on loopback with open registration and no rate limit (what tests of
    /// other features need; `tests/network.rs` tests those).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--plain-http", "--open-registration", "--rate-limit", "0"];
        args.extend_from_slice(extra);
        Self::spawn("127.0.0.1:0", data, &args, None)
    }

    /// The real defaults: TLS (self-signed in `data`), invite-only registration.
    pub fn start_secure(data: &Path, extra: &[&str]) -> Server {
        Self::spawn("127.0.0.1:0", data, extra, None)
    }

    /// `blindface serve --addr ADDR --data DATA ARGS`, stderr to `stderr` if given.
    pub fn spawn(addr: &str, data: &Path, args: &[&str], stderr: Option<&Path>) -> Server {
        let err = match stderr {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let mut child = Command::new(BIN)
            .args(["serve", "--addr", addr, "--data"])
            .arg(data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start blindface serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut fingerprint, mut admin_token) = (None, None);
        let url = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.split("certificate SHA-256 ").nth(1) {
                fingerprint = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line
                .split("admin token (shown once; only its hash is kept): ")
                .nth(1)
            {
                admin_token = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            fingerprint,
            admin_token,
        }
    }

    /// A free loopback address (bound and released), to restart a server on.
    pub fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exit status {status}");
    }

    /// SIGKILL (kill -9) and wait.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant owning `templates` (ids 1..=n), bulk-enrolled into the store in `data` in
/// one transaction, before a server opens it: how tests get a 10,000-template gallery
/// without 10,000 fsyncs. Returns its credentials.
pub fn seed_gallery(data: &Path, key: &SecretKey, templates: &[Template]) -> Credentials {
    let galleries =
        Galleries::open(data, &blindface::he::Params::v1(), templates.len().max(1)).unwrap();
    let store = galleries.store();
    let creds = Credentials {
        tenant: "seeded-tenant".into(),
        token: "seeded-token-0123456789abcdef0123456789abcdef".into(),
    };
    let hash: [u8; 32] = Sha256::digest(creds.token.as_bytes()).into();
    store.add_tenant(&creds.tenant, &hash).unwrap();
    let rows: Vec<_> = templates
        .par_iter()
        .enumerate()
        .map(|(i, t)| {
            let id = TemplateId(i as u64 + 1);
            (id, encrypt_template(key, t), b"sealed-label".to_vec())
        })
        .collect();
    galleries
        .enrol_many(&creds.tenant, rows, templates.len().max(1))
        .unwrap();
    creds
}

/// The NATS server binary: `NATS_SERVER`, or `nats-server` on the PATH or in Debian's
/// /usr/sbin (where its package puts it, outside a non-root PATH).
pub fn nats_server_binary() -> String {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return p;
    }
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    "nats-server".into()
}

/// Real NATS servers with JetStream on loopback (a cluster, routed to each other, when
/// more than one), killed on drop; each keeps its JetStream data under `dir`.
pub struct Nats {
    children: Vec<Option<Child>>,
    /// `nats://127.0.0.1:PORT` of each server.
    pub urls: Vec<String>,
    /// `http://127.0.0.1:PORT` of each server's monitoring endpoint (`/jsz`, `/healthz`).
    pub monitors: Vec<String>,
    args: Vec<Vec<String>>,
}

impl Nats {
    pub fn start(n: usize, dir: &Path) -> Nats {
        let free = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ports: Vec<u16> = (0..n).map(|_| free()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free()).collect();
        let monitor_ports: Vec<u16> = (0..n).map(|_| free()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nats = Nats {
            children: Vec::new(),
            urls: ports
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect(),
            monitors: monitor_ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            args: Vec::new(),
        };
        for i in 0..n {
            let store = dir.join(format!("nats{i}"));
            let mut args: Vec<String> = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                ports[i].to_string(),
                "-n".into(),
                format!("nats{i}"),
                "-js".into(),
                "-sd".into(),
                store.display().to_string(),
                "-m".into(),
                monitor_ports[i].to_string(),
            ];
            if n > 1 {
                args.extend([
                    "--cluster_name".into(),
                    "blindface-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                ]);
            }
            nats.args.push(args);
            nats.children.push(None);
            nats.restart(i);
        }
        nats
    }

    /// Starts server `i` (again, with its JetStream data) and waits for its port.
    pub fn restart(&mut self, i: usize) {
        let child = Command::new(nats_server_binary())
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (apt install nats-server; or set NATS_SERVER)");
        self.children[i] = Some(child);
        let addr = self.urls[i].trim_start_matches("nats://").to_string();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nats-server {i} did not listen on {addr}");
    }

    /// Every server's URL, comma-separated (what `serve --cluster` takes).
    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// SIGKILL server `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One value of a Prometheus text exposition (`name{labels}`), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
