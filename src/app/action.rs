//! What a panel asks for ([`Action`]): panels push actions while they draw, and
//! [`BlindfaceApp::apply`](super::BlindfaceApp::apply) carries them out in one place.

use super::dialogs::DialogKind;
use super::protocol::MatchMode;
use crate::he::TemplateId;
use crate::matcher::MatcherSpec;

/// What a panel asks for; [`BlindfaceApp::apply`](super::BlindfaceApp::apply) carries it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Ask(DialogKind),
    /// List the cameras (off the UI thread), then open the chosen one.
    StartCamera {
        choice: usize,
        resolution: (u32, u32),
        fps: u32,
    },
    /// Open an MJPEG-over-HTTP stream (IP camera, phone camera app).
    OpenStream(String),
    FolderStep(isize),
    FolderJump(usize),
    TogglePlay,
    /// Enrol the selected face under the typed name (one shot).
    Enrol,
    /// Add the selected face to the shots of the next enrolment.
    CaptureShot,
    /// Forget the captured shots.
    ClearShots,
    /// Enrol the captured shots as one person under the typed name.
    EnrolShots,
    /// Live mode on or off: every face tracked and identified.
    SetLive(bool),
    Match(MatchMode),
    Remove(Vec<TemplateId>),
    Refresh,
    Connect {
        spec: MatcherSpec,
        access: crate::client::Access,
    },
    GenerateKey,
    AdoptKey,
    DiscardKey,
    /// A setting changed: save it (debounced).
    SettingsChanged,
    Dismiss(usize),
    SelectFace(usize),
}
