//! Accuracy evaluation: labelled pairs files and the metrics computed over distances
//! (accuracy, TAR/FAR at a threshold, best threshold, EER, TAR at fixed FAR), and for
//! identification (1:N) the labelled folder, its enrolment/probe/stranger split and the
//! search metrics (rank-1, FNIR at fixed FPIR, stranger false accepts).
//!
//! Pure computation on numbers and file names: the CLI (`blindface eval`) runs the face
//! pipeline, the encryption and the matcher and hands the distances here. Rates and the
//! sweep count with the ROC core ([`crate::roc`]), as calibrations do; verdicts at a
//! threshold are [`Threshold::accepts`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::he::Threshold;
use crate::roc::{equal_error, Classes, RocError, SortedDistances, Tally};
use crate::vision::is_image;

/// One labelled pair from a pairs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// 1-based line number in the file (for messages).
    pub line: usize,
    pub file_x: String,
    pub file_y: String,
    pub same: bool,
}

/// A pairs file problem, naming the line.
#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("cannot read pairs file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the header must be `file_x,file_y,Decision`, found `{found}`")]
    Header { path: String, found: String },
    #[error("{path} line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("{path}: no pairs")]
    Empty { path: String },
}

/// Parses a decision: Yes/No, true/false, 1/0 (case-insensitive).
pub fn parse_decision(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Reads a pairs file with the header `file_x,file_y,Decision`.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, PairsError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PairsError::Io {
        path: p.clone(),
        source,
    })?;
    parse_pairs(&text, &p)
}

/// Parses the text of a pairs file; `name` is used in messages.
pub fn parse_pairs(text: &str, name: &str) -> Result<Vec<Pair>, PairsError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut pairs = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 1;
        let err = |problem: String| PairsError::Line {
            path: name.to_string(),
            line,
            problem,
        };
        let record = record.map_err(|e| err(e.to_string()))?;
        if line == 1 {
            let fields: Vec<String> = record.iter().map(|f| f.to_ascii_lowercase()).collect();
            if fields != ["file_x", "file_y", "decision"] {
                return Err(PairsError::Header {
                    path: name.to_string(),
                    found: record.iter().collect::<Vec<_>>().join(","),
                });
            }
            continue;
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != 3 {
            return Err(err(format!(
                "expected 3 fields (file_x,file_y,Decision), found {}",
                record.len()
            )));
        }
        if record[0].is_empty() || record[1].is_empty() {
            return Err(err("empty file name".into()));
        }
        let same = parse_decision(&record[2]).ok_or_else(|| {
            err(format!(
                "unknown Decision `{}` (use Yes/No, true/false or 1/0)",
                &record[2]
            ))
        })?;
        pairs.push(Pair {
            line,
            file_x: record[0].to_string(),
            file_y: record[1].to_string(),
            same,
        });
    }
    if pairs.is_empty() {
        return Err(PairsError::Empty {
            path: name.to_string(),
        });
    }
    Ok(pairs)
}

/// Decision counts at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    pub accuracy: f64,
    /// True accept rate: genuine pairs accepted / genuine pairs.
    pub tar: f64,
    /// False accept rate: impostor pairs accepted / impostor pairs.
    pub far: f64,
}

/// Rates of decisions (`accepted[i]`) against labels (`same[i]`); both classes must be
/// present.
pub fn rates(accepted: &[bool], same: &[bool]) -> Result<Rates, RocError> {
    let classes = Classes::of_labels(same)?;
    let count = |class: bool| {
        accepted
            .iter()
            .zip(same)
            .filter(|(a, s)| **a && **s == class)
            .count() as u64
    };
    Ok(Rates::of(&classes.tally(count(true), count(false))))
}

