//! Quantisation: float embeddings to integer templates, and the plaintext distance.
//!
//! A template is D signed integers in [-q, q]: `round(x * scale)` clipped, where
//! `scale = Params::quant_scale()`. Clipped components are counted so callers can report
//! them. The squared Euclidean distance between templates is an exact integer; dividing it
//! by `scale^2` gives the float squared L2 distance it approximates.

use serde::{Deserialize, Serialize};

use super::{HeError, Params};

/// A quantised face template: `dim` integers in [-q, q].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Template(Vec<i32>);

/// A template and how many of its components were clipped to +-q.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantised {
    pub template: Template,
    pub clipped: usize,
}

impl Template {
    /// Builds a template from integers, checking the dimension and the range.
    pub fn new(values: Vec<i32>, params: &Params) -> Result<Self, HeError> {
        if values.len() != params.dim {
            return Err(HeError::Dimension {
                expected: params.dim,
                got: values.len(),
            });
        }
        if let Some(v) = values.iter().find(|v| v.abs() > params.q) {
            return Err(HeError::OutOfRange {
                value: *v,
                q: params.q,
            });
        }
        Ok(Template(values))
    }

    pub fn values(&self) -> &[i32] {
        &self.0
    }

    /// Squared norm, an exact integer.
    pub fn norm_sq(&self) -> i64 {
        self.0.iter().map(|&v| (v as i64) * (v as i64)).sum()
    }

    /// Exact squared Euclidean distance to another template.
    pub fn distance_sq(&self, other: &Template) -> i64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(&a, &b)| {
                let d = (a - b) as i64;
                d * d
            })
            .sum()
    }
}

/// Quantises an embedding (expected L2-normalised) to a template.
pub fn quantise(embedding: &[f32], params: &Params) -> Result<Quantised, HeError> {
    if embedding.len() != params.dim {
        return Err(HeError::Dimension {
            expected: params.dim,
            got: embedding.len(),
        });
    }
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(HeError::NotFinite);
    }
    let scale = params.quant_scale();
    let q = params.q;
    let mut clipped = 0;
    let values = embedding
        .iter()
        .map(|&x| {
            let v = (x * scale).round() as i64;
            if v.abs() > q as i64 {
                clipped += 1;
            }
            v.clamp(-(q as i64), q as i64) as i32
        })
        .collect();
    Ok(Quantised {
        template: Template(values),
        clipped,
    })
}

/// Converts an exact integer squared distance to the float L2 distance it stands for.
pub fn to_float_l2(distance_sq: i64, params: &Params) -> f32 {
    let s = params.quant_scale() as f64;
    ((distance_sq.max(0) as f64) / (s * s)).sqrt() as f32
}

/// Converts a float L2 threshold to the integer squared-distance threshold it stands for.
pub fn threshold_sq(l2: f32, params: &Params) -> i64 {
    let s = params.quant_scale() as f64;
    ((l2 as f64) * (l2 as f64) * s * s).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantise_rounds_clips_and_counts() {
        let p = Params::v1();
        let mut e = vec![0.0f32; p.dim];
        e[0] = 1.0; // far beyond the clip point
        e[1] = -1.0;
        e[2] = 0.1;
        let q = quantise(&e, &p).unwrap();
        assert_eq!(q.clipped, 2);
        assert_eq!(q.template.values()[0], p.q);
        assert_eq!(q.template.values()[1], -p.q);
        assert_eq!(
            q.template.values()[2],
            (0.1 * p.quant_scale()).round() as i32
        );
        assert!(quantise(&e[..10], &p).is_err());
        e[3] = f32::NAN;
        assert!(matches!(quantise(&e, &p), Err(HeError::NotFinite)));
    }

    #[test]
    fn float_and_integer_scales_agree() {
        let p = Params::v1();
        let t = threshold_sq(1.128, &p);
        let back = to_float_l2(t, &p);
        assert!((back - 1.128).abs() < 1e-3, "{back}");
        let a = Template::new(vec![p.q; p.dim], &p).unwrap();
        let b = Template::new(vec![-p.q; p.dim], &p).unwrap();
        assert_eq!(a.distance_sq(&b), 4 * (p.q as i64).pow(2) * p.dim as i64);
        assert!(Template::new(vec![p.q + 1; p.dim], &p).is_err());
    }
}
