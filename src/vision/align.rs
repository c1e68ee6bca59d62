//! Face alignment: the 5 landmarks to the ArcFace 112x112 template by a least-squares
//! similarity transform, then a bilinear warp with a zero border (what OpenCV's
//! `FaceRecognizerSF::alignCrop` does).
//!
//! The transform is Umeyama's least-squares similarity (rotation, uniform scale,
//! translation; no reflection). In 2-D it has a closed form: writing the centred points as
//! complex numbers p_i and q_i, the best map q = z p has z = sum(conj(p_i) q_i) /
//! sum(|p_i|^2), i.e. scale |z| and rotation arg z. That is the same optimum Umeyama's SVD
//! with the determinant correction reaches, without the SVD.

use image::{Rgb, RgbImage};

use super::error::VisionError;

/// Side of the aligned face, in pixels.
pub const ALIGNED_SIZE: u32 = 112;

/// ArcFace 112x112 landmark template: right eye, left eye, nose, right and left mouth
/// corners (subject's right = image left).
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2x3 affine matrix: `[x', y'] = [[a, b, c], [d, e, f]] * [x, y, 1]`.
pub type Affine = [[f64; 3]; 2];

/// Least-squares similarity transform (no reflection) taking `src` points onto `dst`.
/// `None` when `src` is degenerate (all points equal) or not finite.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Affine> {
    let n = src.len();
    if n == 0 || n != dst.len() {
        return None;
    }
    let mean = |pts: &[[f32; 2]]| {
        let (sx, sy) = pts.iter().fold((0.0f64, 0.0f64), |(sx, sy), p| {
            (sx + p[0] as f64, sy + p[1] as f64)
        });
        (sx / n as f64, sy / n as f64)
    };
    let (mpx, mpy) = mean(src);
    let (mqx, mqy) = mean(dst);
    let (mut re, mut im, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for (p, q) in src.iter().zip(dst) {
        let (px, py) = (p[0] as f64 - mpx, p[1] as f64 - mpy);
        let (qx, qy) = (q[0] as f64 - mqx, q[1] as f64 - mqy);
        // conj(p) * q
        re += px * qx + py * qy;
        im += px * qy - py * qx;
        norm += px * px + py * py;
    }
    if !(norm.is_finite() && norm > 1e-12 && re.is_finite() && im.is_finite()) {
        return None;
    }
    let (a, b) = (re / norm, im / norm);
    // q = [a -b; b a] p + t, t = mean_q - R mean_p
    let tx = mqx - (a * mpx - b * mpy);
    let ty = mqy - (b * mpx + a * mpy);
    Some([[a, -b, tx], [b, a, ty]])
}

