//! Errors of the face pipeline, each with a one-line message that says what went wrong and,
//! where the user can act, what to do.

use std::path::PathBuf;

/// Everything that can go wrong between an image file and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The image file could not be opened or read.
    /// (The message includes the OS error, so it is not also a `source`: printed with
    /// its chain, it would repeat.)
    #[error("cannot read image {}: {reason}", path.display())]
    ImageUnreadable {
        path: PathBuf,
        reason: std::io::Error,
    },

    /// The bytes are not an image we can decode (corrupt, truncated, unsupported format).
    #[error("corrupt or unsupported image {what}: {reason}")]
    ImageDecode { what: String, reason: String },

    /// Detection found no face (from [`crate::vision::FacePipeline::embed_largest`]).
    #[error("no face found in the image")]
    NoFace,

    /// A face whose landmarks cannot define an alignment (non-finite or all at one point).
    #[error("invalid face: {0}")]
    InvalidFace(String),

    /// A model file is not where it should be.
    #[error("model file {} is missing: {hint}", path.display())]
    ModelMissing { path: PathBuf, hint: String },

    /// A model file exists but is not the expected file (checksum mismatch, unreadable).
    #[error("model file {} is corrupt ({reason}): {hint}", path.display())]
    ModelCorrupt {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    /// No ONNX Runtime shared library could be found.
    #[error("ONNX Runtime not found ({searched}): {hint}")]
    RuntimeNotFound { searched: String, hint: String },

    /// The ONNX Runtime library was found but could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {}: {reason}. {hint}", path.display())]
    RuntimeLoad {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    /// ONNX Runtime failed while creating a session or running a model.
    #[error("inference failed ({model}): {reason}")]
    Inference { model: &'static str, reason: String },
}

impl VisionError {
    pub(crate) fn inference(model: &'static str, err: impl std::fmt::Display) -> Self {
        VisionError::Inference {
            model,
            reason: err.to_string(),
        }
    }
}
