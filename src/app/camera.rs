//! Camera capture (nokhwa: V4L2 on Linux, AVFoundation, Media Foundation) on threads of its
//! own, with no UI: listing cameras (which can block for seconds, so it never runs on the
//! UI thread) and a capture thread that decodes each frame outside the lock the UI reads
//! and keeps only the newest. Decoding runs inside `catch_unwind` (nokhwa's MJPEG decoder
//! can panic on a corrupt frame: that frame is dropped and counted).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

/// What the window says when there is no camera.
pub const NO_CAMERA: &str =
    "No camera found: connect a webcam and press Camera, or open an image or a folder of photos";

/// Resolutions offered.
pub const RESOLUTIONS: &[(u32, u32)] = &[(640, 480), (1280, 720), (1920, 1080)];

/// A camera the system lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraEntry {
    pub index: u32,
    pub name: String,
}

/// The cameras the system lists (empty if there are none). Blocks: call it off the UI
/// thread ([`list_cameras_async`]).
pub fn list_cameras() -> Result<Vec<CameraEntry>, String> {
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
    let spawned = std::thread::Builder::new()
        .name("blindface-camera-list".into())
        .spawn(move || {
            let _ = tx.send(list_cameras());
        });
    if let Err(e) = spawned {
        let (tx, rx) = channel();
        let _ = tx.send(Err(format!("cannot list cameras: {e}")));
        return rx;
    }
    rx
}

#[derive(Default)]
struct Shared {
    label: Option<String>,
    latest: Option<RgbImage>,
    error: Option<String>,
}

/// A running camera: a capture thread writing its newest frame into a slot.
pub struct Camera {
    name: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    mirror: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn decode(buffer: &nokhwa::Buffer) -> Option<RgbImage> {
    // nokhwa's MJPEG decoder can panic on corrupt data: drop that frame.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        buffer.decode_image::<RgbFormat>()
    }));
    match r {
        Ok(Ok(img)) => RgbImage::from_raw(img.width(), img.height(), img.into_raw()),
        _ => None,
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Camera {
    /// Opens `entry` near `resolution` and starts capturing on its own thread.
    pub fn open(
        entry: &CameraEntry,
        resolution: (u32, u32),
        mirror: bool,
    ) -> Result<Camera, String> {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mirror = Arc::new(AtomicBool::new(mirror));
        let dropped = Arc::new(AtomicU64::new(0));
        let index = entry.index;
        let name = entry.name.clone();
        let camera_name = name.clone();
        {
            let (shared, stop, mirror, dropped) = (
                shared.clone(),
                stop.clone(),
                mirror.clone(),
                dropped.clone(),
            );
            std::thread::Builder::new()
                .name("blindface-camera".into())
                .spawn(move || {
                    let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(
                        CameraFormat::new(
                            Resolution::new(resolution.0, resolution.1),
                            FrameFormat::MJPEG,
                            30,
                        ),
                    ));
                    let opened = std::panic::catch_unwind(|| {
                        let mut cam = nokhwa::Camera::new(CameraIndex::Index(index), format)?;
                        cam.open_stream()?;
                        Ok::<_, nokhwa::NokhwaError>(cam)
                    });
                    let mut cam = match opened {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => {
                            lock(&shared).error = Some(format!(
                                "the camera {name} could not be opened ({e}); is another program using it? You can open an image or a folder instead"
                            ));
                            return;
                        }
                        Err(_) => {
                            lock(&shared).error = Some(format!(
                                "the camera {name} could not be opened; open an image or a folder instead"
                            ));
                            return;
                        }
                    };
                    let f = cam.camera_format();
                    lock(&shared).label = Some(format!(
                        "{name} {}x{}",
                        f.resolution().width(),
                        f.resolution().height()
                    ));
                    while !stop.load(Ordering::Relaxed) {
                        match cam.frame() {
                            Ok(buf) => match decode(&buf) {
                                // Decoded and mirrored before taking the lock the UI reads.
                                Some(mut img) => {
                                    if mirror.load(Ordering::Relaxed) {
                                        image::imageops::flip_horizontal_in_place(&mut img);
                                    }
                                    lock(&shared).latest = Some(img);
                                }
                                None => {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            },
                            Err(e) => {
                                lock(&shared).error = Some(format!(
                                    "the camera stopped ({e}); press Camera to try again, or open an image or a folder"
                                ));
                                break;
                            }
                        }
                    }
                    let _ = cam.stop_stream();
                })
                .map_err(|e| format!("cannot start the camera thread: {e}"))?;
        }
        Ok(Camera {
            name: camera_name,
            shared,
            stop,
            mirror,
            dropped,
        })
    }

    /// Camera name and resolution ("opening" until the stream runs).
    pub fn label(&self) -> String {
        lock(&self.shared)
            .label
            .clone()
            .unwrap_or_else(|| format!("{} (opening...)", self.name))
    }

    /// Mirrors the frames from now on (or stops mirroring).
    pub fn set_mirror(&self, mirror: bool) {
        self.mirror.store(mirror, Ordering::Relaxed);
    }

    /// Frames dropped because they could not be decoded.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The newest frame since the last call, or the error that stopped the camera.
    pub fn latest(&mut self) -> Result<Option<RgbImage>, String> {
        let mut s = lock(&self.shared);
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        Ok(s.latest.take())
    }
}
