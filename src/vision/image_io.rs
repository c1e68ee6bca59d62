//! Loading images as RGB with their EXIF orientation applied, and which files are images
//! (by extension: the one list every source, dialog and folder command uses).
//!
//! The `image` crate decodes pixels as stored; phone photos are often stored sideways with
//! an EXIF orientation tag, and YuNet finds few faces lying on their side. The decoder's
//! orientation is applied before anything else sees the pixels.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::error::VisionError;

/// Loads an image file (JPEG, PNG, BMP, WebP) as RGB, upright according to its EXIF
/// orientation.
pub fn load_image(path: impl AsRef<Path>) -> Result<RgbImage, VisionError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|reason| VisionError::ImageUnreadable {
        path: path.to_path_buf(),
        reason,
    })?;
    decode(&bytes, &path.display().to_string())
}

/// Like [`load_image`], from the bytes of an encoded image (e.g. a file read elsewhere or
/// an upload).
pub fn load_image_from_bytes(bytes: &[u8]) -> Result<RgbImage, VisionError> {
    decode(bytes, "(in memory)")
}

fn decode(bytes: &[u8], what: &str) -> Result<RgbImage, VisionError> {
    let bad = |reason: String| VisionError::ImageDecode {
        what: what.to_string(),
        reason: one_line(&reason),
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    match reader.format() {
        None => {
            return Err(bad(
                "not a recognised image format (expected JPEG, PNG, BMP or WebP)".to_string(),
            ))
        }
        Some(ImageFormat::Jpeg) if !jpeg_has_end_marker(bytes) => {
            // The JPEG decoder fills a cut-off scan with grey and reports success; a face
            // pipeline should not enrol half a photo.
            return Err(bad(
                "truncated JPEG (no end-of-image marker after the image data)".to_string(),
            ));
        }
        Some(_) => {}
    }
    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    // A broken EXIF block must not make an otherwise good image unreadable.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("the image has no pixels".to_string()));
    }
    Ok(img.into_rgb8())
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Entropy-coded data never contains FF followed by a marker byte other than RSTn (FF is
/// stuffed as FF 00), so this finds the main image's EOI even when an EXIF thumbnail
/// (with its own EOI) comes earlier in the file.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(pos) => bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        // No scan at all: let the decoder report what is wrong.
        None => true,
    }
}

/// Decoder messages sometimes end in or contain newlines; errors here are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// File extensions read as images (by sources, file dialogs and folder commands), matched
/// in any case.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// Whether `path`'s extension is one of [`IMAGE_EXTENSIONS`] (any case); the file itself
/// is not read.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The images in `dir` (by extension), sorted by name.
pub fn list_images(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}
