//! UI state, apart from drawing: what the window shows and what the user chose. Panels read
//! and change it; the worker's events update it ([`AppState::apply`]). Verdicts are computed
//! here from already decrypted distances, so moving the threshold never calls the matcher.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::he::{threshold_sq, Params, TemplateId};
use crate::vision::{Face, SFACE_L2_THRESHOLD};

use super::worker::{Event, Timings};

/// How many recent best distances the history chart keeps.
pub const HISTORY_LEN: usize = 60;

/// Which matcher the app talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatcherChoice {
    /// In-process matcher with its store in the data directory.
    Builtin,
    /// `blindface serve` at `url`; an empty token registers a new tenant on first use (the
    /// token is then kept beside the key file).
    Remote { url: String, token: String },
}

/// Settings persisted in the platform config directory (`settings.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub matcher: MatcherChoice,
    pub threshold: f32,
    /// Seconds each image of a folder source stays on screen.
    pub folder_interval_s: f32,
    pub mirror: bool,
    pub show_history: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            matcher: MatcherChoice::Builtin,
            threshold: SFACE_L2_THRESHOLD,
            folder_interval_s: 3.0,
            mirror: true,
            show_history: true,
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

    /// Writes the settings privately (they may hold a matcher token).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("settings serialise");
        crate::fsutil::write_private(path, &bytes, true)
    }
}

/// 1:1 against one person, or 1:N against everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchMode {
    Verify(String),
    Identify,
}

pub use crate::ranking::PersonDistance;

/// The decrypted result of one verify or identify, best (smallest) first, one row per name.
#[derive(Debug, Clone)]
pub struct MatchOutcome {
    pub mode: MatchMode,
    pub source: String,
    pub distances: Vec<PersonDistance>,
    pub at: Instant,
}

/// Verdict of one distance at a threshold.
pub fn is_match(distance_sq: i64, threshold_l2: f32) -> bool {
    distance_sq <= threshold_sq(threshold_l2, &Params::v1())
}

impl MatchOutcome {
    /// The best row if it is within the threshold.
    pub fn verdict(&self, threshold_l2: f32) -> Option<&PersonDistance> {
        self.distances
            .first()
            .filter(|d| is_match(d.distance_sq, threshold_l2))
    }

    /// One line for the window: "Match: NAME" or "No match".
    pub fn verdict_text(&self, threshold_l2: f32) -> String {
        match (self.verdict(threshold_l2), &self.mode) {
            (Some(d), _) => format!("Match: {}", d.name),
            (None, MatchMode::Verify(n)) => format!("No match: this is not {n}"),
            (None, MatchMode::Identify) if self.distances.is_empty() => {
                "No match: the gallery is empty".into()
            }
            (None, MatchMode::Identify) => "No match: nobody in the gallery".into(),
        }
    }
}

/// A message shown in the window, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

/// The face the user enrolled last: its crop and the confirmation.
#[derive(Debug, Clone)]
pub struct EnrolConfirmation {
    pub name: String,
    pub id: TemplateId,
    pub crop: Arc<RgbImage>,
}

/// Whether the matcher answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Ready(String),
    Failed(String),
}

/// Everything the window shows, apart from textures.
pub struct AppState {
    pub settings: Settings,
    /// Name and path of the current frame's source (file name or camera).
    pub frame_label: String,
    pub frame: Option<Arc<RgbImage>>,
    /// Bumped when `frame` changes (the preview re-uploads its texture).
    pub frame_serial: u64,
    pub faces: Vec<Face>,
    pub selected_face: Option<usize>,
    /// Enrolled templates with their decrypted names, sorted by name.
    pub gallery: Vec<(TemplateId, String)>,
    pub last_match: Option<MatchOutcome>,
    pub history: VecDeque<(f64, f32, String)>,
    pub timings: Timings,
    pub notices: Vec<Notice>,
    pub key_fingerprint: String,
    pub key_path: PathBuf,
    pub first_run: bool,
    pub connection: Connection,
    pub enrol_name: String,
    pub last_enrol: Option<EnrolConfirmation>,
    pub verify_name: String,
    pub continuous: bool,
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
            frame_serial: 0,
            faces: Vec::new(),
            selected_face: None,
            gallery: Vec::new(),
            last_match: None,
            history: VecDeque::new(),
            timings: Timings::default(),
            notices: Vec::new(),
            key_fingerprint: String::new(),
            key_path,
            first_run: false,
            connection: Connection::Connecting,
            enrol_name: String::new(),
            last_enrol: None,
            verify_name: String::new(),
            continuous: false,
            busy_enrol: false,
            busy_match: false,
            busy_frame: false,
            frame_times: VecDeque::new(),
            started: Instant::now(),
            matcher_calls: 0,
        }
    }

    pub fn error(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notices.iter().any(|n| n.text == text) {
            self.notices.push(Notice {
                text,
                is_error: true,
            });
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.notices.push(Notice {
            text: text.into(),
            is_error: false,
        });
    }

    /// Frames analysed per second over the last few seconds.
    pub fn fps(&self) -> f32 {
        match (self.frame_times.front(), self.frame_times.back()) {
            (Some(a), Some(b)) if self.frame_times.len() > 1 => {
                let s = b.duration_since(*a).as_secs_f32();
                if s > 0.0 {
                    (self.frame_times.len() - 1) as f32 / s
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
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

    /// Applies one event from the worker.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Frame {
                label,
                image,
                faces,
                timings,
            } => {
                self.busy_frame = false;
                self.frame_label = label;
                self.frame = Some(image);
                self.frame_serial += 1;
                // Keep the selection on a face if the number of faces did not change.
                if self.selected_face.is_none_or(|i| i >= faces.len()) {
                    self.selected_face = if faces.is_empty() { None } else { Some(0) };
                }
                self.faces = faces;
                self.timings.detect_ms = timings.detect_ms;
                let now = Instant::now();
                self.frame_times.push_back(now);
                while self.frame_times.len() > 2
                    && now.duration_since(self.frame_times[0]).as_secs_f32() > 5.0
                {
                    self.frame_times.pop_front();
                }
            }
            Event::FrameFailed(msg) => {
                self.busy_frame = false;
                self.error(msg);
            }
            Event::Enrolled {
                name,
                id,
                crop,
                timings,
            } => {
                self.busy_enrol = false;
                self.timings.merge(&timings);
                self.last_enrol = Some(EnrolConfirmation { name, id, crop });
            }
            Event::Matched { outcome, timings } => {
                self.busy_match = false;
                self.timings.merge(&timings);
                if let Some(best) = outcome.distances.first() {
                    let t = self.started.elapsed().as_secs_f64();
                    self.history.push_back((t, best.l2, best.name.clone()));
                    while self.history.len() > HISTORY_LEN {
                        self.history.pop_front();
                    }
                }
                self.last_match = Some(outcome);
            }
            Event::Gallery(entries) => {
                self.gallery = entries;
                self.gallery
                    .sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            }
            Event::Connection(c) => {
                if let Connection::Failed(msg) = &c {
                    self.error(msg.clone());
                } else {
                    // A working matcher clears earlier connection errors.
                    self.notices.retain(|n| !n.text.contains("matcher"));
                }
                self.connection = c;
            }
            Event::Failed { what, message } => {
                match what {
                    "enrol" => self.busy_enrol = false,
                    "match" => {
                        self.busy_match = false;
                        self.continuous = false;
                    }
                    _ => {}
                }
                self.error(message);
            }
        }
    }
}
