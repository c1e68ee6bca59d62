//! Settings: the matcher (built-in, or a remote URL with its token) and its connection
//! state; the secret key (fingerprint, generate, export, import with confirmation);
//! source options. Saved in the platform config directory.

use eframe::egui;

use super::state::{Connection, MatcherChoice};
use super::worker::Command;
use super::{BlindfaceApp, DialogKind, PendingImport};
use crate::he::{Params, SecretKey};

pub fn ui(ui: &mut egui::Ui, app: &mut BlindfaceApp) {
    ui.heading("Settings");
    ui.label("Matcher");
    let mut remote = matches!(app.state.settings.matcher, MatcherChoice::Remote { .. });
    let was_remote = remote;
    ui.horizontal(|ui| {
        ui.radio_value(&mut remote, false, "Built-in");
        ui.radio_value(&mut remote, true, "Remote server");
    });
    let mut connect = remote != was_remote && !remote;
    if remote {
        ui.horizontal(|ui| {
            let l = ui.label("URL");
            ui.add(egui::TextEdit::singleline(&mut app.remote_url).desired_width(200.0))
                .labelled_by(l.id);
        });
        ui.horizontal(|ui| {
            let l = ui.label("Token");
            ui.add(
                egui::TextEdit::singleline(&mut app.remote_token)
                    .password(true)
                    .hint_text("empty: register a new gallery")
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        });
        if ui.button("Connect").clicked() {
            connect = true;
        }
    }
    if connect {
        app.state.settings.matcher = if remote {
            MatcherChoice::Remote {
                url: app.remote_url.trim().to_string(),
                token: app.remote_token.trim().to_string(),
            }
        } else {
            MatcherChoice::Builtin
        };
        app.save_settings();
        app.state.last_match = None;
        app.worker
            .send(Command::SetMatcher(app.state.settings.matcher.clone()));
    }
    match &app.state.connection {
        Connection::Connecting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting...");
            });
        }
        Connection::Ready(d) => {
            ui.label(format!("Connected: {d}"));
        }
        Connection::Failed(m) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("Not connected: {m}"));
        }
    }

    ui.add_space(6.0);
    ui.label("Secret key");
    ui.label(format!("Fingerprint {}", app.state.key_fingerprint));
    ui.label(format!("File {}", app.state.key_path.display()));
    ui.horizontal(|ui| {
        if ui.button("Export key...").clicked() {
            app.ask(DialogKind::ExportKey);
        }
        if ui.button("Import key...").clicked() {
            app.ask(DialogKind::ImportKey);
        }
        if ui.button("Generate new key...").clicked() {
            app.pending_import = Some(PendingImport {
                path: "(newly generated)".into(),
                key: SecretKey::generate(&Params::v1()),
            });
        }
    });

    ui.add_space(6.0);
    ui.label("Sources");
    let mut interval = app.state.settings.folder_interval_s;
    ui.add(egui::Slider::new(&mut interval, 0.5..=10.0).text("Seconds per folder image"));
    if interval != app.state.settings.folder_interval_s {
        app.state.settings.folder_interval_s = interval;
        app.save_settings();
    }
    let mut mirror = app.state.settings.mirror;
    if ui.checkbox(&mut mirror, "Mirror the camera").changed() {
        app.state.settings.mirror = mirror;
        app.save_settings();
    }
}

/// The confirm-before-replace dialog of an imported or generated key.
pub fn import_confirmation(ctx: &egui::Context, app: &mut BlindfaceApp) {
    let Some(p) = &app.pending_import else {
        return;
    };
    let text = format!(
        "Replace the current key ({}) with the key from {} ({})? Everything enrolled under \
         the current key becomes unreadable unless you import it back, so export it first if \
         you still need it.",
        app.state.key_fingerprint,
        p.path.display(),
        p.key.fingerprint()
    );
    let mut choice = None;
    egui::Modal::new(egui::Id::unique("confirm-key")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.heading("Replace the secret key?");
        ui.label(text);
        ui.horizontal(|ui| {
            if ui.button("Replace key").clicked() {
                choice = Some(true);
            }
            if ui.button("Cancel").clicked() {
                choice = Some(false);
            }
        });
    });
    match choice {
        Some(true) => app.confirm_import(),
        Some(false) => app.pending_import = None,
        None => {}
    }
}
