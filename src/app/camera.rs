//! Camera capture (nokhwa: V4L2 on Linux, AVFoundation, Media Foundation) on threads of its
//! own, with no UI and no decoding: listing cameras (which can block, so never on the UI
//! thread; on macOS after `nokhwa_initialize`, which asks for the camera permission), and a
//! capture thread that hands over the newest raw buffer (format, size, bytes). Decoding is
//! ours (`crate::frames`), on the vision thread, with dropped frames counted. A camera that
//! disappears mid-stream is reported and reopened every second until it returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use parking_lot::Mutex;

use crate::frames::{FrameCounter, RawFrame};

/// What the window says when there is no camera.
pub const NO_CAMERA: &str =
    "No camera found: connect a webcam and press Camera, or open an image, a folder of photos or a stream URL";

/// Resolutions offered.
pub const RESOLUTIONS: &[(u32, u32)] = &[(640, 480), (1280, 720), (1920, 1080)];

/// Frame rates offered.
pub const FRAME_RATES: &[u32] = &[30, 15, 60];

/// How long a lost camera waits between attempts to reopen it.
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// A camera the system lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraEntry {
    pub index: u32,
    pub name: String,
}

/// What the user chose for a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraRequest {
    pub resolution: (u32, u32),
    pub fps: u32,
    pub mirror: bool,
}

/// On macOS, asks for the camera permission once (nokhwa needs it before the first query)
/// and waits for the answer; elsewhere nothing to do.
fn initialize() -> Result<(), String> {
    #[cfg(target_os = "macos")]
    {
        use std::sync::OnceLock;
        static GRANTED: OnceLock<bool> = OnceLock::new();
        let granted = *GRANTED.get_or_init(|| {
            let (tx, rx) = channel();
            nokhwa::nokhwa_initialize(move |ok| {
                let _ = tx.send(ok);
            });
            rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false)
        });
        if !granted {
            return Err("camera access was not granted: allow blindface under System Settings -> Privacy & Security -> Camera, then press Camera again".into());
        }
    }
    Ok(())
}

/// The cameras the system lists (empty if there are none). Blocks: call it off the UI
/// thread ([`list_cameras_async`]).
pub fn list_cameras() -> Result<Vec<CameraEntry>, String> {
    initialize()?;
    let infos = std::panic::catch_unwind(|| nokhwa::query(ApiBackend::Auto))
        .map_err(|_| "the camera list could not be read".to_string())?
        .map_err(|e| format!("the camera list could not be read: {e}"))?;
    Ok(infos
        .iter()
        .map(|i| CameraEntry {
            index: match i.index() {
                CameraIndex::Index(n) => *n,
                CameraIndex::String(_) => 0,
            },
            name: i.human_name(),
        })
        .collect())
}

/// Lists the cameras on a thread of its own; the answer arrives on the receiver.
pub fn list_cameras_async() -> Receiver<Result<Vec<CameraEntry>, String>> {
    let (tx, rx) = channel();
    let fallback = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("blindface-camera-list".into())
        .spawn(move || {
            let _ = tx.send(list_cameras());
        });
    if let Err(e) = spawned {
        let _ = fallback.send(Err(format!("cannot list cameras: {e}")));
    }
    rx
}

/// Where a camera is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraState {
    Opening,
    /// Streaming at this resolution and rate.
    Streaming {
        width: u32,
        height: u32,
        fps: u32,
    },
    /// The camera failed or disappeared; it is reopened every [`REOPEN_EVERY`].
    Lost(String),
}

#[derive(Default)]
struct Shared {
    state: Option<CameraState>,
    latest: Option<RawFrame>,
}

/// A running camera: a capture thread writing its newest raw frame into a slot.
pub struct Camera {
    name: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    mirror: Arc<AtomicBool>,
    counter: Arc<FrameCounter>,
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn open_stream(index: u32, req: CameraRequest) -> Result<nokhwa::Camera, String> {
    let format =
        RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(CameraFormat::new(
            Resolution::new(req.resolution.0, req.resolution.1),
            FrameFormat::MJPEG,
            req.fps,
        )));
    let opened = std::panic::catch_unwind(|| {
        let mut cam = nokhwa::Camera::new(CameraIndex::Index(index), format)?;
        cam.open_stream()?;
        Ok::<_, nokhwa::NokhwaError>(cam)
    });
    match opened {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!(
            "it could not be opened ({e}); is another program using it?"
        )),
        Err(_) => Err("it could not be opened".into()),
    }
}

impl Camera {
    /// Opens `entry` near the requested format and starts capturing on its own thread.
    pub fn open(entry: &CameraEntry, req: CameraRequest) -> Result<Camera, String> {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mirror = Arc::new(AtomicBool::new(req.mirror));
        let index = entry.index;
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("blindface-camera".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        shared.lock().state.get_or_insert(CameraState::Opening);
                        let mut cam = match open_stream(index, req) {
                            Ok(c) => c,
                            Err(e) => {
                                shared.lock().state = Some(CameraState::Lost(e));
                                std::thread::sleep(REOPEN_EVERY);
                                continue;
                            }
                        };
                        let f = cam.camera_format();
                        shared.lock().state = Some(CameraState::Streaming {
                            width: f.resolution().width(),
                            height: f.resolution().height(),
                            fps: f.frame_rate(),
                        });
                        while !stop.load(Ordering::Relaxed) {
                            match cam.frame() {
                                // Only the raw buffer crosses: decoding is ours, elsewhere.
                                Ok(buf) => shared.lock().latest = Some(RawFrame::from_nokhwa(&buf)),
                                Err(e) => {
                                    shared.lock().state =
                                        Some(CameraState::Lost(format!("it stopped ({e})")));
                                    break;
                                }
                            }
                        }
                        let _ = cam.stop_stream();
                        if !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(REOPEN_EVERY);
                        }
                    }
                })
                .map_err(|e| format!("cannot start the camera thread: {e}"))?;
        }
        Ok(Camera {
            name: entry.name.clone(),
            shared,
            stop,
            mirror,
            counter: Arc::new(FrameCounter::new()),
        })
    }

    /// Camera name, and resolution and rate once streaming.
    pub fn label(&self) -> String {
        match self.state() {
            CameraState::Streaming { width, height, fps } => {
                format!("{} {width}x{height} {fps} fps", self.name)
            }
            CameraState::Opening => format!("{} (opening...)", self.name),
            CameraState::Lost(_) => format!("{} (lost, retrying)", self.name),
        }
    }

    pub fn state(&self) -> CameraState {
        self.shared
            .lock()
            .state
            .clone()
            .unwrap_or(CameraState::Opening)
    }

    /// Mirrors the frames from now on (or stops mirroring).
    pub fn set_mirror(&self, mirror: bool) {
        self.mirror.store(mirror, Ordering::Relaxed);
    }

    pub fn mirror(&self) -> bool {
        self.mirror.load(Ordering::Relaxed)
    }

    /// Counts of decoded and dropped frames (decoding happens on the vision thread).
    pub fn counter(&self) -> Arc<FrameCounter> {
        self.counter.clone()
    }

    /// The newest raw frame since the last call.
    pub fn latest(&self) -> Option<RawFrame> {
        self.shared.lock().latest.take()
    }

    /// A message for the window when the camera is lost.
    pub fn problem(&self) -> Option<String> {
        match self.state() {
            CameraState::Lost(e) => Some(format!(
                "the camera {} is not available: {e}. It is reopened as soon as it returns; \
                 meanwhile you can open an image, a folder or a stream URL",
                self.name
            )),
            _ => None,
        }
    }
}
