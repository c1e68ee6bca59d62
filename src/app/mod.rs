//! The desktop app (eframe/egui): live preview with faces, enrol by capture, verify and
//! identify through the encrypted matcher, a threshold that re-decides instantly, timings,
//! matcher and key settings.
//!
//! Layout follows egui's demo app: [`state`] holds what the window shows (no drawing),
//! [`worker`] does every heavy step on a background thread, and each panel is one file
//! drawing from and writing to the state. [`BlindfaceApp::ui`] is the whole window, so tests
//! drive it with `egui_kittest` without a display; [`run`] opens it with eframe (glow).

pub mod camera;
pub mod enrol;
pub mod gallery;
pub mod match_panel;
pub mod preview;
pub mod settings;
pub mod source;
pub mod state;
pub mod threshold;
pub mod timings;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;

use crate::he::{Params, SecretKey};
use source::Source;
use state::{AppState, MatchMode, MatcherChoice, Settings};
use worker::{Command, Worker, WorkerConfig};

/// File dialogs, injectable so that tests never open one. Each call may block (it runs on
/// its own thread).
pub trait Dialogs: Send + Sync {
    fn open_image(&self) -> Option<PathBuf>;
    fn open_folder(&self) -> Option<PathBuf>;
    /// Where to write an exported key.
    fn export_key(&self) -> Option<PathBuf>;
    /// Which key file to import.
    fn import_key(&self) -> Option<PathBuf>;
}

/// The platform's dialogs (rfd, xdg-portal backend on Linux).
pub struct RfdDialogs;

impl Dialogs for RfdDialogs {
    fn open_image(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open an image")
            .add_filter("Images", source::IMAGE_EXTENSIONS)
            .pick_file()
    }
    fn open_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a folder of images")
            .pick_folder()
    }
    fn export_key(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Export the secret key")
            .set_file_name("blindface-secret.key")
            .save_file()
    }
    fn import_key(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Import a secret key")
            .pick_file()
    }
}

/// Which dialog answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    OpenImage,
    OpenFolder,
    ExportKey,
    ImportKey,
}

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
    pub matcher: Option<MatcherChoice>,
    /// Overrides the saved threshold.
    pub threshold: Option<f32>,
    /// Try the camera when no source is given.
    pub camera: bool,
    /// Start with continuous identify on.
    pub identify: bool,
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
            matcher: None,
            threshold: None,
            dialogs: Arc::new(RfdDialogs),
        }
    }
}

/// The key pending an import confirmation.
pub struct PendingImport {
    pub path: PathBuf,
    pub key: SecretKey,
}

/// The app: state, worker, textures, dialogs.
pub struct BlindfaceApp {
    pub state: AppState,
    pub worker: Worker,
    pub source: Source,
    pub key: Arc<SecretKey>,
    pub pending_import: Option<PendingImport>,
    pub(crate) settings_path: PathBuf,
    pub(crate) dialogs: Arc<dyn Dialogs>,
    dialog_tx: Sender<(DialogKind, Option<PathBuf>)>,
    dialog_rx: Receiver<(DialogKind, Option<PathBuf>)>,
    pub dialog_open: bool,
    pub(crate) preview_tex: Option<(u64, egui::TextureHandle)>,
    pub(crate) crop_tex: Option<(u64, egui::TextureHandle)>,
    /// Matcher URL and token being edited in Settings.
    pub(crate) remote_url: String,
    pub(crate) remote_token: String,
}

