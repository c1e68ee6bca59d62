//! "What the matcher sees": for the last request, what left the app (the ciphertext: its
//! size, its first bytes, and that it carries no key) and what came back (result blocks,
//! bytes), beside what only the app sees (the face crop and the decrypted distances). One
//! glance makes the privacy claim concrete for an audience. Everything in it is of one
//! exchange ([`super::state::Exchange`]): the crop, the bytes and the distances cannot
//! come from different requests, and an exchange about another picture says so.

use eframe::egui::{self, RichText};

use super::state::AppState;
use super::textures::Textures;

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
            let Some(x) = &state.last_exchange else {
                ui.label("Nothing sent yet: enrol or identify a face.");
                return;
            };
            let w = &x.wire;
            let sent_probe = x.distances.is_some();
            ui.add(
                egui::Label::new(match state.exchange_staleness(x) {
                    None => RichText::new(format!("Last request: {}", x.what)),
                    Some(why) => RichText::new(format!("Last request: {} ({why})", x.what))
                        .color(ui.visuals().weak_text_color()),
                })
                .truncate(),
            );
            ui.columns(2, |cols| {
                // Left-aligned, not justified (justified text opens gaps between words).
                let left = egui::Layout::top_down(egui::Align::Min);
                let [c0, c1] = cols else { return };
                c0.with_layout(left, |ui| {
                    ui.label(RichText::new("Left this app").strong());
                    // A match sends a probe and gets result blocks back (none from an empty
                    // gallery); an enrolment sends a template and gets an acknowledgement.
                    ui.label(if sent_probe {
                        format!("Probe ciphertext, {}", size(w.sent_bytes))
                    } else {
                        format!("Template ciphertext, {}", size(w.sent_bytes))
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
                    if !sent_probe {
                        ui.label(format!("An acknowledgement, {}", size(w.received_bytes)));
                    } else {
                        ui.label(format!(
                            "{} encrypted result block(s), {}",
                            w.result_blocks,
                            size(w.received_bytes)
                        ));
                        ui.add(egui::Label::new("Only your key turns them into distances.").wrap());
                    }
                });
                c1.with_layout(left, |ui| {
                    ui.label(RichText::new("Only this app sees").strong());
                    let k = x.serial;
                    if textures.probe.as_ref().is_none_or(|(t, _)| *t != k) {
                        textures.probe =
                            Some((k, super::textures::texture(ui.ctx(), "probe", &x.crop)));
                    }
                    if let Some((_, tex)) = &textures.probe {
                        ui.add(egui::Image::new(tex).max_height(96.0));
                    }
                    let threshold = state.threshold();
                    match &x.distances {
                        Some(distances) => {
                            for d in distances.iter().take(5) {
                                let m = threshold.accepts(d.distance_sq);
                                ui.label(format!(
                                    "{} {:.3} {}",
                                    d.name,
                                    d.l2,
                                    if m { "(same)" } else { "(different)" }
                                ));
                            }
                            if distances.is_empty() {
                                ui.label("(the gallery is empty)");
                            }
                        }
                        None => {
                            ui.label("The face crop and its name.");
                        }
                    }
                });
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
