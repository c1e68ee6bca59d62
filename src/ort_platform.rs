//! Which ONNX Runtime build a target needs: the official PyPI wheel, the `pip download`
//! arguments that fetch exactly that wheel, the library inside it, and its pins in
//! `ort/onnxruntime.sha256`.
//!
//! Shared by `build.rs` (which includes this file with `#[path]`) and the crate
//! (`blindface::ort_platform`, used by the run-time lookup and `blindface doctor`), so the
//! per-target choice is made in one place and unit-tested by `cargo test`. Std only: it
//! must compile as part of the build script.
//!
//! Every wheel is asked for with an explicit `--platform`, `--python-version` and `--abi`,
//! so the host's Python version never matters: the library inside is the same in every
//! `cp3xx` wheel of one platform. `scripts/check-ort-pins.sh` downloads each pinned wheel
//! and checks both hashes; [`tests`] check that every supported target has its pins.

use std::fmt;

/// The ONNX Runtime version blindface is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// Intel Macs: the last ONNX Runtime with an official macOS x86_64 wheel on PyPI.
pub const ORT_VERSION_MACOS_X86_64: &str = "1.23.2";

/// The pins file, relative to the package root.
pub const PINS_FILE: &str = "ort/onnxruntime.sha256";

/// The pins file's text, compiled in (into the build script and the crate alike).
pub const PINS_TEXT: &str = include_str!("../ort/onnxruntime.sha256");

/// The wheel's Python (`--python-version`) and ABI tag (`--implementation cp --abi`).
/// Any CPython tag works; one fixed tag makes the choice reproducible.
pub const WHEEL_PYTHON_VERSION: &str = "3.12";
/// See [`WHEEL_PYTHON_VERSION`].
pub const WHEEL_ABI: &str = "cp312";

/// Operating-system family of a supported target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrtOs {
    Linux,
    MacOs,
    Windows,
}

/// The ONNX Runtime build for one target triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtPlatform {
    /// ONNX Runtime version of the wheel.
    pub version: &'static str,
    /// Wheel platform tag, also pip's `--platform`.
    pub wheel_platform: &'static str,
    /// Which naming scheme the library follows.
    pub os: OrtOs,
}

/// A target triple with no official ONNX Runtime wheel to take the library from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedTarget {
    pub triple: String,
    pub reason: &'static str,
}

impl fmt::Display for UnsupportedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no ONNX Runtime wheel for target {}: {}",
            self.triple, self.reason
        )
    }
}

impl std::error::Error for UnsupportedTarget {}

/// The ONNX Runtime build for `triple` (e.g. `x86_64-unknown-linux-gnu`).
pub fn for_target(triple: &str) -> Result<OrtPlatform, UnsupportedTarget> {
    let unsupported = |reason| UnsupportedTarget {
        triple: triple.to_string(),
        reason,
    };
    let arch = triple.split('-').next().unwrap_or_default();
    let platform = |version, wheel_platform, os| OrtPlatform {
        version,
        wheel_platform,
        os,
    };
    if triple.contains("-linux-") {
        let glibc = triple
            .rsplit('-')
            .next()
            .is_some_and(|env| env.starts_with("gnu"));
        if !glibc {
            return Err(unsupported(
                "the PyPI wheels are manylinux (glibc) builds; set ORT_DYLIB_PATH",
            ));
        }
        return match arch {
            "x86_64" => Ok(platform(ORT_VERSION, "manylinux_2_28_x86_64", OrtOs::Linux)),
            "aarch64" => Ok(platform(
                ORT_VERSION,
                "manylinux_2_28_aarch64",
                OrtOs::Linux,
            )),
            _ => Err(unsupported(
                "Linux wheels exist for x86_64 and aarch64 only",
            )),
        };
    }
    if triple.ends_with("-apple-darwin") {
        return match arch {
            "aarch64" => Ok(platform(ORT_VERSION, "macosx_14_0_arm64", OrtOs::MacOs)),
            "x86_64" => Ok(platform(
                ORT_VERSION_MACOS_X86_64,
                "macosx_13_0_x86_64",
                OrtOs::MacOs,
            )),
            _ => Err(unsupported("macOS wheels exist for arm64 and x86_64 only")),
        };
    }
    if triple.contains("-windows-") {
        return match arch {
            "x86_64" => Ok(platform(ORT_VERSION, "win_amd64", OrtOs::Windows)),
            _ => Err(unsupported("blindface provisions Windows x86_64 only")),
        };
    }
    Err(unsupported(
        "blindface provisions Linux (glibc), macOS and Windows only",
    ))
}

impl OrtPlatform {
    /// File name of the wheel on PyPI.
    pub fn wheel_file(&self) -> String {
        format!(
            "onnxruntime-{}-{WHEEL_ABI}-{WHEEL_ABI}-{}.whl",
            self.version, self.wheel_platform
        )
    }

