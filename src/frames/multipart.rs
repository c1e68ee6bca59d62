//! The body of an MJPEG stream split into its parts: a push parser for
//! `multipart/x-mixed-replace` (RFC 2046 multipart as cameras actually send it) that takes
//! bytes in chunks of any size and yields each complete [`Part`], with every buffer bounded.
//!
//! [`Splitter::push`] appends the bytes that arrived, then [`Splitter::next_part`] returns
//! the parts they completed, one call each, until `Ok(None)`. A part ends either after its
//! `Content-Length` or, without one, at the next `\n` + delimiter line. Delimiters are
//! recognised with the boundary declared with or without its leading `--` (both occur) or
//! not declared at all (the first `--` line is taken). Bounds: a header line (8 KiB), a
//! part's header block and the bytes skipped looking for a delimiter (64 KiB), and a part's
//! body (the `max_part` given to [`Splitter::new`]: a larger `Content-Length` is an error
//! before anything is buffered, and a part without one stops at the limit, give or take the
//! last chunk pushed). Any input, split anywhere, gives the same parts then the same outcome
//! (only [`MultipartError::PartTooLarge`]'s size, the bytes buffered when it was noticed,
//! depends on the chunks), and never a panic; after an error the splitter keeps returning it.

use memchr::memmem;

/// The longest header or delimiter line accepted.
pub const MAX_LINE: usize = 8 << 10;
/// The largest header block of a part, and the most bytes skipped looking for a delimiter.
pub const MAX_HEADERS: usize = 64 << 10;

/// Why a multipart body cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("a part of {size} bytes is larger than the {limit}-byte limit")]
    PartTooLarge { size: u64, limit: usize },
    #[error("a header line is too long")]
    LineTooLong,
    #[error("the headers are too long")]
    HeadersTooLong,
    #[error("no part delimiter found")]
    NoDelimiter,
    #[error("a part length is not a number")]
    BadLength,
}

/// One part of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's media type, lower-cased, without parameters (`image/jpeg`), if it has a
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// The part's bytes, trailing whitespace removed (a JPEG ends in `FF D9`).
    pub body: Vec<u8>,
}

/// The media type of a `Content-Type` value, lower-cased, and its `boundary` parameter
/// (quotes removed; `None` if absent or empty).
pub fn parse_content_type(value: &str) -> (String, Option<String>) {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let boundary = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    (media, boundary.filter(|b| !b.is_empty()))
}

#[derive(Debug)]
enum State {
    /// Skipping lines up to a delimiter: the preamble, or the line end after a sized part.
    Seek {
        skipped: usize,
    },
    /// Reading a part's header lines (`total`: bytes so far).
    Headers {
        total: usize,
        content_type: Option<String>,
        length: Option<u64>,
    },
    /// A part with a `Content-Length`: waiting for its bytes.
    Sized {
        content_type: Option<String>,
        length: usize,
    },
    /// A part without a length, up to the next `\n` + delimiter (`scanned`: bytes already
    /// searched for it, so each byte is searched about once).
    Open {
        content_type: Option<String>,
        scanned: usize,
    },
    /// After the closing delimiter.
    Done,
    Failed(MultipartError),
}

/// A push parser for a multipart body; see the module documentation.
#[derive(Debug)]
pub struct Splitter {
    /// The boundary as declared, leading dashes removed (`None`: taken from the body).
    boundary: Option<Vec<u8>>,
    /// The delimiter line exactly as the server writes it (trimmed), once seen.
    delimiter: Option<Vec<u8>>,
    max_part: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; every position in `State` is relative to it.
    start: usize,
    state: State,
}

enum Line {
    Delimiter,
    End,
    Other,
}

impl Splitter {
    /// A splitter for a body whose `Content-Type` declared `boundary` (see
    /// [`parse_content_type`]), with parts of at most `max_part` bytes.
    pub fn new(boundary: Option<&str>, max_part: usize) -> Splitter {
        Splitter {
            boundary: boundary.map(|b| trim_dashes(b.as_bytes()).to_vec()),
            delimiter: None,
            max_part,
            buf: Vec::new(),
            start: 0,
            state: State::Seek { skipped: 0 },
        }
    }

