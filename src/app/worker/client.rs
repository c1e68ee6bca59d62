//! The client thread: everything the app-side [`Client`] does (embedding, encryption,
//! matcher calls, decryption), plus the key lifecycle (open or create at start, inspect,
//! generate, adopt, export) and the connection's health (a matcher found unreachable is
//! shown as lost and connected again once it answers). It owns the secret key (inside the
//! client, or alone while no matcher is connected); the window only ever sees its
//! fingerprint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use image::RgbImage;

use super::thread::{serve, Job, Shared};
use crate::app::protocol::{
    AppError, Command, Connection, Epoch, Event, KeyInfo, MatchMode, MatchOutcome, Operation, Shot,
    Timings,
};
use crate::client::face::{embed_face, EmbeddedFace};
use crate::client::keys::{open_key, KeyError, KeyFile, KeyOrigin, KeyPolicy};
use crate::client::{
    connect, elapsed_ms, Access, Client, ClientError, Enrolment, Locations, MatchReport,
};
use crate::he::{Params, SecretKey};
use crate::matcher::{MatcherError, MatcherSpec, TokenStore, Traffic};
use crate::vision::Face;

/// Where the worker keeps things (all of them the client thread's: the frame threads
/// need no configuration).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub data_dir: PathBuf,
    pub key_path: PathBuf,
    /// The matcher to connect to at start.
    pub matcher: MatcherSpec,
    /// Whether plain HTTP beyond loopback is allowed (the saved setting).
    pub insecure_http: bool,
}

/// Starts the client thread on the commands it is sent; it opens the key (creating it on
/// first run) and connects to `config.matcher` first.
pub(super) fn spawn(
    config: &WorkerConfig,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    match_calls: Arc<AtomicU64>,
) -> JoinHandle<()> {
    let job = ClientThread {
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
        match_calls,
        lost: None,
        retry_connect: false,
    };
    serve("blindface-client", shared, commands, job)
}

/// The client thread's state: the connected [`Client`] (or the key alone), the key
/// lifecycle and the connection's health.
struct ClientThread {
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
    /// Why the matcher was last found unreachable (`None`: connected, or never tried).
    lost: Option<String>,
    /// The last connection failed because the matcher was unreachable.
    retry_connect: bool,
}

impl Job for ClientThread {
    type Cmd = Command;
    fn operation(cmd: &Command) -> Option<Operation> {
        cmd.operation()
    }
    fn init(&mut self) {
        self.start();
    }
    fn handle(&mut self, cmd: Command) {
        ClientThread::handle(self, cmd)
    }
    fn release(&mut self) {
        drop(self.client.take());
    }
}

