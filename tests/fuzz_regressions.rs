//! Fuzz regressions: every input the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found to
//! crash, kept under `tests/fuzz_regressions/<target>/`, replayed through the very checks
//! the targets run (`fuzz/src/lib.rs`, compiled in here), plus hand-made adversarial inputs
//! (truncations, oversized length fields, huge counts) and real objects that must still
//! parse. A stored crash input must now be rejected, not panic; a file whose name starts
//! with `ok-` must be accepted.
//!
//! `cargo test --release --test fuzz_regressions -- --ignored write_fuzz_seeds` rewrites
//! the fuzzers' seed inputs (`fuzz/seeds/<target>/`) from real objects.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::PathBuf;

use blindface::he::wire::{self, Kind};
use blindface::he::{
    encrypt_probe, encrypt_template, synthetic_template, Gallery, MatchResult, Params,
    PreparedProbe, SecretKey, TemplateId,
};
use image::RgbImage;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stored inputs of `target`, by file name.
fn stored(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("tests/fuzz_regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("stored input"))
        })
        .filter(|(name, _)| !name.starts_with('.') && !name.ends_with(".md"))
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8]) -> bool) {
    for (name, bytes) in stored(target) {
        let accepted = check(&bytes);
        assert_eq!(
            accepted,
            name.starts_with("ok-"),
            "{target}/{name}: accepted = {accepted}"
        );
    }
}

#[test]
fn stored_wire_inputs() {
    replay("wire", checks::wire);
}

#[test]
fn stored_result_stream_inputs() {
    replay("result_stream", checks::result_stream);
}

#[test]
fn stored_jpeg_frame_inputs() {
    replay("jpeg_frame", checks::jpeg_frame);
}

#[test]
fn stored_onnx_edit_inputs() {
    replay("onnx_edit", checks::onnx_edit);
}

#[test]
fn stored_multipart_inputs() {
    replay("multipart", checks::multipart);
}

// ---- real objects of the small parameter set --------------------------------------------

struct Objects {
    p: Params,
    key: SecretKey,
    template: Vec<u8>,
    probe: Vec<u8>,
    block: Vec<u8>,
    result: Vec<u8>,
}

fn objects() -> Objects {
    let p = checks::small_params();
    let key = SecretKey::generate(&p);
    let mut gallery = Gallery::new(&p);
    for i in 0..3 {
        let t = synthetic_template(i, 7, &p);
        gallery
            .insert(TemplateId(i + 1), &encrypt_template(&key, &t))
            .unwrap();
    }
    let t = synthetic_template(0, 7, &p);
    let template = encrypt_template(&key, &t).to_bytes();
    let (probe, _) = encrypt_probe(&key, &synthetic_template(1, 7, &p));
    let prepared = PreparedProbe::new(&probe, &p).unwrap();
    let result = gallery.identify(&prepared).unwrap().to_bytes();
    let (_, block) = gallery.block_of(TemplateId(2)).unwrap();
    Objects {
        p,
        template,
        probe: probe.to_bytes(),
        block: block.to_bytes(),
        result,
        key,
    }
}

/// The body of a wire object: its bytes without header and checksum.
fn body(kind: Kind, p: &Params, bytes: &[u8]) -> Vec<u8> {
    bytes[wire::header(kind, p).len()..bytes.len() - 32].to_vec()
}

fn with_selector(sel: &[u8], payload: &[u8]) -> Vec<u8> {
    [sel, payload].concat()
}

/// (selector, kind, whole object) for each wire kind; selector bit 3 = raw bytes.
fn wire_objects(o: &Objects) -> Vec<(u8, Kind, Vec<u8>)> {
    vec![
        (0, Kind::SecretKey, o.key.to_bytes().to_vec()),
        (1, Kind::Template, o.template.clone()),
        (2, Kind::Probe, o.probe.clone()),
        (3, Kind::Block, o.block.clone()),
    ]
}

