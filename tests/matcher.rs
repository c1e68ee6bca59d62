//! Matcher end to end: the real `blindface serve` process on 127.0.0.1 (ephemeral ports,
//! real store files) and the built-in matcher. Real faces, persistence across restarts,
//! kill -9 in the middle of enrolments, concurrent clients with exact distances, bad
//! input with the right 4xx and an unchanged gallery, and no plaintext name in the store.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blindface::he::EncryptedTemplate;
use blindface::he::{
    decrypt, decrypt_for, encrypt_probe, encrypt_template, quantise, synthetic_templates, Params,
    SecretKey, Template, TemplateId, Threshold,
};
use blindface::labels::LabelKey;
use blindface::matcher::{
    BuiltinMatcher, Credentials, Endpoint, Matcher, MatcherError, RemoteMatcher,
};
use blindface::vision::{load_image, FacePipeline, SFACE_L2_THRESHOLD};

mod common;
use common::BIN;

use common::Server;

fn params() -> Params {
    Params::v1()
}

fn key() -> Arc<SecretKey> {
    Arc::new(SecretKey::generate(&params()))
}

/// The token file named in messages (tests hand credentials over directly).
const TOKENS: &str = "tokens.json";

/// Removes `id` as the app does: the block from the matcher, the erasure from the key.
fn remove_as_owner(m: &dyn Matcher, key: &SecretKey, id: TemplateId) -> Result<(), MatcherError> {
    let r = m.removal_block(id)?;
    let negation = blindface::he::erasure(key, &r.block, r.location.slot)?;
    m.erase(id, &negation).map(|_| ())
}

/// A loopback endpoint (plain HTTP, or HTTPS pinned on first use).
fn endpoint(url: &str) -> Endpoint {
    Endpoint::new(url, None, false).expect("loopback endpoint")
}

fn remote_with(url: &str, c: Credentials) -> RemoteMatcher {
    RemoteMatcher::new(&endpoint(url), &params(), c, Path::new(TOKENS))
}

/// Registers on an open-registration server.
fn register(url: &str) -> Credentials {
    RemoteMatcher::register(&endpoint(url), None).expect("register")
}

fn remote(url: &str) -> RemoteMatcher {
    remote_with(url, register(url))
}

fn builtin(dir: &Path) -> Result<BuiltinMatcher, MatcherError> {
    BuiltinMatcher::open(dir, &params(), "test-owner")
}

/// A fresh random template id, as the app picks them.
fn fresh_id() -> TemplateId {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    TemplateId(u64::from_le_bytes(b) % (TemplateId::LIMIT - 1) + 1)
}

/// Enrolment as the app does it: a fresh id and the name sealed to it.
trait EnrolNamed {
    fn enrol_named(
        &self,
        labels: &LabelKey,
        ct: &EncryptedTemplate,
        name: &str,
    ) -> Result<TemplateId, MatcherError>;
}

impl<M: Matcher + ?Sized> EnrolNamed for M {
    fn enrol_named(
        &self,
        labels: &LabelKey,
        ct: &EncryptedTemplate,
        name: &str,
    ) -> Result<TemplateId, MatcherError> {
        let id = fresh_id();
        self.enrol(id, ct, &labels.seal(name, id).unwrap())?;
        Ok(id)
    }
}

/// Checks every decrypted distance of an identify against the plaintext, returns them.
fn identify_exact(
    m: &dyn Matcher,
    key: &SecretKey,
    probe: &Template,
    known: &BTreeMap<TemplateId, Template>,
) -> Vec<(TemplateId, i64)> {
    let (p, ctx) = encrypt_probe(key, probe);
    let result = m.identify(&p).expect("identify").result;
    let mut out = Vec::new();
    for d in decrypt(key, &ctx, &result).expect("decrypt") {
        let t = known
            .get(&d.id)
            .unwrap_or_else(|| panic!("unknown id {}", d.id));
        assert_eq!(d.distance_sq, probe.distance_sq(t), "id {}", d.id);
        out.push((d.id, d.distance_sq));
    }
    out.sort_by_key(|&(id, d)| (d, id));
    out
}

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces");
    if dir.join("obama.jpg").exists() {
        dir
    } else {
        PathBuf::from("/work/shared/fixtures/faces")
    }
}

fn face_templates(names: &[&str]) -> HashMap<String, Template> {
    let pipeline = FacePipeline::load_default().expect("models and ONNX Runtime");
    names
        .iter()
        .map(|n| {
            let img = load_image(fixtures().join(n)).unwrap();
            let (_, e) = pipeline.embed_largest(&img).unwrap();
            (
                n.to_string(),
                quantise(e.as_slice(), &params()).unwrap().template,
            )
        })
        .collect()
}

/// The third face of obama_and_biden.jpg (the child, the smallest face): a stranger.
fn stranger_template() -> Template {
    let pipeline = FacePipeline::load_default().expect("models and ONNX Runtime");
    let img = load_image(fixtures().join("obama_and_biden.jpg")).unwrap();
    let faces = pipeline.detect(&img).unwrap();
    assert_eq!(faces.len(), 3);
    let child = faces
        .iter()
        .min_by(|a, b| a.area().total_cmp(&b.area()))
        .unwrap();
    let e = pipeline.embed(&img, child).unwrap();
    quantise(e.as_slice(), &params()).unwrap().template
}

