//! A live source without a webcam: an MJPEG-over-HTTP stream, what IP cameras, phone camera
//! apps, `mjpg-streamer`, `motion` and ESP32-CAM boards serve: one HTTP response of type
//! `multipart/x-mixed-replace; boundary=...` whose parts are JPEG images, each with an
//! optional `Content-Length`.
//!
//! [`MjpegStream::open`] parses the URL, then reads the stream on a background thread: it
//! decodes every complete part with [`super::decode::decode_jpeg`] (so a bad frame is
//! counted and dropped, never shown), keeps only the newest image for
//! [`MjpegStream::latest`], and publishes a [`StreamState`]: `Connecting`, `Streaming` once
//! a frame has decoded, `Reconnecting(error)` after the connection failed or dropped (the
//! error stays until frames flow again). It reconnects with exponential backoff (reset after
//! a connection that delivered frames) and stops when the `MjpegStream` is dropped: the
//! socket is shut down and the thread exits within one poll interval (100 ms), or once a
//! TCP connect in progress gives up ([`StreamOptions::connect_timeout`]).
//!
//! The client is a small HTTP/1.1 one on `std::net::TcpStream` rather than `ureq`: ureq 3
//! streams bodies, but its only body timeout is a total budget, so a camera that stalls
//! would block the reader with no way to notice or to stop the thread on drop. Here reads
//! poll every 100 ms (stop flag, stall timeout). Supported: `http://` only (cameras on a
//! local network; `https` is refused with a clear error), `user:password@` (Basic auth, no
//! percent-decoding), chunked transfer encoding (ESP32-CAM sends it), parts with or without
//! `Content-Length`, boundaries declared with or without the leading `--` (both occur) or
//! not declared at all (taken from the first `--` line). Not supported: redirects, TLS,
//! Digest auth, compressed bodies.
//!
//! Everything is bounded: response and part headers (64 KiB, 8 KiB a line), a part
//! ([`StreamOptions::max_part_bytes`], 16 MiB by default: a larger `Content-Length` is an
//! error before any allocation, and a part without one stops being buffered at the limit).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use image::RgbImage;

use super::decode::{decode_jpeg, FrameCounter, FrameCounts};

/// The largest JPEG part accepted by default (16 MiB).
pub const DEFAULT_MAX_PART_BYTES: usize = 16 << 20;
/// How often a blocked read wakes to check the stop flag and the stall timeout.
const POLL: Duration = Duration::from_millis(100);
/// Bounds on header lines and header blocks.
const MAX_LINE: usize = 8 << 10;
const MAX_HEADERS: usize = 64 << 10;

/// Tuning of a stream; [`StreamOptions::default`] suits a camera on a local network.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// A part larger than this is an error (the connection is dropped and reopened).
    pub max_part_bytes: usize,
    /// Time allowed to open the TCP connection.
    pub connect_timeout: Duration,
    /// A connection that sends nothing for this long is dropped and reopened.
    pub idle_timeout: Duration,
    /// The first wait before reconnecting; doubled after each failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            max_part_bytes: DEFAULT_MAX_PART_BYTES,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What went wrong with a stream. Frame decoding errors are not here: a part that does not
/// decode is dropped and counted ([`MjpegStream::counts`]) and the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("the server answered HTTP {status} {reason}{}", http_hint(*status))]
    Http { status: u16, reason: String },
    #[error("the server does not speak HTTP (it sent {0:?})")]
    NotHttp(String),
    #[error("the URL serves one image ({0}), not a stream; use the camera's MJPEG stream URL (often /video or /mjpg/video.mjpg)")]
    SingleImage(String),
    #[error("the URL serves {content_type}, not an MJPEG stream (multipart/x-mixed-replace)")]
    NotMultipart { content_type: String },
    #[error("a part of the stream is {content_type}, not image/jpeg")]
    PartNotJpeg { content_type: String },
    #[error("a part of {size} bytes is larger than the {limit}-byte limit")]
    PartTooLarge { size: u64, limit: usize },
    #[error("the stream is malformed: {0}")]
    Malformed(String),
    #[error("the server closed the connection {0}")]
    Closed(String),
    #[error("the server sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("the connection failed: {0}")]
    Io(String),
}