    /// Appends bytes that arrived. Call [`Splitter::next_part`] until `Ok(None)` before
    /// pushing more: that is what keeps the buffer bounded.
    pub fn push(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Done | State::Failed(_)) {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete part, `Ok(None)` when more bytes are needed (or the body ended).
    pub fn next_part(&mut self) -> Result<Option<Part>, MultipartError> {
        match self.step() {
            Ok(part) => Ok(part),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }

    /// The closing delimiter has been read: no part will follow.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Inside a part (its headers or body), rather than between parts: where a body that
    /// stops now was cut.
    pub fn in_part(&self) -> bool {
        matches!(
            self.state,
            State::Headers { .. } | State::Sized { .. } | State::Open { .. }
        )
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The next whole line (with its `\n`), consumed; `None` until one has arrived.
    fn take_line(&mut self) -> Result<Option<std::ops::Range<usize>>, MultipartError> {
        match memchr::memchr(b'\n', self.pending()) {
            Some(i) if i >= MAX_LINE => Err(MultipartError::LineTooLong),
            Some(i) => {
                let line = self.start..self.start + i + 1;
                self.start += i + 1;
                Ok(Some(line))
            }
            None if self.pending().len() >= MAX_LINE => Err(MultipartError::LineTooLong),
            None => Ok(None),
        }
    }

    fn step(&mut self) -> Result<Option<Part>, MultipartError> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Failed(e) => {
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
                State::Done => return Ok(None),
                State::Seek { skipped } => {
                    let Some(line) = self.take_line()? else {
                        self.state = State::Seek { skipped };
                        return Ok(None);
                    };
                    let len = line.len();
                    self.state = match self.classify(line) {
                        Line::Delimiter => State::Headers {
                            total: 0,
                            content_type: None,
                            length: None,
                        },
                        Line::End => State::Done,
                        Line::Other if skipped + len > MAX_HEADERS => {
                            return Err(MultipartError::NoDelimiter)
                        }
                        Line::Other => State::Seek {
                            skipped: skipped + len,
                        },
                    };
                }
                State::Headers {
                    total,
                    mut content_type,
                    mut length,
                } => {
                    let Some(line) = self.take_line()? else {
                        self.state = State::Headers {
                            total,
                            content_type,
                            length,
                        };
                        return Ok(None);
                    };
                    let total = total + line.len();
                    if total > MAX_HEADERS {
                        return Err(MultipartError::HeadersTooLong);
                    }
                    let text = String::from_utf8_lossy(&self.buf[line]);
                    let text = text.trim();
                    if text.is_empty() {
                        self.state = match length {
                            Some(n) if n > self.max_part as u64 => {
                                return Err(MultipartError::PartTooLarge {
                                    size: n,
                                    limit: self.max_part,
                                })
                            }
                            // n <= max_part, a usize.
                            Some(n) => State::Sized {
                                content_type,
                                length: n as usize,
                            },
                            None => State::Open {
                                content_type,
                                scanned: 0,
                            },
                        };
                        continue;
                    }
                    if let Some((name, value)) = text.split_once(':') {
                        let name = name.trim();
                        if name.eq_ignore_ascii_case("content-type") {
                            content_type = Some(parse_content_type(value).0);
                        } else if name.eq_ignore_ascii_case("content-length") {
                            let n = value.trim().parse::<u64>();
                            length = Some(n.map_err(|_| MultipartError::BadLength)?);
                        }
                    }
                    self.state = State::Headers {
                        total,
                        content_type,
                        length,
                    };
                }
                State::Sized {
                    content_type,
                    length,
                } => {
                    if self.pending().len() < length {
                        self.state = State::Sized {
                            content_type,
                            length,
                        };
                        return Ok(None);
                    }
                    let body = self.pending()[..length].trim_ascii_end().to_vec();
                    self.start += length;
                    self.state = State::Seek { skipped: 0 };
                    return Ok(Some(Part { content_type, body }));
                }
                State::Open {
                    content_type,
                    scanned,
                } => return self.open_part(content_type, scanned),
            }
        }
    }

    /// A part without a length: complete once `\n` + delimiter and the rest of that line
    /// have arrived.
    fn open_part(
        &mut self,
        content_type: Option<String>,
        scanned: usize,
    ) -> Result<Option<Part>, MultipartError> {
        let mut marker = b"\n".to_vec();
        marker.extend_from_slice(self.delimiter.as_deref().unwrap_or_default());
        let pending = self.pending();
        let found = pending
            .get(scanned..)
            .and_then(|rest| memmem::find(rest, &marker))
            .map(|p| scanned + p);
        let Some(at) = found else {
            // The marker may begin in the last marker.len() - 1 bytes.
            let scanned = pending.len().saturating_sub(marker.len() - 1);
            if scanned > self.max_part {
                return Err(MultipartError::PartTooLarge {
                    size: pending.len() as u64,
                    limit: self.max_part,
                });
            }
            self.state = State::Open {
                content_type,
                scanned,
            };
            return Ok(None);
        };
        if at > self.max_part {
            return Err(MultipartError::PartTooLarge {
                size: at as u64,
                limit: self.max_part,
            });
        }
        // The rest of the delimiter line: `--` marks the closing delimiter.
        let after = at + marker.len();
        let eol = memchr::memchr(b'\n', &pending[after..]);
        if eol.unwrap_or(pending.len() - after) >= MAX_LINE {
            return Err(MultipartError::LineTooLong);
        }
        let Some(eol) = eol else {
            self.state = State::Open {
                content_type,
                scanned: at,
            };
            return Ok(None);
        };
        let end = pending[after..after + eol].trim_ascii().starts_with(b"--");
        let body = pending[..at].trim_ascii_end().to_vec();
        self.start += after + eol + 1;
        self.state = if end {
            State::Done
        } else {
            State::Headers {
                total: 0,
                content_type: None,
                length: None,
            }
        };
        Ok(Some(Part { content_type, body }))
    }

    /// Whether a line (between parts) is a delimiter; the first one seen fixes the
    /// delimiter's exact spelling.
    fn classify(&mut self, line: std::ops::Range<usize>) -> Line {
        let t = self.buf[line].trim_ascii();
        if let Some(d) = &self.delimiter {
            return if t == d.as_slice() {
                Line::Delimiter
            } else if t.len() == d.len() + 2 && t.starts_with(d) && t.ends_with(b"--") {
                Line::End
            } else {
                Line::Other
            };
        }
        let stripped = trim_dashes(t);
        let is_delimiter = match &self.boundary {
            Some(b) => stripped == b.as_slice() && t.starts_with(b"--"),
            None => t.starts_with(b"--") && !stripped.is_empty(),
        };
        if is_delimiter {
            self.delimiter = Some(t.to_vec());
            Line::Delimiter
        } else {
            Line::Other
        }
    }
}

fn trim_dashes(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'-').count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(body: &[u8], content_type: &str, with_length: bool) -> Vec<u8> {
        let mut p = format!("--frame\r\nContent-Type: {content_type}\r\n").into_bytes();
        if with_length {
            p.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
        }
        p.extend(b"\r\n");
        p.extend(body);
        p.extend(b"\r\n");
        p
    }

