//! `blindface eval --pairs FILE --images DIR --fit-projection OUT.json`: chooses the
//! dimension of the compact templates' projection by cross-validation on a pairs file,
//! then fits it on every image of that file with a face. Run it on LFW View 1's
//! DevTrain only: the projection must never see DevTest or anything accuracy is reported
//! on.
//!
//! Cross-validation: pair `i` of the file is in fold `i mod 10`. For each fold, PCA
//! is fitted on the images of the identities that appear in none of the fold's pairs, and
//! the fold's pairs are decided at the threshold most accurate on the other folds' pairs
//! (under the same fit); accuracy counts every scored pair of every fold. TAR at FAR 0.1%
//! and 1% and the EER pool, over the folds, every pair of two of a fold's images (same
//! identity: genuine; different: impostor: ~100,000 a fold), each under its fold's fit,
//! so FAR 0.1% rests on hundreds of impostor pairs rather than on one. 128-D is the
//! embeddings as they are. The dimension chosen is the smallest candidate whose
//! accuracy is within 0.1 pp of 128-D's and whose TAR at FAR 0.1% is within 0.3 pp
//! (`--dims` overrides it).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use blindface::eval::{l2, sweep};
use blindface::vision::projection::{Projection, Provenance};
use blindface::vision::EMBEDDING_DIM;

use super::super::output::{emit, pct, Globals};
use super::{command_line, embed_pairs, identity_of, PairImages, Settings};

const FOLDS: usize = 10;
/// Dimensions tried (128: no projection).
const CANDIDATES: [usize; 8] = [48, 56, 64, 72, 80, 96, 112, 128];
/// The gates a dimension must pass against 128-D (percentage points as fractions).
const MAX_ACCURACY_LOSS: f64 = 0.001;
const MAX_TAR_LOSS: f64 = 0.003;

#[derive(Serialize)]
struct Row {
    dims: usize,
    /// Cross-validated accuracy over the scored listed pairs.
    accuracy: f64,
    tar_at_far_1e3: f64,
    tar_at_far_1e2: f64,
    eer: f64,
    genuine_pairs: usize,
    impostor_pairs: usize,
    passes: bool,
}

#[derive(Serialize)]
struct Output {
    pairs: usize,
    pairs_scored: usize,
    images: usize,
    images_with_face: usize,
    identities: usize,
    folds: usize,
    rows: Vec<Row>,
    chosen_dims: Option<usize>,
    written: Option<String>,
    sha256: Option<String>,
    explained_variance: Option<f64>,
    /// |component| of the fitted projection over the file's images: the 99th, 99.9th and
    /// 99.99th percentiles and the largest (what a quantiser's clipping bound must hold).
    component_quantiles: Option<[f32; 4]>,
}

type Vector = [f32; EMBEDDING_DIM];

