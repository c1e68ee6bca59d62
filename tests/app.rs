//! The desktop app driven through its real UI with egui_kittest (no display): a folder
//! source over the fixture photos, the real face models, the built-in matcher in a
//! temporary data directory (or a real `blindface serve` for the token case), and the real
//! worker thread. File dialogs are replaced by fixed paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blindface::app::protocol::{Command, Connection, Operation, SourceId};
use blindface::app::state::TrackLabel;
use blindface::app::{AppConfig, BlindfaceApp, Dialogs};
use blindface::he::{Params, Threshold};
use blindface::matcher::MatcherSpec as MatcherChoice;
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
        live: false,
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
    assert!(h.state_mut().select_file(file), "{file} in the folder");
    wait(h, file, |a| {
        a.state.frame_label == file && !a.state.busy_frame && !a.state.faces.is_empty()
    });
}

fn connected(h: &mut Harness<'static, BlindfaceApp>) {
    wait(h, "the matcher", |a| {
        matches!(a.state.connection, Connection::Ready(_))
    });
}

fn enrol(h: &mut Harness<'static, BlindfaceApp>, name: &str) {
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text(name);
    h.step();
    assert_eq!(h.state().panels.enrol.name, name);
    h.get_by_label("Capture & enrol").click();
    h.step();
    wait(h, "the enrolment", |a| !a.state.busy_enrol);
    let n = name.to_string();
    wait(h, "the gallery", move |a| {
        a.state.gallery.iter().any(|(_, g)| *g == n)
    });
    assert!(shows(h, &format!("Enrolled {name} (1 template(s)")));
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

/// An app on the built-in matcher in `dir`, connected, showing `file`.
fn builtin_on(dir: &Path, file: &str) -> Harness<'static, BlindfaceApp> {
    let mut h = harness(BlindfaceApp::new(config(
        dir,
        "a.key",
        MatcherChoice::Builtin,
    )));
    connected(&mut h);
    show(&mut h, file);
    h
}

/// [`builtin_on`] with a key of parameters v1 (made before v2 was the default) already
/// in `dir`: the app opens it as it is.
fn v1_key_builtin_on(dir: &Path, file: &str) -> Harness<'static, BlindfaceApp> {
    use blindface::client::keys::KeyFile;
    blindface::he::SecretKey::generate(&Params::v1())
        .save(&dir.join("a.key"), false)
        .unwrap();
    let h = builtin_on(dir, file);
    assert_eq!(h.state().state.key_params, Params::v1());
    h
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
    wait(&mut h, "the key", |a| a.state.key_fingerprint.is_some());
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
    // The slider snaps to its step (0.005).
    assert!((h.state().state.settings.threshold - (genuine - 0.05)).abs() <= 0.0026);
    assert!(!shows_exact(&h, "Match: Obama"));
    assert!(shows(
        &h,
        "No match: nobody within the threshold (closest: Obama at"
    ));
    h.get_by_role_and_label(Role::Slider, "Threshold (L2)")
        .set_value_accesskit(1.128);
    h.step();
    h.step();
    assert!(shows_exact(&h, "Match: Obama"));
    assert_eq!(h.state().state.matcher_calls, calls, "no new matcher call");

    // Biden: no match.
    show(&mut h, "biden.jpg");
    identify(&mut h);
    assert!(shows(
        &h,
        "No match: nobody within the threshold (closest: Obama"
    ));
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

    // A fresh app with another key on the same data directory: its own, empty gallery
    // (galleries are bound to their key), and enrolling into it leaves the first intact.
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "b.key",
        MatcherChoice::Builtin,
    )));
    connected(&mut h);
    assert_ne!(h.state().state.key_fingerprint, fingerprint);
    assert!(h.state().state.gallery.is_empty());
    show(&mut h, "biden.jpg");
    enrol(&mut h, "Biden");
    assert_eq!(h.state().state.gallery.len(), 1);
    assert!(
        h.state().state.timings.bytes_sent.is_some(),
        "the enrolment's"
    );
    h.get_by_label("Import key...").click();
    wait(&mut h, "the import dialog", |a| {
        a.state.key_candidate.is_some()
    });
    assert!(shows_exact(&h, "Replace the secret key?"));
    h.get_by_label("Replace key").click();
    h.step();
    wait(&mut h, "the new key", |a| {
        a.state.key_fingerprint == fingerprint
    });
    // The other key's requests' timings are not shown as this key's.
    let t = &h.state().state.timings;
    assert_eq!((t.encrypt_ms, t.bytes_sent, t.match_ms), (None, None, None));
    wait(&mut h, "the first key's gallery", |a| {
        a.state.gallery.iter().any(|(_, n)| n == "Obama")
    });
    assert_eq!(
        h.state().state.gallery.len(),
        1,
        "only the first key's templates"
    );
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
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "a.key", unreachable)));
    wait(&mut h, "the connection error", |a| {
        matches!(a.state.connection, Connection::Failed(_))
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
    let remote = MatcherChoice::Remote {
        url: server.url.clone(),
    };
    // No token: a gallery is registered for this key and connects.
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "b.key", remote)));
    connected(&mut h);
    assert!(shows(&h, "Matcher: remote matcher http://127.0.0.1"));
    // A wrong token typed in Settings: refused, and said so.
    h.get_by_role_and_label(Role::PasswordInput, "Token")
        .click();
    h.step();
    h.get_by_role_and_label(Role::PasswordInput, "Token")
        .type_text("not-the-token");
    h.step();
    h.get_by_label("Connect").click();
    h.step();
    wait(&mut h, "the token error", |a| {
        matches!(a.state.connection, Connection::Failed(_))
    });
    assert!(shows(&h, "rejected the access token"));
    // The token is never kept in the settings file.
    let settings = std::fs::read_to_string(dir.path().join("b.key.settings.json")).unwrap();
    assert!(!settings.contains("not-the-token"), "{settings}");
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

