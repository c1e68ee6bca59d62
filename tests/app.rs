//! The desktop app driven through its real UI with egui_kittest (no display): a folder
//! source over the fixture photos, the real face models, the built-in matcher in a
//! temporary data directory (or a real `blindface serve` for the token case), and the real
//! worker thread. File dialogs are replaced by fixed paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blindface::app::state::MatcherChoice;
use blindface::app::{source, AppConfig, BlindfaceApp, Dialogs};
use eframe::egui::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

mod common;
use common::Server;

/// Dialogs that answer with fixed paths.
struct FixedDialogs {
    export: PathBuf,
    import: PathBuf,
}

impl Dialogs for FixedDialogs {
    fn open_image(&self) -> Option<PathBuf> {
        None
    }
    fn open_folder(&self) -> Option<PathBuf> {
        None
    }
    fn export_key(&self) -> Option<PathBuf> {
        Some(self.export.clone())
    }
    fn import_key(&self) -> Option<PathBuf> {
        Some(self.import.clone())
    }
}

fn faces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces")
}

fn config(dir: &Path, key: &str, matcher: MatcherChoice) -> AppConfig {
    AppConfig {
        key_path: dir.join(key),
        data_dir: dir.join("data"),
        settings_path: dir.join(format!("{key}.settings.json")),
        source: Some(faces()),
        autoplay: false,
        matcher: Some(matcher),
        threshold: None,
        camera: false,
        identify: false,
        dialogs: Arc::new(FixedDialogs {
            export: dir.join("exported.key"),
            import: dir.join("exported.key"),
        }),
    }
}

fn harness(app: BlindfaceApp) -> Harness<'static, BlindfaceApp> {
    Harness::builder()
        .with_size([1500.0, 1200.0])
        .with_accessibility_check(false)
        .build_ui_state(|ui, app: &mut BlindfaceApp| app.ui(ui), app)
}

/// Steps the UI until `cond` holds (the worker is a real thread).
fn wait(h: &mut Harness<'static, BlindfaceApp>, what: &str, cond: impl Fn(&BlindfaceApp) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            h.step();
            h.step();
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}; notices: {:?}",
            h.state().state.notices
        );
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn show(h: &mut Harness<'static, BlindfaceApp>, file: &str) {
    assert!(
        source::select_file(h.state_mut(), file),
        "{file} in the folder"
    );
    wait(h, file, |a| {
        a.state.frame_label == file && !a.state.busy_frame && !a.state.faces.is_empty()
    });
}

fn connected(h: &mut Harness<'static, BlindfaceApp>) {
    wait(h, "the matcher", |a| {
        matches!(
            a.state.connection,
            blindface::app::state::Connection::Ready(_)
        )
    });
}

fn enrol(h: &mut Harness<'static, BlindfaceApp>, name: &str) {
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text(name);
    h.step();
    assert_eq!(h.state().state.enrol_name, name);
    h.get_by_label("Capture & enrol").click();
    h.step();
    wait(h, "the enrolment", |a| !a.state.busy_enrol);
    let n = name.to_string();
    wait(h, "the gallery", move |a| {
        a.state.gallery.iter().any(|(_, g)| *g == n)
    });
    assert!(shows(h, &format!("Enrolled {name} (template id")));
}

fn identify(h: &mut Harness<'static, BlindfaceApp>) {
    h.get_by_label("Identify").click();
    h.step();
    wait(h, "identify", |a| {
        !a.state.busy_match && a.state.last_match.is_some()
    });
}