pub fn fit_projection(
    globals: &Globals,
    pairs_path: &Path,
    images: &Path,
    settings: &Settings,
    out: &Path,
    dims: Option<usize>,
) -> Result<()> {
    let (pairs, PairImages { index, names, .. }, run) = embed_pairs(pairs_path, images, settings)?;
    let emb: Vec<Option<Vector>> = run
        .embedded
        .iter()
        .map(|e| e.map(|e| e.embedding.0))
        .collect();
    let identity: Vec<String> = names
        .iter()
        .map(|n| {
            identity_of(n)
                .map(str::to_string)
                .with_context(|| format!("{n}: no identity in the file name (Name_0001.jpg)"))
        })
        .collect::<Result<_>>()?;
    // Scored pairs: (x, y, same, fold).
    let scored: Vec<(usize, usize, bool, usize)> = pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (x, y) = (index[p.file_x.as_str()], index[p.file_y.as_str()]);
            (emb[x].is_some() && emb[y].is_some()).then_some((x, y, p.same, i % FOLDS))
        })
        .collect();
    anyhow::ensure!(!scored.is_empty(), "no pair has a face on both sides");

    let mut rows = Vec::new();
    for &d in &CANDIDATES {
        let folds: Vec<FoldOutcome> = (0..FOLDS)
            .into_par_iter()
            .map(|k| fold(k, d, &pairs, &index, &emb, &identity, &scored))
            .collect::<Result<_>>()?;
        let correct: usize = folds.iter().map(|f| f.correct).sum();
        let (mut dist, mut same) = (Vec::new(), Vec::new());
        for f in folds {
            dist.extend(f.pooled.iter().map(|p| p.0));
            same.extend(f.pooled.iter().map(|p| p.1));
        }
        let s = sweep(&dist, &same).context("both classes in the pooled pairs")?;
        rows.push(Row {
            dims: d,
            accuracy: correct as f64 / scored.len() as f64,
            tar_at_far_1e3: s.tar_at_far_1e3.unwrap_or(f64::NAN),
            tar_at_far_1e2: s.tar_at_far_1e2.unwrap_or(f64::NAN),
            eer: s.eer,
            genuine_pairs: same.iter().filter(|&&s| s).count(),
            impostor_pairs: same.iter().filter(|&&s| !s).count(),
            passes: false,
        });
    }
    let base = rows
        .last()
        .map(|r| (r.accuracy, r.tar_at_far_1e3))
        .expect("128 is tried");
    for r in &mut rows {
        r.passes = r.accuracy >= base.0 - MAX_ACCURACY_LOSS - 1e-12
            && r.tar_at_far_1e3 >= base.1 - MAX_TAR_LOSS - 1e-12;
    }
    let chosen = dims.or_else(|| {
        rows.iter()
            .find(|r| r.passes && r.dims < EMBEDDING_DIM)
            .map(|r| r.dims)
    });

    let mut output = Output {
        pairs: pairs.len(),
        pairs_scored: scored.len(),
        images: emb.len(),
        images_with_face: emb.iter().flatten().count(),
        identities: identity.iter().collect::<HashSet<_>>().len(),
        folds: FOLDS,
        rows,
        chosen_dims: chosen,
        written: None,
        sha256: None,
        explained_variance: None,
        component_quantiles: None,
    };
    if let Some(d) = chosen {
        let with_face: Vec<Vector> = emb.iter().flatten().copied().collect();
        let identities = (0..emb.len())
            .filter(|&i| emb[i].is_some())
            .map(|i| &identity[i])
            .collect::<HashSet<_>>()
            .len();
        let command = command_line();
        let fitted_on = format!(
            "LFW View 1 {} (every image of its pairs with a face; embeddings as the product makes them: {:?} face, {:?})",
            if pairs_path.to_string_lossy().contains("DevTrain") { "DevTrain" } else { "pairs file" },
            settings.face,
            settings.embedding
        );
        let p = Projection::fit(&with_face, d, |kept| Provenance {
            command,
            fitted_on,
            images: with_face.len(),
            identities,
            explained_variance: kept,
        })?;
        let text = p.to_json();
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        output.written = Some(out.display().to_string());
        output.sha256 = Some(hex::encode(Sha256::digest(text.as_bytes())));
        output.explained_variance = Some(p.provenance().explained_variance);
        let mut all: Vec<f32> = with_face
            .iter()
            .filter_map(|e| p.apply(e).ok())
            .flatten()
            .map(f32::abs)
            .collect();
        all.sort_by(f32::total_cmp);
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        output.component_quantiles = Some([at(0.99), at(0.999), at(0.9999), at(1.0)]);
    }
    emit(globals, &output, || table(&output));
    Ok(())
}

struct FoldOutcome {
    /// Right decisions among the fold's scored listed pairs.
    correct: usize,
    /// Every pair of two of the fold's images: distance, same identity.
    pooled: Vec<(f64, bool)>,
}