#[test]
fn a_worker_panic_is_shown_and_the_app_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    enrol(&mut h, "Obama");
    // A frame is being analysed when the worker dies.
    h.state_mut().state.busy_frame = true;
    h.state_mut().state.busy_match = true;
    h.state().worker.send(Command::Crash);
    wait(&mut h, "the restart", |a| a.worker_restarts == 1);
    let s = &h.state().state;
    assert!(
        !s.busy_frame && !s.busy_match && !s.busy_enrol,
        "busy flags cleared"
    );
    assert!(shows(
        &h,
        "an internal error interrupted the last operation"
    ));
    // The fresh worker works: frames load and matching finds the enrolled person.
    connected(&mut h);
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    assert!(shows_exact(&h, "Match: Obama"));
}

#[test]
fn an_unreadable_key_refuses_to_enrol_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    std::fs::write(&key, b"not a key").unwrap();
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "a.key",
        MatcherChoice::Builtin,
    )));
    wait(&mut h, "the key error", |a| {
        matches!(a.state.connection, Connection::Failed(_))
    });
    assert_eq!(h.state().state.key_fingerprint, None);
    assert!(shows(&h, "cannot be used"));
    show(&mut h, "obama.jpg");
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text("Obama");
    h.get_by_label("Capture & enrol").click();
    h.step();
    wait(&mut h, "the refusal", |a| !a.state.busy_enrol);
    assert!(shows(&h, "your secret key cannot be used"));
    assert!(h.state().panels.enrol.last.is_none());
    assert_eq!(
        std::fs::read(&key).unwrap(),
        b"not a key",
        "the file is untouched"
    );
    // Nothing was written to a store under a temporary key.
    drop(h);
    let store = blindface::matcher::Store::open(&dir.path().join("data")).unwrap();
    assert!(store.slots().unwrap().is_empty());
}

#[test]
fn an_earlier_enrol_error_clears_on_success_and_settings_save_once_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    h.get_by_label("Capture & enrol").click();
    h.step();
    h.step();
    assert!(shows(&h, "type the person's name before Capture & enrol"));
    enrol(&mut h, "Obama");
    assert!(
        !shows(&h, "type the person's name"),
        "the stale error is gone after the enrolment succeeded"
    );

    // A drag of the threshold writes the settings once it rests, not on every frame.
    let path = dir.path().join("a.key.settings.json");
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    for v in [1.0, 1.05, 1.1] {
        h.get_by_role_and_label(Role::Slider, "Threshold (L2)")
            .set_value_accesskit(v);
        h.step();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), before);
    std::thread::sleep(blindface::app::SETTINGS_SAVE_DELAY + Duration::from_millis(50));
    h.step();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        (saved["threshold"].as_f64().unwrap() - 1.1).abs() < 1e-3,
        "{saved}"
    );
}

/// The labels of the tracked faces, as the preview shows them.
fn live_labels(h: &Harness<'static, BlindfaceApp>) -> Vec<String> {
    let s = &h.state().state;
    let mut v: Vec<String> = s
        .tracker
        .visible()
        .map(|t| TrackLabel::of(t, &s.threshold()).text())
        .collect();
    v.sort();
    v
}

/// An app with Obama and Biden enrolled, in live mode.
fn live_with_obama_and_biden(dir: &Path) -> Harness<'static, BlindfaceApp> {
    let mut h = builtin_on(dir, "obama.jpg");
    enrol(&mut h, "Obama");
    show(&mut h, "biden.jpg");
    enrol(&mut h, "Biden");
    h.get_by_label("Live: identify every face in view").click();
    h.step();
    // Live on a still: the face in view is identified at once.
    wait(&mut h, "biden.jpg labelled", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        !v.is_empty() && v.iter().all(|t| t.matched())
    });
    assert_eq!(live_labels(&h).len(), 1);
    assert!(
        live_labels(&h)[0].starts_with("Biden 0.00"),
        "{:?}",
        live_labels(&h)
    );
    h
}

