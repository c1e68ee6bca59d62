//! Where frames come from: one image, a folder of images shown in turn like a slow video,
//! a camera, or an MJPEG-over-HTTP stream (an IP camera or a phone camera app). No drawing
//! here (the top bar draws the controls).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use super::camera::Camera;
use crate::frames::{FrameCounter, MjpegStream, RawFrame, StreamState};

use crate::vision::list_images;

/// What to analyse next.
pub enum Next {
    File(PathBuf),
    Frame(String, Arc<RgbImage>),
    /// A camera's raw buffer, decoded (and mirrored) on the vision thread.
    Raw {
        label: String,
        frame: RawFrame,
        mirror: bool,
        counter: Arc<FrameCounter>,
    },
}

pub enum Source {
    None,
    Image(PathBuf),
    Folder {
        dir: PathBuf,
        files: Vec<PathBuf>,
        index: usize,
        playing: bool,
        last_switch: Instant,
    },
    Camera(Camera),
    Stream(MjpegStream),
}

/// The file name of `p`, for labels.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Source {
    /// An image file or a folder of images.
    pub fn open_path(path: &Path, autoplay: bool) -> Result<Source, String> {
        if path.is_dir() {
            let files = list_images(path)
                .map_err(|e| format!("cannot read the folder {}: {e}", path.display()))?;
            if files.is_empty() {
                return Err(format!(
                    "the folder {} has no images (jpg, png, bmp, webp); choose another",
                    path.display()
                ));
            }
            Ok(Source::Folder {
                dir: path.to_path_buf(),
                files,
                index: 0,
                playing: autoplay,
                last_switch: Instant::now(),
            })
        } else if path.is_file() {
            Ok(Source::Image(path.to_path_buf()))
        } else {
            Err(format!(
                "{} does not exist; open an existing image or folder",
                path.display()
            ))
        }
    }

    /// The file to load now (image, or the folder's current one).
    pub fn current_file(&self) -> Option<PathBuf> {
        match self {
            Source::Image(p) => Some(p.clone()),
            Source::Folder { files, index, .. } => files.get(*index).cloned(),
            _ => None,
        }
    }

    /// Whether frames keep coming (repaint regularly).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Source::Folder { playing: true, .. } | Source::Camera(_) | Source::Stream(_)
        )
    }

    /// Moves a folder source to file `i` (wrapping); returns the file to load.
    pub fn jump(&mut self, i: usize) -> Option<PathBuf> {
        if let Source::Folder {
            files,
            index,
            last_switch,
            ..
        } = self
        {
            *index = i % files.len();
            *last_switch = Instant::now();
            return Some(files[*index].clone());
        }
        None
    }

    /// Moves a folder source by `delta` files (wrapping).
    pub fn step(&mut self, delta: isize) -> Option<PathBuf> {
        if let Source::Folder { files, index, .. } = self {
            let n = files.len() as isize;
            let i = (*index as isize + delta).rem_euclid(n) as usize;
            return self.jump(i);
        }
        None
    }

    /// Selects a folder file by name; returns it.
    pub fn select(&mut self, name: &str) -> Option<PathBuf> {
        let i = match self {
            Source::Folder { files, .. } => files.iter().position(|f| file_name(f) == name)?,
            _ => return None,
        };
        self.jump(i)
    }

    /// Plays or pauses a folder source.
    pub fn toggle_play(&mut self) {
        if let Source::Folder {
            playing,
            last_switch,
            ..
        } = self
        {
            *playing = !*playing;
            *last_switch = Instant::now();
        }
    }

    /// The next thing to analyse, if it is time. A folder holds its image while `hold`
    /// (the user is typing a name for the face on screen).
    pub fn tick(&mut self, interval_s: f32, hold: bool) -> Option<Next> {
        match self {
            Source::Folder {
                files,
                index,
                playing: true,
                last_switch,
                ..
            } => {
                if hold {
                    *last_switch = Instant::now();
                    return None;
                }
                if last_switch.elapsed().as_secs_f32() < interval_s {
                    return None;
                }
                *index = (*index + 1) % files.len();
                *last_switch = Instant::now();
                Some(Next::File(files[*index].clone()))
            }
            Source::Camera(cam) => cam.latest().map(|frame| Next::Raw {
                label: cam.label(),
                frame,
                mirror: cam.mirror(),
                counter: cam.counter(),
            }),
            Source::Stream(s) => s
                .latest()
                .map(|img| Next::Frame(s.label().to_string(), Arc::new(img))),
            _ => None,
        }
    }

    /// What is wrong with a live source right now (a lost camera, a stream reconnecting);
    /// `None` once it works again.
    pub fn problem(&self) -> Option<String> {
        match self {
            Source::Camera(c) => c.problem(),
            Source::Stream(s) => match s.state() {
                StreamState::Reconnecting(e) => Some(format!(
                    "the stream {} is not available ({e}); reconnecting",
                    s.label()
                )),
                _ => None,
            },
            _ => None,
        }
    }

    /// Frames dropped by a live source (undecodable), if it counts them.
    pub fn dropped(&self) -> Option<u64> {
        match self {
            Source::Camera(c) => Some(c.counter().counts().dropped()),
            Source::Stream(s) => Some(s.counts().dropped()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(dir: &Path) -> Source {
        for n in ["a.jpg", "b.png", "c.jpeg", "notes.txt"] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        Source::open_path(dir, true).unwrap()
    }

    #[test]
    fn folder_steps_wrap_and_hold_while_typing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = folder(dir.path());
        assert_eq!(
            s.current_file().map(|p| file_name(&p)),
            Some("a.jpg".into())
        );
        assert_eq!(s.step(-1).map(|p| file_name(&p)), Some("c.jpeg".into()));
        assert_eq!(s.step(1).map(|p| file_name(&p)), Some("a.jpg".into()));
        assert_eq!(
            s.select("b.png").map(|p| file_name(&p)),
            Some("b.png".into())
        );
        // Interval 0: it would advance at once, but not while the user types.
        assert!(s.tick(0.0, true).is_none());
        assert_eq!(
            s.current_file().map(|p| file_name(&p)),
            Some("b.png".into())
        );
        match s.tick(0.0, false) {
            Some(Next::File(p)) => assert_eq!(file_name(&p), "c.jpeg"),
            _ => panic!("expected the next file"),
        }
    }
}
