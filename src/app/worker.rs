//! All heavy work of the app on one background thread: loading images, detection,
//! embedding, encryption, matcher calls and decryption. The UI sends [`Command`]s and
//! drains [`Event`]s each frame; it never waits for the worker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;

use crate::he::{
    decrypt, encrypt_probe, encrypt_template, quantise, EncryptedProbe, EncryptedTemplate,
    MatchResult, Params, SecretKey, TemplateId,
};
use crate::labels::LabelKey;
use crate::matcher::{BuiltinMatcher, Credentials, Enrolled, Matcher, MatcherError, RemoteMatcher};
use crate::vision::{load_image, Face, FacePipeline, VisionError};

use super::state::{Connection, MatchMode, MatchOutcome, MatcherChoice};

/// Milliseconds and bytes of the last operations (None = not measured yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    pub detect_ms: Option<f64>,
    pub embed_ms: Option<f64>,
    pub encrypt_ms: Option<f64>,
    pub match_ms: Option<f64>,
    pub decrypt_ms: Option<f64>,
    pub bytes_sent: Option<usize>,
    pub bytes_received: Option<usize>,
}

impl Timings {
    /// Overwrites the fields `other` measured.
    pub fn merge(&mut self, other: &Timings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            detect_ms,
            embed_ms,
            encrypt_ms,
            match_ms,
            decrypt_ms,
            bytes_sent,
            bytes_received
        );
    }
}

/// What the UI asks of the worker.
pub enum Command {
    /// Load an image file and detect its faces.
    LoadFile { path: PathBuf },
    /// Detect the faces of a frame (camera).
    Analyse { label: String, image: Arc<RgbImage> },
    /// Embed `face`, encrypt it and enrol it under `name`.
    Enrol {
        image: Arc<RgbImage>,
        face: Face,
        name: String,
    },
    /// Embed `face`, encrypt it as a probe, verify or identify, decrypt.
    Match {
        image: Arc<RgbImage>,
        face: Face,
        mode: MatchMode,
        source: String,
    },
    /// Remove templates.
    Remove { ids: Vec<TemplateId> },
    /// List the gallery again.
    Refresh,
    /// Switch matcher.
    SetMatcher(MatcherChoice),
    /// Use another secret key (after import).
    SetKey(Arc<SecretKey>),
}

/// What the worker reports.
pub enum Event {
    Frame {
        label: String,
        image: Arc<RgbImage>,
        faces: Vec<Face>,
        timings: Timings,
    },
    FrameFailed(String),
    Enrolled {
        name: String,
        id: TemplateId,
        crop: Arc<RgbImage>,
        timings: Timings,
    },
    Matched {
        outcome: MatchOutcome,
        timings: Timings,
    },
    Gallery(Vec<(TemplateId, String)>),
    Connection(Connection),
    /// `what` is "enrol", "match", "gallery" or "matcher".
    Failed {
        what: &'static str,
        message: String,
    },
}

/// Where the worker keeps things.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The built-in matcher's store.
    pub data_dir: PathBuf,
    /// The key file (remote tokens are kept beside it).
    pub key_path: PathBuf,
}