#[test]
fn live_mode_labels_every_face_and_the_slider_recolours_without_matching() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = live_with_obama_and_biden(dir.path());
    assert!(h.state().state.live);
    let before = h.state().state.matcher_calls;
    show(&mut h, "obama_and_biden.jpg");
    wait(&mut h, "every face identified", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        v.len() == 3 && v.iter().all(|t| t.matched())
    });
    let labels = live_labels(&h);
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("Obama 0.")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l.starts_with("Biden ")), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("unknown (closest")),
        "{labels:?}"
    );
    // The labels are in the window.
    for l in labels.iter().filter(|l| !l.starts_with("unknown")) {
        assert!(shows(&h, l), "{l} on screen");
    }
    let calls = h.state().state.matcher_calls;
    assert_eq!(calls - before, 3, "one identify per face");
    // A threshold below every genuine distance: every label turns to unknown, at once.
    h.get_by_role_and_label(Role::Slider, "Threshold (L2)")
        .set_value_accesskit(0.6);
    h.step();
    h.step();
    let after = live_labels(&h);
    assert!(after.iter().all(|l| l.starts_with("unknown")), "{after:?}");
    assert!(shows(&h, "unknown (closest Obama"));
    assert_eq!(h.state().state.matcher_calls, calls, "no new matcher call");
}

#[test]
fn several_shots_enrol_one_person() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text("Obama");
    h.step();
    h.get_by_label("Capture shot (0/3)").click();
    h.step();
    show(&mut h, "obama3.jpg");
    h.get_by_label("Capture shot (1/3)").click();
    h.step();
    h.step();
    assert_eq!(h.state().panels.enrol.shots.len(), 2);
    // A folder source: the hint asks for another photo (head turns are for cameras).
    assert!(shows(&h, "Show another photo of them"));
    h.get_by_label("Enrol 2 shot(s) as Obama").click();
    h.step();
    wait(&mut h, "the enrolment", |a| a.state.gallery.len() == 2);
    assert!(shows(&h, "Obama (2 template(s))"));
    assert!(h.state().panels.enrol.shots.is_empty());
    // The verdict uses the best of the two templates: one row for the person.
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    let m = h.state().state.last_match.clone().unwrap();
    assert_eq!(m.distances.len(), 1);
    assert!(shows_exact(&h, "Match: Obama"));
}

#[test]
fn the_threshold_says_what_it_means_and_presets_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "a.key",
        MatcherChoice::Builtin,
    )));
    // Connected first: the connection's arrival moves the panels, and a click queued
    // against the previous frame's layout would land on whatever moved under it.
    connected(&mut h);
    // A new key makes templates of the current parameters: their default and calibration.
    let p = h.state().state.key_params;
    assert_eq!(p, Params::current());
    let cal = blindface::calibration::Calibration::lfw_devtrain(&p).unwrap();
    let default = blindface::calibration::default_threshold(&p);
    assert_eq!(h.state().state.settings.threshold, default);
    let here = cal.at_threshold(default);
    assert!(
        shows(&h, &here.describe()),
        "the meaning of {default} is shown"
    );
    assert!(shows(&h, "(LFW View 1)"));
    h.get_by_label("Equal error rate").click();
    h.step();
    h.step();
    let want = cal.eer();
    assert_eq!(h.state().state.settings.threshold, want.threshold);
    assert!(shows(&h, &want.describe()));
    h.get_by_label("FAR 0.1%").click();
    h.step();
    h.step();
    assert_eq!(
        h.state().state.settings.threshold,
        cal.threshold_for_far(0.001).unwrap().threshold
    );
}

/// The picture id of the frames `feed` sends: one live source, apart from the folder's.
const STREAM: SourceId = SourceId(u64::MAX);

/// Sends a frame straight to the vision thread (as a live source would) and waits for it.
fn feed(h: &mut Harness<'static, BlindfaceApp>, label: &str, image: image::RgbImage) {
    let before = h.state().state.frame_serial;
    h.state_mut().state.busy_frame = true;
    h.state().worker.send(Command::Analyse {
        label: label.into(),
        image: Arc::new(image),
        source: STREAM,
    });
    wait(h, label, move |a| {
        a.state.frame_serial > before && !a.state.busy_frame
    });
}

#[test]
fn live_labels_follow_moving_faces_and_a_returning_face_is_identified_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = live_with_obama_and_biden(dir.path());
    // The two men of the group photo (the child left out), as a 4:3 frame.
    let group = blindface::vision::load_image(faces().join("obama_and_biden.jpg")).unwrap();
    let shifted = |dx: u32| image::imageops::crop_imm(&group, 700 + dx, 300, 800, 600).to_image();
    feed(&mut h, "frame 0", shifted(0));
    wait(&mut h, "every face identified", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        v.len() == 2 && v.iter().all(|t| t.matched())
    });
    let ids = |h: &Harness<'static, BlindfaceApp>| {
        let mut v: Vec<_> = h.state().state.tracker.visible().map(|t| t.id).collect();
        v.sort();
        v
    };
    let first_ids = ids(&h);
    // Names (the distance may move by a rematch every 0.5 s; the identity must not).
    let names = |h: &Harness<'static, BlindfaceApp>| -> Vec<String> {
        live_labels(h)
            .iter()
            .map(|l| l.rsplit_once(' ').map_or(l.clone(), |(n, _)| n.to_string()))
            .collect()
    };
    let first_labels = names(&h);
    assert_eq!(first_labels, ["Biden", "Obama"]);
    // The faces move 8 px a frame: same tracks, same labels.
    for k in 1..=5u32 {
        feed(&mut h, &format!("frame {k}"), shifted(8 * k));
        assert_eq!(ids(&h), first_ids, "frame {k}");
        assert_eq!(names(&h), first_labels, "frame {k}");
    }
    // Everyone leaves (empty frames), then comes back: new tracks, identified again.
    let max_missed = h.state().state.tracker.config().max_missed;
    for k in 0..=max_missed {
        feed(
            &mut h,
            &format!("empty {k}"),
            image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90])),
        );
    }
    assert_eq!(h.state().state.tracker.visible().count(), 0);
    let calls = h.state().state.matcher_calls;
    feed(&mut h, "back", shifted(0));
    wait(&mut h, "identified again", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        v.len() == 2 && v.iter().all(|t| t.matched())
    });
    assert!(
        ids(&h).iter().all(|id| !first_ids.contains(id)),
        "new tracks"
    );
    assert_eq!(names(&h), first_labels);
    assert!(h.state().state.matcher_calls >= calls + 2, "matched again");
}

