//! `blindface eval`: accuracy on a labelled pairs file with float, quantised and encrypted
//! decisions side by side, an optional report (CSV + ROC and histogram PNGs) and an
//! optional calibration file (`--calibrate`); or, with `--identify DIR`, identification
//! (1:N) through the real encrypted gallery (see `identify`).
//!
//! Every image is embedded once (both cores, progress on a terminal). Every usable image
//! is enrolled as an encrypted template in one keyless gallery under a fresh key; each
//! distinct left-hand image is encrypted once as a probe and matched against the whole
//! gallery, and the app decrypts the distances. The headline accuracy counts every pair of
//! the file: a pair with an image where no face is found is an error (TAR and FAR count
//! it as not accepted); the figures over scored pairs only stand beside it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use blindface::calibration::Calibration;
use blindface::client::face::{features, quantised};
use blindface::eval::{
    accuracy_all_pairs, identity_from_file_name, l2, rates, read_pairs, sweep, Pair, Rates, Sweep,
};
use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, to_float_l2, Gallery, PreparedProbe, SecretKey,
    Template, TemplateId,
};

use super::output::{emit, pct, Globals};

pub(super) mod embed;
mod identify;
mod projection;
mod report;

pub use embed::Settings;
pub use identify::identify;
pub use projection::fit_projection;
use report::PairDistances;

/// Rates of one kind of decision, counting every pair and over scored pairs only.
#[derive(Serialize)]
struct Figures {
    /// Every pair of the file: a no-face pair is an error (and not accepted).
    all_pairs: Rates,
    /// Pairs with a face on both sides only.
    scored: Rates,
}

#[derive(Serialize)]
struct EvalOutput {
    /// Every pair of the file.
    pairs: usize,
    genuine: usize,
    impostor: usize,
    pairs_scored: usize,
    pairs_no_face: usize,
    images: usize,
    no_face: usize,
    no_face_images: Vec<String>,
    /// Images whose face only the no-face retry found.
    retry_images: Vec<String>,
    /// Images where `largest` and `central` pick different faces.
    images_where_choice_matters: usize,
    settings: Settings,
    threshold: f32,
    q: i32,
    clipped_components: usize,
    /// Headline accuracies, every pair counted.
    accuracy_float: f64,
    accuracy_quantised: f64,
    accuracy_encrypted: f64,
    float: Figures,
    quantised: Figures,
    encrypted: Figures,
    decisions_differ_float_vs_encrypted: usize,
    decisions_differ_quantised_vs_encrypted: usize,
    encrypted_equals_quantised: bool,
    /// Best threshold on this set (float L2, scored pairs).
    best_threshold: f64,
    best_accuracy: f64,
    /// The best threshold's accuracy counting every pair.
    best_accuracy_all_pairs: f64,
    eer: f64,
    tar_at_far_1e2: Option<f64>,
    tar_at_far_1e3: Option<f64>,
    embed_threads: usize,
    embed_seconds: f64,
    /// Mean per image with a face, one thread: detection, and alignment + SFace.
    detect_ms_mean: f64,
    embed_ms_mean: f64,
    seconds: f64,
    report: Option<String>,
    calibration: Option<String>,
    /// With `--all-impostors`: the calibration's impostor pairs (every pair of images of
    /// different identities), and how many of them were also computed through the
    /// encrypted matcher (all equal, or eval fails).
    calibration_impostor_pairs: Option<u64>,
    calibration_impostor_pairs_checked_encrypted: Option<u64>,
}

