//! Settings: the matcher (built-in, or a remote URL with an optional token, invitation
//! code and certificate fingerprint) and its connection state; the secret key
//! (fingerprint, generate, export, import with confirmation); source options. Saved
//! (debounced) in the platform config directory; a typed token and fingerprint go to the
//! client's token store once they work, an invitation code is used once: none of them is
//! ever in settings. The typed fields stay as typed until a connection with them works (a
//! refused invitation keeps its code for correction). Settings change only through
//! actions (`Action::Connect`, `Action::SettingsChanged`).

use eframe::egui;

use super::action::Action;
use super::dialogs::DialogKind;
use super::protocol::{Connection, Event};
use super::state::{AppState, Settings};
use crate::client::Access;
use crate::he::Params;
use crate::matcher::tls::Fingerprint;
use crate::matcher::MatcherSpec;

/// The settings panel's own state: the remote matcher's fields as typed (kept until a
/// connection with them works), and whether "Remote server" is chosen but not connected.
pub struct SettingsPanel {
    pub url: String,
    pub token: String,
    pub invite: String,
    pub fingerprint: String,
    pub choosing_remote: bool,
    /// The plain-HTTP consent being edited (saved with Connect).
    pub insecure: bool,
}

impl SettingsPanel {
    pub fn new(settings: &Settings) -> Self {
        SettingsPanel {
            url: match &settings.matcher {
                MatcherSpec::Remote { url } => url.clone(),
                MatcherSpec::Builtin => crate::matcher::default_remote_url(),
            },
            token: String::new(),
            invite: String::new(),
            fingerprint: String::new(),
            choosing_remote: false,
            insecure: settings.insecure_http,
        }
    }

    /// A connection that works used what was typed: the client saved the token and pin,
    /// the invitation is spent.
    pub fn observe(&mut self, event: &Event) {
        if let Event::Connection(Connection::Ready(_)) = event {
            self.token.clear();
            self.invite.clear();
            self.fingerprint.clear();
            self.choosing_remote = false;
        }
    }
}

/// What the settings say about the key's templates: their parameter version and shape.
pub fn templates_line(p: &Params) -> String {
    let older = if p.version < Params::current().version {
        ", the older format"
    } else {
        ""
    };
    format!(
        "Templates: parameters v{} ({} dimensions, {} per block){older}",
        p.version,
        p.dim,
        p.slots_per_block()
    )
}

/// How to move a gallery of older templates to the current ones (`None`: it is current).
/// Nothing can be converted in place: the matcher holds only ciphertexts and the app
/// keeps no faces, so moving is enrolling again under a new key.
pub fn upgrade_advice(p: &Params) -> Option<String> {
    let current = Params::current();
    (p.version < current.version).then(|| {
        format!(
            "New keys make v{} templates ({} dimensions, {} per block instead of {}): faster \
             matching and less memory, disk and download per person, with accuracy on LFW \
             within 0.1 point of v{}'s. A gallery cannot be converted (the matcher holds \
             only ciphertexts and the app keeps no faces). To move: export this key to keep \
             its gallery, generate a new key, and enrol everyone again.",
            current.version,
            current.dim,
            current.slots_per_block(),
            p.slots_per_block(),
            p.version
        )
    })
}

pub fn ui(
    ui: &mut egui::Ui,
    panel: &mut SettingsPanel,
    state: &mut AppState,
    actions: &mut Vec<Action>,
) {
    ui.heading("Settings");
    ui.label("Matcher");
    let on_remote = matches!(state.settings.matcher, MatcherSpec::Remote { .. });
    let mut remote = on_remote || panel.choosing_remote;
    let was_remote = remote;
    ui.horizontal(|ui| {
        ui.radio_value(&mut remote, false, "Built-in");
        ui.radio_value(&mut remote, true, "Remote server");
    });
    if remote != was_remote {
        // Choosing "Remote" shows the fields; connecting waits for the button.
        panel.choosing_remote = remote;
        if !remote && on_remote {
            actions.push(Action::Connect {
                spec: MatcherSpec::Builtin,
                access: Access::default(),
            });
        }
    }
    if remote {
        ui.horizontal(|ui| {
            let l = ui.label("URL");
            ui.add(egui::TextEdit::singleline(&mut panel.url).desired_width(200.0))
                .labelled_by(l.id)
                .on_hover_text(
                    "https://HOST:7878; a cluster: its nodes' URLs separated by commas \
                     (one token and one certificate for all)",
                );
        });
        ui.horizontal(|ui| {
            let l = ui.label("Token");
            ui.add(
                egui::TextEdit::singleline(&mut panel.token)
                    .password(true)
                    .hint_text("empty: the saved one, or register")
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        });
        ui.horizontal(|ui| {
            let l = ui.label("Invitation");
            ui.add(
                egui::TextEdit::singleline(&mut panel.invite)
                    .hint_text("code from the operator, to register")
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        });
        ui.horizontal(|ui| {
            let l = ui.label("Certificate");
            ui.add(
                egui::TextEdit::singleline(&mut panel.fingerprint)
                    .hint_text("SHA-256; empty: pinned on first use")
                    .desired_width(200.0),
            )
            .labelled_by(l.id);
        });
        ui.checkbox(
            &mut panel.insecure,
            "Allow plain HTTP beyond this machine (anyone on the network can then read the \
             token and answer in the matcher's place)",
        );
        if ui.button("Connect").clicked() {
            // Kept in the fields until the connection works (cleared on "Connected").
            let typed = |s: &String| (!s.trim().is_empty()).then(|| s.trim().to_string());
            let fingerprint = match typed(&panel.fingerprint)
                .map(|f| f.parse::<Fingerprint>())
                .transpose()
            {
                Ok(f) => f,
                Err(e) => {
                    state.error_about(super::protocol::Operation::Connect, e);
                    return;
                }
            };
            match panel.url.parse::<MatcherSpec>() {
                Ok(spec) => actions.push(Action::Connect {
                    spec,
                    access: Access {
                        token: typed(&panel.token),
                        invite: typed(&panel.invite),
                        fingerprint,
                        insecure_http: panel.insecure,
                    },
                }),
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
    if state.key_fingerprint.is_some() {
        ui.add(egui::Label::new(templates_line(&state.key_params)).wrap());
        if let Some(advice) = upgrade_advice(&state.key_params) {
            ui.add(egui::Label::new(egui::RichText::new(advice).weak()).wrap());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_say_which_templates_a_key_makes_and_how_to_move() {
        let (v1, v2) = (Params::v1(), Params::v2());
        assert_eq!(
            templates_line(&v2),
            "Templates: parameters v2 (80 dimensions, 25 per block)"
        );
        assert_eq!(
            templates_line(&v1),
            "Templates: parameters v1 (128 dimensions, 15 per block), the older format"
        );
        assert_eq!(upgrade_advice(&v2), None, "current: nothing to do");
        let advice = upgrade_advice(&v1).unwrap();
        for part in [
            "New keys make v2 templates (80 dimensions, 25 per block instead of 15)",
            "cannot be converted",
            "export this key",
            "generate a new key, and enrol everyone again",
        ] {
            assert!(advice.contains(part), "{part}: {advice}");
        }
    }
}