/// Identify compares a face with everyone: the threshold panel says what the threshold
/// means with the people enrolled now, and "FPIR 1% for this gallery" moves the slider to
/// the threshold computed by hand from assets/calibration-lfw-devtrain.json (impostor pairs
/// accepted of 5,923,194: 5,763 at 1.125, 6,539 at 1.128, 29,426 at 1.165, 30,546 at 1.166,
/// 57,645 at 1.183, 59,775 at 1.184). Verify keeps the 1:1 meaning. The key is one of
/// parameters v1, made before v2 was the default: its gallery, default threshold (1.128)
/// and calibration stay v1's.
#[test]
fn the_threshold_says_what_it_means_for_this_gallery_and_the_fpir_preset_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = v1_key_builtin_on(dir.path(), "obama.jpg");
    let preset = "FPIR 1% for this gallery";
    let threshold = |h: &Harness<'static, BlindfaceApp>| h.state().state.settings.threshold;
    let near = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
    // Nobody enrolled: no number, and the preset is disabled.
    assert!(shows(
        &h,
        "Nobody is enrolled yet, so no stranger can get a name."
    ));
    assert!(shows(
        &h,
        "One comparison at 1.128: about 1 in 906 strangers"
    ));
    h.get_by_label(preset).click();
    h.step();
    assert!(near(threshold(&h), 1.128), "{}", threshold(&h));

    // One person: FPIR = FAR = 6539/5923194 = 0.110% (1 in 905.8).
    enrol(&mut h, "Obama");
    assert!(shows(
        &h,
        "With 1 person enrolled, about 1 in 906 strangers gets a name (0.11%)."
    ));
    // FAR 57645/5923194 = 0.973% <= 1% < 59775/5923194 = 1.009%: 1.183.
    h.get_by_label(preset).click();
    h.step();
    h.step();
    assert!(near(threshold(&h), 1.183), "{}", threshold(&h));

    // Two people at 1.183: 1 - (5865549/5923194)^2 = 1.937%, 1 in 51.6.
    show(&mut h, "biden.jpg");
    enrol(&mut h, "Biden");
    assert!(shows(
        &h,
        "With 2 people enrolled, about 1 in 52 strangers gets a name (1.9%)."
    ));
    // 29,426 impostors: 1 - (5893768/5923194)^2 = 0.991% (1 in 100.9); 30,546 (1.166):
    // 1.029%. The last point within 1% is 1.165.
    h.get_by_label(preset).click();
    h.step();
    h.step();
    assert!(near(threshold(&h), 1.165), "{}", threshold(&h));
    assert!(shows(
        &h,
        "With 2 people enrolled, about 1 in 101 strangers gets a name (0.99%)."
    ));
    // 5923194/29426 = 201.3.
    assert!(shows(
        &h,
        "One comparison at 1.165: about 1 in 201 strangers accepted (29,426 of 5,923,194)"
    ));

    // Verify against Obama: the 1:1 meaning only, and the gallery preset is off.
    h.get_by_value("everyone (identify)").click();
    h.step();
    h.step();
    h.get_by_role_and_label(Role::Button, "Obama").click();
    h.step();
    h.step();
    assert!(!shows(&h, "strangers gets a name"));
    assert!(shows(
        &h,
        "At 1.165: about 1 in 201 strangers accepted (29,426 of 5,923,194)"
    ));
    // FAR 0.1%: 5763/5923194 = 0.0973% at 1.125, 5995 (0.1012%) at 1.126.
    h.get_by_label("FAR 0.1%").click();
    h.step();
    assert!(near(threshold(&h), 1.125), "{}", threshold(&h));
    h.get_by_label(preset).click();
    h.step();
    assert!(near(threshold(&h), 1.125), "disabled in verify mode");
}

