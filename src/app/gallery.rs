//! The gallery: enrolled names (decrypted app-side) with their template count, and removal.

use eframe::egui;

use super::state::AppState;
use super::Action;

pub fn ui(ui: &mut egui::Ui, state: &AppState, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("Gallery");
        if ui.small_button("Refresh").clicked() {
            actions.push(Action::Refresh);
        }
    });
    if state.gallery.is_empty() {
        ui.label("Nobody is enrolled yet.");
        return;
    }
    for name in state.names() {
        let ids: Vec<_> = state
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
                actions.push(Action::Remove(ids));
            }
        });
    }
}
