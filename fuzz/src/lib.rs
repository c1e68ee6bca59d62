//! The checks behind every fuzz target: one function per parser that takes untrusted
//! bytes, feeding it the input and asserting the invariants that must hold whatever the
//! bytes are. A panic here is a finding (the parser panicked, or an invariant broke).
//!
//! The same file is compiled into `tests/fuzz_regressions.rs` (`#[path]`), so every stored
//! crash input is replayed through exactly the code the fuzzer ran.
//!
//! Each check returns whether the parser accepted the input. Input layouts (first bytes
//! select what the rest means, so one target covers every type and both parameter sets):
//! - [`wire`]: `selector || payload`. Selector bits 0-1: kind (secret key, template,
//!   probe, gallery block); bit 2: `Params::v1()` instead of the small test set
//!   ([`small_params`]); bit 3: the payload is a whole wire object, otherwise it is the
//!   body only and the check frames it (header and a valid SHA-256), so the fuzzer gets past
//!   the checksum to bincode and the dimension checks.
//! - [`result_stream`]: `selector || max_blocks || chunk || payload`: selector bit 0 as bit
//!   3 above (raw or framed), bit 1 as bit 2 above (v1 or small); `max_blocks` the bound
//!   passed to the reader; `chunk` the most bytes one `read` call returns (1 + chunk % 64).
//! - [`jpeg_frame`]: `format || width (u16 LE) || height (u16 LE) || bytes`: format % 6 picks
//!   the pixel format; format bit 3 (MJPEG) uses the JPEG's own size as the announced one.
//! - [`onnx_edit`]: the model bytes.
//! - [`multipart`]: `max_part (u16 LE) || boundary length || chunk || boundary || body`:
//!   parts of at most `1 + max_part` bytes, the boundary as declared (`boundary length %
//!   16` bytes, none: taken from the body), the body fed whole and in pieces of `1 + chunk`.

use std::io::Read;

use blindface::frames::decode::{jpeg_dimensions, MAX_SIDE};
use blindface::frames::multipart::{MultipartError, Part, Splitter};
use blindface::frames::{FrameCounter, PixelFormat, RawFrame};
use blindface::he::wire::{self, Kind};
use blindface::he::{
    BlockCiphertext, EncryptedProbe, EncryptedTemplate, HeError, MatchResult, Params, ResultReader,
    SecretKey,
};
use sha2::{Digest, Sha256};

/// A valid parameter set small enough for the fuzzer to build whole objects (N = 64, four
/// slots of 15 + 1 coefficients, two gadget levels): a probe body is 2 KB instead of 128 KB.
pub fn small_params() -> Params {
    let p = Params {
        polynomial_size: 64,
        dim: 15,
        decomp_level_count: 2,
        ..Params::v1()
    };
    debug_assert!(p.validate().is_ok());
    p
}

fn params(v1: bool) -> Params {
    if v1 {
        Params::v1()
    } else {
        small_params()
    }
}