/// Enrols real faces (plus a synthetic third "person"), identifies other photos of each,
/// and strangers (the child in obama_and_biden.jpg; Biden against a gallery of Obama
/// only); over HTTP and built-in.
#[test]
fn real_faces_identify_and_verify_over_http_and_builtin() {
    let faces = face_templates(&[
        "obama.jpg",
        "biden.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "biden2.jpg",
    ]);
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let threshold = Threshold::new(SFACE_L2_THRESHOLD, &p);
    let third = synthetic_templates(1, 7, &p).remove(0);
    let stranger = stranger_template();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let http = remote(&server.url);
    let builtin = builtin(&dir.path().join("builtin")).unwrap();
    for m in [&http as &dyn Matcher, &builtin as &dyn Matcher] {
        let mut known = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (name, t) in [
            ("Barack Obama", &faces["obama.jpg"]),
            ("Joe Biden", &faces["biden.jpg"]),
            ("Synthetic Third", &third),
        ] {
            let id = m
                .enrol_named(&labels, &encrypt_template(&key, t), name)
                .unwrap();
            known.insert(id, t.clone());
            names.insert(id, name);
        }
        let listed = m.list().unwrap();
        assert_eq!(listed.len(), 3);
        for e in &listed {
            assert_eq!(labels.open(&e.label, e.id).unwrap(), names[&e.id]);
        }
        for (photo, who) in [
            ("obama2.jpg", "Barack Obama"),
            ("obama3.jpg", "Barack Obama"),
            ("biden2.jpg", "Joe Biden"),
        ] {
            let ranked = identify_exact(m, &key, &faces[photo], &known);
            assert_eq!(ranked.len(), 3);
            assert_eq!(names[&ranked[0].0], who, "{photo} on {}", m.describe());
            assert!(
                threshold.accepts(ranked[0].1),
                "{photo}: genuine pair must match"
            );
            assert!(
                !threshold.accepts(ranked[1].1),
                "{photo}: others must not match"
            );
            // 1:1 against the right person and the wrong one.
            let (probe, ctx) = encrypt_probe(&key, &faces[photo]);
            for (&id, t) in &known {
                let r = m.verify(&probe, id).unwrap().result;
                let d = decrypt_for(&key, &ctx, &r, id).unwrap();
                assert_eq!(d.distance_sq, faces[photo].distance_sq(t));
                assert_eq!(threshold.accepts(d.distance_sq), names[&id] == who);
            }
        }
        // A stranger (the child in obama_and_biden.jpg): nobody matches.
        let ranked = identify_exact(m, &key, &stranger, &known);
        assert_eq!(ranked.len(), 3);
        assert!(!threshold.accepts(ranked[0].1), "a stranger must not match");
    }

    // A stranger: Biden's photo against a gallery holding only Obama.
    let other = remote(&server.url);
    let id = other
        .enrol_named(
            &labels,
            &encrypt_template(&key, &faces["obama.jpg"]),
            "Barack Obama",
        )
        .unwrap();
    let known = BTreeMap::from([(id, faces["obama.jpg"].clone())]);
    let ranked = identify_exact(&other, &key, &faces["biden2.jpg"], &known);
    assert_eq!(ranked.len(), 1);
    assert!(!threshold.accepts(ranked[0].1), "a stranger must not match");
    server.stop();
}

