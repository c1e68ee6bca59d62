//! Raw camera buffers to RGB, in our own code: what a capture thread hands over is a
//! [`RawFrame`] (pixel format, size, bytes) and [`decode`] turns it into an
//! [`image::RgbImage`] or a typed [`FrameError`], never a panic.
//!
//! Formats (every [`nokhwa::utils::FrameFormat`] nokhwa 0.10 can negotiate; it has no BGRA):
//! - MJPEG: one JPEG per frame, decoded by the `image` crate's decoder (zune-jpeg, which
//!   with the standard Huffman tables put in when a webcam leaves them out). Before decoding, a small
//!   structural check walks the markers up to the scan and requires the end-of-image marker
//!   (trailing zero padding is allowed), so a truncated frame is an error
//!   ([`FrameError::TruncatedJpeg`]) rather than an image with a grey bottom, and the
//!   frame's dimensions are checked before any pixel buffer is allocated. Corrupt entropy
//!   data (flipped bits inside the scan) has no checksum to catch it: the decoder either
//!   reports it ([`FrameError::CorruptJpeg`]) or returns an image with block artefacts,
//!   as libjpeg does. The decoder runs inside `catch_unwind`: zune-jpeg is fuzzed but it is
//!   third-party code fed by a device, and one bad frame must not take the camera down.
//! - YUYV (YUY2, packed 4:2:2: `Y0 U Y1 V` per two pixels) and NV12 (4:2:0: a full-size Y
//!   plane, then one interleaved `U V` plane at half width and half height): BT.601
//!   limited range (Y in 16..=235, chroma in 16..=240), integer arithmetic, 8 fractional
//!   bits:
//!   `R = (298(Y-16) + 409(V-128) + 128) >> 8`,
//!   `G = (298(Y-16) - 100(U-128) - 208(V-128) + 128) >> 8`,
//!   `B = (298(Y-16) + 516(U-128) + 128) >> 8`, each clamped to 0..=255. An odd width or
//!   height takes the chroma sample of its left/upper neighbour (the planes are rounded up).
//! - RGB24 (`RAWRGB`) is copied, BGR24 (`RAWBGR`) swapped, GRAY8 is full-range luma
//!   (`v -> (v, v, v)`, as nokhwa does).
//!
//! The raw formats need exactly `width * height * bytes per pixel` bytes (see
//! [`PixelFormat::expected_len`]); anything else is [`FrameError::WrongSize`] with both
//! sizes. Zero or larger than [`MAX_SIDE`] dimensions are errors before any allocation.
//! [`FrameCounter`] counts decoded and dropped frames by reason so a window can say
//! "dropped N".

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use image::RgbImage;
use nokhwa::utils::FrameFormat;

/// The largest width or height decoded (8K is 7680 wide); larger is [`FrameError::TooLarge`].
pub const MAX_SIDE: u32 = 8192;

/// How the bytes of a [`RawFrame`] encode its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// One JPEG image per frame (motion JPEG).
    Mjpeg,
    /// Packed YUV 4:2:2, `Y0 U Y1 V` per pair of pixels (YUY2).
    Yuyv,
    /// Planar Y then interleaved `U V` at half width and height (YUV 4:2:0).
    Nv12,
    /// 3 bytes per pixel, R G B.
    Rgb,
    /// 3 bytes per pixel, B G R (nokhwa's `RAWBGR`).
    Bgr,
    /// 1 byte per pixel, full-range luma.
    Gray,
}

impl PixelFormat {
    /// The format of a nokhwa frame. nokhwa 0.10's `FrameFormat` has six variants and all
    /// are decoded, so this cannot fail.
    pub fn from_nokhwa(format: FrameFormat) -> PixelFormat {
        match format {
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::GRAY => PixelFormat::Gray,
            FrameFormat::RAWRGB => PixelFormat::Rgb,
            FrameFormat::RAWBGR => PixelFormat::Bgr,
        }
    }