/// `body` framed as a wire object of `kind`: header, body, SHA-256 of both.
pub fn framed(kind: Kind, params: &Params, body: &[u8]) -> Vec<u8> {
    let mut out = wire::header(kind, params);
    out.extend_from_slice(body);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Accepted objects must re-serialise to exactly the bytes they came from (fixint bincode
/// and the result codec are canonical) and say their length without serialising.
fn round_trip(parsed: Result<(Vec<u8>, usize), HeError>, bytes: &[u8]) -> bool {
    match parsed {
        Ok((again, wire_len)) => {
            assert_eq!(again, bytes, "re-serialising changed the bytes");
            assert_eq!(wire_len, bytes.len(), "wire_len disagrees with the bytes");
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// Wire objects (`he::wire`): secret keys, encrypted templates and probes, gallery blocks.
pub fn wire(data: &[u8]) -> bool {
    let Some((&sel, payload)) = data.split_first() else {
        return false;
    };
    let p = params(sel & 4 != 0);
    let kind = [Kind::SecretKey, Kind::Template, Kind::Probe, Kind::Block][usize::from(sel & 3)];
    let bytes = if sel & 8 != 0 {
        payload.to_vec()
    } else {
        framed(kind, &p, payload)
    };
    let parsed = match kind {
        Kind::SecretKey => SecretKey::from_bytes(&bytes, &p).map(|k| {
            let again = k.to_bytes().to_vec();
            let len = again.len();
            (again, len)
        }),
        Kind::Template => EncryptedTemplate::from_bytes(&bytes, &p).map(|t| {
            assert_eq!(t.params(), &p);
            (t.to_bytes(), t.wire_len())
        }),
        Kind::Probe => EncryptedProbe::from_bytes(&bytes, &p).map(|t| (t.to_bytes(), t.wire_len())),
        Kind::Block => BlockCiphertext::from_bytes(&bytes, &p).map(|b| {
            assert_eq!(b.slots.len(), p.slots_per_block());
            (b.to_bytes(), b.wire_len())
        }),
        Kind::MatchResult => unreachable!("results have their own target"),
    };
    round_trip(parsed, &bytes)
}

/// A reader that hands out at most `chunk` bytes per call, as a socket does.
struct Chunked<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Match results (`he::result`): the whole-buffer parser and the streaming
/// [`ResultReader`] over a reader that returns short reads must agree, and an accepted
/// result must re-serialise to its bytes.
pub fn result_stream(data: &[u8]) -> bool {
    let [sel, max_blocks, chunk, payload @ ..] = data else {
        return false;
    };
    let p = params(sel & 2 != 0);
    let max_blocks = usize::from(*max_blocks);
    let bytes = if sel & 1 != 0 {
        payload.to_vec()
    } else {
        framed(Kind::MatchResult, &p, payload)
    };
    let whole = MatchResult::from_bytes(&bytes, &p, max_blocks);
    let streamed = (|| {
        let reader = Chunked {
            rest: &bytes,
            chunk: 1 + usize::from(*chunk) % 64,
        };
        let mut reader = ResultReader::new(reader, &p, max_blocks)?;
        assert!(reader.block_count() <= max_blocks);
        let mut blocks = Vec::new();
        while let Some(b) = reader.next_block()? {
            blocks.push(b);
        }
        Ok::<_, HeError>(blocks)
    })();
    match (&whole, &streamed) {
        (Ok(r), Ok(blocks)) => assert_eq!(&r.blocks, blocks, "whole and streamed differ"),
        (Err(_), Err(_)) => {}
        (w, s) => panic!(
            "whole and streamed disagree: {:?} / {:?}",
            w.as_ref().map(|r| r.blocks.len()),
            s.as_ref().map(|b| b.len())
        ),
    }
    match whole {
        Ok(r) => {
            assert!(r.blocks.len() <= max_blocks);
            for b in &r.blocks {
                assert_eq!(b.mask.len(), p.polynomial_size);
                assert!(!b.entries.is_empty() && b.entries.len() <= p.slots_per_block());
            }
            assert_eq!(r.to_bytes(), bytes, "re-serialising changed the bytes");
            assert_eq!(r.wire_len(), bytes.len());
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

const FORMATS: [PixelFormat; 6] = [
    PixelFormat::Mjpeg,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb,
    PixelFormat::Bgr,
    PixelFormat::Gray,
];

/// Camera frames (`frames::decode`): the JPEG structural checks and MJPEG decoding, and the
/// raw formats' size checks. A decoded frame has the announced size; an MJPEG frame that
/// decodes has a header of that size.
pub fn jpeg_frame(data: &[u8]) -> bool {
    let [sel, w0, w1, h0, h1, bytes @ ..] = data else {
        return false;
    };
    let format = FORMATS[usize::from(*sel) % FORMATS.len()];
    let header = jpeg_dimensions(bytes);
    if let Ok((w, h)) = header {
        assert!((1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h));
    }
    let (w, h) = match header {
        Ok(size) if format == PixelFormat::Mjpeg && sel & 8 != 0 => size,
        _ => (
            u32::from(u16::from_le_bytes([*w0, *w1])),
            u32::from(u16::from_le_bytes([*h0, *h1])),
        ),
    };
    let frame = RawFrame::new(format, w, h, bytes.to_vec());
    let counter = FrameCounter::new();
    let decoded = counter.decode(&frame);
    assert_eq!(counter.counts().decoded + counter.counts().dropped(), 1);
    match decoded {
        Ok(img) => {
            assert_eq!(img.dimensions(), (w, h));
            match format.expected_len(w, h) {
                Some(len) => assert_eq!(len, bytes.len() as u64),
                None => assert_eq!(header, Ok((w, h))),
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// The in-memory ONNX fix-up (`vision::strip_initializer_inputs`): a changed model is
/// shorter, and a second pass finds nothing left to remove.
pub fn onnx_edit(data: &[u8]) -> bool {
    match blindface::vision::strip_initializer_inputs(data) {
        None => false,
        Some(out) => {
            assert!(out.len() < data.len(), "the edit made the model longer");
            assert!(
                blindface::vision::strip_initializer_inputs(&out).is_none(),
                "a second pass changed the model again"
            );
            true
        }
    }
}

/// The MJPEG stream's part splitter (`frames::multipart::Splitter`): fed whole or in
/// pieces of any size, it finds the same parts and ends the same way (only the size a
/// `PartTooLarge` reports depends on where the pieces were cut), and no part is larger
/// than the limit. Accepted: at least one part was found.
pub fn multipart(data: &[u8]) -> bool {
    let [m0, m1, blen, chunk, rest @ ..] = data else {
        return false;
    };
    let max_part = 1 + usize::from(u16::from_le_bytes([*m0, *m1]));
    let (boundary, body) = rest.split_at(usize::from(*blen % 16).min(rest.len()));
    let boundary = std::str::from_utf8(boundary).ok().filter(|b| !b.is_empty());
    let whole = split(boundary, max_part, body, body.len().max(1));
    let pieces = split(boundary, max_part, body, 1 + usize::from(*chunk));
    assert_eq!(
        whole.0, pieces.0,
        "the parts depend on how the body was cut"
    );
    match (&whole.1, &pieces.1) {
        (Err(MultipartError::PartTooLarge { .. }), Err(MultipartError::PartTooLarge { .. })) => {}
        (a, b) => assert_eq!(a, b, "the outcome depends on how the body was cut"),
    }
    for part in &whole.0 {
        assert!(part.body.len() <= max_part, "a part over the limit");
    }
    !whole.0.is_empty()
}

/// The parts a splitter finds in `body` fed `chunk` bytes at a time, and how it ended
/// (`Ok(finished)`, or its error).
fn split(
    boundary: Option<&str>,
    max_part: usize,
    body: &[u8],
    chunk: usize,
) -> (Vec<Part>, Result<bool, MultipartError>) {
    let mut splitter = Splitter::new(boundary, max_part);
    let mut parts = Vec::new();
    for piece in body.chunks(chunk) {
        splitter.push(piece);
        loop {
            match splitter.next_part() {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => break,
                Err(e) => return (parts, Err(e)),
            }
        }
    }
    (parts, Ok(splitter.is_finished()))
}
