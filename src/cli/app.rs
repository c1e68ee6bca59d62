//! `blindface` without a subcommand, or `blindface app`: the desktop app.

use std::path::PathBuf;

use anyhow::Result;

use blindface::app::AppConfig;

use super::output::Globals;

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
    if globals.threshold_given {
        config.threshold = Some(globals.threshold);
    }
    config.identify = matches!(start, Start::Identify);
    config.live = matches!(start, Start::Live);
    blindface::app::run(config)
}
