//! What the UI and the worker say to each other: [`Command`]s in, [`Event`]s out, and the
//! data both sides share (timings, match outcomes, connection state, typed errors). Both
//! `state.rs` and `worker/` import this module; neither imports the other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use crate::client::keys::KeyError;
use crate::client::{Access, ClientError, WireView};
use crate::he::{HeError, Params, TemplateId};
use crate::live::TrackId;
use crate::matcher::{MatcherError, MatcherSpec};
use crate::ranking::PersonDistance;
use crate::vision::{Face, VisionError};

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

/// Which picture a frame belongs to: every still image loaded, and every camera or stream
/// (re)connection, is a new one. A result computed on one picture is never drawn on
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SourceId(pub u64);

/// What a match result was computed for: the picture, and the gallery as it stood (bumped
/// on every enrolment, removal, key or matcher change). The window drops a result whose
/// epoch is not the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Epoch {
    pub source: SourceId,
    pub gallery: u64,
}

/// 1:1 against one person, or 1:N against everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchMode {
    Verify(String),
    Identify,
}

/// The decrypted result of one verify or identify, best (smallest) first, one row per
/// person (their best template).
#[derive(Debug, Clone)]
pub struct MatchOutcome {
    pub mode: MatchMode,
    /// The picture's name (file name or camera).
    pub source: String,
    /// What it was computed for.
    pub epoch: Epoch,
    pub distances: Vec<PersonDistance>,
    pub at: Instant,
}

/// Whether the matcher answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Ready(String),
    Failed(String),
}

/// What the worker was doing; errors and busy flags are per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Frame,
    /// A live source (camera, stream) and its connection.
    Source,
    Enrol,
    Match,
    Gallery,
    Connect,
    Key,
}

