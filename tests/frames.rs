//! The frames module on real data: camera buffers of every pixel format made from the
//! fixture photos (the forward BT.601 transform is written here, independently of the
//! decoder), checked against expected RGB values; corrupt, truncated and wrong-size frames;
//! and the MJPEG-over-HTTP source against real loopback servers (std `TcpListener` threads)
//! that stream the fixture photos, drop connections mid-frame and send garbage.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blindface::frames::{
    decode, decode_jpeg, FrameCounter, FrameError, MjpegStream, PixelFormat, RawFrame, StreamError,
    StreamOptions, StreamState,
};
use image::RgbImage;

// ---------------------------------------------------------------------------------------
// Fixtures and the forward transforms (the test's own, not the decoder's).

fn fixture_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces")
        .join(name)
}

fn fixture(name: &str) -> RgbImage {
    image::open(fixture_path(name)).unwrap().to_rgb8()
}

/// obama.jpg at the usual camera size.
fn photo_640x480() -> RgbImage {
    image::imageops::resize(
        &fixture("obama.jpg"),
        640,
        480,
        image::imageops::FilterType::Triangle,
    )
}

/// BT.601 limited range, RGB -> (Y, Cb, Cr), the usual 8-bit integer form.
fn ycbcr(p: [u8; 3]) -> (i32, i32, i32) {
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    (
        ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16,
        ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128,
        ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128,
    )
}

fn px(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x.min(img.width() - 1), y.min(img.height() - 1))
        .0
}

/// YUYV: luma per pixel, chroma averaged over each horizontal pair (an odd last pixel
/// pairs with itself).
fn to_yuyv(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, u0, v0) = ycbcr(px(img, x, y));
            let (y1, u1, v1) = ycbcr(px(img, x + 1, y));
            let y1 = if x + 1 < w { y1 } else { y0 };
            out.extend([y0, (u0 + u1 + 1) / 2, y1, (v0 + v1 + 1) / 2].map(|v| v as u8));
        }
    }
    out
}

/// NV12: the Y plane, then `U V` averaged over each 2x2 block (edges replicated).
fn to_nv12(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let mut out: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| ycbcr(px(img, x, y)).0 as u8)
        .collect();
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            let q =
                [(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)].map(|(x, y)| ycbcr(px(img, x, y)));
            let u: i32 = q.iter().map(|c| c.1).sum();
            let v: i32 = q.iter().map(|c| c.2).sum();
            out.extend([((u + 2) / 4) as u8, ((v + 2) / 4) as u8]);
        }
    }
    out
}

/// GRAY8: full-range BT.601 luma.
fn to_gray(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(f64::from);
            (0.299 * r + 0.587 * g + 0.114 * b).round() as u8
        })
        .collect()
}

fn to_jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// The exact BT.601 inverse in floating point, rounded: what a decoder of these samples
/// should produce, up to its integer arithmetic.
fn bt601_float(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 255.0 / 219.0 * (f64::from(y) - 16.0);
    let d = f64::from(u) - 128.0;
    let e = f64::from(v) - 128.0;
    let k = 255.0 / 224.0;
    let r = c + k * 1.402 * e;
    let g = c - k * (1.772 * 0.114 / 0.587) * d - k * (1.402 * 0.299 / 0.587) * e;
    let b = c + k * 1.772 * d;
    [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// The (Y, U, V) samples a buffer holds for pixel (x, y).
fn samples(format: PixelFormat, buf: &[u8], w: u32, h: u32, x: u32, y: u32) -> (u8, u8, u8) {
    let (w, h, x, y) = (w as usize, h as usize, x as usize, y as usize);
    match format {
        PixelFormat::Yuyv => {
            let q = y * w.div_ceil(2) * 4 + (x / 2) * 4;
            (buf[q + (x % 2) * 2], buf[q + 1], buf[q + 3])
        }
        PixelFormat::Nv12 => {
            let c = w * h + (y / 2) * w.div_ceil(2) * 2 + (x / 2) * 2;
            (buf[y * w + x], buf[c], buf[c + 1])
        }
        _ => unreachable!(),
    }
}

/// Mean and maximum absolute channel difference.
fn diff(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (p, q) in a.as_raw().iter().zip(b.as_raw()) {
        let d = p.abs_diff(*q);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.as_raw().len() as f64, max)
}

fn raw(format: PixelFormat, img: &RgbImage, bytes: Vec<u8>) -> RawFrame {
    RawFrame::new(format, img.width(), img.height(), bytes)
}

// ---------------------------------------------------------------------------------------
// Decoding: expected values.

/// Exact BT.601 limited-range values (the formula in `frames::decode`, worked by hand):
/// black, white, mid grey, the studio-swing primaries, an orange, and out-of-range samples
/// that must clamp.
const YUV_EXACT: [((u8, u8, u8), [u8; 3]); 8] = [
    ((16, 128, 128), [0, 0, 0]),
    ((235, 128, 128), [255, 255, 255]),
    ((126, 128, 128), [128, 128, 128]),
    ((81, 90, 240), [255, 0, 0]),
    ((144, 54, 34), [0, 254, 0]),
    ((41, 240, 110), [0, 0, 255]),
    ((136, 99, 166), [200, 120, 81]),
    ((255, 255, 255), [255, 125, 255]),
];

/// An 8x4 YUV frame: each entry of [`YUV_EXACT`] fills one 2x2 block (so neither 4:2:2 nor
/// 4:2:0 mixes two colours), 4 blocks a row.
fn exact_block(x: u32, y: u32) -> usize {
    (y / 2 * 4 + x / 2) as usize
}

#[test]
fn yuyv_and_nv12_decode_exact_bt601_values() {
    let (w, h) = (8u32, 4u32);
    let mut yuyv = Vec::new();
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (yy, u, v) = YUV_EXACT[exact_block(x, y)].0;
            yuyv.extend([yy, u, yy, v]);
        }
    }
    let mut nv12: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| YUV_EXACT[exact_block(x, y)].0 .0))
        .collect();
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            let (_, u, v) = YUV_EXACT[exact_block(x, y)].0;
            nv12.extend([u, v]);
        }
    }
    for (format, bytes) in [(PixelFormat::Yuyv, yuyv), (PixelFormat::Nv12, nv12)] {
        let img = decode(&RawFrame::new(format, w, h, bytes)).unwrap();
        for (x, y, p) in img.enumerate_pixels() {
            assert_eq!(
                p.0,
                YUV_EXACT[exact_block(x, y)].1,
                "{format} at ({x}, {y})"
            );
        }
    }
}

