//! Galleries of template parameters v1 and v2 side by side (issue 23). New keys make v2
//! templates; a v1 key keeps its v1 gallery, which still enrols, verifies and identifies
//! exactly, next to v2 galleries in the same store, on the built-in matcher and on a real
//! `blindface serve`, across restarts. A ciphertext of the other version is refused with
//! its typed error and changes nothing.

use std::path::Path;

use blindface::client::keys::KeyFile;
use blindface::client::{connect, Access, Client, ClientError, Locations};
use blindface::he::{
    encrypt_probe, encrypt_template, synthetic_templates, Params, SecretKey, Template, TemplateId,
    PARAMS_VERSION,
};
use blindface::matcher::{
    Credentials, Endpoint, Matcher, MatcherError, MatcherSpec, RemoteMatcher, TokenStore,
};

mod common;
use common::Server;

/// Where a client of `key_name` keeps its built-in store and tokens.
fn locations(dir: &Path, key_name: &str) -> Locations {
    Locations {
        data_dir: dir.join("builtin"),
        tokens: TokenStore::beside_key(&dir.join(key_name)),
    }
}

/// The key saved as `name` in `dir` (keys are not `Clone`: each client gets its copy).
fn key(dir: &Path, name: &str) -> SecretKey {
    SecretKey::load(&dir.join(name)).unwrap()
}

/// A client of the key `name` in `dir` on `spec`.
fn client(dir: &Path, name: &str, spec: &MatcherSpec, access: &Access) -> Client {
    connect(key(dir, name), spec, &locations(dir, name), access).unwrap()
}

const NAMES: [&str; 6] = ["Ada", "Grace", "Hedy", "Joan", "Katherine", "Mary"];

/// Enrols `templates` under NAMES in turn.
fn enrol_all(client: &mut Client, templates: &[Template]) {
    for (i, t) in templates.iter().enumerate() {
        client.enrol(t, NAMES[i % NAMES.len()]).unwrap();
    }
}

/// Every template of the gallery, identified with each probe, decrypts to the plaintext
/// squared distance of the quantised templates, under the right name; verify agrees.
fn assert_exact(client: &mut Client, templates: &[Template], probes: &[Template]) {
    for probe in probes {
        let r = client.identify(probe).unwrap();
        assert_eq!(r.rows.len(), templates.len());
        let mut want: Vec<(String, i64)> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (NAMES[i % NAMES.len()].to_string(), probe.distance_sq(t)))
            .collect();
        let mut got: Vec<(String, i64)> = r
            .rows
            .iter()
            .map(|row| (row.name.clone(), row.distance_sq))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "v{}", client.params().version);
        let v = client.verify(probe, NAMES[1]).unwrap();
        let mut want_v: Vec<i64> = templates
            .iter()
            .enumerate()
            .filter(|(i, _)| i % NAMES.len() == 1)
            .map(|(_, t)| probe.distance_sq(t))
            .collect();
        let mut got_v: Vec<i64> = v.rows.iter().map(|row| row.distance_sq).collect();
        want_v.sort();
        got_v.sort();
        assert_eq!(got_v, want_v);
    }
}

/// Probes: the first template itself (distance 0) and the extremes of the range.
fn probes(templates: &[Template], p: &Params) -> Vec<Template> {
    let mut out = vec![templates[0].clone()];
    out.extend(synthetic_templates(2, 99, p));
    out
}

#[test]
fn new_keys_are_v2_and_a_v1_key_reads_back_as_v1() {
    assert_eq!(PARAMS_VERSION, 2);
    assert_eq!(Params::current(), Params::v2());
    let dir = tempfile::tempdir().unwrap();
    for p in Params::known() {
        let path = dir.path().join(format!("v{}.key", p.version));
        let key = SecretKey::generate(&p);
        key.save(&path, false).unwrap();
        let back = SecretKey::load(&path).unwrap();
        assert_eq!(back.params(), &p);
        assert_eq!(back.fingerprint(), key.fingerprint());
    }
    // A file naming parameters this build does not know is refused, not guessed.
    let mut bytes = std::fs::read(dir.path().join("v2.key")).unwrap();
    let at = 7; // magic (4), wire version (2), kind (1): the parameters' version follows
    bytes[at..at + 2].copy_from_slice(&9u16.to_le_bytes());
    std::fs::write(dir.path().join("v9.key"), &bytes).unwrap();
    assert!(SecretKey::load(&dir.path().join("v9.key")).is_err());
}

/// The built-in matcher: a v1 key's gallery and a v2 key's gallery in one store, each
/// exact, also after the store is opened again; each key opens only its own.
#[test]
fn builtin_v1_and_v2_galleries_live_side_by_side_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (Params::v1(), Params::v2());
    let (k1, k2) = (SecretKey::generate(&v1), SecretKey::generate(&v2));
    k1.save(&dir.path().join("v1.key"), false).unwrap();
    k2.save(&dir.path().join("v2.key"), false).unwrap();
    // 20 templates: two v1 blocks (15 per block), one v2 block (25 per block).
    let (t1, t2) = (
        synthetic_templates(20, 1, &v1),
        synthetic_templates(20, 2, &v2),
    );
    let spec = MatcherSpec::Builtin;
    {
        let mut c = client(dir.path(), "v1.key", &spec, &Access::default());
        enrol_all(&mut c, &t1);
        assert_exact(&mut c, &t1, &probes(&t1, &v1));
    }
    {
        let mut c = client(dir.path(), "v2.key", &spec, &Access::default());
        assert!(c.names().is_empty(), "the v2 key has a gallery of its own");
        enrol_all(&mut c, &t2);
        assert_exact(&mut c, &t2, &probes(&t2, &v2));
    }
    // Opened again (the blocks name their parameters): both still exact.
    for (name, t, p) in [("v1.key", &t1, &v1), ("v2.key", &t2, &v2)] {
        let mut c = client(dir.path(), name, &spec, &Access::default());
        assert_eq!(c.names().len(), 20);
        assert_exact(&mut c, t, &probes(t, p));
    }
}

