//! The top bar: source controls (image, folder with previous/play/next, camera with its
//! list, resolution and frame rate, an MJPEG stream URL), the side panels' toggles, the
//! key fingerprint and the matcher state.

use eframe::egui;

use super::action::Action;
use super::camera::{CameraEntry, FRAME_RATES, RESOLUTIONS};
use super::dialogs::DialogKind;
use super::protocol::Connection;
use super::source::{file_name, Source};
use super::state::AppState;

/// The top bar's own state: the stream URL being typed.
#[derive(Default)]
pub struct TopBar {
    pub stream_url: String,
}

/// Which side panels are shown. The details panel hides when the window turns narrow and
/// comes back when it turns wide (the preview stays the largest element); the toggles in
/// the top bar show or hide either at any width.
#[derive(Debug, Clone, Copy)]
pub struct PanelLayout {
    pub left_open: bool,
    pub right_open: bool,
    /// Whether the window was wide at the last frame (`None` before the first).
    pub wide: Option<bool>,
}

impl Default for PanelLayout {
    fn default() -> Self {
        PanelLayout {
            left_open: true,
            right_open: true,
            wide: None,
        }
    }
}

/// What the top bar reads besides the state.
pub struct Sources<'a> {
    pub source: &'a Source,
    pub cameras: &'a [CameraEntry],
    pub listing_cameras: bool,
}

/// Width of the folder's file chooser: long names are elided, never pushing controls.
const FILE_CHOOSER_WIDTH: f32 = 200.0;

/// Two rows that never wrap, controls first and variable text last (elided), so no control
/// moves when a file name, a state or the window's width changes: the sources on the first
/// row, the current source's controls and the panels, key and matcher on the second.
pub fn ui(
    ui: &mut egui::Ui,
    bar: &mut TopBar,
    layout: &mut PanelLayout,
    state: &AppState,
    src: Sources<'_>,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.heading("blindface");
        ui.separator();
        if ui.button("Open image...").clicked() {
            actions.push(Action::Ask(DialogKind::OpenImage));
        }
        if ui.button("Open folder...").clicked() {
            actions.push(Action::Ask(DialogKind::OpenFolder));
        }
        camera_controls(ui, &src, actions);
        let l = ui.label("Stream");
        let r = ui
            .add(
                egui::TextEdit::singleline(&mut bar.stream_url)
                    .hint_text("http://phone:8080/video")
                    .desired_width(150.0),
            )
            .labelled_by(l.id);
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Open stream").clicked() || enter {
            actions.push(Action::OpenStream(bar.stream_url.clone()));
        }
        if let Some(d) = src.source.dropped().filter(|d| *d > 0) {
            ui.label(format!("dropped {d} frame(s)"));
        }
    });
    ui.horizontal(|ui| {
        source_controls(ui, src.source, actions);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.toggle_value(&mut layout.right_open, "Details")
                .on_hover_text("Show or hide the threshold, wire and timings panel");
            ui.toggle_value(&mut layout.left_open, "Enrol & match")
                .on_hover_text("Show or hide the enrol, gallery, match and settings panel");
            ui.separator();
            match &state.connection {
                Connection::Connecting => {
                    ui.add(egui::Label::new("Matcher: connecting...").truncate());
                    ui.spinner();
                }
                Connection::Ready(d) => {
                    ui.add(egui::Label::new(format!("Matcher: {d}")).truncate());
                }
                Connection::Failed(_) => {
                    ui.add(
                        egui::Label::new(
                            egui::RichText::new("Matcher: not connected")
                                .color(ui.visuals().error_fg_color),
                        )
                        .truncate(),
                    );
                }
            }
            ui.separator();
            match &state.key_fingerprint {
                Some(fp) => ui.add(egui::Label::new(format!("Key {fp}")).truncate()),
                None => ui.colored_label(ui.visuals().error_fg_color, "Key unusable"),
            };
        });
    });
}

