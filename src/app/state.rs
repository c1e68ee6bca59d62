//! UI state, apart from drawing: what the window shows and what the user chose. Panels read
//! it; worker events update it ([`AppState::apply`]). What only one panel edits (the name
//! being typed, captured shots, the remote fields, the stream URL, a removal waiting for
//! confirmation) lives in that panel's own struct (`super::Panels`), not here. Verdicts
//! are computed here from already decrypted distances, so moving the threshold never calls
//! the matcher.
//!
//! [`Settings`] is the persisted part (saved debounced, see `BlindfaceApp::poll`);
//! everything else is runtime state.
//!
//! Invariant: nothing on screen belongs to another picture or another gallery than the one
//! shown. Every result carries the [`Epoch`] it was computed for (the picture's
//! [`SourceId`] and the gallery's generation); `apply` drops results of another epoch, a
//! new picture or gallery forgets every tracked face and identifies the faces in view
//! again at once ([`AppState::relabel`]), and panels ask [`AppState::is_current`] before
//! drawing a result as the current one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::protocol::{
    Connection, Epoch, Event, KeyInfo, MatchMode, MatchOutcome, Operation, SourceId, Timings,
};
use crate::calibration::default_threshold;
use crate::client::WireView;
use crate::he::{Params, TemplateId, Threshold};
use crate::live::{Track, TrackId, TrackStatus, Tracker, TrackerConfig};
use crate::matcher::MatcherSpec;
use crate::vision::Face;

pub use crate::ranking::PersonDistance;

/// How many recent best distances the history chart keeps.
pub const HISTORY_LEN: usize = 60;

/// The useful range of the threshold slider (L2 of normalised embeddings): below 0.6
/// nearly every genuine pair is rejected, above 1.6 nearly every stranger accepted.
pub const THRESHOLD_RANGE: std::ops::RangeInclusive<f32> = 0.6..=1.6;

/// Settings persisted in the platform config directory (`settings.json`). They hold no
/// secret: remote tokens live in the client's token store only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub matcher: MatcherSpec,
    pub threshold: f32,
    /// Seconds each image of a folder source stays on screen.
    pub folder_interval_s: f32,
    pub mirror: bool,
    pub show_history: bool,
    /// Allow plain HTTP to a remote matcher beyond loopback.
    pub insecure_http: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            matcher: MatcherSpec::Builtin,
            threshold: default_threshold(&Params::current()),
            folder_interval_s: 3.0,
            mirror: true,
            show_history: true,
            insecure_http: false,
        }
    }
}

impl Settings {
    /// Reads `path`, or the defaults if it is missing or unreadable.
    pub fn load(path: &std::path::Path) -> Settings {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the settings (atomically, owner-only).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("settings serialise");
        crate::fsutil::write_private(path, &bytes, true)
    }
}

/// Records an arrival now, keeping the last 5 seconds.
fn push_time(times: &mut VecDeque<Instant>) {
    let now = Instant::now();
    times.push_back(now);
    while times.len() > 2 && now.duration_since(times[0]).as_secs_f32() > 5.0 {
        times.pop_front();
    }
}

/// Arrivals per second over `times`.
fn rate(times: &VecDeque<Instant>) -> f32 {
    match (times.front(), times.back()) {
        (Some(a), Some(b)) if times.len() > 1 => {
            let s = b.duration_since(*a).as_secs_f32();
            if s > 0.0 {
                (times.len() - 1) as f32 / s
            } else {
                0.0
            }
        }
        _ => 0.0,
    }
}

impl MatchOutcome {
    /// The best row if the threshold accepts it.
    pub fn verdict(&self, threshold: &Threshold) -> Option<&PersonDistance> {
        self.distances
            .first()
            .filter(|d| threshold.accepts(d.distance_sq))
    }

    /// One line for the window: "Match: NAME" or why not.
    pub fn verdict_text(&self, threshold: &Threshold) -> String {
        match (self.verdict(threshold), &self.mode, self.distances.first()) {
            (Some(d), _, _) => format!("Match: {}", d.name),
            (None, MatchMode::Verify(n), _) => format!("No match: this is not {n}"),
            (None, MatchMode::Identify, None) => "No match: the gallery is empty".into(),
            (None, MatchMode::Identify, Some(best)) => format!(
                "No match: nobody within the threshold (closest: {} at {:.3})",
                best.name, best.l2
            ),
        }
    }
}