/// Handle of the worker thread.
pub struct Worker {
    tx: Sender<Command>,
    rx: Receiver<Event>,
    repaint: Arc<Mutex<Option<eframe::egui::Context>>>,
    match_calls: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    /// Stops the worker and waits for it, so that the matcher's store is closed when the
    /// app is gone.
    fn drop(&mut self) {
        self.tx = channel().0;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Worker {
    /// Starts the worker with `key` and opens `matcher` on it.
    pub fn spawn(config: WorkerConfig, key: Arc<SecretKey>, matcher: MatcherChoice) -> Worker {
        let (tx, cmd_rx) = channel();
        let (ev_tx, rx) = channel();
        let repaint: Arc<Mutex<Option<eframe::egui::Context>>> = Arc::default();
        let match_calls = Arc::new(AtomicU64::new(0));
        let mut inner = Inner {
            config,
            labels: LabelKey::from_secret(&key),
            key,
            pipeline: None,
            matcher: None,
            events: ev_tx,
            repaint: repaint.clone(),
            match_calls: match_calls.clone(),
        };
        let _ = tx.send(Command::SetMatcher(matcher));
        let thread = std::thread::Builder::new()
            .name("blindface-worker".into())
            .spawn(move || {
                while let Ok(cmd) = cmd_rx.recv() {
                    // A panic in one command must not take the app down with it.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.handle(cmd)
                    }));
                    if r.is_err() {
                        inner.send(Event::Failed {
                            what: "internal",
                            message: "an internal error interrupted the last operation; \
                                      please try again"
                                .into(),
                        });
                    }
                }
            })
            .expect("spawn the worker thread");
        Worker {
            tx,
            rx,
            repaint,
            match_calls,
            thread: Some(thread),
        }
    }

    /// The context to wake when an event arrives.
    pub fn set_repaint(&self, ctx: &eframe::egui::Context) {
        let mut r = self.repaint.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(ctx.clone());
        }
    }

    pub fn send(&self, cmd: Command) {
        // The worker lives as long as the app; a send can only fail after a panic that
        // killed it, which catch_unwind prevents.
        let _ = self.tx.send(cmd);
    }

    /// Events that arrived since the last call.
    pub fn drain(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }

    /// Verify and identify calls made to the matcher so far.
    pub fn match_calls(&self) -> u64 {
        self.match_calls.load(Ordering::Relaxed)
    }
}

struct Inner {
    config: WorkerConfig,
    key: Arc<SecretKey>,
    labels: LabelKey,
    pipeline: Option<FacePipeline>,
    matcher: Option<Box<dyn Matcher>>,
    events: Sender<Event>,
    repaint: Arc<Mutex<Option<eframe::egui::Context>>>,
    match_calls: Arc<AtomicU64>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Inner {
    fn send(&self, e: Event) {
        let _ = self.events.send(e);
        if let Some(ctx) = self
            .repaint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            ctx.request_repaint();
        }
    }

    fn pipeline(&mut self) -> Result<&FacePipeline, String> {
        if self.pipeline.is_none() {
            let p = FacePipeline::load_default().map_err(|e| {
                format!("the face models could not be loaded: {e}. Check that the models/ folder and ONNX Runtime are installed next to blindface.")
            })?;
            self.pipeline = Some(p);
        }
        Ok(self.pipeline.as_ref().expect("just loaded"))
    }

