//! YuNet face detection: letterbox to 640x640, run, decode the three strides, NMS.
//!
//! The frame is scaled to fit 640x640 (aspect kept, padded right and bottom with zeros)
//! with OpenCV-style bilinear sampling, fed as BGR f32 0..255 NCHW. Each stride s in
//! {8, 16, 32} has (640/s)^2 anchors; an anchor at row r, column c decodes as
//! score = sqrt(cls * obj), centre ((c + b0) s, (r + b1) s), size (exp(b2) s, exp(b3) s),
//! landmark n ((k[2n] + c) s, (k[2n+1] + r) s). Faces scoring at least the threshold
//! survive non-maximum suppression and are mapped back to image pixels.
//!
//! # The close-up pass
//!
//! At 640 input YuNet finds faces from about 10 px up to about 300 px wide; larger ones it
//! starts to miss (measured on LFW faces centred in a 640x480 frame at a given box width,
//! 507 to 999 faces per width: the normal pass missed 0.1% at 150 to 225 px, 0.3% at 250,
//! 0.8% at 300, 2% at 325, 14% at 350, 73% at 400, over 99% from 450; both passes together
//! missed one face in all those frames). A second pass at half that scale finds those; its
//! faces are merged in by NMS with the first pass taking precedence, so a face found at
//! the normal scale always keeps the normal-scale landmarks (enrolment and probes then see
//! the same detection scale).
//!
//! What the close-up pass may add ([`CloseUpPass::Always`] and the default alike):
//!
//! - when the first pass found no face at the score threshold: any face (as a pass of its
//!   own; the no-face retry below then looks at both passes);
//! - when it found faces: only a *close-up*, a face whose box, clipped to the image, holds
//!   a rectangle of [`CLOSE_UP_MIN_SIZE`] (192 x 256 YuNet input pixels; in image pixels
//!   divided by the letterbox scale) that overlaps none of the first pass's boxes; then, as
//!   before, only if no first-pass face overlaps it by more than the NMS IoU. 192 x 256 is
//!   below the smallest face the normal pass was measured to miss for its size (the
//!   close-up pass's box 251 x 314) and leaves room for a neighbour's box to overlap it.
//!   A smaller face is the normal pass's to find, at its scale.
//!
//! The rule ([`CloseUpPass::WhenItCanFindMore`], the default): run the close-up pass when
//! the first pass found no face, or when a free close-up rectangle (192 x 256 input pixels,
//! overlapping no first-pass box) fits somewhere in the image; skip it otherwise. It loses
//! nothing: every face the close-up pass may add holds such a rectangle inside the image,
//! so when none fits the pass cannot add a face and skipping it returns exactly the faces,
//! scores and landmarks of [`CloseUpPass::Always`] (checked on every fixture photo and on
//! LFW images in `tests/vision.rs`). The rectangle search is exact: a free rectangle pushed
//! left and then up stops at x = 0 or a box's right edge and at y = 0 or a box's bottom
//! edge, so only those positions are tried (a few dozen for a few faces).
//!
//! What it saves: the pass is skipped when the first pass's faces leave no such gap, e.g.
//! one face over 256 px wide in the middle of a 640x480 frame (a face filling 40% of the
//! frame's width): half the detection time. A frame with a few small faces leaves room for
//! a close-up, so both passes run there, as they must: a close-up could be in that room.
//! On LFW View 1 (faces ~240 px wide at 640, ~200 px free on each side) it skips on 182 of
//! 4,992 images. What the close-up pass gives up next to the detector before this rule
//! (both passes, everything merged): when the first pass found a face, a second face too
//! small to hold the free rectangle, one the normal pass scored just below the threshold
//! and the half-scale pass just above (0.90 to 0.93): on 22 of the 4,992 LFW images, each
//! a smaller face beside the subject; the face nearest the centre is the same on all.
//!
//! No-face retry: when no face reaches the score threshold, the faces of the same two
//! passes that reach the lower retry threshold are returned instead, and the
//! [`Detection`] says so (`retry: true`). Both thresholds are applied to the outputs of
//! one model run per pass, so the retry costs no extra inference; each threshold is
//! applied per pass before the merge, so the faces above the score threshold are exactly
//! those a detector without retry returns. (The retry happens only when the first pass
//! found no face at the threshold, so the close-up pass has run unless it is off.)

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::error::VisionError;

/// YuNet's fixed input side, in pixels.
pub const YUNET_INPUT_SIZE: usize = 640;