/// Loads the key, or creates it on first run. Returns the key, whether it was created,
/// and an error to show if an existing key could not be read (a temporary key is used).
fn load_or_create_key(path: &Path) -> (SecretKey, bool, Option<String>) {
    let params = Params::v1();
    if path.exists() {
        match SecretKey::load(path, &params) {
            Ok(k) => (k, false, None),
            Err(e) => (
                SecretKey::generate(&params),
                false,
                Some(format!(
                    "{e}. A temporary key is in use for this session only: import your key \
                     in Settings, or move the unreadable file away and restart"
                )),
            ),
        }
    } else {
        let key = SecretKey::generate(&params);
        match key.save(path, false) {
            Ok(()) => (key, true, None),
            Err(e) => (
                key,
                true,
                Some(format!(
                    "{e}. The new key is used for this session only; check that the folder \
                     is writable"
                )),
            ),
        }
    }
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
        let (key, created, key_error) = load_or_create_key(&config.key_path);
        let key = Arc::new(key);
        let mut state = AppState::new(settings.clone(), config.key_path.clone());
        state.key_fingerprint = key.fingerprint();
        state.first_run = created;
        state.continuous = config.identify;
        if let Some(e) = key_error {
            state.error(e);
        }
        let worker = Worker::spawn(
            WorkerConfig {
                data_dir: config.data_dir.clone(),
                key_path: config.key_path.clone(),
            },
            key.clone(),
            settings.matcher.clone(),
        );
        let (remote_url, remote_token) = match &settings.matcher {
            MatcherChoice::Remote { url, token } => (url.clone(), token.clone()),
            MatcherChoice::Builtin => (
                format!("http://{}", crate::server::DEFAULT_ADDR),
                String::new(),
            ),
        };
        let (dialog_tx, dialog_rx) = channel();
        let mut app = BlindfaceApp {
            state,
            worker,
            source: Source::None,
            key,
            pending_import: None,
            settings_path: config.settings_path,
            dialogs: config.dialogs,
            dialog_tx,
            dialog_rx,
            dialog_open: false,
            preview_tex: None,
            crop_tex: None,
            remote_url,
            remote_token,
        };
        match config.source {
            Some(p) => app.open_source(&p, config.autoplay),
            None if config.camera => app.source = Source::open_camera(&mut app.state),
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

    pub(crate) fn load_file(&mut self, path: PathBuf) {
        self.state.busy_frame = true;
        self.worker.send(Command::LoadFile { path });
    }

    /// Runs a dialog on its own thread; the answer arrives in [`Self::poll`].
    pub fn ask(&mut self, kind: DialogKind) {
        if self.dialog_open {
            return;
        }
        self.dialog_open = true;
        let dialogs = self.dialogs.clone();
        let tx = self.dialog_tx.clone();
        std::thread::spawn(move || {
            let path = match kind {
                DialogKind::OpenImage => dialogs.open_image(),
                DialogKind::OpenFolder => dialogs.open_folder(),
                DialogKind::ExportKey => dialogs.export_key(),
                DialogKind::ImportKey => dialogs.import_key(),
            };
            let _ = tx.send((kind, path));
        });
    }

    /// Saves the settings; a failure is shown, not fatal.
    pub(crate) fn save_settings(&mut self) {
        if let Err(e) = self.state.settings.save(&self.settings_path) {
            self.state.error(format!(
                "settings could not be saved to {}: {e}",
                self.settings_path.display()
            ));
        }
    }

    /// Writes the current key to `path` (a dialog already confirmed any overwrite).
    pub fn export_key_to(&mut self, path: &Path) {
        match self.key.save(path, true) {
            Ok(()) => self.state.info(format!(
                "Key exported to {}. Keep it somewhere safe: it reads your gallery's names and distances.",
                path.display()
            )),
            Err(e) => self.state.error(format!("{e}; choose another place to export to")),
        }
    }

    /// Reads a key file and asks for confirmation before it replaces the current key.
    pub fn import_key_from(&mut self, path: &Path) {
        match SecretKey::load(path, &Params::v1()) {
            Ok(key) if key.fingerprint() == self.key.fingerprint() => self
                .state
                .info("That key is the one already in use; nothing changed."),
            Ok(key) => {
                self.pending_import = Some(PendingImport {
                    path: path.to_path_buf(),
                    key,
                })
            }
            Err(e) => self
                .state
                .error(format!("{e}; choose a key file exported by blindface")),
        }
    }

    /// Replaces the current key with the pending import.
    pub fn confirm_import(&mut self) {
        let Some(p) = self.pending_import.take() else {
            return;
        };
        if let Err(e) = p.key.save(&self.state.key_path, true) {
            self.state.error(format!("{e}; the key was not replaced"));
            return;
        }
        self.key = Arc::new(p.key);
        self.state.key_fingerprint = self.key.fingerprint();
        self.state.first_run = false;
        self.state.last_match = None;
        self.state.history.clear();
        self.worker.send(Command::SetKey(self.key.clone()));
        self.state.info(format!(
            "Key imported from {} (fingerprint {}).",
            p.path.display(),
            self.state.key_fingerprint
        ));
    }

    /// Sends a verify/identify for the selected face of the current frame.
    pub fn request_match(&mut self, mode: MatchMode) {
        let (Some(image), Some(face)) = (self.state.frame.clone(), self.state.face()) else {
            self.state
                .error("no face selected: open an image with a face, or face the camera");
            return;
        };
        self.state.busy_match = true;
        self.worker.send(Command::Match {
            image,
            face,
            mode,
            source: self.state.frame_label.clone(),
        });
    }

    /// Drains worker events and dialog answers; advances the source.
    pub fn poll(&mut self) {
        let mut new_frame = false;
        for e in self.worker.drain() {
            if matches!(e, worker::Event::Frame { .. }) {
                new_frame = true;
            }
            self.state.apply(e);
        }
        self.state.matcher_calls = self.worker.match_calls();
        while let Ok((kind, path)) = self.dialog_rx.try_recv() {
            self.dialog_open = false;
            let Some(path) = path else { continue };
            match kind {
                DialogKind::OpenImage | DialogKind::OpenFolder => self.open_source(&path, true),
                DialogKind::ExportKey => self.export_key_to(&path),
                DialogKind::ImportKey => self.import_key_from(&path),
            }
        }
        if new_frame && self.state.continuous && !self.state.busy_match {
            let mode = match_panel::current_mode(&self.state);
            self.request_match(mode);
        }
        let interval = self.state.settings.folder_interval_s;
        if !self.state.busy_frame {
            if let Some(next) = self.source.tick(interval, &mut self.state) {
                match next {
                    source::Next::File(p) => self.load_file(p),
                    source::Next::Frame(label, image) => {
                        self.state.busy_frame = true;
                        self.worker.send(Command::Analyse { label, image });
                    }
                }
            }
        }
    }

    /// The whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.worker.set_repaint(&ctx);
        self.poll();

        egui::Panel::top("top").show(ui, |ui| source::ui(ui, self));
        if !self.state.notices.is_empty() || self.state.first_run {
            egui::Panel::bottom("notices").show(ui, |ui| notices_ui(ui, &mut self.state));
        }
        egui::Panel::left("left")
            .default_size(340.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    enrol::ui(ui, self);
                    ui.separator();
                    gallery::ui(ui, self);
                    ui.separator();
                    match_panel::ui(ui, self);
                    ui.separator();
                    settings::ui(ui, self);
                });
            });
        egui::Panel::right("right")
            .default_size(400.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    threshold::ui(ui, self);
                    ui.separator();
                    timings::ui(ui, self);
                });
            });
        egui::CentralPanel::default_margins().show(ui, |ui| preview::ui(ui, self));
        settings::import_confirmation(&ctx, self);

        if self.state.busy_frame
            || self.state.busy_match
            || self.state.busy_enrol
            || self.source.is_live()
            || self.dialog_open
        {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }
}

fn notices_ui(ui: &mut egui::Ui, state: &mut AppState) {
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
    let mut dismiss = None;
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
                dismiss = Some(i);
            }
        });
    }
    if let Some(i) = dismiss {
        state.notices.remove(i);
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
        Box::new(move |_cc| Ok(Box::new(BlindfaceApp::new(config)))),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "the window could not be opened ({e}); is a display available? The subcommands \
             (blindface --help) work without one"
        )
    })
}
