//! Where blindface keeps its files by default: the secret key and the built-in matcher's
//! store live in the platform's data directory (e.g. `~/.local/share/blindface`); the
//! build leaves a verified ONNX Runtime library in the platform's cache directory (e.g.
//! `~/.cache/blindface`), where the run-time lookup finds it too.

use std::path::{Path, PathBuf};

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

/// The platform cache directory for blindface (`~/.cache/blindface`, `~/Library/Caches/
/// blindface`, `%LOCALAPPDATA%\blindface\cache`). `build.rs` computes the same folder.
pub fn cache_dir() -> Option<PathBuf> {
    ProjectDirs::from("", "", "blindface").map(|d| d.cache_dir().to_path_buf())
}

/// The installed layout's ONNX Runtime folder for an executable in `exe_dir`: a binary in
/// `PREFIX/bin/` (the Debian package's `/usr/bin/blindface`) looks in `PREFIX/lib/blindface/`.
pub fn installed_lib_dir(exe_dir: &Path) -> Option<PathBuf> {
    exe_dir
        .parent()
        .map(|prefix| prefix.join("lib").join("blindface"))
}

/// The installed layout's models folder: `PREFIX/share/blindface/models/`.
pub fn installed_models_dir(exe_dir: &Path) -> Option<PathBuf> {
    exe_dir
        .parent()
        .map(|prefix| prefix.join("share").join("blindface").join("models"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_layout_is_relative_to_the_binary_prefix() {
        let bin = Path::new("/usr/bin");
        assert_eq!(
            installed_lib_dir(bin),
            Some(PathBuf::from("/usr/lib/blindface"))
        );
        assert_eq!(
            installed_models_dir(bin),
            Some(PathBuf::from("/usr/share/blindface/models"))
        );
        assert_eq!(installed_lib_dir(Path::new("/")), None);
    }
}
