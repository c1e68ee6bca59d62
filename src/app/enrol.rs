//! Enrol by capture: a name, then either "Capture & enrol" (one shot of the selected face)
//! or up to three shots ("Capture shot", with a prompt to turn the head slightly between
//! them) enrolled as one person, whose verdict then uses their best template. The shots,
//! and after enrolment the crops with a confirmation, are shown. While the name field has
//! focus a folder source holds the face on screen, and the preview marks the face that
//! will be enrolled. The name stops at [`MAX_NAME_BYTES`] as it is typed or pasted.

use eframe::egui;

use super::state::{shot_prompt, AppState, SHOTS};
use super::{texture, Action, Textures};
use crate::labels::MAX_NAME_BYTES;

/// Cuts `text` to at most `max` bytes, at a character boundary (never half a UTF-8
/// character). The name field calls it after every change, so a name stops at the limit
/// the label sealing enforces instead of being refused at enrolment.
pub fn limit_bytes(text: &mut String, max: usize) {
    if text.len() > max {
        let end = text.floor_char_boundary(max);
        text.truncate(end);
    }
}

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
            .labelled_by(l.id)
            .on_hover_text(format!(
                "Any script; up to {MAX_NAME_BYTES} bytes of UTF-8 (the encrypted label's \
                 limit): typing stops there"
            ));
        if r.changed() {
            limit_bytes(&mut state.enrol_name, MAX_NAME_BYTES);
        }
        state.typing_name = r.has_focus();
        if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            actions.push(Action::Enrol);
        }
    });
    // One line of guidance, always there (never appearing with focus, so nothing below it
    // moves under the pointer), on one line whatever its text.
    let hint = if state.shots.len() >= SHOTS {
        "All shots taken: Enrol them, or Clear shots.".to_string()
    } else if state.shots.is_empty() && !state.typing_name {
        "Type a name, then Capture & enrol.".to_string()
    } else {
        shot_prompt(state.shots.len(), state.camera_source).to_string()
    };
    ui.add(egui::Label::new(egui::RichText::new(hint).weak()).truncate());
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
        ui.add(
            egui::Label::new(format!(
                "Enrolled {} ({} template(s)): the matcher stores only ciphertexts and the \
                 encrypted name.",
                c.name,
                c.ids.len(),
            ))
            .wrap(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bytes_never_splits_a_character() {
        let mut ascii = "a".repeat(323);
        limit_bytes(&mut ascii, MAX_NAME_BYTES);
        assert_eq!(ascii.len(), MAX_NAME_BYTES);

        // 3-byte CJK: 256 = 85 * 3 + 1, so 85 characters (255 bytes) fit.
        let mut cjk = "王".repeat(100);
        limit_bytes(&mut cjk, MAX_NAME_BYTES);
        assert_eq!(cjk.len(), 255);
        assert_eq!(cjk.chars().count(), 85);

        // 4-byte emoji after one ASCII byte: 1 + 63 * 4 = 253, the 64th would end at 257.
        let mut emoji = format!("x{}", "😀".repeat(70));
        limit_bytes(&mut emoji, MAX_NAME_BYTES);
        assert_eq!(emoji.len(), 253);
        assert!(emoji.ends_with('😀'));

        // 2-byte Latin ending exactly at the limit: kept whole.
        let mut accents = "é".repeat(128);
        limit_bytes(&mut accents, MAX_NAME_BYTES);
        assert_eq!(accents.len(), 256);

        // Short text is untouched; every result is a name the sealing accepts.
        let mut short = "Zoë 王 😀".to_string();
        limit_bytes(&mut short, MAX_NAME_BYTES);
        assert_eq!(short, "Zoë 王 😀");
        for mut s in [ascii, cjk, emoji, accents] {
            limit_bytes(&mut s, 10);
            assert!(s.len() <= 10 && std::str::from_utf8(s.as_bytes()).is_ok());
        }
    }
}
