//! Timings of the last operations (detect, embed, encrypt, match, decrypt) and the bytes
//! sent to and received from the matcher.

use eframe::egui;

use super::state::AppState;

/// A duration in milliseconds as people write it.
fn duration_text(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 1.0 => format!("{:.0} µs", v * 1e3),
        Some(v) => format!("{v:.1} ms"),
    }
}

/// A size in bytes as people write it.
fn bytes(v: Option<usize>) -> String {
    match v {
        None => "-".into(),
        Some(b) if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

pub fn ui(ui: &mut egui::Ui, state: &AppState) {
    ui.heading("Timings");
    if let Some(x) = &state.last_exchange {
        let text = match state.exchange_staleness(x) {
            None => egui::RichText::new(format!("Last request: {}", x.what)),
            Some(why) => egui::RichText::new(format!("Last request: {} ({why})", x.what))
                .color(ui.visuals().weak_text_color()),
        };
        ui.add(egui::Label::new(text).truncate());
    }
    let t = &state.timings;
    egui::Grid::new("timings").striped(true).show(ui, |ui| {
        for (name, v) in [
            ("Detect", duration_text(t.detect_ms)),
            ("Embed", duration_text(t.embed_ms)),
            ("Encrypt", duration_text(t.encrypt_ms)),
            ("Match (matcher)", duration_text(t.match_ms)),
            ("Decrypt", duration_text(t.decrypt_ms)),
            ("Sent to matcher", bytes(t.bytes_sent)),
            ("Received", bytes(t.bytes_received)),
        ] {
            ui.label(name);
            ui.label(v);
            ui.end_row();
        }
    });
    ui.label(format!(
        "Matcher calls (verify/identify): {}",
        state.matcher_calls
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(duration_text(Some(0.601)), "601 µs");
        assert_eq!(duration_text(Some(12.34)), "12.3 ms");
        assert_eq!(duration_text(None), "-");
        assert_eq!(bytes(Some(2048)), "2.0 KiB");
        assert_eq!(bytes(Some(12)), "12 B");
    }
}