impl Rates {
    fn of(t: &Tally) -> Rates {
        Rates {
            accuracy: t.accuracy(),
            tar: t.tar(),
            far: t.far(),
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Summary of the distance distribution over all thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// Threshold (accept if distance <= it) with the best accuracy on this set.
    pub best_threshold: f64,
    pub best_accuracy: f64,
    /// Equal error rate (FAR = FRR), by [`equal_error`]'s rule.
    pub eer: f64,
    /// TAR at FAR <= 1%, only with at least 100 impostor pairs.
    pub tar_at_far_1e2: Option<f64>,
    /// TAR at FAR <= 0.1%, only with at least 1,000 impostor pairs.
    pub tar_at_far_1e3: Option<f64>,
    /// ROC points (FAR, TAR), one per candidate threshold, FAR ascending.
    pub roc: Vec<(f64, f64)>,
}

/// Sweeps every threshold between consecutive distinct distances, one below them all and
/// one above (`distances[i]` is labelled `same[i]`). The counts are the ROC core's
/// ([`crate::roc`]), as [`Calibration`](crate::calibration::Calibration)'s are; both
/// classes must be present.
pub fn sweep(distances: &[f64], same: &[bool]) -> Result<Sweep, RocError> {
    let classes = Classes::of_labels(same)?;
    let sorted = SortedDistances::new(distances.iter().copied().zip(same.iter().copied()));
    let mut values = sorted.all();
    values.dedup();
    let mut candidates = vec![values.first().copied().unwrap_or(0.0) - 1.0];
    candidates.extend(values.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(values.last().copied().unwrap_or(0.0) + 1.0);
    let tallies: Vec<Tally> = candidates
        .iter()
        .map(|&t| {
            let (g, i) = sorted.accepted(t);
            classes.tally(g, i)
        })
        .collect();

    let mut best = (f64::NAN, -1.0);
    for (&t, tally) in candidates.iter().zip(&tallies) {
        if tally.accuracy() > best.1 {
            best = (t, tally.accuracy());
        }
    }
    let eer = equal_error(tallies.iter().copied())
        .expect("at least two candidate thresholds")
        .rate;
    let mut roc: Vec<(f64, f64)> = tallies.iter().map(|t| (t.far(), t.tar())).collect();
    roc.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let tar_at = |max_far: f64, min_impostors: u64| {
        (classes.impostor() >= min_impostors).then(|| {
            roc.iter()
                .filter(|(far, _)| *far <= max_far)
                .map(|(_, tar)| *tar)
                .fold(0.0, f64::max)
        })
    };
    Ok(Sweep {
        best_threshold: best.0,
        best_accuracy: best.1,
        eer,
        tar_at_far_1e2: tar_at(0.01, 100),
        tar_at_far_1e3: tar_at(0.001, 1000),
        roc,
    })
}

/// The Euclidean distance of two float vectors (embeddings, or their projections).
pub fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Accuracy counting every pair of a file: `correct` right decisions among the scored
/// pairs, out of `scored + unscored` pairs (an unscored pair, one with an image where no
/// face was found, is an error).
pub fn accuracy_all_pairs(correct: usize, scored: usize, unscored: usize) -> f64 {
    ratio(correct, scored + unscored)
}

// ---- identification (1:N) ----

/// One image of a labelled folder and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelledImage {
    pub identity: String,
    pub path: PathBuf,
}

/// A labelled folder problem.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("cannot read folder {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the file name does not carry an identity; name images `Name_0001.jpg` \
         (identity `Name`) or put them in one subfolder per person (`Name/photo.jpg`)"
    )]
    NoIdentity { path: String },
    #[error(
        "{path}: no images (.jpg, .jpeg, .png, .bmp, .webp) directly inside or in its subfolders"
    )]
    Empty { path: String },
}

/// The identity a flat-layout file name carries: the stem without its `_NNNN` number
/// (`George_W_Bush_0012.jpg` -> `George_W_Bush`), like LFW's file names.
pub fn identity_from_file_name(file_name: &str) -> Option<&str> {
    let stem = Path::new(file_name).file_stem()?.to_str()?;
    let (name, number) = stem.rsplit_once('_')?;
    (!name.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then_some(name)
}

/// The labelled images of `dir`, sorted by identity then path. Two layouts, which may be
/// mixed: images directly in `dir` named `Name_NNNN.ext` (identity `Name`), and
/// subfolders `Name/` whose images are all `Name`'s (any file name). Hidden entries are
/// skipped; deeper folders are not read.
pub fn scan_labelled_folder(dir: &Path) -> Result<Vec<LabelledImage>, FolderError> {
    let io = |path: &Path, source| FolderError::Io {
        path: path.display().to_string(),
        source,
    };
    let entries = |d: &Path| -> Result<Vec<PathBuf>, FolderError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(d).map_err(|e| io(d, e))? {
            let entry = entry.map_err(|e| io(d, e))?;
            if !entry.file_name().to_string_lossy().starts_with('.') {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    };
    let mut images = Vec::new();
    for path in entries(dir)? {
        if path.is_dir() {
            let identity = path.file_name().map(|n| n.to_string_lossy().into_owned());
            for inner in entries(&path)? {
                if inner.is_file() && is_image(&inner) {
                    images.push(LabelledImage {
                        identity: identity.clone().unwrap_or_default(),
                        path: inner,
                    });
                }
            }
        } else if is_image(&path) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let identity = name
                .as_deref()
                .and_then(identity_from_file_name)
                .ok_or_else(|| FolderError::NoIdentity {
                    path: path.display().to_string(),
                })?
                .to_string();
            images.push(LabelledImage { identity, path });
        }
    }
    if images.is_empty() {
        return Err(FolderError::Empty {
            path: dir.display().to_string(),
        });
    }
    images.sort();
    Ok(images)
}

/// What an image is for in an identification run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Enrolled as its identity's one template.
    Enrolled,
    /// Searched for; its identity is enrolled (a mated search).
    Mated,
    /// Searched for; its identity is not enrolled (a non-mated search).
    Stranger,
}

