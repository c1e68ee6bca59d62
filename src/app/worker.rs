//! All heavy work of the app, on two background threads sharing one face pipeline: the
//! vision thread loads images and detects faces on every frame; the client thread does
//! everything the app-side [`Client`] does (embedding, encryption, matcher calls,
//! decryption), plus the key lifecycle. So detection keeps the preview's frame rate while
//! faces are being matched. The client thread owns the secret key (inside the client, or
//! alone while no matcher is connected); the window only ever sees its fingerprint.
//!
//! The UI sends [`Command`]s and drains [`Event`]s each frame; it never waits. A panic in a
//! command is caught: the thread reports [`Event::Crashed`] and stops, and the UI starts a
//! fresh worker ([`Worker::restart`]), so busy flags never stay set.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;

use super::protocol::{
    AppError, Command, Connection, Event, KeyInfo, MatchMode, MatchOutcome, Operation, Shot,
    Timings,
};
use crate::client::face::template_of;
use crate::client::keys::{current_params, open_key, KeyError, KeyOrigin, KeyPolicy};
use crate::client::{connect, Access, Client, Enrolment, Locations};
use crate::he::SecretKey;
use crate::matcher::{MatcherSpec, TokenStore, Traffic};
use crate::vision::{load_image, Face, FacePipeline};

/// Where the worker keeps things.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub data_dir: PathBuf,
    pub key_path: PathBuf,
    /// The matcher to connect to at start.
    pub matcher: MatcherSpec,
    /// Whether plain HTTP beyond loopback is allowed (the saved setting).
    pub insecure_http: bool,
}

type Repaint = Arc<Mutex<Option<eframe::egui::Context>>>;

/// What both threads share: the way to the UI and the face pipeline (loaded once, by
/// whichever thread needs it first).
struct Shared {
    events: Sender<Event>,
    repaint: Repaint,
    pipeline: Mutex<Option<Arc<FacePipeline>>>,
}

impl Shared {
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

    fn pipeline(&self) -> Result<Arc<FacePipeline>, AppError> {
        let mut p = self.pipeline.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(Arc::new(
                FacePipeline::load_default().map_err(AppError::Models)?,
            ));
        }
        Ok(p.as_ref().expect("just loaded").clone())
    }
}

/// Handle to the worker threads.
pub struct Worker {
    config: WorkerConfig,
    client_tx: Sender<Command>,
    vision_tx: Sender<Command>,
    rx: Receiver<Event>,
    repaint: Repaint,
    match_calls: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    /// Closes the command channels and waits for the threads to finish their current
    /// command, so the store and the key are released when the worker is gone (a new
    /// worker, or another app on the same data directory, can open them at once).
    fn drop(&mut self) {
        let (closed, _) = channel();
        self.client_tx = closed.clone();
        self.vision_tx = closed;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a worker thread does: its first step, each command, and what to release if a
/// command panics.
trait Job: Send + 'static {
    fn init(&mut self) {}
    fn handle(&mut self, cmd: Command);
    fn release(&mut self) {}
}

/// Runs `job` on its own thread: `init`, then each command until the channel closes or a
/// command panics (then `release` runs, the crash is reported, and the thread stops).
fn serve(
    name: &str,
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    mut job: impl Job,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            job.init();
            while let Ok(cmd) = rx.recv() {
                let op = cmd.operation();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.handle(cmd)));
                if let Err(panic) = r {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    // The state may be half-changed: release it (the store, so a fresh
                    // worker can open it) before telling the UI, then stop.
                    job.release();
                    drop(job);
                    shared.send(Event::Crashed { op, message });
                    return;
                }
            }
        })
        .expect("spawn a worker thread")
}

impl Worker {
    /// Starts the worker: it opens the key (creating it on first run) and connects.
    pub fn spawn(config: WorkerConfig) -> Self {
        Self::start(config, Arc::default(), Arc::default())
    }

