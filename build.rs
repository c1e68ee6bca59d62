//! Build script: provisions ONNX Runtime once per machine, without manual steps.
//!
//! `ort` is used with `load-dynamic`, so the ONNX Runtime shared library is needed at run
//! time, not at link time. `src/ort_platform.rs` (included below, shared with the crate)
//! says which official PyPI wheel and which library inside it the target needs; this
//! script makes sure a copy whose SHA-256 matches `ort/onnxruntime.sha256` sits next to the
//! binary (`<target>/<profile>/`, the file cargo-deb packages) and in the per-user cache
//! (`~/.cache/blindface/onnxruntime-VERSION-PLATFORM/` on Linux, the platform cache folder
//! elsewhere), so that `cargo clean` and `cargo install --path .` need no new download and
//! an installed binary still finds it. In order, the first that works:
//! 1. the copy next to the binary, if its hash matches;
//! 2. the user cache's copy, if its hash matches;
//! 3. `python -m pip download` of the exact wheel (explicit `--platform`,
//!    `--python-version`, `--abi`: the host's Python version never matters; `py` on
//!    Windows), wheel hash checked, library extracted with Python's zipfile, library hash
//!    checked.
//!
//! The copy's path reaches the crate as `BLINDFACE_ORT_BUILD_DYLIB`, the target triple as
//! `BLINDFACE_TARGET` (see `src/vision/runtime.rs`). Nothing is provisioned when
//! `ORT_DYLIB_PATH` is set or `BLINDFACE_NO_ORT_DOWNLOAD=1`. A failure never fails the
//! build: it prints a `cargo:warning` saying what to do.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "src/ort_platform.rs"]
#[allow(dead_code)]
mod ort_platform;

use ort_platform::{OrtPlatform, PINS_FILE};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ort_platform.rs");
    println!("cargo:rerun-if-changed={PINS_FILE}");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=BLINDFACE_NO_ORT_DOWNLOAD");

    let triple = env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=BLINDFACE_TARGET={triple}");
    let opted_out = env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty())
        || env::var("BLINDFACE_NO_ORT_DOWNLOAD").is_ok_and(|v| v == "1");

    let platform = match ort_platform::for_target(&triple) {
        Ok(platform) => platform,
        Err(e) => {
            if !opted_out {
                warn(&format!(
                    "{e}. Face detection needs ORT_DYLIB_PATH set to an ONNX Runtime 1.x \
                     shared library at run time."
                ));
            }
            return;
        }
    };
    let lib_path = profile_dir().join(platform.library_file());
    // Always tell the crate where the build's copy lives (or would live); the runtime
    // checks that the file exists before using it.
    println!(
        "cargo:rustc-env=BLINDFACE_ORT_BUILD_DYLIB={}",
        lib_path.display()
    );
    if opted_out {
        return;
    }

    match provision(&platform, &lib_path) {
        // Re-provision if someone deletes or replaces the copy.
        Ok(()) => println!("cargo:rerun-if-changed={}", lib_path.display()),
        Err(e) => warn(&format!(
            "could not provision ONNX Runtime {v}: {e}. Face detection will fail at run time \
             until you set ORT_DYLIB_PATH to {lib} from the PyPI wheel {wheel} (`python3 -m \
             pip download {args}` fetches it), or fix the problem and `touch build.rs` to retry.",
            v = platform.version,
            lib = platform.library_in_wheel(),
            wheel = platform.wheel_file(),
            args = platform.pip_download_args("DIR").join(" "),
        )),
    }
}

fn warn(message: &str) {
    for line in message.lines() {
        println!("cargo:warning={line}");
    }
}

/// `<target>/<profile>` (or `<target>/<triple>/<profile>`): where cargo puts the binary,
/// three levels above this script's OUT_DIR (`<profile>/build/<pkg>-<hash>/out`).
fn profile_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    match out_dir.ancestors().nth(3) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
            .join("target")
            .join(env::var("PROFILE").unwrap_or_else(|_| "release".into())),
    }
}

/// The user cache folder for this platform's library: `blindface::paths::cache_dir()`
/// joined with the same name, which is where the run-time lookup looks.
fn user_cache_dir(platform: &OrtPlatform) -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "blindface")
        .map(|d| d.cache_dir().join(platform.cache_dir_name()))
}