/// A message shown in the window, with what to do about it. `topic` says which operation
/// it belongs to, so a later success of that operation clears it; information goes by
/// itself after [`INFO_NOTICE_TTL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
    pub topic: Option<Operation>,
    pub at: Instant,
}

/// How long an information notice (not an error) stays before it goes by itself.
pub const INFO_NOTICE_TTL: std::time::Duration = std::time::Duration::from_secs(12);

/// The last exchange with the matcher, as "What the matcher sees" shows it: what left,
/// what came back and what only the app saw, all of one request.
#[derive(Clone)]
pub struct Exchange {
    pub epoch: Epoch,
    /// What it was, for people ("Identify, obama.jpg", "Enrol Obama").
    pub what: String,
    pub wire: WireView,
    /// The face that was sent, and its texture key.
    pub crop: Arc<RgbImage>,
    pub serial: u64,
    /// The decrypted distances of a match (`None` for an enrolment).
    pub distances: Option<Vec<PersonDistance>>,
}

/// What a tracked face's label says at a threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackLabel {
    /// Not matched yet.
    Pending,
    /// The last match failed; why (no name is shown).
    Unreachable(String),
    /// Nobody enrolled.
    EmptyGallery,
    /// The best person is within the threshold.
    Match { name: String, l2: f32 },
    /// Nobody within the threshold; the closest person.
    NoMatch { closest: String, l2: f32 },
}

impl TrackLabel {
    /// The label of `track` at `threshold` (decided here, from decrypted distances).
    pub fn of(track: &Track, threshold: &Threshold) -> TrackLabel {
        match (&track.status, track.best()) {
            (TrackStatus::Identifying, _) => TrackLabel::Pending,
            (TrackStatus::Unreachable(why), _) => TrackLabel::Unreachable(why.clone()),
            (TrackStatus::Identified, None) => TrackLabel::EmptyGallery,
            (TrackStatus::Identified, Some(b)) if threshold.accepts(b.distance_sq) => {
                TrackLabel::Match {
                    name: b.name.clone(),
                    l2: b.l2,
                }
            }
            (TrackStatus::Identified, Some(b)) => TrackLabel::NoMatch {
                closest: b.name.clone(),
                l2: b.l2,
            },
        }
    }

    pub fn text(&self) -> String {
        match self {
            TrackLabel::Pending => "identifying...".into(),
            TrackLabel::Unreachable(_) => "matcher unreachable".into(),
            TrackLabel::EmptyGallery => "nobody enrolled".into(),
            TrackLabel::Match { name, l2 } => format!("{name} {l2:.2}"),
            TrackLabel::NoMatch { closest, l2 } => format!("unknown (closest {closest} {l2:.2})"),
        }
    }
}

/// A key waiting for confirmation before it replaces the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCandidate {
    /// The file it was read from; `None` for a newly generated key.
    pub source: Option<String>,
    pub fingerprint: String,
    /// Its template parameters: the version of the gallery it opens or starts.
    pub params: Params,
}

/// Everything the window shows, apart from textures.
pub struct AppState {
    pub settings: Settings,
    /// Name and path of the current frame's source (file name or camera).
    pub frame_label: String,
    /// The frame the faces were found on (enrolment and matching crop from it).
    pub frame: Option<Arc<RgbImage>>,
    /// The picture `frame` belongs to.
    pub frame_source: SourceId,
    /// The newest frame, shown at once (its faces may still be being found): the preview
    /// draws it, with the boxes of `faces` only if it is of the same picture.
    pub preview: Option<(SourceId, Arc<RgbImage>)>,
    /// Bumped per new preview frame (the preview re-uploads its texture).
    pub preview_serial: u64,
    /// When the last preview frames arrived (the shown frame rate).
    pub preview_times: VecDeque<Instant>,
    /// Bumped when `frame` changes (the preview re-uploads its texture).
    pub frame_serial: u64,
    /// The gallery's generation: bumped on every change of who is enrolled, of key or of
    /// matcher (results of an older one are dropped).
    pub gallery_epoch: u64,
    /// The source is a camera or stream (hints say "look at the camera").
    pub camera_source: bool,
    pub faces: Vec<Face>,
    pub selected_face: Option<usize>,
    /// Enrolled templates with their decrypted names, sorted by name.
    pub gallery: Vec<(TemplateId, String)>,
    pub last_match: Option<MatchOutcome>,
    /// What crossed to the matcher in the last request, with what only the app saw.
    pub last_exchange: Option<Exchange>,
    /// Bumped per exchange (texture key of its crop).
    pub exchange_serial: u64,
    /// Recent best rows, with their time in seconds since start (the history chart).
    pub history: VecDeque<(f64, PersonDistance)>,
    pub timings: Timings,
    pub notices: Vec<Notice>,
    /// The key's fingerprint (`None` while the key file is unusable).
    pub key_fingerprint: Option<String>,
    /// The key's template parameters, and so its gallery's: what thresholds mean, which
    /// calibration describes them, and what the settings say about the gallery.
    pub key_params: Params,
    pub key_path: PathBuf,
    pub first_run: bool,
    pub key_candidate: Option<KeyCandidate>,
    pub connection: Connection,
    pub verify_name: String,
    /// Identify the selected face on every new frame.
    pub continuous: bool,
    /// Live mode: every face in view tracked and identified on a schedule.
    pub live: bool,
    pub tracker: Tracker,
    /// Tracks due for matching, for the app to send.
    pub due_tracks: Vec<TrackId>,
    /// Commands sent to the worker and not answered yet (spinners).
    pub busy_enrol: bool,
    pub busy_match: bool,
    pub busy_frame: bool,
    pub frame_times: VecDeque<Instant>,
    pub started: Instant,
    /// Matcher calls made (verify + identify), read from the worker's counter.
    pub matcher_calls: u64,
}