/// A v1 key's user moves to v2 as Settings say: "Generate new key...", the dialog names
/// both versions, and after "Replace key" the key, its (empty) gallery, the default
/// threshold and the calibration are v2's; the v1 gallery stays with the v1 key.
#[test]
fn moving_from_a_v1_key_to_a_new_v2_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = v1_key_builtin_on(dir.path(), "obama.jpg");
    assert_eq!(h.state().state.settings.threshold, 1.128);
    enrol(&mut h, "Obama");
    assert!(shows(
        &h,
        "Templates: parameters v1 (128 dimensions, 15 per block), the older format"
    ));
    assert!(shows(&h, "generate a new key, and enrol everyone again"));
    h.get_by_label("Generate new key...").click();
    wait(&mut h, "the candidate", |a| a.state.key_candidate.is_some());
    assert!(shows(&h, "v2 templates)?"));
    assert!(shows(
        &h,
        "The current key's templates are v1, the new key's v2"
    ));
    h.get_by_label("Replace key").click();
    h.step();
    wait(&mut h, "the new key", |a| {
        a.state.key_params == Params::v2()
    });
    wait(&mut h, "its own, empty gallery", |a| {
        a.state.gallery.is_empty()
    });
    assert_eq!(h.state().state.settings.threshold, 1.158);
    assert!(shows(
        &h,
        "Templates: parameters v2 (80 dimensions, 25 per block)"
    ));
    assert!(!shows(&h, "the older format"));
    assert!(shows(
        &h,
        "One comparison at 1.158: about 1 in 567 strangers"
    ));
}

/// Dialogs that cannot be shown (no desktop portal, no zenity).
struct NoDialogs;

impl Dialogs for NoDialogs {
    fn open_image(&self) -> Option<PathBuf> {
        None
    }
    fn open_folder(&self) -> Option<PathBuf> {
        None
    }
    fn export_key(&self) -> Option<PathBuf> {
        None
    }
    fn import_key(&self) -> Option<PathBuf> {
        None
    }
    fn availability(&self) -> Result<(), String> {
        Err("no desktop portal and no zenity (test)".into())
    }
}

#[test]
fn without_a_system_dialog_the_built_in_browser_opens_a_folder() {
    use blindface::app::{dialogs, DialogKind};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "a.key", MatcherChoice::Builtin);
    cfg.source = None;
    cfg.dialogs = Arc::new(NoDialogs);
    let mut h = harness(BlindfaceApp::new(cfg));
    h.step();
    h.get_by_label("Open folder...").click();
    h.step();
    wait(&mut h, "the built-in browser", |a| {
        a.in_app_dialog.is_some()
    });
    // The window says why, and the browser is there.
    assert!(shows(&h, "No system file dialog can be shown here"));
    assert!(shows(&h, "no desktop portal and no zenity (test)"));
    assert!(shows(&h, "Open a folder of images (built-in file browser)"));
    // Its path field starts in a sensible folder; type the fixtures' folder there.
    let start = dialogs::start_dir(DialogKind::OpenFolder, None)
        .display()
        .to_string();
    let target = faces().display().to_string();
    let path_field = |n: &egui_kittest::kittest::AccessKitNode<'_>| {
        n.role() == Role::TextInput && n.value().as_deref() == Some(start.as_str())
    };
    h.get_by(path_field).click();
    h.step();
    h.get_by(path_field).set_text_value_accesskit(&target);
    h.step();
    h.key_press(eframe::egui::Key::Enter);
    h.step();
    h.step();
    assert!(
        h.query_all_by_value(&target).next().is_some(),
        "the browser shows the folder"
    );
    h.get_by_label("Open this folder").click();
    h.step();
    wait(&mut h, "the folder's first image", |a| {
        a.in_app_dialog.is_none() && !a.state.busy_frame && !a.state.faces.is_empty()
    });
    assert!(!h.state().dialog_open);
    let file = h.state().source.current_file().expect("a folder source");
    assert_eq!(file.parent(), Some(faces().as_path()));
    assert!(!shows(&h, "(built-in file browser)"), "the browser closed");
}

#[test]
fn a_cjk_name_is_drawable_and_stops_at_the_label_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "a.key", MatcherChoice::Builtin);
    cfg.source = None;
    let mut h = harness(BlindfaceApp::new(cfg));
    h.step();
    // 100 CJK characters are 300 bytes: the field keeps 85 (255 bytes), whole characters.
    let long = "王".repeat(100);
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text(&long);
    h.step();
    let name = h.state().panels.enrol.name.clone();
    assert_eq!(name.len(), 255);
    assert!(name.len() <= blindface::labels::MAX_NAME_BYTES);
    assert_eq!(name, "王".repeat(85));
    // With a CJK font on the system (fonts-noto-cjk on Debian), its glyphs are in the
    // window's fonts, not boxes.
    let cjk_font = [
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/System/Library/Fonts/PingFang.ttc",
        r"C:\Windows\Fonts\msyh.ttc",
    ]
    .iter()
    .any(|p| Path::new(p).is_file());
    if cjk_font {
        let font = eframe::egui::FontId::proportional(14.0);
        assert!(h
            .ctx
            .fonts_mut(|f| f.has_glyphs(&font, "王秀英 김민준 Zoë")));
    } else {
        eprintln!("no CJK font installed: glyph check skipped");
    }
}

