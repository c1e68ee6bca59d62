//! `blindface eval`: accuracy on a labelled pairs file with float, quantised and encrypted
//! decisions side by side, and an optional report (CSV + ROC and histogram PNGs).
//!
//! Every image is embedded once. Every usable image is enrolled as an encrypted template in
//! one keyless gallery under a fresh key; each distinct left-hand image is encrypted once
//! as a probe and matched against the whole gallery, and the app decrypts the distances.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use blindface::eval::{rates, read_pairs, sweep, Rates, Sweep};
use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, quantise, threshold_sq, to_float_l2, Gallery, Params,
    PreparedProbe, SecretKey, Template, TemplateId,
};
use blindface::vision::{load_image, Embedding, FacePipeline, VisionError};

use super::{emit, Globals};

mod report;

/// Distances of one labelled pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairDistances {
    pub line: usize,
    pub file_x: String,
    pub file_y: String,
    pub same: bool,
    pub l2_float: f64,
    pub l2_quantised: f64,
    pub l2_encrypted: f64,
    pub distance_sq_quantised: i64,
    pub distance_sq_encrypted: i64,
}

#[derive(Serialize)]
struct EvalOutput {
    pairs: usize,
    genuine: usize,
    impostor: usize,
    no_face: usize,
    no_face_images: Vec<String>,
    pairs_skipped_no_face: usize,
    images: usize,
    threshold: f32,
    q: i32,
    clipped_components: usize,
    accuracy_float: f64,
    accuracy_quantised: f64,
    accuracy_encrypted: f64,
    float: Rates,
    quantised: Rates,
    encrypted: Rates,
    decisions_differ_float_vs_encrypted: usize,
    decisions_differ_quantised_vs_encrypted: usize,
    encrypted_equals_quantised: bool,
    best_threshold: f64,
    best_accuracy: f64,
    eer: Option<f64>,
    tar_at_far_1e2: Option<f64>,
    tar_at_far_1e3: Option<f64>,
    seconds: f64,
    report: Option<String>,
}

pub fn eval(
    globals: &Globals,
    pairs_path: &Path,
    images: &Path,
    report_dir: Option<&Path>,
) -> Result<()> {
    let started = Instant::now();
    let pairs = read_pairs(pairs_path)?;
    let pipeline = FacePipeline::load_default()?;
    let params = Params::v1();

    // Embed each image once; a missing or unreadable file is an error naming the line.
    let mut embeddings: BTreeMap<String, Option<Embedding>> = BTreeMap::new();
    for pair in &pairs {
        for file in [&pair.file_x, &pair.file_y] {
            if embeddings.contains_key(file) {
                continue;
            }
            let path: PathBuf = images.join(file);
            let context = || {
                format!(
                    "{} line {}: image {}",
                    pairs_path.display(),
                    pair.line,
                    path.display()
                )
            };
            if !path.is_file() {
                anyhow::bail!("{}: no such file", context());
            }
            let img = load_image(&path).with_context(context)?;
            let embedding = match pipeline.embed_largest(&img) {
                Ok((_, e)) => Some(e),
                Err(VisionError::NoFace) => None,
                Err(e) => return Err(e).with_context(context),
            };
            embeddings.insert(file.clone(), embedding);
        }
    }
    let no_face_images: Vec<String> = embeddings
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(f, _)| f.clone())
        .collect();

    // Quantise and enrol every usable image under a fresh key.
    let key = SecretKey::generate(&params);
    let mut templates: HashMap<&str, (TemplateId, Template)> = HashMap::new();
    let mut gallery = Gallery::new(&params);
    let mut clipped_components = 0;
    for (id, (file, embedding)) in embeddings.iter().enumerate() {
        if let Some(e) = embedding {
            let q = quantise(e.as_slice(), &params)?;
            clipped_components += q.clipped;
            gallery.insert(TemplateId(id as u64), encrypt_template(&key, &q.template))?;
            templates.insert(file.as_str(), (TemplateId(id as u64), q.template));
        }
    }

    // One encrypted probe per distinct left-hand image, matched against the whole gallery.
    let mut encrypted: HashMap<(&str, TemplateId), i64> = HashMap::new();
    let mut probed: HashSet<&str> = HashSet::new();
    for pair in &pairs {
        let Some((_, probe)) = templates.get(pair.file_x.as_str()) else {
            continue;
        };
        if !probed.insert(pair.file_x.as_str()) {
            continue;
        }
        let (enc, ctx) = encrypt_probe(&key, probe);
        let result = gallery.identify(&PreparedProbe::new(&enc, &params)?)?;
        for d in decrypt(&key, &ctx, &result)? {
            encrypted.insert((pair.file_x.as_str(), d.id), d.distance_sq);
        }
    }

    let mut rows = Vec::new();
    for pair in &pairs {
        let (Some(Some(ex)), Some(Some(ey))) =
            (embeddings.get(&pair.file_x), embeddings.get(&pair.file_y))
        else {
            continue;
        };
        let (_, tx) = &templates[pair.file_x.as_str()];
        let (idy, ty) = &templates[pair.file_y.as_str()];
        let dq = tx.distance_sq(ty);
        let de = encrypted[&(pair.file_x.as_str(), *idy)];
        rows.push(PairDistances {
            line: pair.line,
            file_x: pair.file_x.clone(),
            file_y: pair.file_y.clone(),
            same: pair.same,
            l2_float: ex.l2(ey) as f64,
            l2_quantised: to_float_l2(dq, &params) as f64,
            l2_encrypted: to_float_l2(de, &params) as f64,
            distance_sq_quantised: dq,
            distance_sq_encrypted: de,
        });
    }
    anyhow::ensure!(!rows.is_empty(), "no pair has a face on both sides");

    let t = globals.threshold;
    let t_sq = threshold_sq(t, &params);
    let same: Vec<bool> = rows.iter().map(|r| r.same).collect();
    let float_dec: Vec<bool> = rows.iter().map(|r| r.l2_float <= t as f64).collect();
    let quant_dec: Vec<bool> = rows
        .iter()
        .map(|r| r.distance_sq_quantised <= t_sq)
        .collect();
    let enc_dec: Vec<bool> = rows
        .iter()
        .map(|r| r.distance_sq_encrypted <= t_sq)
        .collect();
    let differ = |a: &[bool], b: &[bool]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    let l2s: Vec<f64> = rows.iter().map(|r| r.l2_float).collect();
    let s: Sweep = sweep(&l2s, &same);
    let (float, quantised, enc) = (
        rates(&float_dec, &same),
        rates(&quant_dec, &same),
        rates(&enc_dec, &same),
    );

    let report = match report_dir {
        Some(dir) => {
            report::write(dir, &rows, &s, t as f64)?;
            Some(dir.display().to_string())
        }
        None => None,
    };
    let genuine = same.iter().filter(|&&x| x).count();
    let out = EvalOutput {
        pairs: rows.len(),
        genuine,
        impostor: rows.len() - genuine,
        no_face: no_face_images.len(),
        no_face_images,
        pairs_skipped_no_face: pairs.len() - rows.len(),
        images: embeddings.len(),
        threshold: t,
        q: params.q,
        clipped_components,
        accuracy_float: float.accuracy,
        accuracy_quantised: quantised.accuracy,
        accuracy_encrypted: enc.accuracy,
        float,
        quantised,
        encrypted: enc,
        decisions_differ_float_vs_encrypted: differ(&float_dec, &enc_dec),
        decisions_differ_quantised_vs_encrypted: differ(&quant_dec, &enc_dec),
        encrypted_equals_quantised: rows
            .iter()
            .all(|r| r.distance_sq_encrypted == r.distance_sq_quantised),
        best_threshold: s.best_threshold,
        best_accuracy: s.best_accuracy,
        eer: s.eer,
        tar_at_far_1e2: s.tar_at_far_1e2,
        tar_at_far_1e3: s.tar_at_far_1e3,
        seconds: started.elapsed().as_secs_f64(),
        report,
    };
    emit(globals, &out, || table(&out));
    Ok(())
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * x)
    }
}