/// The current source's controls: for a folder, Previous / Play / Next and the file
/// chooser first (fixed places), then where it is.
fn source_controls(ui: &mut egui::Ui, source: &Source, actions: &mut Vec<Action>) {
    match source {
        Source::None => {
            ui.label("No source: open an image or a folder of photos.");
        }
        Source::Image(p) => {
            ui.add(egui::Label::new(format!("Image: {}", file_name(p))).truncate());
        }
        Source::Folder {
            dir,
            files,
            index,
            playing,
            ..
        } => {
            if ui.button("< Previous").clicked() {
                actions.push(Action::FolderStep(-1));
            }
            // One width for both words, so Next does not move when Play turns to Pause.
            let play = egui::Button::new(if *playing { "Pause" } else { "Play" });
            if ui.add_sized([52.0, 20.0], play).clicked() {
                actions.push(Action::TogglePlay);
            }
            if ui.button("Next >").clicked() {
                actions.push(Action::FolderStep(1));
            }
            egui::ComboBox::from_id_salt("folder-file")
                .width(FILE_CHOOSER_WIDTH)
                .truncate()
                .selected_text(file_name(&files[*index]))
                .show_ui(ui, |ui| {
                    for (i, f) in files.iter().enumerate() {
                        if ui.selectable_label(i == *index, file_name(f)).clicked() {
                            actions.push(Action::FolderJump(i));
                        }
                    }
                });
            ui.add(
                egui::Label::new(format!(
                    "{}/{} in {}",
                    *index + 1,
                    files.len(),
                    file_name(dir)
                ))
                .truncate(),
            );
        }
        Source::Camera(cam) => {
            ui.add(egui::Label::new(format!("Camera: {}", cam.label())).truncate());
        }
        Source::Stream(s) => {
            let st = s.status();
            let what = match st.state {
                crate::frames::StreamState::Connecting => "connecting...",
                crate::frames::StreamState::Streaming => "streaming",
                crate::frames::StreamState::Reconnecting(_) => "reconnecting...",
            };
            ui.add(egui::Label::new(format!("Stream: {} ({what})", s.label())).truncate());
        }
    }
}

/// Camera list (once read), resolution and the Camera button. The list is read off the UI
/// thread when the button is pressed.
fn camera_controls(ui: &mut egui::Ui, src: &Sources<'_>, actions: &mut Vec<Action>) {
    let id = egui::Id::unique("camera-choice");
    let (mut cam_i, mut res_i, mut fps_i): (usize, usize, usize) =
        ui.data(|d| d.get_temp(id)).unwrap_or((0, 0, 0));
    if !src.cameras.is_empty() {
        egui::ComboBox::from_id_salt("camera-list")
            .selected_text(
                src.cameras
                    .get(cam_i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
            )
            .show_ui(ui, |ui| {
                for (i, c) in src.cameras.iter().enumerate() {
                    ui.selectable_value(&mut cam_i, i, &c.name);
                }
            });
        egui::ComboBox::from_id_salt("camera-res")
            .selected_text(format!("{}x{}", RESOLUTIONS[res_i].0, RESOLUTIONS[res_i].1))
            .show_ui(ui, |ui| {
                for (i, r) in RESOLUTIONS.iter().enumerate() {
                    ui.selectable_value(&mut res_i, i, format!("{}x{}", r.0, r.1));
                }
            });
        egui::ComboBox::from_id_salt("camera-fps")
            .selected_text(format!("{} fps", FRAME_RATES[fps_i]))
            .show_ui(ui, |ui| {
                for (i, f) in FRAME_RATES.iter().enumerate() {
                    ui.selectable_value(&mut fps_i, i, format!("{f} fps"));
                }
            });
    }
    ui.data_mut(|d| d.insert_temp(id, (cam_i, res_i, fps_i)));
    let listing = src.listing_cameras;
    if ui
        .add_enabled(!listing, egui::Button::new("Camera"))
        .clicked()
    {
        actions.push(Action::StartCamera {
            choice: cam_i,
            resolution: RESOLUTIONS[res_i],
            fps: FRAME_RATES[fps_i],
        });
    }
    if listing {
        ui.spinner();
    }
}