impl ClientThread {
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
                    params: *opened.key.params(),
                }));
                self.spare_key = Some(opened.key);
                self.connect(Access::default());
            }
            Err(e) => {
                self.key_problem = Some(e.to_string());
                self.send(Event::Key(KeyInfo {
                    fingerprint: None,
                    created: false,
                    params: Params::current(),
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

    /// Connects again with the saved token and pin, without showing "Connecting...".
    fn connect_quietly(&mut self) {
        self.connect_with(Access::default(), false);
    }

    /// Connects with what the user typed (`access`; the saved pin and token otherwise).
    fn connect(&mut self, access: Access) {
        self.connect_with(access, true);
    }

    fn connect_with(&mut self, access: Access, announce: bool) {
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
        if announce {
            self.send(Event::Connection(Connection::Connecting));
        }
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
                self.lost = None;
                self.send_gallery();
                self.send(Event::Connection(Connection::Ready(desc)));
                self.check_labels();
            }
            Err(e) => {
                let e = *e;
                self.spare_key = Some(e.key);
                // A server that is down is tried again by the health check; a refusal
                // (token, invitation, certificate) waits for the user.
                self.retry_connect = matches!(
                    e.error,
                    ClientError::Matcher(MatcherError::Unreachable { .. })
                );
                let why = AppError::from(e.error).to_string();
                if announce {
                    self.send(Event::Connection(Connection::Failed(why.clone())));
                    self.lost = Some(why);
                } else {
                    self.lost(why);
                }
            }
        }
    }

    /// A matcher that cannot be reached is shown as not connected, at once.
    fn note_unreachable(&mut self, e: &AppError) {
        if let AppError::Client(ClientError::Matcher(MatcherError::Unreachable { .. })) = e {
            self.lost(e.to_string());
        }
    }

    /// Shows the connection as lost (once per reason).
    fn lost(&mut self, why: String) {
        if self.lost.as_ref() != Some(&why) {
            self.send(Event::Connection(Connection::Failed(why.clone())));
            self.lost = Some(why);
        }
    }

    /// Asks the matcher whether it is there (a remote one can vanish); a lost connection
    /// is made again once the matcher answers.
    fn check_connection(&mut self) {
        if self.key_problem.is_some() {
            return;
        }
        match &self.client {
            Some(c) => match c.health() {
                Ok(()) => {
                    if self.lost.take().is_some() {
                        let desc = c.describe();
                        self.send(Event::Connection(Connection::Ready(desc)));
                    }
                }
                Err(e) => self.lost(AppError::from(e).to_string()),
            },
            // Connecting failed earlier because the server was down: try again, quietly.
            None if self.retry_connect => self.connect_quietly(),
            None => {}
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
            Command::Enrol { name, shots } => {
                match self.enrol(&name, &shots) {
                    Ok(e) => self.send(e),
                    Err(e) => {
                        self.note_unreachable(&e);
                        self.fail(Operation::Enrol, e);
                    }
                }
                // Success or not, the list shows what the matcher holds now.
                self.send_gallery();
            }
            Command::Match {
                image,
                face,
                mode,
                source,
                epoch,
            } => match self.do_match(&image, &face, mode, source, epoch) {
                Ok(e) => self.send(e),
                Err(e) => {
                    self.note_unreachable(&e);
                    self.fail(Operation::Match, e);
                }
            },
            Command::MatchTrack {
                track,
                image,
                face,
                epoch,
            } => match self.match_track(track, &image, &face, epoch) {
                Ok(e) => self.send(e),
                Err(error) => {
                    self.note_unreachable(&error);
                    self.send(Event::TrackFailed {
                        track,
                        epoch,
                        error,
                    });
                }
            },
            Command::Remove { ids } => {
                let r = self
                    .client()
                    .and_then(|c| c.remove_ids(&ids).map_err(AppError::from));
                if let Err(e) = r {
                    self.note_unreachable(&e);
                    self.fail(Operation::Gallery, e);
                }
                self.send_gallery();
            }
            Command::CheckConnection => self.check_connection(),
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
                        let params = *opened.key.params();
                        self.candidate = Some(opened.key);
                        self.send(Event::KeyCandidate {
                            source: Some(path.display().to_string()),
                            fingerprint: fp,
                            params,
                        });
                    }
                }
                Err(e) => self.fail(Operation::Key, e),
            },
            Command::GenerateKey => {
                let params = Params::current();
                let key = SecretKey::generate(&params);
                let fingerprint = key.fingerprint();
                self.candidate = Some(key);
                self.send(Event::KeyCandidate {
                    source: None,
                    fingerprint,
                    params,
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
            #[cfg(any(test, feature = "test-hooks"))]
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
        let params = *key.params();
        drop(self.take_key());
        self.key_problem = None;
        self.spare_key = Some(key);
        self.send(Event::Key(KeyInfo {
            fingerprint: Some(fingerprint.clone()),
            created: false,
            params,
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

    /// The face embedded (kept app-side) and quantised, with the time it took.
    fn embedded(&mut self, image: &RgbImage, face: &Face) -> Result<(EmbeddedFace, f64), AppError> {
        let params = *self.client()?.params();
        let pipeline = self.shared.pipeline()?;
        let t = Instant::now();
        let embedded = embed_face(&pipeline, image, face, &params)?;
        Ok((embedded, elapsed_ms(t)))
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
            let (e, ms) = self.embedded(&shot.image, &shot.face)?;
            templates.push(e.template);
            embed_ms += ms;
        }
        let client = self.client()?;
        let mut enrolled: Vec<Enrolment> = Vec::with_capacity(templates.len());
        for t in &templates {
            match client.enrol(t, name) {
                Ok(e) => enrolled.push(e),
                Err(error) => {
                    // All shots or none: take back what this enrolment already added. If
                    // that fails too, say which templates stayed.
                    let ids: Vec<_> = enrolled.iter().map(|e| e.id).collect();
                    if !ids.is_empty() {
                        if let Err(undo) = client.remove_ids(&ids) {
                            return Err(AppError::PartialEnrol {
                                name: name.to_string(),
                                kept: ids.len(),
                                error: Box::new(error),
                                undo: Box::new(undo),
                            });
                        }
                    }
                    return Err(error.into());
                }
            }
        }
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
        epoch: Epoch,
    ) -> Result<Event, AppError> {
        let (embedded, embed_ms) = self.embedded(image, face)?;
        let report = self.client()?.identify(&embedded.template)?;
        self.match_calls.fetch_add(report.calls, Ordering::Relaxed);
        Ok(Event::TrackMatched {
            track,
            epoch,
            rows: report.best_per_person(),
            embedding: Box::new(embedded.embedding),
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
        epoch: Epoch,
    ) -> Result<Event, AppError> {
        let (embedded, embed_ms) = self.embedded(image, face)?;
        let template = embedded.template;
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
                epoch,
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
fn match_timings(embed_ms: f64, report: &MatchReport) -> Timings {
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
