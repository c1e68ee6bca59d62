//! Loopback benchmark of the remote matcher: identify latency percentiles (one client) and
//! requests per second (4 clients) against galleries of 100 and 1,500 templates.
//! Ignored by default; run with
//! `cargo test --release --test matcher_bench -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, synthetic_templates, Params, SecretKey, TemplateId,
};
use blindface::matcher::{Matcher, RemoteMatcher};

mod common;
use common::Server;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[test]
#[ignore]
fn identify_over_loopback() {
    let p = Params::v1();
    let key = SecretKey::generate(&p);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let creds = RemoteMatcher::register(&url).unwrap();
    let tokens = dir.path().join("tokens.json");
    let m = RemoteMatcher::new(&url, &p, creds.clone(), &tokens);
    let templates = synthetic_templates(1500, 5, &p);
    let probes: Vec<_> = templates[..50]
        .iter()
        .map(|t| encrypt_probe(&key, t))
        .collect();
    let mut enrolled = 0;
    for size in [100usize, 1500] {
        let start = Instant::now();
        for (i, t) in templates[enrolled..size].iter().enumerate() {
            m.enrol(
                TemplateId((enrolled + i + 1) as u64),
                &encrypt_template(&key, t),
                b"bench-label-0000000000000000000000000000000000000",
            )
            .unwrap();
        }
        let enrol_ms = start.elapsed().as_secs_f64() * 1e3 / (size - enrolled) as f64;
        enrolled = size;
        // Warm up, and check exactness once.
        let r = m.identify(&probes[0].0).unwrap().result;
        let t0 = Instant::now();
        let d = decrypt(&key, &probes[0].1, &r).unwrap();
        let decrypt_ms = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(d.len(), size);
        let result_bytes = r.to_bytes().len();

        // Latency, one client.
        let n = if size <= 100 { 300 } else { 100 };
        let mut lat: Vec<Duration> = (0..n)
            .map(|i| {
                let t = Instant::now();
                m.identify(&probes[i % probes.len()].0).unwrap();
                t.elapsed()
            })
            .collect();
        lat.sort();

        // Throughput, 4 clients for 4 seconds.
        let window = Duration::from_secs(4);
        let start = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|c| {
                    let (url, creds, probes, tokens) = (&url, creds.clone(), &probes, &tokens);
                    s.spawn(move || {
                        let m = RemoteMatcher::new(url, &p, creds, tokens);
                        let mut k = 0;
                        while start.elapsed() < window {
                            m.identify(&probes[(c * 13 + k) % probes.len()].0).unwrap();
                            k += 1;
                        }
                        k
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let rps = total as f64 / start.elapsed().as_secs_f64();
        println!(
            "gallery {size:>5}: identify p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (1 client, {n} requests); \
             {rps:.0} req/s (4 clients); result {result_bytes} bytes; app decrypt {decrypt_ms:.2} ms; enrol {enrol_ms:.2} ms each",
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
    }
    drop(server);
}
