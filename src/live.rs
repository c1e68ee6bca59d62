//! The live path: every face in view tracked across frames and identified on a schedule.
//!
//! Detection runs on every frame; [`Tracker::update`] keeps each face's identity across
//! frames and says which tracks are due for matching: a new face at once, then each face
//! every [`TrackerConfig::rematch_every`], never while a match for it is in flight.
//!
//! Invariant: a track's result is shown only for the face it was computed from. So a box
//! continues a track only if it overlaps it well (IoU), has about its size, and follows it
//! within [`TrackerConfig::max_gap`]; a weaker continuation ([`TrackerConfig::keep_label_iou`])
//! withdraws the label and re-identifies the face at once; and each answer carries the
//! plaintext embedding of the face it was computed from (it never leaves the app): an
//! answer whose face is not the track's (L2 beyond [`TrackerConfig::same_face_l2`]) ends
//! the track and starts a new one with that answer. The caller clears the tracker when the
//! picture changes (another photo, source or gallery). A face unseen for more than
//! [`TrackerConfig::max_missed`] frames is dropped, so one that leaves and comes back is a
//! new track and is identified again. A failed match leaves no old name: the track says
//! why ([`TrackStatus::Unreachable`]) until the next answer. Verdicts are not stored: a
//! track keeps its decrypted distances, and the caller compares them with the threshold
//! when drawing, so moving the threshold re-colours every label without a matcher call. No
//! UI, camera or network here.

use std::time::{Duration, Instant};

use crate::ranking::PersonDistance;
use crate::vision::{iou, Embedding, Face, SFACE_L2_THRESHOLD};

/// Tracker tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Smallest IoU for a detection to continue a track.
    pub min_iou: f32,
    /// Below this IoU a continued track loses its label and is identified again at once.
    pub keep_label_iou: f32,
    /// Largest ratio between the areas of a track's box and the box continuing it.
    pub max_area_ratio: f32,
    /// Frames a track survives without a detection.
    pub max_missed: u32,
    /// Longest time between two frames for a track to continue across them.
    pub max_gap: Duration,
    /// How often a tracked face is matched again.
    pub rematch_every: Duration,
    /// At most this many tracks (the largest faces win).
    pub max_tracks: usize,
    /// Two embeddings farther apart than this (L2) are not the same face.
    pub same_face_l2: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_iou: 0.3,
            keep_label_iou: 0.5,
            max_area_ratio: 1.6,
            max_missed: 8,
            max_gap: Duration::from_secs(5),
            rematch_every: Duration::from_millis(500),
            max_tracks: 8,
            same_face_l2: SFACE_L2_THRESHOLD,
        }
    }
}

/// Stable id of a tracked face.
pub type TrackId = u64;

/// Where a track's identification stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackStatus {
    /// No answer for this face yet (new, or its label was withdrawn).
    Identifying,
    /// The rows are this face's decrypted distances.
    Identified,
    /// The last match failed (the reason); no name is shown until the next answer.
    Unreachable(String),
}

/// One tracked face.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: TrackId,
    /// The latest detection.
    pub face: Face,
    /// Decrypted distances of the last match, best per person, best first (empty: not
    /// identified, or nobody enrolled). Empty unless `status` is `Identified`.
    pub rows: Vec<PersonDistance>,
    pub status: TrackStatus,
    /// The embedding of the face the rows were computed from (plaintext, app-side only).
    pub embedding: Option<Embedding>,
    /// When the last match was sent.
    pub last_sent: Option<Instant>,
    /// A match is in flight.
    pub pending: bool,
    missed: u32,
}

impl Track {
    fn new(id: TrackId, face: Face) -> Track {
        Track {
            id,
            face,
            rows: Vec::new(),
            status: TrackStatus::Identifying,
            embedding: None,
            last_sent: None,
            pending: false,
            missed: 0,
        }
    }

    /// The best row (the verdict compares it with the threshold).
    pub fn best(&self) -> Option<&PersonDistance> {
        self.rows.first()
    }

    /// Whether an answer for this face is in hand.
    pub fn matched(&self) -> bool {
        self.status == TrackStatus::Identified
    }

    /// Withdraws the label: the face is identified again before a name is shown.
    fn withdraw(&mut self) {
        self.rows.clear();
        self.status = TrackStatus::Identifying;
        self.last_sent = None;
    }
}