    /// A short name for messages ("MJPEG", "YUYV", ...).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Rgb => "RGB24",
            PixelFormat::Bgr => "BGR24",
            PixelFormat::Gray => "GRAY8",
        }
    }

    /// The exact byte length of a `width` x `height` frame, `None` for MJPEG (any length).
    /// Odd sizes round the chroma up: YUYV rows hold `ceil(width / 2)` 4-byte pairs, the NV12
    /// chroma plane is `2 * ceil(width / 2) * ceil(height / 2)` bytes.
    pub fn expected_len(self, width: u32, height: u32) -> Option<u64> {
        let (w, h) = (u64::from(width), u64::from(height));
        match self {
            PixelFormat::Mjpeg => None,
            PixelFormat::Yuyv => Some(w.div_ceil(2) * 4 * h),
            PixelFormat::Nv12 => Some(w * h + 2 * w.div_ceil(2) * h.div_ceil(2)),
            PixelFormat::Rgb | PixelFormat::Bgr => Some(w * h * 3),
            PixelFormat::Gray => Some(w * h),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One frame as the camera delivered it: format, announced size and bytes, not decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

impl RawFrame {
    /// A frame of `format` and `width` x `height` made of `bytes` (checked by [`decode`]).
    pub fn new(format: PixelFormat, width: u32, height: u32, bytes: Vec<u8>) -> RawFrame {
        RawFrame {
            format,
            width,
            height,
            bytes,
        }
    }

    /// Copies a nokhwa buffer (its negotiated format, resolution and bytes) into a frame.
    pub fn from_nokhwa(buffer: &nokhwa::Buffer) -> RawFrame {
        let res = buffer.resolution();
        RawFrame::new(
            PixelFormat::from_nokhwa(buffer.source_frame_format()),
            res.width(),
            res.height(),
            buffer.buffer().to_vec(),
        )
    }
}

impl fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawFrame")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why a frame could not be decoded. Every variant means "drop this frame": the next one
/// may be fine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a {format} frame of {width}x{height} needs {expected} bytes, but {got} arrived")]
    WrongSize {
        format: PixelFormat,
        width: u32,
        height: u32,
        expected: u64,
        got: usize,
    },
    #[error("the frame is {width}x{height}: a dimension is zero")]
    ZeroDimensions { width: u32, height: u32 },
    #[error("the frame is {width}x{height}, larger than {max} pixels on a side")]
    TooLarge { width: u32, height: u32, max: u32 },
    #[error("the JPEG frame is truncated ({0})")]
    TruncatedJpeg(String),
    #[error("the JPEG frame is corrupt ({0})")]
    CorruptJpeg(String),
    #[error(
        "the JPEG frame is {got_width}x{got_height} but the camera announced {width}x{height}"
    )]
    JpegSizeMismatch {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("the pixel format {0} is not supported; choose MJPEG or YUYV in the camera settings")]
    Unsupported(String),
}

/// The reason a frame was dropped, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A raw buffer of the wrong length.
    WrongSize,
    /// Zero, too large or mismatched dimensions.
    Dimensions,
    /// A JPEG cut short.
    Truncated,
    /// A JPEG the decoder rejected.
    Corrupt,
    /// A format this code does not decode.
    Unsupported,
}

impl FrameError {
    /// The counter this error goes to.
    pub fn reason(&self) -> DropReason {
        match self {
            FrameError::WrongSize { .. } => DropReason::WrongSize,
            FrameError::ZeroDimensions { .. }
            | FrameError::TooLarge { .. }
            | FrameError::JpegSizeMismatch { .. } => DropReason::Dimensions,
            FrameError::TruncatedJpeg(_) => DropReason::Truncated,
            FrameError::CorruptJpeg(_) => DropReason::Corrupt,
            FrameError::Unsupported(_) => DropReason::Unsupported,
        }
    }
}

