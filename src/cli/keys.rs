//! `blindface keygen`: create the secret key.

use anyhow::Result;
use serde::Serialize;

use blindface::client::keys::KeyFile;
use blindface::he::{Params, SecretKey};

use super::output::{emit, Globals};

#[derive(Serialize)]
struct KeygenOutput {
    path: String,
    fingerprint: String,
}

pub fn keygen(globals: &Globals, force: bool) -> Result<()> {
    let key = SecretKey::generate(&Params::current());
    key.save(&globals.key, force)?;
    let out = KeygenOutput {
        path: globals.key.display().to_string(),
        fingerprint: key.fingerprint(),
    };
    emit(globals, &out, || {
        format!(
            "created secret key {}\nfingerprint {}\nIt is the only key that can read your \
             gallery's distances and names: keep a copy somewhere safe.\n",
            out.path, out.fingerprint
        )
    });
    Ok(())
}
