//! The matcher as a cluster (issue 22): real `nats-server` processes with JetStream (three,
//! routed on loopback) and real `blindface serve --cluster` nodes. Any node serves any
//! request with exactly a standalone server's answers; writes through two nodes at once
//! never collide; a restarted node catches up; kill -9 of a node and of a NATS server loses
//! no acknowledged enrolment and every identify is exact or refused, never partial.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, erasure, synthetic_templates, EncryptedTemplate,
    Params, SecretKey, Template, TemplateId,
};
use blindface::matcher::{Credentials, Endpoint, Matcher, MatcherError, RemoteMatcher};

mod common;
use common::{metric, Nats, Server};

fn params() -> Params {
    Params::v1()
}

/// One cluster test at a time: each runs three NATS servers and up to four nodes, and
/// several at once on a 2-core machine starve heartbeats and JetStream's elections.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A matcher node on the cluster (plain HTTP on loopback, open registration), its log in
/// `DIR.log`.
fn node(nats: &Nats, data: &Path, extra: &[&str]) -> Server {
    let urls = nats.url_list();
    let mut args = vec![
        "--cluster",
        &urls,
        "--log-replicas",
        "3",
        "--plain-http",
        "--open-registration",
        "--rate-limit",
        "0",
    ];
    args.extend_from_slice(extra);
    let log = data.with_extension("log");
    Server::spawn(&Server::free_addr(), data, &args, Some(&log))
}

/// Three NATS servers and `n` nodes (its directory, kept while the nodes run).
fn cluster(n: usize) -> (tempfile::TempDir, Nats, Vec<Server>) {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(3, dir.path());
    let nodes = (0..n)
        .map(|i| node(&nats, &dir.path().join(format!("node{i}")), &[]))
        .collect();
    (dir, nats, nodes)
}

fn matcher(server: &Server, creds: &Credentials) -> RemoteMatcher {
    let ep = Endpoint::new(&server.url, None, false).unwrap();
    RemoteMatcher::new(&ep, &params(), creds.clone(), Path::new("token"))
}

fn register(server: &Server) -> Credentials {
    RemoteMatcher::register(&Endpoint::new(&server.url, None, false).unwrap(), None).unwrap()
}

/// Every distance of an identify against `templates` (id i+1 is `templates[i]`), checked
/// exact against the plaintext; returns the ids it held.
fn identify_exact(
    m: &RemoteMatcher,
    key: &SecretKey,
    probe_template: &Template,
    templates: &BTreeMap<TemplateId, Template>,
) -> Result<BTreeSet<TemplateId>, MatcherError> {
    let (probe, ctx) = encrypt_probe(key, probe_template);
    let reply = m.identify(&probe)?;
    let distances = decrypt(key, &ctx, &reply.result).expect("the result decrypts");
    let mut ids = BTreeSet::new();
    for d in distances {
        let t = templates
            .get(&d.id)
            .unwrap_or_else(|| panic!("an id never enrolled answered: {}", d.id));
        assert_eq!(d.distance_sq, probe_template.distance_sq(t), "id {}", d.id);
        ids.insert(d.id);
    }
    Ok(ids)
}

