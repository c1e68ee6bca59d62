//! The desktop app (eframe/egui): live preview with faces, enrol by capture, verify and
//! identify through the encrypted matcher, a threshold that re-decides instantly, timings,
//! matcher and key settings.
//!
//! Layout follows egui's demo app: [`state`] holds what the window shows (persisted
//! `Settings` apart from runtime state), [`worker`] does every heavy step on a background
//! thread behind the [`protocol`] both share, and each panel is one file that draws from
//! the state, edits the values of its own widgets, and returns [`Action`]s that
//! [`BlindfaceApp::apply`] carries out in one place. [`BlindfaceApp::ui`] is the whole
//! window, so tests drive it with `egui_kittest` without a display; [`run`] opens it with
//! eframe (glow). The window never holds the secret key: only the worker does.

pub mod action;
pub mod camera;
pub mod dialogs;
pub mod enrol;
pub mod fonts;
pub mod gallery;
pub mod keys;
pub mod match_panel;
pub mod preview;
pub mod protocol;
pub mod settings;
pub mod source;
pub mod state;
pub mod textures;
pub mod threshold;
pub mod timings;
pub mod top_bar;
pub mod wire_panel;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;

use crate::matcher::MatcherSpec;
pub use action::Action;
use protocol::{Command, Event, Shot, SourceId};
use source::Source;
use state::{AppState, Settings};
use textures::Textures;
use worker::{Worker, WorkerConfig};

/// How long settings wait after the last change before they are written (a slider drag
/// writes once, not every frame).
pub const SETTINGS_SAVE_DELAY: Duration = Duration::from_millis(500);

/// Below this window width the details panel starts hidden.
pub const WIDE_WINDOW: f32 = 1200.0;

/// How often a remote matcher is asked whether it is still there.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(3);

pub use dialogs::{DialogAnswer, DialogKind, Dialogs, RfdDialogs};

/// Where the app keeps things and what it starts with.
pub struct AppConfig {
    /// Secret key file (created on first run).
    pub key_path: PathBuf,
    /// Built-in matcher's store.
    pub data_dir: PathBuf,
    /// `settings.json` (matcher choice, threshold, ...).
    pub settings_path: PathBuf,
    /// Start with this image or folder instead of the camera.
    pub source: Option<PathBuf>,
    /// A folder source advances by itself (like a slow video).
    pub autoplay: bool,
    /// Overrides the saved matcher choice.
    pub matcher: Option<MatcherSpec>,
    /// Overrides the saved threshold.
    pub threshold: Option<f32>,
    /// Try the camera when no source is given.
    pub camera: bool,
    /// Start with continuous identify on.
    pub identify: bool,
    /// Start in live mode (every face tracked and identified).
    pub live: bool,
    pub dialogs: Arc<dyn Dialogs>,
}

/// The platform's config directory for blindface (`~/.config/blindface`).
pub fn config_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "blindface")
        .map(|d| d.config_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".blindface"))
}

impl AppConfig {
    /// The platform's directories, rfd dialogs, camera if no source.
    pub fn new(key_path: PathBuf, data_dir: PathBuf, source: Option<PathBuf>) -> Self {
        AppConfig {
            key_path,
            data_dir,
            settings_path: config_dir().join("settings.json"),
            camera: source.is_none(),
            source,
            autoplay: true,
            identify: false,
            live: false,
            matcher: None,
            threshold: None,
            dialogs: Arc::new(RfdDialogs),
        }
    }
}

/// A camera list being read off the UI thread, with the choice to open when it arrives.
struct CameraListing {
    answer: Receiver<Result<Vec<camera::CameraEntry>, String>>,
    choice: usize,
    resolution: (u32, u32),
    fps: u32,
}

/// The panels' own widget state, apart from what the window shows ([`AppState`]): each
/// panel owns its fields and follows the worker's events it cares about (`observe`).
pub struct Panels {
    pub enrol: enrol::EnrolPanel,
    pub gallery: gallery::GalleryPanel,
    pub settings: settings::SettingsPanel,
    pub top_bar: top_bar::TopBar,
    pub layout: top_bar::PanelLayout,
}

impl Panels {
    fn new(settings: &Settings) -> Self {
        Panels {
            enrol: enrol::EnrolPanel::default(),
            gallery: gallery::GalleryPanel::default(),
            settings: settings::SettingsPanel::new(settings),
            top_bar: top_bar::TopBar::default(),
            layout: top_bar::PanelLayout::default(),
        }
    }

