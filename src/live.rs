//! The live path: every face in view tracked across frames and identified on a schedule.
//!
//! Detection runs on every frame; [`Tracker::update`] keeps each face's identity across
//! frames by greedy IoU matching of boxes, and says which tracks are due for matching: a
//! new face at once, then each face every [`TrackerConfig::rematch_every`], never while a
//! match for it is in flight. A face unseen for more than [`TrackerConfig::max_missed`]
//! frames is dropped, so one that leaves and comes back is a new track and is identified
//! again. Verdicts are not stored: a track keeps its decrypted distances, and the caller
//! compares them with the threshold when drawing, so moving the threshold re-colours every
//! label without a matcher call. No UI, camera or network here.

use std::time::{Duration, Instant};

use crate::ranking::PersonDistance;
use crate::vision::{iou, Face};

/// Tracker tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Smallest IoU for a detection to continue a track.
    pub min_iou: f32,
    /// Frames a track survives without a detection.
    pub max_missed: u32,
    /// How often a tracked face is matched again.
    pub rematch_every: Duration,
    /// At most this many tracks (the largest faces win).
    pub max_tracks: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_iou: 0.3,
            max_missed: 8,
            rematch_every: Duration::from_millis(500),
            max_tracks: 8,
        }
    }
}

/// Stable id of a tracked face.
pub type TrackId = u64;

/// One tracked face.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: TrackId,
    /// The latest detection.
    pub face: Face,
    /// Decrypted distances of the last match, best per person, best first (empty: not
    /// matched yet, or nobody enrolled).
    pub rows: Vec<PersonDistance>,
    /// Whether a match has come back for this track.
    pub matched: bool,
    /// When the last match was sent.
    pub last_sent: Option<Instant>,
    /// A match is in flight.
    pub pending: bool,
    missed: u32,
}

impl Track {
    /// The best row (the verdict compares it with the threshold).
    pub fn best(&self) -> Option<&PersonDistance> {
        self.rows.first()
    }
}

/// Faces tracked across frames.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: TrackId,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// The tracks seen in the latest frame (those currently missed are left out).
    pub fn visible(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.missed == 0)
    }

    pub fn get(&self, id: TrackId) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Forgets every track (a new source, another gallery).
    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    /// Takes the faces of a new frame (largest first, as detection gives them) and
    /// returns the ids of the tracks due for matching now, marked pending.
    pub fn update(&mut self, faces: &[Face], now: Instant) -> Vec<TrackId> {
        let faces = &faces[..faces.len().min(self.config.max_tracks)];
        // Greedy IoU assignment, best pairs first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (fi, f) in faces.iter().enumerate() {
                let v = iou(&t.face.bbox, &f.bbox);
                if v >= self.config.min_iou {
                    pairs.push((v, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut face_taken = vec![false; faces.len()];
        for (_, ti, fi) in pairs {
            if track_taken[ti] || face_taken[fi] {
                continue;
            }
            track_taken[ti] = true;
            face_taken[fi] = true;
            self.tracks[ti].face = faces[fi];
            self.tracks[ti].missed = 0;
        }
        for (ti, taken) in track_taken.iter().enumerate() {
            if !taken {
                self.tracks[ti].missed += 1;
            }
        }
        let max_missed = self.config.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        for (fi, f) in faces.iter().enumerate() {
            if !face_taken[fi] {
                self.tracks.push(Track {
                    id: self.next_id,
                    face: *f,
                    rows: Vec::new(),
                    matched: false,
                    last_sent: None,
                    pending: false,
                    missed: 0,
                });
                self.next_id += 1;
            }
        }
        let every = self.config.rematch_every;
        let mut due = Vec::new();
        for t in self
            .tracks
            .iter_mut()
            .filter(|t| t.missed == 0 && !t.pending)
        {
            if t.last_sent.is_none_or(|s| now.duration_since(s) >= every) {
                t.pending = true;
                t.last_sent = Some(now);
                due.push(t.id);
            }
        }
        due
    }

    /// Records a match's decrypted distances for a track (ignored if it is gone).
    pub fn matched(&mut self, id: TrackId, rows: Vec<PersonDistance>) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == id) {
            t.rows = rows;
            t.matched = true;
            t.pending = false;
        }
    }

    /// A match for a track failed: it becomes due again at the next interval.
    pub fn failed(&mut self, id: TrackId) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == id) {
            t.pending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::TemplateId;

    fn face(x: f32, y: f32) -> Face {
        Face {
            score: 0.9,
            bbox: [x, y, 100.0, 100.0],
            landmarks: [[x + 30.0, y + 40.0]; 5],
        }
    }

    fn row(name: &str) -> Vec<PersonDistance> {
        vec![PersonDistance {
            name: name.into(),
            id: TemplateId(1),
            distance_sq: 100,
            l2: 0.1,
        }]
    }

    #[test]
    fn identities_stay_with_moving_faces_and_rematch_on_schedule() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let due = tr.update(&[face(0.0, 0.0), face(300.0, 0.0)], t0);
        assert_eq!(due.len(), 2, "new faces are matched at once");
        let (a, b) = (due[0], due[1]);
        tr.matched(a, row("Ann"));
        tr.matched(b, row("Bob"));
        // Faces drift 10 px per frame, 40 ms apart: same tracks, nothing due until 0.5 s.
        let mut matched_again = Vec::new();
        for k in 1..=15u32 {
            let dx = 10.0 * k as f32;
            let now = t0 + Duration::from_millis(40 * k as u64);
            // The order of detections changes: identity follows the box, not the index.
            let due = tr.update(&[face(300.0 + dx, 0.0), face(dx, 0.0)], now);
            let visible: Vec<_> = tr.visible().map(|t| t.id).collect();
            assert_eq!(visible.len(), 2);
            assert_eq!(tr.get(a).unwrap().best().unwrap().name, "Ann");
            assert_eq!(tr.get(a).unwrap().face.bbox[0], dx);
            assert_eq!(tr.get(b).unwrap().best().unwrap().name, "Bob");
            if !due.is_empty() {
                matched_again.push((k, due.clone()));
                for id in due {
                    tr.matched(id, tr.get(id).unwrap().rows.clone());
                }
            }
        }
        // 0.5 s after the first match (frame 13, 520 ms), both are matched again, once.
        assert_eq!(matched_again.len(), 1, "{matched_again:?}");
        assert_eq!(matched_again[0].0, 13);
    }

    #[test]
    fn a_face_that_leaves_and_returns_is_identified_again() {
        let cfg = TrackerConfig::default();
        let mut tr = Tracker::new(cfg);
        let t0 = Instant::now();
        let first = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(first, row("Ann"));
        for k in 1..=cfg.max_missed + 1 {
            tr.update(&[], t0 + Duration::from_millis(40 * k as u64));
        }
        assert!(tr.get(first).is_none(), "gone after max_missed frames");
        let due = tr.update(&[face(0.0, 0.0)], t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_ne!(due[0], first, "a new track");
        assert!(!tr.get(due[0]).unwrap().matched);
    }

    #[test]
    fn a_pending_match_is_not_sent_twice() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let id = tr.update(&[face(0.0, 0.0)], t0)[0];
        // No answer yet, long after the interval: still not due again.
        assert!(tr
            .update(&[face(0.0, 0.0)], t0 + Duration::from_secs(2))
            .is_empty());
        tr.failed(id);
        assert_eq!(
            tr.update(&[face(0.0, 0.0)], t0 + Duration::from_secs(3)),
            vec![id]
        );
    }
}
