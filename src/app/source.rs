//! Where frames come from: one image, a folder of images shown in turn like a slow video,
//! or a camera. The top bar with the source controls is drawn here too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;
use image::RgbImage;

use super::state::AppState;
use super::{BlindfaceApp, DialogKind};

/// File extensions the app opens.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// What to analyse next.
pub enum Next {
    File(PathBuf),
    Frame(String, Arc<RgbImage>),
}

pub enum Source {
    None,
    Image(PathBuf),
    Folder {
        dir: PathBuf,
        files: Vec<PathBuf>,
        index: usize,
        playing: bool,
        last_switch: Instant,
    },
    Camera(super::camera::Camera),
}

/// The images in `dir`, sorted by name.
pub fn list_images(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Source {
    /// An image file or a folder of images.
    pub fn open_path(path: &Path, autoplay: bool) -> Result<Source, String> {
        if path.is_dir() {
            let files = list_images(path)
                .map_err(|e| format!("cannot read the folder {}: {e}", path.display()))?;
            if files.is_empty() {
                return Err(format!(
                    "the folder {} has no images (jpg, png, bmp, webp); choose another",
                    path.display()
                ));
            }
            Ok(Source::Folder {
                dir: path.to_path_buf(),
                files,
                index: 0,
                playing: autoplay,
                last_switch: Instant::now(),
            })
        } else if path.is_file() {
            Ok(Source::Image(path.to_path_buf()))
        } else {
            Err(format!(
                "{} does not exist; open an existing image or folder",
                path.display()
            ))
        }
    }

    /// The camera, or `None` with a message saying what to do instead.
    pub fn open_camera(state: &mut AppState) -> Source {
        match super::camera::Camera::open_first(state.settings.mirror) {
            Ok(c) => Source::Camera(c),
            Err(msg) => {
                state.error(msg);
                Source::None
            }
        }
    }

    /// The file to load now (image, or the folder's current one).
    pub fn current_file(&self) -> Option<PathBuf> {
        match self {
            Source::Image(p) => Some(p.clone()),
            Source::Folder { files, index, .. } => files.get(*index).cloned(),
            _ => None,
        }
    }

    /// Whether frames keep coming (repaint regularly).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Source::Folder { playing: true, .. } | Source::Camera(_)
        )
    }

    /// The next thing to analyse, if it is time.
    pub fn tick(&mut self, interval_s: f32, state: &mut AppState) -> Option<Next> {
        match self {
            Source::Folder {
                files,
                index,
                playing: true,
                last_switch,
                ..
            } if last_switch.elapsed().as_secs_f32() >= interval_s => {
                *index = (*index + 1) % files.len();
                *last_switch = Instant::now();
                Some(Next::File(files[*index].clone()))
            }
            Source::Camera(cam) => match cam.latest() {
                Ok(Some(img)) => Some(Next::Frame(cam.label(), Arc::new(img))),
                Ok(None) => None,
                Err(msg) => {
                    state.error(msg);
                    *self = Source::None;
                    None
                }
            },
            _ => None,
        }
    }
}

/// The top bar: source controls, key fingerprint, matcher state.
pub fn ui(ui: &mut egui::Ui, app: &mut BlindfaceApp) {
    ui.horizontal_wrapped(|ui| {
        ui.heading("blindface");
        ui.separator();
        if ui.button("Open image...").clicked() {
            app.ask(DialogKind::OpenImage);
        }
        if ui.button("Open folder...").clicked() {
            app.ask(DialogKind::OpenFolder);
        }
        super::camera::controls(ui, app);
        ui.separator();
        let mut load = None;
        match &mut app.source {
            Source::None => {
                ui.label("No source: open an image or a folder of photos.");
            }
            Source::Image(p) => {
                ui.label(format!("Image: {}", file_name(p)));
            }
            Source::Folder {
                dir,
                files,
                index,
                playing,
                last_switch,
            } => {
                ui.label(format!(
                    "Folder {} ({}/{})",
                    file_name(dir),
                    *index + 1,
                    files.len()
                ));
                if ui.button("< Previous").clicked() {
                    *index = (*index + files.len() - 1) % files.len();
                    load = Some(files[*index].clone());
                }
                let play_label = if *playing { "Pause" } else { "Play" };
                if ui.button(play_label).clicked() {
                    *playing = !*playing;
                    *last_switch = Instant::now();
                }
                if ui.button("Next >").clicked() {
                    *index = (*index + 1) % files.len();
                    load = Some(files[*index].clone());
                }
                egui::ComboBox::from_id_salt("folder-file")
                    .selected_text(file_name(&files[*index]))
                    .show_ui(ui, |ui| {
                        for (i, f) in files.iter().enumerate() {
                            if ui.selectable_label(i == *index, file_name(f)).clicked() {
                                *index = i;
                                load = Some(f.clone());
                            }
                        }
                    });
                if load.is_some() {
                    *last_switch = Instant::now();
                }
            }
            Source::Camera(cam) => {
                ui.label(format!("Camera: {}", cam.label()));
            }
        }
        if let Some(p) = load {
            app.load_file(p);
        }
        ui.separator();
        ui.label(format!("Key {}", app.state.key_fingerprint));
        ui.separator();
        match &app.state.connection {
            super::state::Connection::Connecting => {
                ui.spinner();
                ui.label("Connecting to the matcher...");
            }
            super::state::Connection::Ready(d) => {
                ui.label(format!("Matcher: {d}"));
            }
            super::state::Connection::Failed(_) => {
                ui.colored_label(ui.visuals().error_fg_color, "Matcher: not connected");
            }
        }
    });
}

/// Selects a file of the folder source by name and loads it (tests and scripts).
pub fn select_file(app: &mut BlindfaceApp, name: &str) -> bool {
    let mut found = None;
    if let Source::Folder {
        files,
        index,
        last_switch,
        ..
    } = &mut app.source
    {
        if let Some(i) = files.iter().position(|f| file_name(f) == name) {
            *index = i;
            *last_switch = Instant::now();
            found = Some(files[i].clone());
        }
    }
    match found {
        Some(p) => {
            app.load_file(p);
            true
        }
        None => false,
    }
}
