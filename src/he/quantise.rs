//! Quantisation: float embeddings to integer templates, and the plaintext distance.
//!
//! A template is D signed integers in [-q, q]: `round(x * scale)` clipped, where
//! `scale = Params::quant_scale()`. Clipped components are counted so callers can report
//! them. The squared Euclidean distance between templates is an exact integer; dividing it
//! by `scale^2` gives the float squared L2 distance it approximates.
//!
//! [`Threshold`] is the accept/reject rule on that scale: the L2 threshold a user sets and
//! the squared integer distance it stands for under one key's parameters. Every verdict,
//! in the CLI and the app, is [`Threshold::accepts`] on a decrypted distance.

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

/// The accept/reject threshold: the L2 distance (of normalised embeddings) as the user
/// sets it, and the exact squared integer distance it stands for under the parameters of
/// the key the distances were computed with. Built once per decision site from the key's
/// parameters ([`SecretKey::params`](super::SecretKey::params), or `Params::v1()` where no
/// key exists yet); [`accepts`](Self::accepts) is the one verdict rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    l2: f32,
    squared: i64,
}

impl Threshold {
    /// The threshold `l2` on the integer scale of `params`: `floor(l2^2 * scale^2)`, so a
    /// quantised distance is accepted exactly when its float value is at most `l2` (up to
    /// the quantisation). A NaN threshold accepts only distance 0; an infinite one,
    /// everything.
    pub fn new(l2: f32, params: &Params) -> Self {
        let s = params.quant_scale() as f64;
        let squared = ((l2 as f64) * (l2 as f64) * s * s).floor() as i64;
        Threshold { l2, squared }
    }

    /// The L2 threshold as the user set it.
    pub fn l2(&self) -> f32 {
        self.l2
    }

    /// The same threshold on exact squared integer distances.
    pub fn squared(&self) -> i64 {
        self.squared
    }

    /// The verdict: a match when the squared distance is at most the threshold.
    pub fn accepts(&self, distance_sq: i64) -> bool {
        distance_sq <= self.squared
    }
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
        let t = Threshold::new(1.128, &p);
        assert_eq!(t.l2(), 1.128);
        let back = to_float_l2(t.squared(), &p);
        assert!((back - 1.128).abs() < 1e-3, "{back}");
        let a = Template::new(vec![p.q; p.dim], &p).unwrap();
        let b = Template::new(vec![-p.q; p.dim], &p).unwrap();
        assert_eq!(a.distance_sq(&b), 4 * (p.q as i64).pow(2) * p.dim as i64);
        assert!(Template::new(vec![p.q + 1; p.dim], &p).is_err());
    }

    #[test]
    fn accepts_exactly_up_to_the_squared_threshold() {
        let p = Params::v1();
        // From nothing accepted but 0, through the default, to beyond the largest possible
        // distance (2 * sqrt(D) * q between opposite clipped templates).
        for l2 in [0.0, 0.001, 0.6, 1.128, 1.6, 2.0, 1000.0] {
            let t = Threshold::new(l2, &p);
            let sq = t.squared();
            assert!(sq >= 0, "{l2}");
            assert!(t.accepts(sq), "{l2}: d == squared is a match");
            assert!(!t.accepts(sq + 1), "{l2}: squared + 1 is not");
            assert!(t.accepts(0) && (sq == 0 || t.accepts(sq - 1)), "{l2}");
        }
        assert_eq!(Threshold::new(0.0, &p).squared(), 0);
        // The default threshold, as the shipped calibration's 1.128 grid point has it.
        assert_eq!(Threshold::new(1.128, &p).squared(), 9981);
        // The extremes saturate instead of wrapping.
        let inf = Threshold::new(f32::INFINITY, &p);
        assert_eq!(inf.squared(), i64::MAX);
        assert!(inf.accepts(i64::MAX));
        let nan = Threshold::new(f32::NAN, &p);
        assert!(nan.accepts(0) && !nan.accepts(1));
        // Opposite clipped templates are the largest distance: 2.0 does not reach it,
        // 1000 does.
        let far = 4 * (p.q as i64).pow(2) * p.dim as i64;
        assert!(!Threshold::new(2.0, &p).accepts(far));
        assert!(Threshold::new(1000.0, &p).accepts(far));
    }
}
