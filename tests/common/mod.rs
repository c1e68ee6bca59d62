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