    fn start(config: WorkerConfig, repaint: Repaint, match_calls: Arc<AtomicU64>) -> Self {
        let (client_tx, client_rx) = channel::<Command>();
        let (vision_tx, vision_rx) = channel::<Command>();
        let (ev_tx, rx) = channel::<Event>();
        let shared = Arc::new(Shared {
            events: ev_tx,
            repaint: repaint.clone(),
            pipeline: Mutex::new(None),
        });
        let vision_thread = serve(
            "blindface-vision",
            shared.clone(),
            vision_rx,
            Vision {
                shared: shared.clone(),
            },
        );
        let inner = Inner {
            locations: Locations {
                data_dir: config.data_dir.clone(),
                tokens: TokenStore::beside_key(&config.key_path),
            },
            key_path: config.key_path.clone(),
            spec: config.matcher.clone(),
            insecure_http: config.insecure_http,
            client: None,
            spare_key: None,
            key_problem: None,
            candidate: None,
            shared: shared.clone(),
            match_calls: match_calls.clone(),
        };
        let client_thread = serve("blindface-client", shared, client_rx, inner);
        Worker {
            config,
            client_tx,
            vision_tx,
            rx,
            repaint,
            match_calls,
            threads: vec![vision_thread, client_thread],
        }
    }

    /// A fresh worker with the same configuration (after a crash), connecting to `spec`.
    pub fn restart(&mut self, spec: MatcherSpec, insecure_http: bool) {
        let mut config = self.config.clone();
        config.matcher = spec;
        config.insecure_http = insecure_http;
        *self = Self::start(config, self.repaint.clone(), self.match_calls.clone());
    }

    /// The context to wake when an event arrives.
    pub fn set_repaint(&self, ctx: &eframe::egui::Context) {
        let mut r = self.repaint.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(ctx.clone());
        }
    }

    pub fn send(&self, cmd: Command) {
        // A send fails only once a thread stopped after a crash; its Crashed event (or
        // the closed channel, see `drain`) makes the UI restart the worker.
        let tx = match cmd {
            Command::LoadFile { .. } | Command::Analyse { .. } | Command::AnalyseRaw { .. } => {
                &self.vision_tx
            }
            _ => &self.client_tx,
        };
        let _ = tx.send(cmd);
    }

    /// Events that arrived since the last call; a worker that vanished without a word is
    /// reported as crashed.
    pub fn drain(&self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !out.iter().any(|e| matches!(e, Event::Crashed { .. })) {
                        out.push(Event::Crashed {
                            op: None,
                            message: "the worker stopped".into(),
                        });
                    }
                    break;
                }
            }
        }
        out
    }

    /// Verify and identify calls made to the matcher so far (kept across restarts).
    pub fn match_calls(&self) -> u64 {
        self.match_calls.load(Ordering::Relaxed)
    }
}

impl Command {
    fn operation(&self) -> Option<Operation> {
        Some(match self {
            Command::LoadFile { .. } | Command::Analyse { .. } | Command::AnalyseRaw { .. } => {
                Operation::Frame
            }
            Command::Enrol { .. } => Operation::Enrol,
            Command::Match { .. } | Command::MatchTrack { .. } => Operation::Match,
            Command::Remove { .. } | Command::Refresh => Operation::Gallery,
            Command::Connect { .. } => Operation::Connect,
            Command::InspectKey(_)
            | Command::GenerateKey
            | Command::AdoptKey
            | Command::DiscardKey
            | Command::ExportKey(_) => Operation::Key,
            Command::Crash => return None,
        })
    }
}

struct Inner {
    locations: Locations,
    key_path: PathBuf,
    spec: MatcherSpec,
    insecure_http: bool,
    /// The connected client (owns the key).
    client: Option<Client>,
    /// The key while no client is connected.
    spare_key: Option<SecretKey>,
    /// Why the key file could not be used (then there is no key at all).
    key_problem: Option<String>,
    /// A key waiting for the user's confirmation.
    candidate: Option<SecretKey>,
    shared: Arc<Shared>,
    match_calls: Arc<AtomicU64>,
}

impl Job for Inner {
    fn init(&mut self) {
        self.start();
    }
    fn handle(&mut self, cmd: Command) {
        Inner::handle(self, cmd)
    }
    fn release(&mut self) {
        drop(self.client.take());
    }
}

/// The vision thread: images in, faces out, on every frame.
struct Vision {
    shared: Arc<Shared>,
}

impl Job for Vision {
    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::LoadFile { path } => {
                let label = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                match load_image(&path) {
                    Ok(img) => self.analyse(label, Arc::new(img)),
                    Err(e) => self.fail(AppError::Image(e)),
                }
            }
            Command::Analyse { label, image } => self.analyse(label, image),
            Command::AnalyseRaw {
                label,
                frame,
                mirror,
                counter,
            } => match counter.decode(&frame) {
                Ok(mut img) => {
                    if mirror {
                        image::imageops::flip_horizontal_in_place(&mut img);
                    }
                    self.analyse(label, Arc::new(img));
                }
                // Dropped and counted; the next frame comes soon. Say so, so the UI
                // is not left waiting for this one.
                Err(_) => self.shared.send(Event::FrameDropped),
            },
            _ => {}
        }
    }
}