    fn matcher(&self) -> Result<&dyn Matcher, String> {
        self.matcher.as_deref().ok_or_else(|| {
            "no matcher is connected; check the matcher in Settings and press Connect".into()
        })
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::LoadFile { path } => {
                let label = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                match load_image(&path) {
                    Ok(img) => self.analyse(label, Arc::new(img)),
                    Err(e) => self.send(Event::FrameFailed(format!(
                        "{e}; choose another image or folder"
                    ))),
                }
            }
            Command::Analyse { label, image } => self.analyse(label, image),
            Command::Enrol { image, face, name } => {
                let r = self.enrol(&image, &face, &name);
                match r {
                    Ok(e) => {
                        self.send(e);
                        self.refresh();
                    }
                    Err(message) => self.send(Event::Failed {
                        what: "enrol",
                        message,
                    }),
                }
            }
            Command::Match {
                image,
                face,
                mode,
                source,
            } => match self.do_match(&image, &face, mode, source) {
                Ok(e) => self.send(e),
                Err(message) => self.send(Event::Failed {
                    what: "match",
                    message,
                }),
            },
            Command::Remove { ids } => {
                let r: Result<(), String> = self.matcher().and_then(|m| {
                    ids.iter()
                        .try_for_each(|&id| m.remove(id))
                        .map_err(|e| e.to_string())
                });
                if let Err(message) = r {
                    self.send(Event::Failed {
                        what: "gallery",
                        message,
                    });
                }
                self.refresh();
            }
            Command::Refresh => self.refresh(),
            Command::SetMatcher(choice) => {
                self.matcher = None;
                self.send(Event::Connection(Connection::Connecting));
                match self.open_matcher(&choice) {
                    Ok(m) => {
                        // Listing proves the matcher answers and the token works.
                        match m.list() {
                            Ok(list) => {
                                let desc = m.describe();
                                self.matcher = Some(m);
                                self.send(Event::Gallery(self.names(&list)));
                                self.send(Event::Connection(Connection::Ready(desc)));
                            }
                            Err(e) => self.send(Event::Connection(Connection::Failed(explain(&e)))),
                        }
                    }
                    Err(msg) => self.send(Event::Connection(Connection::Failed(msg))),
                }
            }
            Command::SetKey(key) => {
                self.labels = LabelKey::from_secret(&key);
                self.key = key;
                self.refresh();
            }
        }
    }

    fn open_matcher(&self, choice: &MatcherChoice) -> Result<Box<dyn Matcher>, String> {
        match choice {
            MatcherChoice::Builtin => BuiltinMatcher::open(&self.config.data_dir)
                .map(|m| Box::new(m) as Box<dyn Matcher>)
                .map_err(|e| explain(&e)),
            MatcherChoice::Remote { url, token } => {
                let url = url.trim();
                if !url.starts_with("http://") {
                    return Err(format!(
                        "the matcher URL must look like http://HOST:PORT, not {url:?}; \
                         for a remote server behind TLS, tunnel it to a local port"
                    ));
                }
                if token.trim().is_empty() {
                    RemoteMatcher::for_key_file(url, &self.config.key_path)
                        .map(|m| Box::new(m) as Box<dyn Matcher>)
                        .map_err(|e| explain(&e))
                } else {
                    let creds = Credentials {
                        tenant: "(from token)".into(),
                        token: token.trim().to_string(),
                    };
                    Ok(Box::new(RemoteMatcher::new(url, creds)))
                }
            }
        }
    }

    fn names(&self, list: &[Enrolled]) -> Vec<(TemplateId, String)> {
        list.iter()
            .map(|e| {
                let name = self
                    .labels
                    .open(&e.label)
                    .unwrap_or_else(|_| "(unreadable: enrolled with another key)".into());
                (e.id, name)
            })
            .collect()
    }

    fn refresh(&self) {
        let r = self
            .matcher()
            .and_then(|m| m.list().map_err(|e| explain(&e)));
        match r {
            Ok(list) => self.send(Event::Gallery(self.names(&list))),
            Err(message) => self.send(Event::Failed {
                what: "gallery",
                message,
            }),
        }
    }

    fn analyse(&mut self, label: String, image: Arc<RgbImage>) {
        let t = Instant::now();
        let faces = match self.pipeline().and_then(|p| {
            p.detect(&image)
                .map_err(|e| format!("face detection failed: {e}"))
        }) {
            Ok(f) => f,
            Err(msg) => {
                self.send(Event::FrameFailed(msg));
                return;
            }
        };
        let timings = Timings {
            detect_ms: Some(ms(t)),
            ..Timings::default()
        };
        self.send(Event::Frame {
            label,
            image,
            faces,
            timings,
        });
    }

    fn embed(
        &mut self,
        image: &RgbImage,
        face: &Face,
    ) -> Result<(crate::he::Template, f64), String> {
        let t = Instant::now();
        let e = self.pipeline()?.embed(image, face).map_err(|e| match e {
            VisionError::NoFace => {
                "no face in this frame: face the camera or choose another image".to_string()
            }
            e => format!("the face could not be embedded: {e}; select another face or frame"),
        })?;
        let q = quantise(e.as_slice(), &Params::v1()).map_err(|e| e.to_string())?;
        Ok((q.template, ms(t)))
    }

    fn enrol(&mut self, image: &RgbImage, face: &Face, name: &str) -> Result<Event, String> {
        let label = self
            .labels
            .seal(name.trim())
            .map_err(|e| format!("{e}; type a name first"))?;
        let (template, embed_ms) = self.embed(image, face)?;
        let t = Instant::now();
        let ct: EncryptedTemplate = encrypt_template(&self.key, &template);
        let encrypt_ms = ms(t);
        let sent = ct.to_bytes().len() + label.len();
        let t = Instant::now();
        let id = self
            .matcher()?
            .enrol(&ct, &label)
            .map_err(|e| explain(&e))?;
        let match_ms = ms(t);
        Ok(Event::Enrolled {
            name: name.trim().to_string(),
            id,
            crop: Arc::new(crop(image, face)),
            timings: Timings {
                embed_ms: Some(embed_ms),
                encrypt_ms: Some(encrypt_ms),
                match_ms: Some(match_ms),
                bytes_sent: Some(sent),
                bytes_received: Some(8),
                ..Timings::default()
            },
        })
    }

    fn do_match(
        &mut self,
        image: &RgbImage,
        face: &Face,
        mode: MatchMode,
        source: String,
    ) -> Result<Event, String> {
        let (template, embed_ms) = self.embed(image, face)?;
        let t = Instant::now();
        let (probe, ctx): (EncryptedProbe, _) = encrypt_probe(&self.key, &template);
        let encrypt_ms = ms(t);
        let matcher = self.matcher()?;
        let list = matcher.list().map_err(|e| explain(&e))?;
        let names: BTreeMap<TemplateId, String> = self.names(&list).into_iter().collect();
        let t = Instant::now();
        let results: Vec<MatchResult> = match &mode {
            MatchMode::Identify => {
                self.match_calls.fetch_add(1, Ordering::Relaxed);
                vec![matcher.identify(&probe).map_err(|e| explain(&e))?]
            }
            MatchMode::Verify(who) => {
                let ids: Vec<TemplateId> = names
                    .iter()
                    .filter(|(_, n)| *n == who)
                    .map(|(&id, _)| id)
                    .collect();
                if ids.is_empty() {
                    return Err(format!(
                        "nobody called {who:?} is enrolled; enrol them first or pick someone from the gallery"
                    ));
                }
                ids.iter()
                    .map(|&id| {
                        self.match_calls.fetch_add(1, Ordering::Relaxed);
                        matcher.verify(&probe, id).map_err(|e| explain(&e))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let match_ms = ms(t);
        let sent = probe.to_bytes().len() * results.len();
        let received: usize = results.iter().map(|r| r.to_bytes().len()).sum();
        let t = Instant::now();
        let mut distances = Vec::new();
        for r in &results {
            distances.extend(decrypt(&self.key, &ctx, r).map_err(|e| {
                format!(
                    "{e}. If you imported another key, the gallery was enrolled under the old one."
                )
            })?);
        }
        let decrypt_ms = ms(t);
        let rows = crate::ranking::rank(&distances, &names, true, &Params::v1());
        Ok(Event::Matched {
            outcome: MatchOutcome {
                mode,
                source,
                distances: rows,
                at: Instant::now(),
            },
            timings: Timings {
                detect_ms: None,
                embed_ms: Some(embed_ms),
                encrypt_ms: Some(encrypt_ms),
                match_ms: Some(match_ms),
                decrypt_ms: Some(decrypt_ms),
                bytes_sent: Some(sent),
                bytes_received: Some(received),
            },
        })
    }
}

/// A matcher error with what to do about it in the app.
fn explain(e: &MatcherError) -> String {
    match e {
        MatcherError::Unauthorized { url, message, .. } => format!(
            "the matcher at {url} rejected the access token ({message}): check the token in \
             Settings, or clear it to register a new one"
        ),
        MatcherError::Unreachable { url, detail } => format!(
            "cannot reach the matcher at {url} ({detail}): start it with `blindface serve`, \
             check the URL in Settings, or switch to the built-in matcher"
        ),
        e => e.to_string(),
    }
}

/// The face's box with a margin, clipped to the image, for the enrol confirmation.
pub fn crop(image: &RgbImage, face: &Face) -> RgbImage {
    let [x, y, w, h] = face.bbox;
    let m = 0.2 * w.max(h);
    let x0 = (x - m).max(0.0) as u32;
    let y0 = (y - m).max(0.0) as u32;
    let x1 = ((x + w + m) as u32).min(image.width());
    let y1 = ((y + h + m) as u32).min(image.height());
    if x1 <= x0 || y1 <= y0 {
        return image.clone();
    }
    let c = image::imageops::crop_imm(image, x0, y0, x1 - x0, y1 - y0).to_image();
    let scale = 160.0 / c.height().max(1) as f32;
    image::imageops::resize(
        &c,
        ((c.width() as f32 * scale) as u32).max(1),
        160,
        image::imageops::FilterType::Triangle,
    )
}
