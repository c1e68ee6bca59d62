//! Fallback fonts for names in any script. egui's default fonts cover Latin, Greek and
//! Cyrillic (plus a monochrome emoji font); a name in Chinese, Japanese, Korean, Arabic,
//! Hebrew, Devanagari or Thai would show as boxes. At startup the app looks for well-known
//! system fonts ([`candidates`], a pure function of the [`Platform`]) and adds each one
//! found after egui's own fonts, for both the proportional and the monospace family, so
//! Latin text looks as before and other scripts are drawn by the first font that has them.
//!
//! Colour emoji fonts (Noto Color Emoji, Apple Color Emoji, Segoe UI Emoji) are bitmaps or
//! colour layers egui does not draw, so the emoji fallbacks are monochrome (Noto Emoji,
//! Symbola, Segoe UI Symbol, Apple Symbols). On Debian and Ubuntu the packages are listed
//! in the README.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use eframe::egui;
use egui::{FontData, FontFamily, FontInsert, FontPriority, InsertFontFamily};

/// Which platform's font locations to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux and the BSDs (fontconfig layouts of Debian, Fedora, Arch...).
    Unix,
    MacOs,
    Windows,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::MacOs
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Unix
        }
    }
}

/// One fallback font: the first of its paths that exists is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The name egui knows it by.
    pub name: &'static str,
    /// What it adds (for logs and the README).
    pub covers: &'static str,
    /// Where it may be, best first.
    pub paths: Vec<&'static str>,
}