/// Decodes one frame to RGB. Never panics; every failure is a [`FrameError`].
pub fn decode(frame: &RawFrame) -> Result<RgbImage, FrameError> {
    let (w, h) = (frame.width, frame.height);
    check_dimensions(w, h)?;
    if let Some(expected) = frame.format.expected_len(w, h) {
        if expected != frame.bytes.len() as u64 {
            return Err(FrameError::WrongSize {
                format: frame.format,
                width: w,
                height: h,
                expected,
                got: frame.bytes.len(),
            });
        }
    }
    let b = &frame.bytes;
    let img = match frame.format {
        PixelFormat::Mjpeg => {
            // The size the JPEG's header claims is checked against the announced one
            // before decoding: a few hundred bytes claiming 8192x8192 would otherwise make
            // the decoder allocate ~200 MB first.
            let (got_width, got_height) = jpeg_dimensions(b)?;
            if (got_width, got_height) != (w, h) {
                return Err(FrameError::JpegSizeMismatch {
                    width: w,
                    height: h,
                    got_width,
                    got_height,
                });
            }
            return decode_jpeg(b);
        }
        PixelFormat::Yuyv => yuyv_to_rgb(b, w as usize, h as usize),
        PixelFormat::Nv12 => nv12_to_rgb(b, w as usize, h as usize),
        PixelFormat::Rgb => b.clone(),
        PixelFormat::Bgr => b.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect(),
        PixelFormat::Gray => b.iter().flat_map(|&v| [v, v, v]).collect(),
    };
    // The length was checked above, so this cannot fail; map it anyway rather than unwrap.
    RgbImage::from_raw(w, h, img)
        .ok_or_else(|| FrameError::Unsupported(format!("{} (internal size)", frame.format)))
}

fn check_dimensions(width: u32, height: u32) -> Result<(), FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::ZeroDimensions { width, height });
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(FrameError::TooLarge {
            width,
            height,
            max: MAX_SIDE,
        });
    }
    Ok(())
}

/// BT.601 limited range, integer: one pixel's luma with the shared chroma terms.
#[inline(always)]
fn yuv_pixel(out: &mut [u8], y: u8, rv: i32, guv: i32, bu: i32) {
    let c = (i32::from(y) - 16) * 298 + 128;
    out[0] = ((c + rv) >> 8).clamp(0, 255) as u8;
    out[1] = ((c + guv) >> 8).clamp(0, 255) as u8;
    out[2] = ((c + bu) >> 8).clamp(0, 255) as u8;
}

/// The chroma terms of `U V`: (409 E, -100 D - 208 E, 516 D).
#[inline(always)]
fn chroma_terms(u: u8, v: u8) -> (i32, i32, i32) {
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    (409 * e, -100 * d - 208 * e, 516 * d)
}

/// Two pixels (or one, at an odd right edge) sharing one chroma sample.
#[inline(always)]
fn yuv_pair(out: &mut [u8], y0: u8, y1: u8, u: u8, v: u8) {
    let (rv, guv, bu) = chroma_terms(u, v);
    yuv_pixel(&mut out[..3], y0, rv, guv, bu);
    if out.len() >= 6 {
        yuv_pixel(&mut out[3..6], y1, rv, guv, bu);
    }
}

/// YUYV of the checked length to RGB.
fn yuyv_to_rgb(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h * 3];
    let row_in = w.div_ceil(2) * 4;
    for (o, i) in out.chunks_exact_mut(w * 3).zip(src.chunks_exact(row_in)) {
        for (px, q) in o.chunks_mut(6).zip(i.chunks_exact(4)) {
            yuv_pair(px, q[0], q[2], q[1], q[3]);
        }
    }
    out
}

/// NV12 of the checked length to RGB.
fn nv12_to_rgb(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h * 3];
    let (luma, chroma) = src.split_at(w * h);
    let row_uv = w.div_ceil(2) * 2;
    for (r, (o, y)) in out
        .chunks_exact_mut(w * 3)
        .zip(luma.chunks_exact(w))
        .enumerate()
    {
        let uv = &chroma[(r / 2) * row_uv..][..row_uv];
        for ((px, y), c) in o.chunks_mut(6).zip(y.chunks(2)).zip(uv.chunks_exact(2)) {
            yuv_pair(px, y[0], *y.get(1).unwrap_or(&y[0]), c[0], c[1]);
        }
    }
    out
}