const STRIDES: [usize; 3] = [8, 16, 32];
const MODEL: &str = "YuNet";

/// One detected face, in the pixel coordinates of the image given to the detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// Detection confidence in 0..1.
    pub score: f32,
    /// Box as x, y (top-left), width, height. Not clipped: a face cut by the frame edge
    /// may extend outside the image. Serialised as `box`.
    #[serde(rename = "box", alias = "bbox")]
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, right mouth corner, left mouth corner (the
    /// subject's right is on the image's left).
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    /// Box area in square pixels.
    pub fn area(&self) -> f32 {
        self.bbox[2].max(0.0) * self.bbox[3].max(0.0)
    }
}

/// The smallest close-up, as width and height in YuNet input pixels (see the module doc):
/// when the first pass found faces, the close-up pass may add only a face whose box holds
/// a rectangle of this size free of first-pass boxes.
pub const CLOSE_UP_MIN_SIZE: [f32; 2] = [192.0, 256.0];

/// When the second, half-scale detection pass (which finds close-ups) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseUpPass {
    /// On every image: two YuNet runs each time (evaluation, timing comparisons).
    Always,
    /// Only when it can add a face: the first pass found none, or a free close-up
    /// rectangle fits beside the first pass's faces. Same faces as `Always`, exactly.
    #[default]
    WhenItCanFindMore,
    /// Never: one YuNet run; faces larger than about 300 px at 640 are missed.
    Never,
    /// Only when the first pass found no face at all. For live video between full checks
    /// (the app runs [`CloseUpPass::WhenItCanFindMore`] every few frames): a close-up
    /// beside faces already found is found at the next full check, a few frames later.
    WhenNothingFound,
}

impl CloseUpPass {
    /// The mode's name as a command line would spell it.
    pub fn name(self) -> &'static str {
        match self {
            CloseUpPass::Always => "always",
            CloseUpPass::WhenItCanFindMore => "when-it-can-find-more",
            CloseUpPass::Never => "never",
            CloseUpPass::WhenNothingFound => "when-nothing-found",
        }
    }
}

impl std::fmt::Display for CloseUpPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Minimum score to keep a face (OpenCV's default for YuNet: 0.9).
    pub score_threshold: f32,
    /// Boxes overlapping more than this IoU are duplicates (0.3).
    pub nms_iou: f32,
    /// Whether the second, half-scale pass that finds close-ups may run at all; `false`
    /// means [`CloseUpPass::Never`] whatever `close_up` says (kept for the callers that
    /// switch the pass off). Read both through [`DetectorConfig::close_up_mode`].
    pub close_up_pass: bool,
    /// When the close-up pass runs (if `close_up_pass`); the default runs it only when it
    /// can find a face the first pass missed.
    pub close_up: CloseUpPass,
    /// No-face retry: when no face reaches `score_threshold`, keep the faces that reach
    /// this lower score instead (reported as `retry` in [`Detection`]). `None`: no retry.
    pub retry_score_threshold: Option<f32>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            score_threshold: 0.9,
            nms_iou: 0.3,
            close_up_pass: true,
            close_up: CloseUpPass::default(),
            retry_score_threshold: Some(DEFAULT_RETRY_SCORE_THRESHOLD),
        }
    }
}

impl DetectorConfig {
    /// When the close-up pass runs, from `close_up_pass` and `close_up` together.
    pub fn close_up_mode(&self) -> CloseUpPass {
        if self.close_up_pass {
            self.close_up
        } else {
            CloseUpPass::Never
        }
    }

    /// These settings with the close-up pass run as `mode` (both fields set).
    pub fn with_close_up(self, mode: CloseUpPass) -> Self {
        DetectorConfig {
            close_up_pass: mode != CloseUpPass::Never,
            close_up: mode,
            ..self
        }
    }
}

/// The default no-face retry threshold (see [`DetectorConfig::retry_score_threshold`]).
pub const DEFAULT_RETRY_SCORE_THRESHOLD: f32 = 0.5;

/// What one detection found, and whether the no-face retry was needed to find it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Faces, largest box first.
    pub faces: Vec<Face>,
    /// True when no face reached the score threshold and `faces` are those that reached
    /// the retry threshold.
    pub retry: bool,
    /// Whether the close-up pass ran (see [`CloseUpPass`]).
    pub close_up_ran: bool,
}