fn http_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (put the user name and password in the URL: http://user:password@host/...)",
        404 => " (check the path: cameras serve the stream at e.g. /video or /mjpg/video.mjpg)",
        _ => "",
    }
}

/// Where a stream is, as its caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Opening the first connection; no frame yet.
    Connecting,
    /// Frames are arriving.
    Streaming,
    /// The last connection failed with this error; retrying with backoff.
    Reconnecting(StreamError),
}

/// A snapshot of a stream for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub state: StreamState,
    /// Connections opened so far (1 while the first one runs).
    pub connections: u64,
    /// Parts decoded and dropped.
    pub frames: FrameCounts,
    /// The most recent connection error, kept after the stream recovers.
    pub last_error: Option<StreamError>,
}

struct Shared {
    state: StreamState,
    latest: Option<RgbImage>,
    connections: u64,
    last_error: Option<StreamError>,
}

/// An MJPEG-over-HTTP stream read on a background thread; dropping it stops the thread.
pub struct MjpegStream {
    label: String,
    shared: Arc<Mutex<Shared>>,
    counter: Arc<FrameCounter>,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MjpegStream {
    /// Starts reading `url` (`http://[user:password@]host[:port]/path`, the scheme may be
    /// left out) with the default options. Only a malformed URL or a failure to start the
    /// thread is an error here; connection problems show in [`MjpegStream::state`].
    pub fn open(url: &str) -> Result<MjpegStream, StreamError> {
        MjpegStream::open_with(url, StreamOptions::default())
    }

    /// [`MjpegStream::open`] with explicit options.
    pub fn open_with(url: &str, options: StreamOptions) -> Result<MjpegStream, StreamError> {
        let url = Url::parse(url)?;
        let shared = Arc::new(Mutex::new(Shared {
            state: StreamState::Connecting,
            latest: None,
            connections: 0,
            last_error: None,
        }));
        let counter = Arc::new(FrameCounter::new());
        let stop = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let label = url.display.clone();
        let reader = Reader {
            url,
            options,
            shared: shared.clone(),
            counter: counter.clone(),
            stop: stop.clone(),
            socket: socket.clone(),
        };
        std::thread::Builder::new()
            .name("blindface-mjpeg".into())
            .spawn(move || reader.run())
            .map_err(|e| StreamError::Io(format!("cannot start the stream thread: {e}")))?;
        Ok(MjpegStream {
            label,
            shared,
            counter,
            stop,
            socket,
        })
    }

    /// The URL without its password, for labels.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where the stream is now.
    pub fn state(&self) -> StreamState {
        lock(&self.shared).state.clone()
    }

    /// The newest decoded frame since the last call (`None` if none arrived since).
    pub fn latest(&self) -> Option<RgbImage> {
        lock(&self.shared).latest.take()
    }

    /// Parts decoded and dropped so far.
    pub fn counts(&self) -> FrameCounts {
        self.counter.counts()
    }

    /// State, connection count, frame counts and the last error, in one snapshot.
    pub fn status(&self) -> StreamStatus {
        let s = lock(&self.shared);
        StreamStatus {
            state: s.state.clone(),
            connections: s.connections,
            frames: self.counter.counts(),
            last_error: s.last_error.clone(),
        }
    }
}

impl Drop for MjpegStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.socket).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A parsed `http://` URL.
#[derive(Debug, Clone)]
struct Url {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
    /// `Basic ...` credentials, if the URL has `user:password@`.
    auth: Option<String>,
    /// The URL without the password.
    display: String,
}

