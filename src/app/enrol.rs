//! Enrol by capture: a name and "Capture & enrol" for the selected face of the current
//! frame; the captured crop and a confirmation are shown.

use eframe::egui;

use super::worker::Command;
use super::BlindfaceApp;

pub fn ui(ui: &mut egui::Ui, app: &mut BlindfaceApp) {
    ui.heading("Enrol");
    ui.horizontal(|ui| {
        let l = ui.label("Name");
        ui.add(
            egui::TextEdit::singleline(&mut app.state.enrol_name)
                .hint_text("e.g. Ada Lovelace")
                .desired_width(180.0),
        )
        .labelled_by(l.id);
    });
    let can = !app.state.busy_enrol;
    ui.horizontal(|ui| {
        if ui
            .add_enabled(can, egui::Button::new("Capture & enrol"))
            .clicked()
        {
            capture(app);
        }
        if app.state.busy_enrol {
            ui.spinner();
            ui.label("Embedding and encrypting...");
        }
    });
    if let Some(c) = &app.state.last_enrol {
        let key = c.id;
        if app.crop_tex.as_ref().is_none_or(|(id, _)| *id != key) {
            let img = egui::ColorImage::from_rgb(
                [c.crop.width() as usize, c.crop.height() as usize],
                c.crop.as_raw(),
            );
            let tex = ui
                .ctx()
                .load_texture("enrol-crop", img, egui::TextureOptions::LINEAR);
            app.crop_tex = Some((key, tex));
        }
        let c = app.state.last_enrol.as_ref().expect("checked");
        ui.horizontal(|ui| {
            if let Some((_, tex)) = &app.crop_tex {
                ui.add(egui::Image::new(tex).max_height(96.0));
            }
            ui.label(format!(
                "Enrolled {} (template id {}): the matcher stores only its ciphertext and \
                 the encrypted name.",
                c.name, c.id
            ));
        });
    }
}

/// Sends the selected face for enrolment, or explains what is missing.
pub fn capture(app: &mut BlindfaceApp) {
    let name = app.state.enrol_name.trim().to_string();
    if name.is_empty() {
        app.state
            .error("type the person's name before Capture & enrol");
        return;
    }
    let (Some(image), Some(face)) = (app.state.frame.clone(), app.state.face()) else {
        app.state
            .error("no face to enrol: open an image with a face, or face the camera");
        return;
    };
    app.state.busy_enrol = true;
    app.worker.send(Command::Enrol { image, face, name });
}