/// The YuNet session; `run` needs `&mut`, so it sits behind a mutex.
pub(crate) struct Detector {
    session: Mutex<Session>,
}

impl Detector {
    pub(crate) fn new(session: Session) -> Self {
        Detector {
            session: Mutex::new(session),
        }
    }

    /// All faces in `img`, largest box first, with the no-face retry applied.
    pub(crate) fn detect(
        &self,
        img: &RgbImage,
        config: &DetectorConfig,
    ) -> Result<Detection, VisionError> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Detection {
                faces: Vec::new(),
                retry: false,
                close_up_ran: false,
            });
        }
        let retry = config
            .retry_score_threshold
            .filter(|&r| r < config.score_threshold);
        let lowest = retry.unwrap_or(config.score_threshold);
        let fit = (YUNET_INPUT_SIZE as f64 / w as f64).min(YUNET_INPUT_SIZE as f64 / h as f64);
        let first = self.detect_at_scale(img, fit, lowest, config.nms_iou)?;
        // The first pass's faces at the score threshold. When there are any, the result is
        // taken at the threshold (no retry) and the close-up pass may add only close-ups.
        let found: Vec<[f32; 4]> = first
            .iter()
            .filter(|f| f.score >= config.score_threshold)
            .map(|f| f.bbox)
            .collect();
        let close_up = CloseUpSize::at_scale(fit);
        let image = [0.0, 0.0, w as f64, h as f64];
        let run = match config.close_up_mode() {
            CloseUpPass::Never => false,
            CloseUpPass::Always => true,
            CloseUpPass::WhenItCanFindMore => {
                found.is_empty() || close_up.fits_within(image, &found, SEARCH_SLACK)
            }
            CloseUpPass::WhenNothingFound => found.is_empty(),
        };
        let mut passes = vec![first];
        if run {
            let mut second = self.detect_at_scale(img, fit * 0.5, lowest, config.nms_iou)?;
            if !found.is_empty() {
                second.retain(|f| close_up.fits_within(clip(&f.bbox, image), &found, 0.0));
            }
            passes.push(second);
        }
        let mut faces = merge_passes(&passes, config.score_threshold, config.nms_iou);
        let mut retried = false;
        if faces.is_empty() {
            if let Some(r) = retry {
                faces = merge_passes(&passes, r, config.nms_iou);
                retried = !faces.is_empty();
            }
        }
        faces.sort_by(|a, b| {
            b.area()
                .total_cmp(&a.area())
                .then(b.score.total_cmp(&a.score))
        });
        Ok(Detection {
            faces,
            retry: retried,
            close_up_ran: run,
        })
    }

    /// One pass: the image scaled by `scale` into the top-left of the 640x640 input.
    /// Returns the faces scoring at least `min_score` after NMS, best score first.
    fn detect_at_scale(
        &self,
        img: &RgbImage,
        scale: f64,
        min_score: f32,
        nms_iou: f32,
    ) -> Result<Vec<Face>, VisionError> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let nw = ((w as f64 * scale).round() as usize).clamp(1, YUNET_INPUT_SIZE);
        let nh = ((h as f64 * scale).round() as usize).clamp(1, YUNET_INPUT_SIZE);
        let input = letterbox_bgr(img, nw, nh);
        // Factors from input pixels back to image pixels, per axis.
        let (fx, fy) = (w as f32 / nw as f32, h as f32 / nh as f32);

        let mut session = self.session.lock();
        let tensor = TensorRef::from_array_view((
            [1usize, 3, YUNET_INPUT_SIZE, YUNET_INPUT_SIZE],
            input.as_slice(),
        ))
        .map_err(|e| VisionError::inference(MODEL, e))?;
        let outputs = session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| VisionError::inference(MODEL, e))?;

        let mut faces = Vec::new();
        for stride in STRIDES {
            let cols = YUNET_INPUT_SIZE / stride;
            let n = cols * cols;
            let get = |name: String, per_anchor: usize| -> Result<&[f32], VisionError> {
                let value = outputs.get(&name).ok_or_else(|| {
                    VisionError::inference(MODEL, format!("output `{name}` missing"))
                })?;
                let (_, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| VisionError::inference(MODEL, e))?;
                if data.len() != n * per_anchor {
                    return Err(VisionError::inference(
                        MODEL,
                        format!(
                            "output `{name}` has {} values, expected {}",
                            data.len(),
                            n * per_anchor
                        ),
                    ));
                }
                Ok(data)
            };
            let cls = get(format!("cls_{stride}"), 1)?;
            let obj = get(format!("obj_{stride}"), 1)?;
            let bbox = get(format!("bbox_{stride}"), 4)?;
            let kps = get(format!("kps_{stride}"), 10)?;
            let s = stride as f32;
            for i in 0..n {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score.is_nan() || score < min_score {
                    continue;
                }
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                let k = &kps[10 * i..10 * i + 10];
                let mut landmarks = [[0.0f32; 2]; 5];
                for (j, lm) in landmarks.iter_mut().enumerate() {
                    *lm = [(k[2 * j] + c) * s * fx, (k[2 * j + 1] + r) * s * fy];
                }
                let face = Face {
                    score,
                    bbox: [(cx - bw / 2.0) * fx, (cy - bh / 2.0) * fy, bw * fx, bh * fy],
                    landmarks,
                };
                if face.bbox.iter().all(|v| v.is_finite()) {
                    faces.push(face);
                }
            }
        }
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(nms_in_order(faces, nms_iou))
    }
}