/// The same gallery built through three nodes (enrolments spread over them, removals
/// planned on one and applied on another) and on a standalone server: every node's
/// identify decrypts to the standalone one's distances, exactly the plaintext's;
/// the listing agrees slot for slot.
#[test]
fn any_node_answers_exactly_what_a_standalone_server_answers() {
    let _serial = serial();
    let p = params();
    let (dir, _nats, nodes) = cluster(3);
    let standalone = Server::start(&dir.path().join("standalone"), &[]);

    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(40, 7, &p);
    let sealed: Vec<EncryptedTemplate> = templates
        .iter()
        .map(|t| encrypt_template(&key, t))
        .collect();
    let creds = register(&nodes[0]);
    let through: Vec<RemoteMatcher> = nodes.iter().map(|n| matcher(n, &creds)).collect();
    let alone = matcher(&standalone, &register(&standalone));

    for (i, ct) in sealed.iter().enumerate() {
        let id = TemplateId(i as u64 + 1);
        through[i % 3].enrol(id, ct, b"label").unwrap();
        alone.enrol(id, ct, b"label").unwrap();
    }
    // Removals: the block read through one node, the erasure applied through another (the
    // same cancelling ciphertext on both sides, so both galleries stay identical).
    for (k, id) in [3u64, 17, 40].into_iter().enumerate() {
        let id = TemplateId(id);
        let block = through[k % 3].removal_block(id).unwrap();
        let negation = erasure(&key, &block.block, block.location.slot).unwrap();
        through[(k + 1) % 3].erase(id, &negation).unwrap();
        alone.erase(id, &negation).unwrap();
    }
    // A duplicate id is refused through any node, and changes nothing.
    assert!(matches!(
        through[2].enrol(TemplateId(5), &sealed[4], b"again"),
        Err(MatcherError::DuplicateId(TemplateId(5)))
    ));

    let want_list = alone.list().unwrap();
    assert_eq!(want_list.len(), 37);
    let (probe, ctx) = encrypt_probe(&key, &templates[10]);
    let want = decrypt(&key, &ctx, &alone.identify(&probe).unwrap().result).unwrap();
    let want_verify = decrypt(
        &key,
        &ctx,
        &alone.verify(&probe, TemplateId(11)).unwrap().result,
    )
    .unwrap();
    for (i, m) in through.iter().enumerate() {
        assert_eq!(m.list().unwrap(), want_list, "node {i}'s listing");
        // The same ciphertexts give the same distances; the result bits may differ in
        // their noise (the FFT's rounding depends on the plan each process picks).
        let got = m.identify(&probe).unwrap().result;
        let distances = decrypt(&key, &ctx, &got).unwrap();
        assert_eq!(distances, want, "node {i}'s identify");
        assert_eq!(distances.len(), 37);
        for d in distances {
            let t = &templates[d.id.0 as usize - 1];
            assert_eq!(d.distance_sq, templates[10].distance_sq(t));
        }
        let v = m.verify(&probe, TemplateId(11)).unwrap().result;
        assert_eq!(
            decrypt(&key, &ctx, &v).unwrap(),
            want_verify,
            "node {i}'s verify"
        );
    }
    // One admin token for the cluster (printed by the node that created it) reads every
    // node's metrics: each matched its identify's 3 blocks and the verify's 1, and every
    // node has applied the same log.
    let admin = nodes[0]
        .admin_token
        .clone()
        .expect("the first node created the admin token");
    assert!(
        nodes[1..].iter().all(|n| n.admin_token.is_none()),
        "created once"
    );
    // Every node hears the other two (heartbeats routed between the NATS servers; a
    // route still forming can delay them a few seconds).
    for n in &nodes {
        let started = Instant::now();
        while metric(&metrics_of(n, &admin), "blindface_cluster_nodes") != 3.0 {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{} hears {} nodes",
                n.url,
                metric(&metrics_of(n, &admin), "blindface_cluster_nodes")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut matched = 0.0;
    let positions: Vec<f64> = nodes
        .iter()
        .map(|n| {
            let text = metrics_of(n, &admin);
            matched += metric(&text, "blindface_matched_blocks_total");
            assert_eq!(metric(&text, "blindface_templates"), 37.0);
            metric(&text, "blindface_log_position")
        })
        .collect();
    assert_eq!(matched, 12.0, "every block matched once");
    assert!(positions[0] > 40.0, "{positions:?}");
    assert!(
        positions.iter().all(|&p| p == positions[0]),
        "{positions:?}"
    );
}

/// Two clients enrol into one gallery at once through two nodes: every template gets
/// its own slot, none is lost, and the gallery is exact through a third node.
#[test]
fn concurrent_enrolments_through_two_nodes_never_share_a_slot() {
    let _serial = serial();
    let p = params();
    let (_dir, _nats, nodes) = cluster(3);
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(60, 11, &p);
    let creds = register(&nodes[0]);
    std::thread::scope(|s| {
        for (c, through) in nodes.iter().take(2).enumerate() {
            let (m, key, templates) = (matcher(through, &creds), &key, &templates);
            s.spawn(move || {
                for i in (c..60).step_by(2) {
                    let ct = encrypt_template(key, &templates[i]);
                    m.enrol(TemplateId(i as u64 + 1), &ct, b"label").unwrap();
                }
            });
        }
    });
    let third = matcher(&nodes[2], &creds);
    let listed = third.list().unwrap();
    assert_eq!(listed.len(), 60, "no template lost");
    let slots: HashSet<_> = listed
        .iter()
        .map(|e| (e.location.block, e.location.slot))
        .collect();
    assert_eq!(slots.len(), 60, "no slot taken twice");
    assert_eq!(
        listed.iter().map(|e| e.location.block).max(),
        Some(3),
        "packed: 60 in 4 blocks"
    );
    let all: BTreeMap<_, _> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| (TemplateId(i as u64 + 1), t.clone()))
        .collect();
    let ids = identify_exact(&third, &key, &templates[0], &all).unwrap();
    assert_eq!(ids.len(), 60);
}

/// A node stopped while others change the gallery, then restarted on its cache, catches
/// up before it answers; a new node with an empty cache starts from the snapshot node a
/// took (every 10 ops) and applies the log after it; both answer exactly what a node that
/// never stopped answers.
#[test]
fn a_restarted_node_and_a_new_node_catch_up_and_answer_exactly() {
    let _serial = serial();
    let p = params();
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(3, dir.path());
    let snapshots = ["--snapshot-every", "10"];
    let a = node(&nats, &dir.path().join("a"), &snapshots);
    let b = node(&nats, &dir.path().join("b"), &snapshots);
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(30, 5, &p);
    let creds = register(&a);
    let (ma, mb) = (matcher(&a, &creds), matcher(&b, &creds));
    for (i, t) in templates.iter().enumerate().take(20) {
        mb.enrol(TemplateId(i as u64 + 1), &encrypt_template(&key, t), b"l")
            .unwrap();
    }
    b.stop();
    for (i, t) in templates.iter().enumerate().skip(20) {
        ma.enrol(TemplateId(i as u64 + 1), &encrypt_template(&key, t), b"l")
            .unwrap();
    }
    let erase = |id: u64| {
        let block = ma.removal_block(TemplateId(id)).unwrap();
        let negation = erasure(&key, &block.block, block.location.slot).unwrap();
        ma.erase(TemplateId(id), &negation).unwrap();
    };
    erase(2);
    // Node a, alone, takes a snapshot within a few seconds; one more change after it.
    let a_log = dir.path().join("a.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&a_log)
        .unwrap_or_default()
        .contains("snapshot taken")
    {
        assert!(Instant::now() < deadline, "no snapshot within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    erase(9);
    let b = node(&nats, &dir.path().join("b"), &snapshots);
    let fresh = node(&nats, &dir.path().join("fresh"), &snapshots);
    let fresh_log = std::fs::read_to_string(dir.path().join("fresh.log")).unwrap();
    assert!(
        fresh_log.contains("restored the cluster's snapshot"),
        "{fresh_log}"
    );
    let b_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
    assert!(
        !b_log.contains("restored the cluster's snapshot"),
        "a node with a cache keeps it"
    );
    let (probe, ctx) = encrypt_probe(&key, &templates[4]);
    let want = decrypt(&key, &ctx, &ma.identify(&probe).unwrap().result).unwrap();
    let want_list = ma.list().unwrap();
    assert_eq!(want_list.len(), 28);
    for (name, n) in [("restarted", &b), ("new", &fresh)] {
        let m = matcher(n, &creds);
        assert_eq!(m.list().unwrap(), want_list, "{name} node's listing");
        let got = decrypt(&key, &ctx, &m.identify(&probe).unwrap().result).unwrap();
        assert_eq!(got, want, "{name} node's identify");
        for d in got {
            assert_eq!(
                d.distance_sq,
                templates[4].distance_sq(&templates[d.id.0 as usize - 1])
            );
        }
    }
}

/// A 503, or a connection cut mid-request (a node killed while it worked): the request
/// may be sent again.
fn node_unavailable(e: &MatcherError) -> bool {
    matches!(
        e,
        MatcherError::Unreachable { .. } | MatcherError::Busy { .. }
    )
}

/// kill -9 of a matcher node, then of one of the three NATS servers, while two clients
/// enrol and identify in a loop (each given every node's URL: it moves to the next node
/// by itself when one does not answer):
/// every acknowledged enrolment is there afterwards, every identify was exact and held
/// every template acknowledged before it began, or was refused (503) or unreachable;
/// none hung. The killed node, restarted, catches up.
#[test]
fn kill9_of_a_node_and_of_a_nats_server_loses_no_acknowledged_enrolment() {
    let _serial = serial();
    let p = params();
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(3, dir.path());
    let mut nodes: Vec<Option<Server>> = (0..3)
        .map(|i| Some(node(&nats, &dir.path().join(format!("node{i}")), &[])))
        .collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().url.clone())
        .collect();
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(3000, 3, &p);
    let creds = register(nodes[0].as_ref().unwrap());
    let by_id: BTreeMap<TemplateId, Template> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| (TemplateId(i as u64 + 1), t.clone()))
        .collect();
    let acknowledged = Mutex::new(BTreeSet::new());
    let stop = AtomicBool::new(false);
    let (mut answered, mut refused) = (0, 0);
    let mut longest = Duration::ZERO;
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..2)
            .map(|c| {
                let (urls, creds, key, by_id) = (&urls, &creds, &key, &by_id);
                let (acknowledged, stop) = (&acknowledged, &stop);
                s.spawn(move || {
                    // One client of the whole cluster (its nodes' URLs, from a different
                    // first node each): it moves on by itself when a node does not answer.
                    let mut list = urls.clone();
                    list.rotate_left(c);
                    let ep = Endpoint::new(&list.join(","), None, false).unwrap();
                    let m = RemoteMatcher::new(&ep, &params(), creds.clone(), Path::new("t"));
                    let (mut answered, mut refused) = (0, 0);
                    let mut longest = Duration::ZERO;
                    let mut next = c;
                    let mut node_urls = BTreeSet::new();
                    while !stop.load(Ordering::Relaxed) && next < 3000 {
                        let id = TemplateId(next as u64 + 1);
                        let ct = encrypt_template(key, &by_id[&id]);
                        let started = Instant::now();
                        match m.enrol(id, &ct, b"l") {
                            Ok(_) => {
                                acknowledged.lock().unwrap().insert(id);
                                next += 2;
                            }
                            // An enrolment whose answer was lost may have landed: the retry
                            // then finds its id taken, which acknowledges it too.
                            Err(MatcherError::DuplicateId(_)) => {
                                acknowledged.lock().unwrap().insert(id);
                                next += 2;
                            }
                            // 503, or a connection cut mid-request by the kill: try again.
                            Err(e) if node_unavailable(&e) => refused += 1,
                            Err(e) => panic!("client {c}: enrol {id}: {e}"),
                        }
                        longest = longest.max(started.elapsed());
                        node_urls.insert(ep.node_url().to_string());
                        if next % 10 < 2 {
                            let before = acknowledged.lock().unwrap().clone();
                            let started = Instant::now();
                            match identify_exact(&m, key, &by_id[&id], by_id) {
                                Ok(ids) => {
                                    assert!(
                                        before.is_subset(&ids),
                                        "an identify missed acknowledged templates: {:?}",
                                        before.difference(&ids).collect::<Vec<_>>()
                                    );
                                    answered += 1;
                                }
                                Err(e) if node_unavailable(&e) => refused += 1,
                                Err(e) => panic!("client {c}: identify: {e}"),
                            }
                            longest = longest.max(started.elapsed());
                        }
                    }
                    if c == 1 {
                        assert!(
                            node_urls.len() >= 2,
                            "the client of the killed node moved on"
                        );
                    }
                    (answered, refused, longest)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        nodes[1].take().unwrap().kill9();
        std::thread::sleep(Duration::from_secs(3));
        nats.kill9(0);
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let (a, r, l) = c.join().unwrap();
            answered += a;
            refused += r;
            longest = longest.max(l);
        }
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    eprintln!(
        "{} enrolments acknowledged, {answered} identifies answered, {refused} refused or \
         unreachable, longest request {longest:?}",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 20, "the loop made progress");
    assert!(answered >= 4, "identifies were answered");
    assert!(
        longest < Duration::from_secs(30),
        "no request hung: {longest:?}"
    );

    // Every acknowledged enrolment is there, through a surviving node and through the
    // killed one restarted on its cache.
    nodes[1] = Some(node(&nats, &dir.path().join("node1"), &[]));
    for i in [2, 1] {
        let m = matcher(nodes[i].as_ref().unwrap(), &creds);
        // A node whose NATS server was killed may still be reconnecting: it answers 503
        // (never a partial listing) until it is back.
        let started = Instant::now();
        let listed: BTreeSet<TemplateId> = loop {
            match m.list() {
                Ok(l) => break l.into_iter().map(|e| e.id).collect(),
                Err(e @ MatcherError::Busy { .. })
                    if started.elapsed() < Duration::from_secs(30) =>
                {
                    eprintln!("node {i} after the kills: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("node {i} after the kills: {e}"),
            }
        };
        assert!(
            acknowledged.is_subset(&listed),
            "node {i} lost acknowledged enrolments"
        );
        let ids = identify_exact(&m, &key, &templates[0], &by_id).unwrap();
        assert_eq!(ids, listed, "node {i}: the identify covers the listing");
    }
}

/// Bytes JetStream holds for the cluster's log, from a NATS server's monitoring endpoint.
fn log_bytes(nats: &Nats) -> u64 {
    let body: serde_json::Value = ureq::get(format!("{}/jsz?streams=true", nats.monitors[0]))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    body["account_details"][0]["stream_detail"][0]["state"]["bytes"]
        .as_u64()
        .unwrap_or(0)
}

/// What the cluster costs against a standalone server on this machine, for BENCHMARKS.md
/// (`cargo test --release --test cluster -- --ignored --nocapture cluster_costs`): enrol
/// throughput and latency from 4 clients, identify latency, log bytes per template, and a
/// node's start-up with its cache and from the log alone.
#[test]
#[ignore]
fn cluster_costs() {
    let _serial = serial();
    let p = params();
    let n: usize = std::env::var("CLUSTER_COSTS_TEMPLATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(3, dir.path());
    let a = node(
        &nats,
        &dir.path().join("a"),
        &["--max-templates", "2000000"],
    );
    let b = node(
        &nats,
        &dir.path().join("b"),
        &["--max-templates", "2000000"],
    );
    let standalone = Server::start(
        &dir.path().join("standalone"),
        &["--max-templates", "2000000"],
    );
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(n, 9, &p);
    let sealed: Vec<EncryptedTemplate> = templates
        .iter()
        .map(|t| encrypt_template(&key, t))
        .collect();
    let enrol_all = |server: &Server| {
        let creds = register(server);
        let started = Instant::now();
        std::thread::scope(|s| {
            for c in 0..4 {
                let (m, sealed) = (matcher(server, &creds), &sealed);
                s.spawn(move || {
                    for i in (c..n).step_by(4) {
                        m.enrol(TemplateId(i as u64 + 1), &sealed[i], b"label")
                            .unwrap();
                    }
                });
            }
        });
        (creds, started.elapsed())
    };
    let identify_time = |m: &RemoteMatcher| {
        let (probe, _) = encrypt_probe(&key, &templates[0]);
        m.identify(&probe).unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            m.identify(&probe).unwrap();
        }
        started.elapsed() / 10
    };
    let (alone_creds, alone_enrol) = enrol_all(&standalone);
    let (creds, cluster_enrol) = enrol_all(&a);
    let per = |d: Duration| d.as_secs_f64() * 1e3 * 4.0 / n as f64;
    eprintln!("{n} enrolments from 4 clients:");
    eprintln!(
        "  standalone: {:.1} s ({:.0}/s, {:.2} ms each)",
        alone_enrol.as_secs_f64(),
        n as f64 / alone_enrol.as_secs_f64(),
        per(alone_enrol)
    );
    eprintln!(
        "  cluster (3 NATS, R3, 2 nodes): {:.1} s ({:.0}/s, {:.2} ms each)",
        cluster_enrol.as_secs_f64(),
        n as f64 / cluster_enrol.as_secs_f64(),
        per(cluster_enrol)
    );
    let bytes = log_bytes(&nats);
    eprintln!(
        "log: {bytes} bytes, {:.0} per template (one replica)",
        bytes as f64 / n as f64
    );
    let alone_identify = identify_time(&matcher(&standalone, &alone_creds));
    let node_identify = identify_time(&matcher(&b, &creds));
    eprintln!(
        "identify 1:{n}: standalone {alone_identify:?}, through a cluster node {node_identify:?}"
    );

    // Start-up: b restarted on its cache; a new node from the log alone.
    b.stop();
    let started = Instant::now();
    let b = node(
        &nats,
        &dir.path().join("b"),
        &["--max-templates", "2000000"],
    );
    let warm = started.elapsed();
    let started = Instant::now();
    let fresh = node(
        &nats,
        &dir.path().join("fresh"),
        &["--max-templates", "2000000"],
    );
    let cold = started.elapsed();
    eprintln!(
        "start-up: with its cache {warm:?}; from the log alone {cold:?} ({:.0} templates/s)",
        n as f64 / cold.as_secs_f64()
    );
    for s in [&b, &fresh] {
        assert_eq!(matcher(s, &creds).list().unwrap().len(), n);
    }
}

/// `server`'s `/metrics` text, read with the cluster's admin token.
fn metrics_of(server: &Server, admin: &str) -> String {
    Endpoint::new(&server.url, None, false)
        .unwrap()
        .metrics(admin)
        .unwrap()
}

/// `n` templates enrolled through `server` under new credentials (ids 1..=n).
fn gallery_of(server: &Server, key: &SecretKey, templates: &[Template]) -> Credentials {
    let creds = register(server);
    let m = matcher(server, &creds);
    for (i, t) in templates.iter().enumerate() {
        m.enrol(TemplateId(i as u64 + 1), &encrypt_template(key, t), b"l")
            .unwrap();
    }
    creds
}

fn by_id(templates: &[Template]) -> BTreeMap<TemplateId, Template> {
    templates
        .iter()
        .enumerate()
        .map(|(i, t)| (TemplateId(i as u64 + 1), t.clone()))
        .collect()
}

/// The shards a node says it holds (`blindface_shard_held{shard="N"} 1`).
fn shards_held(text: &str) -> BTreeSet<usize> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("blindface_shard_held{shard=\"")?;
            let (shard, value) = rest.split_once("\"} ")?;
            (value.trim() == "1").then(|| shard.parse().unwrap())
        })
        .collect()
}

/// An identify of a 16-block gallery through one of three nodes is split by shard: each
/// node matches exactly the blocks of the shards it says it holds, every shard is held by
/// one node, and the answer is exact. Each node keeps in memory the ciphertexts of its
/// shards' blocks only (all 16 in its cache).
#[test]
fn an_identify_is_split_between_the_nodes_by_shard() {
    let _serial = serial();
    let p = params();
    let (_dir, _nats, nodes) = cluster(3);
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(240, 13, &p);
    let creds = gallery_of(&nodes[0], &key, &templates);
    std::thread::sleep(Duration::from_millis(1500)); // every node has heard the others
    let ids = identify_exact(
        &matcher(&nodes[1], &creds),
        &key,
        &templates[3],
        &by_id(&templates),
    )
    .unwrap();
    assert_eq!(ids.len(), 240);
    let admin = nodes[0].admin_token.clone().unwrap();
    let mut all = BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let text = metrics_of(n, &admin);
        let held = shards_held(&text);
        assert!(!held.is_empty(), "node {i} holds shards");
        assert_eq!(
            metric(&text, "blindface_matched_blocks_total") as usize,
            held.len(),
            "node {i} matched one block per shard it holds (16 blocks: block b in shard b)"
        );
        assert!(
            all.is_disjoint(&held),
            "one holder per shard with --replicas 1"
        );
        assert_eq!(metric(&text, "blindface_blocks"), 16.0, "node {i}");
        // Loading follows the shards on a background thread: give it a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut in_memory = metric(&text, "blindface_blocks_held") as usize;
        while in_memory != held.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let text = metrics_of(n, &admin);
            in_memory = metric(&text, "blindface_blocks_held") as usize;
        }
        assert_eq!(
            in_memory,
            held.len(),
            "node {i} keeps its shards' blocks in memory, one each"
        );
        all.extend(held);
    }
    assert_eq!(all, (0..16).collect(), "every shard held");
}

/// SIGSTOP of a node while an identify needs it: with one holder per shard the identify
/// is 503 (never a partial gallery); once the stopped node has been silent for 5 s its
/// shards move to the live nodes (which load them from their caches) and the identify is
/// exact; with `--replicas 2` the identify succeeds at once, from the second holders.
#[test]
fn a_stopped_node_gives_503_with_one_replica_and_is_covered_with_two() {
    let _serial = serial();
    let p = params();
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(240, 17, &p);
    let all = by_id(&templates);
    for replicas in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start(3, dir.path());
        let nodes: Vec<Server> = (0..3)
            .map(|i| {
                node(
                    &nats,
                    &dir.path().join(format!("node{i}")),
                    &["--replicas", replicas],
                )
            })
            .collect();
        let creds = gallery_of(&nodes[0], &key, &templates);
        std::thread::sleep(Duration::from_millis(1500));
        let m = matcher(&nodes[0], &creds);
        assert_eq!(
            identify_exact(&m, &key, &templates[0], &all).unwrap().len(),
            240
        );
        // Stop the node (of the two the request does not go to) holding more shards.
        let admin = nodes[0].admin_token.clone().unwrap();
        let held = |i: usize| {
            let text = metrics_of(&nodes[i], &admin);
            shards_held(&text).len()
        };
        let stopped = if held(1) >= held(2) { 1 } else { 2 };
        assert!(held(stopped) > 0);
        let pid = nodes[stopped].child.id().to_string();
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        let started = Instant::now();
        let outcome = identify_exact(&m, &key, &templates[0], &all);
        let took = started.elapsed();
        if replicas == "1" {
            assert!(
                matches!(
                    outcome,
                    Err(MatcherError::Busy {
                        retry_after: Some(_),
                        ..
                    })
                ),
                "one replica: {outcome:?}"
            );
            std::thread::sleep(Duration::from_secs(5));
            let ids = identify_exact(&m, &key, &templates[0], &all).unwrap();
            assert_eq!(ids.len(), 240, "its shards moved to the live nodes");
        } else {
            assert_eq!(outcome.unwrap().len(), 240, "two replicas");
        }
        assert!(took < Duration::from_secs(15), "no hang: {took:?}");
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap();
    }
}