pub fn eval(
    globals: &Globals,
    pairs_path: &Path,
    images: &Path,
    settings: &Settings,
    report_dir: Option<&Path>,
    calibrate: Option<&Path>,
    all_impostors: bool,
) -> Result<()> {
    let started = Instant::now();
    let (pairs, PairImages { index, names, .. }, run) = embed_pairs(pairs_path, images, settings)?;
    let embeddings = &run.embedded;
    let sorted_names = |pick: &dyn Fn(usize) -> bool| {
        let mut v: Vec<String> = (0..names.len())
            .filter(|&i| pick(i))
            .map(|i| names[i].to_string())
            .collect();
        v.sort();
        v
    };
    let no_face_images = sorted_names(&|i| embeddings[i].is_none());
    let retry_images = sorted_names(&|i| embeddings[i].is_some_and(|e| e.retry));
    let with_face: Vec<_> = embeddings.iter().flatten().collect();
    let mean = |f: &dyn Fn(&embed::Embedded) -> f64| {
        with_face.iter().map(|e| f(e)).sum::<f64>() / with_face.len().max(1) as f64
    };

    // Quantise and enrol every usable image under a fresh key, and decide on its
    // parameters.
    let key = SecretKey::generate(&settings.params);
    let params = *key.params();
    let (threshold, _) = globals.threshold.resolve(&params)?;
    let mut templates: HashMap<usize, Template> = HashMap::new();
    let mut gallery = Gallery::new(&params);
    let mut clipped_components = 0;
    // What is quantised: the embedding (v1) or its projection (v2); float distances are
    // measured between these.
    let features: Vec<Option<Vec<f32>>> = embeddings
        .iter()
        .map(|e| e.map(|e| features(&e.embedding, &params)).transpose())
        .collect::<Result<_, _>>()?;
    for (id, embedding) in embeddings.iter().enumerate() {
        if let Some(e) = embedding {
            let q = quantised(&e.embedding, &params)?;
            clipped_components += q.clipped;
            gallery.insert(
                TemplateId(id as u64 + 1),
                &encrypt_template(&key, &q.template),
            )?;
            templates.insert(id, q.template);
        }
    }

    // One encrypted probe per distinct left-hand image, matched against the whole gallery.
    let lefts: Vec<usize> = {
        let mut seen = HashSet::new();
        pairs
            .iter()
            .map(|p| index[p.file_x.as_str()])
            .filter(|&x| templates.contains_key(&x) && seen.insert(x))
            .collect()
    };
    let bar = embed::progress(lefts.len(), "probes matched");
    let per_probe = lefts
        .par_iter()
        .map(|&x| -> Result<Vec<((usize, TemplateId), i64)>> {
            let (enc, ctx) = encrypt_probe(&key, &templates[&x]);
            let result = gallery.identify(&PreparedProbe::new(&enc, &params)?)?;
            let distances = decrypt(&key, &ctx, &result)?;
            bar.inc(1);
            Ok(distances
                .into_iter()
                .map(|d| ((x, d.id), d.distance_sq))
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let encrypted: HashMap<(usize, TemplateId), i64> = per_probe.into_iter().flatten().collect();
    bar.finish_and_clear();

    // Per pair: distances when both sides have a face.
    let mut rows = Vec::new();
    let mut pair_rows: Vec<Option<usize>> = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        let (x, y) = (index[pair.file_x.as_str()], index[pair.file_y.as_str()]);
        let (Some(_), Some(_)) = (&embeddings[x], &embeddings[y]) else {
            pair_rows.push(None);
            continue;
        };
        let dq = templates[&x].distance_sq(&templates[&y]);
        let de = encrypted[&(x, TemplateId(y as u64 + 1))];
        pair_rows.push(Some(rows.len()));
        rows.push(PairDistances {
            line: pair.line,
            file_x: pair.file_x.clone(),
            file_y: pair.file_y.clone(),
            same: pair.same,
            l2_float: l2(
                features[x].as_deref().expect("a face"),
                features[y].as_deref().expect("a face"),
            ),
            l2_quantised: to_float_l2(dq, &params) as f64,
            l2_encrypted: to_float_l2(de, &params) as f64,
            distance_sq_quantised: dq,
            distance_sq_encrypted: de,
        });
    }
    anyhow::ensure!(!rows.is_empty(), "no pair has a face on both sides");

    let t = threshold.l2();
    let same: Vec<bool> = rows.iter().map(|r| r.same).collect();
    let all_same: Vec<bool> = pairs.iter().map(|p| p.same).collect();
    // Rates need both classes among the scored pairs (and so among all of them).
    let l2s: Vec<f64> = rows.iter().map(|r| r.l2_float).collect();
    let s: Sweep = sweep(&l2s, &same)
        .context("eval needs genuine and impostor pairs with a face on both sides")?;
    let float_dec: Vec<bool> = rows.iter().map(|r| r.l2_float <= t as f64).collect();
    let quant_dec: Vec<bool> = rows
        .iter()
        .map(|r| threshold.accepts(r.distance_sq_quantised))
        .collect();
    let enc_dec: Vec<bool> = rows
        .iter()
        .map(|r| threshold.accepts(r.distance_sq_encrypted))
        .collect();
    let unscored = pairs.len() - rows.len();
    // Every pair: a no-face pair is not accepted and counts as an error.
    let figures = |decisions: &[bool]| -> Result<Figures> {
        let all: Vec<bool> = pair_rows
            .iter()
            .map(|r| r.is_some_and(|i| decisions[i]))
            .collect();
        let scored = rates(decisions, &same)?;
        let correct = decisions.iter().zip(&same).filter(|(a, s)| a == s).count();
        Ok(Figures {
            all_pairs: Rates {
                accuracy: accuracy_all_pairs(correct, rows.len(), unscored),
                ..rates(&all, &all_same)?
            },
            scored,
        })
    };
    let differ = |a: &[bool], b: &[bool]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    let (float, quantised, enc) = (
        figures(&float_dec)?,
        figures(&quant_dec)?,
        figures(&enc_dec)?,
    );

    let report = match report_dir {
        Some(dir) => {
            report::write(dir, &rows, &s, t as f64)?;
            Some(dir.display().to_string())
        }
        None => None,
    };
    let pairs_name = pairs_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut impostors_all: Option<AllImpostors> = None;
    let calibration = match calibrate {
        Some(file) => {
            let distances: Vec<Option<i64>> = pair_rows
                .iter()
                .map(|r| r.map(|i| rows[i].distance_sq_encrypted))
                .collect();
            let (c, source, pipeline) = if all_impostors {
                let a = all_impostor_pairs(&names, &templates, &encrypted)?;
                // The listed genuine pairs, through the encrypted matcher as before.
                let mut genuine_counts: Vec<u64> = Vec::new();
                let mut genuine_no_face = 0u64;
                for (d, _) in distances.iter().zip(&all_same).filter(|(_, s)| **s) {
                    match d {
                        Some(d) => {
                            let d = *d as usize;
                            if genuine_counts.len() <= d {
                                genuine_counts.resize(d + 1, 0);
                            }
                            genuine_counts[d] += 1;
                        }
                        None => genuine_no_face += 1,
                    }
                }
                let genuine = all_same.iter().filter(|&&s| s).count() as u64;
                let c = Calibration::from_counts(
                    &genuine_counts,
                    genuine,
                    &a.counts,
                    a.pairs,
                    genuine_no_face + a.no_face_pairs,
                    &Calibration::fine_grid(),
                    &params,
                )?;
                let identities = names
                    .iter()
                    .filter_map(|n| identity_of(n))
                    .collect::<HashSet<_>>()
                    .len();
                let source = format!(
                    "{pairs_name}: its {genuine} genuine pairs, and as impostor pairs every \
                     pair of two of its {} images of different identities ({} identities, \
                     from the file names), {} pairs",
                    names.len(),
                    identities,
                    a.pairs
                );
                let pipeline = serde_json::json!({
                    "settings": settings,
                    "q": params.q,
                    "distances": "genuine pairs: encrypted squared distances of quantised \
                        templates; impostor pairs: the same squared distances computed in \
                        plaintext (Template::distance_sq), which equal the encrypted \
                        matcher's exactly (tests/he_core.rs)",
                    "genuine": "the genuine pairs listed in the pairs file",
                    "impostor": "every pair of distinct images of different identities among \
                        the pairs file's images (identity: the file name without _NNNN)",
                    "impostor_pairs_checked_encrypted": a.checked,
                });
                impostors_all = Some(a);
                (c, source, pipeline)
            } else {
                let c = Calibration::from_distances(
                    &distances,
                    &all_same,
                    &Calibration::default_grid(),
                    &params,
                )?;
                let source = format!("{pairs_name} ({} pairs)", pairs.len());
                let pipeline = serde_json::json!({
                    "settings": settings,
                    "q": params.q,
                    "distances": "encrypted squared distances of quantised templates",
                });
                (c, source, pipeline)
            };
            let c = c.with_origin(source, command_line(), pipeline);
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(file, c.to_json())
                .with_context(|| format!("writing calibration {}", file.display()))?;
            Some(file.display().to_string())
        }
        None => None,
    };
    let genuine = all_same.iter().filter(|&&x| x).count();
    let out = EvalOutput {
        pairs: pairs.len(),
        genuine,
        impostor: pairs.len() - genuine,
        pairs_scored: rows.len(),
        pairs_no_face: unscored,
        images: names.len(),
        no_face: no_face_images.len(),
        no_face_images,
        retry_images,
        images_where_choice_matters: with_face.iter().filter(|e| e.choice_matters).count(),
        settings: *settings,
        threshold: t,
        q: params.q,
        clipped_components,
        accuracy_float: float.all_pairs.accuracy,
        accuracy_quantised: quantised.all_pairs.accuracy,
        accuracy_encrypted: enc.all_pairs.accuracy,
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
        best_accuracy_all_pairs: s.best_accuracy * rows.len() as f64 / pairs.len() as f64,
        eer: s.eer,
        tar_at_far_1e2: s.tar_at_far_1e2,
        tar_at_far_1e3: s.tar_at_far_1e3,
        embed_threads: run.threads,
        embed_seconds: run.seconds,
        detect_ms_mean: mean(&|e| e.detect_ms),
        embed_ms_mean: mean(&|e| e.embed_ms),
        seconds: started.elapsed().as_secs_f64(),
        report,
        calibration,
        calibration_impostor_pairs: impostors_all.as_ref().map(|a| a.pairs),
        calibration_impostor_pairs_checked_encrypted: impostors_all.as_ref().map(|a| a.checked),
    };
    emit(globals, &out, || table(&out));
    Ok(())
}

/// The identity an image file carries (`images/Name_0001.jpg` -> `Name`).
/// The images of a pairs file, each once, in first-seen order.
struct PairImages {
    /// File name (as in the pairs file) -> its number.
    index: HashMap<String, usize>,
    /// Path and context (for error messages), by number.
    files: Vec<(PathBuf, String)>,
    /// File name, by number.
    names: Vec<String>,
}

/// A pairs file, its images, and their embeddings (in the images' order).
fn embed_pairs(
    pairs_path: &Path,
    images: &Path,
    settings: &Settings,
) -> Result<(Vec<Pair>, PairImages, embed::Run)> {
    let pairs = read_pairs(pairs_path)?;
    let found = pair_images(&pairs, pairs_path, images)?;
    let run = embed::embed_images(&found.files, settings)?;
    Ok((pairs, found, run))
}

/// The images `pairs` names under `images`; a missing file is an error naming the line.
fn pair_images(pairs: &[Pair], pairs_path: &Path, images: &Path) -> Result<PairImages> {
    let mut out = PairImages {
        index: HashMap::new(),
        files: Vec::new(),
        names: Vec::new(),
    };
    for pair in pairs {
        for file in [&pair.file_x, &pair.file_y] {
            if out.index.contains_key(file.as_str()) {
                continue;
            }
            let path: PathBuf = images.join(file);
            let context = format!(
                "{} line {}: image {}",
                pairs_path.display(),
                pair.line,
                path.display()
            );
            if !path.is_file() {
                anyhow::bail!("{context}: no such file");
            }
            out.index.insert(file.clone(), out.files.len());
            out.files.push((path, context));
            out.names.push(file.clone());
        }
    }
    Ok(out)
}

fn identity_of(file: &str) -> Option<&str> {
    let base = Path::new(file).file_name()?.to_str()?;
    identity_from_file_name(base)
}

/// Every impostor pair among the images: counts by squared distance, computed in
/// plaintext from the quantised templates.
struct AllImpostors {
    /// counts[d]: scored impostor pairs at squared distance d.
    counts: Vec<u64>,
    /// All impostor pairs, with a face or not.
    pairs: u64,
    /// Pairs with an image where no face was found.
    no_face_pairs: u64,
    /// Pairs whose distance the encrypted matcher also computed (a probe of one side
    /// against the gallery holding the other): all equal to the plaintext one.
    checked: u64,
}

/// Every pair of two distinct images of different identities (from the file names):
/// `Template::distance_sq`, the exact integer the encrypted matcher returns, counted by
/// value; where eval's encrypted identify already computed the pair, the two must agree.
fn all_impostor_pairs(
    names: &[String],
    templates: &HashMap<usize, Template>,
    encrypted: &HashMap<(usize, TemplateId), i64>,
) -> Result<AllImpostors> {
    let identities: Vec<&str> = names
        .iter()
        .map(|n| {
            identity_of(n).with_context(|| {
                format!(
                    "--all-impostors: `{n}` does not carry an identity; name images \
                     `Name_0001.jpg`"
                )
            })
        })
        .collect::<Result<_>>()?;
    let n = names.len();
    let bar = embed::progress(n, "impostor rows");
    #[derive(Default)]
    struct Acc {
        counts: Vec<u64>,
        pairs: u64,
        no_face: u64,
        checked: u64,
        mismatch: Option<(usize, usize, i64, i64)>,
    }
    let acc = (0..n)
        .into_par_iter()
        .fold(Acc::default, |mut acc, i| {
            for j in i + 1..n {
                if identities[i] == identities[j] {
                    continue;
                }
                acc.pairs += 1;
                let (Some(a), Some(b)) = (templates.get(&i), templates.get(&j)) else {
                    acc.no_face += 1;
                    continue;
                };
                let d = a.distance_sq(b);
                let du = d as usize;
                if acc.counts.len() <= du {
                    acc.counts.resize(du + 1, 0);
                }
                acc.counts[du] += 1;
                let enc = encrypted
                    .get(&(i, TemplateId(j as u64 + 1)))
                    .or_else(|| encrypted.get(&(j, TemplateId(i as u64 + 1))));
                if let Some(&e) = enc {
                    acc.checked += 1;
                    if e != d {
                        acc.mismatch.get_or_insert((i, j, d, e));
                    }
                }
            }
            bar.inc(1);
            acc
        })
        .reduce(Acc::default, |mut a, b| {
            if a.counts.len() < b.counts.len() {
                a.counts.resize(b.counts.len(), 0);
            }
            for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                *x += y;
            }
            a.pairs += b.pairs;
            a.no_face += b.no_face;
            a.checked += b.checked;
            a.mismatch = a.mismatch.or(b.mismatch);
            a
        });
    bar.finish_and_clear();
    if let Some((i, j, d, e)) = acc.mismatch {
        anyhow::bail!(
            "{} vs {}: plaintext squared distance {d} but the encrypted matcher gave {e}",
            names[i],
            names[j]
        );
    }
    Ok(AllImpostors {
        counts: acc.counts,
        pairs: acc.pairs,
        no_face_pairs: acc.no_face,
        checked: acc.checked,
    })
}

/// This process's command line with the program shown as `blindface`.
pub(super) fn command_line() -> String {
    let mut parts = vec!["blindface".to_string()];
    parts.extend(std::env::args().skip(1).map(|a| {
        if a.contains(char::is_whitespace) {
            format!("'{a}'")
        } else {
            a
        }
    }));
    parts.join(" ")
}

fn table(o: &EvalOutput) -> String {
    let opt = |x: Option<f64>| {
        x.map(pct)
            .unwrap_or_else(|| "not enough pairs to say".into())
    };
    let list = |v: &[String]| {
        if v.len() > 8 {
            format!("{}, ... ({} more)", v[..8].join(", "), v.len() - 8)
        } else {
            v.join(", ")
        }
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
                ": {} ({} pairs counted as errors)",
                list(&o.no_face_images),
                o.pairs_no_face
            )
        } else {
            String::new()
        }
    );
    s += &format!(
        "face: {}, embedding: {}, detection score >= {}{}; {} image(s) found by the retry{}; the face choice mattered in {} image(s)\n",
        o.settings.face,
        o.settings.embedding,
        o.settings.score_threshold,
        match o.settings.retry_score_threshold {
            Some(r) => format!(", no-face retry at >= {r}"),
            None => ", no retry".into(),
        },
        o.retry_images.len(),
        if o.retry_images.is_empty() {
            String::new()
        } else {
            format!(" ({})", list(&o.retry_images))
        },
        o.images_where_choice_matters
    );
    s += &format!(
        "threshold L2 {:.3}, Q = {} ({} components clipped)\n",
        o.threshold, o.q, o.clipped_components
    );
    s += "             accuracy      TAR      FAR   (every pair)   accuracy      TAR      FAR   (scored pairs)\n";
    for (name, f) in [
        ("float", &o.float),
        ("quantised", &o.quantised),
        ("encrypted", &o.encrypted),
    ] {
        let (a, b) = (&f.all_pairs, &f.scored);
        s += &format!(
            "  {:<10} {:>9} {:>8} {:>8}                {:>9} {:>8} {:>8}\n",
            name,
            pct(a.accuracy),
            pct(a.tar),
            pct(a.far),
            pct(b.accuracy),
            pct(b.tar),
            pct(b.far)
        );
    }
    s += &format!(
        "decisions that differ: float vs encrypted {}, quantised vs encrypted {}; encrypted distances equal quantised: {}\n",
        o.decisions_differ_float_vs_encrypted,
        o.decisions_differ_quantised_vs_encrypted,
        if o.encrypted_equals_quantised { "yes" } else { "NO" }
    );
    s += &format!(
        "best threshold on this set {:.3} (accuracy {}, {} counting every pair), EER {}, TAR@FAR=1% {}, TAR@FAR=0.1% {}\n",
        o.best_threshold,
        pct(o.best_accuracy),
        pct(o.best_accuracy_all_pairs),
        pct(o.eer),
        opt(o.tar_at_far_1e2),
        opt(o.tar_at_far_1e3)
    );
    if let Some(r) = &o.report {
        s += &format!("report written to {r} (pairs.csv, roc.png, histogram.png)\n");
    }
    if let Some(c) = &o.calibration {
        s += &format!("calibration written to {c}\n");
    }
    if let (Some(n), Some(k)) = (
        o.calibration_impostor_pairs,
        o.calibration_impostor_pairs_checked_encrypted,
    ) {
        s += &format!(
            "calibration impostors: all {n} pairs of images of different identities, in \
             plaintext; {k} of them also through the encrypted matcher, all equal\n"
        );
    }
    s += &format!(
        "took {:.1} s ({:.1} s embedding on {} threads; per image {:.1} ms detection, {:.1} ms embedding, one thread each)\n",
        o.seconds, o.embed_seconds, o.embed_threads, o.detect_ms_mean, o.embed_ms_mean
    );
    s
}