/// The width and height a JPEG's frame header announces, after the structural checks
/// [`decode_jpeg`] makes (start marker, segment lengths, a frame header before the scan,
/// the end-of-image marker). Reads headers only.
pub fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32), FrameError> {
    jpeg_header(bytes).map(|h| (h.width, h.height))
}

/// What the structural walk of a JPEG found.
struct JpegHeader {
    width: u32,
    height: u32,
    /// Whether a DHT segment (Huffman tables) precedes the scan.
    has_tables: bool,
}

fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader, FrameError> {
    let truncated = |what: &str| FrameError::TruncatedJpeg(what.to_string());
    let corrupt = |what: &str| FrameError::CorruptJpeg(what.to_string());
    if bytes.len() < 4 {
        return Err(truncated("fewer than 4 bytes"));
    }
    if bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(corrupt("no start-of-image marker"));
    }
    // Cameras may pad a frame with zeros after the end marker.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end < 4 || bytes[end - 2] != 0xFF || bytes[end - 1] != 0xD9 {
        return Err(truncated("no end-of-image marker: the frame was cut short"));
    }
    let mut pos = 2;
    let mut size = None;
    let mut has_tables = false;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if pos >= end {
            return Err(truncated("the headers end before the image data"));
        }
        if bytes[pos] != 0xFF {
            return Err(corrupt("a header segment is followed by stray bytes"));
        }
        while pos < end && bytes[pos] == 0xFF {
            pos += 1;
        }
        if pos >= end {
            return Err(truncated("the headers end before the image data"));
        }
        let marker = bytes[pos];
        pos += 1;
        match marker {
            // Stand-alone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Err(corrupt("a second start-of-image marker in the headers")),
            0xD9 => return Err(corrupt("the image ends before any image data")),
            _ => {}
        }
        if pos + 2 > end {
            return Err(truncated("a header segment is cut short"));
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
        if len < 2 {
            return Err(corrupt("a header segment has an impossible length"));
        }
        if pos + len > end {
            return Err(truncated("a header segment is cut short"));
        }
        let seg = &bytes[pos + 2..pos + len];
        match marker {
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if seg.len() < 6 {
                    return Err(corrupt("the frame header is too short"));
                }
                let height = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
                let width = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
                size = Some((width, height));
            }
            0xC4 => has_tables = true,
            0xDA => {
                return match size {
                    Some((width, height)) => {
                        check_dimensions(width, height)?;
                        Ok(JpegHeader {
                            width,
                            height,
                            has_tables,
                        })
                    }
                    None => Err(corrupt("no frame header before the image data")),
                };
            }
            _ => {}
        }
        pos += len;
    }
}

/// Decodes one JPEG (an MJPEG frame, or a part of an MJPEG-over-HTTP stream) to RGB at the
/// size it announces. Truncated and structurally broken JPEGs are errors; see the module
/// documentation for corrupt entropy data.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, FrameError> {
    let JpegHeader {
        width,
        height,
        has_tables,
    } = jpeg_header(bytes)?;
    // Webcams often leave the Huffman tables out of MJPEG frames and rely on the standard
    // ones; zune-jpeg only supplies them when the frame says "AVI1", so put them in.
    let with_tables;
    let bytes = if has_tables {
        bytes
    } else {
        with_tables = [&bytes[..2], &standard_huffman_tables(), &bytes[2..]].concat();
        &with_tables[..]
    };
    let decoded = std::panic::catch_unwind(|| -> Result<RgbImage, String> {
        use image::ImageDecoder;
        let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes))
            .map_err(|e| e.to_string())?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        dec.set_limits(limits).map_err(|e| e.to_string())?;
        let img = image::DynamicImage::from_decoder(dec).map_err(|e| e.to_string())?;
        Ok(img.into_rgb8())
    });
    let img = match decoded {
        Ok(Ok(img)) => img,
        Ok(Err(e)) => return Err(FrameError::CorruptJpeg(e)),
        Err(_) => return Err(FrameError::CorruptJpeg("the decoder failed".into())),
    };
    if img.dimensions() != (width, height) {
        return Err(FrameError::CorruptJpeg(format!(
            "decoded {}x{} from a header of {width}x{height}",
            img.width(),
            img.height()
        )));
    }
    Ok(img)
}

