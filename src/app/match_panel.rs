//! Verify against one person or identify against everyone, once or continuously; the
//! decrypted distance per person with its verdict at the current threshold. A result is
//! drawn only while it describes the face on screen: after the picture, the gallery or the
//! face changed, the panel says which photo it was for and shows no name.

use eframe::egui::{self, Color32, RichText};

use super::action::Action;
use super::protocol::MatchMode;
use super::state::AppState;

/// The mode the panel is set to (verify if a person is chosen).
pub fn current_mode(state: &AppState) -> MatchMode {
    if state.verify_name.is_empty() {
        MatchMode::Identify
    } else {
        MatchMode::Verify(state.verify_name.clone())
    }
}

pub fn ui(ui: &mut egui::Ui, state: &mut AppState, actions: &mut Vec<Action>) {
    ui.heading("Match");
    let names = state.names();
    if !state.verify_name.is_empty() && !names.contains(&state.verify_name) {
        state.verify_name.clear();
    }
    ui.horizontal(|ui| {
        ui.label("Against");
        egui::ComboBox::from_id_salt("verify-who")
            .selected_text(if state.verify_name.is_empty() {
                "everyone (identify)".to_string()
            } else {
                state.verify_name.clone()
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.verify_name, String::new(), "everyone (identify)");
                for n in &names {
                    ui.selectable_value(&mut state.verify_name, n.clone(), n);
                }
            });
    });
    ui.horizontal(|ui| {
        let busy = state.busy_match;
        if ui
            .add_enabled(!busy, egui::Button::new("Identify"))
            .clicked()
        {
            actions.push(Action::Match(MatchMode::Identify));
        }
        let verify = !state.verify_name.is_empty();
        if ui
            .add_enabled(!busy && verify, egui::Button::new("Verify"))
            .on_disabled_hover_text("choose a person under Against")
            .clicked()
        {
            actions.push(Action::Match(current_mode(state)));
        }
        ui.add_enabled(
            !state.live,
            egui::Checkbox::new(&mut state.continuous, "Continuously"),
        );
        if busy {
            ui.spinner();
        }
    });
    let mut live = state.live;
    if ui
        .checkbox(&mut live, "Live: identify every face in view")
        .on_hover_text(
            "Each face is tracked, matched when it appears and then every 0.5 s; \
             the labels follow the threshold at once",
        )
        .changed()
    {
        actions.push(Action::SetLive(live));
    }
    let threshold = state.threshold();
    if let Some(o) = &state.last_match {
        if !state.is_current(o.epoch) {
            let why = if o.epoch.source != state.frame_source {
                format!("The last result was for another photo ({}).", o.source)
            } else if o.epoch.gallery != state.gallery_epoch {
                "The gallery changed since the last result.".to_string()
            } else {
                "The face of the last result has left the picture.".to_string()
            };
            ui.add(
                egui::Label::new(
                    RichText::new(format!(
                        "{why} Identify or Verify again for the face on screen."
                    ))
                    .color(ui.visuals().weak_text_color()),
                )
                .wrap(),
            );
            return;
        }
    }
    let Some(outcome) = &state.last_match else {
        ui.label(if state.live {
            "Live: every face is labelled on the preview; Identify or Verify one selected face for its details here."
        } else {
            "No result yet: enrol someone, then Identify or Verify a face."
        });
        return;
    };
    let matched = outcome.verdict(&threshold).is_some();
    let color = if matched {
        Color32::from_rgb(40, 170, 70)
    } else {
        Color32::from_rgb(210, 60, 50)
    };
    ui.add(
        egui::Label::new(
            RichText::new(outcome.verdict_text(&threshold))
                .size(20.0)
                .strong()
                .color(color),
        )
        .wrap(),
    );
    ui.label(format!(
        "{} of {} ({} person(s) compared)",
        match outcome.mode {
            MatchMode::Identify => "Identify",
            MatchMode::Verify(_) => "Verify",
        },
        outcome.source,
        outcome.distances.len()
    ));
    egui::Grid::new("distances").striped(true).show(ui, |ui| {
        ui.label("Person");
        ui.label("L2 (decrypted)");
        ui.label("Verdict");
        ui.end_row();
        for d in &outcome.distances {
            let m = threshold.accepts(d.distance_sq);
            ui.label(&d.name);
            ui.label(format!("{:.3}", d.l2));
            ui.colored_label(
                if m {
                    Color32::from_rgb(40, 170, 70)
                } else {
                    Color32::from_rgb(210, 60, 50)
                },
                if m { "same person" } else { "different" },
            );
            ui.end_row();
        }
    });
}