/// A real server holding a v1 tenant and a v2 tenant: both exact through the client,
/// before and after a restart; the other version's template or probe sent with a
/// tenant's token is refused (409 `gallery_params`, both versions named) and changes
/// nothing.
#[test]
fn a_server_holds_v1_and_v2_galleries_and_refuses_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (v1, v2) = (Params::v1(), Params::v2());
    let (k1, k2) = (SecretKey::generate(&v1), SecretKey::generate(&v2));
    k1.save(&dir.path().join("v1.key"), false).unwrap();
    k2.save(&dir.path().join("v2.key"), false).unwrap();
    let (t1, t2) = (
        synthetic_templates(17, 3, &v1),
        synthetic_templates(27, 4, &v2),
    );
    let addr = Server::free_addr();
    let server = Server::spawn(
        &addr,
        &data,
        &["--plain-http", "--open-registration", "--rate-limit", "0"],
        None,
    );
    let spec = MatcherSpec::Remote {
        url: server.url.clone(),
    };
    let mut c1 = client(dir.path(), "v1.key", &spec, &Access::default());
    let mut c2 = client(dir.path(), "v2.key", &spec, &Access::default());
    enrol_all(&mut c1, &t1);
    enrol_all(&mut c2, &t2);
    assert_exact(&mut c1, &t1, &probes(&t1, &v1));
    assert_exact(&mut c2, &t2, &probes(&t2, &v2));

    // The v1 tenant's token with v2 ciphertexts, and the other way round.
    let url = server.url.clone();
    let tokens = |name: &str| -> Credentials {
        TokenStore::beside_key(&dir.path().join(name))
            .get(&url, &key(dir.path(), name).fingerprint())
            .unwrap()
            .expect("saved at registration")
    };
    let endpoint = Endpoint::new(&server.url, None, false).unwrap();
    for (creds, key, other, gallery, given) in [
        (tokens("v1.key"), &k2, &v2, 1u16, 2u16),
        (tokens("v2.key"), &k1, &v1, 2, 1),
    ] {
        let m = RemoteMatcher::new(&endpoint, other, creds, Path::new("tokens.json"));
        let before = m.list().unwrap();
        let t = &synthetic_templates(1, 5, other)[0];
        let refused = m
            .enrol(TemplateId(999), &encrypt_template(key, t), b"label")
            .unwrap_err();
        assert!(
            matches!(refused, MatcherError::GalleryParams { gallery: g, given: x } if g == gallery && x == given),
            "{refused}"
        );
        assert!(refused.to_string().contains(&format!("v{gallery}")));
        let (probe, _) = encrypt_probe(key, t);
        let refused = m.identify(&probe).unwrap_err();
        assert!(
            matches!(refused, MatcherError::GalleryParams { .. }),
            "{refused}"
        );
        let refused = m.verify(&probe, before[0].id).unwrap_err();
        assert!(
            matches!(refused, MatcherError::GalleryParams { .. }),
            "{refused}"
        );
        // A removal's or a move's ciphertexts of the other version: refused before the
        // change is recorded.
        let other_ct = encrypt_template(key, t);
        let refused = m.erase(before[0].id, &other_ct).unwrap_err();
        assert!(
            matches!(refused, MatcherError::GalleryParams { .. }),
            "{refused}"
        );
        let refused = m.relocate(before[0].id, &other_ct, &other_ct).unwrap_err();
        assert!(
            matches!(refused, MatcherError::GalleryParams { .. }),
            "{refused}"
        );
        assert_eq!(m.list().unwrap(), before, "nothing changed");
    }

    // The client of a key says so too (the app's and the CLI's edge add what to do).
    drop(server);
    let server = Server::spawn(
        &addr,
        &data,
        &["--plain-http", "--open-registration", "--rate-limit", "0"],
        None,
    );
    let mut c1 = client(dir.path(), "v1.key", &spec, &Access::default());
    let mut c2 = client(dir.path(), "v2.key", &spec, &Access::default());
    assert_exact(&mut c1, &t1, &probes(&t1, &v1));
    assert_exact(&mut c2, &t2, &probes(&t2, &v2));
    // A v2 key given the v1 tenant's token: its enrolment is refused with the typed error.
    let given = Access {
        token: Some(tokens("v1.key").token),
        ..Access::default()
    };
    let mut mixed = client(dir.path(), "v2.key", &spec, &given);
    match mixed.enrol(&t2[0], "Someone") {
        Err(ClientError::Matcher(MatcherError::GalleryParams {
            gallery: 1,
            given: 2,
        })) => {}
        other => panic!("{other:?}"),
    }
    drop(server);
}
