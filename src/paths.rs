//! Where blindface keeps its files by default: the secret key and the built-in matcher's
//! store live in the platform's data directory (e.g. `~/.local/share/blindface`).

use std::path::PathBuf;

use directories::ProjectDirs;

/// The platform data directory for blindface, or `./.blindface` if the platform has none.
pub fn data_dir() -> PathBuf {
    ProjectDirs::from("", "", "blindface")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".blindface"))
}

/// Default secret key file.
pub fn default_key_path() -> PathBuf {
    data_dir().join("secret.key")
}
