//! Calibrated operating points: what a threshold means in error rates.
//!
//! A calibration is a table, over a fine grid of L2 thresholds, of how many genuine pairs
//! (same person) and impostor pairs (different people) of a labelled set are accepted:
//! TAR (true accept rate) and FAR (false accept rate), with the counts behind them so
//! their confidence is visible (1 impostor accepted out of 1,100 is a FAR of 0.09% known
//! to within a factor of a few, not to two digits).
//!
//! `blindface eval --pairs FILE --images DIR --calibrate OUT.json` writes one, from the
//! decisions the app takes: encrypted squared distances accepted by the
//! [`Threshold`](crate::he::Threshold) of each grid threshold. Every pair of the file
//! counts; a pair with an image where no face was found is never accepted. The counts,
//! rates and equal error rate rule are the ROC core's ([`crate::roc`]), the same as
//! `eval`'s sweep; both classes must have pairs.
//!
//! With `--all-impostors` the impostor pairs are not the listed ones but every pair of
//! two of the file's images of different identities (identity from `Name_0001.jpg` file
//! names): millions of pairs, their squared distances computed in plaintext with
//! `Template::distance_sq`, which equals the encrypted matcher's result exactly
//! (tests/he_core.rs; eval also compares every pair the encrypted matcher computed
//! anyway), counted by value ([`Calibration::from_counts`]) on a 0.001 grid
//! ([`Calibration::fine_grid`]). Genuine pairs stay the listed ones.
//!
//! One calibration ships with blindface: [`Calibration::lfw_devtrain`], made from LFW
//! View 1's DevTrain (its 1,100 listed genuine pairs, and all 5,923,194 impostor pairs
//! among its 3,443 images, so FAR resolves to 1/5,923,194 = 1.7e-7) with
//! `assets/calibration-lfw-devtrain.json`'s `command` (see BENCHMARKS.md). Use it to
//! turn a FAR target into a threshold ([`Calibration::threshold_for_far`]), to describe a
//! threshold ([`Calibration::at_threshold`]) and to find the equal error rate
//! ([`Calibration::eer`]). Its numbers are estimates on public figures' news photos; a
//! camera in a dim room is another population.
//!
//! Those are 1:1 (verification) rates: one face compared with one person. Identification
//! compares a face with everyone enrolled and names the closest person within the
//! threshold, so a stranger (someone not enrolled) gets a name when any one of `people`
//! comparisons accepts them. With each comparison accepting a stranger with probability
//! FAR, independently, the false positive identification rate is
//! [`fpir`]`(FAR, people) = 1 - (1 - FAR)^people`: at the default 1.128 (FAR 0.11%, 1 in
//! 906) about 1 in 37 strangers with 25 people enrolled, 72% with 1,165 (BENCHMARKS.md
//! measured 63% on LFW). [`Calibration::identification_at`] describes a threshold for a
//! gallery size and [`Calibration::threshold_for_fpir`] chooses one; the shipped
//! calibration's 5,923,194 impostor pairs resolve FPIR 1% for up to 59,530 people
//! ([`Calibration::max_people_for_fpir`]; 1,100 impostor pairs would stop at 11).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::he::{Params, Threshold};
use crate::roc::{equal_error, Classes, CumulativeCounts, EqualError, RocError, SortedDistances};

/// The format tag written into (and required in) calibration files.
pub const FORMAT: &str = "blindface-calibration/1";

/// The calibration asset shipped with blindface for templates of parameters v1 (LFW View 1
/// DevTrain).
pub const LFW_DEVTRAIN_JSON: &str = include_str!("../assets/calibration-lfw-devtrain.json");

/// The same for templates of parameters v2 (projected to 80 dimensions): made with the
/// same command and `--params 2`.
pub const LFW_DEVTRAIN_V2_JSON: &str = include_str!("../assets/calibration-lfw-devtrain-v2.json");

/// The default same-person threshold (L2) for templates of `params`: chosen on LFW View 1
/// DevTrain by the criterion in BENCHMARKS.md ("Default threshold"): the best accuracy on
/// its 2,200 listed pairs, encrypted decisions, with SFace's published 1.128 kept unless
/// a threshold beats it by more than one pair. v1 (SFace's 128 dimensions) keeps 1.128;
/// v2's projection and re-normalisation stretch distances, and its best accuracy is 3
/// pairs above 1.128's, so it moves (BENCHMARKS.md "Default threshold of v2").
pub fn default_threshold(params: &Params) -> f32 {
    match params.version {
        1 => crate::vision::SFACE_L2_THRESHOLD,
        _ => DEFAULT_THRESHOLD_V2,
    }
}

/// [`default_threshold`] of parameters v2.
const DEFAULT_THRESHOLD_V2: f32 = 1.158;

/// Grid step of calibrations `blindface eval` writes, in L2 units.
pub const GRID_STEP: f64 = 0.002;

/// Largest grid threshold: L2 between unit vectors is at most 2.
pub const GRID_MAX: f64 = 2.0;

/// Grid step of calibrations on every impostor pair (`blindface eval --all-impostors`),
/// in L2 units: the finest that the app's three-decimal display shows exactly. Near
/// L2 1.0 one step is ~15 units of squared integer distance, so the grid, not the
/// integer distances, sets the resolution in threshold.
pub const FINE_GRID_STEP: f64 = 0.001;

/// One grid threshold and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    /// L2 threshold (accept if distance <= it).
    pub threshold: f64,
    /// The same threshold on encrypted squared integer distances
    /// ([`Threshold::squared`]).
    pub threshold_sq: i64,
    pub genuine_accepted: u64,
    pub impostor_accepted: u64,
    /// genuine_accepted / genuine.
    pub tar: f64,
    /// impostor_accepted / impostor.
    pub far: f64,
}

/// A calibration: where it comes from, the class totals and the grid. Only built
/// validated ([`from_distances`](Self::from_distances), [`from_counts`](Self::from_counts),
/// [`from_json`](Self::from_json) or serde, which checks as `from_json` does), so every
/// method may rely on `validate`'s invariants: at least one point, both
/// classes present, thresholds increasing, counts consistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Fields", into = "Fields")]
pub struct Calibration(Fields);

/// A calibration's fields, as its file holds them; checked (`validate`) before they
/// become a [`Calibration`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fields {
    format: String,
    source: String,
    command: String,
    pipeline: serde_json::Value,
    pairs: u64,
    genuine: u64,
    impostor: u64,
    no_face_pairs: u64,
    points: Vec<CalibrationPoint>,
}

impl TryFrom<Fields> for Calibration {
    type Error = CalibrationError;

    fn try_from(f: Fields) -> Result<Self, Self::Error> {
        let c = Calibration(f);
        c.validate()?;
        Ok(c)
    }
}

impl From<Calibration> for Fields {
    fn from(c: Calibration) -> Fields {
        c.0
    }
}

/// What one threshold means on a calibration's pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// The grid threshold these rates were counted at (L2).
    pub threshold: f32,
    /// The same threshold on encrypted squared integer distances.
    pub threshold_sq: i64,
    /// False accept rate: impostor_accepted / impostor.
    pub far: f64,
    /// True accept rate: genuine_accepted / genuine.
    pub tar: f64,
    pub genuine_accepted: u64,
    pub genuine: u64,
    pub impostor_accepted: u64,
    pub impostor: u64,
}

