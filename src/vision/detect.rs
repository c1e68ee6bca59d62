//! YuNet face detection: letterbox to 640x640, run, decode the three strides, NMS.
//!
//! The frame is scaled to fit 640x640 (aspect kept, padded right and bottom with zeros)
//! with OpenCV-style bilinear sampling, fed as BGR f32 0..255 NCHW. Each stride s in
//! {8, 16, 32} has (640/s)^2 anchors; an anchor at row r, column c decodes as
//! score = sqrt(cls * obj), centre ((c + b0) s, (r + b1) s), size (exp(b2) s, exp(b3) s),
//! landmark n ((k[2n] + c) s, (k[2n+1] + r) s). Faces scoring at least the threshold
//! survive non-maximum suppression and are mapped back to image pixels.
//!
//! YuNet finds faces of roughly 10 to 300 pixels at 640 input, so a close-up can be missed.
//! A second pass at half that scale finds those; its faces are merged in by NMS with the
//! first pass taking precedence, so a face found at the normal scale always keeps the
//! normal-scale landmarks (enrolment and probes then see the same detection scale).
//!
//! No-face retry: when no face reaches the score threshold, the faces of the same two
//! passes that reach the lower retry threshold are returned instead, and the
//! [`Detection`] says so (`retry: true`). Both thresholds are applied to the outputs of
//! one model run per pass, so the retry costs no extra inference; each threshold is
//! applied per pass before the merge, so the faces above the score threshold are exactly
//! those a detector without retry returns.

use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
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

/// Detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Minimum score to keep a face (OpenCV's default for YuNet: 0.9).
    pub score_threshold: f32,
    /// Boxes overlapping more than this IoU are duplicates (0.3).
    pub nms_iou: f32,
    /// Run the second, half-scale pass that finds close-ups (doubles detection time).
    pub close_up_pass: bool,
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
            retry_score_threshold: Some(DEFAULT_RETRY_SCORE_THRESHOLD),
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
            });
        }
        let retry = config
            .retry_score_threshold
            .filter(|&r| r < config.score_threshold);
        let lowest = retry.unwrap_or(config.score_threshold);
        let fit = (YUNET_INPUT_SIZE as f64 / w as f64).min(YUNET_INPUT_SIZE as f64 / h as f64);
        let mut passes = vec![self.detect_at_scale(img, fit, lowest, config.nms_iou)?];
        if config.close_up_pass {
            passes.push(self.detect_at_scale(img, fit * 0.5, lowest, config.nms_iou)?);
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

        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