/// A DHT segment with the four standard Huffman tables of ITU-T T.81 Annex K.3 (what
/// motion-JPEG frames without tables are coded with).
fn standard_huffman_tables() -> Vec<u8> {
    const DC_LUMA: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_CHROMA: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_LUMA: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
    #[rustfmt::skip]
    const AC_LUMA_VALUES: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
        0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
        0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
        0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
        0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
        0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
        0xF9, 0xFA,
    ];
    const AC_CHROMA: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    #[rustfmt::skip]
    const AC_CHROMA_VALUES: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
        0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
        0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
        0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
        0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
        0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
        0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
        0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
        0xF9, 0xFA,
    ];
    let tables: [(u8, &[u8], &[u8]); 4] = [
        (0x00, &DC_LUMA, &DC_VALUES),
        (0x01, &DC_CHROMA, &DC_VALUES),
        (0x10, &AC_LUMA, &AC_LUMA_VALUES),
        (0x11, &AC_CHROMA, &AC_CHROMA_VALUES),
    ];
    let len: usize = 2 + tables
        .iter()
        .map(|(_, l, v)| 1 + l.len() + v.len())
        .sum::<usize>();
    let mut seg = vec![0xFF, 0xC4];
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    for (class_id, lengths, values) in tables {
        seg.push(class_id);
        seg.extend_from_slice(lengths);
        seg.extend_from_slice(values);
    }
    seg
}

/// Counts of decoded and dropped frames, by reason (a snapshot of a [`FrameCounter`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub decoded: u64,
    pub wrong_size: u64,
    pub dimensions: u64,
    pub truncated: u64,
    pub corrupt: u64,
    pub unsupported: u64,
}

impl FrameCounts {
    /// All dropped frames, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.wrong_size + self.dimensions + self.truncated + self.corrupt + self.unsupported
    }
}

impl fmt::Display for FrameCounts {
    /// "120 frames, dropped 3 (2 corrupt, 1 truncated)"; reasons with a zero count are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames, dropped {}", self.decoded, self.dropped())?;
        let parts: Vec<String> = [
            (self.corrupt, "corrupt"),
            (self.truncated, "truncated"),
            (self.wrong_size, "wrong size"),
            (self.dimensions, "bad size"),
            (self.unsupported, "unsupported"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Thread-safe counters of decoded and dropped frames: share it (`Arc`) between the capture
/// thread that records and the window that shows [`FrameCounter::counts`].
#[derive(Debug, Default)]
pub struct FrameCounter {
    decoded: AtomicU64,
    wrong_size: AtomicU64,
    dimensions: AtomicU64,
    truncated: AtomicU64,
    corrupt: AtomicU64,
    unsupported: AtomicU64,
}

impl FrameCounter {
    /// Zero counts.
    pub fn new() -> FrameCounter {
        FrameCounter::default()
    }

    /// Counts one decode result: a success, or a drop under its error's reason.
    pub fn record<T>(&self, result: &Result<T, FrameError>) {
        match result {
            Ok(_) => self.decoded.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.counter(e.reason()).fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Decodes `frame` and counts the result.
    pub fn decode(&self, frame: &RawFrame) -> Result<RgbImage, FrameError> {
        let r = decode(frame);
        self.record(&r);
        r
    }

    fn counter(&self, reason: DropReason) -> &AtomicU64 {
        match reason {
            DropReason::WrongSize => &self.wrong_size,
            DropReason::Dimensions => &self.dimensions,
            DropReason::Truncated => &self.truncated,
            DropReason::Corrupt => &self.corrupt,
            DropReason::Unsupported => &self.unsupported,
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> FrameCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FrameCounts {
            decoded: get(&self.decoded),
            wrong_size: get(&self.wrong_size),
            dimensions: get(&self.dimensions),
            truncated: get(&self.truncated),
            corrupt: get(&self.corrupt),
            unsupported: get(&self.unsupported),
        }
    }
}
