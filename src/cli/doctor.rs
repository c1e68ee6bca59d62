//! `blindface doctor`: where ONNX Runtime, the models, the key and the data directory were
//! found, every place the runtime library was looked for, and what is missing. Exits
//! non-zero when face detection cannot work (no loadable ONNX Runtime, a missing or corrupt
//! model); a key or data directory that does not exist yet is reported, not an error (the
//! first `keygen`, `enrol` or app start creates them).

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use blindface::ort_platform;
use blindface::vision::models::{self, ModelFile, SFACE, YUNET};
use blindface::vision::runtime::{self, SearchRoots};
use blindface::vision::VisionError;

use super::output::{emit, Globals};

#[derive(Serialize)]
struct Searched {
    source: String,
    path: String,
    exists: bool,
}

#[derive(Serialize)]
struct OrtReport {
    expected_version: String,
    wheel: Option<String>,
    found: Option<String>,
    source: Option<String>,
    sha256: Option<String>,
    matches_pin: Option<bool>,
    loads: bool,
    error: Option<String>,
    searched: Vec<Searched>,
}

#[derive(Serialize)]
struct ModelReport {
    file: &'static str,
    ok: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct ModelsReport {
    dir: String,
    source: String,
    files: Vec<ModelReport>,
    searched: Vec<Searched>,
}

#[derive(Serialize)]
struct PathReport {
    path: String,
    exists: bool,
}

#[derive(Serialize)]
struct DoctorOutput {
    version: &'static str,
    target: &'static str,
    onnxruntime: OrtReport,
    models: ModelsReport,
    key: PathReport,
    data_dir: PathReport,
    /// Everything not found, essential or not.
    missing: Vec<String>,
    /// Whether face detection can work (runtime loads, both models verified).
    ok: bool,
}

pub fn doctor(globals: &Globals) -> Result<()> {
    let onnxruntime = ort_report();
    let models = models_report();
    let key = path_report(&globals.key);
    let data = globals
        .data
        .clone()
        .unwrap_or_else(blindface::paths::data_dir);
    let data_dir = path_report(&data);

    let mut missing = Vec::new();
    if onnxruntime.found.is_none() {
        missing.push(format!("ONNX Runtime {}", onnxruntime.expected_version));
    }
    for f in models.files.iter().filter(|f| !f.ok) {
        missing.push(format!("model {}", f.file));
    }
    if !key.exists {
        missing.push(format!("key {} (`blindface keygen` creates it)", key.path));
    }
    if !data_dir.exists {
        missing.push(format!(
            "data directory {} (created on first use)",
            data_dir.path
        ));
    }
    let ok = onnxruntime.loads && models.files.iter().all(|f| f.ok);
    let out = DoctorOutput {
        version: env!("CARGO_PKG_VERSION"),
        target: runtime::TARGET,
        onnxruntime,
        models,
        key,
        data_dir,
        missing,
        ok,
    };
    emit(globals, &out, || table(&out));
    if !out.ok {
        bail!("face detection cannot work here: see above");
    }
    Ok(())
}

fn ort_report() -> OrtReport {
    let platform = runtime::platform();
    let roots = SearchRoots::from_process();
    let searched = runtime::candidates(&roots, platform.as_ref().ok())
        .into_iter()
        .map(|c| Searched {
            source: c.source.to_string(),
            exists: c.path.is_file(),
            path: c.path.display().to_string(),
        })
        .collect();
    let mut report = OrtReport {
        expected_version: runtime::expected_version().to_string(),
        wheel: platform.as_ref().ok().map(|p| p.wheel_file()),
        found: None,
        source: None,
        sha256: None,
        matches_pin: None,
        loads: false,
        error: None,
        searched,
    };
    let found = match runtime::locate_in(&roots, platform.as_ref().ok()) {
        Ok(found) => found,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.found = Some(found.path.display().to_string());
    report.source = Some(found.source.to_string());
    report.sha256 = sha256_file(&found.path).ok();
    let pinned = platform.as_ref().ok().and_then(|p| {
        let pins = ort_platform::pins().ok()?;
        pins.library(p).map(str::to_string)
    });
    report.matches_pin = match (&report.sha256, pinned) {
        (Some(actual), Some(pin)) => Some(*actual == pin),
        _ => None,
    };
    match runtime::environment() {
        Ok(_) => report.loads = true,
        Err(e) => report.error = Some(e.to_string()),
    }
    report
}

fn models_report() -> ModelsReport {
    let dir = models::default_models_dir();
    let env_set = std::env::var_os(models::MODELS_ENV).is_some_and(|v| !v.is_empty());
    let candidates = models::candidate_dirs();
    let source = if env_set {
        models::MODELS_ENV.to_string()
    } else {
        candidates
            .iter()
            .find(|(_, d)| *d == dir)
            .map_or("source tree", |(s, _)| *s)
            .to_string()
    };
    let check = |model: &ModelFile| {
        let result = models::load_verified(&dir, model);
        ModelReport {
            file: model.file_name,
            ok: result.is_ok(),
            error: result.err().map(|e: VisionError| e.to_string()),
        }
    };
    ModelsReport {
        dir: dir.display().to_string(),
        source,
        files: vec![check(&YUNET), check(&SFACE)],
        searched: candidates
            .iter()
            .map(|(source, d)| Searched {
                source: source.to_string(),
                path: d.display().to_string(),
                exists: models::holds_models(d),
            })
            .collect(),
    }
}

fn path_report(path: &Path) -> PathReport {
    PathReport {
        path: path.display().to_string(),
        exists: path.exists(),
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One line per place looked at: found or not, path, where it comes from.
fn searched_lines(searched: &[Searched]) -> String {
    let mut s = String::new();
    for (i, c) in searched.iter().enumerate() {
        let label = if i == 0 { "searched" } else { "" };
        s += &format!(
            "  {label:<17} {:<3} {} ({})\n",
            yes_no(c.exists),
            c.path,
            c.source
        );
    }
    s
}

fn table(out: &DoctorOutput) -> String {
    let mut s = format!("blindface {} ({})\n", out.version, out.target);
    let ort = &out.onnxruntime;
    match (&ort.found, &ort.source) {
        (Some(path), Some(source)) => {
            s += &format!(
                "ONNX Runtime {:<8} {path} ({source})\n",
                ort.expected_version
            )
        }
        _ => s += &format!("ONNX Runtime {:<8} NOT FOUND\n", ort.expected_version),
    }
    if let Some(sha) = &ort.sha256 {
        let pin = match (ort.matches_pin, &ort.wheel) {
            (Some(true), Some(wheel)) => format!("matches the pin for {wheel}"),
            (Some(false), _) => "not the pinned build (fine if it is a compatible 1.x)".into(),
            _ => "no pin for this target".into(),
        };
        s += &format!("  sha256            {sha} {pin}\n");
    }
    if ort.found.is_some() {
        s += &format!("  loads             {}\n", yes_no(ort.loads));
    }
    s += &searched_lines(&ort.searched);
    s += &format!(
        "models                {} ({})\n",
        out.models.dir, out.models.source
    );
    s += &searched_lines(&out.models.searched);
    for f in &out.models.files {
        match &f.error {
            None => s += &format!("  {:<37} ok (SHA-256 checked)\n", f.file),
            Some(e) => s += &format!("  {:<37} {e}\n", f.file),
        }
    }
    let exists = |p: &PathReport, absent: &str| {
        if p.exists {
            format!("{} (exists)", p.path)
        } else {
            format!("{} ({absent})", p.path)
        }
    };
    s += &format!(
        "key                   {}\n",
        exists(
            &out.key,
            "not created yet: `blindface keygen` or the app creates it"
        )
    );
    s += &format!(
        "data directory        {}\n",
        exists(&out.data_dir, "not created yet: created on first use")
    );
    if let Some(e) = &ort.error {
        s += &format!("error                 {e}\n");
    }
    s += &format!(
        "missing               {}\n",
        if out.missing.is_empty() {
            "nothing".to_string()
        } else {
            out.missing.join("; ")
        }
    );
    s
}