impl AppState {
    pub fn new(settings: Settings, key_path: PathBuf) -> Self {
        AppState {
            settings,
            frame_label: String::new(),
            frame: None,
            frame_source: SourceId::default(),
            preview: None,
            preview_serial: 0,
            preview_times: VecDeque::new(),
            frame_serial: 0,
            gallery_epoch: 0,
            camera_source: false,
            faces: Vec::new(),
            selected_face: None,
            gallery: Vec::new(),
            last_match: None,
            last_exchange: None,
            exchange_serial: 0,
            history: VecDeque::new(),
            timings: Timings::default(),
            notices: Vec::new(),
            key_fingerprint: None,
            key_params: Params::current(),
            key_path,
            first_run: false,
            key_candidate: None,
            connection: Connection::Connecting,
            verify_name: String::new(),
            continuous: false,
            live: false,
            tracker: Tracker::new(TrackerConfig::default()),
            due_tracks: Vec::new(),
            busy_enrol: false,
            busy_match: false,
            busy_frame: false,
            frame_times: VecDeque::new(),
            started: Instant::now(),
            matcher_calls: 0,
        }
    }

    /// The threshold the user set, on the integer scale of the key the distances were
    /// computed with: every verdict in the window is its [`Threshold::accepts`]. The
    /// window never holds the key (the worker's `Client` does); the worker says which
    /// parameters it has ([`KeyInfo::params`]) whenever the key changes, before any
    /// distance computed with it arrives.
    pub fn threshold(&self) -> Threshold {
        Threshold::new(self.settings.threshold, &self.key_params)
    }

    /// The default threshold for the key's templates ([`default_threshold`]).
    pub fn default_threshold(&self) -> f32 {
        default_threshold(&self.key_params)
    }

    fn push(&mut self, text: String, is_error: bool, topic: Option<Operation>) {
        if !self.notices.iter().any(|n| n.text == text) {
            self.notices.push(Notice {
                text,
                is_error,
                topic,
                at: Instant::now(),
            });
        }
    }

    /// An error not tied to a worker operation.
    pub fn error(&mut self, text: impl Into<String>) {
        self.push(text.into(), true, None);
    }

    /// An error about `op`, cleared when `op` next succeeds.
    pub fn error_about(&mut self, op: Operation, text: impl Into<String>) {
        self.push(text.into(), true, Some(op));
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.push(text.into(), false, None);
    }

    /// Forgets the notices about `op` (it just succeeded).
    pub fn clear_topic(&mut self, op: Operation) {
        self.notices.retain(|n| n.topic != Some(op));
    }

    /// Drops information notices older than [`INFO_NOTICE_TTL`] (errors stay until
    /// dismissed or resolved).
    pub fn expire_notices(&mut self, now: Instant) {
        self.notices
            .retain(|n| n.is_error || now.saturating_duration_since(n.at) < INFO_NOTICE_TTL);
    }

    /// The epoch a result computed now would belong to.
    pub fn epoch(&self) -> Epoch {
        Epoch {
            source: self.frame_source,
            gallery: self.gallery_epoch,
        }
    }