/// Errors that reach the window, typed until the notice turns them into text with what to
/// do in the app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{}", explain_client(.0))]
    Client(#[from] ClientError),
    #[error("{}", explain_key(.0))]
    Key(#[from] KeyError),
    #[error("your secret key cannot be used ({0}), so nothing is enrolled or matched: import your key or generate a new one in Settings")]
    KeyUnusable(String),
    #[error("no matcher is connected; check the matcher in Settings and press Connect")]
    NoMatcher,
    #[error("the face models could not be loaded: {0}. Check that the models/ folder and ONNX Runtime are installed next to blindface.")]
    Models(VisionError),
    #[error("{0}; choose another image or folder")]
    Image(VisionError),
    #[error("face detection failed: {0}")]
    Detect(VisionError),
    #[error("{name} could not be enrolled ({}), and {kept} template(s) enrolled before the failure could not be taken back ({undo}): remove {name} from the gallery and enrol again", explain_client(error))]
    PartialEnrol {
        name: String,
        kept: usize,
        error: Box<ClientError>,
        undo: Box<ClientError>,
    },
    #[error("type the person's name before Capture & enrol")]
    NoName,
    #[error("no face selected: open an image with a face, or face the camera")]
    NoFace,
    #[error("an internal error interrupted the last operation ({0}); the worker was restarted, please try again")]
    Crashed(String),
}

/// A client error with what to do about it in the app.
fn explain_client(e: &ClientError) -> String {
    match e {
        ClientError::Matcher(MatcherError::Unauthorized { url, message, .. }) => format!(
            "the matcher at {url} rejected the access token ({message}): check the token in \
             Settings, or clear it to register a new one"
        ),
        ClientError::Matcher(MatcherError::Unreachable { url, detail }) => format!(
            "cannot reach the matcher at {url} ({detail}): start it with `blindface serve`, \
             check the URL in Settings, or switch to the built-in matcher"
        ),
        ClientError::Matcher(e) => explain_matcher(e),
        ClientError::Crypto(HeError::KeyExists { .. }) => {
            format!("{e}; choose another file name")
        }
        ClientError::Vision(VisionError::NoFace) | ClientError::NoFace => {
            "no face in this frame: face the camera or choose another image".into()
        }
        ClientError::Vision(e) => {
            format!("the face could not be embedded: {e}; select another face or frame")
        }
        ClientError::Label(e) => format!("{e}; type a name first"),
        ClientError::NoSuchPerson(who) => format!(
            "nobody called {who:?} is enrolled; enrol them first or pick someone from the gallery"
        ),
        e => e.to_string(),
    }
}

/// A matcher error with what to do about it in the app (the library's text says only
/// what happened).
fn explain_matcher(e: &MatcherError) -> String {
    match e {
        MatcherError::UnknownId(_) => format!("{e}; the gallery shows what is enrolled"),
        MatcherError::GalleryFull { .. } => format!(
            "{e}; remove some from the gallery, or ask the matcher's operator to allow more \
             templates"
        ),
        MatcherError::StoreLocked { .. } => format!(
            "{e} (a running `blindface serve`, or another blindface window?); close it and \
             press Connect in Settings"
        ),
        MatcherError::TenantQuota { .. } => format!(
            "{e}; remove some from the gallery, or ask the matcher's operator for a larger quota"
        ),
        MatcherError::MemoryBudget { .. } => {
            format!("{e}. Ask the matcher's operator to raise its memory budget")
        }
        MatcherError::GalleryParams { gallery, .. } => format!(
            "{e}. This gallery was made by a key of parameters v{gallery}: import that key \
             (Settings, Import key) to use it, or leave this access token out so that this \
             key registers a gallery of its own"
        ),
        MatcherError::InviteRequired { .. } => format!(
            "{e}: ask its operator for an invitation code, enter it under Invitation in \
             Settings and press Connect"
        ),
        MatcherError::InsecureHttp { .. } => format!(
            "{e}. Use https://, an SSH tunnel to 127.0.0.1, or allow plain HTTP in Settings \
             if you accept that"
        ),
        MatcherError::CertificateChanged { presented, .. } => format!(
            "{e}. If its operator confirms the new fingerprint, enter {presented} under \
             Certificate in Settings and press Connect"
        ),
        e => e.to_string(),
    }
}

/// A key error with what to do about it in the app.
fn explain_key(e: &KeyError) -> String {
    match e {
        KeyError::Missing { .. } => format!("{e}; choose another key file"),
        e => e.to_string(),
    }
}

/// The key the worker holds, as the window may know it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// `None` when the key file could not be read.
    pub fingerprint: Option<String>,
    /// Created on this start (first run).
    pub created: bool,
    /// The key's template parameters: its gallery's (this build's current ones when the
    /// key file could not be read).
    pub params: Params,
}

/// One captured face: the frame and the face in it.
#[derive(Clone)]
pub struct Shot {
    pub image: Arc<RgbImage>,
    pub face: Face,
}

/// What the UI asks of the worker.
pub enum Command {
    /// Load an image file and detect its faces.
    LoadFile { path: PathBuf, source: SourceId },
    /// Detect the faces of a decoded frame (a stream).
    Analyse {
        label: String,
        image: Arc<RgbImage>,
        source: SourceId,
    },
    /// Decode a camera's raw buffer (counting drops), mirror it if asked, detect its faces.
    AnalyseRaw {
        label: String,
        frame: crate::frames::RawFrame,
        mirror: bool,
        counter: Arc<crate::frames::FrameCounter>,
        source: SourceId,
    },
    /// Embed each shot's face, encrypt it and enrol them all under `name` (one person,
    /// several templates; their verdict uses the best). All or nothing: if one shot
    /// fails, the templates already enrolled are removed again.
    Enrol { name: String, shots: Vec<Shot> },
    /// Embed `face`, encrypt it as a probe, verify or identify, decrypt.
    Match {
        image: Arc<RgbImage>,
        face: Face,
        mode: MatchMode,
        source: String,
        epoch: Epoch,
    },
    /// Identify one tracked face (live mode).
    MatchTrack {
        track: TrackId,
        image: Arc<RgbImage>,
        face: Face,
        epoch: Epoch,
    },
    /// Remove templates.
    Remove { ids: Vec<TemplateId> },
    /// List the gallery again.
    Refresh,
    /// Is the matcher still there? (A lost remote matcher is reconnected.)
    CheckConnection,
    /// Switch matcher; a typed token (remote only) is saved for this key and URL once it
    /// works, like a typed fingerprint (the pin).
    Connect { spec: MatcherSpec, access: Access },
    /// Read a key file as a candidate to replace the current key.
    InspectKey(PathBuf),
    /// Make a fresh key the candidate.
    GenerateKey,
    /// Replace the current key with the candidate (saved to the key file first).
    AdoptKey,
    /// Forget the candidate.
    DiscardKey,
    /// Write the current key to a file.
    ExportKey(PathBuf),
    /// Panics inside the worker: exercises the recovery path. Test builds only: the
    /// library's own tests, and `tests/app.rs` through the `test-hooks` feature (see
    /// Cargo.toml); never in the shipped binary.
    #[cfg(any(test, feature = "test-hooks"))]
    Crash,
}

