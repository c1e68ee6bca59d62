//! The linear projection of an SFace embedding to fewer dimensions (compact templates):
//! subtract a mean, multiply by a D x 128 matrix of principal axes, L2-normalise.
//!
//! The mean and axes come from centred PCA ([`Projection::fit`]) of embeddings made as the
//! product makes them (aligned crop and mirror averaged, L2-normalised); the one that
//! ships is fitted on LFW View 1's DevTrain images only, with the command recorded in it
//! ([`Projection::shipped`], `assets/projection-lfw-devtrain.json`, checked against its
//! SHA-256 when loaded). Distances between projected embeddings are what templates of
//! parameter sets with `dim < 128` measure.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::embed::EMBEDDING_DIM;

/// Format of the projection file.
const FORMAT: &str = "blindface-projection-1";

/// Why a projection cannot be fitted, loaded or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    #[error("a projection to {dims} dimensions needs 1 to {EMBEDDING_DIM} dimensions and at least {dims} + 1 embeddings (got {embeddings})")]
    CannotFit { dims: usize, embeddings: usize },
    #[error("the projection file is invalid: {0}")]
    Invalid(String),
    #[error("the projection file's SHA-256 is {actual}, expected {expected}: it was changed or damaged; restore it from the release")]
    Checksum { actual: String, expected: String },
    #[error("an embedding of {got} values, expected {EMBEDDING_DIM} finite values")]
    BadEmbedding { got: usize },
    #[error("the embedding projects to zero (it lies on the mean)")]
    Degenerate,
}

/// How a projection was made (recorded in its file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command that made it.
    pub command: String,
    /// What it was fitted on.
    pub fitted_on: String,
    pub images: usize,
    pub identities: usize,
    /// Share of the embeddings' variance (about their mean) the axes keep.
    pub explained_variance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct File {
    format: String,
    input_dims: usize,
    dims: usize,
    mean: Vec<f32>,
    /// `dims` rows of `input_dims`: the principal axes, largest variance first.
    axes: Vec<Vec<f32>>,
    provenance: Provenance,
}

/// A fitted projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection(File);

/// The shipped projection's file and its SHA-256.
const SHIPPED_JSON: &str = include_str!("../../assets/projection-lfw-devtrain.json");
pub const SHIPPED_SHA256: &str = "541930d5a32a3e45d95cc2c0be6fa0e6ae7870167ec632cd2f81402e143e4f32";

impl Projection {
    /// Centred PCA of `embeddings` to `dims` axes (largest variance first; each axis's
    /// sign fixed so its largest component is positive, so a refit gives the same file).
    pub fn fit(
        embeddings: &[[f32; EMBEDDING_DIM]],
        dims: usize,
        provenance: impl FnOnce(f64) -> Provenance,
    ) -> Result<Projection, ProjectionError> {
        let n = embeddings.len();
        if dims == 0 || dims > EMBEDDING_DIM || n <= dims {
            return Err(ProjectionError::CannotFit {
                dims,
                embeddings: n,
            });
        }
        let mut mean = [0f64; EMBEDDING_DIM];
        for e in embeddings {
            for (m, &v) in mean.iter_mut().zip(e) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = DMatrix::<f64>::zeros(EMBEDDING_DIM, EMBEDDING_DIM);
        for e in embeddings {
            let c: Vec<f64> = e.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
            for i in 0..EMBEDDING_DIM {
                for j in i..EMBEDDING_DIM {
                    cov[(i, j)] += c[i] * c[j];
                }
            }
        }
        for i in 0..EMBEDDING_DIM {
            for j in 0..i {
                cov[(i, j)] = cov[(j, i)];
            }
        }
        cov /= (n - 1) as f64;
        let eigen = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..EMBEDDING_DIM).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let total: f64 = eigen.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = order[..dims]
            .iter()
            .map(|&i| eigen.eigenvalues[i].max(0.0))
            .sum();
        let axes = order[..dims]
            .iter()
            .map(|&i| {
                let axis = eigen.eigenvectors.column(i);
                let largest = axis
                    .iter()
                    .copied()
                    .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                    .unwrap_or(1.0);
                let sign = if largest < 0.0 { -1.0 } else { 1.0 };
                axis.iter().map(|&v| (sign * v) as f32).collect()
            })
            .collect();
        Ok(Projection(File {
            format: FORMAT.into(),
            input_dims: EMBEDDING_DIM,
            dims,
            mean: mean.iter().map(|&m| m as f32).collect(),
            axes,
            provenance: provenance(if total > 0.0 { kept / total } else { 0.0 }),
        }))
    }

