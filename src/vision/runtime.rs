//! Finding and initialising the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: ONNX Runtime is loaded at run time. Left to itself,
//! `ort` panics when the library is missing; here it is looked up first, in order (this
//! target's file name comes from [`crate::ort_platform`], e.g. `libonnxruntime.so.1.31.1`,
//! `libonnxruntime.1.31.1.dylib`, `onnxruntime.dll`; the unversioned name is accepted too):
//! 1. `ORT_DYLIB_PATH` (used as is: a wrong path there is an error, never silently bypassed);
//! 2. next to the executable: where `cargo build` leaves the build's copy
//!    (`target/<profile>/`), and where a hand-made install puts it;
//! 3. the installed layout `PREFIX/lib/blindface/` for a binary in `PREFIX/bin/` (the Debian
//!    package: `/usr/bin/blindface` with `/usr/lib/blindface/`, see
//!    [`crate::paths::installed_lib_dir`]);
//! 4. the per-user cache `<cache>/onnxruntime-VERSION-PLATFORM/` that `build.rs` fills
//!    ([`crate::paths::cache_dir`]), which keeps `cargo install --path .` binaries and
//!    builds after `cargo clean` working;
//! 5. the build's copy at the path compiled in by `build.rs` (for test and bench binaries,
//!    which live in `target/<profile>/deps/`).
//!
//! Only then is `ort::init_from` called, exactly once; every session shares the resulting
//! environment. [`candidates`] is the pure part of the lookup (tested with temporary
//! folders); `blindface doctor` prints it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use parking_lot::Mutex;

use super::error::VisionError;
use crate::ort_platform::{self, OrtPlatform, UnsupportedTarget};

/// Environment variable that names the ONNX Runtime library explicitly.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The ONNX Runtime version blindface is built and tested against (Intel Macs get
/// [`ort_platform::ORT_VERSION_MACOS_X86_64`]; see [`expected_version`]).
pub const ORT_VERSION: &str = ort_platform::ORT_VERSION;

/// The target triple this crate was compiled for (set by `build.rs`).
pub const TARGET: &str = env!("BLINDFACE_TARGET");

/// Where `build.rs` puts the library (set at compile time; the file may not exist).
const BUILD_DYLIB: Option<&str> = option_env!("BLINDFACE_ORT_BUILD_DYLIB");

/// The unversioned library name on this operating system.
const GENERIC_NAME: &str = if cfg!(windows) {
    "onnxruntime.dll"
} else if cfg!(target_os = "macos") {
    "libonnxruntime.dylib"
} else {
    "libonnxruntime.so"
};

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// This target's ONNX Runtime build (wheel, library name), if it has one.
pub fn platform() -> Result<OrtPlatform, UnsupportedTarget> {
    ort_platform::for_target(TARGET)
}

/// The ONNX Runtime version this target is provisioned with.
pub fn expected_version() -> &'static str {
    platform().map_or(ORT_VERSION, |p| p.version)
}

/// Where a candidate library comes from, in search order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeSource {
    EnvOverride,
    NextToExecutable,
    InstalledLayout,
    UserCache,
    BuildCopy,
}

impl fmt::Display for RuntimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeSource::EnvOverride => ORT_DYLIB_ENV,
            RuntimeSource::NextToExecutable => "next to the executable",
            RuntimeSource::InstalledLayout => "installed layout",
            RuntimeSource::UserCache => "user cache",
            RuntimeSource::BuildCopy => "build's copy",
        })
    }
}

/// One place the library may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub source: RuntimeSource,
    pub path: PathBuf,
}

/// The inputs of the lookup; [`SearchRoots::from_process`] reads them from this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRoots {
    /// `ORT_DYLIB_PATH`, if set and not empty.
    pub env_override: Option<PathBuf>,
    /// The executable's folder.
    pub exe_dir: Option<PathBuf>,
    /// The per-user cache root ([`crate::paths::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// The path compiled in by `build.rs`.
    pub build_copy: Option<PathBuf>,
}

