//! `blindface` without a subcommand, or `blindface app`: the desktop app.

use std::path::PathBuf;

use anyhow::Result;

use blindface::app::AppConfig;

use super::output::{Globals, ThresholdChoice};

/// What the app does from the start.
pub enum Start {
    Idle,
    /// Continuous identify of the selected face.
    Identify,
    /// Live mode: every face.
    Live,
}

pub fn open(globals: &Globals, source: Option<PathBuf>, start: Start) -> Result<()> {
    let data = globals
        .data
        .clone()
        .unwrap_or_else(blindface::paths::data_dir);
    let mut config = AppConfig::new(globals.key.clone(), data, source);
    // Choices given on the command line override the saved settings.
    if globals.matcher_given {
        config.matcher = Some(globals.matcher.clone());
    }
    // A threshold given (or a rate resolved) for the key's templates: the key file says
    // which they are (an unreadable or missing one: the app reports it, or makes a key of
    // the current parameters).
    if globals.threshold != ThresholdChoice::Default {
        use blindface::client::keys::KeyFile;
        let params = blindface::he::SecretKey::load(&globals.key)
            .map(|k| *k.params())
            .unwrap_or_else(|_| blindface::he::Params::current());
        config.threshold = Some(globals.threshold.resolve(&params)?.0.l2());
    }
    config.identify = matches!(start, Start::Identify);
    config.live = matches!(start, Start::Live);
    blindface::app::run(config)
}
