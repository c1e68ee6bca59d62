//! Camera source (nokhwa, V4L2 on Linux): the camera list, a chosen camera and resolution,
//! a mirror toggle, and capture on its own thread. Decoding runs inside `catch_unwind`
//! (nokhwa's MJPEG decoder can panic on a corrupt frame: that frame is dropped). With no
//! camera, the window says so and the file sources remain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use eframe::egui;
use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::source::Source;
use super::BlindfaceApp;

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

/// The cameras the system lists (empty if there are none).
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

#[derive(Default)]
struct Shared {
    label: Option<String>,
    latest: Option<RgbImage>,
    error: Option<String>,
    dropped: u64,
}

/// A running camera: a capture thread writing its newest frame into a slot.
pub struct Camera {
    name: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    pub mirror: Arc<AtomicBool>,
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

impl Camera {
    /// Opens the first camera at 640x480.
    pub fn open_first(mirror: bool) -> Result<Camera, String> {
        let cams = list_cameras()?;
        let first = cams.first().ok_or_else(|| NO_CAMERA.to_string())?;
        Camera::open(first, RESOLUTIONS[0], mirror)
    }

    /// Opens `entry` near `resolution` and starts capturing on its own thread.
    pub fn open(
        entry: &CameraEntry,
        resolution: (u32, u32),
        mirror: bool,
    ) -> Result<Camera, String> {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mirror = Arc::new(AtomicBool::new(mirror));
        let index = entry.index;
        let name = entry.name.clone();
        let camera_name = name.clone();
        {
            let (shared, stop, mirror) = (shared.clone(), stop.clone(), mirror.clone());
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
                            shared.lock().unwrap_or_else(|e| e.into_inner()).error = Some(format!(
                                "the camera {name} could not be opened ({e}); is another program using it? You can open an image or a folder instead"
                            ));
                            return;
                        }
                        Err(_) => {
                            shared.lock().unwrap_or_else(|e| e.into_inner()).error = Some(format!(
                                "the camera {name} could not be opened; open an image or a folder instead"
                            ));
                            return;
                        }
                    };
                    let f = cam.camera_format();
                    shared.lock().unwrap_or_else(|e| e.into_inner()).label = Some(format!(
                        "{name} {}x{}",
                        f.resolution().width(),
                        f.resolution().height()
                    ));
                    while !stop.load(Ordering::Relaxed) {
                        match cam.frame() {
                            Ok(buf) => {
                                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                                match decode(&buf) {
                                    Some(mut img) => {
                                        if mirror.load(Ordering::Relaxed) {
                                            image::imageops::flip_horizontal_in_place(&mut img);
                                        }
                                        s.latest = Some(img);
                                    }
                                    None => s.dropped += 1,
                                }
                            }
                            Err(e) => {
                                shared.lock().unwrap_or_else(|e| e.into_inner()).error = Some(
                                    format!("the camera stopped ({e}); press Camera to try again, or open an image or a folder"),
                                );
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
        })
    }

    /// Camera name and resolution ("opening" until the stream runs).
    pub fn label(&self) -> String {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.label
            .clone()
            .unwrap_or_else(|| format!("{} (opening...)", self.name))
    }

    /// The newest frame since the last call, or the error that stopped the camera.
    pub fn latest(&mut self) -> Result<Option<RgbImage>, String> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        Ok(s.latest.take())
    }
}

/// Camera controls in the top bar: camera list, resolution, start.
pub fn controls(ui: &mut egui::Ui, app: &mut BlindfaceApp) {
    let id = egui::Id::unique("camera-choice");
    let (mut cam_i, mut res_i): (usize, usize) = ui.data(|d| d.get_temp(id)).unwrap_or((0, 0));
    let cams: Vec<CameraEntry> = ui
        .data(|d| d.get_temp::<Vec<(u32, String)>>(id.with("list")))
        .unwrap_or_default()
        .into_iter()
        .map(|(index, name)| CameraEntry { index, name })
        .collect();
    if !cams.is_empty() {
        egui::ComboBox::from_id_salt("camera-list")
            .selected_text(cams.get(cam_i).map(|c| c.name.clone()).unwrap_or_default())
            .show_ui(ui, |ui| {
                for (i, c) in cams.iter().enumerate() {
                    ui.selectable_value(&mut cam_i, i, &c.name);
                }
            });
        egui::ComboBox::from_id_salt("camera-res")
            .selected_text(format!("{}x{}", RESOLUTIONS[res_i].0, RESOLUTIONS[res_i].1))
            .show_ui(ui, |ui| {
                for (i, r) in RESOLUTIONS.iter().enumerate() {
                    ui.selectable_value(&mut res_i, i, format!("{}x{}", r.0, r.1));
                }
            });
    }
    ui.data_mut(|d| d.insert_temp(id, (cam_i, res_i)));
    if ui.button("Camera").clicked() {
        match list_cameras() {
            Ok(list) if list.is_empty() => {
                app.state.error(NO_CAMERA);
            }
            Ok(list) => {
                let entry = list.get(cam_i).unwrap_or(&list[0]).clone();
                ui.data_mut(|d| {
                    d.insert_temp(
                        id.with("list"),
                        list.iter()
                            .map(|c| (c.index, c.name.clone()))
                            .collect::<Vec<_>>(),
                    )
                });
                match Camera::open(&entry, RESOLUTIONS[res_i], app.state.settings.mirror) {
                    Ok(c) => app.source = Source::Camera(c),
                    Err(e) => app.state.error(e),
                }
            }
            Err(e) => app.state.error(e),
        }
    }
    if let Source::Camera(c) = &app.source {
        c.mirror.store(app.state.settings.mirror, Ordering::Relaxed);
    }
}