/// The deterministic split of a labelled folder, given which images have a face:
/// - an identity with two or more images is enrolled with its first image (in path
///   order) that has a face; its other images are mated searches;
/// - an identity with exactly one image is a stranger: that image is a non-mated search.
///
/// An identity with several images none of which has a face is not enrolled and its
/// images are mated searches that fail (no face). Returns one role per image.
pub fn split_roles(images: &[LabelledImage], has_face: &[bool]) -> Vec<Role> {
    let mut by_identity: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        by_identity.entry(&img.identity).or_default().push(i);
    }
    let mut roles = vec![Role::Mated; images.len()];
    for indices in by_identity.values_mut() {
        indices.sort_by(|&a, &b| images[a].path.cmp(&images[b].path));
        if indices.len() == 1 {
            roles[indices[0]] = Role::Stranger;
        } else if let Some(&first) = indices.iter().find(|&&i| has_face[i]) {
            roles[first] = Role::Enrolled;
        }
    }
    roles
}

/// One search's outcome as the app decrypts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// Whether the probe's identity is enrolled.
    pub mated: bool,
    /// The best (smallest) squared distance and whether it is the probe's own identity;
    /// `None` when the probe image has no face (nothing searched).
    pub top: Option<(i64, bool)>,
}

/// Identification figures over a set of searches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentificationRates {
    pub mated_searches: usize,
    pub mated_no_face: usize,
    pub stranger_searches: usize,
    pub stranger_no_face: usize,
    /// Mated searches whose best candidate is the right identity (no threshold).
    pub rank1_hits: usize,
    /// rank1_hits / mated_searches (no-face searches count as misses).
    pub rank1_accuracy: f64,
    /// At the threshold: mated searches whose best candidate is not the right identity
    /// within the threshold, / mated_searches.
    pub fnir_at_threshold: f64,
    /// At the threshold: mated searches whose best candidate within the threshold is
    /// someone else (a wrong name shown).
    pub misidentified_at_threshold: usize,
    /// Stranger searches with any candidate within the threshold.
    pub strangers_accepted: usize,
    /// strangers_accepted / stranger_searches (FPIR at the threshold).
    pub stranger_false_accept_rate: f64,
    /// FNIR at FPIR <= 1%, with at least 100 stranger searches.
    pub fnir_at_fpir_1e2: Option<FnirAtFpir>,
    /// FNIR at FPIR <= 0.1%, with at least 1,000 stranger searches.
    pub fnir_at_fpir_1e3: Option<FnirAtFpir>,
}

/// FNIR at the most accepting threshold whose FPIR stays within a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FnirAtFpir {
    pub fnir: f64,
    pub fpir: f64,
    /// Accept a candidate if its squared distance is below this.
    pub threshold_sq_below: i64,
}