#[test]
fn real_wire_objects_round_trip_and_every_truncation_is_an_error() {
    let o = objects();
    for (sel, kind, bytes) in wire_objects(&o) {
        assert!(checks::wire(&with_selector(&[sel | 8], &bytes)), "{kind:?}");
        let b = body(kind, &o.p, &bytes);
        assert!(checks::wire(&with_selector(&[sel], &b)), "{kind:?} framed");
        for cut in (0..bytes.len()).step_by(7) {
            assert!(!checks::wire(&with_selector(&[sel | 8], &bytes[..cut])));
        }
        for cut in (0..b.len()).step_by(5) {
            assert!(!checks::wire(&with_selector(&[sel], &b[..cut])));
        }
        // One byte too many, framed with a valid checksum: trailing bytes are rejected.
        let mut longer = b.clone();
        longer.push(0);
        assert!(!checks::wire(&with_selector(&[sel], &longer)));
    }
}

#[test]
fn oversized_length_fields_in_wire_bodies_are_errors() {
    let o = objects();
    for (sel, kind, bytes) in wire_objects(&o) {
        let b = body(kind, &o.p, &bytes);
        // The first Vec length prefix: at 0 for the key, after the u128 seed for seeded
        // ciphertexts, at 0 for the block's mask.
        let at = if matches!(kind, Kind::Template | Kind::Probe) {
            16
        } else {
            0
        };
        for len in [u64::MAX, 1 << 40, (b.len() as u64) / 8 + 1] {
            let mut evil = b.clone();
            evil[at..at + 8].copy_from_slice(&len.to_le_bytes());
            assert!(
                !checks::wire(&with_selector(&[sel], &evil)),
                "{kind:?} {len}"
            );
            // The same length prefix with nothing after it.
            assert!(!checks::wire(&with_selector(&[sel], &evil[..at + 8])));
        }
        // Objects of the real parameter set are refused by the small one and back.
        assert!(!checks::wire(&with_selector(&[sel | 4 | 8], &bytes)));
    }
}

/// `result_stream` input: raw bytes (selector bit 0), small parameters, `max_blocks`, chunk.
fn result_input(max_blocks: u8, chunk: u8, bytes: &[u8]) -> Vec<u8> {
    with_selector(&[1, max_blocks, chunk], bytes)
}

#[test]
fn real_results_parse_whole_and_streamed_and_every_truncation_is_an_error() {
    let o = objects();
    let r = MatchResult::from_bytes(&o.result, &o.p, 1).unwrap();
    assert_eq!(r.blocks.len(), 1);
    for chunk in [0, 3, 63] {
        assert!(checks::result_stream(&result_input(1, chunk, &o.result)));
    }
    // Fewer blocks allowed than announced.
    assert!(!checks::result_stream(&result_input(0, 0, &o.result)));
    for cut in 0..o.result.len() {
        assert!(!checks::result_stream(&result_input(
            4,
            5,
            &o.result[..cut]
        )));
    }
    let mut longer = o.result.clone();
    longer.push(0);
    assert!(!checks::result_stream(&result_input(4, 5, &longer)));
}

#[test]
fn huge_block_counts_and_bad_readout_counts_in_results_are_errors() {
    let o = objects();
    // The body: block count (u64), then the first block's readout count and entries.
    let body = body(Kind::MatchResult, &o.p, &o.result);
    let at = 0;
    for count in [u64::MAX, 1 << 40, 255, 2] {
        let mut evil = body.clone();
        evil[at..at + 8].copy_from_slice(&count.to_le_bytes());
        // Framed (valid checksum), allowing up to 255 blocks.
        assert!(!checks::result_stream(&with_selector(&[0, 255, 7], &evil)));
        assert!(!checks::result_stream(&with_selector(
            &[0, 255, 7],
            &evil[..at + 8]
        )));
    }
    for entries in [0u8, 5, 255] {
        let mut evil = body.clone();
        evil[at + 8] = entries;
        assert!(!checks::result_stream(&with_selector(&[0, 1, 7], &evil)));
    }
    // A repeated slot.
    let mut evil = body.clone();
    evil[at + 8 + 1 + 12] = evil[at + 8 + 1];
    assert!(!checks::result_stream(&with_selector(&[0, 1, 7], &evil)));
    // The unmodified body, framed, is accepted.
    assert!(checks::result_stream(&with_selector(&[0, 1, 7], &body)));
}

// ---- JPEG frames ----------------------------------------------------------------------

fn gradient_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 128]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

