//! A live source without a webcam: an MJPEG-over-HTTP stream, what IP cameras, phone camera
//! apps, `mjpg-streamer`, `motion` and ESP32-CAM boards serve: one HTTP response of type
//! `multipart/x-mixed-replace; boundary=...` whose parts are JPEG images.
//!
//! [`MjpegStream::open`] checks the URL, then reads the stream on a background thread: it
//! splits the body into parts ([`super::multipart::Splitter`]), decodes every complete part
//! with [`super::decode::decode_jpeg`] (so a bad frame is counted and dropped, never shown),
//! keeps only the newest image for [`MjpegStream::latest`], and publishes a [`StreamState`]:
//! `Connecting`, `Streaming` once a frame has decoded, `Reconnecting(error)` after the
//! connection failed or dropped (the error stays until frames flow again). It reconnects with
//! exponential backoff (reset after a connection that delivered frames) and stops when the
//! `MjpegStream` is dropped: the connection is shut down ([`ureq::Agent::shutdown`]) and a
//! backoff wait woken, so the thread exits at once, or once a TCP connect in progress gives
//! up ([`StreamOptions::connect_timeout`]).
//!
//! HTTP is ureq's: chunked bodies (ESP32-CAM sends them), redirects, IPv6, and a per-read
//! timeout that notices a camera that stalls ([`StreamOptions::idle_timeout`]). `http://`
//! only (cameras on a local network; `https` is refused with a clear error);
//! `user:password@` in the URL is sent as Basic auth (no percent-decoding). `Host` and
//! `Authorization` are sent with their usual capitals: some camera servers (mjpg-streamer)
//! look for `Authorization: Basic` case-sensitively. Not supported: Digest auth, compressed
//! bodies. The response head is bounded by ureq (64 KiB), the parts by the splitter
//! ([`StreamOptions::max_part_bytes`], 16 MiB by default).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use image::RgbImage;
use parking_lot::Mutex;
use ureq::http::{header, StatusCode, Uri};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, NextTimeout, TcpConnector, Transport,
};
use ureq::{Agent, ResponseExt as _, Timeout};

use super::decode::{decode_jpeg, FrameCounter, FrameCounts};
use super::multipart::{parse_content_type, MultipartError, Splitter};

/// The largest JPEG part accepted by default (16 MiB).
pub const DEFAULT_MAX_PART_BYTES: usize = 16 << 20;
/// How much of a reply that is not HTTP is shown in [`StreamError::NotHttp`].
const PREVIEW: usize = 40;

/// Tuning of a stream; [`StreamOptions::default`] suits a camera on a local network.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// A part larger than this is an error (the connection is dropped and reopened).
    pub max_part_bytes: usize,
    /// Time allowed to open the TCP connection (and for each write of the request).
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

impl From<MultipartError> for StreamError {
    fn from(e: MultipartError) -> Self {
        match e {
            MultipartError::PartTooLarge { size, limit } => {
                StreamError::PartTooLarge { size, limit }
            }
            e => StreamError::Malformed(e.to_string()),
        }
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
    /// The reader's agent: shutting it down interrupts a read in progress.
    agent: Agent,
    /// The reader's thread, woken from its backoff wait on drop.
    thread: std::thread::Thread,
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
        let first_bytes = FirstBytes::default();
        let agent = agent(&options, first_bytes.clone());
        let label = url.display.clone();
        let reader = Reader {
            url,
            options,
            agent: agent.clone(),
            first_bytes,
            shared: shared.clone(),
            counter: counter.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("blindface-mjpeg".into())
            .spawn(move || reader.run())
            .map_err(|e| StreamError::Io(format!("cannot start the stream thread: {e}")))?
            .thread()
            .clone();
        Ok(MjpegStream {
            label,
            shared,
            counter,
            stop,
            agent,
            thread,
        })
    }

    /// The URL without its password, for labels.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where the stream is now.
    pub fn state(&self) -> StreamState {
        self.shared.lock().state.clone()
    }

    /// The newest decoded frame since the last call (`None` if none arrived since).
    pub fn latest(&self) -> Option<RgbImage> {
        self.shared.lock().latest.take()
    }

    /// Parts decoded and dropped so far.
    pub fn counts(&self) -> FrameCounts {
        self.counter.counts()
    }

    /// State, connection count, frame counts and the last error, in one snapshot.
    pub fn status(&self) -> StreamStatus {
        let s = self.shared.lock();
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
        self.agent.clone().shutdown();
        self.thread.unpark();
    }
}

/// The agent a stream reads with: no pooling (one connection per attempt), a per-read
/// timeout for stalls, status codes as responses, and the connector that keeps the first
/// bytes of each reply.
fn agent(options: &StreamOptions, first_bytes: FirstBytes) -> Agent {
    let config = Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_per_write(Some(options.connect_timeout))
        .timeout_per_read(Some(options.idle_timeout))
        .http_status_as_error(false)
        .max_redirects_will_error(false)
        .max_idle_connections(0)
        .user_agent(concat!("blindface/", env!("CARGO_PKG_VERSION")))
        .accept("multipart/x-mixed-replace, */*;q=0.1")
        .build();
    let connector = ().chain(TcpConnector::default()).chain(first_bytes);
    Agent::with_parts(config, connector, DefaultResolver::default())
}

/// A checked `http://` URL.
#[derive(Debug, Clone)]
struct Url {
    uri: Uri,
    /// The `Host` header: host, and port unless 80.
    host: String,
    /// Host and port, for connection errors.
    addr: String,
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
        let uri: Uri = format!("http://{rest}")
            .parse()
            .map_err(|e| bad(&format!("{e}")))?;
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        let (userinfo, hostport) = match authority.as_str().rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority.as_str()),
        };
        let bare = authority.host();
        let port = match hostport
            .strip_prefix(bare)
            .and_then(|r| r.strip_prefix(':'))
        {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        let host = if port == 80 {
            bare.to_string()
        } else {
            format!("{bare}:{port}")
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
        let display = format!("http://{}{host}{}", user.unwrap_or_default(), target(&uri));
        Ok(Url {
            addr: format!("{bare}:{port}"),
            uri,
            host,
            auth,
            display,
        })
    }
}