/// Pure colours for the exact-value tests: black, white, the primaries, secondaries, a grey
/// and an orange.
const COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [255, 255, 255],
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [128, 128, 128],
    [200, 120, 80],
];

#[test]
fn rgb_bgr_gray_decode_exact_values() {
    let colours = COLOURS;
    let rgb: Vec<u8> = colours.concat();
    let img = decode(&RawFrame::new(PixelFormat::Rgb, 4, 2, rgb.clone())).unwrap();
    assert_eq!(img.as_raw(), &rgb);
    let bgr: Vec<u8> = colours.iter().flat_map(|c| [c[2], c[1], c[0]]).collect();
    let img = decode(&RawFrame::new(PixelFormat::Bgr, 4, 2, bgr)).unwrap();
    assert_eq!(img.as_raw(), &rgb);
    let img = decode(&RawFrame::new(PixelFormat::Gray, 3, 1, vec![0, 128, 255])).unwrap();
    assert_eq!(img.as_raw(), &[0, 0, 0, 128, 128, 128, 255, 255, 255]);
}

#[test]
fn mjpeg_of_pure_colours_decodes_within_two_levels() {
    // 16x16 blocks (one 4:2:0 MCU each) of pure colour, at quality 100: a flat block has
    // only a DC coefficient, so what is left is the colour conversions' rounding.
    let colours = COLOURS;
    let img = RgbImage::from_fn(64, 32, |x, y| {
        image::Rgb(colours[(y / 16 * 4 + x / 16) as usize])
    });
    let jpeg = to_jpeg(&img, 100);
    let out = decode(&RawFrame::new(PixelFormat::Mjpeg, 64, 32, jpeg)).unwrap();
    for (i, c) in colours.iter().enumerate() {
        let (x0, y0) = ((i % 4) as u32 * 16, (i / 4) as u32 * 16);
        // The centre of the block, away from the chroma upsampling at its edges.
        for (x, y) in [(x0 + 6, y0 + 6), (x0 + 9, y0 + 9)] {
            let got = out.get_pixel(x, y).0;
            assert!(
                got.iter().zip(c).all(|(g, c)| g.abs_diff(*c) <= 2),
                "colour {c:?} decoded as {got:?}"
            );
        }
    }
}

#[test]
fn rgb_bgr_gray_buffers_from_the_fixture_photos() {
    for img in [fixture("obama-240p.jpg"), photo_640x480()] {
        let out = decode(&raw(PixelFormat::Rgb, &img, img.as_raw().clone())).unwrap();
        assert_eq!(out, img, "RGB24 is exact");
        let bgr: Vec<u8> = img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
        assert_eq!(
            decode(&raw(PixelFormat::Bgr, &img, bgr)).unwrap(),
            img,
            "BGR24 is exact"
        );
        let gray = to_gray(&img);
        let out = decode(&raw(PixelFormat::Gray, &img, gray.clone())).unwrap();
        for (p, g) in out.pixels().zip(&gray) {
            assert_eq!(p.0, [*g; 3], "GRAY8 is exact");
        }
    }
}

