//! Accuracy evaluation: labelled pairs files and the metrics computed over distances
//! (accuracy, TAR/FAR at a threshold, best threshold, EER, TAR at fixed FAR).
//!
//! Pure computation on numbers: the CLI (`blindface eval`) runs the face pipeline and the
//! encryption and hands the distances here.

use std::path::Path;

use serde::Serialize;

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

/// Rates of decisions (`accepted[i]`) against labels (`same[i]`).
pub fn rates(accepted: &[bool], same: &[bool]) -> Rates {
    let n = same.len().max(1) as f64;
    let genuine = same.iter().filter(|&&s| s).count();
    let impostor = same.len() - genuine;
    let correct = accepted.iter().zip(same).filter(|(a, s)| a == s).count();
    let ta = accepted
        .iter()
        .zip(same)
        .filter(|(a, s)| **a && **s)
        .count();
    let fa = accepted
        .iter()
        .zip(same)
        .filter(|(a, s)| **a && !**s)
        .count();
    Rates {
        accuracy: correct as f64 / n,
        tar: ratio(ta, genuine),
        far: ratio(fa, impostor),
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
    /// Equal error rate (FAR = FRR), where both classes are present.
    pub eer: Option<f64>,
    /// TAR at FAR <= 1%, only with at least 100 impostor pairs.
    pub tar_at_far_1e2: Option<f64>,
    /// TAR at FAR <= 0.1%, only with at least 1,000 impostor pairs.
    pub tar_at_far_1e3: Option<f64>,
    /// ROC points (FAR, TAR), one per candidate threshold, FAR ascending.
    pub roc: Vec<(f64, f64)>,
}

/// Sweeps every threshold between consecutive distinct distances.
pub fn sweep(distances: &[f64], same: &[bool]) -> Sweep {
    let mut sorted: Vec<f64> = distances.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut candidates = vec![sorted.first().copied().unwrap_or(0.0) - 1.0];
    candidates.extend(sorted.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(sorted.last().copied().unwrap_or(0.0) + 1.0);

    let genuine = same.iter().filter(|&&s| s).count();
    let impostor = same.len() - genuine;
    let mut best = (f64::NAN, -1.0);
    let mut eer: Option<(f64, f64)> = None; // (|FAR - FRR|, rate)
    let mut roc = Vec::with_capacity(candidates.len());
    let tar_at = |max_far: f64, min_impostors: usize, points: &[(f64, f64)]| {
        (impostor >= min_impostors).then(|| {
            points
                .iter()
                .filter(|(far, _)| *far <= max_far)
                .map(|(_, tar)| *tar)
                .fold(0.0, f64::max)
        })
    };
    for &t in &candidates {
        let accepted: Vec<bool> = distances.iter().map(|&d| d <= t).collect();
        let r = rates(&accepted, same);
        if r.accuracy > best.1 {
            best = (t, r.accuracy);
        }
        if genuine > 0 && impostor > 0 {
            let frr = 1.0 - r.tar;
            let gap = (r.far - frr).abs();
            if eer.is_none_or(|(g, _)| gap < g) {
                eer = Some((gap, (r.far + frr) / 2.0));
            }
            roc.push((r.far, r.tar));
        }
    }
    roc.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Sweep {
        best_threshold: best.0,
        best_accuracy: best.1,
        eer: eer.map(|(_, r)| r),
        tar_at_far_1e2: tar_at(0.01, 100, &roc),
        tar_at_far_1e3: tar_at(0.001, 1000, &roc),
        roc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let r = rates(&d.map(|x| x <= 1.128), &same);
        assert_eq!(r.accuracy, 5.0 / 6.0);
        assert!((r.tar - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.far, 0.0);
        let s = sweep(&d, &same);
        assert_eq!(s.best_accuracy, 5.0 / 6.0);
        assert!(s.best_threshold >= 0.6 && s.best_threshold < 1.3);
        assert!((s.eer.unwrap() - 1.0 / 3.0).abs() < 1e-12, "{:?}", s.eer);
        assert_eq!(s.tar_at_far_1e2, None, "too few impostors to say");
        let perfect = sweep(&[0.1, 0.2, 0.9, 1.0], &[true, true, false, false]);
        assert_eq!(perfect.best_accuracy, 1.0);
        assert_eq!(perfect.eer, Some(0.0));
    }
}