impl OperatingPoint {
    /// False reject rate, 1 - TAR.
    pub fn frr(&self) -> f64 {
        1.0 - self.tar
    }

    /// N in "about 1 in N strangers accepted" (1 / FAR, rounded); `None` when no
    /// impostor pair was accepted (then fewer than 1 in `impostor`).
    pub fn one_in_n_strangers(&self) -> Option<u64> {
        (self.impostor_accepted > 0).then(|| (1.0 / self.far).round() as u64)
    }

    /// One line for people: "about 1 in 1,100 strangers accepted (1 of 1,100), 98.4% of
    /// genuine attempts accepted (1,082 of 1,100)".
    pub fn describe(&self) -> String {
        let strangers = match self.one_in_n_strangers() {
            Some(n) => format!(
                "about 1 in {} strangers accepted ({} of {})",
                thousands(n),
                thousands(self.impostor_accepted),
                thousands(self.impostor)
            ),
            None => format!(
                "no stranger accepted (0 of {}: fewer than 1 in {})",
                thousands(self.impostor),
                thousands(self.impostor)
            ),
        };
        format!(
            "{strangers}, {:.1}% of genuine attempts accepted ({} of {})",
            100.0 * self.tar,
            thousands(self.genuine_accepted),
            thousands(self.genuine)
        )
    }
}

/// 0 to [`GRID_MAX`] in steps of `step`, each value rounded to three decimals.
fn grid(step: f64) -> Vec<f64> {
    let n = (GRID_MAX / step).round() as usize;
    (0..=n)
        .map(|i| ((i as f64 * step) * 1000.0).round() / 1000.0)
        .collect()
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// False positive identification rate: the share of strangers (people not enrolled) who
/// get a name when each is compared with `people` enrolled people and each comparison
/// accepts a stranger with probability `far`, independently: `1 - (1 - far)^people`.
///
/// Computed as `-expm1(people * ln_1p(-far))`, accurate at tiny FAR where `1 - (1 - far)`
/// would cancel. Nobody enrolled: 0 (nobody to be named as); one person: `far` itself.
/// `far` is clamped to [0, 1].
pub fn fpir(far: f64, people: u64) -> f64 {
    let far = far.clamp(0.0, 1.0);
    match people {
        0 => 0.0,
        1 => far,
        _ if far >= 1.0 => 1.0,
        n => -(n as f64 * (-far).ln_1p()).exp_m1(),
    }
}

/// The 1:1 FAR at which `people` comparisons give an FPIR of `fpir`: the inverse of
/// [`fpir`], `1 - (1 - fpir)^(1 / people)`. `people` must be at least 1 (0 gives NaN);
/// `fpir` is clamped to [0, 1].
pub fn far_for_fpir(fpir: f64, people: u64) -> f64 {
    let fpir = fpir.clamp(0.0, 1.0);
    match people {
        0 => f64::NAN,
        1 => fpir,
        _ if fpir >= 1.0 => 1.0,
        n => -((-fpir).ln_1p() / n as f64).exp_m1(),
    }
}

/// "12.3%" with precision to match the size: whole percent from 10%, one decimal from 1%,
/// two below.
fn percent(rate: f64) -> String {
    let p = 100.0 * rate;
    if p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// What one threshold means for identification against a gallery of `people` distinct
/// people, estimated from a 1:1 calibration with [`fpir`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdentificationPoint {
    /// The 1:1 rates at the grid threshold (its `threshold` is the one used).
    pub pair: OperatingPoint,
    /// Distinct people enrolled.
    pub people: u64,
    /// Share of strangers who get a name: `fpir(pair.far, people)`.
    pub fpir: f64,
}

impl IdentificationPoint {
    /// The grid threshold (L2).
    pub fn threshold(&self) -> f32 {
        self.pair.threshold
    }

    /// The FPIR of the smallest FAR the calibration can tell (one impostor pair accepted):
    /// the bound to quote when no impostor pair was accepted at this threshold.
    pub fn fpir_resolution(&self) -> f64 {
        fpir(1.0 / self.pair.impostor.max(1) as f64, self.people)
    }

    /// N in "about 1 in N strangers gets a name" (1 / FPIR, rounded); `None` with nobody
    /// enrolled or when no impostor pair was accepted (then below
    /// [`fpir_resolution`](Self::fpir_resolution)).
    pub fn one_in_n_strangers(&self) -> Option<u64> {
        (self.people > 0 && self.pair.impostor_accepted > 0 && self.fpir > 0.0)
            .then(|| (1.0 / self.fpir).round() as u64)
    }

    /// One sentence for people: "With 25 people enrolled, about 1 in 44 strangers gets a
    /// name (2.2%)", "With 1,165 people enrolled, about 65% of strangers get a name", or
    /// "Nobody is enrolled yet, so no stranger can get a name".
    pub fn describe(&self) -> String {
        if self.people == 0 {
            return "Nobody is enrolled yet, so no stranger can get a name".into();
        }
        let who = if self.people == 1 {
            "With 1 person enrolled".to_string()
        } else {
            format!("With {} people enrolled", thousands(self.people))
        };
        match self.one_in_n_strangers() {
            None => format!(
                "{who}, fewer than about 1 in {} strangers gets a name (no stranger pair of {} \
                 was accepted)",
                thousands((1.0 / self.fpir_resolution()).round() as u64),
                thousands(self.pair.impostor)
            ),
            Some(_) if self.fpir >= 0.5 => {
                format!(
                    "{who}, about {} of strangers get a name",
                    percent(self.fpir)
                )
            }
            Some(n) => format!(
                "{who}, about 1 in {} strangers gets a name ({})",
                thousands(n),
                percent(self.fpir)
            ),
        }
    }
}

/// Calibration problems: a bad file, or a question the calibration cannot answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration file is not valid JSON of format {FORMAT}: {0}")]
    Parse(String),
    #[error("calibration file is inconsistent: {0}")]
    Invalid(String),
    #[error("calibration has no grid points")]
    NoPoints,
    #[error("calibration cannot be made or used: {0}")]
    Classes(#[from] RocError),
    #[error("FAR {far} is not a rate: give a number above 0 and at most 1, e.g. 0.001 for 0.1%")]
    FarNotARate { far: f64 },
    #[error(
        "FAR {far} is below what this calibration can resolve: it has {impostor} impostor \
         pairs, so its smallest non-zero FAR is 1/{impostor} = {min_far:.6}; ask for at \
         least that (or calibrate on more impostor pairs)"
    )]
    FarBelowResolution {
        far: f64,
        impostor: u64,
        min_far: f64,
    },
    #[error("FPIR {fpir} is not a rate: give a number above 0 and at most 1, e.g. 0.01 for 1%")]
    FpirNotARate { fpir: f64 },
    #[error("nobody is enrolled: no stranger can get a name at any threshold")]
    NobodyEnrolled,
    #[error(
        "FPIR {fpir} with {people} people is below what this calibration can resolve: it \
         has {impostor} impostor pairs, so its smallest non-zero FAR is 1/{impostor}, which \
         with {people} people is already an FPIR of {min_fpir:.6}; it can answer this for \
         up to {max_people} people (or calibrate on more impostor pairs)"
    )]
    FpirBelowResolution {
        fpir: f64,
        people: u64,
        impostor: u64,
        min_fpir: f64,
        max_people: u64,
    },
}