/// How much smaller (in image pixels) the rectangle searched for in the whole image is than
/// the one a close-up must hold: float rounding can then only make the rule run the pass.
const SEARCH_SLACK: f64 = 1e-3;

/// The close-up rectangle ([`CLOSE_UP_MIN_SIZE`]) in the pixels of an image letterboxed at
/// `fit` input pixels per image pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CloseUpSize {
    w: f64,
    h: f64,
}

impl CloseUpSize {
    fn at_scale(fit: f64) -> Self {
        CloseUpSize {
            w: CLOSE_UP_MIN_SIZE[0] as f64 / fit,
            h: CLOSE_UP_MIN_SIZE[1] as f64 / fit,
        }
    }

    /// Whether a rectangle of this size less `slack` fits inside `region` (x0, y0, x1, y1)
    /// overlapping none of `boxes` (x, y, w, h; touching is not overlapping).
    ///
    /// Exact: if a free placement exists, pushing it left until it meets the region's left
    /// edge or a box's right edge, then up until it meets the region's top edge or a box's
    /// bottom edge, keeps it free and inside; so only those x and y are tried.
    fn fits_within(self, region: [f64; 4], boxes: &[[f32; 4]], slack: f64) -> bool {
        let (rw, rh) = (self.w - slack, self.h - slack);
        let [x0, y0, x1, y1] = region;
        if x1 - x0 < rw || y1 - y0 < rh {
            return false;
        }
        let boxes: Vec<[f64; 4]> = boxes
            .iter()
            .map(|b| {
                let [x, y, w, h] = b.map(f64::from);
                [x, y, x + w.max(0.0), y + h.max(0.0)]
            })
            .collect();
        let xs = std::iter::once(x0).chain(boxes.iter().map(|b| b[2]).filter(|&x| x > x0));
        for x in xs {
            if x + rw > x1 {
                continue;
            }
            let ys = std::iter::once(y0).chain(boxes.iter().map(|b| b[3]).filter(|&y| y > y0));
            for y in ys {
                if y + rh > y1 {
                    continue;
                }
                let free = boxes
                    .iter()
                    .all(|b| !(x < b[2] && x + rw > b[0] && y < b[3] && y + rh > b[1]));
                if free {
                    return true;
                }
            }
        }
        false
    }
}

/// An x, y, w, h box clipped to `region` (x0, y0, x1, y1), as x0, y0, x1, y1.
fn clip(bbox: &[f32; 4], region: [f64; 4]) -> [f64; 4] {
    let [x, y, w, h] = bbox.map(f64::from);
    [
        x.max(region[0]),
        y.max(region[1]),
        (x + w).min(region[2]),
        (y + h).min(region[3]),
    ]
}

/// The faces of each pass (best score first) that reach `min_score`, merged by NMS in
/// pass order: a face of an earlier pass wins over an overlapping one of a later pass.
/// Within a pass, NMS in score order means that filtering its output by a higher score
/// gives exactly the faces NMS would keep at that score.
fn merge_passes(passes: &[Vec<Face>], min_score: f32, nms_iou: f32) -> Vec<Face> {
    let kept: Vec<Face> = passes
        .iter()
        .flat_map(|pass| pass.iter().filter(|f| f.score >= min_score).copied())
        .collect();
    if passes.len() > 1 {
        nms_in_order(kept, nms_iou)
    } else {
        kept
    }
}

