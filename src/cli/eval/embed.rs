//! Embedding many images for `eval`: one face pipeline per core (each with one ONNX
//! Runtime thread, so the cores do not fight over intra-op threads), rayon across images,
//! and a progress bar on stderr when stderr is a terminal (nothing otherwise, so `--json`
//! output and logs stay clean).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use blindface::vision::{
    default_models_dir, load_image, DetectorConfig, Embedding, EmbeddingMode, FaceChoice,
    FacePipeline, PipelineOptions,
};

/// Pipeline settings an evaluation runs with (recorded in its output).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Settings {
    pub face: FaceChoice,
    pub embedding: EmbeddingMode,
    pub score_threshold: f32,
    /// `None`: no no-face retry.
    pub retry_score_threshold: Option<f32>,
    pub close_up_pass: bool,
    /// The parameter set templates are made and matched with (v2: projected to 80-D).
    pub params: blindface::he::Params,
}

impl Settings {
    fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            intra_threads: 1,
            detector: DetectorConfig {
                score_threshold: self.score_threshold,
                retry_score_threshold: self.retry_score_threshold,
                close_up_pass: self.close_up_pass,
                ..DetectorConfig::default()
            },
            embedding: self.embedding,
        }
    }
}

/// One image's face, as the evaluation uses it.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    pub embedding: Embedding,
    /// Found only by the no-face retry.
    pub retry: bool,
    /// The other face choice rule would have picked another face.
    pub choice_matters: bool,
    /// Time of detection and of embedding (alignment + SFace runs), one thread each.
    pub detect_ms: f64,
    pub embed_ms: f64,
}

/// The embeddings of `images` (path, context for error messages), in order: `None` for an
/// image with no face. A missing or unreadable image is an error naming its context.
pub struct Run {
    pub embedded: Vec<Option<Embedded>>,
    pub seconds: f64,
    pub threads: usize,
}

/// A progress bar on stderr if it is a terminal, else a hidden one.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:32}] {pos}/{len} ({per_sec}, {elapsed} elapsed, ETA {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

pub fn embed_images(images: &[(PathBuf, String)], settings: &Settings) -> Result<Run> {
    let started = Instant::now();
    let threads = rayon::current_num_threads().max(1);
    let options = settings.pipeline_options();
    let dir = default_models_dir();
    let pipelines: Vec<FacePipeline> = (0..threads)
        .into_par_iter()
        .map(|_| FacePipeline::load_with(&dir, options))
        .collect::<Result<_, _>>()?;
    let bar = progress(images.len(), "images embedded");
    let other = match settings.face {
        FaceChoice::Largest => FaceChoice::Central,
        FaceChoice::Central => FaceChoice::Largest,
    };
    let embedded = images
        .par_iter()
        .map(|(path, context)| -> Result<Option<Embedded>> {
            let pipeline = &pipelines[rayon::current_thread_index().unwrap_or(0) % threads];
            let img = load_image(path).with_context(|| context.clone())?;
            let t0 = Instant::now();
            let detection = pipeline.detection(&img).with_context(|| context.clone())?;
            let detect_ms = t0.elapsed().as_secs_f64() * 1e3;
            let (w, h) = (img.width(), img.height());
            let out = match settings.face.pick(&detection.faces, w, h) {
                None => None,
                Some(i) => {
                    let t1 = Instant::now();
                    let embedding = pipeline
                        .embed(&img, &detection.faces[i])
                        .with_context(|| context.clone())?;
                    Some(Embedded {
                        embedding,
                        retry: detection.retry,
                        choice_matters: other.pick(&detection.faces, w, h) != Some(i),
                        detect_ms,
                        embed_ms: t1.elapsed().as_secs_f64() * 1e3,
                    })
                }
            };
            bar.inc(1);
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(Run {
        embedded,
        seconds: started.elapsed().as_secs_f64(),
        threads,
    })
}