/// Warps `img` by the forward map `m` (image -> output) into a `width` x `height` image:
/// each output pixel samples the source at `m^-1 (x, y)` bilinearly, neighbours outside the
/// image count as black (OpenCV `warpAffine`, `INTER_LINEAR`, `BORDER_CONSTANT` 0).
pub fn warp_affine(img: &RgbImage, m: &Affine, width: u32, height: u32) -> Option<RgbImage> {
    let inv = invert_affine(m)?;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut out = RgbImage::new(width, height);
    let pixel = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            [0.0; 3]
        } else {
            let p = img.get_pixel(x as u32, y as u32).0;
            [p[0] as f64, p[1] as f64, p[2] as f64]
        }
    };
    for oy in 0..height {
        for ox in 0..width {
            let (fx, fy) = (ox as f64, oy as f64);
            let sx = inv[0][0] * fx + inv[0][1] * fy + inv[0][2];
            let sy = inv[1][0] * fx + inv[1][1] * fy + inv[1][2];
            if !(sx.is_finite() && sy.is_finite()) {
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (wx, wy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            if x0 < -1 || y0 < -1 || x0 >= w || y0 >= h {
                continue; // all four neighbours outside: black
            }
            let (p00, p01) = (pixel(x0, y0), pixel(x0 + 1, y0));
            let (p10, p11) = (pixel(x0, y0 + 1), pixel(x0 + 1, y0 + 1));
            let mut rgb = [0u8; 3];
            for c in 0..3 {
                let top = p00[c] + (p01[c] - p00[c]) * wx;
                let bottom = p10[c] + (p11[c] - p10[c]) * wx;
                rgb[c] = (top + (bottom - top) * wy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(ox, oy, Rgb(rgb));
        }
    }
    Some(out)
}

fn invert_affine(m: &Affine) -> Option<Affine> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let (a, b) = (m[1][1] / det, -m[0][1] / det);
    let (d, e) = (-m[1][0] / det, m[0][0] / det);
    let tx = -(a * m[0][2] + b * m[1][2]);
    let ty = -(d * m[0][2] + e * m[1][2]);
    Some([[a, b, tx], [d, e, ty]])
}

/// The 112x112 aligned face SFace expects, from the face's 5 landmarks in `img`.
pub fn align_face(img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<RgbImage, VisionError> {
    let m = similarity_transform(landmarks, &ARCFACE_TEMPLATE).ok_or_else(|| {
        VisionError::InvalidFace(
            "landmarks are not finite or all at one point; cannot align".to_string(),
        )
    })?;
    warp_affine(img, &m, ALIGNED_SIZE, ALIGNED_SIZE).ok_or_else(|| {
        VisionError::InvalidFace("landmarks give a degenerate alignment".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(m: &Affine, p: [f32; 2]) -> [f64; 2] {
        let (x, y) = (p[0] as f64, p[1] as f64);
        [
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        ]
    }

    #[test]
    fn recovers_an_exact_similarity() {
        // dst = 0.5 * R(30 deg) * src + (10, -4)
        let (s, t) = (0.5f64, 30f64.to_radians());
        let (a, b) = (s * t.cos(), s * t.sin());
        let src = [
            [100.0, 80.0],
            [160.0, 82.0],
            [130.0, 120.0],
            [105.0, 150.0],
            [155.0, 151.0],
        ];
        let dst: Vec<[f32; 2]> = src
            .iter()
            .map(|p: &[f32; 2]| {
                let (x, y) = (p[0] as f64, p[1] as f64);
                [(a * x - b * y + 10.0) as f32, (b * x + a * y - 4.0) as f32]
            })
            .collect();
        let m = similarity_transform(&src, &dst).expect("non-degenerate");
        assert!((m[0][0] - a).abs() < 1e-6 && (m[1][0] - b).abs() < 1e-6);
        assert!((m[0][2] - 10.0).abs() < 1e-3 && (m[1][2] + 4.0).abs() < 1e-3);
        for (p, q) in src.iter().zip(&dst) {
            let r = apply(&m, *p);
            assert!((r[0] - q[0] as f64).abs() < 1e-3 && (r[1] - q[1] as f64).abs() < 1e-3);
        }
    }

    #[test]
    fn never_reflects() {
        // Mirrored template: the best similarity cannot flip it back, determinant stays > 0.
        let src: Vec<[f32; 2]> = ARCFACE_TEMPLATE
            .iter()
            .map(|p| [112.0 - p[0], p[1]])
            .collect();
        let m = similarity_transform(&src, &ARCFACE_TEMPLATE).expect("non-degenerate");
        assert!(m[0][0] * m[1][1] - m[0][1] * m[1][0] >= 0.0);
    }

    #[test]
    fn degenerate_landmarks_are_rejected() {
        assert!(similarity_transform(&[[5.0, 5.0]; 5], &ARCFACE_TEMPLATE).is_none());
        let mut nan = ARCFACE_TEMPLATE;
        nan[2][0] = f32::NAN;
        assert!(similarity_transform(&nan, &ARCFACE_TEMPLATE).is_none());
        let img = RgbImage::new(10, 10);
        assert!(matches!(
            align_face(&img, &[[5.0, 5.0]; 5]),
            Err(VisionError::InvalidFace(_))
        ));
    }

    #[test]
    fn identity_warp_copies_and_borders_are_black() {
        let mut img = RgbImage::new(4, 4);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = Rgb([(x * 40) as u8, (y * 40) as u8, 7]);
        }
        let id: Affine = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(warp_affine(&img, &id, 4, 4).expect("invertible"), img);
        // Shift right by 2: the two left columns come from outside the image.
        let shift: Affine = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]];
        let out = warp_affine(&img, &shift, 4, 4).expect("invertible");
        assert_eq!(out.get_pixel(0, 1).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(2, 1).0, img.get_pixel(0, 1).0);
    }
}