    /// Lets each panel see an event before the state applies it.
    fn observe(&mut self, event: &Event, state: &AppState) {
        self.enrol.observe(event, state);
        self.settings.observe(event);
    }
}

/// The app: state, panels, worker, source, textures, dialogs.
pub struct BlindfaceApp {
    pub state: AppState,
    pub panels: Panels,
    pub worker: Worker,
    pub source: Source,
    pub textures: Textures,
    pub cameras: Vec<camera::CameraEntry>,
    pending_camera: Option<CameraListing>,
    settings_path: PathBuf,
    settings_dirty: Option<Instant>,
    dialogs: Arc<dyn Dialogs>,
    dialog_tx: Sender<(DialogKind, DialogAnswer)>,
    dialog_rx: Receiver<(DialogKind, DialogAnswer)>,
    /// A dialog (the system's or the built-in browser) is open.
    pub dialog_open: bool,
    /// The built-in file browser, when no system dialog could be shown.
    pub in_app_dialog: Option<dialogs::InAppDialog>,
    /// The user was told once that there is no system file dialog.
    told_no_native_dialog: bool,
    /// The fallback fonts were added to this window's context.
    fonts_installed: bool,
    /// The worker was restarted this many times after a crash.
    pub worker_restarts: u32,
    /// The picture the source shows now (a new one per still image, per camera or stream
    /// connection).
    source_id: SourceId,
    /// The live source had a problem (a reconnection makes a new picture).
    source_troubled: bool,
    last_health_check: Instant,
}

impl BlindfaceApp {
    pub fn new(config: AppConfig) -> Self {
        let mut settings = Settings::load(&config.settings_path);
        if let Some(m) = config.matcher.clone() {
            settings.matcher = m;
        }
        if let Some(t) = config.threshold {
            settings.threshold = t;
        }
        let mut state = AppState::new(settings.clone(), config.key_path.clone());
        state.continuous = config.identify;
        state.live = config.live;
        let worker = Worker::spawn(WorkerConfig {
            data_dir: config.data_dir.clone(),
            key_path: config.key_path.clone(),
            matcher: settings.matcher.clone(),
            insecure_http: settings.insecure_http,
        });
        let (dialog_tx, dialog_rx) = channel();
        let mut app = BlindfaceApp {
            panels: Panels::new(&settings),
            state,
            worker,
            source: Source::None,
            textures: Textures::default(),
            cameras: Vec::new(),
            pending_camera: None,
            settings_path: config.settings_path,
            settings_dirty: None,
            dialogs: config.dialogs,
            dialog_tx,
            dialog_rx,
            dialog_open: false,
            in_app_dialog: None,
            told_no_native_dialog: false,
            fonts_installed: false,
            worker_restarts: 0,
            source_id: SourceId(0),
            source_troubled: false,
            last_health_check: Instant::now(),
        };
        match config.source {
            Some(p) => app.open_source(&p, config.autoplay),
            None if config.camera => app.apply(Action::StartCamera {
                choice: 0,
                resolution: camera::RESOLUTIONS[0],
                fps: camera::FRAME_RATES[0],
            }),
            None => {}
        }
        app
    }

    /// Opens an image or a folder as the source.
    pub fn open_source(&mut self, path: &Path, autoplay: bool) {
        match Source::open_path(path, autoplay) {
            Ok(src) => {
                self.source = src;
                if let Some(p) = self.source.current_file() {
                    self.load_file(p);
                }
            }
            Err(e) => self.state.error(e),
        }
    }

    /// A new picture begins: results of the previous one are never drawn on it.
    fn next_source(&mut self) -> SourceId {
        self.source_id = SourceId(self.source_id.0 + 1);
        self.state.camera_source = matches!(self.source, Source::Camera(_) | Source::Stream(_));
        self.source_id
    }

    fn load_file(&mut self, path: PathBuf) {
        self.state.busy_frame = true;
        let source = self.next_source();
        self.worker.send(Command::LoadFile { path, source });
    }

    /// Selects a file of the folder source by name and loads it (tests and scripts).
    pub fn select_file(&mut self, name: &str) -> bool {
        match self.source.select(name) {
            Some(p) => {
                self.load_file(p);
                true
            }
            None => false,
        }
    }

