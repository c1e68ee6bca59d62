//! The frame threads: the vision thread loads or decodes every frame and hands it to the
//! window at once (the preview runs at the source's rate), then to the detect thread, which
//! finds the faces of the newest frame whenever it is free (a frame superseded while
//! waiting is skipped, the newest never is). In live video the full close-up check runs on
//! one frame in [`CLOSE_UP_CHECK_EVERY`] ([`CloseUpSchedule`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use image::RgbImage;

use super::thread::{serve, Job, Shared};
use crate::app::protocol::{AppError, Command, Event, Operation, SourceId, Timings};
use crate::client::elapsed_ms;
use crate::vision::{load_image, CloseUpPass};

/// Starts the vision thread, which takes the frame commands from `commands`, and the detect
/// thread behind it; returns them in that order.
pub(super) fn spawn(shared: Arc<Shared>, commands: Receiver<Command>) -> [JoinHandle<()>; 2] {
    let (detect_tx, detect_rx) = channel::<Detect>();
    let newest = Arc::new(AtomicU64::new(0));
    let detect_thread = serve(
        "blindface-detect",
        shared.clone(),
        detect_rx,
        Detector {
            shared: shared.clone(),
            newest: newest.clone(),
            close_up: CloseUpSchedule::default(),
        },
    );
    let vision_thread = serve(
        "blindface-vision",
        shared.clone(),
        commands,
        Vision {
            shared,
            detect: detect_tx,
            newest,
            seq: 0,
        },
    );
    [vision_thread, detect_thread]
}

/// The vision thread: every frame loaded or decoded, shown at once, then handed to the
/// detect thread.
struct Vision {
    shared: Arc<Shared>,
    detect: Sender<Detect>,
    /// The sequence number of the newest frame handed over (the detect thread skips older
    /// ones still waiting).
    newest: Arc<AtomicU64>,
    seq: u64,
}

/// A frame for the detect thread.
struct Detect {
    label: String,
    source: SourceId,
    image: Arc<RgbImage>,
    seq: u64,
    /// A frame of live video (camera, stream), not a still image.
    live: bool,
}

/// In live video the full close-up check runs on every this-many frames of a picture;
/// the frames between look for close-ups only when no face at all was found. A face
/// stepping close to the camera beside others is found within this many frames (0.1 s at
/// 30 fps), and detection costs about one YuNet run a frame instead of two.
pub const CLOSE_UP_CHECK_EVERY: u32 = 3;

/// Which close-up pass each frame gets: every still image and the first frame of each
/// picture the full rule, then one frame in [`CLOSE_UP_CHECK_EVERY`].
#[derive(Debug, Default)]
pub struct CloseUpSchedule {
    last: Option<(SourceId, u32)>,
}

impl CloseUpSchedule {
    pub fn next(&mut self, source: SourceId, live: bool) -> CloseUpPass {
        let since = match self.last {
            Some((s, n)) if live && s == source => n + 1,
            _ => 0,
        };
        let due = since % CLOSE_UP_CHECK_EVERY == 0;
        self.last = Some((source, if due { 0 } else { since }));
        if due {
            CloseUpPass::WhenItCanFindMore
        } else {
            CloseUpPass::WhenNothingFound
        }
    }
}

/// The detect thread: the faces of the newest frame.
struct Detector {
    shared: Arc<Shared>,
    newest: Arc<AtomicU64>,
    close_up: CloseUpSchedule,
}

impl Job for Detector {
    type Cmd = Detect;
    fn operation(_: &Detect) -> Option<Operation> {
        Some(Operation::Frame)
    }
    fn handle(&mut self, d: Detect) {
        // A newer frame waits behind this one: skip to it (the newest is never skipped).
        if d.seq < self.newest.load(Ordering::Acquire) {
            return;
        }
        let t = Instant::now();
        let mode = self.close_up.next(d.source, d.live);
        let faces = match self.shared.pipeline().and_then(|p| {
            p.detection_with_close_up(&d.image, mode)
                .map(|d| d.faces)
                .map_err(AppError::Detect)
        }) {
            Ok(f) => f,
            Err(error) => return self.shared.frame_failed(error),
        };
        self.shared.send(Event::Frame {
            label: d.label,
            source: d.source,
            image: d.image,
            faces,
            timings: Timings {
                detect_ms: Some(elapsed_ms(t)),
                ..Timings::default()
            },
        });
    }
}

impl Job for Vision {
    type Cmd = Command;
    fn operation(cmd: &Command) -> Option<Operation> {
        cmd.operation()
    }
    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::LoadFile { path, source } => {
                let label = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                match load_image(&path) {
                    Ok(img) => self.analyse(label, source, Arc::new(img), false),
                    Err(e) => self.shared.frame_failed(AppError::Image(e)),
                }
            }
            Command::Analyse {
                label,
                image,
                source,
            } => self.analyse(label, source, image, true),
            Command::AnalyseRaw {
                label,
                frame,
                mirror,
                counter,
                source,
            } => match counter.decode(&frame) {
                Ok(mut img) => {
                    if mirror {
                        image::imageops::flip_horizontal_in_place(&mut img);
                    }
                    self.analyse(label, source, Arc::new(img), true);
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
    /// Shows the frame now and hands it to the detect thread.
    fn analyse(&mut self, label: String, source: SourceId, image: Arc<RgbImage>, live: bool) {
        self.shared.send(Event::Preview {
            source,
            image: image.clone(),
        });
        self.seq += 1;
        self.newest.store(self.seq, Ordering::Release);
        let _ = self.detect.send(Detect {
            label,
            source,
            image,
            seq: self.seq,
            live,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_video_gets_the_full_close_up_check_every_few_frames_and_stills_always() {
        let mut s = CloseUpSchedule::default();
        let (cam, other) = (SourceId(1), SourceId(2));
        let modes: Vec<_> = (0..7).map(|_| s.next(cam, true)).collect();
        use CloseUpPass::{WhenItCanFindMore as Full, WhenNothingFound as Light};
        assert_eq!(modes, [Full, Light, Light, Full, Light, Light, Full]);
        // A new picture starts with the full check; so does every still image.
        assert_eq!(s.next(cam, true), Light);
        assert_eq!(s.next(other, true), Full);
        assert_eq!(s.next(other, false), Full);
        assert_eq!(s.next(other, false), Full);
    }
}