/// Letterbox: `img` resized to `nw` x `nh` (OpenCV `INTER_LINEAR` sampling, rounded to
/// integers like OpenCV's 8-bit output) in the top-left of a zeroed 640x640 BGR planar
/// f32 buffer.
pub(crate) fn letterbox_bgr(img: &RgbImage, nw: usize, nh: usize) -> Vec<f32> {
    let size = YUNET_INPUT_SIZE;
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    let (w, h) = (img.width() as usize, img.height() as usize);
    let xs = linear_taps(w, nw);
    let ys = linear_taps(h, nh);
    let raw = img.as_raw();
    for (y, &(y0, y1, wy)) in ys.iter().enumerate() {
        let row0 = &raw[y0 * w * 3..(y0 + 1) * w * 3];
        let row1 = &raw[y1 * w * 3..(y1 + 1) * w * 3];
        for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
            for ch in 0..3 {
                let p00 = row0[x0 * 3 + ch] as f32;
                let p01 = row0[x1 * 3 + ch] as f32;
                let p10 = row1[x0 * 3 + ch] as f32;
                let p11 = row1[x1 * 3 + ch] as f32;
                let top = p00 + (p01 - p00) * wx;
                let bottom = p10 + (p11 - p10) * wx;
                let v = (top + (bottom - top) * wy).round();
                // BGR planes: B = RGB channel 2.
                out[(2 - ch) * plane + y * size + x] = v;
            }
        }
    }
    out
}

/// For each destination index: the two source indices and the weight of the second, with
/// OpenCV's half-pixel-centre mapping and edge clamping.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * ratio - 0.5;
            let i0 = f.floor();
            let frac = f - i0;
            let i0 = i0 as isize;
            if i0 < 0 {
                (0, 0, 0.0)
            } else if i0 as usize >= src - 1 {
                (src - 1, src - 1, 0.0)
            } else {
                (i0 as usize, i0 as usize + 1, frac as f32)
            }
        })
        .collect()
}