/// Path and query, starting with `/`.
fn target(uri: &Uri) -> String {
    match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".into(),
        Some(p) if p.starts_with('?') => format!("/{p}"),
        Some(p) => p.to_string(),
    }
}

/// The first bytes the server sent on the current connection, kept by a connector that
/// wraps each transport, to show in [`StreamError::NotHttp`] (ureq's parse error does not
/// carry them).
#[derive(Debug, Clone, Default)]
struct FirstBytes(Arc<Mutex<Vec<u8>>>);

impl<In: Transport> Connector<In> for FirstBytes {
    type Out = Recorded<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| Recorded {
            inner,
            first: self.clone(),
            done: false,
        }))
    }
}

/// A transport that copies the start of its input into [`FirstBytes`].
#[derive(Debug)]
struct Recorded<T> {
    inner: T,
    first: FirstBytes,
    /// A whole line or [`PREVIEW`] bytes were kept.
    done: bool,
}

impl<T: Transport> Transport for Recorded<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let more = self.inner.await_input(timeout)?;
        if !self.done {
            // Nothing is consumed before the response head parses: `input` is the start.
            let input = self.inner.buffers().input();
            let kept = &input[..input.len().min(PREVIEW)];
            self.done = kept.len() == PREVIEW || kept.contains(&b'\n');
            *self.first.0.lock() = kept.to_vec();
        }
        Ok(more)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }
}

