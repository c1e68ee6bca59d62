//! Face pipeline: image loading, YuNet detection, alignment, SFace embedding.
//!
//! ```text
//! image file --load_image--> RgbImage --FacePipeline::detect--> Vec<Face>
//!   --FacePipeline::embed (align to 112x112, SFace, L2-normalise)--> Embedding (128 f32)
//! ```
//! Same person if `a.l2(&b) <= SFACE_L2_THRESHOLD`. Models: `models/` (SHA-256 checked at
//! load, see [`models`]); ONNX Runtime 1.31 is loaded at run time (see [`runtime`]).
//! Detection always works at YuNet's 640x640 input scale, for enrolment and probes alike;
//! when no face reaches the score threshold, a lower-score retry runs on the same model
//! outputs ([`Detection::retry`] says so). The face that stands for an image is picked by a
//! named rule ([`FaceChoice`]); embeddings average the crop and its mirror by default
//! ([`EmbeddingMode`]).

pub mod align;
pub mod choice;
pub mod detect;
pub mod embed;
pub mod error;
pub mod image_io;
pub mod models;
mod onnx_edit;
pub mod pipeline;
pub mod projection;
pub mod runtime;

pub use align::{align_face, ALIGNED_SIZE, ARCFACE_TEMPLATE};
pub use choice::FaceChoice;
pub use detect::{
    iou, CloseUpPass, Detection, DetectorConfig, Face, CLOSE_UP_MIN_SIZE,
    DEFAULT_RETRY_SCORE_THRESHOLD,
};
pub use embed::{Embedding, EMBEDDING_DIM, SFACE_L2_THRESHOLD};
pub use error::VisionError;
pub use image_io::{is_image, list_images, load_image, load_image_from_bytes, IMAGE_EXTENSIONS};
pub use models::default_models_dir;
/// Public for the fuzz target only (`fuzz/`): the module itself stays private.
pub use onnx_edit::strip_initializer_inputs;
pub use pipeline::{EmbeddingMode, FacePipeline, PipelineOptions};
pub use runtime::locate_onnxruntime;