/// `jpeg_frame` input: MJPEG at the announced size `w` x `h`.
fn mjpeg_input(w: u16, h: u16, bytes: &[u8]) -> Vec<u8> {
    let [w0, w1] = w.to_le_bytes();
    let [h0, h1] = h.to_le_bytes();
    with_selector(&[0, w0, w1, h0, h1], bytes)
}

/// Where the frame header's height field is.
fn sof_size_at(jpeg: &[u8]) -> usize {
    let mut pos = 2;
    loop {
        let m = jpeg[pos + 1];
        if (0xC0..=0xC2).contains(&m) {
            return pos + 5;
        }
        pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
    }
}

#[test]
fn real_jpegs_decode_and_every_truncation_is_an_error() {
    let jpeg = gradient_jpeg(24, 16);
    assert!(checks::jpeg_frame(&mjpeg_input(24, 16, &jpeg)));
    // Announced at another size: an error, not a panic.
    assert!(!checks::jpeg_frame(&mjpeg_input(16, 24, &jpeg)));
    for cut in 0..jpeg.len() - 2 {
        assert!(
            !checks::jpeg_frame(&mjpeg_input(24, 16, &jpeg[..cut])),
            "{cut}"
        );
    }
    // Zero padding after the end marker is allowed.
    let mut padded = jpeg.clone();
    padded.extend_from_slice(&[0; 64]);
    assert!(checks::jpeg_frame(&mjpeg_input(24, 16, &padded)));
}

#[test]
fn oversized_and_impossible_jpeg_headers_are_errors() {
    let jpeg = gradient_jpeg(24, 16);
    let at = sof_size_at(&jpeg);
    for (h, w) in [(0u16, 16u16), (16, 0), (65535, 65535), (8193, 16)] {
        let mut evil = jpeg.clone();
        evil[at..at + 2].copy_from_slice(&h.to_be_bytes());
        evil[at + 2..at + 4].copy_from_slice(&w.to_be_bytes());
        assert!(!checks::jpeg_frame(&mjpeg_input(w, h, &evil)), "{w}x{h}");
        assert!(!checks::jpeg_frame(&with_selector(&[8, 0, 0, 0, 0], &evil)));
    }
    // Segment lengths past the end, below 2, and a marker run with nothing after it.
    for len in [0xFFFFu16, 0, 1] {
        let mut evil = jpeg.clone();
        evil[4..6].copy_from_slice(&len.to_be_bytes());
        assert!(!checks::jpeg_frame(&mjpeg_input(24, 16, &evil)), "{len}");
    }
    assert!(!checks::jpeg_frame(&mjpeg_input(
        1,
        1,
        &[0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0xD9]
    )));
    // Raw formats of the wrong length or size.
    for sel in 1..6u8 {
        assert!(!checks::jpeg_frame(&with_selector(
            &[sel, 3, 0, 3, 0],
            &[0; 5]
        )));
        assert!(!checks::jpeg_frame(&with_selector(
            &[sel, 255, 255, 1, 0],
            &[0; 9]
        )));
    }
    assert!(checks::jpeg_frame(&with_selector(
        &[5, 3, 0, 3, 0],
        &[7; 9]
    )));
}