    /// File name of the shared library (inside the wheel and wherever it is installed).
    pub fn library_file(&self) -> String {
        match self.os {
            OrtOs::Linux => format!("libonnxruntime.so.{}", self.version),
            OrtOs::MacOs => format!("libonnxruntime.{}.dylib", self.version),
            OrtOs::Windows => "onnxruntime.dll".to_string(),
        }
    }

    /// Path of the library inside the wheel (a zip archive).
    pub fn library_in_wheel(&self) -> String {
        format!("onnxruntime/capi/{}", self.library_file())
    }

    /// The file name the pins file uses for the library: `WHEEL/PATH-IN-WHEEL`.
    pub fn library_pin_name(&self) -> String {
        format!("{}/{}", self.wheel_file(), self.library_in_wheel())
    }

    /// Folder name in the per-user cache (version and platform, so builds never mix).
    pub fn cache_dir_name(&self) -> String {
        format!("onnxruntime-{}-{}", self.version, self.wheel_platform)
    }

    /// Arguments after `python -m pip` that download exactly [`Self::wheel_file`] into `dest`.
    pub fn pip_download_args(&self, dest: &str) -> Vec<String> {
        let spec = format!("onnxruntime=={}", self.version);
        [
            "download",
            spec.as_str(),
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            self.wheel_platform,
            "--python-version",
            WHEEL_PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            WHEEL_ABI,
            "--disable-pip-version-check",
            "--retries",
            "2",
            "-d",
            dest,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Python launchers to try, in order, on the build host (`py` is the Windows launcher).
pub fn python_commands(host_is_windows: bool) -> &'static [&'static str] {
    if host_is_windows {
        &["py", "python"]
    } else {
        &["python3", "python"]
    }
}

/// One line of the pins file: a SHA-256 and the file it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Lower-case hex.
    pub sha256: String,
    /// A wheel file name, or `WHEEL/PATH-IN-WHEEL` for the library inside a wheel.
    pub file: String,
}

/// A line of the pins file that is neither blank, a comment nor `SHA256  FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinsError {
    pub line: usize,
    pub text: String,
}

impl fmt::Display for PinsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PINS_FILE} line {}: expected `SHA256  FILE`, got `{}`",
            self.line, self.text
        )
    }
}

impl std::error::Error for PinsError {}

/// The parsed pins file (`sha256sum` format, `#` comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins(pub Vec<Pin>);

/// The compiled-in pins ([`PINS_TEXT`]).
pub fn pins() -> Result<Pins, PinsError> {
    Pins::parse(PINS_TEXT)
}

