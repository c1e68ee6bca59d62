//! Enrol by capture: a name, then either "Capture & enrol" (one shot of the selected face)
//! or up to three shots ("Capture shot", with a prompt to turn the head slightly between
//! them) enrolled as one person, whose verdict then uses their best template. The shots,
//! and after enrolment the crops with a confirmation, are shown. While the name field has
//! focus a folder source holds the face on screen, and the preview marks the face that
//! will be enrolled. The name stops at [`MAX_NAME_BYTES`] as it is typed or pasted.

use eframe::egui;

use std::sync::Arc;

use image::RgbImage;

use super::action::Action;
use super::protocol::{Event, KeyInfo, Shot};
use super::state::AppState;
use super::textures::{texture, Textures};
use crate::he::TemplateId;
use crate::labels::MAX_NAME_BYTES;

/// How many shots a multi-shot enrolment takes.
pub const SHOTS: usize = 3;

/// What to tell the person before each shot: turn the head for a camera, pick another
/// photo of the same person for still images.
pub fn shot_prompt(taken: usize, camera: bool) -> &'static str {
    match (camera, taken) {
        (true, 0) => "Look at the camera, then Capture shot.",
        (true, 1) => "Turn your head slightly to one side, then Capture shot.",
        (true, _) => "Turn your head slightly to the other side, then Capture shot.",
        (false, 0) => "Select the face (click it), then Capture shot.",
        (false, _) => "Show another photo of them, then Capture shot.",
    }
}

/// The person the user enrolled last: their crops and the confirmation.
#[derive(Debug, Clone)]
pub struct EnrolConfirmation {
    pub name: String,
    pub ids: Vec<TemplateId>,
    pub crops: Vec<Arc<RgbImage>>,
}

/// A captured shot waiting to be enrolled, with its crop for display.
#[derive(Clone)]
pub struct PendingShot {
    pub shot: Shot,
    pub crop: Arc<RgbImage>,
    /// Bumped per shot (texture key).
    pub serial: u64,
}

/// The enrol panel's own state: the name being typed, the shots captured for the next
/// enrolment, and the confirmation of the last one.
#[derive(Default)]
pub struct EnrolPanel {
    pub name: String,
    /// The name field has focus: a folder source holds its image meanwhile.
    pub typing: bool,
    pub shots: Vec<PendingShot>,
    pub shot_serial: u64,
    pub last: Option<EnrolConfirmation>,
}

impl EnrolPanel {
    /// Follows the worker's news: a finished enrolment clears the form (ready for the next
    /// person) and shows its confirmation; another key's gallery hides it.
    pub fn observe(&mut self, event: &Event, state: &AppState) {
        match event {
            Event::Enrolled {
                name, ids, crops, ..
            } => {
                self.shots.clear();
                self.name.clear();
                self.last = Some(EnrolConfirmation {
                    name: name.clone(),
                    ids: ids.clone(),
                    crops: crops.clone(),
                });
            }
            Event::Key(KeyInfo {
                fingerprint: Some(new),
                ..
            }) if state.key_fingerprint.as_ref().is_some_and(|old| old != new) => {
                self.last = None;
            }
            _ => {}
        }
    }

    /// Someone is being enrolled: the preview marks the face that will be.
    pub fn enrolling(&self) -> bool {
        self.typing || !self.shots.is_empty()
    }
}

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
    panel: &mut EnrolPanel,
    state: &AppState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    ui.heading("Enrol");
    ui.horizontal(|ui| {
        let l = ui.label("Name");
        let r = ui
            .add(
                egui::TextEdit::singleline(&mut panel.name)
                    .hint_text("e.g. Ada Lovelace")
                    .desired_width(180.0),
            )
            .labelled_by(l.id)
            .on_hover_text(format!(
                "Any script; up to {MAX_NAME_BYTES} bytes of UTF-8 (the encrypted label's \
                 limit): typing stops there"
            ));
        if r.changed() {
            limit_bytes(&mut panel.name, MAX_NAME_BYTES);
        }
        panel.typing = r.has_focus();
        if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            actions.push(Action::Enrol);
        }
    });
    // One line of guidance, always there (never appearing with focus, so nothing below it
    // moves under the pointer), on one line whatever its text.
    let hint = if panel.shots.len() >= SHOTS {
        "All shots taken: Enrol them, or Clear shots.".to_string()
    } else if panel.shots.is_empty() && !panel.typing {
        "Type a name, then Capture & enrol.".to_string()
    } else {
        shot_prompt(panel.shots.len(), state.camera_source).to_string()
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
        let n = panel.shots.len();
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
    if !panel.shots.is_empty() {
        let key = panel.shots.last().map_or(0, |s| s.serial);
        if textures.shots.as_ref().is_none_or(|(k, _)| *k != key) {
            let texs = panel
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
                panel.shots.len(),
                if panel.name.trim().is_empty() {
                    "..."
                } else {
                    panel.name.trim()
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
    if let Some(c) = &panel.last {
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