/// Issue 21: the names on screen, every step of a slideshow. Whatever a label says on a
/// photo was computed on that photo: `check` is called after every UI step.
fn slideshow_step_by_step(
    h: &mut Harness<'static, BlindfaceApp>,
    files: &[&str],
    check: impl Fn(&BlindfaceApp, &str),
) {
    for file in files {
        assert!(h.state_mut().select_file(file), "{file}");
        let start = Instant::now();
        loop {
            h.step();
            check(h.state(), file);
            let a = h.state();
            let settled = a.state.frame_label == *file
                && !a.state.busy_frame
                && a.state.tracker.visible().count() > 0
                && a.state.tracker.visible().all(|t| !t.pending);
            if settled {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{file}: {:?}",
                live_labels(h)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Who is in each fixture photo (one face each).
fn person_of(file: &str) -> &'static str {
    if file.starts_with("obama") {
        "Obama"
    } else {
        "Biden"
    }
}

#[test]
fn a_slideshow_never_shows_a_name_computed_on_another_photo() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = live_with_obama_and_biden(dir.path());
    // Obama then Biden at about the same place: before the fix the Biden photo continued
    // Obama's track (IoU >= 0.3) and showed "Obama 0.00" in green.
    let files = [
        "obama.jpg",
        "biden.jpg",
        "obama2.jpg",
        "biden2.jpg",
        "obama3.jpg",
    ];
    slideshow_step_by_step(&mut h, &files, |a, file| {
        if a.state.frame_label != file {
            return;
        }
        for t in a.state.tracker.visible() {
            if let TrackLabel::Match { name, .. } = TrackLabel::of(t, &a.state.threshold()) {
                assert_eq!(name, person_of(file), "a name from another photo on {file}");
            }
        }
    });
    // Each photo's own answer: the right person, at the right distance.
    let labels = live_labels(&h);
    assert!(labels[0].starts_with("Obama "), "{labels:?}");
}

#[test]
fn with_the_matcher_stopped_mid_slideshow_no_old_name_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[]);
    let remote = MatcherChoice::Remote {
        url: server.url.clone(),
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "a.key", remote)));
    connected(&mut h);
    show(&mut h, "obama.jpg");
    enrol(&mut h, "Obama");
    show(&mut h, "biden.jpg");
    enrol(&mut h, "Biden");
    h.get_by_label("Live: identify every face in view").click();
    h.step();
    slideshow_step_by_step(&mut h, &["obama3.jpg"], |_, _| {});
    assert!(live_labels(&h)[0].starts_with("Obama "));
    server.kill9();
    // The next photo cannot be identified: grey "matcher unreachable", never Obama's.
    assert!(h.state_mut().select_file("biden2.jpg"));
    let start = Instant::now();
    loop {
        h.step();
        let a = h.state();
        if a.state.frame_label == "biden2.jpg" {
            for t in a.state.tracker.visible() {
                let l = TrackLabel::of(t, &a.state.threshold());
                assert!(
                    matches!(l, TrackLabel::Pending | TrackLabel::Unreachable(_)),
                    "{l:?} on biden2.jpg with the matcher down"
                );
            }
            if a.state.tracker.visible().any(|t| {
                let t_1128 = Threshold::new(1.128, &Params::v1());
                matches!(TrackLabel::of(t, &t_1128), TrackLabel::Unreachable(_))
            }) {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{:?}",
            live_labels(&h)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
    assert!(shows(&h, "matcher unreachable"));
    // Settings and the gallery no longer say "connected".
    wait(&mut h, "the lost connection", |a| {
        matches!(a.state.connection, Connection::Failed(_))
    });
    assert!(shows(&h, "Not connected"));
    assert!(
        !shows(&h, "Obama (1 template(s))"),
        "no gallery while not connected"
    );
}

/// Presses at `pos`, lets the UI run a frame (focus moves), then releases there.
fn press_release(h: &mut Harness<'static, BlindfaceApp>, pos: eframe::egui::Pos2) {
    use eframe::egui::{Event, Modifiers, PointerButton};
    h.event(Event::PointerMoved(pos));
    h.step();
    for pressed in [true, false] {
        h.event(Event::PointerButton {
            pos,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::default(),
        });
        h.step();
    }
}

/// Where the Remove button on the gallery row labelled `row` is.
fn remove_button_of(h: &Harness<'static, BlindfaceApp>, row: &str) -> eframe::egui::Rect {
    let row = h.get_by_label(row).rect();
    h.get_all_by_label("Remove")
        .map(|n| n.rect())
        .find(|r| (r.center().y - row.center().y).abs() < row.height())
        .expect("a Remove button on the row")
}

#[test]
fn remove_takes_the_row_under_the_pointer_and_only_after_confirming() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    enrol(&mut h, "Obama");
    show(&mut h, "biden.jpg");
    enrol(&mut h, "Biden");
    // The Name field has focus while Remove is pressed (before the fix a hint above the
    // list vanished on the press and the release landed on the next row).
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    assert!(h.state().panels.enrol.typing);
    let remove = remove_button_of(&h, "Obama (1 template(s))");
    press_release(&mut h, remove.center());
    h.step();
    // Nothing is removed yet: the dialog names the person and the templates.
    assert_eq!(
        h.state()
            .panels
            .gallery
            .pending_removal
            .as_ref()
            .map(|r| r.name.as_str()),
        Some("Obama")
    );
    assert!(shows(
        &h,
        "The template of Obama is erased from the matcher"
    ));
    assert_eq!(h.state().state.gallery.len(), 2);
    // Cancel keeps everyone.
    h.get_by_label("Cancel").click();
    h.step();
    assert!(h.state().panels.gallery.pending_removal.is_none());
    h.step();
    assert_eq!(h.state().state.gallery.len(), 2);
    // Again, and confirm: Obama goes, Biden stays.
    press_release(&mut h, remove.center());
    h.step();
    h.get_by_label("Remove Obama").click();
    h.step();
    wait(&mut h, "the removal", |a| a.state.gallery.len() == 1);
    assert_eq!(h.state().state.gallery[0].1, "Biden");
}

#[test]
fn live_on_a_paused_image_labels_every_face_at_once_and_after_each_enrolment() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama_and_biden.jpg");
    // The folder is paused: no new frame will come.
    let serial = h.state().state.frame_serial;
    h.get_by_label("Live: identify every face in view").click();
    h.step();
    wait(&mut h, "every face labelled", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        v.len() == 3 && v.iter().all(|t| t.matched())
    });
    assert_eq!(live_labels(&h), ["nobody enrolled"; 3]);
    // Enrol the selected (largest) face with Live on: labels come back at once, against
    // the grown gallery.
    enrol(&mut h, "Someone");
    wait(&mut h, "relabelled", |a| {
        let v: Vec<_> = a.state.tracker.visible().collect();
        v.len() == 3 && v.iter().all(|t| t.matched() && t.best().is_some())
    });
    assert!(
        live_labels(&h)
            .iter()
            .any(|l| l.starts_with("Someone 0.00")),
        "{:?}",
        live_labels(&h)
    );
    assert_eq!(
        h.state().state.frame_serial,
        serial,
        "no new frame was needed"
    );
}

