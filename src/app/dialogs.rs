//! File dialogs: the platform's own through rfd when one can be shown, otherwise the app's
//! built-in browser (egui_file) inside the window.
//!
//! rfd cannot tell a cancelled dialog from one that never appeared: on Linux its
//! xdg-portal backend asks `org.freedesktop.portal.FileChooser` over D-Bus, falls back to
//! `zenity`, and when both fail it only logs and returns `None`, exactly as on Cancel. So
//! [`RfdDialogs`] checks first ([`Dialogs::availability`]): zenity on `PATH`, or a session
//! bus whose portal answers for its FileChooser interface. [`Dialogs::answer`] then returns
//! a [`DialogAnswer`] that keeps "cancelled" and "unavailable" apart, and the app opens an
//! [`InAppDialog`] for the latter. What the built-in browser returns is checked by
//! [`validate`] (exists, is an image, is a folder...) before the app acts on it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use eframe::egui;

use crate::vision::{is_image, IMAGE_EXTENSIONS};

/// Which dialog answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    OpenImage,
    OpenFolder,
    ExportKey,
    ImportKey,
}

impl DialogKind {
    /// The dialog's title.
    pub fn title(self) -> &'static str {
        match self {
            DialogKind::OpenImage => "Open an image",
            DialogKind::OpenFolder => "Open a folder of images",
            DialogKind::ExportKey => "Export the secret key",
            DialogKind::ImportKey => "Import a secret key",
        }
    }
}

/// What a dialog answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogAnswer {
    Chosen(PathBuf),
    /// The user closed the dialog without choosing.
    Cancelled,
    /// No dialog could be shown, and why (the app then offers its own).
    Unavailable(String),
}

/// File dialogs, injectable so that tests never open one. Each call may block (it runs on
/// its own thread). `None` from a dialog means the user cancelled.
pub trait Dialogs: Send + Sync {
    fn open_image(&self) -> Option<PathBuf>;
    fn open_folder(&self) -> Option<PathBuf>;
    /// Where to write an exported key.
    fn export_key(&self) -> Option<PathBuf>;
    /// Which key file to import.
    fn import_key(&self) -> Option<PathBuf>;

    /// Whether a dialog can be shown at all; `Err` says why not. May block briefly.
    fn availability(&self) -> Result<(), String> {
        Ok(())
    }

    /// Shows the dialog of `kind` (blocks), or says that none can be shown.
    fn answer(&self, kind: DialogKind) -> DialogAnswer {
        if let Err(why) = self.availability() {
            return DialogAnswer::Unavailable(why);
        }
        let path = match kind {
            DialogKind::OpenImage => self.open_image(),
            DialogKind::OpenFolder => self.open_folder(),
            DialogKind::ExportKey => self.export_key(),
            DialogKind::ImportKey => self.import_key(),
        };
        path.map_or(DialogAnswer::Cancelled, DialogAnswer::Chosen)
    }
}

/// The default file name of an exported key.
pub const EXPORT_FILE_NAME: &str = "blindface-secret.key";

/// The platform's dialogs (rfd, xdg-portal backend with its zenity fallback on Linux).
pub struct RfdDialogs;

