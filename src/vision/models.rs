//! Locating the two model files and checking their SHA-256 before ONNX Runtime sees them.
//!
//! Search order for the models folder: the `BLINDFACE_MODELS` environment variable, then
//! `models/` next to the executable, then the installed layout `PREFIX/share/blindface/models/`
//! for a binary in `PREFIX/bin/` (the Debian package: `/usr/share/blindface/models/`), then
//! this crate's `models/` folder (fixed at compile time).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::VisionError;

/// Environment variable naming a folder that holds both model files.
pub const MODELS_ENV: &str = "BLINDFACE_MODELS";

/// One pinned model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// File name inside the models folder.
    pub file_name: &'static str,
    /// Expected size in bytes.
    pub bytes: u64,
    /// Expected SHA-256, lower-case hex.
    pub sha256: &'static str,
}

/// YuNet face detector (OpenCV Zoo, MIT).
pub const YUNET: ModelFile = ModelFile {
    file_name: "face_detection_yunet_2023mar.onnx",
    bytes: 232_589,
    sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
};

/// SFace recogniser (OpenCV Zoo, Apache-2.0).
pub const SFACE: ModelFile = ModelFile {
    file_name: "face_recognition_sface_2021dec.onnx",
    bytes: 38_696_353,
    sha256: "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
};

const RESTORE_HINT: &str = "restore it with `git checkout models/` in the blindface repository \
     (or copy it from the repository's models/ folder), or set BLINDFACE_MODELS to a folder \
     holding the original file";

/// The folders searched for models after `BLINDFACE_MODELS`, in order, each with where
/// it comes from ("next to the executable", "installed layout", "source tree").
pub fn candidate_dirs() -> Vec<(&'static str, PathBuf)> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(("next to the executable", dir.join("models")));
            if let Some(installed) = crate::paths::installed_models_dir(dir) {
                dirs.push(("installed layout", installed));
            }
        }
    }
    dirs.push(("source tree", source_models_dir()));
    dirs
}

/// This crate's own `models/` folder (fixed at compile time).
fn source_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Whether `dir` holds both model files (their contents are checked at load).
pub fn holds_models(dir: &Path) -> bool {
    dir.join(YUNET.file_name).is_file() && dir.join(SFACE.file_name).is_file()
}

/// The models folder to use: `BLINDFACE_MODELS` if set (used as is, even if incomplete, so a
/// mistake there is reported rather than silently bypassed), else the first candidate that
/// holds both files, else the crate's own `models/` folder (whose missing file is then
/// reported by [`load_verified`]).
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    candidate_dirs()
        .into_iter()
        .map(|(_, dir)| dir)
        .find(|d| holds_models(d))
        .unwrap_or_else(source_models_dir)
}

/// Reads `dir/<model>` and checks its SHA-256; returns the bytes ONNX Runtime should load.
pub fn load_verified(dir: &Path, model: &ModelFile) -> Result<Vec<u8>, VisionError> {
    let path = dir.join(model.file_name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VisionError::ModelMissing {
                path,
                hint: RESTORE_HINT.to_string(),
            })
        }
        Err(e) => {
            return Err(VisionError::ModelCorrupt {
                path,
                reason: format!("cannot read it: {e}"),
                hint: RESTORE_HINT.to_string(),
            })
        }
    };
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != model.sha256 {
        return Err(VisionError::ModelCorrupt {
            path,
            reason: format!(
                "SHA-256 {actual}, {} bytes; expected {}, {} bytes",
                bytes.len(),
                model.sha256,
                model.bytes
            ),
            hint: RESTORE_HINT.to_string(),
        });
    }
    Ok(bytes)
}
