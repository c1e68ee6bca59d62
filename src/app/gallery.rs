//! The gallery: enrolled names (decrypted here, app-side) with their template count, and
//! removal.

use eframe::egui;

use super::worker::Command;
use super::BlindfaceApp;

pub fn ui(ui: &mut egui::Ui, app: &mut BlindfaceApp) {
    ui.horizontal(|ui| {
        ui.heading("Gallery");
        if ui.small_button("Refresh").clicked() {
            app.worker.send(Command::Refresh);
        }
    });
    if app.state.gallery.is_empty() {
        ui.label("Nobody is enrolled yet.");
        return;
    }
    let mut remove = None;
    for name in app.state.names() {
        let ids: Vec<_> = app
            .state
            .gallery
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(id, _)| *id)
            .collect();
        ui.horizontal(|ui| {
            ui.label(format!("{name} ({} template(s))", ids.len()));
            if ui
                .small_button("Remove")
                .on_hover_text(format!("Remove every template of {name}"))
                .clicked()
            {
                remove = Some(ids);
            }
        });
    }
    if let Some(ids) = remove {
        app.worker.send(Command::Remove { ids });
    }
}
