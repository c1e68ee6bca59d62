//! The options every subcommand reads, parsed once (`Globals`), and the command line's
//! output conventions: a readable table by default or one JSON object with `--json`
//! (`emit`), name columns in terminal columns (`pad`), percentages (`pct`), and how a
//! command that ran to the end exits (`Outcome`). Every command module imports these from
//! here; nothing here imports a command.

use std::path::PathBuf;

use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use blindface::calibration::{default_threshold, Calibration};
use blindface::client::Access;
use blindface::he::{Params, Threshold};
use blindface::matcher::MatcherSpec;

/// Where the same-person threshold comes from. It is resolved for the parameters of the
/// templates compared ([`Globals::threshold`]): v1 and v2 distances are on different
/// scales, with their own default and calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    /// `--threshold L2`.
    Given(f32),
    /// `--far RATE`, through the shipped calibration of the templates' parameters.
    Far(f64),
    /// Neither: the default of the templates' parameters.
    Default,
}

impl ThresholdChoice {
    /// The threshold for templates of `params`, and what it means when it came from
    /// `--far` (calibrated FAR and TAR).
    pub fn resolve(self, params: &Params) -> anyhow::Result<(Threshold, Option<String>)> {
        Ok(match self {
            ThresholdChoice::Given(t) => (Threshold::new(t, params), None),
            ThresholdChoice::Default => (Threshold::new(default_threshold(params), params), None),
            ThresholdChoice::Far(far) => {
                let p = Calibration::lfw_devtrain(params)?.threshold_for_far(far)?;
                (
                    Threshold::new(p.threshold, params),
                    Some(format!(
                        "--far {far}: threshold {:.3}, {} (LFW View 1 DevTrain, templates v{})",
                        p.threshold,
                        p.describe(),
                        params.version
                    )),
                )
            }
        })
    }
}

/// Global options the subcommands read, parsed once.
pub struct Globals {
    pub key: PathBuf,
    /// Resolve it with [`ThresholdChoice::resolve`] for the templates' parameters.
    pub threshold: ThresholdChoice,
    pub json: bool,
    pub matcher: MatcherSpec,
    /// Whether --matcher was given (the app keeps its saved choice otherwise).
    pub matcher_given: bool,
    pub data: Option<PathBuf>,
    /// Pin, invitation code and plain-HTTP consent for a remote matcher.
    pub access: Access,
}

/// How a command that ran to the end exits.
pub enum Outcome {
    /// Exit 0.
    Done,
    /// `verify` decided the face is not the person's: exit 1.
    NotVerified,
}

/// Prints `value` as JSON, or `table` otherwise.
pub fn emit<T: Serialize>(globals: &Globals, value: &T, table: impl FnOnce() -> String) {
    if globals.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    } else {
        print!("{}", table());
    }
}

/// `text` left-aligned in `width` terminal columns, as `{:<width}` does for ASCII, with
/// wide characters (CJK, emoji) counted as the two columns a terminal gives them; text
/// wider than `width` is kept whole. Every table column holding names goes through here.
pub fn pad(text: &str, width: usize) -> String {
    let used = UnicodeWidthStr::width(text);
    format!("{text}{}", " ".repeat(width.saturating_sub(used)))
}

/// A rate as a percentage with two decimals, or "-" when it is undefined (NaN).
pub fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_counts_terminal_columns() {
        assert_eq!(pad("Obama", 8), "Obama   ");
        // CJK: two columns a character, so "王小明" fills 6 of 8.
        assert_eq!(pad("王小明", 8), "王小明  ");
        assert_eq!(pad("Zoë 😀", 8), "Zoë 😀  ");
        // What `{:<8}` would do: pad by characters, one column short per wide one.
        assert_eq!(format!("{:<8}", "王小明"), "王小明     ");
        // Every row ends its name column at the same terminal column.
        for name in ["Obama", "王小明", "Zoë 😀", "👩🏽‍💻 Ada", "ｆｕｌｌ"] {
            assert_eq!(UnicodeWidthStr::width(pad(name, 12).as_str()), 12, "{name}");
        }
        // Longer than the column: kept whole, nothing added.
        assert_eq!(pad("김정은 김여정", 4), "김정은 김여정");
        assert_eq!(pad("", 3), "   ");
    }
}