/// What the worker reports.
pub enum Event {
    /// A camera frame could not be decoded (counted by the source); no frame this time.
    FrameDropped,
    /// A new frame to show at once (its faces follow in [`Event::Frame`], unless a newer
    /// frame supersedes it before detection).
    Preview {
        source: SourceId,
        image: Arc<RgbImage>,
    },
    /// A frame's faces (the frame as detected, for cropping and matching).
    Frame {
        label: String,
        source: SourceId,
        image: Arc<RgbImage>,
        faces: Vec<Face>,
        timings: Timings,
    },
    Enrolled {
        name: String,
        ids: Vec<TemplateId>,
        crops: Vec<Arc<RgbImage>>,
        timings: Timings,
        wire: WireView,
    },
    Matched {
        outcome: MatchOutcome,
        timings: Timings,
        wire: WireView,
        /// The probe's face, for "what only the app sees".
        crop: Arc<RgbImage>,
    },
    /// A tracked face's decrypted distances, best per person, with the embedding of the
    /// face they were computed from (the tracker's same-face check).
    TrackMatched {
        track: TrackId,
        epoch: Epoch,
        rows: Vec<PersonDistance>,
        embedding: Box<crate::vision::Embedding>,
        timings: Timings,
        wire: WireView,
        crop: Arc<RgbImage>,
    },
    TrackFailed {
        track: TrackId,
        epoch: Epoch,
        error: AppError,
    },
    /// The gallery: every template id with its decrypted name.
    Gallery(Vec<(TemplateId, String)>),
    Connection(Connection),
    Key(KeyInfo),
    /// A key waiting for confirmation: where it came from (a file's path, or `None` for a
    /// newly generated key), its fingerprint and its template parameters.
    KeyCandidate {
        source: Option<String>,
        fingerprint: String,
        params: Params,
    },
    Info {
        op: Operation,
        text: String,
    },
    Failed {
        op: Operation,
        error: AppError,
    },
    /// The worker panicked and stopped; the UI restarts it.
    Crashed {
        op: Option<Operation>,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_names_its_own_remedies_not_command_line_flags() {
        let shown = |e: MatcherError| AppError::from(ClientError::from(e)).to_string();
        let full = shown(MatcherError::GalleryFull { max: 4 });
        assert!(
            full.starts_with("the gallery is full (4 templates); remove some from the gallery"),
            "{full}"
        );
        let changed = shown(MatcherError::CertificateChanged {
            url: "https://m".into(),
            pinned: "aa".into(),
            presented: "bb".into(),
        });
        assert!(
            changed.contains("enter bb under Certificate in Settings"),
            "{changed}"
        );
        let missing = AppError::from(KeyError::Missing {
            path: "k.key".into(),
        })
        .to_string();
        for text in [full, changed, missing] {
            assert!(
                !text.contains("--") && !text.contains("`blindface "),
                "{text}"
            );
        }
    }
}
