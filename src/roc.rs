//! The ROC core: how many genuine and impostor pairs a threshold accepts, from cumulative
//! counts (sorted distances searched by bisection, or counts by integer distance summed
//! once), the rates those counts give, and the equal error rate rule.
//!
//! Both [`eval::sweep`](crate::eval::sweep) (every threshold between the distances of a
//! pairs file) and [`Calibration`](crate::calibration::Calibration) (a grid of thresholds)
//! count and decide with it, so one run cannot report two EERs by two rules. A class with
//! no pair makes its rate undefined: [`Classes::new`] refuses it with a [`RocError`]
//! rather than reporting NaN or 0.

use std::cmp::Ordering;

/// A question the pairs cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RocError {
    #[error("no genuine pairs (same person): true accept rates are undefined")]
    NoGenuine,
    #[error("no impostor pairs (different people): false accept rates are undefined")]
    NoImpostor,
}

/// How many pairs each class has, both at least one. Pairs never scored (an image where no
/// face was found) count here and are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    genuine: u64,
    impostor: u64,
}

impl Classes {
    pub fn new(genuine: u64, impostor: u64) -> Result<Self, RocError> {
        match (genuine, impostor) {
            (0, _) => Err(RocError::NoGenuine),
            (_, 0) => Err(RocError::NoImpostor),
            _ => Ok(Classes { genuine, impostor }),
        }
    }

    /// The classes of labelled pairs (`true`: genuine).
    pub fn of_labels(same: &[bool]) -> Result<Self, RocError> {
        let genuine = same.iter().filter(|&&s| s).count() as u64;
        Self::new(genuine, same.len() as u64 - genuine)
    }

    pub fn genuine(&self) -> u64 {
        self.genuine
    }

    pub fn impostor(&self) -> u64 {
        self.impostor
    }

    /// What a threshold accepting `genuine_accepted` and `impostor_accepted` pairs means
    /// (counts above the class totals are clamped to them).
    pub fn tally(&self, genuine_accepted: u64, impostor_accepted: u64) -> Tally {
        Tally {
            genuine_accepted: genuine_accepted.min(self.genuine),
            impostor_accepted: impostor_accepted.min(self.impostor),
            classes: *self,
        }
    }
}

/// What one threshold accepts, out of the class totals (never more than them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    genuine_accepted: u64,
    impostor_accepted: u64,
    classes: Classes,
}

impl Tally {
    pub fn genuine_accepted(&self) -> u64 {
        self.genuine_accepted
    }

    pub fn impostor_accepted(&self) -> u64 {
        self.impostor_accepted
    }

    pub fn classes(&self) -> Classes {
        self.classes
    }

    /// True accept rate: genuine pairs accepted / genuine pairs.
    pub fn tar(&self) -> f64 {
        self.genuine_accepted as f64 / self.classes.genuine as f64
    }

    /// False accept rate: impostor pairs accepted / impostor pairs.
    pub fn far(&self) -> f64 {
        self.impostor_accepted as f64 / self.classes.impostor as f64
    }

    /// False reject rate, 1 - TAR.
    pub fn frr(&self) -> f64 {
        1.0 - self.tar()
    }

    /// Right decisions (genuine accepted, impostors rejected) / all pairs.
    pub fn accuracy(&self) -> f64 {
        let c = self.classes;
        let correct = self.genuine_accepted + (c.impostor - self.impostor_accepted);
        correct as f64 / (c.genuine + c.impostor) as f64
    }

    /// |FAR - FRR|: the equal error rate rule looks for its smallest value.
    fn error_gap(&self) -> f64 {
        (self.far() - self.frr()).abs()
    }
}

/// The equal error rate point among tallies at increasing thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EqualError {
    /// Index of the tally where FAR and FRR are closest (ties: the first, the smaller
    /// threshold).
    pub index: usize,
    /// The EER there: (FAR + FRR) / 2.
    pub rate: f64,
}

/// The equal error rate: the first tally where FAR and FRR are closest. `None` only for
/// no tallies.
pub fn equal_error(tallies: impl IntoIterator<Item = Tally>) -> Option<EqualError> {
    let mut best: Option<(f64, EqualError)> = None;
    for (index, t) in tallies.into_iter().enumerate() {
        let gap = t.error_gap();
        if best.is_none_or(|(g, _)| gap < g) {
            let rate = (t.far() + t.frr()) / 2.0;
            best = Some((gap, EqualError { index, rate }));
        }
    }
    best.map(|(_, e)| e)
}

/// A distance the core can sort and compare: float L2 or exact squared integers.
pub trait Distance: Copy {
    fn total_cmp(&self, other: &Self) -> Ordering;
}

impl Distance for f64 {
    fn total_cmp(&self, other: &Self) -> Ordering {
        f64::total_cmp(self, other)
    }
}

