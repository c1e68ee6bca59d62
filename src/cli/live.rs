//! `blindface identify --all-faces SOURCE`: the app's live path, headless. Every frame of
//! an image, a folder (each image a frame, tracked afresh) or an MJPEG stream URL (`--frames
//! N`, tracked across frames) is detected; the tracker schedules matching per face
//! (`crate::live`) and the app-side client identifies each due face through the encrypted
//! matcher. Printed per frame and face: the box, the best match, its decrypted distance and
//! the verdict.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use blindface::client::face::embed_face;
use blindface::client::Client;
use blindface::frames::MjpegStream;
use blindface::he::Threshold;
use blindface::live::{Tracker, TrackerConfig};
use blindface::vision::{list_images, load_image, FacePipeline};

use super::output::{emit, Globals};

#[derive(Serialize)]
struct FaceOut {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    /// The best match (whatever the verdict); `None` when nobody is enrolled.
    name: Option<String>,
    l2: Option<f32>,
    same_person: bool,
}

#[derive(Serialize)]
struct FrameOut {
    source: String,
    faces: Vec<FaceOut>,
}

#[derive(Serialize)]
struct Output {
    threshold: f32,
    matcher: String,
    matcher_calls: u64,
    frames: Vec<FrameOut>,
}

/// How long a stream may take to deliver its frames.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

struct Live {
    pipeline: FacePipeline,
    client: Client,
    tracker: Tracker,
    calls: u64,
    /// For the key's templates.
    threshold: Threshold,
}

impl Live {
    /// Detects, tracks, identifies the due faces; returns the frame's faces.
    fn frame(&mut self, source: String, img: &image::RgbImage) -> Result<FrameOut> {
        let faces = self.pipeline.detect(img)?;
        for id in self.tracker.update(&faces, Instant::now()) {
            let face = self.tracker.get(id).expect("just tracked").face;
            let embedded = embed_face(&self.pipeline, img, &face, self.client.params())?;
            let report = self.client.identify(&embedded.template)?;
            self.calls += report.calls;
            self.tracker
                .matched(id, report.best_per_person(), embedded.embedding);
        }
        let threshold = self.threshold;
        let mut faces: Vec<FaceOut> = self
            .tracker
            .visible()
            .map(|t| FaceOut {
                bbox: t.face.bbox,
                name: t.best().map(|b| b.name.clone()),
                l2: t.best().map(|b| b.l2),
                same_person: t.best().is_some_and(|b| threshold.accepts(b.distance_sq)),
            })
            .collect();
        faces.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
        Ok(FrameOut { source, faces })
    }
}

pub fn identify_all(globals: &Globals, source: &str, frames: usize) -> Result<()> {
    let client = super::gallery::client(globals)?;
    let (threshold, _) = globals.threshold.resolve(client.params())?;
    let mut live = Live {
        pipeline: FacePipeline::load_default()?,
        client,
        tracker: Tracker::new(TrackerConfig::default()),
        calls: 0,
        threshold,
    };
    let mut out = Vec::new();
    if source.starts_with("http://") || source.starts_with("https://") {
        let stream = MjpegStream::open(source)?;
        let deadline = Instant::now() + STREAM_DEADLINE;
        let mut n = 0;
        while out.len() < frames {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {frames} frames arrived from {} within {} s ({:?})",
                    out.len(),
                    stream.label(),
                    STREAM_DEADLINE.as_secs(),
                    stream.state()
                );
            }
            match stream.latest() {
                Some(img) => {
                    n += 1;
                    out.push(live.frame(format!("{} #{n}", stream.label()), &img)?);
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    } else {
        let path = std::path::Path::new(source);
        let files = if path.is_dir() {
            let files = list_images(path)
                .with_context(|| format!("cannot read the folder {}", path.display()))?;
            if files.is_empty() {
                bail!("the folder {} has no images", path.display());
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            // Photos of a folder are unrelated: no identity carries over.
            live.tracker.clear();
            let img = load_image(&f)?;
            out.push(live.frame(f.display().to_string(), &img)?);
        }
    }
    let o = Output {
        threshold: threshold.l2(),
        matcher: live.client.describe(),
        matcher_calls: live.calls,
        frames: out,
    };
    emit(globals, &o, || {
        let mut s = format!(
            "{} frame(s) against the {} (threshold {:.3}, {} matcher call(s))\n",
            o.frames.len(),
            o.matcher,
            o.threshold,
            o.matcher_calls
        );
        for f in &o.frames {
            s += &format!("{}: {} face(s)\n", f.source, f.faces.len());
            for face in &f.faces {
                let b = face.bbox;
                let who = match (&face.name, face.l2) {
                    (Some(n), Some(l2)) if face.same_person => {
                        format!("{n} (L2 {l2:.4}) same person")
                    }
                    (Some(n), Some(l2)) => format!("unknown (closest {n}, L2 {l2:.4})"),
                    _ => "nobody enrolled".into(),
                };
                s += &format!(
                    "  box {:>5.0} {:>5.0} {:>4.0}x{:<4.0} {who}\n",
                    b[0], b[1], b[2], b[3]
                );
            }
        }
        s
    });
    Ok(())
}
