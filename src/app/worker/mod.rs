//! The app's worker: all heavy work, on three background threads sharing one face pipeline,
//! so neither detection nor matching bounds the preview. This file is the handle the window
//! holds ([`Worker`]: starting the threads, routing each [`Command`] to its thread, draining
//! [`Event`]s, restarting after a crash). The threads live beside it: `vision` (the vision
//! and detect threads: frames to the window at once, faces of the newest frame), `client`
//! (the client thread: the app-side [`crate::client::Client`] and the key, which the window
//! never sees) and `thread` (what they share, and the loop that catches a panic).
//!
//! The UI sends [`Command`]s and drains [`Event`]s each frame; it never waits. A panic in a
//! command is caught: the thread reports [`Event::Crashed`] and stops, and the UI starts a
//! fresh worker ([`Worker::restart`]), so busy flags never stay set.

mod client;
mod thread;
mod vision;

pub use client::{crop, WorkerConfig};
pub use vision::{CloseUpSchedule, CLOSE_UP_CHECK_EVERY};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;

use super::protocol::{Command, Event};
use crate::matcher::MatcherSpec;
use thread::{Repaint, Shared};

/// Handle to the worker threads.
pub struct Worker {
    config: WorkerConfig,
    client_tx: Sender<Command>,
    vision_tx: Sender<Command>,
    rx: Receiver<Event>,
    repaint: Repaint,
    match_calls: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    /// Closes the command channels and waits for the threads to finish their current
    /// command, so the store and the key are released when the worker is gone (a new
    /// worker, or another app on the same data directory, can open them at once).
    fn drop(&mut self) {
        let (closed, _) = channel();
        self.client_tx = closed.clone();
        self.vision_tx = closed;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Worker {
    /// Starts the worker: it opens the key (creating it on first run) and connects.
    pub fn spawn(config: WorkerConfig) -> Self {
        Self::start(config, Arc::default(), Arc::default())
    }

    fn start(config: WorkerConfig, repaint: Repaint, match_calls: Arc<AtomicU64>) -> Self {
        let (client_tx, client_rx) = channel::<Command>();
        let (vision_tx, vision_rx) = channel::<Command>();
        let (ev_tx, rx) = channel::<Event>();
        let shared = Arc::new(Shared::new(ev_tx, repaint.clone()));
        let [vision_thread, detect_thread] = vision::spawn(shared.clone(), vision_rx);
        let client_thread = client::spawn(&config, shared, client_rx, match_calls.clone());
        Worker {
            config,
            client_tx,
            vision_tx,
            rx,
            repaint,
            match_calls,
            threads: vec![vision_thread, detect_thread, client_thread],
        }
    }

    /// A fresh worker with the same configuration (after a crash), connecting to `spec`.
    pub fn restart(&mut self, spec: MatcherSpec, insecure_http: bool) {
        let mut config = self.config.clone();
        config.matcher = spec;
        config.insecure_http = insecure_http;
        *self = Self::start(config, self.repaint.clone(), self.match_calls.clone());
    }

    /// The context to wake when an event arrives.
    pub fn set_repaint(&self, ctx: &eframe::egui::Context) {
        // The first context stays (it is the one window's).
        let _ = self.repaint.set(ctx.clone());
    }

    pub fn send(&self, cmd: Command) {
        // A send fails only once a thread stopped after a crash; its Crashed event (or
        // the closed channel, see `drain`) makes the UI restart the worker.
        let tx = match cmd {
            Command::LoadFile { .. } | Command::Analyse { .. } | Command::AnalyseRaw { .. } => {
                &self.vision_tx
            }
            _ => &self.client_tx,
        };
        let _ = tx.send(cmd);
    }

    /// Events that arrived since the last call; a worker that vanished without a word is
    /// reported as crashed.
    pub fn drain(&self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !out.iter().any(|e| matches!(e, Event::Crashed { .. })) {
                        out.push(Event::Crashed {
                            op: None,
                            message: "the worker stopped".into(),
                        });
                    }
                    break;
                }
            }
        }
        out
    }

    /// Verify and identify calls made to the matcher so far (kept across restarts).
    pub fn match_calls(&self) -> u64 {
        self.match_calls.load(Ordering::Relaxed)
    }
}
