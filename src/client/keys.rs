//! The secret key file: the key's bytes written atomically with mode 0600 and read back
//! ([`KeyFile`]), and one loading function with an explicit policy for each caller
//! (`blindface keygen` and the gallery commands need an existing key, the app creates one
//! on first run, `compare`/`eval` fall back to a key for this run only). An existing file
//! that cannot be read is always an error, never silently replaced.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fsutil;
use crate::he::{HeError, Params, SecretKey};

/// The key file: [`SecretKey::to_bytes`] in a file readable by its owner only.
pub trait KeyFile: Sized {
    /// Writes the key atomically (temp file + rename) with mode 0600. Refuses to replace
    /// an existing file unless `overwrite`.
    fn save(&self, path: &Path, overwrite: bool) -> Result<(), HeError>;

    /// Reads a key file written by [`KeyFile::save`], of any parameters this build knows.
    fn load(path: &Path) -> Result<Self, HeError>;
}

impl KeyFile for SecretKey {
    fn save(&self, path: &Path, overwrite: bool) -> Result<(), HeError> {
        let exists = || HeError::KeyExists {
            path: path.display().to_string(),
        };
        if path.exists() && !overwrite {
            return Err(exists());
        }
        fsutil::write_private(path, &self.to_bytes(), overwrite).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                exists()
            } else {
                HeError::KeyIo {
                    path: path.display().to_string(),
                    reason: e,
                }
            }
        })
    }

    fn load(path: &Path) -> Result<Self, HeError> {
        let bytes =
            zeroize::Zeroizing::new(std::fs::read(path).map_err(|reason| HeError::KeyIo {
                path: path.display().to_string(),
                reason,
            })?);
        SecretKey::from_bytes_known(&bytes)
    }
}

/// What to do when the key file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// Refuse: the caller needs the key that owns a gallery.
    MustExist,
    /// Create it (first run of the app).
    CreateIfMissing,
    /// Use a fresh key for this run only, without writing it.
    EphemeralIfMissing,
}

/// Where the key in hand came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Read from the file.
    File,
    /// Just created and saved to the file.
    Created,
    /// Made for this run only; nothing written.
    Ephemeral,
}

/// A key and where it came from.
#[derive(Debug)]
pub struct OpenedKey {
    pub key: SecretKey,
    pub origin: KeyOrigin,
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("no secret key at {}", path.display())]
    Missing { path: PathBuf },
    #[error("the secret key file {} cannot be used ({reason}); import your key, or move the file away to start a new gallery with a new key", path.display())]
    Unreadable { path: PathBuf, reason: HeError },
    #[error("a new secret key could not be saved ({0}); check that the folder is writable")]
    Save(HeError),
}

/// Opens the key at `path` under `policy`. A key file of any parameters this build knows
/// is read as it is (a v1 key keeps its v1 gallery); new keys are made with
/// [`Params::current`]. A key file of parameters this build does not know is
/// `Unreadable`.
pub fn open_key(path: &Path, policy: KeyPolicy) -> Result<OpenedKey, KeyError> {
    let params = Params::current();
    if path.exists() {
        let key = SecretKey::load(path).map_err(|reason| KeyError::Unreadable {
            path: path.to_path_buf(),
            reason,
        })?;
        return Ok(OpenedKey {
            key,
            origin: KeyOrigin::File,
        });
    }
    match policy {
        KeyPolicy::MustExist => Err(KeyError::Missing {
            path: path.to_path_buf(),
        }),
        KeyPolicy::CreateIfMissing => {
            let key = SecretKey::generate(&params);
            key.save(path, false).map_err(KeyError::Save)?;
            Ok(OpenedKey {
                key,
                origin: KeyOrigin::Created,
            })
        }
        KeyPolicy::EphemeralIfMissing => Ok(OpenedKey {
            key: SecretKey::generate(&params),
            origin: KeyOrigin::Ephemeral,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_and_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        assert!(matches!(
            open_key(&path, KeyPolicy::MustExist),
            Err(KeyError::Missing { .. })
        ));
        let e = open_key(&path, KeyPolicy::EphemeralIfMissing).unwrap();
        assert_eq!(e.origin, KeyOrigin::Ephemeral);
        assert!(!path.exists(), "an ephemeral key is not written");
        let c = open_key(&path, KeyPolicy::CreateIfMissing).unwrap();
        assert_eq!(c.origin, KeyOrigin::Created);
        let f = open_key(&path, KeyPolicy::MustExist).unwrap();
        assert_eq!(f.origin, KeyOrigin::File);
        assert_eq!(f.key.fingerprint(), c.key.fingerprint());
        // An unreadable file is an error under every policy and is left as it was.
        std::fs::write(&path, b"garbage").unwrap();
        for policy in [
            KeyPolicy::MustExist,
            KeyPolicy::CreateIfMissing,
            KeyPolicy::EphemeralIfMissing,
        ] {
            assert!(matches!(
                open_key(&path, policy),
                Err(KeyError::Unreadable { .. })
            ));
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
    }
}
