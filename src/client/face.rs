//! From a detected face to the integer template the encrypted core takes: embed (SFace),
//! quantise. The one place every app-side caller (app worker, CLI, eval) goes through, so
//! enrolment and probes are always made the same way.

use image::RgbImage;

use super::ClientError;
use crate::he::{quantise, Params, Template};
use crate::vision::{Embedding, Face, FacePipeline};

/// A face embedded (float, for display and evaluation) and quantised (what is encrypted).
#[derive(Debug, Clone)]
pub struct EmbeddedFace {
    pub embedding: Embedding,
    pub template: Template,
}

/// Embeds and quantises `face` in `image`.
pub fn embed_face(
    pipeline: &FacePipeline,
    image: &RgbImage,
    face: &Face,
    params: &Params,
) -> Result<EmbeddedFace, ClientError> {
    let embedding = pipeline.embed(image, face)?;
    let template = quantise(embedding.as_slice(), params)?.template;
    Ok(EmbeddedFace {
        embedding,
        template,
    })
}

/// The quantised template of `face` in `image`.
pub fn template_of(
    pipeline: &FacePipeline,
    image: &RgbImage,
    face: &Face,
    params: &Params,
) -> Result<Template, ClientError> {
    Ok(embed_face(pipeline, image, face, params)?.template)
}

/// Which detected face a user's request means (a `--face N`, or none given). Not to be
/// confused with [`crate::vision::FaceChoice`], the rule that makes one face stand for an
/// image in evaluation: this one refuses rather than guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceSelection {
    /// The largest; refuse a photo with several faces (enrolment: never guess who).
    OnlyOne,
    /// The largest, whatever else is there (probes).
    Largest,
    /// The N-th face (1-based) in detection order, largest first (`detect` numbers them).
    Number(usize),
}

/// Picks a face from `faces` (largest first) by `choice`; returns its 1-based number.
pub fn choose_face(faces: &[Face], choice: FaceSelection) -> Result<(usize, Face), ClientError> {
    if faces.is_empty() {
        return Err(ClientError::NoFace);
    }
    match choice {
        FaceSelection::Largest => Ok((1, faces[0])),
        FaceSelection::OnlyOne if faces.len() == 1 => Ok((1, faces[0])),
        FaceSelection::OnlyOne => Err(ClientError::SeveralFaces {
            boxes: faces.iter().map(|f| f.bbox).collect(),
        }),
        FaceSelection::Number(n) if (1..=faces.len()).contains(&n) => Ok((n, faces[n - 1])),
        FaceSelection::Number(n) => Err(ClientError::NoSuchFace {
            number: n,
            found: faces.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(w: f32) -> Face {
        Face {
            bbox: [0.0, 0.0, w, w],
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn choices() {
        let faces = [face(30.0), face(20.0), face(10.0)];
        assert_eq!(choose_face(&faces, FaceSelection::Largest).unwrap().0, 1);
        assert_eq!(
            choose_face(&faces, FaceSelection::Number(3))
                .unwrap()
                .1
                .bbox[2],
            10.0
        );
        assert!(matches!(
            choose_face(&faces, FaceSelection::OnlyOne),
            Err(ClientError::SeveralFaces { boxes }) if boxes.len() == 3
        ));
        assert!(matches!(
            choose_face(&faces, FaceSelection::Number(4)),
            Err(ClientError::NoSuchFace {
                number: 4,
                found: 3
            })
        ));
        assert!(matches!(
            choose_face(&faces[..1], FaceSelection::OnlyOne),
            Ok((1, _))
        ));
        assert!(matches!(
            choose_face(&[], FaceSelection::Largest),
            Err(ClientError::NoFace)
        ));
    }
}
