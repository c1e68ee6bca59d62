//! Loopback benchmark of the remote matcher: what TLS costs per identify. The same
//! gallery (100, then 10,000 templates, seeded straight into the store) is served in turn
//! by a plain-HTTP and a TLS `blindface serve` in the same run; one client measures
//! identify latency over a kept-alive connection, and for 1:100 also with a new
//! connection (so a new TLS handshake) per request.
//! Ignored by default; run with
//! `cargo test --release --test matcher_bench -- --ignored --nocapture`.

use std::path::Path;
use std::time::{Duration, Instant};

use blindface::he::{decrypt, encrypt_probe, synthetic_templates, Params, SecretKey};
use blindface::matcher::{Credentials, Endpoint, Matcher, RemoteMatcher};

mod common;
use common::{seed_gallery, Server};

/// One measurement: round, TLS or not, kept-alive median, new-connection median.
type Row = (usize, bool, f64, Option<f64>);

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Median identify latency (kept-alive connection) and, if `fresh` > 0, the median with a
/// new connection per request.
fn measure(
    server: &Server,
    creds: &Credentials,
    key: &SecretKey,
    probes: &[(blindface::he::EncryptedProbe, blindface::he::ProbeContext)],
    n: usize,
    fresh: usize,
    size: usize,
) -> (f64, Option<f64>) {
    let p = *key.params();
    let pin = server.fingerprint.as_ref().map(|f| f.parse().unwrap());
    let tokens = Path::new("tokens.json");
    let ep = Endpoint::new(&server.url, pin, false).unwrap();
    let m = RemoteMatcher::new(&ep, &p, creds.clone(), tokens);
    let r = m.identify(&probes[0].0).unwrap().result;
    assert_eq!(decrypt(key, &probes[0].1, &r).unwrap().len(), size);
    let kept: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            m.identify(&probes[i % probes.len()].0).unwrap();
            t.elapsed()
        })
        .collect();
    let new_conn = (fresh > 0).then(|| {
        median_ms(
            (0..fresh)
                .map(|i| {
                    let ep = Endpoint::new(&server.url, pin, false).unwrap();
                    let m = RemoteMatcher::new(&ep, &p, creds.clone(), tokens);
                    let t = Instant::now();
                    m.identify(&probes[i % probes.len()].0).unwrap();
                    t.elapsed()
                })
                .collect(),
        )
    });
    (median_ms(kept), new_conn)
}

#[test]
#[ignore]
fn tls_cost_per_identify_over_loopback() {
    let p = Params::v1();
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(10_000, 5, &p);
    let probes: Vec<_> = templates[..20]
        .iter()
        .map(|t| encrypt_probe(&key, t))
        .collect();
    for (size, n, fresh) in [(100usize, 300usize, 100usize), (10_000, 30, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let creds = seed_gallery(dir.path(), &key, &templates[..size]);
        let mut rows: Vec<Row> = Vec::new();
        // Alternate plain and TLS twice, so drift on a shared machine hits both.
        for round in 0..2 {
            for tls in [false, true] {
                let mut args = vec!["--rate-limit", "0"];
                if !tls {
                    args.push("--plain-http");
                }
                let server = Server::start_secure(dir.path(), &args);
                let (kept, new_conn) = measure(&server, &creds, &key, &probes, n, fresh, size);
                server.stop();
                rows.push((round, tls, kept, new_conn));
            }
        }
        for (round, tls, kept, new_conn) in &rows {
            println!(
                "1:{size:<6} round {round} {:<5} identify p50 {kept:.2} ms (kept-alive){}",
                if *tls { "https" } else { "http" },
                new_conn
                    .map(|c| format!(", {c:.2} ms with a new connection"))
                    .unwrap_or_default()
            );
        }
        let avg = |tls: bool, f: &dyn Fn(&Row) -> f64| {
            let v: Vec<f64> = rows.iter().filter(|r| r.1 == tls).map(f).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (h, s) = (avg(false, &|r| r.2), avg(true, &|r| r.2));
        println!(
            "1:{size}: http {h:.2} ms, https {s:.2} ms, ratio {:.3} (+{:.2} ms per identify)",
            s / h,
            s - h
        );
        if fresh > 0 {
            let (h, s) = (avg(false, &|r| r.3.unwrap()), avg(true, &|r| r.3.unwrap()));
            println!(
                "1:{size} new connection each: http {h:.2} ms, https {s:.2} ms, ratio {:.3}",
                s / h
            );
        }
    }
}
