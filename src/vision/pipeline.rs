//! `FacePipeline`: both models loaded once, then detection and embedding per frame.
//!
//! Loading checks both model files' SHA-256 first, then initialises ONNX Runtime (once per
//! process) and creates the two sessions. Each session sits behind its own mutex, so one
//! pipeline can be shared across threads (`Send + Sync`); detection of one frame and
//! embedding of another can run at the same time.

use std::path::Path;

use image::RgbImage;
use ort::session::Session;

use super::align::align_face;
use super::detect::{Detector, DetectorConfig, Face};
use super::embed::{Embedding, Recogniser};
use super::error::VisionError;
use super::models::{self, ModelFile, SFACE, YUNET};
use super::onnx_edit;
use super::runtime;

/// Options fixed when the pipeline is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PipelineOptions {
    /// Threads ONNX Runtime may use inside one model run; 0 = ONNX Runtime's default (one
    /// per physical core).
    pub intra_threads: usize,
    /// Detection settings (threshold, NMS, close-up pass).
    pub detector: DetectorConfig,
}

/// YuNet + alignment + SFace, ready to run.
pub struct FacePipeline {
    detector: Detector,
    recogniser: Recogniser,
    options: PipelineOptions,
}

impl std::fmt::Debug for FacePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacePipeline")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl FacePipeline {
    /// Loads the models from the default folder (`BLINDFACE_MODELS`, else `models/` next to
    /// the executable, else the crate's `models/`) with default options.
    pub fn load_default() -> Result<Self, VisionError> {
        Self::load_with(&models::default_models_dir(), PipelineOptions::default())
    }

    /// Loads the models from `models_dir` with default options.
    pub fn load(models_dir: &Path) -> Result<Self, VisionError> {
        Self::load_with(models_dir, PipelineOptions::default())
    }

    /// Loads the models from `models_dir` with the given options.
    pub fn load_with(models_dir: &Path, options: PipelineOptions) -> Result<Self, VisionError> {
        // Check both files before touching ONNX Runtime: a bad file is the likelier problem
        // and its message is the more useful one.
        let yunet_bytes = models::load_verified(models_dir, &YUNET)?;
        let sface_bytes = models::load_verified(models_dir, &SFACE)?;
        // SFace lists its weights as graph inputs; unlisting them lets ONNX Runtime fold
        // constants (same outputs, ~17% faster). See `onnx_edit`.
        let sface_bytes = match onnx_edit::strip_initializer_inputs(&sface_bytes) {
            Some(fixed) => fixed,
            None => sface_bytes,
        };
        let detector = Detector::new(session(&yunet_bytes, &YUNET, &options)?);
        let recogniser = Recogniser::new(session(&sface_bytes, &SFACE, &options)?);
        Ok(FacePipeline {
            detector,
            recogniser,
            options,
        })
    }

    /// The options this pipeline was loaded with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Changes the detection settings (threshold, NMS, close-up pass) for later calls.
    pub fn set_detector_config(&mut self, config: DetectorConfig) {
        self.options.detector = config;
    }

    /// All faces in `img`, sorted by box area, largest first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, VisionError> {
        self.detector.detect(img, &self.options.detector)
    }

    /// The embedding of `face` (found in `img`): align to 112x112, run SFace, normalise.
    pub fn embed(&self, img: &RgbImage, face: &Face) -> Result<Embedding, VisionError> {
        let aligned = align_face(img, &face.landmarks)?;
        self.recogniser.embed_aligned(&aligned)
    }

    /// The largest face in `img` and its embedding; [`VisionError::NoFace`] if there is none.
    pub fn embed_largest(&self, img: &RgbImage) -> Result<(Face, Embedding), VisionError> {
        let face = *self.detect(img)?.first().ok_or(VisionError::NoFace)?;
        let embedding = self.embed(img, &face)?;
        Ok((face, embedding))
    }
}

fn session(
    bytes: &[u8],
    model: &ModelFile,
    options: &PipelineOptions,
) -> Result<Session, VisionError> {
    let env = runtime::environment()?;
    let fail = |e: &dyn std::fmt::Display| VisionError::Inference {
        model: model.file_name,
        reason: format!("cannot create a session: {e}"),
    };
    let mut builder = Session::builder(env).map_err(|e| fail(&e))?;
    if options.intra_threads > 0 {
        builder = builder
            .with_intra_threads(options.intra_threads)
            .map_err(|e| fail(&e))?;
    }
    builder.commit_from_memory(bytes).map_err(|e| fail(&e))
}