/// YUYV and NV12 made from the photos (427x240: odd width; 640x480): every pixel is within
/// 1 level of the exact inverse of its own samples (so the decoder reads the right
/// samples and computes BT.601), and the whole image is close to the photo it came from:
/// what is lost is chroma subsampling and 8-bit rounding.
#[test]
fn yuyv_and_nv12_buffers_from_the_fixture_photos() {
    for img in [fixture("obama-240p.jpg"), photo_640x480()] {
        let (w, h) = img.dimensions();
        for (format, bytes, mean_bound) in [
            (PixelFormat::Yuyv, to_yuyv(&img), 1.5),
            (PixelFormat::Nv12, to_nv12(&img), 2.0),
        ] {
            let out = decode(&raw(format, &img, bytes.clone())).unwrap();
            assert_eq!(out.dimensions(), (w, h));
            for (x, y, p) in out.enumerate_pixels() {
                let (yy, u, v) = samples(format, &bytes, w, h, x, y);
                let want = bt601_float(yy, u, v);
                assert!(
                    p.0.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 1),
                    "{format} {w}x{h} at ({x}, {y}): {:?} vs exact {want:?}",
                    p.0
                );
            }
            let (mean, max) = diff(&out, &img);
            println!("{format} {w}x{h} vs the photo: mean |d| {mean:.2}, max {max}");
            assert!(mean <= mean_bound, "{format} {w}x{h}: mean error {mean:.2}");
        }
    }
}

/// MJPEG frames from the photos (JPEG-encoded at quality 90, as webcams do) decode at the
/// right size, close to the photo, and to exactly what the `image` crate decodes. A frame
/// without Huffman tables (webcams leave them out, relying on the standard ones, which
/// `image`'s encoder uses) decodes the same.
#[test]
fn mjpeg_buffers_from_the_fixture_photos() {
    for img in [fixture("obama-240p.jpg"), photo_640x480()] {
        let jpeg = to_jpeg(&img, 90);
        let out = decode(&raw(PixelFormat::Mjpeg, &img, jpeg.clone())).unwrap();
        assert_eq!(out.dimensions(), img.dimensions());
        assert_eq!(out, image::load_from_memory(&jpeg).unwrap().to_rgb8());
        let (mean, max) = diff(&out, &img);
        println!(
            "MJPEG q90 {}x{} vs the photo: mean |d| {mean:.2}, max {max}",
            img.width(),
            img.height()
        );
        assert!(mean <= 3.0, "mean error {mean:.2}");

        let without_dht = strip_segments(&jpeg, 0xC4);
        assert!(without_dht.len() < jpeg.len());
        let out2 = decode(&raw(PixelFormat::Mjpeg, &img, without_dht)).unwrap();
        assert_eq!(out2, out, "a frame without DHT uses the standard tables");
    }
}