// ---- ONNX fix-up ----------------------------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn len_field(number: u64, payload: &[u8]) -> Vec<u8> {
    [
        varint((number << 3) | 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

/// A model with one real input and one initializer listed as an input.
fn tiny_model() -> Vec<u8> {
    let graph = [
        len_field(1, b"node"),
        len_field(5, &len_field(8, b"w")),
        len_field(11, &len_field(1, b"data")),
        len_field(11, &len_field(1, b"w")),
    ]
    .concat();
    [vec![0x08, 7], len_field(7, &graph)].concat()
}

#[test]
fn onnx_edit_takes_tiny_models_and_rejects_broken_ones() {
    let model = tiny_model();
    assert!(checks::onnx_edit(&model));
    for cut in 0..model.len() {
        assert!(!checks::onnx_edit(&model[..cut]));
    }
    // Varints longer than 10 bytes, and lengths past the end or past usize.
    assert!(!checks::onnx_edit(&[
        0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01
    ]));
    for len in [u64::MAX, 1 << 40, 1000] {
        let evil = [vec![0x08, 7, 0x3A], varint(len), vec![0; 8]].concat();
        assert!(!checks::onnx_edit(&evil));
    }
}

// ---- seeds ----------------------------------------------------------------------------

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Rewrites `fuzz/seeds/` (small real objects, a few KB each) for `scripts/fuzz.sh`.
#[test]
#[ignore = "writes files: run by hand to refresh the fuzz seeds"]
fn write_fuzz_seeds() {
    let o = objects();
    for (sel, kind, bytes) in wire_objects(&o) {
        let name = format!("{kind:?}").to_lowercase();
        write_seed(
            "wire",
            &format!("{name}-raw"),
            &with_selector(&[sel | 8], &bytes),
        );
        let b = body(kind, &o.p, &bytes);
        write_seed("wire", &format!("{name}-body"), &with_selector(&[sel], &b));
    }
    write_seed("result_stream", "raw", &result_input(2, 13, &o.result));
    let b = body(Kind::MatchResult, &o.p, &o.result);
    write_seed("result_stream", "body", &with_selector(&[0, 2, 13], &b));
    let jpeg = gradient_jpeg(24, 16);
    write_seed("jpeg_frame", "mjpeg-24x16", &mjpeg_input(24, 16, &jpeg));
    write_seed(
        "jpeg_frame",
        "yuyv-4x2",
        &with_selector(&[1, 4, 0, 2, 0], &[90; 16]),
    );
    write_seed(
        "jpeg_frame",
        "nv12-4x2",
        &with_selector(&[2, 4, 0, 2, 0], &[90; 12]),
    );
    write_seed("onnx_edit", "tiny-model", &tiny_model());
    let stream = multipart_body(&[&jpeg, b"second part"], true);
    write_seed(
        "multipart",
        "two-parts",
        &multipart_input(4096, "frame", 7, &stream),
    );
    let open = multipart_body(&[&jpeg, b"second part"], false);
    write_seed(
        "multipart",
        "no-lengths",
        &multipart_input(4096, "", 3, &open),
    );
}

// ---- the multipart splitter ---------------------------------------------------------------

/// A `multipart/x-mixed-replace` body of boundary `frame` holding `parts` (each with a
/// `Content-Length` if `lengths`), closed by the final delimiter.
fn multipart_body(parts: &[&[u8]], lengths: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(b"--frame\r\nContent-Type: image/jpeg\r\n");
        if lengths {
            out.extend_from_slice(format!("Content-Length: {}\r\n", part.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--frame--\r\n");
    out
}

/// A `multipart` input: parts of at most `max_part` bytes, `boundary` declared (empty:
/// taken from the body), pieces of `1 + chunk` bytes.
fn multipart_input(max_part: u16, boundary: &str, chunk: u8, body: &[u8]) -> Vec<u8> {
    let mut out = max_part.to_le_bytes().to_vec();
    out.extend_from_slice(&[boundary.len() as u8, chunk]);
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Real stream bodies split the same in pieces of every size from 1 byte, with or without
/// lengths, with the boundary declared or found; a part over the limit, a header line
/// without end and a body without delimiter are refused the same however they arrive.
#[test]
fn multipart_bodies_split_the_same_in_any_pieces() {
    let jpeg = gradient_jpeg(24, 16);
    for lengths in [true, false] {
        let body = multipart_body(&[&jpeg, b"second part", &jpeg], lengths);
        for boundary in ["frame", "--frame", ""] {
            for chunk in [0, 1, 2, 6, 63, 255] {
                let input = multipart_input(4096, boundary, chunk, &body);
                assert!(checks::multipart(&input), "{lengths} {boundary:?} {chunk}");
            }
        }
        // A limit below the JPEG's size refuses it, however the body arrives.
        for chunk in [0, 5, 255] {
            let input = multipart_input(jpeg.len() as u16 - 2, "frame", chunk, &body);
            assert!(!checks::multipart(&input), "{lengths} {chunk}");
        }
    }
    let mut endless_header = b"--frame\r\nX-Pad: ".to_vec();
    endless_header.extend(std::iter::repeat_n(b'a', 20_000));
    let no_delimiter = vec![b'x'; 70_000];
    for body in [endless_header, no_delimiter] {
        for chunk in [0, 9, 255] {
            assert!(!checks::multipart(&multipart_input(
                4096, "frame", chunk, &body
            )));
        }
    }
    // Too short to hold the header of the input layout.
    assert!(!checks::multipart(&[1, 2, 3]));
}
