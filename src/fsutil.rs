//! File writes for private data (keys, tokens, settings holding a token): atomic
//! (temporary file in the same directory, fsync, rename) and readable by the owner only
//! (mode 0600 on Unix), so a crash never leaves half a file and nothing is briefly public.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically with mode 0600, creating parent directories.
/// With `overwrite` false, an existing file is left alone and the call fails with
/// `AlreadyExists`.
pub fn write_private(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if overwrite {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    Ok(())
}
