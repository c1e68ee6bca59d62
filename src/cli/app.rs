//! `blindface` without a subcommand, or `blindface app`: the desktop app.

use std::path::PathBuf;

use anyhow::Result;

use blindface::app::{state::MatcherChoice, AppConfig};
use blindface::vision::SFACE_L2_THRESHOLD;

use super::Globals;

pub fn open(globals: &Globals, source: Option<PathBuf>, identify: bool) -> Result<()> {
    let data = globals
        .data
        .clone()
        .unwrap_or_else(blindface::paths::data_dir);
    let mut config = AppConfig::new(globals.key.clone(), data, source);
    // Command-line choices override the saved settings; defaults leave them alone.
    let m = globals.matcher.trim();
    if m != "builtin" {
        config.matcher = Some(MatcherChoice::Remote {
            url: m.to_string(),
            token: String::new(),
        });
    }
    if globals.threshold != SFACE_L2_THRESHOLD {
        config.threshold = Some(globals.threshold);
    }
    config.identify = identify;
    blindface::app::run(config)
}