    /// Runs a dialog on its own thread; the answer arrives in [`Self::poll`].
    fn ask(&mut self, kind: DialogKind) {
        if self.dialog_open {
            return;
        }
        self.dialog_open = true;
        let dialogs = self.dialogs.clone();
        let tx = self.dialog_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((kind, dialogs.answer(kind)));
        });
    }

    /// Acts on a dialog's answer: a chosen path is opened, exported to or imported; when no
    /// system dialog can be shown, the built-in file browser opens instead (and says why,
    /// once).
    fn dialog_answered(&mut self, kind: DialogKind, answer: DialogAnswer) {
        match answer {
            DialogAnswer::Chosen(path) => match kind {
                DialogKind::OpenImage | DialogKind::OpenFolder => self.open_source(&path, true),
                DialogKind::ExportKey => self.worker.send(Command::ExportKey(path)),
                DialogKind::ImportKey => self.worker.send(Command::InspectKey(path)),
            },
            DialogAnswer::Cancelled => {}
            DialogAnswer::Unavailable(why) => {
                if !self.told_no_native_dialog {
                    self.told_no_native_dialog = true;
                    self.state.info(format!(
                        "No system file dialog can be shown here ({why}), so blindface uses its \
                         own file browser."
                    ));
                }
                let current = match &self.source {
                    Source::Image(p) => Some(p.clone()),
                    Source::Folder { dir, .. } => Some(dir.clone()),
                    _ => None,
                };
                let start = dialogs::start_dir(kind, current.as_deref());
                self.in_app_dialog = Some(dialogs::InAppDialog::new(kind, &start));
                self.dialog_open = true;
            }
        }
    }

    /// Draws the built-in file browser while it is open.
    fn show_in_app_dialog(&mut self, ctx: &egui::Context) {
        let Some(d) = &mut self.in_app_dialog else {
            return;
        };
        let kind = d.kind;
        match d.show(ctx) {
            None => {}
            Some(dialogs::InAppEvent::Invalid(e)) => self.state.error(e),
            Some(dialogs::InAppEvent::Done(answer)) => {
                self.in_app_dialog = None;
                self.dialog_open = false;
                self.dialog_answered(kind, answer);
            }
        }
    }

    /// Writes the settings now; a failure is shown, not fatal.
    pub fn save_settings(&mut self) {
        self.settings_dirty = None;
        if let Err(e) = self.state.settings.save(&self.settings_path) {
            self.state.error(format!(
                "settings could not be saved to {}: {e}",
                self.settings_path.display()
            ));
        }
    }

    /// The one place panel actions take effect.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Ask(kind) => self.ask(kind),
            Action::StartCamera {
                choice,
                resolution,
                fps,
            } => {
                if self.pending_camera.is_none() {
                    self.pending_camera = Some(CameraListing {
                        answer: camera::list_cameras_async(),
                        choice,
                        resolution,
                        fps,
                    });
                }
            }
            Action::OpenStream(url) => match crate::frames::MjpegStream::open(url.trim()) {
                Ok(s) => {
                    self.source = Source::Stream(s);
                    self.next_source();
                }
                Err(e) => self
                    .state
                    .error_about(protocol::Operation::Frame, format!("{e}")),
            },
            Action::FolderStep(d) => {
                if let Some(p) = self.source.step(d) {
                    self.load_file(p);
                }
            }
            Action::FolderJump(i) => {
                if let Some(p) = self.source.jump(i) {
                    self.load_file(p);
                }
            }
            Action::TogglePlay => self.source.toggle_play(),
            Action::Enrol => {
                if let Some(shot) = self.selected_shot() {
                    self.enrol(vec![shot]);
                }
            }
            Action::CaptureShot => {
                if self.panels.enrol.shots.len() >= enrol::SHOTS {
                    return;
                }
                if let Some(shot) = self.selected_shot() {
                    let panel = &mut self.panels.enrol;
                    panel.shot_serial += 1;
                    panel.shots.push(enrol::PendingShot {
                        crop: Arc::new(worker::crop(&shot.image, &shot.face)),
                        shot,
                        serial: panel.shot_serial,
                    });
                }
            }
            Action::ClearShots => self.panels.enrol.shots.clear(),
            Action::EnrolShots => {
                let shots = self
                    .panels
                    .enrol
                    .shots
                    .iter()
                    .map(|s| s.shot.clone())
                    .collect();
                self.enrol(shots);
            }
            Action::SetLive(on) => {
                self.state.live = on;
                // Every face in view is identified at once, also on a still image.
                self.state.relabel();
                if on {
                    self.state.continuous = false;
                }
            }
            Action::Match(mode) => {
                let (Some(image), Some(face)) = (self.state.frame.clone(), self.state.face())
                else {
                    self.state.error_about(
                        protocol::Operation::Match,
                        protocol::AppError::NoFace.to_string(),
                    );
                    return;
                };
                self.state.busy_match = true;
                self.worker.send(Command::Match {
                    image,
                    face,
                    mode,
                    source: self.state.frame_label.clone(),
                    epoch: self.state.epoch(),
                });
            }
            Action::Remove(ids) => self.worker.send(Command::Remove { ids }),
            Action::Refresh => self.worker.send(Command::Refresh),
            Action::Connect { spec, access } => {
                self.state.settings.matcher = spec.clone();
                self.state.settings.insecure_http = access.insecure_http;
                self.save_settings();
                // Another matcher: nothing of the previous one's gallery stays on screen.
                self.state.last_match = None;
                self.state.last_exchange = None;
                self.state.gallery.clear();
                self.state.gallery_changed();
                self.worker.send(Command::Connect { spec, access });
            }
            Action::GenerateKey => self.worker.send(Command::GenerateKey),
            Action::AdoptKey => {
                self.state.key_candidate = None;
                self.worker.send(Command::AdoptKey);
            }
            Action::DiscardKey => {
                self.state.key_candidate = None;
                self.worker.send(Command::DiscardKey);
            }
            Action::SettingsChanged => {
                if let Source::Camera(c) = &self.source {
                    c.set_mirror(self.state.settings.mirror);
                }
                self.settings_dirty = Some(Instant::now());
            }
            Action::Dismiss(i) => {
                if i < self.state.notices.len() {
                    self.state.notices.remove(i);
                }
            }
            Action::SelectFace(i) => self.state.selected_face = Some(i),
        }
    }

    /// Drains worker events, dialog answers and the camera list; restarts a crashed
    /// worker; saves settings once they rest; advances the source.
    pub fn poll(&mut self) {
        let mut new_frame = false;
        let mut crashed = false;
        for e in self.worker.drain() {
            match &e {
                Event::Frame { .. } => new_frame = true,
                Event::Crashed { .. } => crashed = true,
                _ => {}
            }
            self.panels.observe(&e, &self.state);
            self.state.apply(e);
        }
        if crashed {
            self.worker_restarts += 1;
            self.worker.restart(
                self.state.settings.matcher.clone(),
                self.state.settings.insecure_http,
            );
        }
        self.state.matcher_calls = self.worker.match_calls();
        self.state.expire_notices(Instant::now());
        if matches!(self.state.settings.matcher, MatcherSpec::Remote { .. })
            && self.last_health_check.elapsed() >= HEALTH_CHECK_EVERY
        {
            self.last_health_check = Instant::now();
            self.worker.send(Command::CheckConnection);
        }
        while let Ok((kind, answer)) = self.dialog_rx.try_recv() {
            self.dialog_open = false;
            self.dialog_answered(kind, answer);
        }
        self.poll_camera_list();
        if self
            .settings_dirty
            .is_some_and(|t| t.elapsed() >= SETTINGS_SAVE_DELAY)
        {
            self.save_settings();
        }
        self.send_due_tracks();
        if new_frame && self.state.continuous && !self.state.busy_match {
            let mode = match_panel::current_mode(&self.state);
            self.apply(Action::Match(mode));
        }
        let interval = self.state.settings.folder_interval_s;
        if !self.state.busy_frame {
            match self.source.tick(interval, self.panels.enrol.typing) {
                Some(source::Next::File(p)) => self.load_file(p),
                Some(source::Next::Frame(label, image)) => {
                    self.state.busy_frame = true;
                    self.worker.send(Command::Analyse {
                        label,
                        image,
                        source: self.source_id,
                    });
                }
                Some(source::Next::Raw {
                    label,
                    frame,
                    mirror,
                    counter,
                }) => {
                    self.state.busy_frame = true;
                    self.worker.send(Command::AnalyseRaw {
                        label,
                        frame,
                        mirror,
                        counter,
                        source: self.source_id,
                    });
                }
                None => {}
            }
        }
        self.show_source_problem();
    }

    fn poll_camera_list(&mut self) {
        let Some(listing) = &self.pending_camera else {
            return;
        };
        let answer = match listing.answer.try_recv() {
            Ok(a) => a,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(_) => Err("the camera list could not be read".into()),
        };
        let request = camera::CameraRequest {
            resolution: listing.resolution,
            fps: listing.fps,
            mirror: self.state.settings.mirror,
        };
        let choice = listing.choice;
        self.pending_camera = None;
        match answer {
            Ok(list) if list.is_empty() => self.state.error(camera::NO_CAMERA),
            Ok(list) => {
                let entry = list.get(choice).unwrap_or(&list[0]).clone();
                self.cameras = list;
                match camera::Camera::open(&entry, request) {
                    Ok(c) => {
                        self.source = Source::Camera(c);
                        self.next_source();
                    }
                    Err(e) => self.state.error(e),
                }
            }
            Err(e) => self.state.error(e),
        }
    }

    /// Shows what is wrong with a live source while it lasts (one notice, replaced as the
    /// message changes) and clears it once the source works again.
    fn show_source_problem(&mut self) {
        let problem = self.source.problem();
        // Frames after a lost connection are another picture (maybe another scene).
        if problem.is_some() && !self.source_troubled {
            self.next_source();
        }
        self.source_troubled = problem.is_some();
        let topic = Some(protocol::Operation::Source);
        let current = self.state.notices.iter().find(|n| n.topic == topic);
        if current.map(|n| &n.text) == problem.as_ref() {
            return;
        }
        self.state.clear_topic(protocol::Operation::Source);
        if let Some(p) = problem {
            self.state.error_about(protocol::Operation::Source, p);
        }
    }

    /// The selected face of the current frame, or an enrolment error saying what is missing.
    fn selected_shot(&mut self) -> Option<Shot> {
        match (self.state.frame.clone(), self.state.face()) {
            (Some(image), Some(face)) => Some(Shot { image, face }),
            _ => {
                self.state.error_about(
                    protocol::Operation::Enrol,
                    "no face to enrol: open an image with a face, or face the camera",
                );
                None
            }
        }
    }

    fn enrol(&mut self, shots: Vec<Shot>) {
        let name = self.panels.enrol.name.trim().to_string();
        if name.is_empty() {
            self.state.error_about(
                protocol::Operation::Enrol,
                protocol::AppError::NoName.to_string(),
            );
            return;
        }
        if shots.is_empty() {
            return;
        }
        self.state.busy_enrol = true;
        self.worker.send(Command::Enrol { name, shots });
    }

    /// Sends the tracks that are due for matching (live mode).
    fn send_due_tracks(&mut self) {
        let Some(image) = self.state.frame.clone() else {
            self.state.due_tracks.clear();
            return;
        };
        for id in std::mem::take(&mut self.state.due_tracks) {
            if let Some(t) = self.state.tracker.get(id) {
                self.worker.send(Command::MatchTrack {
                    track: id,
                    image: image.clone(),
                    face: t.face,
                    epoch: self.state.epoch(),
                });
            }
        }
    }

    /// Whether the camera list is being read.
    pub fn listing_cameras(&self) -> bool {
        self.pending_camera.is_some()
    }

    /// The whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_installed {
            // Before any text of this pass (kittest has no earlier hook; `run` does it in
            // eframe's creation closure).
            self.fonts_installed = true;
            fonts::install(&ctx);
        }
        self.worker.set_repaint(&ctx);
        self.poll();

        let mut actions = Vec::new();
        let sources = top_bar::Sources {
            source: &self.source,
            cameras: &self.cameras,
            listing_cameras: self.listing_cameras(),
        };
        let (state, panels) = (&mut self.state, &mut self.panels);
        egui::Panel::top("top").show(ui, |ui| {
            top_bar::ui(
                ui,
                &mut panels.top_bar,
                &mut panels.layout,
                state,
                sources,
                &mut actions,
            )
        });
        if !self.state.notices.is_empty() || self.state.first_run {
            egui::Panel::bottom("notices")
                .show(ui, |ui| notices_ui(ui, &mut self.state, &mut actions));
        }
        // The details panel hides when the window becomes narrow and comes back when it
        // becomes wide again (the preview stays the largest element); "Details" in the
        // top bar shows it at any width.
        let wide = ui.available_width() >= WIDE_WINDOW;
        let layout = &mut self.panels.layout;
        if layout.wide != Some(wide) {
            layout.wide = Some(wide);
            layout.right_open = wide;
        }
        let (state, panels) = (&mut self.state, &mut self.panels);
        let textures = &mut self.textures;
        let mut left_open = panels.layout.left_open;
        egui::Panel::left("left")
            .default_size(320.0)
            .size_range(260.0..=440.0)
            .resizable(true)
            .show_collapsible(ui, &mut left_open, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    enrol::ui(ui, &mut panels.enrol, state, textures, &mut actions);
                    ui.separator();
                    gallery::ui(ui, &mut panels.gallery, state, &mut actions);
                    ui.separator();
                    match_panel::ui(ui, state, &mut actions);
                    ui.separator();
                    settings::ui(ui, &mut panels.settings, state, &mut actions);
                });
            });
        panels.layout.left_open = left_open;
        let mut right_open = panels.layout.right_open;
        egui::Panel::right("right")
            .default_size(380.0)
            .size_range(300.0..=480.0)
            .resizable(true)
            .show_collapsible(ui, &mut right_open, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    threshold::ui(ui, state, &mut actions);
                    ui.separator();
                    wire_panel::ui(ui, state, textures);
                    ui.separator();
                    timings::ui(ui, state);
                });
            });
        panels.layout.right_open = right_open;
        let enrolling = panels.enrol.enrolling();
        egui::CentralPanel::default_margins().show(ui, |ui| {
            preview::ui(ui, state, enrolling, textures, &mut actions)
        });
        keys::confirmation(&ctx, state, &mut actions);
        gallery::confirmation(&ctx, &mut panels.gallery, &mut actions);
        for a in actions {
            self.apply(a);
        }
        self.show_in_app_dialog(&ctx);

        if self.state.busy_frame
            || self.state.busy_match
            || self.state.busy_enrol
            || self.source.is_live()
            || self.dialog_open
            || self.settings_dirty.is_some()
            || self.listing_cameras()
        {
            ctx.request_repaint_after(Duration::from_millis(100));
        } else if matches!(self.state.settings.matcher, MatcherSpec::Remote { .. }) {
            // An idle window still asks a remote matcher whether it is there, so
            // "connected" is never stale for longer than one check.
            ctx.request_repaint_after(HEALTH_CHECK_EVERY);
        }
        if self.state.notices.iter().any(|n| !n.is_error) {
            // Information goes by itself: wake up to take it away.
            ctx.request_repaint_after(Duration::from_secs(1));
        }
    }
}