fn provision(platform: &OrtPlatform, lib_path: &Path) -> Result<(), String> {
    let pins = ort_platform::pins().map_err(|e| e.to_string())?;
    let want_wheel = pins
        .wheel(platform)
        .ok_or_else(|| format!("{PINS_FILE} has no pin for {}", platform.wheel_file()))?;
    let want_lib = pins
        .library(platform)
        .ok_or_else(|| format!("{PINS_FILE} has no pin for {}", platform.library_pin_name()))?;
    let cached = user_cache_dir(platform).map(|d| d.join(platform.library_file()));

    if !matches_pin(lib_path, want_lib) {
        match cached.as_deref().filter(|c| matches_pin(c, want_lib)) {
            Some(cache) => copy_atomically(cache, lib_path)?,
            None => download(platform, want_wheel, want_lib, lib_path)?,
        }
    }
    if let Some(cache) = cached.as_deref().filter(|c| !matches_pin(c, want_lib)) {
        if let Err(e) = copy_atomically(lib_path, cache) {
            warn(&format!(
                "ONNX Runtime is in {} but could not be cached for later builds and \
                 installed binaries: {e}",
                lib_path.display()
            ));
        }
    }
    Ok(())
}

fn matches_pin(path: &Path, sha256: &str) -> bool {
    path.is_file() && sha256_file(path).is_ok_and(|h| h == sha256)
}

/// Copies `from` to `to` through a temporary file in `to`'s folder, then renames.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    fs::copy(from, &tmp)
        .and_then(|_| fs::rename(&tmp, to))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot copy {} to {}: {e}", from.display(), to.display())
        })
}

fn download(
    platform: &OrtPlatform,
    want_wheel: &str,
    want_lib: &str,
    lib_path: &Path,
) -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let wheel_dir = out_dir.join("onnxruntime-wheel");
    let _ = fs::remove_dir_all(&wheel_dir);
    fs::create_dir_all(&wheel_dir)
        .map_err(|e| format!("cannot create {}: {e}", wheel_dir.display()))?;
    let result = download_into(platform, want_wheel, want_lib, &wheel_dir, lib_path);
    let _ = fs::remove_dir_all(&wheel_dir);
    result
}

fn download_into(
    platform: &OrtPlatform,
    want_wheel: &str,
    want_lib: &str,
    wheel_dir: &Path,
    lib_path: &Path,
) -> Result<(), String> {
    let python = find_python()?;
    let args = platform.pip_download_args(&wheel_dir.to_string_lossy());
    let output = Command::new(python)
        .arg("-m")
        .arg("pip")
        .args(&args)
        .env("PIP_NO_INPUT", "1")
        .output()
        .map_err(|e| format!("cannot run `{python} -m pip`: {e}"))?;
    if !output.status.success() {
        return Err(format!("`pip download` failed: {}", tail(&output.stderr)));
    }
    let name = platform.wheel_file();
    let wheel = wheel_dir.join(&name);
    if !wheel.is_file() {
        return Err(format!(
            "pip reported success but left no {name} in {}",
            wheel_dir.display()
        ));
    }
    let actual = sha256_file(&wheel)?;
    if actual != want_wheel {
        return Err(format!(
            "SHA-256 mismatch for {name}: expected {want_wheel}, got {actual} (refusing to use it)"
        ));
    }

    // Extract the one library file with Python's zipfile into a temporary name, check it,
    // then rename it into place.
    let dir = lib_path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = lib_path.with_extension(format!("tmp{}", std::process::id()));
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  open(sys.argv[3], 'wb').write(z.read(sys.argv[2]))\n";
    let in_wheel = platform.library_in_wheel();
    let status = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(&in_wheel)
        .arg(&tmp)
        .output()
        .map_err(|e| format!("cannot run {python} to unzip the wheel: {e}"))?;
    let checked = if !status.status.success() {
        Err(format!(
            "extracting {in_wheel} from {name} failed: {}",
            tail(&status.stderr)
        ))
    } else {
        match sha256_file(&tmp)? {
            h if h == want_lib => Ok(()),
            h => Err(format!(
                "SHA-256 mismatch for {in_wheel}: expected {want_lib}, got {h}"
            )),
        }
    };
    checked
        .and_then(|()| {
            fs::rename(&tmp, lib_path)
                .map_err(|e| format!("cannot move the library into place: {e}"))
        })
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// The first Python launcher on the host that has pip.
fn find_python() -> Result<&'static str, String> {
    let candidates = ort_platform::python_commands(cfg!(windows));
    candidates
        .iter()
        .copied()
        .find(|py| {
            Command::new(py)
                .args(["-m", "pip", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or_else(|| {
            format!(
                "no Python with pip found (tried `{} -m pip`)",
                candidates.join(" -m pip`, `")
            )
        })
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file =
        fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Last few lines of a process's stderr, on one line.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join(" | ")
}
