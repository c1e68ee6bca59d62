//! Build script: provisions ONNX Runtime 1.31.1 once, without manual steps.
//!
//! `ort` is used with `load-dynamic`, so the ONNX Runtime shared library is needed at run
//! time, not at link time. This script fetches the official PyPI wheel
//! `onnxruntime==1.31.1` with the host's `python3 -m pip download`, checks its SHA-256
//! against `ort/onnxruntime-1.31.1.sha256`, and extracts
//! `onnxruntime/capi/libonnxruntime.so.1.31.1` into `<target>/onnxruntime-1.31.1/`. The
//! library's path reaches the crate as the compile-time variable `BLINDFACE_ORT_BUILD_DYLIB`
//! (see `src/vision/runtime.rs`).
//!
//! Nothing is downloaded when `ORT_DYLIB_PATH` is set or `BLINDFACE_NO_ORT_DOWNLOAD=1`.
//! A failure never fails the build: it prints a `cargo:warning` saying what to do.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const ORT_VERSION: &str = "1.31.1";
const PINS_FILE: &str = "ort/onnxruntime-1.31.1.sha256";
const LIB_IN_WHEEL: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
const LIB_NAME: &str = "libonnxruntime.so.1.31.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PINS_FILE}");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=BLINDFACE_NO_ORT_DOWNLOAD");

    let dest_dir = target_dir().join(format!("onnxruntime-{ORT_VERSION}"));
    let lib_path = dest_dir.join(LIB_NAME);
    // Always tell the crate where the build's copy lives (or would live); the runtime
    // checks that the file exists before using it.
    println!(
        "cargo:rustc-env=BLINDFACE_ORT_BUILD_DYLIB={}",
        lib_path.display()
    );

    if env::var_os("ORT_DYLIB_PATH").is_some_and(|v| !v.is_empty()) {
        return;
    }
    if env::var("BLINDFACE_NO_ORT_DOWNLOAD").is_ok_and(|v| v == "1") {
        return;
    }
    if lib_path.is_file() {
        // Re-provision if someone deletes it.
        println!("cargo:rerun-if-changed={}", lib_path.display());
        return;
    }

    match provision(&dest_dir, &lib_path) {
        Ok(()) => println!("cargo:rerun-if-changed={}", lib_path.display()),
        Err(e) => {
            for line in format!(
                "could not provision ONNX Runtime {ORT_VERSION}: {e}. Face detection will fail \
                 at run time until you set ORT_DYLIB_PATH to a libonnxruntime {ORT_VERSION} \
                 library (e.g. `python3 -m pip download onnxruntime=={ORT_VERSION} --no-deps \
                 --only-binary=:all: -d /tmp/ort` and unzip {LIB_IN_WHEEL} from the wheel), \
                 or fix the problem and `touch build.rs` to retry."
            )
            .lines()
            {
                println!("cargo:warning={line}");
            }
        }
    }
}

/// `<target>` (or `<target>/<triple>`): three levels above the profile's `build/` folder.
fn target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        if let Some(parent) = profile_dir.parent() {
            if !parent.as_os_str().is_empty() {
                return parent.to_path_buf();
            }
        }
    }
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("target"),
    }
}

fn provision(dest_dir: &Path, lib_path: &Path) -> Result<(), String> {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_os != "linux" || !(target_arch == "x86_64" || target_arch == "aarch64") {
        return Err(format!(
            "automatic download supports linux x86_64 and aarch64 only (target: {target_os} {target_arch})"
        ));
    }
    let pins = read_pins()?;

    fs::create_dir_all(dest_dir)
        .map_err(|e| format!("cannot create {}: {e}", dest_dir.display()))?;
    let wheel_dir = dest_dir.join("wheel.tmp");
    let _ = fs::remove_dir_all(&wheel_dir);
    fs::create_dir_all(&wheel_dir)
        .map_err(|e| format!("cannot create {}: {e}", wheel_dir.display()))?;

    let result = download_and_extract(&pins, &wheel_dir, lib_path, &target_arch);
    let _ = fs::remove_dir_all(&wheel_dir);
    result
}

fn download_and_extract(
    pins: &[(String, String)],
    wheel_dir: &Path,
    lib_path: &Path,
    target_arch: &str,
) -> Result<(), String> {
    let host = env::var("HOST").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    let spec = format!("onnxruntime=={ORT_VERSION}");
    let common = [
        "-m",
        "pip",
        "download",
        spec.as_str(),
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--retries",
        "2",
        "-d",
    ];

    // 1. The wheel for the host's own Python (when host = target).
    let mut first_error = None;
    if host == target {
        match run_pip(&common, wheel_dir, &[]) {
            Ok(()) => {}
            Err(e) => first_error = Some(e),
        }
    }
    // 2. No wheel for this Python (e.g. 3.10) or cross build: ask for a pinned one explicitly.
    if find_wheel(wheel_dir).is_none() {
        let platform = format!("manylinux_2_28_{target_arch}");
        let extra = [
            "--platform",
            platform.as_str(),
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--abi",
            "cp312",
        ];
        run_pip(&common, wheel_dir, &extra).map_err(|e| match &first_error {
            Some(first) => format!("{first}; then {e}"),
            None => e,
        })?;
    }
    let wheel = find_wheel(wheel_dir).ok_or_else(|| {
        format!(
            "pip reported success but left no wheel in {}",
            wheel_dir.display()
        )
    })?;
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let expected = pins
        .iter()
        .find(|(_, file)| *file == name)
        .map(|(hash, _)| hash.as_str())
        .ok_or_else(|| format!("wheel {name} has no pinned SHA-256 in {PINS_FILE}"))?;
    let actual = sha256_file(&wheel)?;
    if actual != expected {
        return Err(format!(
            "SHA-256 mismatch for {name}: expected {expected}, got {actual} (refusing to use it)"
        ));
    }

    // Extract the one library file with Python's zipfile, into a temp name, then rename.
    let tmp = lib_path.with_extension("tmp");
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  open(sys.argv[3], 'wb').write(z.read(sys.argv[2]))\n";
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(LIB_IN_WHEEL)
        .arg(&tmp)
        .output()
        .map_err(|e| format!("cannot run python3 to unzip the wheel: {e}"))?;
    if !status.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "extracting {LIB_IN_WHEEL} from {name} failed: {}",
            tail(&status.stderr)
        ));
    }
    fs::rename(&tmp, lib_path).map_err(|e| format!("cannot move the library into place: {e}"))?;
    Ok(())
}

fn run_pip(common: &[&str], wheel_dir: &Path, extra: &[&str]) -> Result<(), String> {
    let output = Command::new("python3")
        .args(common)
        .arg(wheel_dir)
        .args(extra)
        .env("PIP_NO_INPUT", "1")
        .output()
        .map_err(|e| format!("cannot run `python3 -m pip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`pip download` failed: {}", tail(&output.stderr)))
    }
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "whl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("onnxruntime-"))
        })
}

/// `(sha256, wheel file name)` pairs from the pins file.
fn read_pins() -> Result<Vec<(String, String)>, String> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let path = manifest.join(PINS_FILE);
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pins: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let hash = parts.next()?.to_ascii_lowercase();
            let file = parts.next()?.trim_start_matches('*').to_string();
            (hash.len() == 64).then_some((hash, file))
        })
        .collect();
    if pins.is_empty() {
        return Err(format!("{} lists no wheel hashes", path.display()));
    }
    Ok(pins)
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
