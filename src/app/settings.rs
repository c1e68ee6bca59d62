//! Settings: the matcher (built-in, or a remote URL with an optional token) and its
//! connection state; the secret key (fingerprint, generate, export, import with
//! confirmation); source options. Saved (debounced) in the platform config directory; a
//! typed token goes to the client's token store on Connect, never into settings.

use eframe::egui;

use super::protocol::Connection;
use super::state::AppState;
use super::{Action, DialogKind};
use crate::matcher::MatcherSpec;

pub fn ui(ui: &mut egui::Ui, state: &mut AppState, actions: &mut Vec<Action>) {
    ui.heading("Settings");
    ui.label("Matcher");
    let mut remote = matches!(state.settings.matcher, MatcherSpec::Remote { .. });
    let was_remote = remote;
    ui.horizontal(|ui| {
        ui.radio_value(&mut remote, false, "Built-in");
        ui.radio_value(&mut remote, true, "Remote server");
    });
    if remote != was_remote && !remote {
        actions.push(Action::Connect {
            spec: MatcherSpec::Builtin,
            token: None,
        });
    }
    if remote != was_remote && remote {
        // Show the URL fields; connecting waits for the button.
        state.settings.matcher = MatcherSpec::Remote {
            url: state.remote_url.trim().to_string(),
        };
    }
    if remote {
        ui.horizontal(|ui| {
            let l = ui.label("URL");
            ui.add(egui::TextEdit::singleline(&mut state.remote_url).desired_width(200.0))
                .labelled_by(l.id);
        });
        ui.horizontal(|ui| {
            let l = ui.label("Token");
            ui.add(
                egui::TextEdit::singleline(&mut state.remote_token)
                    .password(true)
                    .hint_text("empty: the saved one, or register")
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        });
        if ui.button("Connect").clicked() {
            match state.remote_url.parse::<MatcherSpec>() {
                Ok(spec) => {
                    let token = std::mem::take(&mut state.remote_token);
                    actions.push(Action::Connect {
                        spec,
                        token: (!token.trim().is_empty()).then_some(token),
                    });
                }
                Err(e) => state.error_about(super::protocol::Operation::Connect, e.to_string()),
            }
        }
    }
    match &state.connection {
        Connection::Connecting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting...");
            });
        }
        Connection::Ready(d) => {
            ui.add(egui::Label::new(format!("Connected: {d}")).wrap());
        }
        Connection::Failed(m) => {
            ui.add(
                egui::Label::new(
                    egui::RichText::new(format!("Not connected: {m}"))
                        .color(ui.visuals().error_fg_color),
                )
                .wrap(),
            );
        }
    }

    ui.add_space(6.0);
    ui.label("Secret key");
    ui.label(format!(
        "Fingerprint {}",
        state.key_fingerprint.as_deref().unwrap_or("(unusable)")
    ));
    ui.add(egui::Label::new(format!("File {}", state.key_path.display())).wrap());
    ui.horizontal(|ui| {
        if ui
            .add_enabled(
                state.key_fingerprint.is_some(),
                egui::Button::new("Export key..."),
            )
            .clicked()
        {
            actions.push(Action::Ask(DialogKind::ExportKey));
        }
        if ui.button("Import key...").clicked() {
            actions.push(Action::Ask(DialogKind::ImportKey));
        }
        if ui.button("Generate new key...").clicked() {
            actions.push(Action::GenerateKey);
        }
    });

    ui.add_space(6.0);
    ui.label("Sources");
    let before = (state.settings.folder_interval_s, state.settings.mirror);
    ui.add(
        egui::Slider::new(&mut state.settings.folder_interval_s, 0.5..=10.0)
            .text("Seconds per folder image"),
    );
    ui.checkbox(&mut state.settings.mirror, "Mirror the camera");
    if (state.settings.folder_interval_s, state.settings.mirror) != before {
        actions.push(Action::SettingsChanged);
    }
}
