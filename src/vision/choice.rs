//! Which face stands for an image when one is needed (enrolment, probes, evaluation).
//!
//! A detector can find several faces in one photo: bystanders, a poster, a child. The
//! rule that picks the one to embed is a named option, never implicit:
//! - [`FaceChoice::Largest`] — the largest box (ties: higher score). The product's rule
//!   for a photo or frame where nobody selected a face: the person in front of the
//!   camera is the largest face.
//! - [`FaceChoice::Central`] — the box whose centre is nearest the image centre (ties:
//!   larger box). The rule of datasets whose images are cropped around the labelled
//!   person, such as LFW (deep-funneled 250x250, labelled face in the middle).
//!
//! A face the user selected (the app's click) needs no rule: embed that face directly
//! with [`crate::vision::FacePipeline::embed`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::detect::Face;

/// The rule that picks one face among those detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceChoice {
    /// The largest box (the product's default).
    #[default]
    Largest,
    /// The box whose centre is nearest the image centre (LFW's labelled face).
    Central,
}

impl FaceChoice {
    /// Index into `faces` of the face this rule picks in a `width` x `height` image;
    /// `None` if `faces` is empty.
    pub fn pick(self, faces: &[Face], width: u32, height: u32) -> Option<usize> {
        let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
        let off_centre = |f: &Face| {
            let (fx, fy) = (f.bbox[0] + f.bbox[2] / 2.0, f.bbox[1] + f.bbox[3] / 2.0);
            (fx - cx).powi(2) + (fy - cy).powi(2)
        };
        let better = |a: &Face, b: &Face| match self {
            FaceChoice::Largest => a
                .area()
                .total_cmp(&b.area())
                .then(a.score.total_cmp(&b.score)),
            FaceChoice::Central => off_centre(b)
                .total_cmp(&off_centre(a))
                .then(a.area().total_cmp(&b.area())),
        };
        // The first of equals wins, so the result does not depend on the sort's stability.
        let mut best: Option<usize> = None;
        for (i, f) in faces.iter().enumerate() {
            if best.is_none_or(|b| better(f, &faces[b]).is_gt()) {
                best = Some(i);
            }
        }
        best
    }

    /// The option's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            FaceChoice::Largest => "largest",
            FaceChoice::Central => "central",
        }
    }
}

impl fmt::Display for FaceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "largest" => Ok(FaceChoice::Largest),
            "central" => Ok(FaceChoice::Central),
            other => Err(format!(
                "unknown face choice `{other}` (use `largest` or `central`)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, side: f32, score: f32) -> Face {
        Face {
            score,
            bbox: [x, y, side, side],
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn largest_and_central_pick_different_faces() {
        // 250x250 image: a big face at the left edge, a smaller one in the middle.
        let faces = [face(0.0, 60.0, 140.0, 0.95), face(85.0, 85.0, 80.0, 0.99)];
        assert_eq!(FaceChoice::Largest.pick(&faces, 250, 250), Some(0));
        assert_eq!(FaceChoice::Central.pick(&faces, 250, 250), Some(1));
        assert_eq!(FaceChoice::Central.pick(&[], 250, 250), None);
        assert_eq!(FaceChoice::Largest.pick(&[], 250, 250), None);
    }

    #[test]
    fn ties_break_by_score_then_size_then_order() {
        let same_size = [face(0.0, 0.0, 50.0, 0.91), face(100.0, 0.0, 50.0, 0.97)];
        assert_eq!(FaceChoice::Largest.pick(&same_size, 400, 400), Some(1));
        // Both centred: the larger one.
        let nested = [face(75.0, 75.0, 50.0, 0.99), face(50.0, 50.0, 100.0, 0.9)];
        assert_eq!(FaceChoice::Central.pick(&nested, 200, 200), Some(1));
        let twins = [face(0.0, 0.0, 50.0, 0.9), face(0.0, 0.0, 50.0, 0.9)];
        assert_eq!(FaceChoice::Largest.pick(&twins, 400, 400), Some(0));
        assert_eq!(FaceChoice::Central.pick(&twins, 400, 400), Some(0));
    }

    #[test]
    fn names_round_trip() {
        for c in [FaceChoice::Largest, FaceChoice::Central] {
            assert_eq!(c.to_string().parse::<FaceChoice>(), Ok(c));
        }
        assert_eq!(" Central ".parse::<FaceChoice>(), Ok(FaceChoice::Central));
        let e = "middle".parse::<FaceChoice>().unwrap_err();
        assert!(e.contains("middle") && e.contains("central"), "{e}");
    }
}
