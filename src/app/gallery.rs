//! The gallery: enrolled names (decrypted app-side) with their template count, and removal
//! after a confirmation that names the person and the number of templates (erasure is
//! final). While the matcher is not connected the panel says so instead of listing a
//! gallery it cannot vouch for. Rows never move under the pointer: nothing above the list
//! appears or disappears with focus (see `enrol.rs`).

use eframe::egui;

use super::action::Action;
use super::protocol::Connection;
use super::state::AppState;
use crate::he::TemplateId;

/// A removal waiting for the user's confirmation (erasure is final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRemoval {
    pub name: String,
    pub ids: Vec<TemplateId>,
}

/// The gallery panel's own state: a removal waiting for confirmation.
#[derive(Default)]
pub struct GalleryPanel {
    pub pending_removal: Option<PendingRemoval>,
}

pub fn ui(
    ui: &mut egui::Ui,
    panel: &mut GalleryPanel,
    state: &AppState,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.heading("Gallery");
        if ui.small_button("Refresh").clicked() {
            actions.push(Action::Refresh);
        }
    });
    match &state.connection {
        Connection::Ready(_) => {}
        Connection::Connecting => {
            ui.label("Connecting to the matcher...");
            return;
        }
        Connection::Failed(_) => {
            ui.add(
                egui::Label::new(
                    "Not connected: the gallery is not available (see Settings > Matcher).",
                )
                .wrap(),
            );
            return;
        }
    }
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
            ui.add(egui::Label::new(format!("{name} ({} template(s))", ids.len())).truncate());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .small_button("Remove")
                    .on_hover_text(format!("Remove every template of {name}"))
                    .clicked()
                {
                    panel.pending_removal = Some(PendingRemoval {
                        name: name.clone(),
                        ids: ids.clone(),
                    });
                }
            });
        });
    }
}

/// The confirm-before-remove dialog, while a removal waits.
pub fn confirmation(ctx: &egui::Context, panel: &mut GalleryPanel, actions: &mut Vec<Action>) {
    let Some(r) = panel.pending_removal.clone() else {
        return;
    };
    let mut answer = None;
    let modal = egui::Modal::new(egui::Id::unique("confirm-remove")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.heading(format!("Remove {}?", r.name));
        let what = match r.ids.len() {
            1 => format!("The template of {} is", r.name),
            n => format!("All {n} templates of {} are", r.name),
        };
        ui.add(
            egui::Label::new(format!(
                "{what} erased from the matcher. This cannot be undone: to recognise them \
                 again, enrol them again."
            ))
            .wrap(),
        );
        ui.horizontal(|ui| {
            if ui.button(format!("Remove {}", r.name)).clicked() {
                answer = Some(true);
            }
            if ui.button("Cancel").clicked() {
                answer = Some(false);
            }
        });
    });
    if modal.should_close() && answer.is_none() {
        answer = Some(false);
    }
    if let Some(yes) = answer {
        panel.pending_removal = None;
        if yes {
            actions.push(Action::Remove(r.ids));
        }
    }
}