#[test]
fn every_panel_is_current_or_says_it_is_not_after_a_source_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    enrol(&mut h, "Obama");
    show(&mut h, "obama2.jpg");
    identify(&mut h);
    assert!(shows_exact(&h, "Match: Obama"));
    assert!(shows(&h, "Last request: Identify, obama2.jpg"));
    // Another photo: no verdict about it until it is identified.
    show(&mut h, "biden.jpg");
    assert!(
        !shows_exact(&h, "Match: Obama"),
        "an old verdict beside Biden"
    );
    assert!(shows(
        &h,
        "The last result was for another photo (obama2.jpg)"
    ));
    assert!(shows(
        &h,
        "Last request: Identify, obama2.jpg (previous photo)"
    ));
    identify(&mut h);
    assert!(shows(&h, "Last request: Identify, biden.jpg"));
    assert!(!shows(&h, "another photo"));
}

#[test]
fn the_remote_default_is_https_and_an_http_url_to_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let h = builtin_on(dir.path(), "obama.jpg");
    assert_eq!(
        h.state().panels.settings.url,
        blindface::matcher::default_remote_url()
    );
    assert!(h
        .state()
        .panels
        .settings
        .url
        .starts_with("https://127.0.0.1:"));
    drop(h);
    let server = Server::start_secure(&dir.path().join("server"), &[]);
    let http = server.url.replacen("https://", "http://", 1);
    let mut h = harness(BlindfaceApp::new(config(
        dir.path(),
        "b.key",
        MatcherChoice::Remote { url: http.clone() },
    )));
    wait(&mut h, "the connection error", |a| {
        matches!(a.state.connection, Connection::Failed(_))
    });
    assert!(
        shows(&h, "speaks HTTPS, not plain HTTP: use https://"),
        "{:?}",
        h.state().state.notices
    );
}

#[test]
fn every_frame_is_shown_and_the_newest_is_always_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = builtin_on(dir.path(), "obama.jpg");
    let group = blindface::vision::load_image(faces().join("obama_and_biden.jpg")).unwrap();
    let frame = |dx: u32| image::imageops::crop_imm(&group, 700 + dx, 300, 640, 480).to_image();
    let (previews, detected) = (h.state().state.preview_serial, h.state().state.frame_serial);
    // Six frames at once, faster than detection: each is shown, the newest is detected,
    // older ones waiting behind it may be skipped.
    for k in 0..6u32 {
        h.state().worker.send(Command::Analyse {
            label: format!("frame {k}"),
            image: Arc::new(frame(4 * k)),
            source: STREAM,
        });
    }
    wait(&mut h, "every frame shown, the last detected", |a| {
        a.state.preview_serial == previews + 6 && a.state.frame_label == "frame 5"
    });
    let found = h.state().state.frame_serial - detected;
    assert!((1..=6).contains(&found), "{found} detections");
    // The boxes drawn belong to the frame shown (same picture, same size).
    let s = &h.state().state;
    assert_eq!(s.preview.as_ref().unwrap().0, s.frame_source);
    assert_eq!(s.faces.len(), 2, "the two men in the crop");
}