impl Dialogs for RfdDialogs {
    fn open_image(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title(DialogKind::OpenImage.title())
            .add_filter("Images", IMAGE_EXTENSIONS)
            .pick_file()
    }
    fn open_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title(DialogKind::OpenFolder.title())
            .pick_folder()
    }
    fn export_key(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title(DialogKind::ExportKey.title())
            .set_file_name(EXPORT_FILE_NAME)
            .save_file()
    }
    fn import_key(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title(DialogKind::ImportKey.title())
            .pick_file()
    }
    fn availability(&self) -> Result<(), String> {
        native_availability()
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
fn native_availability() -> Result<(), String> {
    if on_path("zenity", std::env::var_os("PATH").as_deref()) {
        return Ok(());
    }
    let bus = session_bus(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").as_deref(),
        std::env::var_os("XDG_RUNTIME_DIR")
            .as_deref()
            .map(Path::new),
    );
    let portal = if bus {
        match portal_file_chooser() {
            Some(answers) => answers,
            // No dbus-send to ask with: trust an installed portal service.
            None => portal_service_installed(std::env::var_os("XDG_DATA_DIRS").as_deref()),
        }
    } else {
        false
    };
    linux_verdict(bus, portal, false)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
fn native_availability() -> Result<(), String> {
    Ok(())
}

/// Whether rfd can show a dialog on Linux: through the portal (needs a session bus and a
/// portal with a file chooser) or through zenity.
pub fn linux_verdict(session_bus: bool, portal: bool, zenity: bool) -> Result<(), String> {
    if zenity || (session_bus && portal) {
        return Ok(());
    }
    let why = if session_bus {
        "the desktop portal offers no file chooser (install xdg-desktop-portal-gtk, -gnome or \
         -kde) and zenity is not installed"
    } else {
        "there is no D-Bus session bus for the desktop portal and zenity is not installed"
    };
    Err(why.to_string())
}

/// Whether `program` is a file in one of the directories of `path_var` (a `PATH` value).
pub fn on_path(program: &str, path_var: Option<&OsStr>) -> bool {
    path_var.is_some_and(|p| std::env::split_paths(p).any(|d| d.join(program).is_file()))
}

/// Whether a D-Bus session bus can be reached: an address in the environment, or the
/// systemd user bus socket in the runtime directory.
pub fn session_bus(address: Option<&OsStr>, runtime_dir: Option<&Path>) -> bool {
    address.is_some_and(|a| !a.is_empty()) || runtime_dir.is_some_and(|d| d.join("bus").exists())
}

/// Whether the D-Bus service file of the desktop portal is installed in one of the data
/// directories (`XDG_DATA_DIRS`, default `/usr/local/share:/usr/share`).
pub fn portal_service_installed(data_dirs: Option<&OsStr>) -> bool {
    let dirs: Vec<PathBuf> = match data_dirs.filter(|d| !d.is_empty()) {
        Some(d) => std::env::split_paths(d).collect(),
        None => vec!["/usr/local/share".into(), "/usr/share".into()],
    };
    dirs.iter().any(|d| {
        d.join("dbus-1/services/org.freedesktop.portal.Desktop.service")
            .is_file()
    })
}

/// Asks the portal (with `dbus-send`, activating it if needed) for its FileChooser
/// interface's version: `Some(true)` if it answers, `Some(false)` if not, `None` if
/// `dbus-send` is not installed.
#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
fn portal_file_chooser() -> Option<bool> {
    let status = std::process::Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--reply-timeout=5000",
            "--dest=org.freedesktop.portal.Desktop",
            "/org/freedesktop/portal/desktop",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.portal.FileChooser",
            "string:version",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) => Some(s.success()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(false),
    }
}

/// Why a path chosen in the built-in browser cannot be used for `kind`.
pub fn validate(kind: DialogKind, path: &Path) -> Result<(), String> {
    let shown = path.display();
    match kind {
        DialogKind::OpenImage => {
            if !path.exists() {
                Err(format!("{shown} does not exist"))
            } else if path.is_dir() {
                Err(format!(
                    "{shown} is a folder: choose an image in it, or use Open folder"
                ))
            } else if !is_image(path) {
                Err(format!(
                    "{shown} is not an image ({})",
                    IMAGE_EXTENSIONS.join(", ")
                ))
            } else {
                Ok(())
            }
        }
        DialogKind::OpenFolder => {
            if !path.exists() {
                Err(format!("{shown} does not exist"))
            } else if !path.is_dir() {
                Err(format!(
                    "{shown} is not a folder: choose a folder, or use Open image"
                ))
            } else {
                Ok(())
            }
        }
        DialogKind::ImportKey => {
            if !path.exists() {
                Err(format!("{shown} does not exist"))
            } else if !path.is_file() {
                Err(format!("{shown} is not a file: choose a key file"))
            } else {
                Ok(())
            }
        }
        DialogKind::ExportKey => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if path.is_dir() {
                Err(format!("{shown} is a folder: type a file name"))
            } else if path.exists() {
                Err(format!(
                    "{shown} already exists: type another name (the built-in browser does \
                     not replace files)"
                ))
            } else if !parent.is_dir() {
                Err(format!("the folder {} does not exist", parent.display()))
            } else {
                Ok(())
            }
        }
    }
}

