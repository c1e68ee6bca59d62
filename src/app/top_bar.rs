//! The top bar: source controls (image, folder with previous/play/next, camera with its
//! list and resolution), the key fingerprint and the matcher state.

use eframe::egui;

use super::camera::RESOLUTIONS;
use super::protocol::Connection;
use super::source::{file_name, Source};
use super::{Action, BlindfaceApp, DialogKind};

pub fn ui(ui: &mut egui::Ui, app: &BlindfaceApp, actions: &mut Vec<Action>) {
    ui.horizontal_wrapped(|ui| {
        ui.heading("blindface");
        ui.separator();
        if ui.button("Open image...").clicked() {
            actions.push(Action::Ask(DialogKind::OpenImage));
        }
        if ui.button("Open folder...").clicked() {
            actions.push(Action::Ask(DialogKind::OpenFolder));
        }
        camera_controls(ui, app, actions);
        ui.separator();
        match &app.source {
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
                ..
            } => {
                ui.label(format!(
                    "Folder {} ({}/{})",
                    file_name(dir),
                    *index + 1,
                    files.len()
                ));
                if ui.button("< Previous").clicked() {
                    actions.push(Action::FolderStep(-1));
                }
                if ui.button(if *playing { "Pause" } else { "Play" }).clicked() {
                    actions.push(Action::TogglePlay);
                }
                if ui.button("Next >").clicked() {
                    actions.push(Action::FolderStep(1));
                }
                egui::ComboBox::from_id_salt("folder-file")
                    .selected_text(file_name(&files[*index]))
                    .show_ui(ui, |ui| {
                        for (i, f) in files.iter().enumerate() {
                            if ui.selectable_label(i == *index, file_name(f)).clicked() {
                                actions.push(Action::FolderJump(i));
                            }
                        }
                    });
            }
            Source::Camera(cam) => {
                ui.label(format!("Camera: {}", cam.label()));
            }
        }
        ui.separator();
        match &app.state.key_fingerprint {
            Some(fp) => ui.label(format!("Key {fp}")),
            None => ui.colored_label(ui.visuals().error_fg_color, "Key unusable"),
        };
        ui.separator();
        match &app.state.connection {
            Connection::Connecting => {
                ui.spinner();
                ui.label("Connecting to the matcher...");
            }
            Connection::Ready(d) => {
                ui.label(format!("Matcher: {d}"));
            }
            Connection::Failed(_) => {
                ui.colored_label(ui.visuals().error_fg_color, "Matcher: not connected");
            }
        }
    });
}

/// Camera list (once read), resolution and the Camera button. The list is read off the UI
/// thread when the button is pressed.
fn camera_controls(ui: &mut egui::Ui, app: &BlindfaceApp, actions: &mut Vec<Action>) {
    let id = egui::Id::unique("camera-choice");
    let (mut cam_i, mut res_i): (usize, usize) = ui.data(|d| d.get_temp(id)).unwrap_or((0, 0));
    if !app.cameras.is_empty() {
        egui::ComboBox::from_id_salt("camera-list")
            .selected_text(
                app.cameras
                    .get(cam_i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
            )
            .show_ui(ui, |ui| {
                for (i, c) in app.cameras.iter().enumerate() {
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
    }
    ui.data_mut(|d| d.insert_temp(id, (cam_i, res_i)));
    let listing = app.listing_cameras();
    if ui
        .add_enabled(!listing, egui::Button::new("Camera"))
        .clicked()
    {
        actions.push(Action::StartCamera {
            choice: cam_i,
            resolution: RESOLUTIONS[res_i],
        });
    }
    if listing {
        ui.spinner();
    }
}