/// The CLI end to end over the remote matcher: keygen, enrol, identify --json, verify,
/// list, remove; and enrol without a key refuses with a pointer to keygen.
#[test]
fn cli_gallery_commands_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let key = dir.path().join("me.key");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--key")
            .arg(&key)
            .args(["--matcher", &server.url, "--json"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let f = |n: &str| fixtures().join(n).display().to_string();
    let (ok, _, err) = run(&["enrol", "--name", "Barack Obama", &f("obama.jpg")]);
    assert!(!ok);
    assert!(err.contains("blindface keygen"), "{err}");
    assert!(run(&["keygen"]).0);
    for (name, img) in [("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")] {
        let (ok, out, err) = run(&["enrol", "--name", name, &f(img)]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], name);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tf = PathBuf::from(format!("{}.matcher.json", key.display()));
        let mode = std::fs::metadata(&tf).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, out, err) = run(&["identify", &f("obama2.jpg")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = v["matches"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["name"], "Barack Obama");
    assert_eq!(m[0]["same_person"], true);
    assert_eq!(m[1]["name"], "Joe Biden");
    assert_eq!(m[1]["same_person"], false);
    assert!(m[0]["l2"].as_f64().unwrap() < m[1]["l2"].as_f64().unwrap());

    let (ok, out, err) = run(&["verify", "--name", "Joe Biden", &f("biden2.jpg")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matches"][0]["same_person"], true);
    let (ok, out, _) = run(&["verify", "--name", "Joe Biden", &f("obama2.jpg")]);
    assert!(!ok, "not verified: exit 1, with the JSON all the same");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matches"][0]["same_person"], false);

    let (ok, out, _) = run(&["list"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 2);
    assert!(run(&["remove", "--name", "Joe Biden"]).0);
    let (ok, _, err) = run(&["verify", "--name", "Joe Biden", &f("biden2.jpg")]);
    assert!(!ok);
    assert!(err.contains("blindface list"), "{err}");
    let (_, out, _) = run(&["list"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["templates"][0]["name"], "Barack Obama");
}

/// Enrol, stop, restart on the same data: same results (server and built-in).
#[test]
fn galleries_survive_restarts() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let templates = synthetic_templates(40, 11, &p);
    let probe = &templates[3];
    let dir = tempfile::tempdir().unwrap();

    // Server.
    let data = dir.path().join("server");
    let server = Server::start(&data, &[]);
    let creds = register(&server.url);
    let m = remote_with(&server.url, creds.clone());
    let mut known = BTreeMap::new();
    for (i, t) in templates.iter().enumerate() {
        let id = m
            .enrol_named(&labels, &encrypt_template(&key, t), &format!("person {i}"))
            .unwrap();
        known.insert(id, t.clone());
    }
    // Remove someone other than the probe (ids are random, so pick by template).
    let removed = *known.iter().find(|(_, t)| *t != probe).unwrap().0;
    remove_as_owner(&m, &key, removed).unwrap();
    known.remove(&removed);
    let before = identify_exact(&m, &key, probe, &known);
    assert_eq!(before.len(), 39);
    assert_eq!(before[0].1, 0, "the probe itself is enrolled");
    server.stop();
    let server = Server::start(&data, &[]);
    let m = remote_with(&server.url, creds);
    assert_eq!(identify_exact(&m, &key, probe, &known), before);
    assert_eq!(m.list().unwrap().len(), 39);
    assert!(matches!(
        remove_as_owner(&m, &key, removed),
        Err(MatcherError::UnknownId(_))
    ));

    // Built-in.
    let data = dir.path().join("builtin");
    let mut known = BTreeMap::new();
    let before = {
        let b = builtin(&data).unwrap();
        for t in &templates[..20] {
            let id = b
                .enrol_named(&labels, &encrypt_template(&key, t), "x")
                .unwrap();
            known.insert(id, t.clone());
        }
        // A second opener is refused while the first holds the store.
        assert!(matches!(
            builtin(&data),
            Err(MatcherError::StoreLocked { .. })
        ));
        identify_exact(&b, &key, probe, &known)
    };
    let b = builtin(&data).unwrap();
    assert_eq!(b.len(), 20);
    assert_eq!(identify_exact(&b, &key, probe, &known), before);
}

/// kill -9 in the middle of a stream of enrolments: every acknowledged enrolment is
/// there after restart and matches exactly; at most the one in flight is extra.
#[test]
fn kill9_during_enrolments_loses_nothing_acknowledged() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let templates = synthetic_templates(400, 21, &p);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data, &[]);
    let creds = register(&server.url);
    let acked: Arc<Mutex<BTreeMap<TemplateId, usize>>> = Arc::default();
    let in_flight = Arc::new(Mutex::new(None::<usize>));
    let writer = {
        let (acked, in_flight, url, creds, key) = (
            acked.clone(),
            in_flight.clone(),
            server.url.clone(),
            creds.clone(),
            key.clone(),
        );
        let cts: Vec<_> = templates
            .iter()
            .map(|t| encrypt_template(&key, t))
            .collect();
        let labels = LabelKey::from_secret(&key);
        std::thread::spawn(move || {
            let m = remote_with(&url, creds);
            for (i, ct) in cts.iter().enumerate() {
                *in_flight.lock().unwrap() = Some(i);
                match m.enrol_named(&labels, ct, "someone") {
                    Ok(id) => {
                        acked.lock().unwrap().insert(id, i);
                    }
                    Err(_) => return,
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 40 {
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill9();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let in_flight = in_flight.lock().unwrap().unwrap();
    assert!(
        acked.len() >= 40 && acked.len() < 400,
        "the kill landed mid-stream"
    );

    let server = Server::start(&data, &[]);
    let m = remote_with(&server.url, creds);
    let listed = m.list().unwrap();
    let mut known: BTreeMap<TemplateId, Template> = acked
        .iter()
        .map(|(&id, &i)| (id, templates[i].clone()))
        .collect();
    let extra: Vec<_> = listed
        .iter()
        .filter(|e| !known.contains_key(&e.id))
        .collect();
    assert!(
        extra.len() <= 1,
        "only the in-flight enrolment may be extra"
    );
    for e in &extra {
        known.insert(e.id, templates[in_flight].clone());
    }
    for id in acked.keys() {
        assert!(
            listed.iter().any(|e| e.id == *id),
            "acknowledged id {id} lost"
        );
    }
    for e in &listed {
        assert_eq!(labels.open(&e.label, e.id).unwrap(), "someone");
    }
    let ranked = identify_exact(&m, &key, &templates[0], &known);
    assert_eq!(ranked.len(), listed.len());
    assert_eq!(ranked[0].1, 0);
    // And every template verifies exactly 1:1.
    let (probe, ctx) = encrypt_probe(&key, &templates[1]);
    for (&id, t) in known.iter().take(10) {
        let r = m.verify(&probe, id).unwrap().result;
        let d = decrypt_for(&key, &ctx, &r, id).unwrap();
        assert_eq!(d.distance_sq, templates[1].distance_sq(t));
    }
}

/// 8 clients x 100 mixed requests on one gallery; every decrypted distance exact.
#[test]
fn eight_concurrent_clients_get_exact_distances() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let pool = synthetic_templates(400, 31, &p);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let creds = register(&server.url);
    let known: Arc<Mutex<BTreeMap<TemplateId, Template>>> = Arc::default();
    {
        let m = remote_with(&server.url, creds.clone());
        for t in &pool[..30] {
            let id = m
                .enrol_named(&labels, &encrypt_template(&key, t), "seed")
                .unwrap();
            known.lock().unwrap().insert(id, t.clone());
        }
    }
    type Observation = (Template, Vec<(TemplateId, i64)>);
    let observed: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let threads: Vec<_> = (0..8)
        .map(|c| {
            let (known, observed, url, creds, key, pool) = (
                known.clone(),
                observed.clone(),
                server.url.clone(),
                creds.clone(),
                key.clone(),
                pool.clone(),
            );
            let labels = LabelKey::from_secret(&key);
            std::thread::spawn(move || {
                let m = remote_with(&url, creds);
                let mut mine: Vec<TemplateId> = Vec::new();
                for i in 0..100usize {
                    let t = &pool[30 + (c * 37 + i * 7) % 370];
                    match i % 10 {
                        0 | 1 => {
                            let id = m
                                .enrol_named(&labels, &encrypt_template(&key, t), "client")
                                .unwrap();
                            known.lock().unwrap().insert(id, t.clone());
                            mine.push(id);
                        }
                        2 if mine.len() > 1 => {
                            remove_as_owner(&m, &key, mine.remove(0)).unwrap();
                        }
                        2..=6 => {
                            let (probe, ctx) = encrypt_probe(&key, t);
                            let r = m.identify(&probe).unwrap().result;
                            let d = decrypt(&key, &ctx, &r).unwrap();
                            assert!(d.len() >= 30);
                            observed.lock().unwrap().push((
                                t.clone(),
                                d.iter().map(|d| (d.id, d.distance_sq)).collect(),
                            ));
                        }
                        7 | 8 => {
                            let id = mine
                                .last()
                                .copied()
                                .unwrap_or_else(|| *known.lock().unwrap().keys().next().unwrap());
                            let (probe, ctx) = encrypt_probe(&key, t);
                            let r = m.verify(&probe, id).unwrap().result;
                            let d = decrypt_for(&key, &ctx, &r, id).unwrap();
                            observed
                                .lock()
                                .unwrap()
                                .push((t.clone(), vec![(d.id, d.distance_sq)]));
                        }
                        _ => {
                            assert!(m.list().unwrap().len() >= 30);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let known = known.lock().unwrap();
    let observed = observed.lock().unwrap();
    assert!(observed.len() >= 8 * 60);
    let mut checked = 0;
    for (probe, distances) in observed.iter() {
        for &(id, d) in distances {
            assert_eq!(d, probe.distance_sq(&known[&id]), "id {id}");
            checked += 1;
        }
    }
    assert!(checked > 8 * 40 * 30);
    // Final state: 30 seeds + 8 x (20 enrolled - 10 removed).
    let m = remote_with(&server.url, creds);
    assert_eq!(m.list().unwrap().len(), 30 + 8 * 10);
}

fn raw(method: &str, url: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let full = format!("{url}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                agent.get(&full)
            } else {
                agent.delete(&full)
            };
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&full);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.content_type("application/octet-stream").send(body)
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, text)
}

/// Sends only the headers of a body announced as `len` bytes; returns the reply.
fn oversized(url: &str, path: &str, token: &str, len: usize) -> String {
    let host = url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(host).unwrap();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn error_of(text: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    v["error"].as_str().expect("an error message").to_string()
}

/// Bad input of every kind: the right 4xx, a JSON message, the gallery unchanged.
#[test]
fn bad_requests_get_clear_4xx_and_change_nothing() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let templates = synthetic_templates(5, 41, &p);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &["--max-templates", "4"]);
    let url = server.url.clone();
    let a: Credentials = register(&url);
    let b: Credentials = register(&url);
    assert_ne!(a.token, b.token);
    let ma = remote_with(&url, a.clone());
    let mb = remote_with(&url, b.clone());
    let mut known = BTreeMap::new();
    for t in &templates[..3] {
        let id = ma
            .enrol_named(&labels, &encrypt_template(&key, t), "a")
            .unwrap();
        known.insert(id, t.clone());
    }
    let a_id = *known.keys().next().unwrap();
    let before = identify_exact(&ma, &key, &templates[0], &known);
    let (probe, _) = encrypt_probe(&key, &templates[0]);
    let probe_bytes = probe.to_bytes();

    // Health and version need no token.
    let (s, t) = raw("GET", &url, "/v1/health", None, b"");
    assert_eq!((s, t.contains("ok")), (200, true));
    let (s, t) = raw("GET", &url, "/v1/version", None, b"");
    assert_eq!(s, 200);
    assert!(t.contains("wire_version"));

    // No token, wrong token.
    let (s, t) = raw("POST", &url, "/v1/identify", None, &probe_bytes);
    assert_eq!(s, 401);
    assert!(error_of(&t).contains("Bearer"));
    let (s, t) = raw("GET", &url, "/v1/templates", Some(&"0".repeat(64)), b"");
    assert_eq!(s, 401);
    assert!(error_of(&t).contains("unknown token"));
    let bad = remote_with(
        &url,
        Credentials {
            tenant: a.tenant.clone(),
            token: "nope".into(),
        },
    );
    assert!(matches!(bad.list(), Err(MatcherError::Unauthorized { .. })));

    // The other tenant sees nothing of A and cannot touch A's ids.
    assert!(mb.list().unwrap().is_empty());
    assert!(
        matches!(remove_as_owner(&mb, &key, a_id), Err(MatcherError::UnknownId(id)) if id == a_id)
    );
    assert!(matches!(
        mb.verify(&probe, a_id),
        Err(MatcherError::UnknownId(_))
    ));
    assert_eq!(
        decrypt(
            &key,
            &encrypt_probe(&key, &templates[0]).1,
            &mb.identify(&probe).unwrap().result
        )
        .unwrap()
        .len(),
        0
    );
    let (s, t) = raw(
        "GET",
        &url,
        &format!("/v1/templates/{a_id}/block"),
        Some(&b.token),
        b"",
    );
    assert_eq!(s, 404);
    assert!(error_of(&t).contains("no template"));
    // A plain DELETE cannot remove anything: removal needs the key holder.
    let (s, t) = raw(
        "DELETE",
        &url,
        &format!("/v1/templates/{a_id}"),
        Some(&a.token),
        b"",
    );
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("key holder"));

    // Probe bodies: truncated, garbage, wrong version, wrong parameters, empty.
    let tok = Some(a.token.as_str());
    let mut wrong_version = probe_bytes.clone();
    wrong_version[4] = 9;
    let mut wrong_params = probe_bytes.clone();
    wrong_params[8] ^= 0x01;
    let mut flipped = probe_bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    for (what, body, expect) in [
        (
            "truncated",
            &probe_bytes[..probe_bytes.len() / 2],
            "corrupt",
        ),
        ("garbage", &b"hello, matcher"[..], "not a blindface"),
        ("wrong version", &wrong_version[..], "version"),
        ("wrong params", &wrong_params[..], "parameters"),
        ("corrupted", &flipped[..], "checksum"),
        ("empty", &b""[..], "not a blindface"),
    ] {
        for path in ["/v1/identify".to_string(), format!("/v1/verify/{a_id}")] {
            let (s, t) = raw("POST", &url, &path, tok, body);
            assert_eq!(s, 400, "{what} on {path}: {t}");
            let e = error_of(&t);
            assert!(e.contains(expect), "{what}: {e}");
        }
    }
    // A template where a probe belongs.
    let (s, t) = raw(
        "POST",
        &url,
        "/v1/identify",
        tok,
        &encrypt_template(&key, &templates[0]).to_bytes(),
    );
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("encrypted probe"));

    // Enrol bodies: not JSON, bad base64, a probe as a template, oversized.
    let enrol = |body: &[u8]| raw("POST", &url, "/v1/templates", tok, body);
    let (s, t) = enrol(b"not json");
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("expected JSON"));
    let (s, t) = enrol(br#"{"id": 5, "template": "!!!", "label": ""}"#);
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("base64"));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body =
        serde_json::json!({"id": 5, "template": b64.encode(&probe_bytes[..1000]), "label": ""});
    let (s, t) = enrol(body.to_string().as_bytes());
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("encrypted template"));
    // Oversized bodies, announced by Content-Length: refused before the body is read.
    for (path, len) in [("/v1/templates", 200_000), ("/v1/identify", 50_000_000)] {
        let reply = oversized(&url, path, &a.token, len);
        assert!(reply.starts_with("HTTP/1.1 413"), "{path}: {reply}");
        assert!(reply.contains("too large"), "{path}: {reply}");
    }
    // Label too long.
    let body = serde_json::json!({
        "id": 5,
        "template": b64.encode(encrypt_template(&key, &templates[3]).to_bytes()),
        "label": b64.encode(vec![0u8; 5000]),
    });
    let (s, t) = enrol(body.to_string().as_bytes());
    assert_eq!(s, 413);
    assert!(error_of(&t).contains("label"));
    // Move bodies: not JSON, a probe as the fresh template, another tenant's id.
    let mv = |id: TemplateId, token: &str, body: &[u8]| {
        raw(
            "POST",
            &url,
            &format!("/v1/templates/{id}/move"),
            Some(token),
            body,
        )
    };
    let (s, t) = mv(a_id, &a.token, b"{}");
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("expected JSON"), "{t}");
    let ct = b64.encode(encrypt_template(&key, &templates[0]).to_bytes());
    let body = serde_json::json!({"negation": ct, "template": b64.encode(&probe_bytes[..1000])});
    let (s, t) = mv(a_id, &a.token, body.to_string().as_bytes());
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("encrypted template"), "{t}");
    let body = serde_json::json!({"negation": ct, "template": ct});
    let (s, t) = mv(a_id, &b.token, body.to_string().as_bytes());
    assert_eq!(s, 404, "{t}");
    assert!(matches!(
        mb.relocate(
            a_id,
            &encrypt_template(&key, &templates[0]),
            &encrypt_template(&key, &templates[0])
        ),
        Err(MatcherError::UnknownId(_))
    ));
    // Bad ids and routes.
    let (s, t) = raw("DELETE", &url, "/v1/templates/abc", tok, b"");
    assert_eq!(s, 400);
    assert!(error_of(&t).contains("decimal"));
    let (s, t) = raw("GET", &url, "/v1/nothing", tok, b"");
    assert_eq!(s, 404);
    error_of(&t);
    // Gallery full at --max-templates 4.
    ma.enrol_named(&labels, &encrypt_template(&key, &templates[3]), "a")
        .map(|id| known.insert(id, templates[3].clone()))
        .unwrap();
    let full = ma.enrol_named(&labels, &encrypt_template(&key, &templates[4]), "a");
    match full {
        Err(e @ MatcherError::GalleryFull { max: 4 }) => {
            // The library says what happened; `--max-templates` is the CLI's hint
            // (src/cli/hints.rs tests it).
            assert!(e.to_string().contains("full (4 templates)"), "{e}");
        }
        other => panic!("expected gallery full, got {other:?}"),
    }

    // Nothing above changed A's gallery (beyond the one legitimate enrolment).
    assert_eq!(ma.list().unwrap().len(), 4);
    let after = identify_exact(&ma, &key, &templates[0], &known);
    for x in &before {
        assert!(after.contains(x));
    }
    assert_eq!(after.len(), 4);
}

/// The server and the built-in store hold no name in clear.
#[test]
fn store_files_hold_no_plaintext_names() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let templates = synthetic_templates(3, 51, &p);
    let names = [
        "Zebediah Quuxworth",
        "Ottoline Marchbanks",
        "Ignatius Pelloquin",
    ];
    let dir = tempfile::tempdir().unwrap();
    let server_data = dir.path().join("server");
    let server = Server::start(&server_data, &[]);
    let m = remote(&server.url);
    let builtin_data = dir.path().join("builtin");
    {
        let b = builtin(&builtin_data).unwrap();
        for (t, n) in templates.iter().zip(names) {
            let ct = encrypt_template(&key, t);
            m.enrol_named(&labels, &ct, n).unwrap();
            b.enrol_named(&labels, &ct, n).unwrap();
        }
        let mut opened: Vec<String> = m
            .list()
            .unwrap()
            .iter()
            .map(|e| labels.open(&e.label, e.id).unwrap())
            .collect();
        opened.sort();
        let mut expected = names.map(String::from).to_vec();
        expected.sort();
        assert_eq!(opened, expected);
        // Another key cannot read them.
        let other = LabelKey::from_secret(&SecretKey::generate(&p));
        assert!(m
            .list()
            .unwrap()
            .iter()
            .all(|e| other.open(&e.label, e.id).is_err()));
    }
    server.stop();
    for data in [&server_data, &builtin_data] {
        let bytes = std::fs::read(data.join(blindface::matcher::STORE_FILE)).unwrap();
        assert!(bytes.len() > 3 * 16_000, "the store holds the templates");
        for n in names {
            for needle in [n, n.split(' ').next().unwrap(), &n.to_lowercase()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} appears in {}",
                    data.display()
                );
            }
        }
    }
}

/// Identifies (with their multi-hundred-KB results) and enrolments (fsync) keep running
/// while `list` and `health` are asked: every one of those answers, and answers while
/// identifies are in flight (the blocking work runs off the async executor, and listing
/// takes no lock an identify or an fsync holds).
#[test]
fn list_and_health_answer_while_identifies_and_enrolments_run() {
    let p = params();
    let key = key();
    let labels = LabelKey::from_secret(&key);
    let templates = synthetic_templates(600, 61, &p);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let creds = register(&server.url);
    let m = remote_with(&server.url, creds.clone());
    for t in &templates[..500] {
        m.enrol_named(&labels, &encrypt_template(&key, t), "x")
            .unwrap();
    }
    let (probe, _) = encrypt_probe(&key, &templates[0]);
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let overlapped = std::thread::scope(|s| {
        for c in 0..3 {
            let (url, creds, probe, in_flight, stop) =
                (&server.url, creds.clone(), &probe, &in_flight, &stop);
            let (key, labels, templates) = (&key, &labels, &templates);
            s.spawn(move || {
                let m = remote_with(url, creds);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if c == 2 {
                        let t = &templates[500 + i % 100];
                        m.enrol_named(labels, &encrypt_template(key, t), "y")
                            .unwrap();
                    } else {
                        assert!(m.identify(probe).unwrap().result.template_count() >= 500);
                    }
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    i += 1;
                }
            });
        }
        // Give the load a moment to build up, then ask.
        while in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let mut overlapped = 0;
        for _ in 0..40 {
            assert!(m.list().unwrap().len() >= 500);
            let (status, body) = raw("GET", &server.url, "/v1/health", None, b"");
            assert_eq!((status, body.contains("ok")), (200, true));
            if in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                overlapped += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        overlapped
    });
    assert!(
        overlapped >= 20,
        "only {overlapped} of 40 answers overlapped the load"
    );
    server.stop();
}

/// Every decrypted distance of an identify through the client, by id, each checked
/// against the plaintext.
fn client_distances(
    client: &blindface::client::Client,
    probe: &Template,
    known: &BTreeMap<TemplateId, Template>,
) -> BTreeMap<TemplateId, i64> {
    let report = client.identify_known(probe).expect("identify");
    let got: BTreeMap<TemplateId, i64> =
        report.rows.iter().map(|r| (r.id, r.distance_sq)).collect();
    assert_eq!(got.len(), known.len());
    for (id, t) in known {
        assert_eq!(got[id], probe.distance_sq(t), "id {id}");
    }
    got
}

/// Re-packing with no key on the matcher: after removing two templates in three, the
/// templates of the higher blocks move into the free slots of the lower ones (the client
/// re-encrypts each), the emptied trailing blocks are dropped, every distance stays
/// exact, a second run has nothing to move, and it all survives a restart. Over HTTP
/// (the move route) and built in.
#[test]
fn repacking_moves_templates_down_and_drops_the_emptied_blocks() {
    let p = params();
    let templates = synthetic_templates(75, 31, &p);
    let probe = templates[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data, &[]);
    let creds = register(&server.url);
    let builtin_dir = dir.path().join("builtin");
    let mut kept = Vec::new();
    for remote in [true, false] {
        let matcher: Box<dyn Matcher> = if remote {
            Box::new(remote_with(&server.url, creds.clone()))
        } else {
            Box::new(builtin(&builtin_dir).unwrap())
        };
        let mut client = blindface::client::Client::new(SecretKey::generate(&p), matcher).unwrap();
        let ids: Vec<TemplateId> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| client.enrol(t, &format!("person {i}")).unwrap().id)
            .collect();
        let gone: Vec<TemplateId> = (0..75).filter(|i| i % 3 != 0).map(|i| ids[i]).collect();
        client.remove_ids(&gone).unwrap();
        let known: BTreeMap<TemplateId, Template> = (0..75)
            .filter(|i| i % 3 == 0)
            .map(|i| (ids[i], templates[i].clone()))
            .collect();
        let before = client_distances(&client, &probe, &known);

        let r = client.repack().unwrap();
        assert_eq!((r.templates, r.blocks_before, r.blocks_after), (25, 5, 2));
        // The kept templates of blocks 2 to 4 (indices 30, 33, ..., 72) moved.
        assert_eq!(r.moved, 15);
        assert_eq!(client_distances(&client, &probe, &known), before);
        let again = client.repack().unwrap();
        assert_eq!((again.moved, again.blocks_after), (0, 2));
        // The names stayed with their templates.
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            assert_eq!(client.names()[id], format!("person {i}"));
        }
        kept.push(known.len());
    }
    // After a restart: the same two blocks, the same distances.
    server.stop();
    let server = Server::start(&data, &[]);
    let m = remote_with(&server.url, creds);
    assert_eq!(
        m.list().unwrap().iter().map(|e| e.location.block).max(),
        Some(1)
    );
    drop(m);
    let b = builtin(&builtin_dir).unwrap();
    assert_eq!(
        b.list().unwrap().iter().map(|e| e.location.block).max(),
        Some(1)
    );
    assert_eq!(b.list().unwrap().len(), kept[1]);
}

/// One record of the store as the test finds it with redb: its table, tenant and key.
struct RawRecord {
    table: &'static str,
    tenant: String,
    key: u64,
    len: usize,
}

const RAW_TABLES: [redb::TableDefinition<(&str, u64), &[u8]>; 2] = [
    redb::TableDefinition::new("blocks_v2"),
    redb::TableDefinition::new("slots_v2"),
];

/// A single flipped byte inside any block record or slot row of a closed store (written
/// with redb directly, as a damaged disk would leave it after a clean shutdown) makes the
/// next open (or identify) fail with `StoreDamaged` naming the record's tenant and block
/// (or id); no answer is ever computed from it. Before records carried checksums, most
/// such flips went unnoticed and some gave wrong distances.
#[test]
fn flipped_bytes_in_store_records_are_refused_naming_tenant_and_record() {
    use blindface::matcher::StoredRecord;
    use rand::{Rng, SeedableRng};
    use redb::{ReadableTable, ReadableTableMetadata};

    let p = params();
    let key = key();
    let templates = synthetic_templates(20, 11, &p);
    let src = tempfile::tempdir().unwrap();
    {
        let m = builtin(src.path()).unwrap();
        for (i, t) in templates.iter().enumerate() {
            let id = TemplateId(i as u64 + 1);
            m.enrol(id, &encrypt_template(&key, t), b"sealed label")
                .unwrap();
        }
    }
    let file = src.path().join("matcher.redb");
    let original = std::fs::read(&file).unwrap();
    let mut records: Vec<RawRecord> = Vec::new();
    {
        let db = redb::Database::open(&file).unwrap();
        let txn = db.begin_read().unwrap();
        for (def, table) in RAW_TABLES.iter().zip(["blocks_v2", "slots_v2"]) {
            let t = txn.open_table(*def).unwrap();
            assert!(t.len().unwrap() > 0);
            for row in t.iter().unwrap() {
                let (k, v) = row.unwrap();
                let (tenant, key) = k.value();
                records.push(RawRecord {
                    table,
                    tenant: tenant.to_string(),
                    key,
                    len: v.value().len(),
                });
            }
        }
    }
    let (probe_template, probe_id) = (&templates[3], TemplateId(4));
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let (mut detected, mut accepted, mut wrong) = (0, 0, 0);
    let trials = 60;
    for trial in 0..trials {
        // Alternate block records and slot rows; any byte of the value, any bit.
        let pool: Vec<&RawRecord> = records
            .iter()
            .filter(|r| (r.table == "blocks_v2") == (trial % 2 == 0))
            .collect();
        let r = pool[rng.random_range(0..pool.len())];
        let at = rng.random_range(0..r.len);
        let bit = 1u8 << rng.random_range(0..8);
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("matcher.redb");
        std::fs::write(&copy, &original).unwrap();
        {
            let db = redb::Database::open(&copy).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let def = RAW_TABLES[usize::from(r.table == "slots_v2")];
                let mut t = txn.open_table(def).unwrap();
                let mut v = t
                    .get((r.tenant.as_str(), r.key))
                    .unwrap()
                    .unwrap()
                    .value()
                    .to_vec();
                v[at] ^= bit;
                t.insert((r.tenant.as_str(), r.key), v.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let answer = builtin(dir.path()).and_then(|m| {
            m.list()?;
            let (probe, ctx) = encrypt_probe(&key, probe_template);
            let result = m.identify(&probe)?.result;
            Ok(decrypt(&key, &ctx, &result))
        });
        let expected = if r.table == "blocks_v2" {
            StoredRecord::Block(r.key >> 8)
        } else {
            StoredRecord::Slot(TemplateId(r.key))
        };
        match answer {
            Err(MatcherError::StoreDamaged { tenant, record, .. }) => {
                assert_eq!((tenant.as_str(), record), (r.tenant.as_str(), expected));
                detected += 1;
            }
            Err(e) => panic!("{} byte {at} of {}/{}: {e}", r.table, r.tenant, r.key),
            Ok(decrypted) => {
                accepted += 1;
                let exact = decrypted.is_ok_and(|d| {
                    d.iter().all(|x| {
                        let t = &templates[x.id.0 as usize - 1];
                        x.distance_sq == probe_template.distance_sq(t)
                    }) && d.iter().any(|x| x.id == probe_id)
                });
                if !exact {
                    wrong += 1;
                }
            }
        }
    }
    eprintln!("{trials} flips: {detected} refused as damaged, {accepted} accepted ({wrong} with a wrong or undecryptable answer)");
    assert_eq!((detected, accepted), (trials, 0));
}

/// A store file that is not a blindface store (empty, cut in half, zero-filled, random
/// bytes, a redb file without our tables) is refused with `NotAStore`, and left exactly
/// as it was: never replaced by a new, empty store.
#[test]
fn damaged_or_empty_store_files_are_refused_and_left_unchanged() {
    use rand::{RngCore, SeedableRng};

    let p = params();
    let key = key();
    let src = tempfile::tempdir().unwrap();
    {
        let m = builtin(src.path()).unwrap();
        for (i, t) in synthetic_templates(5, 12, &p).iter().enumerate() {
            m.enrol(TemplateId(i as u64 + 1), &encrypt_template(&key, t), b"l")
                .unwrap();
        }
    }
    let good = std::fs::read(src.path().join("matcher.redb")).unwrap();
    let mut random = vec![0u8; good.len()];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut random);
    let foreign = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.redb");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("other"))
            .unwrap()
            .insert("x", 1)
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        std::fs::read(&path).unwrap()
    };
    let kinds: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("zero-filled", vec![0; good.len()]),
        ("random", random),
        ("another redb file", foreign),
    ];
    for (kind, bytes) in kinds {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("matcher.redb");
        std::fs::write(&file, &bytes).unwrap();
        match builtin(dir.path()) {
            Err(MatcherError::NotAStore { path, .. }) => {
                assert_eq!(path, file.display().to_string(), "{kind}")
            }
            Err(e) => panic!("{kind}: {e}"),
            Ok(_) => panic!("{kind}: opened"),
        }
        assert!(std::fs::read(&file).unwrap() == bytes, "{kind}: changed");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["matcher.redb"], "{kind}: nothing else created");
    }
    // Where no file exists, a new store is created (and is whole: it opens again).
    let dir = tempfile::tempdir().unwrap();
    drop(builtin(dir.path()).unwrap());
    assert!(builtin(dir.path()).unwrap().list().unwrap().is_empty());
}
