//! From a detected face to the integer template the encrypted core takes: embed (SFace),
//! project (parameter sets of fewer than 128 dimensions: the shipped projection),
//! quantise. The one place every app-side caller (app worker, CLI, eval) goes through, so
//! enrolment and probes are always made the same way.

use image::RgbImage;

use super::ClientError;
use crate::he::{quantise, HeError, Params, Quantised, Template};
use crate::vision::projection::Projection;
use crate::vision::{Embedding, Face, FacePipeline, EMBEDDING_DIM};

/// What `params` quantises of an embedding: the embedding itself (128-D, v1), or its
/// projection to `params.dim` (v2: [`Projection::shipped`], which must have that many
/// dimensions).
pub fn features(embedding: &Embedding, params: &Params) -> Result<Vec<f32>, ClientError> {
    if params.dim == EMBEDDING_DIM {
        return Ok(embedding.as_slice().to_vec());
    }
    let projection = Projection::shipped()?;
    if projection.dims() != params.dim {
        return Err(HeError::Dimension {
            expected: params.dim,
            got: projection.dims(),
        }
        .into());
    }
    Ok(projection.apply(embedding.as_slice())?)
}

/// The quantised template of an embedding under `params` (with how many components
/// were clipped).
pub fn quantised(embedding: &Embedding, params: &Params) -> Result<Quantised, ClientError> {
    Ok(quantise(&features(embedding, params)?, params)?)
}

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
    let template = quantised(&embedding, params)?.template;
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

    /// v1 quantises the embedding itself; v2 its projection to 80 unit-length dimensions,
    /// whose distances follow the embeddings' (the same order for near and far pairs).
    #[test]
    fn each_parameter_set_quantises_what_it_should() {
        use crate::he::Params;
        let a = Embedding::from_raw(
            &(0..128)
                .map(|i| (i as f32 * 0.37).sin())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let near = Embedding::from_raw(
            &a.as_slice()
                .iter()
                .enumerate()
                .map(|(i, v)| v + 0.02 * (i as f32).cos())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let far = Embedding::from_raw(
            &(0..128)
                .map(|i| (i as f32 * 1.91).cos())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(features(&a, &Params::v1()).unwrap(), a.as_slice().to_vec());
        let v2 = Params::v2();
        let (fa, fnear, ffar) = (
            features(&a, &v2).unwrap(),
            features(&near, &v2).unwrap(),
            features(&far, &v2).unwrap(),
        );
        assert_eq!(fa.len(), 80);
        assert!((fa.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        let l2 = crate::eval::l2;
        assert!(l2(&fa, &fnear) < l2(&fa, &ffar));
        let q = quantised(&a, &v2).unwrap();
        assert_eq!(q.template.values().len(), 80);
        // A parameter set whose dimension the shipped projection does not have is refused.
        let odd = Params { dim: 64, ..v2 };
        assert!(matches!(
            features(&a, &odd),
            Err(ClientError::Crypto(HeError::Dimension {
                expected: 64,
                got: 80
            }))
        ));
    }

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