impl Distance for i64 {
    fn total_cmp(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

/// The scored distances of each class, sorted: the pairs a threshold accepts (distance at
/// most the threshold) are a prefix, found by bisection.
#[derive(Debug, Clone)]
pub struct SortedDistances<D> {
    genuine: Vec<D>,
    impostor: Vec<D>,
}

impl<D: Distance> SortedDistances<D> {
    /// From `(distance, genuine)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (D, bool)>) -> Self {
        let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
        for (d, same) in pairs {
            if same {
                genuine.push(d);
            } else {
                impostor.push(d);
            }
        }
        genuine.sort_unstable_by(D::total_cmp);
        impostor.sort_unstable_by(D::total_cmp);
        SortedDistances { genuine, impostor }
    }

    /// Every scored distance, both classes, ascending.
    pub fn all(&self) -> Vec<D> {
        let mut all: Vec<D> = self.genuine.iter().chain(&self.impostor).copied().collect();
        all.sort_unstable_by(D::total_cmp);
        all
    }

    /// Genuine and impostor pairs with distance at most `threshold`.
    pub fn accepted(&self, threshold: D) -> (u64, u64) {
        let within = |v: &[D]| v.partition_point(|d| d.total_cmp(&threshold).is_le()) as u64;
        (within(&self.genuine), within(&self.impostor))
    }
}

/// Counts by exact squared distance, summed once: for millions of pairs whose distances
/// are small integers.
#[derive(Debug, Clone)]
pub struct CumulativeCounts {
    /// genuine[d]: genuine pairs with squared distance at most d (likewise impostor).
    genuine: Vec<u64>,
    impostor: Vec<u64>,
}

impl CumulativeCounts {
    /// `genuine_counts[d]` (and `impostor_counts[d]`): the pairs of the class at squared
    /// distance exactly `d`.
    pub fn new(genuine_counts: &[u64], impostor_counts: &[u64]) -> Self {
        let cumulative = |counts: &[u64]| -> Vec<u64> {
            counts
                .iter()
                .scan(0u64, |sum, &c| {
                    *sum += c;
                    Some(*sum)
                })
                .collect()
        };
        CumulativeCounts {
            genuine: cumulative(genuine_counts),
            impostor: cumulative(impostor_counts),
        }
    }

    /// Scored pairs of both classes.
    pub fn scored(&self) -> u64 {
        self.genuine.last().copied().unwrap_or(0) + self.impostor.last().copied().unwrap_or(0)
    }

    /// Genuine and impostor pairs with squared distance at most `threshold_sq`.
    pub fn accepted(&self, threshold_sq: i64) -> (u64, u64) {
        let within = |cum: &[u64]| match usize::try_from(threshold_sq) {
            Err(_) => 0,
            Ok(_) if cum.is_empty() => 0,
            Ok(t) => cum[t.min(cum.len() - 1)],
        };
        (within(&self.genuine), within(&self.impostor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_class_is_an_error_not_a_rate() {
        assert_eq!(Classes::new(0, 5), Err(RocError::NoGenuine));
        assert_eq!(Classes::new(5, 0), Err(RocError::NoImpostor));
        assert_eq!(Classes::new(0, 0), Err(RocError::NoGenuine));
        assert_eq!(
            Classes::of_labels(&[false, false]),
            Err(RocError::NoGenuine)
        );
        assert_eq!(Classes::of_labels(&[true]), Err(RocError::NoImpostor));
        assert_eq!(Classes::of_labels(&[]), Err(RocError::NoGenuine));
        let c = Classes::of_labels(&[true, false, false]).unwrap();
        assert_eq!((c.genuine(), c.impostor()), (1, 2));
    }

    #[test]
    fn rates_accuracy_and_the_eer_rule() {
        let c = Classes::new(4, 5).unwrap();
        let t = c.tally(3, 1);
        assert_eq!((t.tar(), t.far(), t.frr()), (0.75, 0.2, 0.25));
        assert_eq!(t.accuracy(), 7.0 / 9.0);
        assert_eq!(c.tally(9, 9), c.tally(4, 5), "clamped to the totals");
        // Gaps 1.0, 0.3, 0.05, 0.15, 1.0: the closest is the third.
        let tallies = [(0, 0), (2, 1), (3, 1), (3, 2), (4, 5)].map(|(g, i)| c.tally(g, i));
        let e = equal_error(tallies).unwrap();
        assert_eq!(e.index, 2);
        assert_eq!(e.rate, (0.2 + 0.25) / 2.0);
        // A tie (gaps 1, 0.25, 0.25, 1, exact in binary): the first, the smaller threshold.
        let q = Classes::new(4, 4).unwrap();
        let tallies = [(0, 0), (2, 1), (3, 2), (4, 4)].map(|(g, i)| q.tally(g, i));
        let e = equal_error(tallies).unwrap();
        assert_eq!((e.index, e.rate), (1, (0.25 + 0.5) / 2.0));
        assert_eq!(equal_error([]), None);
    }

    #[test]
    fn both_cumulative_counts_agree() {
        let d: [(i64, bool); 7] = [
            (5, true),
            (1, true),
            (5, false),
            (9, false),
            (2, true),
            (7, false),
            (0, false),
        ];
        let sorted = SortedDistances::new(d);
        let (mut g, mut i) = (vec![0u64; 10], vec![0u64; 8]);
        for (x, same) in d {
            if same {
                g[x as usize] += 1;
            } else if (x as usize) < i.len() {
                i[x as usize] += 1;
            }
        }
        // The impostor counts stop at 7: the one at 9 is left out, so compare below 9.
        let counts = CumulativeCounts::new(&g, &i);
        assert_eq!(counts.scored(), 6);
        for t in -1..9 {
            assert_eq!(sorted.accepted(t), counts.accepted(t), "{t}");
        }
        assert_eq!(sorted.accepted(9), (3, 4));
        assert_eq!(sorted.all(), [0, 1, 2, 5, 5, 7, 9]);
        let f = SortedDistances::new([(0.5, true), (f64::NAN, false), (1.5, false)]);
        assert_eq!(f.accepted(1.0), (1, 0));
        assert_eq!(f.accepted(f64::INFINITY), (1, 1), "NaN is never accepted");
    }
}
