//! "What the matcher sees": for the last request, what left the app (the ciphertext: its
//! size, its first bytes, and that it carries no key) and what came back (result blocks,
//! bytes), beside what only the app sees (the face crop and the decrypted distances). One
//! glance makes the privacy claim concrete for an audience.

use eframe::egui::{self, RichText};

use super::state::{is_match, AppState};
use super::Textures;

/// Hex of `bytes`, grouped in pairs, `per_line` bytes a line.
pub fn hex_preview(bytes: &[u8], per_line: usize) -> String {
    bytes
        .chunks(per_line.max(1))
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn size(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB ({b} bytes)", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB ({b} bytes)", b as f64 / 1024.0)
    } else {
        format!("{b} bytes")
    }
}

pub fn ui(ui: &mut egui::Ui, state: &AppState, textures: &mut Textures) {
    egui::CollapsingHeader::new("What the matcher sees")
        .default_open(true)
        .show(ui, |ui| {
            let Some(w) = &state.last_wire else {
                ui.label("Nothing sent yet: enrol or identify a face.");
                return;
            };
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                ui.label(RichText::new("Left this app").strong());
                ui.label(if w.result_blocks == 0 {
                    format!("Template ciphertext, {}", size(w.sent_bytes))
                } else {
                    format!("Probe ciphertext, {}", size(w.sent_bytes))
                });
                ui.label(
                    RichText::new(hex_preview(
                        &w.sent_preview[..w.sent_preview.len().min(32)],
                        8,
                    ))
                    .monospace()
                    .small(),
                );
                ui.add(
                    egui::Label::new(
                        "Random-looking RLWE ciphertext under your key. No key, no face, no \
                         template inside: the matcher computes on it blind.",
                    )
                    .wrap(),
                );
                ui.add_space(4.0);
                ui.label(RichText::new("Came back").strong());
                if w.result_blocks == 0 {
                    ui.label(format!("An acknowledgement, {}", size(w.received_bytes)));
                } else {
                    ui.label(format!(
                        "{} encrypted result block(s), {}",
                        w.result_blocks,
                        size(w.received_bytes)
                    ));
                    ui.add(egui::Label::new("Only your key turns them into distances.").wrap());
                }

                let ui = &mut cols[1];
                ui.label(RichText::new("Only this app sees").strong());
                if let Some((k, img)) = &state.last_probe {
                    if textures.probe.as_ref().is_none_or(|(t, _)| t != k) {
                        textures.probe = Some((*k, super::texture(ui.ctx(), "probe", img)));
                    }
                    if let Some((_, tex)) = &textures.probe {
                        ui.add(egui::Image::new(tex).max_height(96.0));
                    }
                }
                let threshold = state.settings.threshold;
                match &state.last_match {
                    Some(o) if w.result_blocks > 0 => {
                        for d in o.distances.iter().take(5) {
                            let m = is_match(d.distance_sq, threshold);
                            ui.label(format!(
                                "{} {:.3} {}",
                                d.name,
                                d.l2,
                                if m { "(same)" } else { "(different)" }
                            ));
                        }
                        if o.distances.is_empty() {
                            ui.label("(the gallery is empty)");
                        }
                    }
                    _ => {
                        ui.label("The face crop and its name.");
                    }
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines() {
        assert_eq!(hex_preview(&[0, 1, 0xab, 0xff, 7], 2), "00 01\nab ff\n07");
        assert_eq!(hex_preview(&[], 4), "");
    }
}