    /// Whether a result of `epoch` describes what is on screen: the same picture, the same
    /// gallery, and a face still in view.
    pub fn is_current(&self, epoch: Epoch) -> bool {
        epoch == self.epoch() && !self.faces.is_empty()
    }

    /// Why an exchange with the matcher no longer describes the screen, if it does not:
    /// another picture (or its face left), or, for a match, another gallery.
    pub fn exchange_staleness(&self, x: &Exchange) -> Option<&'static str> {
        if x.epoch.source != self.frame_source || self.faces.is_empty() {
            Some("previous photo")
        } else if x.distances.is_some() && x.epoch.gallery != self.gallery_epoch {
            Some("the gallery changed since")
        } else {
            None
        }
    }

    /// The gallery changed (enrolment, removal, key, matcher): results in flight are for
    /// the old one, and the faces in view are identified again.
    pub fn gallery_changed(&mut self) {
        self.gallery_epoch += 1;
        self.relabel();
    }

    /// Forgets every tracked face and, in live mode, identifies the faces in view again at
    /// once (a still image gets no new frame to do it).
    pub fn relabel(&mut self) {
        self.tracker.clear();
        self.due_tracks.clear();
        if self.live && self.frame.is_some() {
            let due = self.tracker.update(&self.faces, Instant::now());
            self.due_tracks.extend(due);
        }
    }

    /// Records an exchange with the matcher (what the wire panel shows).
    fn exchange(
        &mut self,
        epoch: Epoch,
        what: String,
        wire: WireView,
        crop: Arc<RgbImage>,
        distances: Option<Vec<PersonDistance>>,
    ) {
        self.exchange_serial += 1;
        self.last_exchange = Some(Exchange {
            epoch,
            what,
            wire,
            crop,
            serial: self.exchange_serial,
            distances,
        });
    }

    /// Frames whose faces were found, per second over the last few seconds.
    pub fn fps(&self) -> f32 {
        rate(&self.frame_times)
    }

    /// Frames shown per second over the last few seconds.
    pub fn preview_fps(&self) -> f32 {
        rate(&self.preview_times)
    }

    /// The selected face, if any.
    pub fn face(&self) -> Option<Face> {
        self.selected_face.and_then(|i| self.faces.get(i).copied())
    }

    /// Distinct enrolled names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.gallery.iter().map(|(_, n)| n.clone()).collect();
        n.sort();
        n.dedup();
        n
    }

    /// Clears every busy flag (the worker was restarted).
    pub fn clear_busy(&mut self) {
        self.busy_enrol = false;
        self.busy_match = false;
        self.busy_frame = false;
        self.due_tracks.clear();
        self.tracker.clear();
    }

    /// Applies one event from the worker.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Frame {
                label,
                source,
                image,
                faces,
                timings,
            } => {
                self.clear_topic(Operation::Frame);
                if source != self.frame_source {
                    // Another picture: no tracked face continues across it.
                    self.frame_source = source;
                    self.tracker.clear();
                    self.due_tracks.clear();
                }
                self.frame_label = label;
                self.frame = Some(image);
                self.frame_serial += 1;
                // Keep the selection on a face if the number of faces did not change.
                if self.selected_face.is_none_or(|i| i >= faces.len()) {
                    self.selected_face = if faces.is_empty() { None } else { Some(0) };
                }
                if self.live {
                    let due = self.tracker.update(&faces, Instant::now());
                    self.due_tracks.extend(due);
                }
                self.faces = faces;
                self.timings.detect_ms = timings.detect_ms;
                push_time(&mut self.frame_times);
            }
            Event::Preview { source, image } => {
                self.busy_frame = false;
                self.preview = Some((source, image));
                self.preview_serial += 1;
                push_time(&mut self.preview_times);
            }
            Event::FrameDropped => self.busy_frame = false,
            Event::Enrolled {
                name,
                crops,
                timings,
                wire,
                ..
            } => {
                self.busy_enrol = false;
                self.clear_topic(Operation::Enrol);
                self.timings.merge(&timings);
                if let Some(crop) = crops.first() {
                    let what = format!("Enrol {name}");
                    self.exchange(self.epoch(), what, wire, crop.clone(), None);
                }
                // The gallery grew: what was computed before is for the old one. The
                // Gallery event that follows lists the new one and identifies again.
                self.gallery_epoch += 1;
                self.tracker.clear();
                self.due_tracks.clear();
            }
            Event::TrackMatched {
                track,
                epoch,
                rows,
                embedding,
                timings,
                wire,
                crop,
            } => {
                // For another picture or gallery: never drawn.
                if epoch != self.epoch() {
                    return;
                }
                self.clear_topic(Operation::Match);
                self.timings.merge(&timings);
                let what = format!("Live identify, {}", self.frame_label);
                self.exchange(epoch, what, wire, crop, Some(rows.clone()));
                self.tracker.matched(track, rows, *embedding);
            }
            Event::TrackFailed {
                track,
                epoch,
                error,
            } => {
                if epoch == self.epoch() {
                    self.tracker.failed(track, error.to_string());
                }
                self.error_about(Operation::Match, error.to_string());
            }
            Event::Matched {
                outcome,
                timings,
                wire,
                crop,
            } => {
                self.busy_match = false;
                // Computed for another picture or gallery: dropped, never drawn
                // (continuous identify sends the next one at once).
                if outcome.epoch != self.epoch() {
                    return;
                }
                self.clear_topic(Operation::Match);
                self.timings.merge(&timings);
                let what = match &outcome.mode {
                    MatchMode::Identify => format!("Identify, {}", outcome.source),
                    MatchMode::Verify(n) => format!("Verify as {n}, {}", outcome.source),
                };
                let rows = Some(outcome.distances.clone());
                self.exchange(outcome.epoch, what, wire, crop, rows);
                if let Some(best) = outcome.distances.first() {
                    let t = self.started.elapsed().as_secs_f64();
                    self.history.push_back((t, best.clone()));
                    while self.history.len() > HISTORY_LEN {
                        self.history.pop_front();
                    }
                }
                self.last_match = Some(outcome);
            }
            Event::Gallery(mut entries) => {
                entries.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
                if entries != self.gallery {
                    self.gallery = entries;
                    // Labels of tracked faces were made against another gallery.
                    self.gallery_changed();
                }
            }
            Event::Connection(c) => {
                match &c {
                    Connection::Failed(msg) => self.error_about(Operation::Connect, msg.clone()),
                    Connection::Ready(_) => {
                        // A working matcher clears earlier connection and matching errors.
                        self.clear_topic(Operation::Connect);
                        self.clear_topic(Operation::Match);
                        self.clear_topic(Operation::Gallery);
                        // Faces labelled "matcher unreachable" are identified again now.
                        if !matches!(self.connection, Connection::Ready(_)) {
                            self.relabel();
                        }
                    }
                    Connection::Connecting => {}
                }
                self.connection = c;
            }
            Event::Key(KeyInfo {
                fingerprint,
                created,
                params,
            }) => {
                // A threshold left at the old templates' default follows the new ones'
                // (v1 and v2 distances are on different scales); one the user chose stays.
                if params != self.key_params
                    && self.settings.threshold == default_threshold(&self.key_params)
                {
                    self.settings.threshold = default_threshold(&params);
                }
                self.key_params = params;
                if fingerprint.is_some() {
                    self.clear_topic(Operation::Key);
                    // Results of another key's gallery are meaningless now.
                    if self.key_fingerprint.is_some() && self.key_fingerprint != fingerprint {
                        self.last_match = None;
                        self.last_exchange = None;
                        self.history.clear();
                        // So are the old key's requests' timings (detection's is the
                        // frame's, and stays).
                        self.timings = Timings {
                            detect_ms: self.timings.detect_ms,
                            ..Timings::default()
                        };
                        // Notices about the old key (e.g. "Now using key ...") go too.
                        self.clear_topic(Operation::Key);
                        self.gallery_changed();
                    }
                }
                self.first_run = created;
                self.key_fingerprint = fingerprint;
                self.key_candidate = None;
            }
            Event::KeyCandidate {
                source,
                fingerprint,
                params,
            } => {
                self.key_candidate = Some(KeyCandidate {
                    source,
                    fingerprint,
                    params,
                })
            }
            Event::Info { op, text } => {
                // Replaces earlier news of the same operation; goes by itself later.
                self.clear_topic(op);
                self.push(text, false, Some(op));
            }
            Event::Failed { op, error } => {
                match op {
                    Operation::Enrol => self.busy_enrol = false,
                    Operation::Match => {
                        self.busy_match = false;
                        self.continuous = false;
                    }
                    Operation::Frame => self.busy_frame = false,
                    _ => {}
                }
                self.error_about(op, error.to_string());
            }
            Event::Crashed { message, .. } => {
                self.clear_busy();
                self.continuous = false;
                self.error(super::protocol::AppError::Crashed(message).to_string());
            }
        }
    }
}
