//! Enrol by capture: a name and "Capture & enrol" for the selected face of the current
//! frame; the captured crop and a confirmation are shown. While the name field has focus a
//! folder source holds the face on screen.

use eframe::egui;

use super::state::AppState;
use super::{Action, Textures};

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
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!state.busy_enrol, egui::Button::new("Capture & enrol"))
            .clicked()
        {
            actions.push(Action::Enrol);
        }
        if state.busy_enrol {
            ui.spinner();
            ui.label("Embedding and encrypting...");
        }
    });
    if let Some(c) = &state.last_enrol {
        if textures.crop.as_ref().is_none_or(|(id, _)| *id != c.id) {
            let img = egui::ColorImage::from_rgb(
                [c.crop.width() as usize, c.crop.height() as usize],
                c.crop.as_raw(),
            );
            let tex = ui
                .ctx()
                .load_texture("enrol-crop", img, egui::TextureOptions::LINEAR);
            textures.crop = Some((c.id, tex));
        }
        ui.horizontal_top(|ui| {
            if let Some((_, tex)) = &textures.crop {
                ui.add(egui::Image::new(tex).max_height(96.0));
            }
            // Wraps within the panel instead of widening it.
            ui.add(
                egui::Label::new(format!(
                    "Enrolled {} (template id {}): the matcher stores only its ciphertext and \
                     the encrypted name.",
                    c.name, c.id
                ))
                .wrap(),
            );
        });
    }
}