/// Whether some node's label contains `text`.
fn shows(h: &Harness<'static, BlindfaceApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Whether some node's label is exactly `text`.
fn shows_exact(h: &Harness<'static, BlindfaceApp>, text: &str) -> bool {
    h.query_all_by_label(text).next().is_some()
}

fn best_l2(h: &Harness<'static, BlindfaceApp>) -> f32 {
    h.state().state.last_match.as_ref().unwrap().distances[0].l2
}

#[test]
fn enrol_identify_threshold_and_key_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "a.key",
        MatcherChoice::Builtin,
    )));
    // First run: a key is created and explained.
    assert!(h.state().state.first_run);
    h.step();
    assert!(shows(&h, "A new secret key was created"));
    connected(&mut h);

    show(&mut h, "obama.jpg");
    enrol(&mut h, "Obama");

    // Another Obama photo: a match for Obama.
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    assert!(shows_exact(&h, "Match: Obama"));
    let genuine = best_l2(&h);
    assert!(genuine < 1.128, "genuine L2 {genuine}");
    let calls = h.state().state.matcher_calls;
    assert_eq!(calls, 1);

    // Threshold below the genuine distance: the verdict flips without a matcher call.
    h.get_by_role_and_label(Role::Slider, "Threshold (L2)")
        .set_value_accesskit((genuine - 0.05) as f64);
    h.step();
    h.step();
    assert!((h.state().state.settings.threshold - (genuine - 0.05)).abs() < 1e-3);
    assert!(!shows_exact(&h, "Match: Obama"));
    assert!(shows_exact(&h, "No match: nobody in the gallery"));
    h.get_by_role_and_label(Role::Slider, "Threshold (L2)")
        .set_value_accesskit(1.128);
    h.step();
    h.step();
    assert!(shows_exact(&h, "Match: Obama"));
    assert_eq!(h.state().state.matcher_calls, calls, "no new matcher call");

    // Biden: no match.
    show(&mut h, "biden.jpg");
    identify(&mut h);
    assert!(shows_exact(&h, "No match: nobody in the gallery"));
    let impostor = best_l2(&h);
    assert!(impostor > 1.128, "impostor L2 {impostor}");
    assert_eq!(h.state().state.matcher_calls, calls + 1);

    // Export the key.
    let fingerprint = h.state().state.key_fingerprint.clone();
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    let before = h.state().state.last_match.clone().unwrap().distances;
    h.get_by_label("Export key...").click();
    wait(&mut h, "the export", |a| {
        !a.dialog_open
            && a.state
                .notices
                .iter()
                .any(|n| n.text.starts_with("Key exported"))
    });
    drop(h);

    // A fresh app with another key: names unreadable until the key is imported.
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "b.key",
        MatcherChoice::Builtin,
    )));
    connected(&mut h);
    assert_ne!(h.state().state.key_fingerprint, fingerprint);
    wait(&mut h, "the gallery", |a| a.state.gallery.len() == 1);
    assert!(h
        .state()
        .state
        .gallery
        .iter()
        .all(|(_, n)| n.starts_with("(unreadable")));
    h.get_by_label("Import key...").click();
    wait(&mut h, "the import dialog", |a| a.pending_import.is_some());
    assert!(shows_exact(&h, "Replace the secret key?"));
    h.get_by_label("Replace key").click();
    h.step();
    assert_eq!(h.state().state.key_fingerprint, fingerprint);
    wait(&mut h, "readable names", |a| {
        a.state.gallery.iter().any(|(_, n)| n == "Obama")
    });
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    assert!(shows_exact(&h, "Match: Obama"));
    assert_eq!(
        h.state().state.last_match.as_ref().unwrap().distances,
        before
    );
}

#[test]
fn unreachable_matcher_and_wrong_token_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = MatcherChoice::Remote {
        url: "http://127.0.0.1:9".into(),
        token: String::new(),
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "a.key", unreachable)));
    wait(&mut h, "the connection error", |a| {
        matches!(
            a.state.connection,
            blindface::app::state::Connection::Failed(_)
        )
    });
    assert!(shows(&h, "cannot reach the matcher at http://127.0.0.1:9"));
    // The app keeps running: frames still load, and matching says what is wrong.
    show(&mut h, "obama.jpg");
    h.get_by_label("Identify").click();
    h.step();
    wait(&mut h, "the identify error", |a| {
        !a.state.busy_match
            && a.state
                .notices
                .iter()
                .any(|n| n.text.contains("no matcher is connected"))
    });
    assert!(shows(&h, "no matcher is connected"));

    let server = Server::start(&dir.path().join("server"), &[]);
    let wrong = MatcherChoice::Remote {
        url: server.url.clone(),
        token: "not-the-token".into(),
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "b.key", wrong)));
    wait(&mut h, "the token error", |a| {
        matches!(
            a.state.connection,
            blindface::app::state::Connection::Failed(_)
        )
    });
    assert!(shows(&h, "rejected the access token"));
    h.step();

    // Clearing the token registers a gallery and connects.
    let right = MatcherChoice::Remote {
        url: server.url.clone(),
        token: String::new(),
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "c.key", right)));
    connected(&mut h);
    assert!(shows(&h, "Matcher: remote matcher http://127.0.0.1"));
}

#[test]
fn missing_camera_says_so_and_offers_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "a.key", MatcherChoice::Builtin);
    cfg.source = None;
    cfg.camera = true;
    let mut h = harness(BlindfaceApp::new(cfg));
    h.step();
    assert!(shows(&h, "No camera found"));
    assert!(shows_exact(&h, "Open folder..."));
    assert!(shows_exact(&h, "Open image..."));
}
