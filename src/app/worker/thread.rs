//! What every worker thread is made of: [`Shared`], the way to the UI (events, and the
//! context to wake) and the face pipeline loaded once for all threads; [`Job`], what one
//! thread does; and [`serve`], the loop that runs a job's commands and catches a panic in
//! one (the job releases what it holds, the crash is reported, the thread stops).

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::app::protocol::{AppError, Command, Event, Operation};
use crate::vision::FacePipeline;

/// The context to wake when an event arrives: set once, by the window's first frame, and
/// kept across restarts.
pub(super) type Repaint = Arc<OnceLock<eframe::egui::Context>>;

/// What the threads share: the way to the UI and the face pipeline (loaded once, by
/// whichever thread needs it first).
pub(super) struct Shared {
    events: Sender<Event>,
    repaint: Repaint,
    pipeline: Mutex<Option<Arc<FacePipeline>>>,
}

impl Shared {
    pub(super) fn new(events: Sender<Event>, repaint: Repaint) -> Self {
        Shared {
            events,
            repaint,
            pipeline: Mutex::new(None),
        }
    }

    pub(super) fn send(&self, e: Event) {
        let _ = self.events.send(e);
        if let Some(ctx) = self.repaint.get() {
            ctx.request_repaint();
        }
    }

    /// A frame could not be loaded or its faces found (either frame thread).
    pub(super) fn frame_failed(&self, error: AppError) {
        self.send(Event::Failed {
            op: Operation::Frame,
            error,
        });
    }

    /// The face pipeline, loaded on first use (a failed load is tried again next time).
    pub(super) fn pipeline(&self) -> Result<Arc<FacePipeline>, AppError> {
        let mut p = self.pipeline.lock();
        if p.is_none() {
            *p = Some(Arc::new(
                FacePipeline::load_default().map_err(AppError::Models)?,
            ));
        }
        Ok(p.as_ref().expect("just loaded").clone())
    }
}

/// What a worker thread does: its first step, each command, and what to release if a
/// command panics.
pub(super) trait Job: Send + 'static {
    type Cmd: Send + 'static;
    /// What a command was doing (reported with a crash).
    fn operation(cmd: &Self::Cmd) -> Option<Operation>;
    fn init(&mut self) {}
    fn handle(&mut self, cmd: Self::Cmd);
    fn release(&mut self) {}
}

/// Runs `job` on its own thread: `init`, then each command until the channel closes or a
/// command panics (then `release` runs, the crash is reported, and the thread stops).
pub(super) fn serve<J: Job>(
    name: &str,
    shared: Arc<Shared>,
    rx: Receiver<J::Cmd>,
    mut job: J,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            job.init();
            while let Ok(cmd) = rx.recv() {
                let op = J::operation(&cmd);
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

impl Command {
    /// What the command does (a crash is reported with it).
    pub fn operation(&self) -> Option<Operation> {
        Some(match self {
            Command::LoadFile { .. } | Command::Analyse { .. } | Command::AnalyseRaw { .. } => {
                Operation::Frame
            }
            Command::Enrol { .. } => Operation::Enrol,
            Command::Match { .. } | Command::MatchTrack { .. } => Operation::Match,
            Command::Remove { .. } | Command::Refresh => Operation::Gallery,
            Command::Connect { .. } | Command::CheckConnection => Operation::Connect,
            Command::InspectKey(_)
            | Command::GenerateKey
            | Command::AdoptKey
            | Command::DiscardKey
            | Command::ExportKey(_) => Operation::Key,
            #[cfg(any(test, feature = "test-hooks"))]
            Command::Crash => return None,
        })
    }
}