fn fallback(name: &'static str, covers: &'static str, paths: &[&'static str]) -> Fallback {
    Fallback {
        name,
        covers,
        paths: paths.to_vec(),
    }
}

/// The fallback fonts to look for on `platform`, in the order they are added.
pub fn candidates(platform: Platform) -> Vec<Fallback> {
    match platform {
        Platform::Unix => vec![
            fallback(
                "fallback-dejavu",
                "symbols, extended Latin, Greek, Cyrillic, Armenian, Georgian",
                &[
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/local/share/fonts/dejavu/DejaVuSans.ttf",
                ],
            ),
            fallback(
                "fallback-cjk",
                "Chinese, Japanese, Korean",
                &[
                    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
                    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
                    "/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc",
                    "/usr/share/fonts/google-noto-sans-cjk-vf-fonts/NotoSansCJK-VF.ttc",
                    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
                    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
                    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
                    "/usr/local/share/fonts/noto/NotoSansCJK-Regular.ttc",
                ],
            ),
            fallback(
                "fallback-arabic",
                "Arabic",
                &[
                    "/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
                    "/usr/share/fonts/google-noto/NotoSansArabic-Regular.ttf",
                    "/usr/share/fonts/google-noto-vf/NotoSansArabic[wght].ttf",
                    "/usr/share/fonts/noto/NotoSansArabic-Regular.ttf",
                    "/usr/share/fonts/truetype/noto/NotoNaskhArabic-Regular.ttf",
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                ],
            ),
            fallback(
                "fallback-hebrew",
                "Hebrew",
                &[
                    "/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",
                    "/usr/share/fonts/google-noto/NotoSansHebrew-Regular.ttf",
                    "/usr/share/fonts/noto/NotoSansHebrew-Regular.ttf",
                ],
            ),
            fallback(
                "fallback-devanagari",
                "Devanagari (Hindi, Marathi, Nepali)",
                &[
                    "/usr/share/fonts/truetype/noto/NotoSansDevanagari-Regular.ttf",
                    "/usr/share/fonts/google-noto/NotoSansDevanagari-Regular.ttf",
                    "/usr/share/fonts/noto/NotoSansDevanagari-Regular.ttf",
                ],
            ),
            fallback(
                "fallback-thai",
                "Thai",
                &[
                    "/usr/share/fonts/truetype/noto/NotoSansThai-Regular.ttf",
                    "/usr/share/fonts/google-noto/NotoSansThai-Regular.ttf",
                    "/usr/share/fonts/noto/NotoSansThai-Regular.ttf",
                ],
            ),
            fallback(
                "fallback-emoji",
                "emoji and symbols (monochrome)",
                &[
                    "/usr/share/fonts/truetype/noto/NotoEmoji-Regular.ttf",
                    "/usr/share/fonts/google-noto-emoji/NotoEmoji-Regular.ttf",
                    "/usr/share/fonts/noto/NotoEmoji-Regular.ttf",
                    "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
                    "/usr/share/fonts/gdouros-symbola/Symbola.ttf",
                    "/usr/share/fonts/TTF/Symbola.ttf",
                ],
            ),
        ],
        Platform::MacOs => vec![
            fallback(
                "fallback-cjk",
                "Chinese, Japanese, Korean",
                &[
                    "/System/Library/Fonts/PingFang.ttc",
                    "/System/Library/Fonts/Hiragino Sans GB.ttc",
                    "/System/Library/Fonts/STHeiti Light.ttc",
                    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
                    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
                    "/Library/Fonts/Arial Unicode.ttf",
                ],
            ),
            fallback(
                "fallback-arabic",
                "Arabic",
                &[
                    "/System/Library/Fonts/GeezaPro.ttc",
                    "/System/Library/Fonts/SFArabic.ttf",
                    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
                    "/Library/Fonts/Arial Unicode.ttf",
                ],
            ),
            fallback(
                "fallback-hebrew",
                "Hebrew",
                &[
                    "/System/Library/Fonts/SFHebrew.ttf",
                    "/System/Library/Fonts/Supplemental/Arial Hebrew.ttc",
                ],
            ),
            fallback(
                "fallback-devanagari",
                "Devanagari",
                &[
                    "/System/Library/Fonts/Kohinoor.ttc",
                    "/System/Library/Fonts/Supplemental/DevanagariMT.ttc",
                ],
            ),
            fallback(
                "fallback-thai",
                "Thai",
                &[
                    "/System/Library/Fonts/Supplemental/Thonburi.ttc",
                    "/System/Library/Fonts/Thonburi.ttc",
                ],
            ),
            fallback(
                "fallback-emoji",
                "symbols (monochrome)",
                &["/System/Library/Fonts/Apple Symbols.ttf"],
            ),
        ],
        Platform::Windows => vec![
            fallback(
                "fallback-cjk",
                "Chinese, Japanese, Korean",
                &[
                    r"C:\Windows\Fonts\msyh.ttc",
                    r"C:\Windows\Fonts\YuGothR.ttc",
                    r"C:\Windows\Fonts\msgothic.ttc",
                    r"C:\Windows\Fonts\malgun.ttf",
                    r"C:\Windows\Fonts\simsun.ttc",
                ],
            ),
            fallback(
                "fallback-korean",
                "Korean (when the CJK font lacks Hangul)",
                &[r"C:\Windows\Fonts\malgun.ttf"],
            ),
            fallback(
                "fallback-arabic",
                "Arabic, Hebrew",
                &[
                    r"C:\Windows\Fonts\segoeui.ttf",
                    r"C:\Windows\Fonts\arial.ttf",
                ],
            ),
            fallback(
                "fallback-indic",
                "Devanagari and other Indic scripts",
                &[
                    r"C:\Windows\Fonts\Nirmala.ttf",
                    r"C:\Windows\Fonts\mangal.ttf",
                ],
            ),
            fallback(
                "fallback-thai",
                "Thai",
                &[
                    r"C:\Windows\Fonts\LeelawUI.ttf",
                    r"C:\Windows\Fonts\tahoma.ttf",
                ],
            ),
            fallback(
                "fallback-emoji",
                "emoji and symbols (monochrome)",
                &[r"C:\Windows\Fonts\seguisym.ttf"],
            ),
        ],
    }
}

/// The first existing path of each fallback, skipping a file already chosen for an
/// earlier one (one file, loaded once).
pub fn locate(
    candidates: &[Fallback],
    exists: impl Fn(&Path) -> bool,
) -> Vec<(&'static str, PathBuf)> {
    let mut found: Vec<(&'static str, PathBuf)> = Vec::new();
    for c in candidates {
        if let Some(p) = c.paths.iter().map(Path::new).find(|p| exists(p)) {
            if !found.iter().any(|(_, q)| q == p) {
                found.push((c.name, p.to_path_buf()));
            }
        }
    }
    found
}

/// The fonts found on this system, read once per process (a CJK font is ~20 MB).
fn system_fallbacks() -> &'static [FontInsert] {
    static FONTS: OnceLock<Vec<FontInsert>> = OnceLock::new();
    FONTS.get_or_init(|| {
        locate(&candidates(Platform::current()), Path::is_file)
            .into_iter()
            .filter_map(|(name, path)| match std::fs::read(&path) {
                Ok(bytes) => {
                    tracing::debug!("fallback font {name}: {}", path.display());
                    Some(FontInsert::new(
                        name,
                        FontData::from_owned(bytes),
                        [FontFamily::Proportional, FontFamily::Monospace]
                            .into_iter()
                            .map(|family| InsertFontFamily {
                                family,
                                priority: FontPriority::Lowest,
                            })
                            .collect(),
                    ))
                }
                Err(e) => {
                    tracing::warn!("fallback font {} not read: {e}", path.display());
                    None
                }
            })
            .collect()
    })
}

/// Adds the system's fallback fonts after egui's own; returns their names. Calling it
/// again on the same context adds nothing.
pub fn install(ctx: &egui::Context) -> Vec<&'static str> {
    let fonts = system_fallbacks();
    for f in fonts {
        ctx.add_font(f.clone());
    }
    fonts.iter().map(|f| f.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_has_cjk_arabic_and_monochrome_emoji_fallbacks() {
        for p in [Platform::Unix, Platform::MacOs, Platform::Windows] {
            let c = candidates(p);
            for name in ["fallback-cjk", "fallback-arabic", "fallback-emoji"] {
                assert!(c.iter().any(|f| f.name == name), "{p:?} lacks {name}");
            }
            let mut names: Vec<_> = c.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), c.len(), "{p:?}: names are unique");
            assert!(c.iter().all(|f| !f.paths.is_empty()));
            // Colour emoji fonts are not drawable by egui: never a candidate.
            for f in &c {
                for path in &f.paths {
                    let lower = path.to_ascii_lowercase();
                    assert!(!lower.contains("color"), "{path}");
                    assert!(!lower.contains("seguiemj"), "{path}");
                }
            }
        }
    }

    #[test]
    fn platform_paths_look_like_their_platform() {
        let unix = candidates(Platform::Unix);
        assert!(unix
            .iter()
            .flat_map(|f| &f.paths)
            .all(|p| p.starts_with("/usr/")));
        assert!(unix[1]
            .paths
            .contains(&"/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"));
        assert!(candidates(Platform::MacOs)
            .iter()
            .flat_map(|f| &f.paths)
            .all(|p| p.starts_with("/System/Library/Fonts/") || p.starts_with("/Library/Fonts/")));
        assert!(candidates(Platform::Windows)
            .iter()
            .flat_map(|f| &f.paths)
            .all(|p| p.starts_with(r"C:\Windows\Fonts\")));
    }

    #[test]
    fn locate_takes_the_first_existing_path_once() {
        let c = candidates(Platform::Unix);
        // Debian with fonts-noto-cjk and fonts-dejavu-core only: DejaVu also serves as the
        // Arabic fallback, but is loaded once.
        let present = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
            "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        ];
        let found = locate(&c, |p| present.iter().any(|q| Path::new(q) == p));
        assert_eq!(
            found,
            vec![
                (
                    "fallback-dejavu",
                    PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
                ),
                (
                    "fallback-cjk",
                    PathBuf::from("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
                ),
            ]
        );
        assert!(locate(&c, |_| false).is_empty());
        // Symbola stands in when there is no Noto Emoji.
        let found = locate(&c, |p| p.ends_with("Symbola_hint.ttf"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "fallback-emoji");
    }

    /// With a CJK font installed (fonts-noto-cjk on Debian), a CJK name has every glyph
    /// after `install`, and not before.
    #[test]
    fn cjk_name_has_glyphs_after_install() {
        let has_cjk = locate(&candidates(Platform::current()), Path::is_file)
            .iter()
            .any(|(n, _)| *n == "fallback-cjk");
        if !has_cjk {
            eprintln!("no CJK font on this system: skipped");
            return;
        }
        let name = "王秀英 김민준";
        let font = egui::FontId::proportional(14.0);
        let glyphs = |ctx: &egui::Context| ctx.fonts_mut(|f| f.has_glyphs(&font, name));
        let ctx = egui::Context::default();
        let _ = ctx.run_ui(Default::default(), |_| {});
        assert!(!glyphs(&ctx), "egui's default fonts have no CJK");
        let installed = install(&ctx);
        assert!(installed.contains(&"fallback-cjk"), "{installed:?}");
        let _ = ctx.run_ui(Default::default(), |_| {});
        assert!(glyphs(&ctx));
        assert!(ctx.fonts_mut(|f| f.has_glyphs(&egui::FontId::monospace(12.0), name)));
        // Installing again changes nothing.
        install(&ctx);
        assert!(glyphs(&ctx));
    }
}