/// Intersection over union of two x, y, w, h boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax2, ay2) = (a[0] + a[2], a[1] + a[3]);
    let (bx2, by2) = (b[0] + b[2], b[1] + b[3]);
    let iw = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let ih = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = a[2].max(0.0) * a[3].max(0.0) + b[2].max(0.0) * b[3].max(0.0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy NMS keeping the input order as priority (sort first for classic NMS).
pub(crate) fn nms_in_order(faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    let mut kept: Vec<Face> = Vec::with_capacity(faces.len().min(64));
    for face in faces {
        if kept
            .iter()
            .all(|k| iou(&k.bbox, &face.bbox) <= iou_threshold)
        {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(score: f32, bbox: [f32; 4]) -> Face {
        Face {
            score,
            bbox,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
        // Half overlap: 50 / 150.
        let v = iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]);
        assert!((v - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_first_of_overlapping() {
        let faces = vec![
            face(0.95, [0.0, 0.0, 10.0, 10.0]),
            face(0.99, [1.0, 0.0, 10.0, 10.0]),
            face(0.92, [50.0, 50.0, 10.0, 10.0]),
        ];
        let kept = nms_in_order(faces, 0.3);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.95);
        assert_eq!(kept[1].score, 0.92);
    }

    #[test]
    fn close_up_rectangle_fits_only_in_a_large_enough_gap() {
        let size = CloseUpSize { w: 192.0, h: 256.0 };
        let frame = [0.0, 0.0, 640.0, 480.0];
        assert!(size.fits_within(frame, &[], 0.0));
        assert!(!size.fits_within([0.0, 0.0, 191.0, 480.0], &[], 0.0));
        assert!(!size.fits_within([0.0, 0.0, 640.0, 255.0], &[], 0.0));
        // One face 256 px wide in the middle: 192 px bands on each side, just enough.
        let middle = [[192.0, 100.0, 256.0, 300.0]];
        assert!(size.fits_within(frame, &middle, 0.0));
        // One pixel wider: the bands are 191.5 px; above and below are too short.
        let wider = [[191.5, 100.0, 257.0, 300.0]];
        assert!(!size.fits_within(frame, &wider, 0.0));
        // ...but a rectangle a little smaller fits.
        assert!(size.fits_within(frame, &wider, 1.0));
        // Touching a box is not overlapping it.
        assert!(size.fits_within([0.0, 0.0, 192.0, 256.0], &[[192.0, 0.0, 10.0, 10.0]], 0.0));
        // Three small faces in a row across the top leave the bottom free.
        let row = [
            [20.0, 10.0, 100.0, 130.0],
            [270.0, 10.0, 100.0, 130.0],
            [520.0, 10.0, 100.0, 130.0],
        ];
        assert!(size.fits_within(frame, &row, 0.0));
        // Boxes reaching outside the region block only their part inside.
        assert!(size.fits_within(frame, &[[-500.0, -500.0, 700.0, 600.0]], 0.0));
        assert!(!size.fits_within(frame, &[[-500.0, -500.0, 1000.0, 800.0]], 0.0));
    }

    /// The candidate search against a brute-force scan of every placement on a 1-pixel grid
    /// (boxes and sizes on the same grid, so the grid scan is exact too).
    #[test]
    fn close_up_rectangle_search_agrees_with_a_brute_force_scan() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut fits = 0;
        for _ in 0..400 {
            let (rw, rh) = (20 + next(40) as usize, 20 + next(40) as usize);
            let size = CloseUpSize {
                w: (1 + next(rw as u64)) as f64,
                h: (1 + next(rh as u64)) as f64,
            };
            let boxes: Vec<[f32; 4]> = (0..next(6))
                .map(|_| {
                    let x = next(rw as u64 + 10) as f32 - 5.0;
                    let y = next(rh as u64 + 10) as f32 - 5.0;
                    [x, y, 1.0 + next(20) as f32, 1.0 + next(20) as f32]
                })
                .collect();
            let (sw, sh) = (size.w as usize, size.h as usize);
            let mut brute = false;
            for x in 0..=rw.saturating_sub(sw) {
                for y in 0..=rh.saturating_sub(sh) {
                    let (x, y) = (x as f32, y as f32);
                    let free = boxes.iter().all(|b| {
                        !(x < b[0] + b[2]
                            && x + sw as f32 > b[0]
                            && y < b[1] + b[3]
                            && y + sh as f32 > b[1])
                    });
                    brute |= free && sw <= rw && sh <= rh;
                }
            }
            let region = [0.0, 0.0, rw as f64, rh as f64];
            assert_eq!(
                size.fits_within(region, &boxes, 0.0),
                brute,
                "{size:?} in {rw}x{rh} with {boxes:?}"
            );
            fits += brute as usize;
        }
        assert!((50..350).contains(&fits), "both outcomes tested: {fits}");
    }

    #[test]
    fn close_up_mode_reads_both_fields() {
        let d = DetectorConfig::default();
        assert_eq!(d.close_up_mode(), CloseUpPass::WhenItCanFindMore);
        let off = DetectorConfig {
            close_up_pass: false,
            ..d
        };
        assert_eq!(off.close_up_mode(), CloseUpPass::Never);
        for mode in [
            CloseUpPass::Always,
            CloseUpPass::WhenItCanFindMore,
            CloseUpPass::Never,
        ] {
            assert_eq!(d.with_close_up(mode).close_up_mode(), mode);
            assert_eq!(off.with_close_up(mode).close_up_mode(), mode);
        }
    }

    #[test]
    fn letterbox_identity_and_padding() {
        let mut img = RgbImage::new(4, 2);
        img.put_pixel(1, 1, image::Rgb([10, 20, 30]));
        let buf = letterbox_bgr(&img, 4, 2);
        let plane = YUNET_INPUT_SIZE * YUNET_INPUT_SIZE;
        let at = |c: usize, x: usize, y: usize| buf[c * plane + y * YUNET_INPUT_SIZE + x];
        assert_eq!((at(0, 1, 1), at(1, 1, 1), at(2, 1, 1)), (30.0, 20.0, 10.0));
        assert_eq!(at(0, 0, 0), 0.0);
        assert!(buf[..plane].iter().filter(|&&v| v != 0.0).count() == 1);
    }

    #[test]
    fn linear_taps_match_opencv_half_pixel_mapping() {
        // Downscale 4 -> 2: centres at 0.5 and 2.5.
        let taps = linear_taps(4, 2);
        assert_eq!(taps[0], (0, 1, 0.5));
        assert_eq!(taps[1], (2, 3, 0.5));
        // Upscale 2 -> 4: first clamps to 0, last clamps to 1.
        let taps = linear_taps(2, 4);
        assert_eq!(taps[0], (0, 0, 0.0));
        assert_eq!(taps[3], (1, 1, 0.0));
    }
}