#[test]
fn a_multi_shot_enrolment_that_fails_half_way_enrols_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Room for two templates: the third shot is refused by the matcher.
    let server = Server::start(&dir.path().join("server"), &["--max-templates", "2"]);
    let remote = MatcherChoice::Remote {
        url: server.url.clone(),
    };
    let mut h = harness(BlindfaceApp::new(config(dir.path(), "a.key", remote)));
    connected(&mut h);
    show(&mut h, "obama.jpg");
    h.get_by_role_and_label(Role::TextInput, "Name").click();
    h.step();
    h.get_by_role_and_label(Role::TextInput, "Name")
        .type_text("Obama");
    h.step();
    for (k, file) in ["obama.jpg", "obama2.jpg", "obama3.jpg"].iter().enumerate() {
        show(&mut h, file);
        h.get_by_label(&format!("Capture shot ({k}/3)")).click();
        h.step();
    }
    h.step();
    assert_eq!(h.state().panels.enrol.shots.len(), 3);
    h.get_by_label("Enrol 3 shot(s) as Obama").click();
    h.step();
    wait(&mut h, "the enrolment error", |a| {
        !a.state.busy_enrol
            && a.state
                .notices
                .iter()
                .any(|n| n.is_error && n.topic == Some(Operation::Enrol))
    });
    // The two templates enrolled before the refusal were taken back, and the list says so.
    h.get_by_label("Refresh").click();
    h.step();
    wait(&mut h, "the gallery", |a| {
        matches!(a.state.connection, Connection::Ready(_))
    });
    std::thread::sleep(Duration::from_millis(300));
    h.step();
    assert!(
        h.state().state.gallery.is_empty(),
        "{:?}",
        h.state().state.gallery
    );
    assert!(shows(&h, "Nobody is enrolled yet."));
}

#[test]
fn at_1024x640_the_preview_is_the_largest_and_controls_stay_put() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::builder()
        .with_size([1024.0, 640.0])
        .with_accessibility_check(false)
        .build_ui_state(
            |ui, app: &mut BlindfaceApp| app.ui(ui),
            BlindfaceApp::new(config(dir.path(), "a.key", MatcherChoice::Builtin)),
        );
    connected(&mut h);
    show(&mut h, "obama.jpg");
    // The details panel starts hidden in a narrow window; the top bar brings it back.
    assert!(!h.state().panels.layout.right_open);
    assert!(h.query_by_label("Threshold (L2)").is_none());
    let place = |h: &Harness<'static, BlindfaceApp>, label: &str| h.get_by_label(label).rect();
    let (prev, next) = (place(&h, "< Previous"), place(&h, "Next >"));
    assert_eq!(prev.center().y, next.center().y, "one row, no wrap");
    // A longer file name moves nothing.
    show(&mut h, "obama_and_biden.jpg");
    assert_eq!(place(&h, "Next >"), next);
    h.get_by_label("Details").click();
    h.step();
    h.step();
    assert!(h.state().panels.layout.right_open);
    assert!(h.query_by_label("Threshold (L2)").is_some());
}

/// Issue #20 item 6 in the window: an entry whose label does not open (an enrolment
/// replayed under another id) is listed as "(label does not open)" with a notice saying
/// so, never gets a name on screen, and Remove takes it out by id, leaving the rest.
#[test]
fn an_entry_whose_label_does_not_open_is_shown_as_such_and_removable() {
    use blindface::client::keys::KeyFile;
    use blindface::he::{SecretKey, TemplateId};
    use blindface::matcher::{BuiltinMatcher, Matcher};
    let dir = tempfile::tempdir().unwrap();
    {
        let mut h = builtin_on(dir.path(), "obama.jpg");
        enrol(&mut h, "Obama");
    }
    // The replay, through the store with the app closed: Obama's sealed label and
    // template under a new id.
    let key = SecretKey::load(&dir.path().join("a.key")).unwrap();
    {
        let m = BuiltinMatcher::open(&dir.path().join("data"), key.params(), &key.fingerprint())
            .unwrap();
        let listed = m.list().unwrap();
        assert_eq!(listed.len(), 1);
        let obama = &listed[0];
        let replayed = TemplateId(obama.id.0 % (TemplateId::LIMIT - 2) + 1);
        let t = blindface::he::synthetic_templates(1, 3, key.params()).remove(0);
        m.enrol(
            replayed,
            &blindface::he::encrypt_template(&key, &t),
            &obama.label,
        )
        .unwrap();
    }
    let mut h = builtin_on(dir.path(), "obama2.jpg");
    wait(&mut h, "the gallery", |a| a.state.gallery.len() == 2);
    let unreadable = blindface::client::UNREADABLE_NAME;
    assert!(shows(&h, &format!("{unreadable} (1 template(s))")));
    assert!(shows(&h, "Obama (1 template(s))"));
    assert!(
        shows(&h, "do not open with this key"),
        "a notice says why: {:?}",
        h.state().state.notices
    );
    // Obama is still found, and the replayed entry never answers.
    identify(&mut h);
    let m = h.state().state.last_match.clone().unwrap();
    assert_eq!(m.distances.len(), 1);
    assert!(shows_exact(&h, "Match: Obama"));
    // Remove on its row, confirmed: only Obama is left.
    let remove = remove_button_of(&h, &format!("{unreadable} (1 template(s))"));
    press_release(&mut h, remove.center());
    h.step();
    h.get_by_label(&format!("Remove {unreadable}")).click();
    h.step();
    wait(&mut h, "the removal", |a| a.state.gallery.len() == 1);
    assert_eq!(h.state().state.gallery[0].1, "Obama");
}