impl Calibration {
    /// Counts, at every threshold of `grid` (increasing L2 values), the pairs whose
    /// squared distance is accepted by `Threshold::new(t)`. `distances_sq[i]` is `None` for a
    /// pair with an image where no face was found: such a pair is never accepted.
    pub fn from_distances(
        distances_sq: &[Option<i64>],
        same: &[bool],
        grid: &[f64],
        params: &Params,
    ) -> Result<Calibration, CalibrationError> {
        if distances_sq.len() != same.len() {
            return Err(CalibrationError::Invalid(format!(
                "{} distances for {} labels",
                distances_sq.len(),
                same.len()
            )));
        }
        let classes = Classes::of_labels(same)?;
        let sorted = SortedDistances::new(
            distances_sq
                .iter()
                .zip(same)
                .filter_map(|(d, &s)| d.map(|d| (d, s))),
        );
        let no_face_pairs = distances_sq.iter().filter(|d| d.is_none()).count() as u64;
        Self::on_grid(grid, params, classes, no_face_pairs, |t| sorted.accepted(t))
    }

    /// The calibration on `grid`: at each threshold, `accepted(squared threshold)` gives
    /// the genuine and impostor pairs accepted, out of `classes`. The one place both
    /// constructors build their points.
    fn on_grid(
        grid: &[f64],
        params: &Params,
        classes: Classes,
        no_face_pairs: u64,
        accepted: impl Fn(i64) -> (u64, u64),
    ) -> Result<Calibration, CalibrationError> {
        let points = grid
            .iter()
            .map(|&t| {
                let t_sq = Threshold::new(t as f32, params).squared();
                let (ga, ia) = accepted(t_sq);
                let tally = classes.tally(ga, ia);
                CalibrationPoint {
                    threshold: t,
                    threshold_sq: t_sq,
                    genuine_accepted: tally.genuine_accepted(),
                    impostor_accepted: tally.impostor_accepted(),
                    tar: tally.tar(),
                    far: tally.far(),
                }
            })
            .collect();
        let (genuine, impostor) = (classes.genuine(), classes.impostor());
        let c = Calibration(Fields {
            format: FORMAT.to_string(),
            source: String::new(),
            command: String::new(),
            pipeline: serde_json::Value::Null,
            pairs: genuine + impostor,
            genuine,
            impostor,
            no_face_pairs,
            points,
        });
        c.validate()?;
        Ok(c)
    }

    /// The same calibration, saying where it comes from: `source` (what the pairs were,
    /// e.g. "LFW View 1 DevTrain"), `command` (what regenerates it) and `pipeline` (the
    /// settings the distances were made with: face choice, embedding mode, detector
    /// thresholds, quantisation).
    pub fn with_origin(
        mut self,
        source: String,
        command: String,
        pipeline: serde_json::Value,
    ) -> Calibration {
        self.0.source = source;
        self.0.command = command;
        self.0.pipeline = pipeline;
        self
    }

    /// [`FORMAT`].
    pub fn format(&self) -> &str {
        &self.0.format
    }

    /// What the pairs were, e.g. "LFW View 1 DevTrain".
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The command that regenerates this calibration.
    pub fn command(&self) -> &str {
        &self.0.command
    }

    /// The pipeline settings the distances were made with.
    pub fn pipeline(&self) -> &serde_json::Value {
        &self.0.pipeline
    }

    /// Pairs counted: genuine + impostor.
    pub fn pairs(&self) -> u64 {
        self.0.pairs
    }

    /// Genuine pairs (same person), with a face or not.
    pub fn genuine(&self) -> u64 {
        self.0.genuine
    }

    /// Impostor pairs (different people), with a face or not.
    pub fn impostor(&self) -> u64 {
        self.0.impostor
    }

    /// Pairs with an image where no face was found (counted, never accepted).
    pub fn no_face_pairs(&self) -> u64 {
        self.0.no_face_pairs
    }

    /// The grid, thresholds increasing; never empty.
    pub fn points(&self) -> &[CalibrationPoint] {
        &self.0.points
    }

    /// The grid `blindface eval --calibrate` uses: 0 to 2 in steps of [`GRID_STEP`],
    /// each value rounded to the step's three decimals.
    pub fn default_grid() -> Vec<f64> {
        grid(GRID_STEP)
    }

    /// The grid of calibrations on every impostor pair (`--all-impostors`): 0 to 2 in
    /// steps of [`FINE_GRID_STEP`], rounded to three decimals; it holds every point of
    /// [`default_grid`](Self::default_grid).
    pub fn fine_grid() -> Vec<f64> {
        grid(FINE_GRID_STEP)
    }

    /// Like [`from_distances`](Self::from_distances), from counts instead of one
    /// distance per pair, for millions of pairs: `genuine_counts[d]` (and
    /// `impostor_counts[d]`) is how many scored pairs of the class have squared distance
    /// exactly `d`. `genuine` and `impostor` are the class totals, counting pairs with an
    /// image where no face was found (`no_face_pairs` of them, never accepted).
    #[allow(clippy::too_many_arguments)]
    pub fn from_counts(
        genuine_counts: &[u64],
        genuine: u64,
        impostor_counts: &[u64],
        impostor: u64,
        no_face_pairs: u64,
        grid: &[f64],
        params: &Params,
    ) -> Result<Calibration, CalibrationError> {
        let counts = CumulativeCounts::new(genuine_counts, impostor_counts);
        let scored = counts.scored();
        if scored + no_face_pairs != genuine + impostor {
            return Err(CalibrationError::Invalid(format!(
                "{scored} scored + {no_face_pairs} no-face pairs is not {} genuine + {} \
                 impostor pairs",
                genuine, impostor
            )));
        }
        let classes = Classes::new(genuine, impostor)?;
        Self::on_grid(grid, params, classes, no_face_pairs, |t| counts.accepted(t))
    }

    /// Parses and checks a calibration file's text: a file that parses but breaks an
    /// invariant is [`CalibrationError::Invalid`], [`NoPoints`](CalibrationError::NoPoints)
    /// or [`Classes`](CalibrationError::Classes).
    pub fn from_json(text: &str) -> Result<Calibration, CalibrationError> {
        let file: Fields =
            serde_json::from_str(text).map_err(|e| CalibrationError::Parse(e.to_string()))?;
        Calibration::try_from(file)
    }

    /// The file text: the header fields pretty-printed, one grid point a line.
    pub fn to_json(&self) -> String {
        let mut head = serde_json::to_value(self).expect("calibration serializes");
        let map = head.as_object_mut().expect("an object");
        map.remove("points");
        let head = serde_json::to_string_pretty(&head).expect("calibration serializes");
        let head = head.trim_end().trim_end_matches('}').trim_end();
        let points: Vec<String> = self
            .0
            .points
            .iter()
            .map(|p| {
                format!(
                    "    {}",
                    serde_json::to_string(p).expect("point serializes")
                )
            })
            .collect();
        format!(
            "{head},\n  \"points\": [\n{}\n  ]\n}}\n",
            points.join(",\n")
        )
    }