/// Faces tracked across frames.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: TrackId,
    last_frame: Option<Instant>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
            last_frame: None,
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

    /// Forgets every track (a new picture, source or gallery). Track ids are never reused,
    /// so an answer for a forgotten track finds nothing.
    pub fn clear(&mut self) {
        self.tracks.clear();
        self.last_frame = None;
    }

    fn fresh_id(&mut self) -> TrackId {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        id
    }

    /// Takes the faces of a new frame (largest first, as detection gives them) and
    /// returns the ids of the tracks due for matching now, marked pending.
    pub fn update(&mut self, faces: &[Face], now: Instant) -> Vec<TrackId> {
        let faces = &faces[..faces.len().min(self.config.max_tracks)];
        // Frames too far apart: nothing continues (the face may have changed meanwhile).
        if self
            .last_frame
            .is_some_and(|t| now.saturating_duration_since(t) > self.config.max_gap)
        {
            self.tracks.clear();
        }
        self.last_frame = Some(now);
        // Greedy IoU assignment, best pairs first, among boxes of about the same size.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (fi, f) in faces.iter().enumerate() {
                let v = iou(&t.face.bbox, &f.bbox);
                if v >= self.config.min_iou && area_ratio(&t.face, f) <= self.config.max_area_ratio
                {
                    pairs.push((v, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut face_taken = vec![false; faces.len()];
        for (v, ti, fi) in pairs {
            if track_taken[ti] || face_taken[fi] {
                continue;
            }
            track_taken[ti] = true;
            face_taken[fi] = true;
            let t = &mut self.tracks[ti];
            t.face = faces[fi];
            t.missed = 0;
            if v < self.config.keep_label_iou && t.status != TrackStatus::Identifying {
                t.withdraw();
            }
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
                let id = self.fresh_id();
                self.tracks.push(Track::new(id, *f));
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

    /// Records a match's decrypted distances for a track (ignored if it is gone), with
    /// the embedding of the face they were computed from. An answer for another face than
    /// the track's ends that track: the rows go to a new track in its place.
    pub fn matched(&mut self, id: TrackId, rows: Vec<PersonDistance>, embedding: Embedding) {
        let same_face_l2 = self.config.same_face_l2;
        let Some(i) = self.tracks.iter().position(|t| t.id == id) else {
            return;
        };
        let swapped = self.tracks[i]
            .embedding
            .as_ref()
            .is_some_and(|e| e.l2(&embedding) > same_face_l2);
        if swapped {
            let fresh = self.fresh_id();
            self.tracks[i].id = fresh;
        }
        let t = &mut self.tracks[i];
        t.rows = rows;
        t.status = TrackStatus::Identified;
        t.embedding = Some(embedding);
        t.pending = false;
    }

    /// A match for a track failed: its label goes (no old name stays on screen) and it
    /// becomes due again at the next interval.
    pub fn failed(&mut self, id: TrackId, reason: String) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == id) {
            t.pending = false;
            t.rows.clear();
            t.status = TrackStatus::Unreachable(reason);
        }
    }
}

/// The larger of the two boxes' areas over the smaller.
fn area_ratio(a: &Face, b: &Face) -> f32 {
    let (x, y) = (a.bbox[2] * a.bbox[3], b.bbox[2] * b.bbox[3]);
    let (lo, hi) = if x < y { (x, y) } else { (y, x) };
    if lo <= 0.0 {
        f32::INFINITY
    } else {
        hi / lo
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

    /// A unit embedding along axis `k` (two different axes are sqrt(2) apart).
    fn emb(k: usize) -> Embedding {
        let mut v = [0.0f32; crate::vision::EMBEDDING_DIM];
        v[k] = 1.0;
        Embedding::from_raw(&v).unwrap()
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
        tr.matched(a, row("Ann"), emb(0));
        tr.matched(b, row("Bob"), emb(1));
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
                    tr.matched(
                        id,
                        tr.get(id).unwrap().rows.clone(),
                        emb(if id == a { 0 } else { 1 }),
                    );
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
        tr.matched(first, row("Ann"), emb(0));
        for k in 1..=cfg.max_missed + 1 {
            tr.update(&[], t0 + Duration::from_millis(40 * k as u64));
        }
        assert!(tr.get(first).is_none(), "gone after max_missed frames");
        let due = tr.update(&[face(0.0, 0.0)], t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_ne!(due[0], first, "a new track");
        assert!(!tr.get(due[0]).unwrap().matched());
    }

    #[test]
    fn a_pending_match_is_not_sent_twice() {
        let mut tr = Tracker::new(TrackerConfig {
            max_gap: Duration::from_secs(60),
            ..TrackerConfig::default()
        });
        let t0 = Instant::now();
        let id = tr.update(&[face(0.0, 0.0)], t0)[0];
        // No answer yet, long after the interval: still not due again.
        assert!(tr
            .update(&[face(0.0, 0.0)], t0 + Duration::from_secs(2))
            .is_empty());
        tr.failed(id, "down".into());
        assert_eq!(
            tr.update(&[face(0.0, 0.0)], t0 + Duration::from_secs(3)),
            vec![id]
        );
    }

    #[test]
    fn a_box_of_another_size_or_after_a_long_gap_is_a_new_face() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let a = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(a, row("Ann"), emb(0));
        // Same corner, twice the width and height: IoU 0.25 and area x4: not Ann.
        let big = Face {
            bbox: [0.0, 0.0, 200.0, 200.0],
            ..face(0.0, 0.0)
        };
        let due = tr.update(&[big], t0 + Duration::from_millis(40));
        assert_eq!(due.len(), 1);
        assert_ne!(due[0], a);
        assert!(tr.visible().all(|t| t.rows.is_empty()));
        // The same box again 6 s later (a stalled camera): a new track.
        let mut tr = Tracker::new(TrackerConfig::default());
        let a = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(a, row("Ann"), emb(0));
        let due = tr.update(&[face(0.0, 0.0)], t0 + Duration::from_secs(6));
        assert_eq!(due.len(), 1);
        assert_ne!(due[0], a);
        assert!(tr.get(a).is_none());
    }

    #[test]
    fn a_weak_continuation_withdraws_the_name_and_asks_again_at_once() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let a = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(a, row("Ann"), emb(0));
        // 40 px of 100 in one frame: IoU 0.43, below keep_label_iou 0.5.
        let due = tr.update(&[face(40.0, 0.0)], t0 + Duration::from_millis(40));
        assert_eq!(due, vec![a], "identified again at once, same track");
        let t = tr.get(a).unwrap();
        assert!(t.rows.is_empty());
        assert_eq!(t.status, TrackStatus::Identifying);
        // A small drift keeps the name.
        tr.matched(a, row("Ann"), emb(0));
        assert!(tr
            .update(&[face(45.0, 0.0)], t0 + Duration::from_millis(80))
            .is_empty());
        assert_eq!(tr.get(a).unwrap().best().unwrap().name, "Ann");
    }

    #[test]
    fn an_answer_for_another_face_starts_a_new_track() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let a = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(a, row("Ann"), emb(0));
        // Same box, rematch 0.5 s later; the face there now embeds far from Ann's.
        let due = tr.update(&[face(0.0, 0.0)], t0 + Duration::from_millis(520));
        assert_eq!(due, vec![a]);
        tr.matched(a, row("Bob"), emb(1));
        assert!(tr.get(a).is_none(), "Ann's track ended");
        let t = tr.visible().next().unwrap();
        assert_ne!(t.id, a);
        assert_eq!(t.best().unwrap().name, "Bob");
        // The same face again (L2 0): the track goes on.
        let id = t.id;
        let due = tr.update(&[face(0.0, 0.0)], t0 + Duration::from_millis(1040));
        assert_eq!(due, vec![id]);
        tr.matched(id, row("Bob"), emb(1));
        assert!(tr.get(id).is_some());
    }

    #[test]
    fn a_failed_match_leaves_no_old_name() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Instant::now();
        let a = tr.update(&[face(0.0, 0.0)], t0)[0];
        tr.matched(a, row("Ann"), emb(0));
        assert_eq!(
            tr.update(&[face(0.0, 0.0)], t0 + Duration::from_millis(520)),
            vec![a]
        );
        tr.failed(a, "connection refused".into());
        let t = tr.get(a).unwrap();
        assert!(t.best().is_none());
        assert_eq!(
            t.status,
            TrackStatus::Unreachable("connection refused".into())
        );
        // Due again at the next interval; an answer brings the name back.
        assert_eq!(
            tr.update(&[face(0.0, 0.0)], t0 + Duration::from_millis(1040)),
            vec![a]
        );
        tr.matched(a, row("Ann"), emb(0));
        assert_eq!(tr.get(a).unwrap().best().unwrap().name, "Ann");
    }
}