/// Where the built-in browser starts: the folder around what is open now (`current`, an
/// image or a folder source) for images and folders, else the Pictures folder; the home
/// folder for keys.
pub fn start_dir(kind: DialogKind, current: Option<&Path>) -> PathBuf {
    let user = directories::UserDirs::new();
    let home = user.as_ref().map(|u| u.home_dir().to_path_buf());
    let around = current
        .and_then(Path::parent)
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf);
    let pictures = user
        .as_ref()
        .and_then(|u| u.picture_dir())
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf);
    let first = match kind {
        DialogKind::OpenImage | DialogKind::OpenFolder => around.or(pictures).or(home),
        DialogKind::ExportKey | DialogKind::ImportKey => home,
    };
    first
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What the built-in browser did this frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InAppEvent {
    /// Closed with this answer (a valid path, or cancelled).
    Done(DialogAnswer),
    /// A path was chosen that cannot be used; the browser stays open.
    Invalid(String),
}

/// The app's own file browser (egui_file), used when no system dialog can be shown.
pub struct InAppDialog {
    pub kind: DialogKind,
    dialog: egui_file::FileDialog,
}

impl InAppDialog {
    /// Opens the browser for `kind` in `start`.
    pub fn new(kind: DialogKind, start: &Path) -> Self {
        let title = format!("{} (built-in file browser)", kind.title());
        let base = match kind {
            DialogKind::OpenImage => egui_file::FileDialog::open_file()
                .show_files_filter(Box::new(is_image))
                .filename_filter(Box::new(|name: &str| is_image(Path::new(name))))
                .open_button_text("Open image".into()),
            DialogKind::OpenFolder => {
                egui_file::FileDialog::select_folder().open_button_text("Open this folder".into())
            }
            DialogKind::ImportKey => {
                egui_file::FileDialog::open_file().open_button_text("Import key".into())
            }
            DialogKind::ExportKey => egui_file::FileDialog::save_file()
                .default_filename(EXPORT_FILE_NAME)
                .save_button_text("Export key".into()),
        };
        let mut dialog = base
            .title(&title)
            .id(egui::Id::unique("blindface-in-app-file-dialog"))
            .initial_path(start)
            .show_rename(false)
            .show_new_folder(kind == DialogKind::ExportKey)
            .default_size([560.0, 420.0])
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0]);
        dialog.open();
        InAppDialog { kind, dialog }
    }

    /// Draws the browser; says when it closed or when its choice cannot be used.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<InAppEvent> {
        match self.dialog.show(ctx).state() {
            egui_file::State::Open => None,
            egui_file::State::Selected => {
                let Some(path) = self.dialog.path().map(Path::to_path_buf) else {
                    self.dialog.open();
                    return Some(InAppEvent::Invalid("choose a file or folder first".into()));
                };
                match validate(self.kind, &path) {
                    Ok(()) => Some(InAppEvent::Done(DialogAnswer::Chosen(path))),
                    Err(e) => {
                        self.dialog.open();
                        Some(InAppEvent::Invalid(e))
                    }
                }
            }
            egui_file::State::Cancelled | egui_file::State::Closed => {
                Some(InAppEvent::Done(DialogAnswer::Cancelled))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "blindface-dialogs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn linux_verdict_needs_zenity_or_a_portal_on_a_bus() {
        assert!(linux_verdict(false, false, true).is_ok());
        assert!(linux_verdict(true, true, false).is_ok());
        let no_bus = linux_verdict(false, true, false).unwrap_err();
        assert!(no_bus.contains("no D-Bus session bus"), "{no_bus}");
        let no_chooser = linux_verdict(true, false, false).unwrap_err();
        assert!(no_chooser.contains("no file chooser"), "{no_chooser}");
        assert!(no_chooser.contains("zenity"), "{no_chooser}");
    }

    #[test]
    fn on_path_looks_in_every_directory() {
        let d = temp();
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("zenity"), b"").unwrap();
        let both = std::env::join_paths([&a, &b]).unwrap();
        assert!(on_path("zenity", Some(&both)));
        assert!(!on_path("zenity", Some(a.as_os_str())));
        assert!(!on_path("zenity", None));
        // A folder of that name is not the program.
        std::fs::create_dir_all(a.join("dbus-send")).unwrap();
        assert!(!on_path("dbus-send", Some(a.as_os_str())));
    }

    #[test]
    fn session_bus_from_address_or_runtime_socket() {
        let d = temp();
        assert!(session_bus(Some(OsStr::new("unix:path=/x")), None));
        assert!(!session_bus(Some(OsStr::new("")), None));
        assert!(!session_bus(None, Some(&d)));
        std::fs::write(d.join("bus"), b"").unwrap();
        assert!(session_bus(None, Some(&d)));
    }

    #[test]
    fn portal_service_found_in_data_dirs() {
        let d = temp();
        assert!(!portal_service_installed(Some(d.as_os_str())));
        let services = d.join("dbus-1/services");
        std::fs::create_dir_all(&services).unwrap();
        std::fs::write(
            services.join("org.freedesktop.portal.Desktop.service"),
            b"[D-BUS Service]\n",
        )
        .unwrap();
        let dirs = std::env::join_paths([Path::new("/nonexistent"), &d]).unwrap();
        assert!(portal_service_installed(Some(&dirs)));
    }

    #[test]
    fn cancelled_and_unavailable_are_different_answers() {
        struct Fake(Result<(), String>, Option<PathBuf>);
        impl Dialogs for Fake {
            fn open_image(&self) -> Option<PathBuf> {
                self.1.clone()
            }
            fn open_folder(&self) -> Option<PathBuf> {
                self.1.clone()
            }
            fn export_key(&self) -> Option<PathBuf> {
                self.1.clone()
            }
            fn import_key(&self) -> Option<PathBuf> {
                self.1.clone()
            }
            fn availability(&self) -> Result<(), String> {
                self.0.clone()
            }
        }
        let k = DialogKind::OpenFolder;
        assert_eq!(Fake(Ok(()), None).answer(k), DialogAnswer::Cancelled);
        assert_eq!(
            Fake(Ok(()), Some("/x".into())).answer(k),
            DialogAnswer::Chosen("/x".into())
        );
        assert_eq!(
            Fake(Err("none".into()), Some("/x".into())).answer(k),
            DialogAnswer::Unavailable("none".into())
        );
    }

    #[test]
    fn validate_says_what_is_wrong() {
        let d = temp();
        let img = d.join("face.JPG");
        std::fs::write(&img, b"x").unwrap();
        let txt = d.join("notes.txt");
        std::fs::write(&txt, b"x").unwrap();
        let missing = d.join("missing.jpg");

        assert!(validate(DialogKind::OpenImage, &img).is_ok());
        let e = validate(DialogKind::OpenImage, &missing).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = validate(DialogKind::OpenImage, &txt).unwrap_err();
        assert!(e.contains("is not an image"), "{e}");
        let e = validate(DialogKind::OpenImage, &d).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");

        assert!(validate(DialogKind::OpenFolder, &d).is_ok());
        let e = validate(DialogKind::OpenFolder, &img).unwrap_err();
        assert!(e.contains("is not a folder"), "{e}");
        let e = validate(DialogKind::OpenFolder, &d.join("nope")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");

        assert!(validate(DialogKind::ImportKey, &txt).is_ok());
        let e = validate(DialogKind::ImportKey, &d).unwrap_err();
        assert!(e.contains("is not a file"), "{e}");

        assert!(validate(DialogKind::ExportKey, &d.join("new.key")).is_ok());
        let e = validate(DialogKind::ExportKey, &txt).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        let e = validate(DialogKind::ExportKey, &d).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
        let e = validate(DialogKind::ExportKey, &d.join("no/such/dir/k.key")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn start_dir_is_around_the_open_source() {
        let d = temp();
        let img = d.join("a.jpg");
        std::fs::write(&img, b"x").unwrap();
        assert_eq!(start_dir(DialogKind::OpenImage, Some(&img)), d);
        // A folder source: its parent, so that its siblings can be chosen.
        assert_eq!(
            start_dir(DialogKind::OpenFolder, Some(&d)),
            d.parent().unwrap()
        );
        assert!(start_dir(DialogKind::ImportKey, Some(&img)) != d);
        assert!(start_dir(DialogKind::OpenFolder, None).is_absolute());
    }
}