fn notices_ui(ui: &mut egui::Ui, state: &mut AppState, actions: &mut Vec<Action>) {
    if state.first_run {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "A new secret key was created at {}: it alone can read the names and \
                 distances of your gallery, so the matcher never learns who is who. Export a \
                 copy in Settings.",
                state.key_path.display()
            ));
            if ui.button("Got it").clicked() {
                state.first_run = false;
            }
        });
    }
    for (i, n) in state.notices.iter().enumerate() {
        ui.horizontal_wrapped(|ui| {
            let color = if n.is_error {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().text_color()
            };
            let prefix = if n.is_error { "Error: " } else { "" };
            ui.colored_label(color, format!("{prefix}{}", n.text));
            if ui.small_button("Dismiss").clicked() {
                actions.push(Action::Dismiss(i));
            }
        });
    }
}

impl eframe::App for BlindfaceApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        BlindfaceApp::ui(self, ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_settings();
    }
}

/// Opens the window (blocks until it is closed).
pub fn run(config: AppConfig) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("blindface")
            .with_inner_size([1400.0, 860.0]),
        ..Default::default()
    };
    eframe::run_native(
        "blindface",
        options,
        Box::new(move |cc| {
            // Names in any script: system fallback fonts after egui's own.
            fonts::install(&cc.egui_ctx);
            let mut app = BlindfaceApp::new(config);
            app.fonts_installed = true;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "the window could not be opened ({e}); is a display available? The subcommands \
             (blindface --help) work without one"
        )
    })
}
