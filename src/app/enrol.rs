//! Enrol by capture: a name, then either "Capture & enrol" (one shot of the selected face)
//! or up to three shots ("Capture shot", with a prompt to turn the head slightly between
//! them) enrolled as one person, whose verdict then uses their best template. The shots,
//! and after enrolment the crops with a confirmation, are shown. While the name field has
//! focus a folder source holds the face on screen, and the preview marks the face that
//! will be enrolled.

use eframe::egui;

use super::state::{shot_prompt, AppState, SHOTS};
use super::{texture, Action, Textures};

pub fn ui(
    ui: &mut egui::Ui,
    state: &mut AppState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    ui.heading("Enrol");
    ui.horizontal(|ui| {
        let l = ui.label("Name");
        let r = ui
            .add(
                egui::TextEdit::singleline(&mut state.enrol_name)
                    .hint_text("e.g. Ada Lovelace")
                    .desired_width(180.0),
            )
            .labelled_by(l.id);
        state.typing_name = r.has_focus();
        if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            actions.push(Action::Enrol);
        }
    });
    let idle = !state.busy_enrol;
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(idle, egui::Button::new("Capture & enrol"))
            .on_hover_text("Enrol the selected face (green box) now")
            .clicked()
        {
            actions.push(Action::Enrol);
        }
        let n = state.shots.len();
        if ui
            .add_enabled(
                idle && n < SHOTS,
                egui::Button::new(format!("Capture shot ({n}/{SHOTS})")),
            )
            .clicked()
        {
            actions.push(Action::CaptureShot);
        }
        if state.busy_enrol {
            ui.spinner();
            ui.label("Embedding and encrypting...");
        }
    });
    if !state.shots.is_empty() {
        let key = state.shots.last().map_or(0, |s| s.serial);
        if textures.shots.as_ref().is_none_or(|(k, _)| *k != key) {
            let texs = state
                .shots
                .iter()
                .map(|s| texture(ui.ctx(), "shot", &s.crop))
                .collect();
            textures.shots = Some((key, texs));
        }
        ui.horizontal(|ui| {
            if let Some((_, texs)) = &textures.shots {
                for t in texs {
                    ui.add(egui::Image::new(t).max_height(64.0));
                }
            }
        });
        if state.shots.len() < SHOTS {
            ui.add(egui::Label::new(shot_prompt(state.shots.len())).wrap());
        }
        ui.horizontal(|ui| {
            let label = format!(
                "Enrol {} shot(s) as {}",
                state.shots.len(),
                if state.enrol_name.trim().is_empty() {
                    "..."
                } else {
                    state.enrol_name.trim()
                }
            );
            if ui.add_enabled(idle, egui::Button::new(label)).clicked() {
                actions.push(Action::EnrolShots);
            }
            if ui.small_button("Clear shots").clicked() {
                actions.push(Action::ClearShots);
            }
        });
    } else if state.typing_name {
        ui.add(egui::Label::new(shot_prompt(0)).wrap());
    }
    if let Some(c) = &state.last_enrol {
        let key = c.ids.first().copied().unwrap_or_default();
        if textures.enrolled.as_ref().is_none_or(|(id, _)| *id != key) {
            let texs = c
                .crops
                .iter()
                .map(|img| texture(ui.ctx(), "enrol-crop", img))
                .collect();
            textures.enrolled = Some((key, texs));
        }
        ui.horizontal_top(|ui| {
            if let Some((_, texs)) = &textures.enrolled {
                for t in texs.iter().take(SHOTS) {
                    ui.add(egui::Image::new(t).max_height(72.0));
                }
            }
        });
        // Wraps within the panel instead of widening it.
        let ids: Vec<String> = c.ids.iter().map(|i| i.to_string()).collect();
        ui.add(
            egui::Label::new(format!(
                "Enrolled {} ({} template(s), id {}): the matcher stores only ciphertexts and \
                 the encrypted name.",
                c.name,
                c.ids.len(),
                ids.join(", ")
            ))
            .wrap(),
        );
    }
}