/// CPU seconds a process has used (user + system, from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// How an identify's work divides between 1, 2 and 4 nodes, for BENCHMARKS.md
/// (`CLUSTER_SCALING_TEMPLATES=100000 cargo test --release --test cluster -- --ignored
/// --nocapture cluster_scaling`): per node, blocks matched and CPU seconds per identify,
/// the taking node's share beyond its own blocks (fan-out and merge), and the start-up of
/// a node from the log alone.
#[test]
#[ignore]
fn cluster_scaling() {
    let _serial = serial();
    let p = params();
    let n: usize = std::env::var("CLUSTER_SCALING_TEMPLATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds = 5;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(3, dir.path());
    let wide = [
        "--max-templates",
        "2000000",
        "--memory-budget",
        "16GiB",
        "--max-tenant-bytes",
        "16GiB",
        "--snapshot-every",
        "10000",
    ];
    let first = node(&nats, &dir.path().join("node0"), &wide);
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(n, 29, &p);
    let creds = register(&first);
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..4 {
            let (m, key, templates) = (matcher(&first, &creds), &key, &templates);
            s.spawn(move || {
                for i in (c..n).step_by(4) {
                    m.enrol(
                        TemplateId(i as u64 + 1),
                        &encrypt_template(key, &templates[i]),
                        b"l",
                    )
                    .unwrap();
                }
            });
        }
    });
    eprintln!(
        "{n} templates enrolled through one node in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The nodes below start from node 0's last snapshot (taken every 10,000 changes: the
    // last within 10,000 of the end) and apply the log after it.
    let waited = Instant::now();
    let log = dir.path().join("node0.log");
    let snapshot_at = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("snapshot taken"))
            .filter_map(|l| {
                l.split("position=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    while snapshot_at() + 10_000 <= n && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "snapshot at position {} ready {:.1} s after the last enrolment",
        snapshot_at(),
        waited.elapsed().as_secs_f64()
    );
    let mut nodes = vec![first];
    for i in 1..4 {
        let started = Instant::now();
        nodes.push(node(&nats, &dir.path().join(format!("node{i}")), &wide));
        eprintln!(
            "node {i} started from the snapshot and the log after it in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let admin = nodes[0].admin_token.clone().unwrap();
    let scrape = |s: &Server, series: &str| {
        let text = metrics_of(s, &admin);
        metric(&text, series)
    };
    let matched = |s: &Server| scrape(s, "blindface_matched_blocks_total");
    let blocks = n.div_ceil(p.slots_per_block());
    let (probe, ctx) = encrypt_probe(&key, &templates[7]);
    // 4 nodes, then 2 (nodes 2 and 3 stopped), then 1.
    for live in [4usize, 2, 1] {
        while nodes.len() > live {
            nodes.pop().unwrap().stop();
        }
        // The stopped ones are forgotten; then each node's memory once it holds its
        // shards' blocks (loaded in the background).
        std::thread::sleep(Duration::from_secs(6));
        let shard_load = Instant::now();
        for (i, s) in nodes.iter().enumerate() {
            let mut last = -1.0;
            loop {
                let held = scrape(s, "blindface_blocks_held");
                if held == last {
                    break;
                }
                last = held;
                std::thread::sleep(Duration::from_secs(2));
            }
            eprintln!(
                "  node {i}: {last:.0} of {blocks} blocks held ({:.1}%), RSS {:.0} MB (steady after {:.1} s)",
                100.0 * last / blocks as f64,
                rss_mb(s.child.id()),
                shard_load.elapsed().as_secs_f64()
            );
        }
        let m = matcher(&nodes[0], &creds);
        let check = m.identify(&probe).unwrap();
        assert_eq!(decrypt(&key, &ctx, &check.result).unwrap().len(), n);
        let before: Vec<(f64, f64)> = nodes
            .iter()
            .map(|s| (matched(s), cpu_seconds(s.child.id())))
            .collect();
        let started = Instant::now();
        for _ in 0..rounds {
            m.identify(&probe).unwrap();
        }
        let wall = started.elapsed().as_secs_f64() / rounds as f64;
        eprintln!("{live} node(s), 1:{n} ({blocks} blocks), {rounds} identifies through node 0, {wall:.3} s each:");
        for (i, s) in nodes.iter().enumerate() {
            let blocks_each = (matched(s) - before[i].0) / rounds as f64;
            let cpu_each = (cpu_seconds(s.child.id()) - before[i].1) / rounds as f64;
            eprintln!(
                "  node {i}: {blocks_each:.0} blocks ({:.1}%), {cpu_each:.3} CPU s per identify ({:.1} µs per block)",
                100.0 * blocks_each / blocks as f64,
                1e6 * cpu_each / blocks_each.max(1.0)
            );
        }
    }
}

/// One cluster identity over TLS (the default): every node presents the certificate the
/// first node created and put in the log, the admin token the first node printed works
/// on every node, and one client endpoint listing both nodes pins that certificate
/// once, registers once (an invitation made through one node, used through the other)
/// and carries on through the second node when the first is killed.
#[test]
fn one_certificate_one_admin_token_and_one_pin_for_the_whole_cluster() {
    let _serial = serial();
    let p = params();
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(3, dir.path());
    let urls = nats.url_list();
    let secure = |name: &str| {
        let data = dir.path().join(name);
        let log = data.with_extension("log");
        Server::spawn(
            &Server::free_addr(),
            &data,
            &["--cluster", &urls, "--rate-limit", "0"],
            Some(&log),
        )
    };
    let a = secure("a");
    let b = secure("b");
    assert!(a.url.starts_with("https://") && b.url.starts_with("https://"));
    assert_eq!(a.fingerprint, b.fingerprint, "one certificate");
    let admin = a
        .admin_token
        .clone()
        .expect("the first node created the admin token");
    assert!(b.admin_token.is_none());

    let both = format!("{},{}", a.url, b.url);
    let ep = Endpoint::new(&both, None, false).unwrap();
    let code = Endpoint::new(&b.url, ep.fingerprint(), false)
        .unwrap()
        .create_invites(&admin, 1)
        .unwrap()
        .remove(0);
    let creds = RemoteMatcher::register(&ep, Some(&code)).unwrap();
    let pinned = ep.fingerprint().expect("pinned on first use");
    assert_eq!(Some(pinned.to_string()), a.fingerprint);
    let m = RemoteMatcher::new(&ep, &p, creds, Path::new("t"));
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(20, 31, &p);
    for (i, t) in templates.iter().enumerate() {
        m.enrol(TemplateId(i as u64 + 1), &encrypt_template(&key, t), b"l")
            .unwrap();
    }
    assert_eq!(ep.node_url(), a.url, "the first node while it answers");
    a.kill9();
    let ids = identify_exact(&m, &key, &templates[5], &by_id(&templates)).unwrap();
    assert_eq!(ids.len(), 20);
    assert_eq!(ep.node_url(), b.url, "moved to the second node");
    assert_eq!(ep.fingerprint(), Some(pinned), "the same pin");
}