impl Pins {
    pub fn parse(text: &str) -> Result<Pins, PinsError> {
        let mut pins = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (hash, file) = match (parts.next(), parts.next(), parts.next()) {
                (Some(hash), Some(file), None)
                    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    (hash, file)
                }
                _ => {
                    return Err(PinsError {
                        line: i + 1,
                        text: line.to_string(),
                    })
                }
            };
            pins.push(Pin {
                sha256: hash.to_ascii_lowercase(),
                file: file.trim_start_matches('*').to_string(),
            });
        }
        Ok(Pins(pins))
    }

    /// The pinned SHA-256 of `file`.
    pub fn sha256_of(&self, file: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|p| p.file == file)
            .map(|p| p.sha256.as_str())
    }

    /// The pinned SHA-256 of `platform`'s wheel.
    pub fn wheel(&self, platform: &OrtPlatform) -> Option<&str> {
        self.sha256_of(&platform.wheel_file())
    }

    /// The pinned SHA-256 of the library inside `platform`'s wheel.
    pub fn library(&self, platform: &OrtPlatform) -> Option<&str> {
        self.sha256_of(&platform.library_pin_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPORTED: &[&str] = &[
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "aarch64-apple-darwin",
        "x86_64-apple-darwin",
        "x86_64-pc-windows-msvc",
    ];

    fn pins() -> Pins {
        super::pins().expect("pins parse")
    }

    #[test]
    fn wheel_and_library_per_target_triple() {
        let cases = [
            (
                "x86_64-unknown-linux-gnu",
                "onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
                "onnxruntime/capi/libonnxruntime.so.1.31.1",
            ),
            (
                "aarch64-unknown-linux-gnu",
                "onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_aarch64.whl",
                "onnxruntime/capi/libonnxruntime.so.1.31.1",
            ),
            (
                "aarch64-apple-darwin",
                "onnxruntime-1.31.1-cp312-cp312-macosx_14_0_arm64.whl",
                "onnxruntime/capi/libonnxruntime.1.31.1.dylib",
            ),
            (
                "x86_64-apple-darwin",
                "onnxruntime-1.23.2-cp312-cp312-macosx_13_0_x86_64.whl",
                "onnxruntime/capi/libonnxruntime.1.23.2.dylib",
            ),
            (
                "x86_64-pc-windows-msvc",
                "onnxruntime-1.31.1-cp312-cp312-win_amd64.whl",
                "onnxruntime/capi/onnxruntime.dll",
            ),
            (
                "x86_64-pc-windows-gnu",
                "onnxruntime-1.31.1-cp312-cp312-win_amd64.whl",
                "onnxruntime/capi/onnxruntime.dll",
            ),
        ];
        for (triple, wheel, lib) in cases {
            let p = for_target(triple).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.wheel_file(), wheel, "{triple}");
            assert_eq!(p.library_in_wheel(), lib, "{triple}");
            assert_eq!(p.library_pin_name(), format!("{wheel}/{lib}"), "{triple}");
        }
    }

    #[test]
    fn unsupported_targets_say_why() {
        for (triple, needle) in [
            ("x86_64-unknown-linux-musl", "glibc"),
            ("armv7-unknown-linux-gnueabihf", "x86_64 and aarch64"),
            ("aarch64-pc-windows-msvc", "Windows x86_64"),
            ("x86_64-unknown-freebsd", "Linux (glibc), macOS and Windows"),
            ("wasm32-unknown-unknown", "Linux (glibc), macOS and Windows"),
        ] {
            let err = for_target(triple).expect_err(triple);
            assert_eq!(err.triple, triple);
            assert!(err.to_string().contains(needle), "{triple}: {err}");
        }
    }

    #[test]
    fn pip_arguments_pin_platform_python_and_abi() {
        let p = for_target("aarch64-apple-darwin").unwrap();
        let args = p.pip_download_args("/tmp/w");
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].as_str()
        };
        assert_eq!(args[0], "download");
        assert_eq!(args[1], "onnxruntime==1.31.1");
        assert_eq!(after("--platform"), "macosx_14_0_arm64");
        assert_eq!(after("--python-version"), "3.12");
        assert_eq!(after("--implementation"), "cp");
        assert_eq!(after("--abi"), "cp312");
        assert_eq!(after("-d"), "/tmp/w");
        assert!(args.iter().any(|a| a == "--only-binary=:all:"));
        assert!(args.iter().any(|a| a == "--no-deps"));
        // The wheel name pip will save is spelled from the same fields.
        assert!(p
            .wheel_file()
            .contains(&format!("-{}-{}-", after("--abi"), after("--abi"))));
        assert!(p
            .wheel_file()
            .ends_with(&format!("-{}.whl", after("--platform"))));
    }

    #[test]
    fn python_launcher_per_host() {
        assert_eq!(python_commands(true), ["py", "python"]);
        assert_eq!(python_commands(false), ["python3", "python"]);
    }

    #[test]
    fn cache_folder_names_differ_per_platform() {
        let names: Vec<String> = SUPPORTED
            .iter()
            .map(|t| for_target(t).unwrap().cache_dir_name())
            .collect();
        assert_eq!(names[0], "onnxruntime-1.31.1-manylinux_2_28_x86_64");
        assert_eq!(names[3], "onnxruntime-1.23.2-macosx_13_0_x86_64");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn every_supported_target_has_wheel_and_library_pins() {
        let pins = pins();
        for triple in SUPPORTED {
            let p = for_target(triple).unwrap();
            let wheel = pins.wheel(&p);
            let lib = pins.library(&p);
            assert!(wheel.is_some(), "{triple}: no pin for {}", p.wheel_file());
            assert!(
                lib.is_some(),
                "{triple}: no pin for {}",
                p.library_pin_name()
            );
            assert_ne!(wheel, lib);
        }
        // Nothing pinned that no target uses.
        let used: Vec<String> = SUPPORTED
            .iter()
            .flat_map(|t| {
                let p = for_target(t).unwrap();
                [p.wheel_file(), p.library_pin_name()]
            })
            .collect();
        for pin in &pins.0 {
            assert!(used.contains(&pin.file), "unused pin {}", pin.file);
        }
    }

    #[test]
    fn linux_library_pin_is_the_measured_one() {
        let p = for_target("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(
            pins().library(&p),
            Some("fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3")
        );
    }

    #[test]
    fn pins_parse_sha256sum_format_and_reject_junk() {
        let text = "# comment\n\nABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789  *a.whl\n";
        let pins = Pins::parse(text).unwrap();
        assert_eq!(
            pins.sha256_of("a.whl"),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(pins.sha256_of("b.whl"), None);
        let err = Pins::parse("# ok\nnot-a-hash  a.whl\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(Pins::parse(&format!("{}  a b\n", "0".repeat(64))).is_err());
        assert!(Pins::parse(&format!("{}\n", "0".repeat(64))).is_err());
    }
}