    /// The calibration shipped with blindface (LFW View 1 DevTrain) for templates of
    /// `params`, parsed once: thresholds mean different error rates for each version.
    pub fn lfw_devtrain(params: &Params) -> Result<&'static Calibration, CalibrationError> {
        static V1: OnceLock<Result<Calibration, CalibrationError>> = OnceLock::new();
        static V2: OnceLock<Result<Calibration, CalibrationError>> = OnceLock::new();
        let (cell, json) = match params.version {
            1 => (&V1, LFW_DEVTRAIN_JSON),
            _ => (&V2, LFW_DEVTRAIN_V2_JSON),
        };
        cell.get_or_init(|| {
            let c = Calibration::from_json(json)?;
            match c.pipeline().get("q").and_then(|q| q.as_i64()) {
                Some(q) if q == params.q as i64 => Ok(c),
                other => Err(CalibrationError::Invalid(format!(
                    "the calibration for parameters v{} was made with q = {other:?}, not {}",
                    params.version, params.q
                ))),
            }
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// Checks the invariants every use relies on: at least one point, both classes
    /// present, thresholds increasing, counts non-decreasing and within the class totals,
    /// rates equal to the counts' ratios.
    fn validate(&self) -> Result<(), CalibrationError> {
        let bad = |m: String| Err(CalibrationError::Invalid(m));
        if self.0.format != FORMAT {
            return bad(format!("format `{}`, expected `{FORMAT}`", self.0.format));
        }
        if self.0.genuine + self.0.impostor != self.0.pairs {
            return bad(format!(
                "{} genuine + {} impostor pairs is not {} pairs",
                self.0.genuine, self.0.impostor, self.0.pairs
            ));
        }
        if self.0.no_face_pairs > self.0.pairs {
            return bad(format!(
                "{} no-face pairs out of {}",
                self.0.no_face_pairs, self.0.pairs
            ));
        }
        if self.0.points.is_empty() {
            return Err(CalibrationError::NoPoints);
        }
        let classes = self.classes()?;
        for (i, p) in self.0.points.iter().enumerate() {
            if !p.threshold.is_finite() {
                return bad(format!(
                    "point {i}: threshold {} is not finite",
                    p.threshold
                ));
            }
            if p.genuine_accepted > self.0.genuine || p.impostor_accepted > self.0.impostor {
                return bad(format!(
                    "point {i} (threshold {}): more pairs accepted than there are",
                    p.threshold
                ));
            }
            let counted = classes.tally(p.genuine_accepted, p.impostor_accepted);
            if (p.tar - counted.tar()).abs() > 1e-9 || (p.far - counted.far()).abs() > 1e-9 {
                return bad(format!(
                    "point {i} (threshold {}): rates do not match the counts",
                    p.threshold
                ));
            }
            if let Some(prev) = i.checked_sub(1).map(|j| &self.0.points[j]) {
                if p.threshold <= prev.threshold {
                    return bad(format!(
                        "thresholds not increasing at point {i} ({} after {})",
                        p.threshold, prev.threshold
                    ));
                }
                if p.threshold_sq < prev.threshold_sq
                    || p.genuine_accepted < prev.genuine_accepted
                    || p.impostor_accepted < prev.impostor_accepted
                {
                    return bad(format!(
                        "counts decrease at point {i} (threshold {})",
                        p.threshold
                    ));
                }
            }
        }
        Ok(())
    }

    /// The class totals, both non-zero.
    fn classes(&self) -> Result<Classes, RocError> {
        Classes::new(self.0.genuine, self.0.impostor)
    }

    fn operating_point(&self, p: &CalibrationPoint) -> OperatingPoint {
        OperatingPoint {
            threshold: p.threshold as f32,
            threshold_sq: p.threshold_sq,
            far: p.far,
            tar: p.tar,
            genuine_accepted: p.genuine_accepted,
            genuine: self.0.genuine,
            impostor_accepted: p.impostor_accepted,
            impostor: self.0.impostor,
        }
    }

    /// The smallest FAR above zero this calibration can tell: 1 / impostor pairs.
    pub fn min_far(&self) -> f64 {
        1.0 / self.0.impostor.max(1) as f64
    }

    /// The most accepting grid threshold whose FAR is at most `far` (so TAR is as high as
    /// that FAR allows). `far` must be in (0, 1] and at least [`min_far`](Self::min_far).
    pub fn threshold_for_far(&self, far: f64) -> Result<OperatingPoint, CalibrationError> {
        if !(far.is_finite() && far > 0.0 && far <= 1.0) {
            return Err(CalibrationError::FarNotARate { far });
        }
        if self.0.impostor == 0 || far < self.min_far() {
            return Err(CalibrationError::FarBelowResolution {
                far,
                impostor: self.0.impostor,
                min_far: self.min_far(),
            });
        }
        // FAR is non-decreasing along the grid: the last point at or below the target.
        let n = self.0.points.partition_point(|p| p.far <= far);
        let p = &self.0.points[n.saturating_sub(1)];
        Ok(self.operating_point(p))
    }

    /// The rates at the grid threshold nearest `threshold` (the grid's first or last point
    /// outside its range; the first point for NaN). The returned `threshold` says which.
    pub fn at_threshold(&self, threshold: f32) -> OperatingPoint {
        let t = threshold as f64;
        let i = self.0.points.partition_point(|p| p.threshold <= t);
        let nearest = match (i.checked_sub(1), self.0.points.get(i)) {
            (None, _) => 0,
            (Some(below), None) => below,
            (Some(below), Some(above)) => {
                if (above.threshold - t) < (t - self.0.points[below].threshold) {
                    i
                } else {
                    below
                }
            }
        };
        self.operating_point(&self.0.points[nearest])
    }

    /// The equal error rate point: the grid threshold where FAR and FRR are closest
    /// (ties: the smaller threshold), by the ROC core's rule ([`crate::roc::equal_error`]).
    /// The EER itself is [`eer_rate`](Self::eer_rate).
    pub fn eer(&self) -> OperatingPoint {
        self.operating_point(&self.0.points[self.equal_error().index])
    }

    /// The equal error rate, (FAR + FRR) / 2 at [`eer`](Self::eer)'s point.
    pub fn eer_rate(&self) -> f64 {
        self.equal_error().rate
    }

    fn equal_error(&self) -> EqualError {
        let classes = self.classes().expect("validated: both classes present");
        let tallies = self
            .0
            .points
            .iter()
            .map(|p| classes.tally(p.genuine_accepted, p.impostor_accepted));
        equal_error(tallies).expect("validated: at least one point")
    }

    /// What the grid threshold nearest `threshold` (as [`at_threshold`](Self::at_threshold))
    /// means when a face is compared with `people` distinct enrolled people.
    pub fn identification_at(&self, threshold: f32, people: u64) -> IdentificationPoint {
        let pair = self.at_threshold(threshold);
        IdentificationPoint {
            pair,
            people,
            fpir: fpir(pair.far, people),
        }
    }

    /// The largest gallery for which this calibration can resolve an FPIR of `target`: the
    /// most people for whom one accepted impostor pair ([`min_far`](Self::min_far)) still
    /// gives an FPIR of at most `target` (0 if not even one; `u64::MAX` for a target of 1).
    pub fn max_people_for_fpir(&self, target: f64) -> u64 {
        if !(target.is_finite() && target > 0.0) || self.0.impostor == 0 {
            return 0;
        }
        if target >= 1.0 {
            return u64::MAX;
        }
        let min_far = self.min_far();
        // The closed form, then corrected by the same function the answers use.
        let mut n = ((-target).ln_1p() / (-min_far).ln_1p()).floor().max(0.0) as u64;
        while fpir(min_far, n + 1) <= target {
            n += 1;
        }
        while n > 0 && fpir(min_far, n) > target {
            n -= 1;
        }
        n
    }

    /// The most accepting grid threshold whose FPIR with `people` distinct enrolled people
    /// is at most `target`: "FPIR 1% for this gallery" is `threshold_for_fpir(0.01, n)`.
    /// With one person it is [`threshold_for_far`](Self::threshold_for_far). Errors: a
    /// target outside (0, 1], nobody enrolled, or a target the calibration cannot resolve
    /// for that many people (see [`max_people_for_fpir`](Self::max_people_for_fpir)).
    pub fn threshold_for_fpir(
        &self,
        target: f64,
        people: u64,
    ) -> Result<IdentificationPoint, CalibrationError> {
        if !(target.is_finite() && target > 0.0 && target <= 1.0) {
            return Err(CalibrationError::FpirNotARate { fpir: target });
        }
        if people == 0 {
            return Err(CalibrationError::NobodyEnrolled);
        }
        let min_fpir = fpir(self.min_far(), people);
        // FPIR is non-decreasing along the grid (FAR is): the last point within the target.
        let n = self
            .0
            .points
            .partition_point(|p| fpir(p.far, people) <= target);
        if self.0.impostor == 0 || min_fpir > target || n == 0 {
            return Err(CalibrationError::FpirBelowResolution {
                fpir: target,
                people,
                impostor: self.0.impostor,
                min_fpir,
                max_people: self.max_people_for_fpir(target),
            });
        }
        let pair = self.operating_point(&self.0.points[n - 1]);
        Ok(IdentificationPoint {
            pair,
            people,
            fpir: fpir(pair.far, people),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::SFACE_L2_THRESHOLD;

    /// 4 genuine pairs at L2 0.5, 0.8, 1.0, 1.3 plus one with no face; 5 impostors at
    /// 1.05, 1.2, 1.3, 1.4, 1.5.
    fn small() -> (Calibration, Params) {
        let p = Params::v1();
        let sq = |l2: f64| Some(Threshold::new(l2 as f32, &p).squared());
        let d = [
            sq(0.5),
            sq(0.8),
            sq(1.0),
            sq(1.3),
            None,
            sq(1.05),
            sq(1.2),
            sq(1.3),
            sq(1.4),
            sq(1.5),
        ];
        let same = [
            true, true, true, true, true, false, false, false, false, false,
        ];
        let c = Calibration::from_distances(&d, &same, &Calibration::default_grid(), &p)
            .expect("consistent");
        (c, p)
    }

    #[test]
    fn grid_is_fine_and_increasing_and_holds_the_default_threshold() {
        let g = Calibration::default_grid();
        assert_eq!(g.len(), 1001);
        assert_eq!((g[0], g[1], g[1000]), (0.0, 0.002, 2.0));
        assert!(g.windows(2).all(|w| w[0] < w[1]));
        let default = SFACE_L2_THRESHOLD as f64;
        assert!(g.iter().any(|&t| (t - default).abs() < 1e-6), "{default}");
    }

    #[test]
    fn from_counts_agrees_with_from_distances_and_the_fine_grid_holds_the_default_one() {
        let (c, p) = small();
        // The same pairs as counts by squared distance (the no-face pair is genuine).
        let sq = |l2: f64| Threshold::new(l2 as f32, &p).squared() as usize;
        let count = |l2s: &[f64]| {
            let mut v = vec![0u64; sq(2.0) + 1];
            for &l2 in l2s {
                v[sq(l2)] += 1;
            }
            v
        };
        let g = count(&[0.5, 0.8, 1.0, 1.3]);
        let i = count(&[1.05, 1.2, 1.3, 1.4, 1.5]);
        let grid = Calibration::default_grid();
        let from_counts = Calibration::from_counts(&g, 5, &i, 5, 1, &grid, &p).unwrap();
        assert_eq!(from_counts, c);
        // Counts must add up to the totals.
        assert!(matches!(
            Calibration::from_counts(&g, 5, &i, 5, 0, &grid, &p),
            Err(CalibrationError::Invalid(_))
        ));
        // Trailing counts shorter than the grid's thresholds: everything accepted above.
        let short = Calibration::from_counts(&g[..=sq(1.3)], 5, &i, 5, 1, &grid, &p).unwrap();
        assert_eq!(short, c);
        let fine = Calibration::fine_grid();
        assert_eq!(fine.len(), 2001);
        assert_eq!((fine[1], fine[1128], fine[2000]), (0.001, 1.128, 2.0));
        assert!(fine.windows(2).all(|w| w[0] < w[1]));
        assert!(grid.iter().all(|t| fine.contains(t)));
    }

    #[test]
    fn counts_and_rates_from_distances() {
        let (c, p) = small();
        assert_eq!(
            (c.0.pairs, c.0.genuine, c.0.impostor, c.0.no_face_pairs),
            (10, 5, 5, 1)
        );
        let at = |t: f32| c.at_threshold(t);
        // At 1.1: genuine 0.5, 0.8, 1.0 accepted (the no-face pair never is); impostor 1.05.
        let op = at(1.1);
        assert_eq!((op.genuine_accepted, op.impostor_accepted), (3, 1));
        assert_eq!((op.tar, op.far), (3.0 / 5.0, 1.0 / 5.0));
        assert_eq!(op.threshold_sq, Threshold::new(1.1, &p).squared());
        assert_eq!(op.frr(), 1.0 - 3.0 / 5.0);
        // Everything with a face accepted at the top of the grid, nothing at 0.
        let top = at(2.0);
        assert_eq!((top.genuine_accepted, top.impostor_accepted), (4, 5));
        let bottom = at(0.0);
        assert_eq!((bottom.genuine_accepted, bottom.impostor_accepted), (0, 0));
        for w in c.0.points.windows(2) {
            assert!(w[0].threshold < w[1].threshold);
            assert!(w[0].far <= w[1].far && w[0].tar <= w[1].tar);
        }
    }

    #[test]
    fn at_threshold_takes_the_nearest_grid_point() {
        let (c, _) = small();
        assert!((c.at_threshold(1.1003).threshold - 1.1).abs() < 1e-6);
        assert!((c.at_threshold(1.1013).threshold - 1.102).abs() < 1e-6);
        assert_eq!(c.at_threshold(-3.0).threshold, 0.0);
        assert_eq!(c.at_threshold(7.0).threshold, 2.0);
        assert_eq!(c.at_threshold(f32::NAN).threshold, 0.0);
    }

    #[test]
    fn threshold_for_far_is_the_most_accepting_point_within_the_target() {
        let (c, _) = small();
        // FAR 0.2 allows one impostor (at 1.05): the threshold stops below 1.2.
        let op = c.threshold_for_far(0.2).expect("resolvable");
        assert_eq!(op.impostor_accepted, 1);
        assert!((1.05..1.2).contains(&(op.threshold as f64)), "{op:?}");
        assert!((op.threshold as f64 - 1.198).abs() < 1e-6, "{op:?}");
        assert_eq!(op.genuine_accepted, 3);
        // 0.3 is still one impostor out of five.
        assert_eq!(c.threshold_for_far(0.3).unwrap(), op);
        assert_eq!(c.threshold_for_far(1.0).unwrap().threshold, 2.0);
    }

    #[test]
    fn unresolvable_or_meaningless_far_is_a_typed_error() {
        let (c, _) = small();
        for far in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = c.threshold_for_far(far).unwrap_err();
            assert!(
                matches!(e, CalibrationError::FarNotARate { .. }),
                "{far}: {e}"
            );
        }
        let e = c.threshold_for_far(0.1).unwrap_err();
        assert_eq!(
            e,
            CalibrationError::FarBelowResolution {
                far: 0.1,
                impostor: 5,
                min_far: 0.2
            }
        );
        assert!(e.to_string().contains("1/5"), "{e}");
    }

    #[test]
    fn eer_where_far_and_frr_cross() {
        let (c, _) = small();
        let e = c.eer();
        // From 1.05 to 1.2: FAR 1/5, FRR 2/5; from 1.2 to 1.3: FAR 2/5, FRR 2/5 (equal);
        // from 1.3: FAR 3/5, FRR 1/5. The first equal point is 1.2.
        assert_eq!((e.impostor_accepted, e.genuine_accepted), (2, 3));
        assert!((e.threshold - 1.2).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn json_round_trip_and_inconsistent_files_are_rejected() {
        let (mut c, _) = small();
        c.0.source = "test".into();
        let text = c.to_json();
        let back = Calibration::from_json(&text).unwrap();
        assert_eq!(
            (back.0.pairs, back.0.genuine, back.0.no_face_pairs),
            (10, 5, 1)
        );
        assert_eq!(back.0.source, "test");
        assert_eq!(back.0.points.len(), c.0.points.len());
        for (a, b) in back.0.points.iter().zip(&c.0.points) {
            assert_eq!(
                (a.genuine_accepted, a.impostor_accepted),
                (b.genuine_accepted, b.impostor_accepted)
            );
            assert!((a.threshold - b.threshold).abs() < 1e-12 && (a.far - b.far).abs() < 1e-12);
        }
        assert!(text.lines().count() > c.0.points.len(), "one point a line");

        let broken = |f: &dyn Fn(&mut Calibration)| {
            let mut b = c.clone();
            f(&mut b);
            Calibration::from_json(&b.to_json()).unwrap_err()
        };
        let cases: [&dyn Fn(&mut Calibration); 5] = [
            &|b| b.0.points.swap(3, 4),
            &|b| b.0.points[700].impostor_accepted = 0,
            &|b| b.0.points[10].tar = 0.5,
            &|b| b.0.genuine = 9,
            &|b| b.0.points[5].genuine_accepted = 99,
        ];
        for case in cases {
            assert!(matches!(broken(case), CalibrationError::Invalid(_)));
        }
        assert!(matches!(
            Calibration::from_json("{\"format\": 3}"),
            Err(CalibrationError::Parse(_))
        ));
        let mut other = c.clone();
        other.0.format = "something/2".into();
        assert!(matches!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Invalid(_))
        ));
    }

    #[test]
    fn sweep_and_calibration_report_the_same_eer_on_the_same_data() {
        use rand::{Rng, SeedableRng};
        let p = Params::v1();
        let grid = Calibration::fine_grid();
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        for trial in 0..20 {
            // L2 distances on the fine grid, 0.3 to 1.8, where consecutive grid points are
            // distinct squared distances; genuine pairs mostly closer than impostors, with
            // overlap (and ties) between them.
            let n = rng.random_range(2..300);
            let same: Vec<bool> = (0..n).map(|i| i % 3 == 0 || rng.random_bool(0.3)).collect();
            let l2: Vec<f64> = same
                .iter()
                .map(|&s| {
                    let k: u32 = if s {
                        rng.random_range(300..=1300)
                    } else {
                        rng.random_range(900..=1800)
                    };
                    k as f64 / 1000.0
                })
                .collect();
            if !same.contains(&false) {
                continue;
            }
            let d: Vec<i64> = l2
                .iter()
                .map(|&x| Threshold::new(x as f32, &p).squared())
                .collect();
            let s = crate::eval::sweep(&d.iter().map(|&x| x as f64).collect::<Vec<_>>(), &same)
                .unwrap();
            let float = crate::eval::sweep(&l2, &same).unwrap();
            let c = Calibration::from_distances(
                &d.iter().copied().map(Some).collect::<Vec<_>>(),
                &same,
                &grid,
                &p,
            )
            .unwrap();
            assert_eq!(s.eer, c.eer_rate(), "trial {trial}");
            assert_eq!(float.eer, c.eer_rate(), "trial {trial}");
            let e = c.eer();
            assert_eq!(c.eer_rate(), (e.far + e.frr()) / 2.0, "trial {trial}");
        }
    }

    #[test]
    fn an_empty_class_is_a_typed_error() {
        let p = Params::v1();
        let grid = Calibration::default_grid();
        assert_eq!(
            Calibration::from_distances(&[Some(5), None], &[true, true], &grid, &p),
            Err(CalibrationError::Classes(RocError::NoImpostor))
        );
        assert_eq!(
            Calibration::from_distances(&[Some(5)], &[false], &grid, &p),
            Err(CalibrationError::Classes(RocError::NoGenuine))
        );
        assert_eq!(
            Calibration::from_counts(&[0, 2], 2, &[], 0, 0, &grid, &p),
            Err(CalibrationError::Classes(RocError::NoImpostor))
        );
        // A file whose impostor class is empty is refused too (FAR would be 0 / 0).
        let (c, _) = small();
        let mut text: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        text["impostor"] = 0.into();
        text["pairs"] = 5.into();
        for point in text["points"].as_array_mut().unwrap() {
            point["impostor_accepted"] = 0.into();
            point["far"] = 0.0.into();
        }
        assert_eq!(
            Calibration::from_json(&text.to_string()),
            Err(CalibrationError::Classes(RocError::NoImpostor))
        );
    }

    #[test]
    fn an_empty_calibration_is_refused_whichever_way_it_is_read() {
        let (c, _) = small();
        let mut text: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        text["points"] = serde_json::json!([]);
        let text = text.to_string();
        assert_eq!(
            Calibration::from_json(&text),
            Err(CalibrationError::NoPoints)
        );
        // Through serde directly (e.g. inside another document), the same check runs.
        let e = serde_json::from_str::<Calibration>(&text).unwrap_err();
        assert!(e.to_string().contains("no grid points"), "{e}");
        let e = serde_json::from_str::<Calibration>(
            &c.to_json()
                .replace("\"threshold\":1.198,", "\"threshold\":9.0,"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not increasing"), "{e}");
        assert_eq!(
            serde_json::from_str::<Calibration>(&c.to_json()).unwrap(),
            Calibration::from_json(&c.to_json()).unwrap()
        );
        assert!(matches!(
            Calibration::from_json(""),
            Err(CalibrationError::Parse(_))
        ));
        assert!(matches!(
            Calibration::from_json("{}"),
            Err(CalibrationError::Parse(_))
        ));
    }

    #[test]
    fn describe_says_one_in_n_with_counts() {
        let (c, _) = small();
        let op = c.at_threshold(1.1);
        assert_eq!(op.one_in_n_strangers(), Some(5));
        assert_eq!(
            op.describe(),
            "about 1 in 5 strangers accepted (1 of 5), 60.0% of genuine attempts accepted (3 of 5)"
        );
        assert!(c
            .at_threshold(0.9)
            .describe()
            .starts_with("no stranger accepted (0 of 5"));
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn the_shipped_lfw_devtrain_calibrations_are_consistent() {
        for p in Params::known() {
            shipped_calibration_is_consistent(&p);
        }
    }

    fn shipped_calibration_is_consistent(p: &Params) {
        let c = Calibration::lfw_devtrain(p).expect("embedded asset parses and validates");
        // DevTrain's 1,100 listed genuine pairs, and every pair of two of its 3,443 images
        // of different identities as impostors: 5,923,194.
        assert_eq!(
            (c.0.pairs, c.0.genuine, c.0.impostor, c.0.no_face_pairs),
            (5_924_294, 1100, 5_923_194, 0)
        );
        assert_eq!(c.0.points.len(), Calibration::fine_grid().len());
        assert!(
            c.0.command.contains("--calibrate") && c.0.command.contains("--all-impostors"),
            "{}",
            c.0.command
        );
        for w in c.0.points.windows(2) {
            assert!(w[0].threshold < w[1].threshold);
            assert!(w[0].far <= w[1].far && w[0].tar <= w[1].tar);
        }
        // Made with these parameters, and grid thresholds map to the squared distances
        // the app compares with under them.
        assert_eq!(c.pipeline()["q"], p.q, "v{}", p.version);
        if p.version > 1 {
            assert!(c.0.command.contains(&format!("--params {}", p.version)));
            assert_eq!(c.pipeline()["settings"]["params"]["version"], p.version);
        }
        for pt in &c.0.points {
            assert_eq!(
                pt.threshold_sq,
                Threshold::new(pt.threshold as f32, p).squared()
            );
        }
        // FAR presets resolve, and within their target, down to 1e-5 and below.
        for far in [0.01, 0.001, 0.0001, 0.00001, 0.000001] {
            let op = c
                .threshold_for_far(far)
                .expect("resolvable on 5,923,194 impostors");
            assert!(op.far <= far, "{far}: {op:?}");
        }
        // 1 / 5,923,194 = 1.688e-7 is the resolution.
        assert!(close(c.min_far(), 1.0 / 5_923_194.0));
        assert!(matches!(
            c.threshold_for_far(0.0000001),
            Err(CalibrationError::FarBelowResolution { .. })
        ));
        // The default threshold is a grid point.
        let t = default_threshold(p);
        let d = c.at_threshold(t);
        assert!((d.threshold - t).abs() < 1e-6);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    #[test]
    fn fpir_edge_cases_and_tiny_far() {
        for far in [0.0, 1e-9, 0.001, 0.3, 1.0] {
            assert_eq!(fpir(far, 0), 0.0, "nobody enrolled: nobody to be named as");
            assert_eq!(fpir(far, 1), far, "one person: the 1:1 FAR");
        }
        assert_eq!(fpir(0.0, 1000), 0.0);
        assert_eq!(fpir(1.0, 2), 1.0);
        assert_eq!((fpir(-0.5, 3), fpir(1.5, 3)), (0.0, 1.0), "clamped");
        // 1 - (1 - 0.2)^2 = 0.36; 1 - 0.8^3 = 0.488.
        assert!(close(fpir(0.2, 2), 0.36) && close(fpir(0.2, 3), 0.488));
        // Tiny FAR: 1 - (1 - 1e-12)^1000 = 1e-9 - C(1000, 2) 1e-24 + ... = 9.99999999500500e-10
        // (the next term, C(1000, 3) 1e-36, is below f64's precision here). Computing
        // 1 - (1 - far)^n directly would be wrong from the 5th digit (1 - 1e-12 rounds).
        let want = 1e-9 - 499_500.0 * 1e-24;
        assert!(
            close(fpir(1e-12, 1000), want),
            "{} vs {want}",
            fpir(1e-12, 1000)
        );
        // far_for_fpir inverts fpir.
        for (far, n) in [(1e-12, 1000), (0.001, 25), (0.2, 2), (0.05, 1)] {
            assert!(close(far_for_fpir(fpir(far, n), n), far), "{far} {n}");
        }
        assert!(far_for_fpir(0.01, 0).is_nan());
        assert_eq!(far_for_fpir(1.0, 7), 1.0);
    }

    #[test]
    fn fpir_on_the_shipped_calibration_matches_hand_computed_values() {
        let c = Calibration::lfw_devtrain(&Params::v1()).unwrap();
        // The grid point of the default threshold (assets/calibration-lfw-devtrain.json):
        // {"threshold":1.128,"threshold_sq":9981,"impostor_accepted":6539, ...} of
        // 5,923,194 impostor pairs: FAR 0.110%, 1 in 905.8.
        let at = c.at_threshold(1.128);
        assert_eq!((at.impostor_accepted, at.impostor), (6539, 5_923_194));
        assert_eq!(at.threshold_sq, 9981);
        // 1 - (5916655/5923194)^n, by hand (python, exact fractions and 40-digit decimals,
        // from the new JSON's counts):
        //   n = 1: 6539/5923194 = 0.00110396519175296301...
        //   n = 2: 77420772611/35084227161636 = 0.00220671164436132386...
        //   n = 25: 0.0272365838727459930... (1 in 36.7)
        //   n = 1165: 0.723855192737454602... (BENCHMARKS.md measured 62.85% of LFW strangers)
        let hand = [
            (1, 6539.0 / 5_923_194.0),
            (2, 77_420_772_611.0 / 35_084_227_161_636.0),
            (25, 0.027_236_583_872_745_993),
            (1165, 0.723_855_192_737_454_6),
        ];
        for (n, want) in hand {
            let got = c.identification_at(1.128, n);
            assert!(close(got.fpir, want), "{n}: {} vs {want}", got.fpir);
            assert_eq!(got.pair, at);
            assert_eq!(got.people, n);
        }
        assert_eq!(c.identification_at(1.128, 0).fpir, 0.0);
        // FPIR 1% with 25 people needs a 1:1 FAR of 1 - 0.99^(1/25) = 0.000401932637567
        // (1 in 2,488): now well above the calibration's 1/5,923,194.
        assert!(close(far_for_fpir(0.01, 25), 0.000_401_932_637_566_937_4));
        assert!(far_for_fpir(0.01, 25) > c.min_far());
    }

    #[test]
    fn identification_is_described_for_the_gallery_size() {
        let c = Calibration::lfw_devtrain(&Params::v1()).unwrap();
        let say = |t: f32, n: u64| c.identification_at(t, n).describe();
        assert_eq!(
            say(1.128, 0),
            "Nobody is enrolled yet, so no stranger can get a name"
        );
        // 5923194/6539 = 905.83; 0.1104%.
        assert_eq!(
            say(1.128, 1),
            "With 1 person enrolled, about 1 in 906 strangers gets a name (0.11%)"
        );
        // 35084227161636/77420772611 = 453.16; 0.2207%.
        assert_eq!(
            say(1.128, 2),
            "With 2 people enrolled, about 1 in 453 strangers gets a name (0.22%)"
        );
        // 1/0.027237 = 36.72; 2.724%.
        assert_eq!(
            say(1.128, 25),
            "With 25 people enrolled, about 1 in 37 strangers gets a name (2.7%)"
        );
        assert_eq!(
            say(1.128, 1165),
            "With 1,165 people enrolled, about 72% of strangers get a name"
        );
        assert_eq!(
            c.identification_at(1.128, 25).one_in_n_strangers(),
            Some(37)
        );
        // At 0.708 and below no impostor pair was accepted (0.709 accepts one): quote the
        // resolution, 1 - (5923193/5923194)^25 = 4.2207e-6, 1 in 236,928 for 25.
        assert_eq!(c.at_threshold(0.708).impostor_accepted, 0);
        assert!(c.at_threshold(0.709).impostor_accepted > 0);
        assert_eq!(c.identification_at(0.708, 25).one_in_n_strangers(), None);
        assert_eq!(
            say(0.708, 25),
            "With 25 people enrolled, fewer than about 1 in 236,928 strangers gets a name \
             (no stranger pair of 5,923,194 was accepted)"
        );
        assert_eq!(percent(0.653), "65%");
        assert_eq!(percent(0.022_48), "2.2%");
        assert_eq!(percent(0.000_909), "0.09%");
    }

    #[test]
    fn threshold_for_fpir_on_the_shipped_calibration_matches_hand_computed_values() {
        let c = Calibration::lfw_devtrain(&Params::v1()).unwrap();
        // Impostor pairs accepted (of 5,923,194) at the grid points around each answer
        // (from the asset): for n people the answer is the last point with
        // 1 - (1 - a/5923194)^n <= 1%, the next point is over (hand-computed, python).
        //   n     answer  a        FPIR          next   a        FPIR
        //   1     1.183   57,645   0.97321%      1.184  59,775   1.00917%
        //   2     1.165   29,426   0.99112%      1.166  30,546   1.02874%
        //   3     1.154   19,149   0.96673%      1.155  19,931   1.00608%
        //   10    1.125    5,763   0.96871%      1.126   5,995   1.00753%
        //   25    1.104    2,291   0.96249%      1.105   2,401   1.00847%
        //   100   1.074      576   0.96778%      1.075     606   1.01793%
        //   1000  1.023       57   0.95771%      1.024      62   1.04128%
        let table: [(u64, f64, u64, f64, u64); 7] = [
            (1, 1.183, 57_645, 1.184, 59_775),
            (2, 1.165, 29_426, 1.166, 30_546),
            (3, 1.154, 19_149, 1.155, 19_931),
            (10, 1.125, 5_763, 1.126, 5_995),
            (25, 1.104, 2_291, 1.105, 2_401),
            (100, 1.074, 576, 1.075, 606),
            (1000, 1.023, 57, 1.024, 62),
        ];
        let pick = |n: u64| c.threshold_for_fpir(0.01, n).unwrap();
        for (n, t, a, next_t, next_a) in table {
            assert_eq!(c.at_threshold(t as f32).impostor_accepted, a, "{t}");
            assert_eq!(c.at_threshold(next_t as f32).impostor_accepted, next_a);
            let got = pick(n);
            assert!((got.threshold() as f64 - t).abs() < 1e-6, "{n}: {got:?}");
            assert_eq!(got.pair.impostor_accepted, a, "{n}");
            assert!(got.fpir <= 0.01 && fpir(next_a as f64 / 5_923_194.0, n) > 0.01);
        }
        // 1 person: FPIR = FAR, the FAR 1% preset.
        let one = pick(1);
        assert_eq!(one.pair, c.threshold_for_far(0.01).unwrap());
        // (close, not equal: serde_json's default float parsing may differ by an ulp.)
        assert!(close(one.fpir, 57_645.0 / 5_923_194.0), "{}", one.fpir);
        // 2 people: 1 - (5893768/5923194)^2 = 0.0099111752472128651 (1 in 100.9).
        let two = pick(2);
        assert!(close(two.fpir, 0.009_911_175_247_212_865), "{}", two.fpir);
        assert_eq!(
            two.describe(),
            "With 2 people enrolled, about 1 in 101 strangers gets a name (0.99%)"
        );
        // 25 people (the demo): 1 - (5920903/5923194)^25 = 0.0096248661778305119.
        assert!(close(pick(25).fpir, 0.009_624_866_177_830_512));
        // Resolution: ln 0.99 / ln(1 - 1/5923194) = 59,530.08 people; one impostor with
        // 59,531 is an FPIR of 1.0000153%.
        assert_eq!(c.max_people_for_fpir(0.01), 59_530);
        assert!(pick(59_530).fpir <= 0.01);
        match c.threshold_for_fpir(0.01, 59_531).unwrap_err() {
            CalibrationError::FpirBelowResolution {
                fpir: t,
                people,
                impostor,
                min_fpir,
                max_people,
            } => {
                assert_eq!(
                    (t, people, impostor, max_people),
                    (0.01, 59_531, 5_923_194, 59_530)
                );
                assert!(close(min_fpir, 0.010_000_153_099_785_8), "{min_fpir}");
            }
            e => panic!("{e}"),
        }
        assert!(c
            .threshold_for_fpir(0.01, 100_000)
            .unwrap_err()
            .to_string()
            .contains("up to 59530 people"));
    }

    #[test]
    fn threshold_for_fpir_errors_are_typed() {
        let c = Calibration::lfw_devtrain(&Params::v1()).unwrap();
        for t in [0.0, -0.01, 1.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    c.threshold_for_fpir(t, 3),
                    Err(CalibrationError::FpirNotARate { .. })
                ),
                "{t}"
            );
        }
        assert_eq!(
            c.threshold_for_fpir(0.01, 0),
            Err(CalibrationError::NobodyEnrolled)
        );
        // A target of 1 takes the whole grid, whatever the gallery.
        assert_eq!(c.threshold_for_fpir(1.0, 500).unwrap().threshold(), 2.0);
        assert_eq!(c.max_people_for_fpir(1.0), u64::MAX);
        assert_eq!(c.max_people_for_fpir(0.0), 0);
        // The small calibration (5 impostors at 1.05, 1.2, 1.3, 1.4, 1.5), 2 people:
        // 1 impostor, 1 - 0.8^2 = 0.36 <= 0.5 < 1 - 0.6^2 = 0.64: stops below 1.2.
        let (s, _) = small();
        let op = s.threshold_for_fpir(0.5, 2).unwrap();
        assert!((op.threshold() - 1.198).abs() < 1e-6, "{op:?}");
        assert!(close(op.fpir, 0.36));
        // 0.3 < 0.36: unresolvable for 2, fine for 1 (FAR 0.2); ln 0.7 / ln 0.8 = 1.6.
        assert_eq!(s.max_people_for_fpir(0.3), 1);
        assert!(matches!(
            s.threshold_for_fpir(0.3, 2),
            Err(CalibrationError::FpirBelowResolution { max_people: 1, .. })
        ));
        assert!((s.threshold_for_fpir(0.3, 1).unwrap().threshold() - 1.198).abs() < 1e-6);
    }
}
