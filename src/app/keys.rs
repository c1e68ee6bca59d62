//! The key lifecycle in the window: the confirm-before-replace dialog for an imported or
//! generated key. The key itself never reaches the window: the worker reads, generates,
//! saves and exports it; the window sees fingerprints only.

use eframe::egui;

use super::action::Action;
use super::state::AppState;

/// The confirm-before-replace dialog, while a candidate key waits.
pub fn confirmation(ctx: &egui::Context, state: &AppState, actions: &mut Vec<Action>) {
    let Some(c) = &state.key_candidate else {
        return;
    };
    let current = state
        .key_fingerprint
        .clone()
        .unwrap_or_else(|| "unusable".into());
    let new = match &c.source {
        Some(path) => format!(
            "the key in {path} ({}, v{} templates)",
            c.fingerprint, c.params.version
        ),
        None => format!(
            "a newly generated key ({}, v{} templates)",
            c.fingerprint, c.params.version
        ),
    };
    let mut text = format!(
        "Replace the current key ({current}) with {new}? The gallery shown becomes the new \
         key's own; the current key's gallery stays in the store and comes back when you \
         import the current key again, so export it first if you still need it."
    );
    if state.key_fingerprint.is_some() && c.params != state.key_params {
        text += &format!(
            " The current key's templates are v{}, the new key's v{}: a gallery cannot be \
             converted, so enrol everyone again under the new key.",
            state.key_params.version, c.params.version
        );
    }
    egui::Modal::new(egui::Id::unique("confirm-key")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.heading("Replace the secret key?");
        ui.label(text);
        ui.horizontal(|ui| {
            if ui.button("Replace key").clicked() {
                actions.push(Action::AdoptKey);
            }
            if ui.button("Cancel").clicked() {
                actions.push(Action::DiscardKey);
            }
        });
    });
}