/// `jpeg` with every header segment of `marker` removed.
fn strip_segments(jpeg: &[u8], marker: u8) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pos = 2;
    loop {
        assert_eq!(jpeg[pos], 0xFF);
        let m = jpeg[pos + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if m == 0xDA {
            out.extend_from_slice(&jpeg[pos..]);
            return out;
        }
        if m != marker {
            out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
}

/// Where the entropy-coded data starts (after the SOS header).
fn scan_start(jpeg: &[u8]) -> usize {
    let mut pos = 2;
    loop {
        let m = jpeg[pos + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        pos += 2 + len;
        if m == 0xDA {
            return pos;
        }
    }
}

/// A small deterministic generator (xorshift) for the corruption positions.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Corrupt entropy data (1 to 20 bytes overwritten inside the scan, 300 variants): never a
/// panic. The decoder is lenient, like libjpeg: most such frames decode to an image of the
/// right size with damaged blocks (there is no checksum to notice), some are reported as
/// `CorruptJpeg`. Both outcomes are allowed; the counts are printed.
#[test]
fn corrupt_mjpeg_never_panics() {
    let img = photo_640x480();
    let jpeg = to_jpeg(&img, 90);
    let start = scan_start(&jpeg);
    let end = jpeg.len() - 2;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut images, mut errors) = (0, 0);
    for _ in 0..300 {
        let mut bad = jpeg.clone();
        let n = 1 + rng.next_u64() % 20;
        for _ in 0..n {
            let at = start + (rng.next_u64() as usize) % (end - start);
            bad[at] = rng.next_u64() as u8;
        }
        let frame = raw(PixelFormat::Mjpeg, &img, bad);
        let r = std::panic::catch_unwind(|| decode(&frame)).expect("decode panicked");
        match r {
            Ok(out) => {
                assert_eq!(out.dimensions(), (640, 480));
                images += 1;
            }
            Err(FrameError::CorruptJpeg(_) | FrameError::TruncatedJpeg(_)) => errors += 1,
            Err(e) => panic!("unexpected error for corrupt data: {e}"),
        }
    }
    println!("corrupt entropy data: {images} decoded with damage, {errors} errors");
    // Corrupt headers are errors.
    let mut bad = jpeg.clone();
    bad[0] = 0;
    assert!(matches!(decode_jpeg(&bad), Err(FrameError::CorruptJpeg(_))));
    let mut bad = jpeg.clone();
    bad[2..start].fill(0x55);
    assert!(decode_jpeg(&bad).is_err());
}

/// A JPEG cut anywhere is `TruncatedJpeg` (counted as truncated), including a cut inside the
/// headers or just before the end marker; zero padding after the end marker is fine.
#[test]
fn truncated_mjpeg_is_an_error() {
    let img = fixture("obama-240p.jpg");
    let jpeg = to_jpeg(&img, 90);
    let n = jpeg.len();
    let counter = FrameCounter::new();
    for cut in [
        0,
        1,
        2,
        3,
        10,
        100,
        scan_start(&jpeg),
        n / 4,
        n / 2,
        n * 9 / 10,
        n - 2,
        n - 1,
    ] {
        let r = counter.decode(&raw(PixelFormat::Mjpeg, &img, jpeg[..cut].to_vec()));
        assert!(
            matches!(r, Err(FrameError::TruncatedJpeg(_))),
            "cut at {cut} of {n}: {r:?}"
        );
    }
    let c = counter.counts();
    assert_eq!((c.truncated, c.decoded, c.dropped()), (12, 0, 12));
    let mut padded = jpeg.clone();
    padded.extend([0u8; 37]);
    assert_eq!(
        decode(&raw(PixelFormat::Mjpeg, &img, padded))
            .unwrap()
            .dimensions(),
        (427, 240)
    );
}

/// Every raw format with a buffer of the wrong length: `WrongSize` with both sizes.
#[test]
fn wrong_size_buffers_are_errors_with_the_sizes() {
    let (w, h) = (64u32, 48u32);
    for (format, len) in [
        (PixelFormat::Yuyv, 64 * 48 * 2),
        (PixelFormat::Nv12, 64 * 48 * 3 / 2),
        (PixelFormat::Rgb, 64 * 48 * 3),
        (PixelFormat::Bgr, 64 * 48 * 3),
        (PixelFormat::Gray, 64 * 48),
    ] {
        assert_eq!(format.expected_len(w, h), Some(len as u64));
        assert!(decode(&RawFrame::new(format, w, h, vec![0; len])).is_ok());
        for got in [0, 1, len - 1, len + 1, len * 2] {
            let e = decode(&RawFrame::new(format, w, h, vec![0; got])).unwrap_err();
            assert_eq!(
                e,
                FrameError::WrongSize {
                    format,
                    width: w,
                    height: h,
                    expected: len as u64,
                    got
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&len.to_string()) && msg.contains(&got.to_string()),
                "{msg}"
            );
        }
    }
    // Odd sizes: chroma rounded up.
    assert_eq!(PixelFormat::Yuyv.expected_len(5, 3), Some(3 * 4 * 3));
    assert_eq!(PixelFormat::Nv12.expected_len(5, 3), Some(15 + 2 * 3 * 2));
}

/// Zero, huge and mismatched dimensions are errors before any allocation.
#[test]
fn bad_dimensions_are_errors() {
    let formats = [
        PixelFormat::Mjpeg,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::Gray,
    ];
    for format in formats {
        for (w, h) in [(0, 480), (640, 0), (0, 0)] {
            assert_eq!(
                decode(&RawFrame::new(format, w, h, vec![0; 16])),
                Err(FrameError::ZeroDimensions {
                    width: w,
                    height: h
                })
            );
        }
        for (w, h) in [(100_000, 1), (1, 8193), (u32::MAX, u32::MAX)] {
            assert!(matches!(
                decode(&RawFrame::new(format, w, h, Vec::new())),
                Err(FrameError::TooLarge { .. })
            ));
        }
    }
    // A JPEG whose header claims 60000x60000 is refused from the header alone.
    let img = RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
    let mut jpeg = to_jpeg(&img, 80);
    claim_size(&mut jpeg, 60000, 60000);
    assert!(matches!(
        decode_jpeg(&jpeg),
        Err(FrameError::TooLarge {
            width: 60000,
            height: 60000,
            ..
        })
    ));
    claim_size(&mut jpeg, 60000, 0);
    assert!(decode_jpeg(&jpeg).is_err(), "a zero height is refused");
    // A JPEG of another size than the camera announced.
    let jpeg = to_jpeg(&img, 80);
    assert_eq!(
        decode(&RawFrame::new(PixelFormat::Mjpeg, 640, 480, jpeg)),
        Err(FrameError::JpegSizeMismatch {
            width: 640,
            height: 480,
            got_width: 64,
            got_height: 48
        })
    );
}

/// Rewrites the size a baseline JPEG's frame header (SOF0) claims.
fn claim_size(jpeg: &mut [u8], width: u16, height: u16) {
    let sof = (2..jpeg.len())
        .find(|&i| jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0)
        .expect("a baseline frame header");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
}

/// A few hundred bytes whose header claims 8000x8000 from a camera that announced 64x48 are
/// refused from the header, before the decoder allocates ~190 MB for the claimed size (the
/// fuzzer's finding). The frame is otherwise undecodable (no quantisation tables), so a
/// check made only after decoding would report it as corrupt instead.
#[test]
fn a_jpeg_claiming_another_size_is_refused_before_decoding() {
    let img = RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
    let mut jpeg = strip_segments(&to_jpeg(&img, 80), 0xDB);
    claim_size(&mut jpeg, 8000, 8000);
    assert!(matches!(
        decode_jpeg(&jpeg),
        Err(FrameError::CorruptJpeg(_))
    ));
    assert_eq!(
        decode(&RawFrame::new(PixelFormat::Mjpeg, 64, 48, jpeg)),
        Err(FrameError::JpegSizeMismatch {
            width: 64,
            height: 48,
            got_width: 8000,
            got_height: 8000
        })
    );
}

/// nokhwa's buffers map to frames (all six of its formats), and decode like our own frames.
#[test]
fn nokhwa_buffers_become_raw_frames() {
    use nokhwa::utils::{FrameFormat, Resolution};
    for (f, p) in [
        (FrameFormat::MJPEG, PixelFormat::Mjpeg),
        (FrameFormat::YUYV, PixelFormat::Yuyv),
        (FrameFormat::NV12, PixelFormat::Nv12),
        (FrameFormat::GRAY, PixelFormat::Gray),
        (FrameFormat::RAWRGB, PixelFormat::Rgb),
        (FrameFormat::RAWBGR, PixelFormat::Bgr),
    ] {
        assert_eq!(PixelFormat::from_nokhwa(f), p);
    }
    let img = fixture("obama-240p.jpg");
    let yuyv = to_yuyv(&img);
    let buffer = nokhwa::Buffer::new(Resolution::new(427, 240), &yuyv, FrameFormat::YUYV);
    let frame = RawFrame::from_nokhwa(&buffer);
    assert_eq!(frame, raw(PixelFormat::Yuyv, &img, yuyv));
    assert_eq!(decode(&frame).unwrap().dimensions(), (427, 240));
}

#[test]
fn the_counter_counts_by_reason() {
    let counter = FrameCounter::new();
    let good = RawFrame::new(PixelFormat::Gray, 2, 2, vec![1; 4]);
    let short = RawFrame::new(PixelFormat::Gray, 2, 2, vec![1; 3]);
    let cut = RawFrame::new(PixelFormat::Mjpeg, 2, 2, vec![0xFF, 0xD8, 0xFF]);
    for f in [&good, &short, &cut, &good] {
        let _ = counter.decode(f);
    }
    let c = counter.counts();
    assert_eq!(
        (c.decoded, c.wrong_size, c.truncated, c.dropped()),
        (2, 1, 1, 2)
    );
    assert_eq!(
        c.to_string(),
        "2 frames, dropped 2 (1 truncated, 1 wrong size)"
    );
}

/// Decode cost per 640x480 frame and format (release build):
/// `cargo test --release --test frames -- --ignored --nocapture decode_cost`. Printed, never
/// asserted; the numbers are in BENCHMARKS.md.
#[test]
#[ignore]
fn decode_cost_per_640x480_frame() {
    let img = photo_640x480();
    let frames = [
        raw(PixelFormat::Mjpeg, &img, to_jpeg(&img, 90)),
        raw(PixelFormat::Yuyv, &img, to_yuyv(&img)),
        raw(PixelFormat::Nv12, &img, to_nv12(&img)),
        raw(PixelFormat::Rgb, &img, img.as_raw().clone()),
        raw(
            PixelFormat::Bgr,
            &img,
            img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect(),
        ),
        raw(PixelFormat::Gray, &img, to_gray(&img)),
    ];
    for f in &frames {
        let n = 200;
        decode(f).unwrap();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(decode(std::hint::black_box(f)).unwrap());
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        println!("{:>6} 640x480: {per:.3} ms per frame", f.format.name());
    }
}

// ---------------------------------------------------------------------------------------
// MJPEG over HTTP, against real loopback servers.

/// A loopback HTTP server: each connection gets its index, the request head and the socket.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start<F>(handler: F) -> Server
    where
        F: Fn(usize, &str, TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let index = c.fetch_add(1, Ordering::SeqCst);
                let (handler, r) = (handler.clone(), r.clone());
                std::thread::spawn(move || {
                    let head = read_head(&mut stream);
                    r.lock().unwrap().push(head.clone());
                    handler(index, &head, stream);
                });
            }
        });
        Server {
            addr,
            connections,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

const MULTIPART_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nCache-Control: no-cache\r\n\r\n";

fn part(jpeg: &[u8], with_length: bool) -> Vec<u8> {
    let mut p = b"--frame\r\nContent-Type: image/jpeg\r\n".to_vec();
    if with_length {
        p.extend(format!("Content-Length: {}\r\n", jpeg.len()).bytes());
    }
    p.extend(b"\r\n");
    p.extend(jpeg);
    p.extend(b"\r\n");
    p
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// The two streamed fixtures (real camera JPEGs with EXIF/JFIF headers) and their pixels.
fn stream_fixtures() -> Vec<(Vec<u8>, RgbImage)> {
    ["obama-240p.jpg", "biden2.jpg"]
        .iter()
        .map(|n| {
            let bytes = fixture_bytes(n);
            let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
            (bytes, img)
        })
        .collect()
}

/// Writes `frames` in turn every 15 ms until the client goes away.
fn stream_forever(mut s: TcpStream, frames: &[Vec<u8>]) {
    for f in frames.iter().cycle() {
        if s.write_all(f).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn test_options() -> StreamOptions {
    StreamOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(3),
        ..StreamOptions::default()
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Receives frames until both fixtures have been seen, each equal to its decoded fixture.
fn expect_both_fixtures(stream: &MjpegStream, fixtures: &[(Vec<u8>, RgbImage)]) {
    let mut seen = [false, false];
    wait_for("both fixtures", Duration::from_secs(10), || {
        if let Some(img) = stream.latest() {
            let i = fixtures
                .iter()
                .position(|(_, f)| f.dimensions() == img.dimensions())
                .unwrap_or_else(|| panic!("a frame of {:?}", img.dimensions()));
            assert!(img == fixtures[i].1, "frame {i} differs from its fixture");
            seen[i] = true;
        }
        (seen == [true, true]).then_some(())
    });
}

/// Parts with Content-Length: frames arrive, decode to the fixtures' sizes and pixels; the
/// request is a proper HTTP/1.1 GET with Host and Basic credentials from the URL.
#[test]
fn stream_delivers_the_fixture_frames() {
    let fixtures = stream_fixtures();
    let parts: Vec<Vec<u8>> = fixtures.iter().map(|(j, _)| part(j, true)).collect();
    let server = Server::start(move |_, head, mut s| {
        if !head.contains("Authorization: Basic dXNlcjpwdw==") {
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        let _ = s.write_all(MULTIPART_HEAD.as_bytes());
        stream_forever(s, &parts);
    });
    let url = format!("http://user:pw@{}/video?fps=30", server.addr);
    let stream = MjpegStream::open_with(&url, test_options()).unwrap();
    assert_eq!(
        stream.label(),
        format!("http://user:***@{}/video?fps=30", server.addr)
    );
    expect_both_fixtures(&stream, &fixtures);
    let status = stream.status();
    assert_eq!(status.state, StreamState::Streaming);
    assert_eq!(status.connections, 1);
    assert!(
        status.frames.decoded >= 2 && status.frames.dropped() == 0,
        "{:?}",
        status.frames
    );
    assert_eq!(status.last_error, None);
    let head = server.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /video?fps=30 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: {}\r\n", server.addr)),
        "{head}"
    );

    // Without the credentials: a clear 401.
    let stream = MjpegStream::open_with(&server.url("/video"), test_options()).unwrap();
    let e = wait_for("401", Duration::from_secs(5), || match stream.state() {
        StreamState::Reconnecting(e) => Some(e),
        _ => None,
    });
    assert!(matches!(e, StreamError::Http { status: 401, .. }), "{e:?}");
    assert!(e.to_string().contains("user name and password"), "{e}");
}

/// Parts without Content-Length, a boundary declared with its leading dashes (as some
/// servers do), and a chunked body split at odd places (as ESP32-CAM sends).
#[test]
fn stream_without_lengths_and_chunked() {
    let fixtures = stream_fixtures();
    let no_len: Vec<Vec<u8>> = fixtures.iter().map(|(j, _)| part(j, false)).collect();
    let server = Server::start(move |_, head, mut s| {
        if head.starts_with("GET /plain ") {
            let h = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=--frame\r\n\r\n";
            let _ = s.write_all(h.as_bytes());
            stream_forever(s, &no_len);
        } else {
            let h = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"frame\"\r\nTransfer-Encoding: chunked\r\n\r\n";
            let _ = s.write_all(h.as_bytes());
            let chunked: Vec<Vec<u8>> = no_len
                .iter()
                .map(|p| {
                    let mut out = Vec::new();
                    for c in p.chunks(1000 + p.len() % 777) {
                        out.extend(format!("{:x};ext=1\r\n", c.len()).bytes());
                        out.extend(c);
                        out.extend(b"\r\n");
                    }
                    out
                })
                .collect();
            stream_forever(s, &chunked);
        }
    });
    for path in ["/plain", "/chunked"] {
        let stream = MjpegStream::open_with(&server.url(path), test_options()).unwrap();
        expect_both_fixtures(&stream, &fixtures);
        let status = stream.status();
        assert_eq!(status.frames.dropped(), 0, "{path}: {:?}", status.frames);
        assert_eq!(status.connections, 1, "{path}");
    }
}

/// A server that drops the connection in the middle of a frame (with and without
/// Content-Length): the stream reports it (`Reconnecting(Closed ..)`, kept as last_error),
/// reconnects, and frames continue on the new connection.
#[test]
fn stream_reconnects_after_a_drop_mid_frame() {
    let fixtures = stream_fixtures();
    for with_length in [true, false] {
        let parts: Vec<Vec<u8>> = fixtures.iter().map(|(j, _)| part(j, with_length)).collect();
        let server = Server::start(move |index, _, mut s| {
            let _ = s.write_all(MULTIPART_HEAD.as_bytes());
            if index == 0 {
                let _ = s.write_all(&parts[0]);
                let _ = s.write_all(&parts[1]);
                let half = &parts[0][..parts[0].len() / 2];
                let _ = s.write_all(half);
                std::thread::sleep(Duration::from_millis(50));
                let _ = s.shutdown(std::net::Shutdown::Both);
                return;
            }
            stream_forever(s, &parts);
        });
        let stream = MjpegStream::open_with(&server.url("/"), test_options()).unwrap();
        let mut saw_reconnecting = None;
        let mut after = 0;
        wait_for(
            "frames after the reconnect",
            Duration::from_secs(10),
            || {
                let status = stream.status();
                if let StreamState::Reconnecting(e) = &status.state {
                    saw_reconnecting = Some(e.clone());
                }
                if stream.latest().is_some()
                    && status.connections >= 2
                    && saw_reconnecting.is_some()
                {
                    after += 1;
                }
                (after >= 3).then_some(())
            },
        );
        let expected = StreamError::Closed("in the middle of a frame".into());
        assert_eq!(
            saw_reconnecting,
            Some(expected.clone()),
            "with_length {with_length}"
        );
        let status = stream.status();
        assert_eq!(status.state, StreamState::Streaming);
        assert_eq!(status.last_error, Some(expected));
        assert!(status.connections >= 2 && server.connections.load(Ordering::SeqCst) >= 2);
        assert_eq!(status.frames.dropped(), 0, "the half frame is not a frame");
        assert_eq!(
            StreamError::Closed("in the middle of a frame".into()).to_string(),
            "the server closed the connection in the middle of a frame"
        );
    }
}

/// Servers that are not MJPEG streams give clear errors: not HTTP, HTML, a single JPEG, a
/// 404, PNG parts, a part over the size limit (with or without a length), nothing listening.
#[test]
fn stream_errors_are_clear() {
    let server = Server::start(|_, head, mut s| {
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let reply: Vec<u8> = match path.as_str() {
            "/ssh" => b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            "/html" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html>hello</html>".to_vec(),
            "/jpeg" => {
                let j = fixture_bytes("obama-240p.jpg");
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", j.len()).into_bytes();
                r.extend(j);
                r
            }
            "/png" => {
                let mut r = MULTIPART_HEAD.as_bytes().to_vec();
                r.extend(b"--frame\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG\r\n");
                r
            }
            "/huge" => {
                let mut r = MULTIPART_HEAD.as_bytes().to_vec();
                r.extend(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000000\r\n\r\n\xFF\xD8");
                r
            }
            "/endless" => {
                let _ = s.write_all(MULTIPART_HEAD.as_bytes());
                let _ = s.write_all(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xFF\xD8");
                let junk = vec![0x42u8; 64 << 10];
                while s.write_all(&junk).is_ok() {}
                return;
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&reply);
        std::thread::sleep(Duration::from_millis(200));
    });
    let error_of = |url: &str| {
        let opts = StreamOptions {
            max_part_bytes: 1 << 20,
            ..test_options()
        };
        let stream = MjpegStream::open_with(url, opts).unwrap();
        wait_for(url, Duration::from_secs(5), || match stream.state() {
            StreamState::Reconnecting(e) => Some(e),
            _ => None,
        })
    };
    let e = error_of(&server.url("/ssh"));
    assert_eq!(e, StreamError::NotHttp("SSH-2.0-OpenSSH_9.6".into()));
    let e = error_of(&server.url("/html"));
    assert_eq!(
        e,
        StreamError::NotMultipart {
            content_type: "text/html".into()
        }
    );
    assert!(
        e.to_string()
            .contains("not an MJPEG stream (multipart/x-mixed-replace)"),
        "{e}"
    );
    let e = error_of(&server.url("/jpeg"));
    assert_eq!(e, StreamError::SingleImage("image/jpeg".into()));
    assert!(e.to_string().contains("not a stream"), "{e}");
    let e = error_of(&server.url("/nothing"));
    assert_eq!(
        e,
        StreamError::Http {
            status: 404,
            reason: "Not Found".into()
        }
    );
    let e = error_of(&server.url("/png"));
    assert_eq!(
        e,
        StreamError::PartNotJpeg {
            content_type: "image/png".into()
        }
    );
    let e = error_of(&server.url("/huge"));
    assert_eq!(
        e,
        StreamError::PartTooLarge {
            size: 1_000_000_000,
            limit: 1 << 20
        }
    );
    let e = error_of(&server.url("/endless"));
    assert!(
        matches!(
            e,
            StreamError::PartTooLarge {
                limit: 0x10_0000,
                ..
            }
        ),
        "{e:?}"
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = error_of(&format!("http://127.0.0.1:{port}/video"));
    assert!(matches!(e, StreamError::Connect { .. }), "{e:?}");
    assert!(matches!(
        MjpegStream::open("https://cam/video"),
        Err(StreamError::BadUrl(_))
    ));
}

/// Parts that are not decodable JPEGs are dropped and counted; the stream goes on and the
/// next good frame is shown.
#[test]
fn undecodable_parts_are_counted_and_skipped() {
    let good = fixture_bytes("obama-240p.jpg");
    let server = Server::start(move |_, _, mut s| {
        let _ = s.write_all(MULTIPART_HEAD.as_bytes());
        let _ = s.write_all(&part(b"not a jpeg at all", true));
        let _ = s.write_all(&part(&good[..good.len() / 3], true));
        stream_forever(s, &[part(&good, true)]);
    });
    let stream = MjpegStream::open_with(&server.url("/"), test_options()).unwrap();
    let img = wait_for("a good frame", Duration::from_secs(5), || stream.latest());
    assert_eq!(img.dimensions(), (427, 240));
    let c = stream.counts();
    assert_eq!((c.corrupt, c.truncated), (1, 1), "{c:?}");
    assert_eq!(stream.state(), StreamState::Streaming);
}

/// Waits until the server reports connection `index` closed.
fn closed_within(rx: &mpsc::Receiver<usize>, index: usize, timeout: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(i) if i == index => return,
            Ok(_) => {}
            Err(_) => panic!("{what}: connection {index} still open after {timeout:?}"),
        }
    }
}

/// A server that goes silent is noticed (`Stalled`) and reconnected; dropping the stream
/// closes its connection promptly (well within the idle timeout), whether it is streaming
/// or waiting on a silent server.
#[test]
fn stalls_are_noticed_and_drop_closes_the_connection() {
    let (closed_tx, closed_rx) = mpsc::channel::<usize>();
    let good = part(&fixture_bytes("obama-240p.jpg"), true);
    let server = Server::start(move |index, head, mut s| {
        let _ = s.write_all(MULTIPART_HEAD.as_bytes());
        if head.starts_with("GET /silent ") {
            // Headers, then nothing: wait for the client to hang up.
            let mut buf = [0u8; 16];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        } else {
            stream_forever(s, std::slice::from_ref(&good));
        }
        let _ = closed_tx.send(index);
    });

    let quick = StreamOptions {
        idle_timeout: Duration::from_millis(300),
        ..test_options()
    };
    let stream = MjpegStream::open_with(&server.url("/silent"), quick).unwrap();
    let e = wait_for("a stall", Duration::from_secs(5), || match stream.state() {
        StreamState::Reconnecting(e) => Some(e),
        _ => None,
    });
    assert_eq!(e, StreamError::Stalled(Duration::from_millis(300)));
    assert!(e.to_string().contains("sent nothing for 300ms"), "{e}");
    closed_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the stalled connection is closed");
    drop(stream);

    // A long idle timeout: only the drop can close these connections quickly.
    let patient = StreamOptions {
        idle_timeout: Duration::from_secs(30),
        ..test_options()
    };
    let before = server.connections.load(Ordering::SeqCst);
    let stream = MjpegStream::open_with(&server.url("/silent"), patient.clone()).unwrap();
    wait_for("the connection", Duration::from_secs(5), || {
        (server.requests.lock().unwrap().len() > before).then_some(())
    });
    let t = Instant::now();
    drop(stream);
    closed_within(
        &closed_rx,
        before,
        Duration::from_secs(2),
        "drop closes a silent connection",
    );
    println!("silent connection closed {:?} after drop", t.elapsed());

    let live = server.connections.load(Ordering::SeqCst);
    let stream = MjpegStream::open_with(&server.url("/live"), patient).unwrap();
    wait_for("a frame", Duration::from_secs(5), || stream.latest());
    let t = Instant::now();
    drop(stream);
    closed_within(
        &closed_rx,
        live,
        Duration::from_secs(2),
        "drop closes a streaming connection",
    );
    println!("streaming connection closed {:?} after drop", t.elapsed());
}