impl Url {
    fn parse(s: &str) -> Result<Url, StreamError> {
        let bad = |why: &str| StreamError::BadUrl(format!("{s:?} is not a stream URL: {why}"));
        let s = s.trim();
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let rest = match s.find("://") {
            Some(i) if s[..i].eq_ignore_ascii_case("http") => &s[i + 3..],
            Some(i) => {
                return Err(bad(&format!(
                    "only http:// is supported, not {}://",
                    &s[..i]
                )))
            }
            None => s,
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = match target.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{target}"),
            Some(_) => target.to_string(),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address without its closing ]"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("stray characters after the IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        let host = if hostport.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let auth = userinfo.map(|u| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(u.as_bytes())
            )
        });
        let user = userinfo.map(|u| match u.split_once(':') {
            Some((name, _)) => format!("{name}:***@"),
            None => format!("{u}@"),
        });
        let display = format!(
            "http://{}{host}{}{target}",
            user.unwrap_or_default(),
            if port == 80 {
                String::new()
            } else {
                format!(":{port}")
            }
        );
        Ok(Url {
            host,
            port,
            target,
            auth,
            display,
        })
    }

    fn host_header(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A socket read that wakes every [`POLL`] to honour the stop flag and the stall timeout.
struct Wire {
    tcp: TcpStream,
    stop: Arc<AtomicBool>,
    idle: Duration,
}

/// The error message [`Wire`] uses for a stall, told apart from other timeouts.
const STALLED: &str = "blindface: stream stalled";
const STOPPED: &str = "blindface: stream stopped";

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::other(STOPPED));
            }
            match self.tcp.read(buf) {
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if start.elapsed() >= self.idle {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, STALLED));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
struct Chunked<R> {
    inner: R,
    left: u64,
    after_chunk: bool,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            if self.after_chunk {
                let crlf = read_line(&mut self.inner, MAX_LINE)?;
                if !crlf.trim_ascii().is_empty() {
                    return Err(malformed("a chunk is longer than its size"));
                }
            }
            let line = read_line(&mut self.inner, MAX_LINE)?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or_default().trim();
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| malformed("a chunk size is not hexadecimal"))?;
            self.after_chunk = true;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// An `InvalidData` error that becomes [`StreamError::Malformed`].
fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One line including its `\n`, at most `max` bytes; end of stream is `UnexpectedEof`.
fn read_line<R: BufRead + ?Sized>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.take(max as u64 + 1).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        if line.len() > max {
            return Err(malformed("a header line is too long"));
        }
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// A header block (name lower-cased, value trimmed) up to the empty line.
fn read_headers<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let line = read_line(r, MAX_LINE)?;
        total += line.len();
        if total > MAX_HEADERS {
            return Err(malformed("the headers are too long"));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() {
            return Ok(headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The media type of a `Content-Type` value, lower-cased, and its `boundary` parameter.
fn media_type(value: &str) -> (String, Option<String>) {
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

fn is_jpeg_type(media: &str) -> bool {
    matches!(media, "image/jpeg" | "image/jpg" | "image/pjpeg")
}

/// The multipart body: finds delimiters, reads parts, with every read bounded.
struct Parts {
    r: Box<dyn BufRead + Send>,
    /// The boundary as declared, leading dashes removed (None: take it from the body).
    boundary: Option<Vec<u8>>,
    /// The delimiter line exactly as the server writes it, once seen.
    delimiter: Option<Vec<u8>>,
    /// The last part was read up to and including the next delimiter line.
    at_delimiter: bool,
    max_part: usize,
}

enum Line {
    Delimiter,
    End,
    Other,
}

impl Parts {
    fn classify(&mut self, line: &[u8]) -> Line {
        let t = line.trim_ascii();
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
        let is_delim = match &self.boundary {
            Some(b) => stripped == b.as_slice() && t.starts_with(b"--"),
            None => t.starts_with(b"--") && !stripped.is_empty(),
        };
        if is_delim {
            self.delimiter = Some(t.to_vec());
            Line::Delimiter
        } else {
            Line::Other
        }
    }

    /// Skips to the next delimiter line (bounded); `Ok(false)` at the closing delimiter.
    fn next_delimiter(&mut self) -> io::Result<bool> {
        let mut skipped = 0;
        loop {
            let line = read_line(&mut self.r, MAX_LINE)?;
            match self.classify(&line) {
                Line::Delimiter => return Ok(true),
                Line::End => return Ok(false),
                Line::Other => {
                    skipped += line.len();
                    if skipped > MAX_HEADERS {
                        return Err(malformed("no part delimiter found"));
                    }
                }
            }
        }
    }

    /// The body of the next part (trailing whitespace removed; a JPEG ends in `FF D9`).
    /// Assumes the delimiter line before it has been read.
    fn next_part(&mut self) -> Result<Vec<u8>, PartError> {
        let headers = read_headers(&mut self.r).map_err(PartError::Io)?;
        if let Some(ct) = header(&headers, "content-type") {
            let (media, _) = media_type(ct);
            if !is_jpeg_type(&media) {
                return Err(PartError::Stream(StreamError::PartNotJpeg {
                    content_type: media,
                }));
            }
        }
        let body = match header(&headers, "content-length") {
            Some(len) => {
                let len: u64 = len
                    .parse()
                    .map_err(|_| PartError::Io(malformed("a part length is not a number")))?;
                if len > self.max_part as u64 {
                    return Err(PartError::Stream(StreamError::PartTooLarge {
                        size: len,
                        limit: self.max_part,
                    }));
                }
                let mut body = vec![0u8; len as usize];
                self.r.read_exact(&mut body).map_err(PartError::Io)?;
                body
            }
            None => self.read_to_delimiter()?,
        };
        Ok(body.trim_ascii_end().to_vec())
    }

    /// A part without a length: its bytes up to `\n` + delimiter (bounded by `max_part`).
    /// Leaves the reader after the delimiter line, so `next_part` can follow.
    fn read_to_delimiter(&mut self) -> Result<Vec<u8>, PartError> {
        let delim = self.delimiter.clone().unwrap_or_default();
        let mut marker = b"\n".to_vec();
        marker.extend_from_slice(&delim);
        let mut acc: Vec<u8> = Vec::new();
        loop {
            let avail = self.r.fill_buf().map_err(PartError::Io)?;
            if avail.is_empty() {
                return Err(PartError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let old = acc.len();
            let from = old.saturating_sub(marker.len() - 1);
            acc.extend_from_slice(avail);
            let found = acc[from..]
                .windows(marker.len())
                .position(|w| w == marker.as_slice());
            match found {
                Some(p) => {
                    let end = from + p + marker.len();
                    self.r.consume(end - old);
                    acc.truncate(from + p);
                    // The rest of the delimiter line: "--" marks the end of the body.
                    let rest = read_line(&mut self.r, MAX_LINE).map_err(PartError::Io)?;
                    if rest.trim_ascii().starts_with(b"--") {
                        return Err(PartError::End(acc.trim_ascii_end().to_vec()));
                    }
                    self.at_delimiter = true;
                    return Ok(acc);
                }
                None => {
                    let n = avail.len();
                    self.r.consume(n);
                    if acc.len() > self.max_part {
                        return Err(PartError::Stream(StreamError::PartTooLarge {
                            size: acc.len() as u64,
                            limit: self.max_part,
                        }));
                    }
                }
            }
        }
    }
}

fn trim_dashes(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'-').count();
    &b[n..]
}

enum PartError {
    Io(io::Error),
    Stream(StreamError),
    /// The last part, followed by the closing delimiter.
    End(Vec<u8>),
}

/// The background half of a stream.
struct Reader {
    url: Url,
    options: StreamOptions,
    shared: Arc<Mutex<Shared>>,
    counter: Arc<FrameCounter>,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
}

impl Reader {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(self) {
        // At least 10 ms between attempts, whatever the options say.
        let initial = self.options.backoff_initial.max(Duration::from_millis(10));
        let mut backoff = initial;
        while !self.stopped() {
            lock(&self.shared).connections += 1;
            let mut delivered = false;
            let err = self.connection(&mut delivered);
            *lock(&self.socket) = None;
            if self.stopped() {
                break;
            }
            {
                let mut s = lock(&self.shared);
                s.state = StreamState::Reconnecting(err.clone());
                s.last_error = Some(err);
            }
            if delivered {
                backoff = initial;
            }
            let until = Instant::now() + backoff;
            while !self.stopped() && Instant::now() < until {
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            backoff = (backoff * 2).min(self.options.backoff_max);
        }
    }

    /// Connects and reads until the connection fails; returns why.
    fn connection(&self, delivered: &mut bool) -> StreamError {
        let tcp = match self.connect() {
            Ok(t) => t,
            Err(e) => return e,
        };
        let wire = Wire {
            tcp,
            stop: self.stop.clone(),
            idle: self.options.idle_timeout,
        };
        let mut head = BufReader::with_capacity(64 << 10, wire);
        let io_err = |e: io::Error, when: &str| self.io_error(e, when);
        let mut status = Vec::new();
        if let Err(e) = (&mut head)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut status)
        {
            return io_err(e, "before answering");
        }
        if status.is_empty() {
            return StreamError::Closed("before answering".into());
        }
        let status_text = String::from_utf8_lossy(&status).trim().to_string();
        let mut words = status_text.splitn(3, ' ');
        let (version, code, reason) = (words.next(), words.next(), words.next());
        let code = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
            (Some(v), Some(c)) if v.starts_with("HTTP/1.") => c,
            _ => return StreamError::NotHttp(preview(&status)),
        };
        let headers = match read_headers(&mut head) {
            Ok(h) => h,
            Err(e) => return io_err(e, "in the response headers"),
        };
        if code != 200 {
            return StreamError::Http {
                status: code,
                reason: reason.unwrap_or_default().to_string(),
            };
        }
        let content_type = header(&headers, "content-type").unwrap_or("");
        let (media, boundary) = media_type(content_type);
        if !media.starts_with("multipart/") {
            if media.starts_with("image/") {
                return StreamError::SingleImage(media);
            }
            return StreamError::NotMultipart {
                content_type: if media.is_empty() {
                    "no content type".into()
                } else {
                    media
                },
            };
        }
        let chunked = header(&headers, "transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        let r: Box<dyn BufRead + Send> = if chunked {
            Box::new(BufReader::with_capacity(
                64 << 10,
                Chunked {
                    inner: head,
                    left: 0,
                    after_chunk: false,
                    done: false,
                },
            ))
        } else {
            Box::new(head)
        };
        let mut parts = Parts {
            r,
            boundary: boundary.map(|b| trim_dashes(b.as_bytes()).to_vec()),
            delimiter: None,
            at_delimiter: false,
            max_part: self.options.max_part_bytes,
        };
        loop {
            // A part with a Content-Length leaves the reader before the next delimiter, a
            // part read up to its delimiter leaves it after.
            if !std::mem::take(&mut parts.at_delimiter) {
                match parts.next_delimiter() {
                    Ok(true) => {}
                    Ok(false) => return StreamError::Closed("at the end of the stream".into()),
                    Err(e) => return io_err(e, "between frames"),
                }
            }
            let (body, end) = match parts.next_part() {
                Ok(b) => (b, false),
                Err(PartError::End(b)) => (b, true),
                Err(PartError::Stream(e)) => return e,
                Err(PartError::Io(e)) => return io_err(e, "in the middle of a frame"),
            };
            self.publish(&body, delivered);
            if end {
                return StreamError::Closed("at the end of the stream".into());
            }
        }
    }

    fn publish(&self, jpeg: &[u8], delivered: &mut bool) {
        let r = decode_jpeg(jpeg);
        self.counter.record(&r);
        if let Ok(img) = r {
            *delivered = true;
            let mut s = lock(&self.shared);
            s.latest = Some(img);
            s.state = StreamState::Streaming;
        }
    }

    fn io_error(&self, e: io::Error, when: &str) -> StreamError {
        let msg = e.to_string();
        if msg == STALLED {
            return StreamError::Stalled(self.options.idle_timeout);
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => StreamError::Closed(when.to_string()),
            io::ErrorKind::InvalidData => StreamError::Malformed(msg),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                StreamError::Closed(format!("{when} ({msg})"))
            }
            _ => StreamError::Io(msg),
        }
    }

    /// Sets the socket's timeouts and sends the GET request.
    fn send_request(&self, tcp: &TcpStream) -> io::Result<()> {
        tcp.set_read_timeout(Some(POLL))?;
        tcp.set_write_timeout(Some(self.options.connect_timeout))?;
        tcp.set_nodelay(true)?;
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: blindface/{}\r\nAccept: multipart/x-mixed-replace, */*;q=0.1\r\nConnection: close\r\n",
            self.url.target,
            self.url.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(a) = &self.url.auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let mut w = tcp;
        w.write_all(req.as_bytes())
    }

    fn connect(&self) -> Result<TcpStream, StreamError> {
        let addr = format!("{}:{}", self.url.host, self.url.port);
        let fail = |message: String| StreamError::Connect {
            addr: addr.clone(),
            message,
        };
        let host = self.url.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = (host, self.url.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("the name does not resolve ({e})")))?
            .collect();
        let mut last = fail("the name has no address".into());
        for a in addrs {
            if self.stopped() {
                return Err(StreamError::Io(STOPPED.into()));
            }
            match TcpStream::connect_timeout(&a, self.options.connect_timeout) {
                Ok(tcp) => {
                    let setup = self.send_request(&tcp);
                    if let Err(e) = setup {
                        last = fail(e.to_string());
                        continue;
                    }
                    // Registered so that drop can shut it down; re-check the flag after,
                    // in case drop ran in between.
                    if let Ok(clone) = tcp.try_clone() {
                        *lock(&self.socket) = Some(clone);
                    }
                    if self.stopped() {
                        return Err(StreamError::Io(STOPPED.into()));
                    }
                    return Ok(tcp);
                }
                Err(e) => last = fail(e.to_string()),
            }
        }
        Err(last)
    }
}

/// The first bytes of a reply, printable, for an error message.
fn preview(bytes: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_port_path_auth_and_ipv6() {
        let u = Url::parse("http://admin:secret@192.168.1.5:8080/video?fps=15").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("192.168.1.5", 8080));
        assert_eq!(u.target, "/video?fps=15");
        assert_eq!(u.display, "http://admin:***@192.168.1.5:8080/video?fps=15");
        assert_eq!(u.auth.as_deref(), Some("Basic YWRtaW46c2VjcmV0"));
        let u = Url::parse("cam.local").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("cam.local", 80, "/")
        );
        let u = Url::parse("HTTP://[::1]:81?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("[::1]", 81, "/?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:81");
        for bad in [
            "https://cam/video",
            "http://:80/",
            "http://cam:0/",
            "http://cam:x/",
            "http://cam/a b",
            "rtsp://cam",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(StreamError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_types_and_boundaries() {
        assert_eq!(
            media_type("multipart/x-mixed-replace; boundary=\"--frame\""),
            ("multipart/x-mixed-replace".into(), Some("--frame".into()))
        );
        assert_eq!(media_type("Image/JPEG"), ("image/jpeg".into(), None));
    }
}
