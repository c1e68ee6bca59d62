//! `blindface` without a subcommand, or `blindface app`: the desktop app.

use std::path::PathBuf;

use anyhow::Result;

use blindface::app::AppConfig;

use super::Globals;

pub fn open(globals: &Globals, source: Option<PathBuf>, identify: bool) -> Result<()> {
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
    config.identify = identify;
    blindface::app::run(config)
}