fn table(o: &EvalOutput) -> String {
    let opt = |x: Option<f64>| {
        x.map(pct)
            .unwrap_or_else(|| "not enough pairs to say".into())
    };
    let mut s = format!(
        "{} pairs ({} genuine, {} impostor) over {} images; {} image(s) with no face{}\n",
        o.pairs,
        o.genuine,
        o.impostor,
        o.images,
        o.no_face,
        if o.no_face > 0 {
            format!(
                ": {} ({} pairs skipped)",
                o.no_face_images.join(", "),
                o.pairs_skipped_no_face
            )
        } else {
            String::new()
        }
    );
    s += &format!(
        "threshold L2 {:.3}, Q = {} ({} components clipped)\n",
        o.threshold, o.q, o.clipped_components
    );
    s += "             accuracy      TAR      FAR\n";
    for (name, r) in [
        ("float", &o.float),
        ("quantised", &o.quantised),
        ("encrypted", &o.encrypted),
    ] {
        s += &format!(
            "  {:<10} {:>9} {:>8} {:>8}\n",
            name,
            pct(r.accuracy),
            pct(r.tar),
            pct(r.far)
        );
    }
    s += &format!(
        "decisions that differ: float vs encrypted {}, quantised vs encrypted {}; encrypted distances equal quantised: {}\n",
        o.decisions_differ_float_vs_encrypted,
        o.decisions_differ_quantised_vs_encrypted,
        if o.encrypted_equals_quantised { "yes" } else { "NO" }
    );
    s += &format!(
        "best threshold on this set {:.3} (accuracy {}), EER {}, TAR@FAR=1% {}, TAR@FAR=0.1% {}\n",
        o.best_threshold,
        pct(o.best_accuracy),
        opt(o.eer),
        opt(o.tar_at_far_1e2),
        opt(o.tar_at_far_1e3)
    );
    if let Some(r) = &o.report {
        s += &format!("report written to {r} (pairs.csv, roc.png, histogram.png)\n");
    }
    s += &format!("took {:.1} s\n", o.seconds);
    s
}
