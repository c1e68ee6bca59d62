//! SFace embedding of an aligned 112x112 face: RGB f32 0..255 NCHW `data` [1,3,112,112]
//! in, `fc1` [1,128] out, L2-normalised here.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::align::ALIGNED_SIZE;
use super::error::VisionError;

/// Embedding dimension.
pub const EMBEDDING_DIM: usize = 128;

/// OpenCV's decision threshold for SFace: same person if the L2 distance between
/// normalised embeddings is at most this (equivalently cosine >= 0.363).
pub const SFACE_L2_THRESHOLD: f32 = 1.128;

const MODEL: &str = "SFace";

/// A face embedding, L2-normalised (unit length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Embedding(pub [f32; EMBEDDING_DIM]);

impl Embedding {
    /// Normalises `raw` to unit length; `None` if it is not 128 finite values with a
    /// non-zero norm.
    pub fn from_raw(raw: &[f32]) -> Option<Embedding> {
        if raw.len() != EMBEDDING_DIM || !raw.iter().all(|v| v.is_finite()) {
            return None;
        }
        let norm = raw.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm <= 0.0 || !norm.is_finite() {
            return None;
        }
        let mut out = [0.0f32; EMBEDDING_DIM];
        for (o, &v) in out.iter_mut().zip(raw) {
            *o = (v as f64 / norm) as f32;
        }
        Some(Embedding(out))
    }

    /// Cosine similarity (1 = same direction).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in self.0.iter().zip(&other.0) {
            dot += a as f64 * b as f64;
            na += a as f64 * a as f64;
            nb += b as f64 * b as f64;
        }
        if na == 0.0 || nb == 0.0 {
            return 0.0;
        }
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }

    /// Euclidean distance (for unit vectors, sqrt(2 - 2 cosine)); compare with
    /// [`SFACE_L2_THRESHOLD`].
    pub fn l2(&self, other: &Embedding) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(&a, &b)| {
                let d = a as f64 - b as f64;
                d * d
            })
            .sum::<f64>()
            .sqrt() as f32
    }

    /// The normalised mean of two unit embeddings (e.g. of a face and its mirror image).
    /// Falls back to `self` in the degenerate case of opposite vectors.
    pub fn averaged_with(&self, other: &Embedding) -> Embedding {
        let mut sum = [0.0f32; EMBEDDING_DIM];
        for ((s, &a), &b) in sum.iter_mut().zip(&self.0).zip(&other.0) {
            *s = a + b;
        }
        Embedding::from_raw(&sum).unwrap_or(*self)
    }

    /// The 128 values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

impl Serialize for Embedding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Embedding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = Vec::<f32>::deserialize(deserializer)?;
        let array: [f32; EMBEDDING_DIM] = values.try_into().map_err(|v: Vec<f32>| {
            serde::de::Error::invalid_length(v.len(), &"128 embedding values")
        })?;
        Ok(Embedding(array))
    }
}

/// The SFace session; `run` needs `&mut`, so it sits behind a mutex.
pub(crate) struct Recogniser {
    session: Mutex<Session>,
}

impl Recogniser {
    pub(crate) fn new(session: Session) -> Self {
        Recogniser {
            session: Mutex::new(session),
        }
    }

    /// Embedding of an aligned 112x112 RGB face.
    pub(crate) fn embed_aligned(&self, aligned: &RgbImage) -> Result<Embedding, VisionError> {
        let side = ALIGNED_SIZE as usize;
        if aligned.width() as usize != side || aligned.height() as usize != side {
            return Err(VisionError::inference(
                MODEL,
                format!(
                    "aligned face is {}x{}, expected {side}x{side}",
                    aligned.width(),
                    aligned.height()
                ),
            ));
        }
        let plane = side * side;
        let mut input = vec![0.0f32; 3 * plane];
        for (i, p) in aligned.pixels().enumerate() {
            for c in 0..3 {
                input[c * plane + i] = p.0[c] as f32;
            }
        }
        let mut session = self.session.lock();
        let tensor = TensorRef::from_array_view(([1usize, 3, side, side], input.as_slice()))
            .map_err(|e| VisionError::inference(MODEL, e))?;
        let outputs = session
            .run(ort::inputs!["data" => tensor])
            .map_err(|e| VisionError::inference(MODEL, e))?;
        let value = outputs
            .get("fc1")
            .ok_or_else(|| VisionError::inference(MODEL, "output `fc1` missing"))?;
        let (_, raw) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| VisionError::inference(MODEL, e))?;
        Embedding::from_raw(raw).ok_or_else(|| {
            VisionError::inference(
                MODEL,
                format!(
                    "`fc1` gave {} values, not 128 finite non-zero ones",
                    raw.len()
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Embedding {
        let mut v = [0.0f32; EMBEDDING_DIM];
        v[i] = 1.0;
        Embedding(v)
    }

    #[test]
    fn distances_of_unit_vectors() {
        let (a, b) = (unit(0), unit(1));
        assert_eq!(a.cosine(&a), 1.0);
        assert_eq!(a.cosine(&b), 0.0);
        assert!((a.l2(&b) - 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(a.l2(&a), 0.0);
    }

    #[test]
    fn average_of_two_unit_vectors_is_their_normalised_mean() {
        let (a, b) = (unit(0), unit(1));
        let m = a.averaged_with(&b);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((m.0[0] - h).abs() < 1e-6 && (m.0[1] - h).abs() < 1e-6);
        assert!((a.cosine(&m) - h).abs() < 1e-6);
        assert_eq!(a.averaged_with(&a), a);
        let mut neg = [0.0f32; EMBEDDING_DIM];
        neg[0] = -1.0;
        assert_eq!(a.averaged_with(&Embedding(neg)), a, "opposite: falls back");
    }

    #[test]
    fn from_raw_normalises_and_rejects_bad_input() {
        let raw = vec![3.0f32; EMBEDDING_DIM];
        let e = Embedding::from_raw(&raw).expect("valid");
        let norm: f32 = e.as_slice().iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_DIM]).is_none());
        assert!(Embedding::from_raw(&[1.0; 3]).is_none());
        let mut nan = raw.clone();
        nan[5] = f32::NAN;
        assert!(Embedding::from_raw(&nan).is_none());
    }

    #[test]
    fn serde_round_trip_and_length_check() {
        let e = Embedding::from_raw(&(0..128).map(|i| i as f32 + 1.0).collect::<Vec<_>>())
            .expect("valid");
        let json = serde_json::to_string(&e).expect("serialise");
        let back: Embedding = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, e);
        assert!(serde_json::from_str::<Embedding>("[1.0, 2.0]").is_err());
    }
}
