//! `FacePipeline`: both models loaded once, then detection and embedding per frame.
//!
//! Loading checks both model files' SHA-256 first, then initialises ONNX Runtime (once per
//! process) and creates the two sessions. Each session sits behind its own mutex, so one
//! pipeline can be shared across threads (`Send + Sync`); detection of one frame and
//! embedding of another can run at the same time. For throughput over many images (e.g.
//! `blindface eval`), load one pipeline per core with `intra_threads: 1`.
//!
//! Options fixed at load: ONNX Runtime threads, detection settings (thresholds, no-face
//! retry, close-up pass) and the [`EmbeddingMode`] (single crop, or the crop averaged with
//! its mirror image). Which face an image stands for is chosen per call ([`FaceChoice`]).

use std::path::Path;

use image::RgbImage;
use ort::session::Session;
use serde::{Deserialize, Serialize};

use super::align::align_face;
use super::choice::FaceChoice;
use super::detect::{CloseUpPass, Detection, Detector, DetectorConfig, Face};
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
    /// How a face's embedding is computed from its aligned crop.
    pub embedding: EmbeddingMode,
}

/// How the embedding of an aligned face is computed.
///
/// Templates and probes should use the same mode: embeddings of the two modes are close
/// (they describe the same face) but not equal, so mixing them costs some accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingMode {
    /// SFace on the aligned 112x112 crop (what OpenCV's `FaceRecognizerSF` does).
    Single,
    /// Flip test-time augmentation: SFace on the crop and on its mirror image, the two
    /// unit embeddings averaged and renormalised. Two SFace runs per face.
    #[default]
    FlipAverage,
}

impl EmbeddingMode {
    /// The mode's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingMode::Single => "single",
            EmbeddingMode::FlipAverage => "flip-average",
        }
    }
}

impl std::fmt::Display for EmbeddingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EmbeddingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "single" => Ok(EmbeddingMode::Single),
            "flip-average" | "flip" => Ok(EmbeddingMode::FlipAverage),
            other => Err(format!(
                "unknown embedding mode `{other}` (use `single` or `flip-average`)"
            )),
        }
    }
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

    /// Changes how later calls compute embeddings. Templates and probes should share one
    /// mode (see [`EmbeddingMode`]).
    pub fn set_embedding_mode(&mut self, mode: EmbeddingMode) {
        self.options.embedding = mode;
    }

    /// All faces in `img`, sorted by box area, largest first (no-face retry included).
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, VisionError> {
        Ok(self.detection(img)?.faces)
    }

    /// Like [`detect`](Self::detect), also saying whether the no-face retry found them.
    pub fn detection(&self, img: &RgbImage) -> Result<Detection, VisionError> {
        self.detector.detect(img, &self.options.detector)
    }

    /// [`detection`](Self::detection) with this call's close-up pass (live video varies
    /// it frame by frame); a pipeline set to [`CloseUpPass::Never`] keeps it off.
    pub fn detection_with_close_up(
        &self,
        img: &RgbImage,
        mode: CloseUpPass,
    ) -> Result<Detection, VisionError> {
        let config = match self.options.detector.close_up_mode() {
            CloseUpPass::Never => self.options.detector,
            _ => self.options.detector.with_close_up(mode),
        };
        self.detector.detect(img, &config)
    }

    /// The embedding of `face` (found in `img`): align to 112x112, run SFace (on the crop,
    /// and on its mirror with [`EmbeddingMode::FlipAverage`]), normalise.
    pub fn embed(&self, img: &RgbImage, face: &Face) -> Result<Embedding, VisionError> {
        let aligned = align_face(img, &face.landmarks)?;
        match self.options.embedding {
            EmbeddingMode::Single => self.embed_aligned(&aligned),
            EmbeddingMode::FlipAverage => {
                let direct = self.embed_aligned(&aligned)?;
                let mirrored = self.embed_aligned(&image::imageops::flip_horizontal(&aligned))?;
                Ok(direct.averaged_with(&mirrored))
            }
        }
    }

    /// SFace on an already aligned 112x112 face (see [`align_face`]), one run, whatever
    /// the [`EmbeddingMode`].
    pub fn embed_aligned(&self, aligned: &RgbImage) -> Result<Embedding, VisionError> {
        self.recogniser.embed_aligned(aligned)
    }

    /// The largest face in `img` and its embedding; [`VisionError::NoFace`] if there is none.
    pub fn embed_largest(&self, img: &RgbImage) -> Result<(Face, Embedding), VisionError> {
        self.embed_chosen(img, FaceChoice::Largest)
    }

    /// The face `choice` picks in `img` and its embedding; [`VisionError::NoFace`] if there
    /// is none.
    pub fn embed_chosen(
        &self,
        img: &RgbImage,
        choice: FaceChoice,
    ) -> Result<(Face, Embedding), VisionError> {
        let faces = self.detect(img)?;
        let index = choice
            .pick(&faces, img.width(), img.height())
            .ok_or(VisionError::NoFace)?;
        let face = faces[index];
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