fn fold(
    k: usize,
    d: usize,
    pairs: &[blindface::eval::Pair],
    index: &std::collections::HashMap<String, usize>,
    emb: &[Option<Vector>],
    identity: &[String],
    scored: &[(usize, usize, bool, usize)],
) -> Result<FoldOutcome> {
    let mut test_images: Vec<usize> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if i % FOLDS == k {
            test_images.push(index[p.file_x.as_str()]);
            test_images.push(index[p.file_y.as_str()]);
        }
    }
    test_images.sort_unstable();
    test_images.dedup();
    let test_ids: HashSet<&str> = test_images.iter().map(|&i| identity[i].as_str()).collect();
    // The fold's space: the embeddings themselves (128), or a fit without its identities.
    let space: Vec<Option<Vec<f32>>> = if d == EMBEDDING_DIM {
        emb.iter().map(|e| e.map(|e| e.to_vec())).collect()
    } else {
        let train: Vec<Vector> = (0..emb.len())
            .filter(|&i| !test_ids.contains(identity[i].as_str()))
            .filter_map(|i| emb[i])
            .collect();
        let p = Projection::fit(&train, d, |kept| Provenance {
            command: String::new(),
            fitted_on: format!("fold {k}"),
            images: train.len(),
            identities: 0,
            explained_variance: kept,
        })?;
        emb.iter()
            .map(|e| e.as_ref().and_then(|e| p.apply(e).ok()))
            .collect()
    };
    let dist = |x: usize, y: usize| -> Option<f64> {
        Some(l2(space[x].as_deref()?, space[y].as_deref()?))
    };
    // The threshold most accurate on the other folds' pairs.
    let (mut train_d, mut train_s) = (Vec::new(), Vec::new());
    for &(x, y, same, f) in scored {
        if f != k {
            if let Some(v) = dist(x, y) {
                train_d.push(v);
                train_s.push(same);
            }
        }
    }
    let t = sweep(&train_d, &train_s)?.best_threshold;
    let correct = scored
        .iter()
        .filter(|&&(x, y, same, f)| f == k && dist(x, y).is_some_and(|v| (v <= t) == same))
        .count();
    let with_face: Vec<usize> = test_images
        .into_iter()
        .filter(|&i| space[i].is_some())
        .collect();
    let mut pooled = Vec::with_capacity(with_face.len() * with_face.len() / 2);
    for (a, &x) in with_face.iter().enumerate() {
        for &y in &with_face[a + 1..] {
            let v = dist(x, y).expect("both have a face");
            pooled.push((v, identity[x] == identity[y]));
        }
    }
    Ok(FoldOutcome { correct, pooled })
}

fn table(o: &Output) -> String {
    let mut s = format!(
        "{} pairs ({} scored), {} images ({} with a face), {} identities; {}-fold cross-validation\n\n",
        o.pairs, o.pairs_scored, o.images, o.images_with_face, o.identities, o.folds
    );
    s += "  dims  accuracy  TAR@FAR0.1%  TAR@FAR1%    EER   genuine  impostor  gates\n";
    for r in &o.rows {
        s += &format!(
            "  {:>4}  {:>8}  {:>11}  {:>9}  {:>6}  {:>7}  {:>8}  {}\n",
            r.dims,
            pct(r.accuracy),
            pct(r.tar_at_far_1e3),
            pct(r.tar_at_far_1e2),
            pct(r.eer),
            r.genuine_pairs,
            r.impostor_pairs,
            if r.dims == EMBEDDING_DIM {
                "(baseline)"
            } else if r.passes {
                "pass"
            } else {
                "fail"
            }
        );
    }
    s += &format!(
        "\ngates: accuracy within {:.1} pp of 128-D, TAR at FAR 0.1% within {:.1} pp\n",
        MAX_ACCURACY_LOSS * 100.0,
        MAX_TAR_LOSS * 100.0
    );
    match (&o.chosen_dims, &o.written) {
        (Some(d), Some(w)) => {
            s += &format!(
                "chosen: {d} dimensions ({} of the variance); written to {w}\nSHA-256 {}\n",
                o.explained_variance.map(pct).unwrap_or_default(),
                o.sha256.as_deref().unwrap_or("")
            );
            if let Some([p99, p999, p9999, max]) = o.component_quantiles {
                s += &format!(
                    "|component| after projection: 99% {p99:.3}, 99.9% {p999:.3}, 99.99% {p9999:.3}, max {max:.3}\n"
                );
            }
        }
        _ => s += "no dimension below 128 passes the gates: keep 128-D (nothing written)\n",
    }
    s
}