/// Identification figures at `threshold` (a candidate is accepted by
/// [`Threshold::accepts`]).
pub fn identification_rates(searches: &[Search], threshold: &Threshold) -> IdentificationRates {
    let mated: Vec<&Search> = searches.iter().filter(|s| s.mated).collect();
    let strangers: Vec<&Search> = searches.iter().filter(|s| !s.mated).collect();
    let rank1_hits = mated
        .iter()
        .filter(|s| s.top.is_some_and(|(_, right)| right))
        .count();
    let hits = |accept: &dyn Fn(i64) -> bool| {
        mated
            .iter()
            .filter(|s| s.top.is_some_and(|(d, right)| right && accept(d)))
            .count()
    };
    let hits_at_threshold = hits(&|d| threshold.accepts(d));
    let strangers_accepted = strangers
        .iter()
        .filter(|s| s.top.is_some_and(|(d, _)| threshold.accepts(d)))
        .count();
    // Non-mated best distances, ascending; no-face strangers never give a candidate.
    let mut stranger_top: Vec<i64> = strangers
        .iter()
        .filter_map(|s| s.top.map(|t| t.0))
        .collect();
    stranger_top.sort_unstable();
    let at_fpir = |target: f64| -> Option<FnirAtFpir> {
        let n = strangers.len();
        if (n as f64) * target < 1.0 - 1e-9 {
            return None;
        }
        // At most k false positives: accept only below the (k+1)-th smallest distance.
        let k = ((n as f64) * target + 1e-9).floor() as usize;
        let limit = stranger_top.get(k).copied().unwrap_or(i64::MAX);
        let fp = stranger_top.iter().filter(|&&d| d < limit).count();
        Some(FnirAtFpir {
            fnir: 1.0 - ratio(hits(&|d| d < limit), mated.len()),
            fpir: ratio(fp, n),
            threshold_sq_below: limit,
        })
    };
    IdentificationRates {
        mated_searches: mated.len(),
        mated_no_face: mated.iter().filter(|s| s.top.is_none()).count(),
        stranger_searches: strangers.len(),
        stranger_no_face: strangers.iter().filter(|s| s.top.is_none()).count(),
        rank1_hits,
        rank1_accuracy: ratio(rank1_hits, mated.len()),
        fnir_at_threshold: 1.0 - ratio(hits_at_threshold, mated.len()),
        misidentified_at_threshold: mated
            .iter()
            .filter(|s| {
                s.top
                    .is_some_and(|(d, right)| !right && threshold.accepts(d))
            })
            .count(),
        strangers_accepted,
        stranger_false_accept_rate: ratio(strangers_accepted, strangers.len()),
        fnir_at_fpir_1e2: at_fpir(0.01),
        fnir_at_fpir_1e3: at_fpir(0.001),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_lfw_style_names() {
        assert_eq!(
            identity_from_file_name("George_W_Bush_0012.jpg"),
            Some("George_W_Bush")
        );
        assert_eq!(identity_from_file_name("Madonna_0001.JPG"), Some("Madonna"));
        assert_eq!(identity_from_file_name("obama.jpg"), None);
        assert_eq!(identity_from_file_name("obama_face.jpg"), None);
        assert_eq!(identity_from_file_name("_0001.jpg"), None);
    }

    #[test]
    fn folder_layouts_flat_and_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |rel: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        for f in [
            "Ann_Lee_0002.jpg",
            "Ann_Lee_0001.jpg",
            "Bob/b.png",
            "Bob/a.JPG",
            "Bob/notes.txt",
            ".hidden.jpg",
            "readme.md",
        ] {
            touch(f);
        }
        let got = scan_labelled_folder(dir.path()).unwrap();
        let names: Vec<(String, String)> = got
            .iter()
            .map(|i| {
                (
                    i.identity.clone(),
                    i.path.file_name().unwrap().to_string_lossy().into_owned(),
                )
            })
            .collect();
        let want = [
            ("Ann_Lee", "Ann_Lee_0001.jpg"),
            ("Ann_Lee", "Ann_Lee_0002.jpg"),
            ("Bob", "a.JPG"),
            ("Bob", "b.png"),
        ];
        assert_eq!(names, want.map(|(a, b)| (a.to_string(), b.to_string())));
        touch("stray.jpg");
        let e = scan_labelled_folder(dir.path()).unwrap_err();
        assert!(
            matches!(e, FolderError::NoIdentity { .. }) && e.to_string().contains("stray.jpg"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            scan_labelled_folder(empty.path()),
            Err(FolderError::Empty { .. })
        ));
    }

    #[test]
    fn split_enrols_the_first_image_with_a_face_and_singletons_are_strangers() {
        let img = |id: &str, f: &str| LabelledImage {
            identity: id.into(),
            path: PathBuf::from(f),
        };
        let images = [
            img("A", "a1"),
            img("A", "a2"),
            img("A", "a3"),
            img("B", "b1"),
            img("B", "b2"),
            img("C", "c1"),
            img("D", "d1"),
            img("D", "d2"),
        ];
        // a1 has no face: a2 is enrolled, a1 stays a (failed) mated search. D has no face at all.
        let has_face = [false, true, true, true, true, true, false, false];
        let roles = split_roles(&images, &has_face);
        use Role::*;
        assert_eq!(
            roles,
            [Mated, Enrolled, Mated, Enrolled, Mated, Stranger, Mated, Mated]
        );
    }

    #[test]
    fn identification_rates_worked_by_hand() {
        let s = |mated, top| Search { mated, top };
        let p = crate::he::Params::v1();
        // L2 0.12 is a squared threshold of 112: between 90 and 150, like 100.
        let t = Threshold::new(0.12, &p);
        assert!((90..150).contains(&t.squared()), "{t:?}");
        // Threshold ~100. Mated: hit at 50, hit at 150 (beyond threshold), wrong at 80, no face.
        // Strangers: 90 (accepted), 200, 300, no face.
        let searches = [
            s(true, Some((50, true))),
            s(true, Some((150, true))),
            s(true, Some((80, false))),
            s(true, None),
            s(false, Some((90, false))),
            s(false, Some((200, false))),
            s(false, Some((300, false))),
            s(false, None),
        ];
        let r = identification_rates(&searches, &t);
        assert_eq!(
            (
                r.mated_searches,
                r.mated_no_face,
                r.stranger_searches,
                r.stranger_no_face
            ),
            (4, 1, 4, 1)
        );
        assert_eq!(r.rank1_hits, 2);
        assert_eq!(r.rank1_accuracy, 0.5);
        assert_eq!(
            r.fnir_at_threshold, 0.75,
            "only the hit at 50 is within the threshold"
        );
        assert_eq!(r.misidentified_at_threshold, 1);
        assert_eq!(
            (r.strangers_accepted, r.stranger_false_accept_rate),
            (1, 0.25)
        );
        assert_eq!(r.fnir_at_fpir_1e2, None, "4 strangers cannot tell 1%");
        assert_eq!(r.fnir_at_fpir_1e3, None);

        // 100 strangers at 1000..1099, mated hits at 500 and 1050: FPIR 1% allows one
        // stranger (1000), so accept below 1001: one hit of two.
        let mut many: Vec<Search> = (0..100)
            .map(|i| s(false, Some((1000 + i, false))))
            .collect();
        many.push(s(true, Some((500, true))));
        many.push(s(true, Some((1050, true))));
        let r = identification_rates(&many, &Threshold::new(0.0, &p));
        let at = r.fnir_at_fpir_1e2.expect("100 strangers");
        assert_eq!((at.fnir, at.fpir, at.threshold_sq_below), (0.5, 0.01, 1001));
        assert_eq!(r.fnir_at_fpir_1e3, None);
    }

    #[test]
    fn pairs_parse_with_every_decision_spelling_and_errors_name_the_line() {
        let text =
            "file_x,file_y,Decision\na.jpg,b.jpg,Yes\na.jpg,c.jpg,no\nb.jpg,c.jpg,TRUE\nx,y,0\n";
        let pairs = parse_pairs(text, "p.csv").unwrap();
        assert_eq!(
            pairs.iter().map(|p| p.same).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(pairs[1].line, 3);
        let e = parse_pairs("file_x,file_y,Decision\na,b,Yes\na,b,maybe\n", "p.csv").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("maybe"),
            "{e}"
        );
        let e = parse_pairs("file_x,file_y,Decision\na,b\n", "p.csv").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_pairs("x,y,z\na,b,Yes\n", "p.csv").unwrap_err();
        assert!(matches!(e, PairsError::Header { .. }));
        assert!(matches!(
            parse_pairs("file_x,file_y,Decision\n", "p.csv"),
            Err(PairsError::Empty { .. })
        ));
    }

    #[test]
    fn rates_and_sweep_on_a_known_set() {
        // Genuine at 0.5, 0.6, 1.3 (one hard pair); impostors at 1.2, 1.4, 1.5.
        let d = [0.5, 0.6, 1.3, 1.2, 1.4, 1.5];
        let same = [true, true, true, false, false, false];
        let r = rates(&d.map(|x| x <= 1.128), &same).unwrap();
        assert_eq!(r.accuracy, 5.0 / 6.0);
        assert!((r.tar - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.far, 0.0);
        let s = sweep(&d, &same).unwrap();
        assert_eq!(s.best_accuracy, 5.0 / 6.0);
        assert!(s.best_threshold >= 0.6 && s.best_threshold < 1.3);
        assert!((s.eer - 1.0 / 3.0).abs() < 1e-12, "{:?}", s.eer);
        assert_eq!(s.tar_at_far_1e2, None, "too few impostors to say");
        let perfect = sweep(&[0.1, 0.2, 0.9, 1.0], &[true, true, false, false]).unwrap();
        assert_eq!(perfect.best_accuracy, 1.0);
        assert_eq!(perfect.eer, 0.0);
    }

    #[test]
    fn an_empty_class_is_a_typed_error_not_nan() {
        assert_eq!(sweep(&[0.1, 0.2], &[true, true]), Err(RocError::NoImpostor));
        assert_eq!(sweep(&[0.9], &[false]), Err(RocError::NoGenuine));
        assert_eq!(sweep(&[], &[]), Err(RocError::NoGenuine));
        assert_eq!(rates(&[true], &[true]), Err(RocError::NoImpostor));
        assert_eq!(
            rates(&[false, true], &[false, false]),
            Err(RocError::NoGenuine)
        );
    }
}
