//! Finding and initialising the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: ONNX Runtime 1.31 is loaded at run time. Left to
//! itself, `ort` panics when the library is missing; here it is looked up first, in order:
//! 1. `ORT_DYLIB_PATH` (used as is: a wrong path there is an error, never silently bypassed);
//! 2. next to the executable (`libonnxruntime.so.1.31.1` or `libonnxruntime.so`);
//! 3. the copy `build.rs` extracted from the PyPI wheel into `target/onnxruntime-1.31.1/`.
//!
//! Only then is `ort::init_from` called, exactly once; every session shares the resulting
//! environment.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use super::error::VisionError;

/// Environment variable that names the ONNX Runtime library explicitly.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The ONNX Runtime version this crate is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// Library file names looked for next to the executable.
const LIB_NAMES: &[&str] = &[
    "libonnxruntime.so.1.31.1",
    "libonnxruntime.so",
    "libonnxruntime.1.31.1.dylib",
    "libonnxruntime.dylib",
    "onnxruntime.dll",
];

/// Where `build.rs` puts the library (set at compile time; the file may not exist).
const BUILD_DYLIB: Option<&str> = option_env!("BLINDFACE_ORT_BUILD_DYLIB");

const WHAT_TO_DO: &str = "set ORT_DYLIB_PATH to a libonnxruntime 1.31 shared library, e.g. \
     `python3 -m pip download onnxruntime==1.31.1 --no-deps --only-binary=:all: -d /tmp/ort` \
     then `python3 -m zipfile -e /tmp/ort/onnxruntime-1.31.1-*.whl /tmp/ort/x` and \
     ORT_DYLIB_PATH=/tmp/ort/x/onnxruntime/capi/libonnxruntime.so.1.31.1 (or put that file next \
     to the executable, or rebuild with network access to PyPI so build.rs can fetch it)";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Finds the ONNX Runtime library without loading it (see the module doc for the order).
pub fn locate_onnxruntime() -> Result<PathBuf, VisionError> {
    if let Some(value) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok(path);
        }
        return Err(VisionError::RuntimeNotFound {
            searched: format!("{ORT_DYLIB_ENV}={} does not exist", path.display()),
            hint: WHAT_TO_DO.to_string(),
        });
    }

    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        for name in LIB_NAMES {
            let path = dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
        searched.push(format!("next to the executable in {}", dir.display()));
    }
    if let Some(build) = BUILD_DYLIB {
        let path = PathBuf::from(build);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("the build's copy {}", path.display()));
    }
    Err(VisionError::RuntimeNotFound {
        searched: format!("{ORT_DYLIB_ENV} unset; looked {}", searched.join(", ")),
        hint: WHAT_TO_DO.to_string(),
    })
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// A failed attempt is not cached: fixing the cause (e.g. setting `ORT_DYLIB_PATH`) and
/// calling again works.
pub fn environment() -> Result<&'static Environment, VisionError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = locate_onnxruntime()?;
    let load_error = |reason: String| VisionError::RuntimeLoad {
        path: path.clone(),
        reason,
        hint: format!("it must be ONNX Runtime {ORT_VERSION} (or a later 1.x); {WHAT_TO_DO}"),
    };
    let builder = ort::init_from(&path).map_err(|e| load_error(e.to_string()))?;
    let env = builder
        .with_name("blindface")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}
