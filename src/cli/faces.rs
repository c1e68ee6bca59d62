//! `blindface detect` and `blindface compare`: the face pipeline on image files, with the
//! encrypted distance beside the float one.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use blindface::client::face::{choose_face, embed_face, features, FaceSelection};
use blindface::client::keys::{open_key, KeyOrigin, KeyPolicy};
use blindface::he::{
    decrypt_for, encrypt_probe, encrypt_template, to_float_l2, Gallery, PreparedProbe, Template,
    TemplateId,
};
use blindface::vision::{load_image, Face, FacePipeline};

use super::output::{emit, Globals};

#[derive(Serialize)]
struct FaceOut {
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
}

impl From<&Face> for FaceOut {
    fn from(f: &Face) -> Self {
        FaceOut {
            score: f.score,
            bbox: f.bbox,
            landmarks: f.landmarks,
        }
    }
}

#[derive(Serialize)]
struct DetectOutput {
    image: String,
    width: u32,
    height: u32,
    faces: Vec<FaceOut>,
    /// No face reached the score threshold; these are the no-face retry's (lower score).
    retry: bool,
    score_threshold: f32,
    retry_score_threshold: Option<f32>,
}

pub fn detect(globals: &Globals, image: &Path) -> Result<()> {
    let pipeline = FacePipeline::load_default()?;
    let img = load_image(image)?;
    let detection = pipeline.detection(&img)?;
    let faces = detection.faces;
    if faces.is_empty() && !globals.json {
        anyhow::bail!("no face found in {}", image.display());
    }
    let config = pipeline.options().detector;
    let out = DetectOutput {
        image: image.display().to_string(),
        width: img.width(),
        height: img.height(),
        faces: faces.iter().map(FaceOut::from).collect(),
        retry: detection.retry,
        score_threshold: config.score_threshold,
        retry_score_threshold: config.retry_score_threshold,
    };
    emit(globals, &out, || {
        let retry = match (out.retry, out.retry_score_threshold) {
            (true, Some(r)) => format!(
                ", found by the no-face retry (score >= {r}; none reached {})",
                out.score_threshold
            ),
            _ => String::new(),
        };
        let mut s = format!(
            "{} ({}x{}): {} face(s){retry}\n  #  score     x      y      w      h   landmarks (right eye, left eye, nose, right mouth, left mouth)\n",
            out.image,
            out.width,
            out.height,
            out.faces.len()
        );
        for (i, f) in out.faces.iter().enumerate() {
            let lm: Vec<String> = f
                .landmarks
                .iter()
                .map(|[x, y]| format!("({x:.0},{y:.0})"))
                .collect();
            s += &format!(
                "{:>3}  {:.3} {:>6.0} {:>6.0} {:>6.0} {:>6.0}   {}\n",
                i + 1,
                f.score,
                f.bbox[0],
                f.bbox[1],
                f.bbox[2],
                f.bbox[3],
                lm.join(" ")
            );
        }
        s
    });
    Ok(())
}

#[derive(Serialize)]
struct CompareOutput {
    image_a: String,
    image_b: String,
    cosine: f32,
    l2: f32,
    l2_quantised: f32,
    l2_encrypted: f32,
    distance_sq_quantised: i64,
    distance_sq_encrypted: i64,
    encrypted_equals_quantised: bool,
    threshold: f32,
    /// What the threshold means, when it came from --far.
    #[serde(skip_serializing_if = "Option::is_none")]
    operating_point: Option<String>,
    same_person: bool,
    same_person_float: bool,
    key: String,
}

/// The largest face of `path`: the float vector its template quantises (the embedding
/// for v1, its projection for v2: float distances are measured between these, on the
/// threshold's scale) and its template.
fn embed_file(
    pipeline: &FacePipeline,
    path: &Path,
    params: &blindface::he::Params,
) -> Result<(Vec<f32>, Template)> {
    let img = load_image(path)?;
    let faces = pipeline.detect(&img)?;
    let (_, face) = choose_face(&faces, FaceSelection::Largest)
        .map_err(|_| anyhow::anyhow!("no face found in {}", path.display()))?;
    let e = embed_face(pipeline, &img, &face, params)
        .with_context(|| format!("embedding {}", path.display()))?;
    Ok((features(&e.embedding, params)?, e.template))
}

pub fn compare(globals: &Globals, a: &Path, b: &Path) -> Result<()> {
    let pipeline = FacePipeline::load_default()?;
    let opened = open_key(&globals.key, KeyPolicy::EphemeralIfMissing)?;
    let key = opened.key;
    let params = *key.params();
    let (threshold, operating_point) = globals.threshold.resolve(&params)?;
    let (ea, ta) = embed_file(&pipeline, a, &params)?;
    let (eb, tb) = embed_file(&pipeline, b, &params)?;
    let key_path = (opened.origin == KeyOrigin::File).then(|| globals.key.display().to_string());

    // B is enrolled (GLWE), A is the probe (GGSW); the matcher sees only ciphertexts.
    let mut gallery = Gallery::new(&params);
    let id = TemplateId(1);
    gallery.insert(id, &encrypt_template(&key, &tb))?;
    let (probe, ctx) = encrypt_probe(&key, &ta);
    let prepared = PreparedProbe::new(&probe, &params)?;
    let result = gallery.verify(&prepared, id)?;
    let distance = decrypt_for(&key, &ctx, &result, id)?.distance_sq;
    let quantised = ta.distance_sq(&tb);

    // Both unit vectors: the cosine is their dot product.
    let l2 = blindface::eval::l2(&ea, &eb) as f32;
    let cosine = ea.iter().zip(&eb).map(|(x, y)| x * y).sum();
    let out = CompareOutput {
        image_a: a.display().to_string(),
        image_b: b.display().to_string(),
        cosine,
        l2,
        l2_quantised: to_float_l2(quantised, &params),
        l2_encrypted: to_float_l2(distance, &params),
        distance_sq_quantised: quantised,
        distance_sq_encrypted: distance,
        encrypted_equals_quantised: distance == quantised,
        threshold: threshold.l2(),
        operating_point,
        same_person: threshold.accepts(distance),
        same_person_float: l2 <= threshold.l2(),
        key: key_path.unwrap_or_else(|| "ephemeral (no key file yet)".into()),
    };
    emit(globals, &out, || {
        let meaning = out
            .operating_point
            .as_ref()
            .map(|p| format!("  operating point   {p}\n"))
            .unwrap_or_default();
        format!(
            "{} vs {}\n  cosine            {:.4}\n  L2 (float)        {:.4}\n  L2 (quantised)    {:.4}   squared {}\n  L2 (encrypted)    {:.4}   squared {} ({})\n  threshold         {:.3}\n{meaning}  verdict           {}\n",
            out.image_a,
            out.image_b,
            out.cosine,
            out.l2,
            out.l2_quantised,
            out.distance_sq_quantised,
            out.l2_encrypted,
            out.distance_sq_encrypted,
            if out.encrypted_equals_quantised {
                "exact"
            } else {
                "MISMATCH"
            },
            out.threshold,
            if out.same_person {
                "same person"
            } else {
                "different people"
            }
        )
    });
    Ok(())
}