/// The background half of a stream.
struct Reader {
    url: Url,
    options: StreamOptions,
    agent: Agent,
    first_bytes: FirstBytes,
    shared: Arc<Mutex<Shared>>,
    counter: Arc<FrameCounter>,
    stop: Arc<AtomicBool>,
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
            self.shared.lock().connections += 1;
            let mut delivered = false;
            let err = self.connection(&mut delivered);
            if self.stopped() {
                break;
            }
            {
                let mut s = self.shared.lock();
                s.state = StreamState::Reconnecting(err.clone());
                s.last_error = Some(err);
            }
            if delivered {
                backoff = initial;
            }
            // Woken early by drop (parking may also wake spuriously: hence the loop).
            let until = Instant::now() + backoff;
            while !self.stopped() && Instant::now() < until {
                std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
            }
            backoff = (backoff * 2).min(self.options.backoff_max);
        }
    }

    /// The response to the stream's GET. After a redirect to another host the `Host` set
    /// here would be stale (ureq keeps request headers), so that host is asked again.
    fn request(&self) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.first_bytes.0.lock().clear();
        let mut req = self
            .agent
            .get(&self.url.uri)
            .header_raw("Host", self.url.host.as_bytes());
        if let Some(auth) = &self.url.auth {
            req = req.header_raw("Authorization", auth.as_bytes());
        }
        let response = req.call()?;
        let (from, to) = (self.url.uri.authority(), response.get_uri().authority());
        if from.map(|a| (a.host(), a.port_u16())) == to.map(|a| (a.host(), a.port_u16())) {
            return Ok(response);
        }
        let uri = response.get_uri().clone();
        drop(response);
        self.agent.get(uri).call()
    }

    /// Connects and reads until the connection fails; returns why.
    fn connection(&self, delivered: &mut bool) -> StreamError {
        let response = match self.request() {
            Ok(r) => r,
            Err(e) => return self.request_error(e),
        };
        let status = response.status();
        if status != StatusCode::OK {
            return StreamError::Http {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or_default().to_string(),
            };
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (media, boundary) = parse_content_type(content_type);
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
        let mut parts = Splitter::new(boundary.as_deref(), self.options.max_part_bytes);
        let mut body = response.into_body().into_reader();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match body.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return self.body_error(e, &parts),
            };
            if n == 0 {
                return StreamError::Closed(where_cut(&parts).into());
            }
            parts.push(&buf[..n]);
            loop {
                let part = match parts.next_part() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => return e.into(),
                };
                if let Some(t) = part.content_type.filter(|t| !is_jpeg_type(t)) {
                    return StreamError::PartNotJpeg { content_type: t };
                }
                self.publish(&part.body, delivered);
            }
            if parts.is_finished() {
                return StreamError::Closed("at the end of the stream".into());
            }
        }
    }

    fn publish(&self, jpeg: &[u8], delivered: &mut bool) {
        let r = decode_jpeg(jpeg);
        self.counter.record(&r);
        if let Ok(img) = r {
            *delivered = true;
            let mut s = self.shared.lock();
            s.latest = Some(img);
            s.state = StreamState::Streaming;
        }
    }

    /// Why the request got no response.
    fn request_error(&self, e: ureq::Error) -> StreamError {
        let first = self.first_bytes.0.lock().clone();
        if !first.is_empty() && !first.starts_with(b"HTTP/") {
            return StreamError::NotHttp(preview(&first));
        }
        let connect = |message: String| StreamError::Connect {
            addr: self.url.addr.clone(),
            message,
        };
        match e {
            ureq::Error::HostNotFound => connect("the name does not resolve".into()),
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
                connect("timed out".into())
            }
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                connect(e.to_string())
            }
            ureq::Error::Protocol(e) => StreamError::Malformed(e.to_string()),
            e => self.read_error(e, "before answering"),
        }
    }

    /// Why reading the body stopped.
    fn body_error(&self, e: io::Error, parts: &Splitter) -> StreamError {
        match ureq::Error::from(e) {
            ureq::Error::Protocol(e) => StreamError::Malformed(e.to_string()),
            e => self.read_error(e, where_cut(parts)),
        }
    }

    fn read_error(&self, e: ureq::Error, when: &str) -> StreamError {
        match e {
            ureq::Error::Timeout(Timeout::PerRead) => {
                StreamError::Stalled(self.options.idle_timeout)
            }
            ureq::Error::Io(e) => match e.kind() {
                io::ErrorKind::UnexpectedEof => StreamError::Closed(when.to_string()),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    StreamError::Closed(format!("{when} ({e})"))
                }
                _ => StreamError::Io(e.to_string()),
            },
            e => StreamError::Io(e.to_string()),
        }
    }
}

/// Where a body that stops now was cut.
fn where_cut(parts: &Splitter) -> &'static str {
    if parts.in_part() {
        "in the middle of a frame"
    } else {
        "between frames"
    }
}

fn is_jpeg_type(media: &str) -> bool {
    matches!(media, "image/jpeg" | "image/jpg" | "image/pjpeg")
}

/// The first bytes of a reply, printable, for an error message.
fn preview(bytes: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW)])
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
        assert_eq!(u.host, "192.168.1.5:8080");
        assert_eq!(target(&u.uri), "/video?fps=15");
        assert_eq!(u.display, "http://admin:***@192.168.1.5:8080/video?fps=15");
        assert_eq!(u.auth.as_deref(), Some("Basic YWRtaW46c2VjcmV0"));
        let u = Url::parse("cam.local").unwrap();
        assert_eq!(
            (u.host.as_str(), target(&u.uri).as_str()),
            ("cam.local", "/")
        );
        assert_eq!(u.addr, "cam.local:80");
        let u = Url::parse("HTTP://[::1]:81?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), target(&u.uri).as_str()),
            ("[::1]:81", "/?x=1")
        );
        assert_eq!(u.display, "http://[::1]:81/?x=1");
        assert_eq!(
            Url::parse("http://cam:80/v#top").unwrap().display,
            "http://cam/v"
        );
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
}