    /// Every part `body` yields when pushed in chunks of `sizes` (cycled), and the error that
    /// stopped it, if any.
    fn split(
        boundary: Option<&str>,
        max: usize,
        body: &[u8],
        sizes: &[usize],
    ) -> (Vec<Part>, Option<MultipartError>, bool) {
        let mut s = Splitter::new(boundary, max);
        let mut parts = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            s.push(&rest[..n]);
            rest = &rest[n..];
            loop {
                match s.next_part() {
                    Ok(Some(p)) => parts.push(p),
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(s.next_part(), Err(e.clone()), "errors are sticky");
                        return (parts, Some(e), s.in_part());
                    }
                }
            }
        }
        (parts, None, s.in_part())
    }

    fn jpeg_like(n: usize, seed: u8) -> Vec<u8> {
        let mut b: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        b[0] = 0xFF;
        b[1] = 0xD8;
        b[n - 2] = 0xFF;
        b[n - 1] = 0xD9;
        b
    }

    #[test]
    fn content_types_and_boundaries() {
        assert_eq!(
            parse_content_type("multipart/x-mixed-replace; boundary=\"--frame\""),
            ("multipart/x-mixed-replace".into(), Some("--frame".into()))
        );
        assert_eq!(
            parse_content_type("Image/JPEG"),
            ("image/jpeg".into(), None)
        );
        assert_eq!(parse_content_type("multipart/mixed; boundary=").1, None);
    }

    /// With and without lengths, with every declared spelling of the boundary, split at
    /// every chunk size from 1 to 40 bytes and whole: the same parts; a closing delimiter
    /// finishes the body.
    #[test]
    fn the_same_parts_whatever_the_chunks() {
        let (a, b) = (jpeg_like(300, 1), jpeg_like(177, 2));
        for with_length in [true, false] {
            let mut body = b"preamble\r\n".to_vec();
            body.extend(part(&a, "image/jpeg", with_length));
            body.extend(part(&b, "Image/JPEG; q=1", with_length));
            body.extend(part(&a, "image/png", with_length));
            body.extend(b"--frame--\r\n");
            let want = vec![
                Part {
                    content_type: Some("image/jpeg".into()),
                    body: a.clone(),
                },
                Part {
                    content_type: Some("image/jpeg".into()),
                    body: b.clone(),
                },
                Part {
                    content_type: Some("image/png".into()),
                    body: a.clone(),
                },
            ];
            for boundary in [Some("frame"), Some("--frame"), None] {
                for size in (1..=40).chain([body.len()]) {
                    let mut s = Splitter::new(boundary, 1000);
                    let mut got = Vec::new();
                    for chunk in body.chunks(size) {
                        s.push(chunk);
                        while let Some(p) = s.next_part().unwrap() {
                            got.push(p);
                        }
                    }
                    assert_eq!(got, want, "length {with_length} {boundary:?} chunks {size}");
                    assert!(s.is_finished() && !s.in_part());
                }
            }
        }
    }

    #[test]
    fn a_cut_body_is_in_a_part_or_between_parts() {
        let a = jpeg_like(100, 3);
        for with_length in [true, false] {
            let p = part(&a, "image/jpeg", with_length);
            let (parts, e, in_part) = split(Some("frame"), 1000, &p[..p.len() / 2], &[7]);
            assert!(parts.is_empty() && e.is_none() && in_part);
        }
        let p = part(&a, "image/jpeg", true);
        let (parts, e, in_part) = split(Some("frame"), 1000, &p, &[7]);
        assert_eq!((parts.len(), e, in_part), (1, None, false));
    }

    #[test]
    fn every_bound_is_an_error() {
        let big = jpeg_like(2000, 4);
        let p = part(&big, "image/jpeg", true);
        let (_, e, _) = split(Some("frame"), 1000, &p[..100], &[13]);
        assert_eq!(
            e,
            Some(MultipartError::PartTooLarge {
                size: 2000,
                limit: 1000
            }),
            "a large Content-Length is refused before its body"
        );
        let p = part(&big, "image/jpeg", false);
        let (_, e, _) = split(Some("frame"), 1000, &p, &[64]);
        assert!(
            matches!(e, Some(MultipartError::PartTooLarge { limit: 1000, size }) if size <= 1064),
            "{e:?}"
        );
        let mut p = b"--frame\r\nContent-Length: x\r\n\r\n".to_vec();
        assert_eq!(
            split(None, 1000, &p, &[5]).1,
            Some(MultipartError::BadLength)
        );
        p = b"--frame\r\nX: ".to_vec();
        p.extend(vec![b'a'; MAX_LINE + 10]);
        assert_eq!(
            split(None, 1000, &p, &[999]).1,
            Some(MultipartError::LineTooLong)
        );
        p = b"--frame\r\n".to_vec();
        while p.len() <= MAX_HEADERS + 100 {
            p.extend(format!("X-Pad: {}\r\n", "b".repeat(90)).bytes());
        }
        assert_eq!(
            split(None, 1000, &p, &[999]).1,
            Some(MultipartError::HeadersTooLong)
        );
        let junk = "no delimiter here\r\n".repeat(MAX_HEADERS / 10);
        assert_eq!(
            split(Some("frame"), 1000, junk.as_bytes(), &[999]).1,
            Some(MultipartError::NoDelimiter)
        );
    }

    /// Arbitrary bytes (random, and mutations of a real body) split at random places:
    /// never a panic, and the same outcome as pushing everything at once.
    #[test]
    fn garbage_never_panics() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut valid = part(&jpeg_like(200, 5), "image/jpeg", false);
        valid.extend(part(&jpeg_like(90, 6), "image/jpeg", true));
        for round in 0..400 {
            let input: Vec<u8> = if round % 2 == 0 {
                (0..next() % 600)
                    .map(|_| b"-\r\nframe:0123"[next() as usize % 13])
                    .collect()
            } else {
                let mut v = valid.clone();
                for _ in 0..1 + next() % 8 {
                    let at = next() as usize % v.len();
                    v[at] = next() as u8;
                }
                v
            };
            let sizes: Vec<usize> = (0..5).map(|_| 1 + next() as usize % 50).collect();
            let boundary = [Some("frame"), None][round % 2];
            let same_size = |mut r: (Vec<Part>, Option<MultipartError>, bool)| {
                if let Some(MultipartError::PartTooLarge { size, .. }) = &mut r.1 {
                    *size = 0;
                }
                r
            };
            let chunked = same_size(split(boundary, 150, &input, &sizes));
            let whole = same_size(split(boundary, 150, &input, &[usize::MAX]));
            assert_eq!(chunked, whole, "round {round}");
        }
    }
}