    /// The projection that ships with blindface (LFW View 1 DevTrain), checked once.
    pub fn shipped() -> Result<&'static Projection, ProjectionError> {
        static SHIPPED: std::sync::OnceLock<Result<Projection, ProjectionError>> =
            std::sync::OnceLock::new();
        SHIPPED
            .get_or_init(|| Projection::from_json_checked(SHIPPED_JSON, SHIPPED_SHA256))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses a projection file whose SHA-256 must be `sha256` (lower-case hex).
    pub fn from_json_checked(text: &str, sha256: &str) -> Result<Projection, ProjectionError> {
        let actual = hex::encode(Sha256::digest(text.as_bytes()));
        if actual != sha256 {
            return Err(ProjectionError::Checksum {
                actual,
                expected: sha256.into(),
            });
        }
        Projection::from_json(text)
    }

    /// Parses and validates a projection file.
    pub fn from_json(text: &str) -> Result<Projection, ProjectionError> {
        let f: File =
            serde_json::from_str(text).map_err(|e| ProjectionError::Invalid(e.to_string()))?;
        let bad = |m: String| Err(ProjectionError::Invalid(m));
        if f.format != FORMAT {
            return bad(format!("format `{}`, expected `{FORMAT}`", f.format));
        }
        if f.input_dims != EMBEDDING_DIM || f.mean.len() != EMBEDDING_DIM {
            return bad(format!(
                "input of {} dimensions, expected {EMBEDDING_DIM}",
                f.input_dims
            ));
        }
        if f.dims == 0 || f.dims > EMBEDDING_DIM || f.axes.len() != f.dims {
            return bad(format!("{} axes for {} dimensions", f.axes.len(), f.dims));
        }
        if f.axes.iter().any(|a| a.len() != EMBEDDING_DIM) {
            return bad("an axis of the wrong length".into());
        }
        if !f
            .mean
            .iter()
            .chain(f.axes.iter().flatten())
            .all(|v| v.is_finite())
        {
            return bad("a value that is not finite".into());
        }
        // Principal axes are orthonormal: a file that is not was not made by `fit`.
        for (i, a) in f.axes.iter().enumerate() {
            for (j, b) in f.axes.iter().enumerate().skip(i) {
                let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                if (dot - want).abs() > 1e-4 {
                    return bad(format!("axes {i} and {j} are not orthonormal ({dot:.6})"));
                }
            }
        }
        Ok(Projection(f))
    }