impl SearchRoots {
    pub fn from_process() -> SearchRoots {
        SearchRoots {
            env_override: std::env::var_os(ORT_DYLIB_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            cache_dir: crate::paths::cache_dir(),
            build_copy: BUILD_DYLIB.filter(|p| !p.is_empty()).map(PathBuf::from),
        }
    }
}

/// Every place looked at, in order (see the module doc). With an override, only it.
pub fn candidates(roots: &SearchRoots, platform: Option<&OrtPlatform>) -> Vec<Candidate> {
    let candidate = |source, path| Candidate { source, path };
    if let Some(path) = &roots.env_override {
        return vec![candidate(RuntimeSource::EnvOverride, path.clone())];
    }
    let mut names: Vec<String> = platform
        .map(OrtPlatform::library_file)
        .into_iter()
        .collect();
    if !names.iter().any(|n| n == GENERIC_NAME) {
        names.push(GENERIC_NAME.to_string());
    }
    let mut out = Vec::new();
    if let Some(dir) = &roots.exe_dir {
        let dirs = [
            Some((RuntimeSource::NextToExecutable, dir.clone())),
            crate::paths::installed_lib_dir(dir).map(|d| (RuntimeSource::InstalledLayout, d)),
        ];
        for (source, dir) in dirs.into_iter().flatten() {
            out.extend(names.iter().map(|n| candidate(source, dir.join(n))));
        }
    }
    if let (Some(cache), Some(p)) = (&roots.cache_dir, platform) {
        let path = cache.join(p.cache_dir_name()).join(p.library_file());
        out.push(candidate(RuntimeSource::UserCache, path));
    }
    if let Some(path) = &roots.build_copy {
        out.push(candidate(RuntimeSource::BuildCopy, path.clone()));
    }
    out
}

/// The first candidate that is a file; an error naming every place looked at otherwise.
pub fn locate_in(
    roots: &SearchRoots,
    platform: Option<&OrtPlatform>,
) -> Result<Candidate, VisionError> {
    let all = candidates(roots, platform);
    if let Some(found) = all.iter().find(|c| c.path.is_file()) {
        return Ok(found.clone());
    }
    let searched = match &roots.env_override {
        Some(path) => format!("{ORT_DYLIB_ENV}={} does not exist", path.display()),
        None => format!(
            "{ORT_DYLIB_ENV} unset; looked for {}",
            all.iter()
                .map(|c| format!("{} ({})", c.path.display(), c.source))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(VisionError::RuntimeNotFound {
        searched,
        hint: what_to_do(),
    })
}

/// Finds the ONNX Runtime library without loading it (see the module doc for the order).
pub fn locate_onnxruntime() -> Result<PathBuf, VisionError> {
    let platform = platform().ok();
    locate_in(&SearchRoots::from_process(), platform.as_ref()).map(|c| c.path)
}

/// What the user can do when the library is missing, for this target.
fn what_to_do() -> String {
    match platform() {
        Ok(p) => format!(
            "set {ORT_DYLIB_ENV} to ONNX Runtime {v}'s {lib}: `{py} -m pip {args}` fetches \
             the official wheel {wheel}, `{py} -m zipfile -e DIR/{wheel} DIR/x` unpacks it \
             to DIR/x/{in_wheel}; or put that file next to the executable, or rebuild with \
             access to PyPI so build.rs fetches it (`blindface doctor` shows what was searched)",
            v = p.version,
            lib = p.library_file(),
            args = p.pip_download_args("DIR").join(" "),
            wheel = p.wheel_file(),
            in_wheel = p.library_in_wheel(),
            py = ort_platform::python_commands(cfg!(windows))[0],
        ),
        Err(e) => format!("{e}; set {ORT_DYLIB_ENV} to an ONNX Runtime 1.x shared library"),
    }
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// A failed attempt is not cached: fixing the cause (e.g. setting `ORT_DYLIB_PATH`) and
/// calling again works.
pub fn environment() -> Result<&'static Environment, VisionError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    // Held while loading (a failed load is not cached, so std's `OnceLock` alone, whose
    // fallible `get_or_try_init` is unstable, does not fit).
    let _guard = INIT_LOCK.lock();
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = locate_onnxruntime()?;
    let load_error = |reason: String| VisionError::RuntimeLoad {
        path: path.clone(),
        reason,
        hint: format!(
            "it must be ONNX Runtime {} (or a later 1.x); {}",
            expected_version(),
            what_to_do()
        ),
    };
    let builder = ort::init_from(&path).map_err(|e| load_error(e.to_string()))?;
    let env = builder
        .with_name("blindface")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_x86_64() -> OrtPlatform {
        ort_platform::for_target("x86_64-unknown-linux-gnu").unwrap()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not really a library").unwrap();
    }

    /// A temporary tree with an executable folder, a cache and a build copy, none of which
    /// holds a library yet.
    struct Tree {
        _tmp: tempfile::TempDir,
        roots: SearchRoots,
        next_to_exe: PathBuf,
        installed: PathBuf,
        cache: PathBuf,
        build: PathBuf,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let p = linux_x86_64();
        let roots = SearchRoots {
            env_override: None,
            exe_dir: Some(base.join("prefix/bin")),
            cache_dir: Some(base.join("cache")),
            build_copy: Some(base.join("target/release/libonnxruntime.so.1.31.1")),
        };
        Tree {
            next_to_exe: base.join("prefix/bin/libonnxruntime.so.1.31.1"),
            installed: base.join("prefix/lib/blindface/libonnxruntime.so.1.31.1"),
            cache: base
                .join("cache")
                .join(p.cache_dir_name())
                .join("libonnxruntime.so.1.31.1"),
            build: roots.build_copy.clone().unwrap(),
            roots,
            _tmp: tmp,
        }
    }

    fn found(t: &Tree) -> Option<(RuntimeSource, PathBuf)> {
        locate_in(&t.roots, Some(&linux_x86_64()))
            .ok()
            .map(|c| (c.source, c.path))
    }

    #[test]
    fn candidates_in_documented_order() {
        let t = tree();
        let all = candidates(&t.roots, Some(&linux_x86_64()));
        let sources: Vec<RuntimeSource> = all.iter().map(|c| c.source).collect();
        let first = |s| sources.iter().position(|x| *x == s).unwrap();
        assert!(first(RuntimeSource::NextToExecutable) < first(RuntimeSource::InstalledLayout));
        assert!(first(RuntimeSource::InstalledLayout) < first(RuntimeSource::UserCache));
        assert!(first(RuntimeSource::UserCache) < first(RuntimeSource::BuildCopy));
        assert_eq!(all[0].path, t.next_to_exe);
        assert_eq!(all.last().unwrap().path, t.build);
        assert!(all.iter().any(|c| c.path == t.cache));
        assert!(all.iter().any(|c| c.path == t.installed));
    }

    #[test]
    fn lookup_order_with_temporary_folders() {
        let t = tree();
        assert_eq!(found(&t), None);
        touch(&t.build);
        assert_eq!(found(&t), Some((RuntimeSource::BuildCopy, t.build.clone())));
        touch(&t.cache);
        assert_eq!(found(&t), Some((RuntimeSource::UserCache, t.cache.clone())));
        touch(&t.installed);
        assert_eq!(
            found(&t),
            Some((RuntimeSource::InstalledLayout, t.installed.clone()))
        );
        touch(&t.next_to_exe);
        assert_eq!(
            found(&t),
            Some((RuntimeSource::NextToExecutable, t.next_to_exe.clone()))
        );
    }

    #[test]
    fn env_override_wins_and_is_never_bypassed() {
        let mut t = tree();
        touch(&t.next_to_exe);
        touch(&t.cache);
        let mine = t.next_to_exe.with_file_name("mine.so");
        t.roots.env_override = Some(mine.clone());
        // Set but missing: an error, although other copies exist.
        let err = locate_in(&t.roots, Some(&linux_x86_64())).unwrap_err();
        assert!(
            err.to_string().contains("does not exist"),
            "unexpected error: {err}"
        );
        touch(&mine);
        assert_eq!(found(&t), Some((RuntimeSource::EnvOverride, mine)));
    }

    #[test]
    fn unversioned_name_next_to_the_executable_counts() {
        let t = tree();
        let generic = t.next_to_exe.with_file_name(GENERIC_NAME);
        touch(&generic);
        touch(&t.cache);
        assert_eq!(found(&t), Some((RuntimeSource::NextToExecutable, generic)));
    }

    #[test]
    fn not_found_names_every_place_looked_at() {
        let t = tree();
        let err = locate_in(&t.roots, Some(&linux_x86_64()))
            .unwrap_err()
            .to_string();
        for path in [&t.next_to_exe, &t.cache, &t.build] {
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        assert!(err.contains("user cache"), "{err}");
        assert!(err.contains("blindface doctor"), "{err}");
    }

    #[test]
    fn without_a_known_platform_only_generic_names_and_no_cache() {
        let t = tree();
        let all = candidates(&t.roots, None);
        assert!(all.iter().all(|c| c.source != RuntimeSource::UserCache));
        assert!(all
            .iter()
            .filter(|c| c.source == RuntimeSource::NextToExecutable)
            .all(|c| c.path.file_name().unwrap() == GENERIC_NAME));
    }

    #[test]
    fn compiled_for_a_target_with_a_platform() {
        // The test host (Linux x86_64/aarch64 here) is a supported target.
        let p = platform().unwrap();
        assert_eq!(p.version, expected_version());
        assert!(BUILD_DYLIB.is_some_and(|b| b.ends_with(&p.library_file())));
    }
}