impl Vision {
    fn fail(&self, error: AppError) {
        self.shared.send(Event::Failed {
            op: Operation::Frame,
            error,
        });
    }

    fn analyse(&self, label: String, image: Arc<RgbImage>) {
        let t = Instant::now();
        let faces = match self
            .shared
            .pipeline()
            .and_then(|p| p.detect(&image).map_err(AppError::Detect))
        {
            Ok(f) => f,
            Err(e) => return self.fail(e),
        };
        self.shared.send(Event::Frame {
            label,
            image,
            faces,
            timings: Timings {
                detect_ms: Some(ms(t)),
                ..Timings::default()
            },
        });
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Inner {
    fn send(&self, e: Event) {
        self.shared.send(e);
    }

    fn fail(&self, op: Operation, error: impl Into<AppError>) {
        self.send(Event::Failed {
            op,
            error: error.into(),
        });
    }

    /// Opens the key (created on first run; an unreadable file is reported, never
    /// replaced) and connects.
    fn start(&mut self) {
        match open_key(&self.key_path, KeyPolicy::CreateIfMissing) {
            Ok(opened) => {
                self.send(Event::Key(KeyInfo {
                    fingerprint: Some(opened.key.fingerprint()),
                    created: opened.origin == KeyOrigin::Created,
                }));
                self.spare_key = Some(opened.key);
                self.connect(Access::default());
            }
            Err(e) => {
                self.key_problem = Some(e.to_string());
                self.send(Event::Key(KeyInfo {
                    fingerprint: None,
                    created: false,
                }));
                self.send(Event::Connection(Connection::Failed(
                    AppError::KeyUnusable(e.to_string()).to_string(),
                )));
                self.fail(Operation::Key, e);
            }
        }
    }

    fn take_key(&mut self) -> Option<SecretKey> {
        self.client
            .take()
            .map(Client::into_key)
            .or_else(|| self.spare_key.take())
    }

    /// Connects with what the user typed (`access`; the saved pin and token otherwise).
    fn connect(&mut self, access: Access) {
        let access = Access {
            insecure_http: self.insecure_http,
            ..access
        };
        let Some(key) = self.take_key() else {
            let problem = self.key_problem.clone().unwrap_or_default();
            self.send(Event::Connection(Connection::Failed(
                AppError::KeyUnusable(problem).to_string(),
            )));
            return;
        };
        self.send(Event::Connection(Connection::Connecting));
        match connect(key, &self.spec, &self.locations, &access) {
            Ok(client) => {
                let desc = client.describe();
                if let Some(pin) = client.new_pin() {
                    self.send(Event::Info {
                        op: Operation::Connect,
                        text: format!(
                            "Pinned the server's TLS certificate on first use: SHA-256 {pin}. \
                             Compare it with the fingerprint `blindface serve` printed; a \
                             different certificate will be refused from now on."
                        ),
                    });
                }
                self.client = Some(client);
                self.send_gallery();
                self.send(Event::Connection(Connection::Ready(desc)));
                self.check_labels();
            }
            Err(e) => {
                let e = *e;
                self.spare_key = Some(e.key);
                self.send(Event::Connection(Connection::Failed(
                    AppError::from(e.error).to_string(),
                )));
            }
        }
    }

    fn check_labels(&self) {
        if let Some(c) = &self.client {
            if let Err(e) = c.check_labels() {
                self.fail(Operation::Gallery, e);
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, AppError> {
        if let Some(p) = &self.key_problem {
            return Err(AppError::KeyUnusable(p.clone()));
        }
        self.client.as_mut().ok_or(AppError::NoMatcher)
    }

    fn send_gallery(&self) {
        if let Some(c) = &self.client {
            self.send(Event::Gallery(
                c.names().iter().map(|(&id, n)| (id, n.clone())).collect(),
            ));
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            // The vision thread's commands (never routed here).
            Command::LoadFile { .. } | Command::Analyse { .. } | Command::AnalyseRaw { .. } => {}
            Command::Enrol { name, shots } => match self.enrol(&name, &shots) {
                Ok(e) => {
                    self.send(e);
                    self.send_gallery();
                }
                Err(e) => self.fail(Operation::Enrol, e),
            },
            Command::Match {
                image,
                face,
                mode,
                source,
            } => match self.do_match(&image, &face, mode, source) {
                Ok(e) => self.send(e),
                Err(e) => self.fail(Operation::Match, e),
            },
            Command::MatchTrack { track, image, face } => {
                match self.match_track(track, &image, &face) {
                    Ok(e) => self.send(e),
                    Err(error) => self.send(Event::TrackFailed { track, error }),
                }
            }
            Command::Remove { ids } => {
                let r = self
                    .client()
                    .and_then(|c| c.remove_ids(&ids).map_err(AppError::from));
                if let Err(e) = r {
                    self.fail(Operation::Gallery, e);
                }
                self.send_gallery();
            }
            Command::Refresh => {
                let r = self
                    .client()
                    .and_then(|c| c.refresh().map_err(AppError::from));
                match r {
                    Ok(()) => {
                        self.send_gallery();
                        self.check_labels();
                    }
                    Err(e) => self.fail(Operation::Gallery, e),
                }
            }
            Command::Connect { spec, access } => {
                self.spec = spec;
                self.insecure_http = access.insecure_http;
                self.connect(access);
            }
            Command::InspectKey(path) => match open_key(&path, KeyPolicy::MustExist) {
                Ok(opened) => {
                    let fp = opened.key.fingerprint();
                    if self.current_fingerprint().as_deref() == Some(fp.as_str()) {
                        self.send(Event::Info {
                            op: Operation::Key,
                            text: "That key is the one already in use; nothing changed.".into(),
                        });
                    } else {
                        self.candidate = Some(opened.key);
                        self.send(Event::KeyCandidate {
                            source: path.display().to_string(),
                            fingerprint: fp,
                        });
                    }
                }
                Err(e) => self.fail(Operation::Key, e),
            },
            Command::GenerateKey => {
                let key = SecretKey::generate(&current_params());
                let fingerprint = key.fingerprint();
                self.candidate = Some(key);
                self.send(Event::KeyCandidate {
                    source: "(newly generated)".into(),
                    fingerprint,
                });
            }
            Command::AdoptKey => self.adopt_key(),
            Command::DiscardKey => self.candidate = None,
            Command::ExportKey(path) => {
                let r = match (&self.client, &self.spare_key) {
                    (Some(c), _) => c.key().save(&path, true),
                    (None, Some(k)) => k.save(&path, true),
                    (None, None) => {
                        self.fail(
                            Operation::Key,
                            AppError::KeyUnusable(self.key_problem.clone().unwrap_or_default()),
                        );
                        return;
                    }
                };
                match r {
                    Ok(()) => self.send(Event::Info {
                        op: Operation::Key,
                        text: format!(
                            "Key exported to {}. Keep it somewhere safe: it reads your gallery's names and distances.",
                            path.display()
                        ),
                    }),
                    Err(e) => self.fail(
                        Operation::Key,
                        KeyError::Save(e),
                    ),
                }
            }
            Command::Crash => panic!("crash requested"),
        }
    }

    fn current_fingerprint(&self) -> Option<String> {
        self.client
            .as_ref()
            .map(Client::fingerprint)
            .or_else(|| self.spare_key.as_ref().map(SecretKey::fingerprint))
    }

    /// Saves the candidate as the key file (an unreadable file is moved aside first, never
    /// overwritten) and reconnects with it: the gallery shown is the new key's own.
    fn adopt_key(&mut self) {
        let Some(key) = self.candidate.take() else {
            return;
        };
        let mut moved = None;
        if self.key_problem.is_some() && self.key_path.exists() {
            let mut aside = self.key_path.as_os_str().to_owned();
            aside.push(".unreadable");
            let aside = PathBuf::from(aside);
            if let Err(e) = std::fs::rename(&self.key_path, &aside) {
                self.fail(
                    Operation::Key,
                    KeyError::Save(crate::he::HeError::KeyIo {
                        path: self.key_path.display().to_string(),
                        reason: e,
                    }),
                );
                return;
            }
            moved = Some(aside);
        }
        if let Err(e) = key.save(&self.key_path, true) {
            self.fail(Operation::Key, KeyError::Save(e));
            return;
        }
        let fingerprint = key.fingerprint();
        drop(self.take_key());
        self.key_problem = None;
        self.spare_key = Some(key);
        self.send(Event::Key(KeyInfo {
            fingerprint: Some(fingerprint.clone()),
            created: false,
        }));
        let mut text = format!("Now using key {fingerprint}.");
        if let Some(aside) = moved {
            text += &format!(" The unreadable key file was kept as {}.", aside.display());
        }
        self.send(Event::Info {
            op: Operation::Key,
            text,
        });
        self.connect(Access::default());
    }

    fn template(
        &mut self,
        image: &RgbImage,
        face: &Face,
    ) -> Result<(crate::he::Template, f64), AppError> {
        let params = *self.client()?.params();
        let pipeline = self.shared.pipeline()?;
        let t = Instant::now();
        let template = template_of(&pipeline, image, face, &params)?;
        Ok((template, ms(t)))
    }

    /// Enrols every shot as a template of `name`. Every shot is embedded before the first
    /// is enrolled, so a shot without a usable face enrols nothing.
    fn enrol(&mut self, name: &str, shots: &[Shot]) -> Result<Event, AppError> {
        if name.trim().is_empty() {
            return Err(AppError::NoName);
        }
        if shots.is_empty() {
            return Err(AppError::NoFace);
        }
        let mut templates = Vec::with_capacity(shots.len());
        let mut embed_ms = 0.0;
        for shot in shots {
            let (t, ms) = self.template(&shot.image, &shot.face)?;
            templates.push(t);
            embed_ms += ms;
        }
        let client = self.client()?;
        let enrolled = templates
            .iter()
            .map(|t| client.enrol(t, name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut traffic = Traffic::default();
        for e in &enrolled {
            traffic += e.traffic;
        }
        let sum = |f: fn(&Enrolment) -> f64| Some(enrolled.iter().map(f).sum());
        let timings = Timings {
            embed_ms: Some(embed_ms),
            encrypt_ms: sum(|e| e.times.encrypt_ms),
            match_ms: sum(|e| e.times.match_ms),
            bytes_sent: Some(traffic.sent),
            bytes_received: Some(traffic.received),
            ..Timings::default()
        };
        let last = enrolled.last().expect("at least one shot");
        let (enrolled_name, wire) = (last.name.clone(), last.wire.clone());
        let ids = enrolled.iter().map(|e| e.id).collect();
        Ok(Event::Enrolled {
            name: enrolled_name,
            ids,
            crops: shots
                .iter()
                .map(|s| Arc::new(crop(&s.image, &s.face)))
                .collect(),
            timings,
            wire,
        })
    }

    fn match_track(
        &mut self,
        track: crate::live::TrackId,
        image: &RgbImage,
        face: &Face,
    ) -> Result<Event, AppError> {
        let (template, embed_ms) = self.template(image, face)?;
        let report = self.client()?.identify(&template)?;
        self.match_calls.fetch_add(report.calls, Ordering::Relaxed);
        Ok(Event::TrackMatched {
            track,
            rows: report.best_per_person(),
            timings: match_timings(embed_ms, &report),
            wire: report.wire,
            crop: Arc::new(crop(image, face)),
        })
    }

    fn do_match(
        &mut self,
        image: &RgbImage,
        face: &Face,
        mode: MatchMode,
        source: String,
    ) -> Result<Event, AppError> {
        let (template, embed_ms) = self.template(image, face)?;
        let client = self.client()?;
        let report = match &mode {
            MatchMode::Identify => client.identify(&template)?,
            MatchMode::Verify(who) => client.verify(&template, who)?,
        };
        self.match_calls.fetch_add(report.calls, Ordering::Relaxed);
        Ok(Event::Matched {
            outcome: MatchOutcome {
                mode,
                source,
                distances: report.best_per_person(),
                at: Instant::now(),
            },
            timings: match_timings(embed_ms, &report),
            wire: report.wire,
            crop: Arc::new(crop(image, face)),
        })
    }
}

/// What one verify or identify measured, as the Timings panel shows it.
fn match_timings(embed_ms: f64, report: &crate::client::MatchReport) -> Timings {
    Timings {
        detect_ms: None,
        embed_ms: Some(embed_ms),
        encrypt_ms: Some(report.times.encrypt_ms),
        match_ms: Some(report.times.match_ms),
        decrypt_ms: Some(report.times.decrypt_ms),
        bytes_sent: Some(report.traffic.sent),
        bytes_received: Some(report.traffic.received),
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