    /// The file's text (what `--fit-projection` writes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).expect("a projection serialises") + "\n"
    }

    pub fn dims(&self) -> usize {
        self.0.dims
    }

    pub fn provenance(&self) -> &Provenance {
        &self.0.provenance
    }

    /// `embedding` minus the mean, on the axes, L2-normalised.
    pub fn apply(&self, embedding: &[f32]) -> Result<Vec<f32>, ProjectionError> {
        if embedding.len() != EMBEDDING_DIM || !embedding.iter().all(|v| v.is_finite()) {
            return Err(ProjectionError::BadEmbedding {
                got: embedding.len(),
            });
        }
        let centred: Vec<f64> = embedding
            .iter()
            .zip(&self.0.mean)
            .map(|(&v, &m)| v as f64 - m as f64)
            .collect();
        let out: Vec<f64> = self
            .0
            .axes
            .iter()
            .map(|a| a.iter().zip(&centred).map(|(&x, c)| x as f64 * c).sum())
            .collect();
        let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 1e-12 {
            return Err(ProjectionError::Degenerate);
        }
        Ok(out.iter().map(|v| (v / norm) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn unit(rng: &mut StdRng, spread: &[f64]) -> [f32; EMBEDDING_DIM] {
        let mut e = [0f32; EMBEDDING_DIM];
        for (i, v) in e.iter_mut().enumerate() {
            *v = (rng.random::<f64>() - 0.5) as f32 * spread[i] as f32;
        }
        let n = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        e.map(|v| v / n)
    }

    fn provenance(kept: f64) -> Provenance {
        Provenance {
            command: "test".into(),
            fitted_on: "synthetic".into(),
            images: 0,
            identities: 0,
            explained_variance: kept,
        }
    }

    /// Data with its variance in the first 5 axes only: a 5-D projection keeps
    /// everything, so distances are preserved up to the normalisation.
    #[test]
    fn pca_finds_the_axes_the_variance_lies_on() {
        let mut rng = StdRng::seed_from_u64(1);
        let spread: Vec<f64> = (0..EMBEDDING_DIM)
            .map(|i| if i < 5 { 10.0 - i as f64 } else { 1e-4 })
            .collect();
        let data: Vec<_> = (0..500).map(|_| unit(&mut rng, &spread)).collect();
        let p = Projection::fit(&data, 5, provenance).unwrap();
        assert!(p.provenance().explained_variance > 0.999);
        for axis in &p.0.axes {
            let outside: f32 = axis[5..].iter().map(|v| v * v).sum();
            assert!(outside < 1e-3, "{outside}");
        }
        let y = p.apply(&data[0]).unwrap();
        assert_eq!(y.len(), 5);
        assert!((y.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        // The file round-trips and is checked.
        let text = p.to_json();
        assert_eq!(Projection::from_json(&text).unwrap().to_json(), text);
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        assert!(Projection::from_json_checked(&text, &sha).is_ok());
        // One axis component changed: the checksum fails, and without it the axes are no
        // longer orthonormal.
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = value["axes"][0][0].as_f64().unwrap();
        value["axes"][0][0] = (first + 0.5).into();
        let tampered = serde_json::to_string_pretty(&value).unwrap();
        assert!(matches!(
            Projection::from_json_checked(&tampered, &sha),
            Err(ProjectionError::Checksum { .. })
        ));
        assert!(matches!(
            Projection::from_json(&tampered),
            Err(ProjectionError::Invalid(_))
        ));
    }

    #[test]
    fn bad_input_is_refused() {
        let mut rng = StdRng::seed_from_u64(2);
        let spread = vec![1.0; EMBEDDING_DIM];
        let data: Vec<_> = (0..200).map(|_| unit(&mut rng, &spread)).collect();
        assert!(matches!(
            Projection::fit(&data[..80], 80, provenance),
            Err(ProjectionError::CannotFit { .. })
        ));
        assert!(Projection::fit(&data, 0, provenance).is_err());
        assert!(Projection::fit(&data, 129, provenance).is_err());
        let p = Projection::fit(&data, 80, provenance).unwrap();
        assert_eq!(
            p.apply(&[0.0; 127]),
            Err(ProjectionError::BadEmbedding { got: 127 })
        );
        let mut nan = data[0];
        nan[3] = f32::NAN;
        assert!(p.apply(&nan).is_err());
        assert_eq!(p.apply(&p.0.mean.clone()), Err(ProjectionError::Degenerate));
        assert!(Projection::from_json("{}").is_err());
    }

    #[test]
    fn the_shipped_projection_is_intact() {
        let p = Projection::shipped().unwrap();
        assert!(p.provenance().fitted_on.contains("DevTrain"));
        assert!(!p.provenance().fitted_on.contains("DevTest"));
    }
}
