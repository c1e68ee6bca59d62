//! The live preview: the newest frame, drawn as soon as it arrives, with the face boxes,
//! the 5 landmarks and scores of the latest detection; click a face to select it (the
//! largest is selected by default); frames shown and detected per second.
//!
//! Invariant: boxes and labels are drawn only on a frame of the picture they were found
//! on (same [`super::protocol::SourceId`]): a new photo shows no box until its own faces
//! are found; a camera frame shows the boxes of a frame at most one detection older.

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use super::action::Action;
use super::state::{AppState, TrackLabel};
use super::textures::Textures;

const GREEN: Color32 = Color32::from_rgb(40, 170, 70);
const RED: Color32 = Color32::from_rgb(210, 60, 50);
const GREY: Color32 = Color32::from_rgb(120, 120, 120);

/// The colour of a live label: green within the threshold, red beyond, grey before the
/// first answer.
pub fn label_color(label: &TrackLabel) -> Color32 {
    match label {
        TrackLabel::Match { .. } => GREEN,
        TrackLabel::NoMatch { .. } => RED,
        TrackLabel::Pending | TrackLabel::EmptyGallery | TrackLabel::Unreachable(_) => GREY,
    }
}

/// Under each tracked face: its name, decrypted distance and verdict colour at the current
/// threshold (real labels, so the accessibility tree, and tests, see them).
fn live_labels(ui: &mut egui::Ui, state: &AppState, scale: f32, bounds: Rect) {
    let threshold = state.threshold();
    let origin = bounds.min;
    for t in state.tracker.visible() {
        let label = TrackLabel::of(t, &threshold);
        let color = label_color(&label);
        let [x, y, bw, bh] = t.face.bbox;
        let face_rect = Rect::from_min_max(
            Pos2::new(origin.x + x * scale, origin.y + y * scale),
            Pos2::new(origin.x + (x + bw) * scale, origin.y + (y + bh) * scale),
        );
        let text = egui::RichText::new(label.text())
            .color(Color32::WHITE)
            .strong();
        let font = egui::FontId::proportional(14.0);
        let width = ui
            .painter()
            .layout_no_wrap(label.text(), font, Color32::WHITE)
            .size()
            .x
            + 10.0;
        // Under the box, centred on it, kept inside the preview.
        let mut left = face_rect.center().x - width / 2.0;
        left = left.clamp(bounds.left(), (bounds.right() - width).max(bounds.left()));
        let rect = Rect::from_min_size(
            Pos2::new(left, face_rect.bottom() + 2.0),
            Vec2::new(width, 22.0),
        );
        let painter = ui.painter();
        painter.rect_stroke(face_rect, 0.0, Stroke::new(2.5, color), StrokeKind::Outside);
        painter.rect_filled(rect, 3.0, color);
        let shown = ui.put(rect, egui::Label::new(text).truncate());
        if let TrackLabel::Unreachable(why) = &label {
            shown.on_hover_text(why);
        }
    }
}

/// `enrolling`: someone is being enrolled (the selected face is marked "will be
/// enrolled").
pub fn ui(
    ui: &mut egui::Ui,
    state: &AppState,
    enrolling: bool,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.label(if state.frame_label.is_empty() {
            "Preview".to_string()
        } else {
            format!("Preview: {}", state.frame_label)
        });
        if state.busy_frame {
            ui.spinner();
        }
        ui.label(format!("{} face(s)", state.faces.len()));
        // A still image has no frame rate.
        if state.camera_source {
            ui.label(format!(
                "{:.1} fps (faces found at {:.1} fps)",
                state.preview_fps(),
                state.fps()
            ));
        }
    });
    let shown = state
        .preview
        .clone()
        .or_else(|| state.frame.clone().map(|f| (state.frame_source, f)));
    let Some((shown_source, frame)) = shown else {
        ui.centered_and_justified(|ui| {
            ui.label("No frame yet: open an image or a folder (top bar), or start the camera.");
        });
        return;
    };
    let serial = state.preview_serial;
    if textures.preview.as_ref().is_none_or(|(s, _)| *s != serial) {
        textures.preview = Some((
            serial,
            super::textures::texture(ui.ctx(), "preview", &frame),
        ));
    }
    let tex = &textures.preview.as_ref().expect("just set").1;
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let avail = ui.available_size();
    let scale = (avail.x / w).min(avail.y / h).max(0.01);
    // The whole area is the preview's; the frame is centred in it horizontally.
    let (response, painter) = ui.allocate_painter(avail, Sense::click());
    let size = Vec2::new(w * scale, h * scale);
    let shown = Rect::from_min_size(
        Pos2::new(response.rect.center().x - size.x / 2.0, response.rect.top()),
        size,
    );
    let origin = shown.min;
    let to_screen = |x: f32, y: f32| Pos2::new(origin.x + x * scale, origin.y + y * scale);
    painter.image(
        tex.id(),
        shown,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    // The faces belong to this picture (and its size), or are not drawn on it.
    let same_picture = shown_source == state.frame_source
        && state
            .frame
            .as_ref()
            .is_some_and(|f| f.dimensions() == frame.dimensions());
    let faces: &[crate::vision::Face] = if same_picture { &state.faces } else { &[] };
    for (i, f) in faces.iter().enumerate() {
        let selected = state.selected_face == Some(i);
        let color = if selected {
            Color32::from_rgb(60, 220, 90)
        } else {
            Color32::from_rgb(240, 200, 40)
        };
        let [x, y, bw, bh] = f.bbox;
        let rect = Rect::from_min_max(to_screen(x, y), to_screen(x + bw, y + bh));
        painter.rect_stroke(
            rect,
            0.0,
            Stroke::new(if selected { 3.0 } else { 1.5 }, color),
            StrokeKind::Outside,
        );
        for [lx, ly] in f.landmarks {
            painter.circle_filled(to_screen(lx, ly), 3.0, Color32::from_rgb(255, 80, 80));
        }
        let tag = match (selected, enrolling) {
            (true, true) => format!("will be enrolled {:.2}", f.score),
            (true, false) => format!("selected {:.2}", f.score),
            _ => format!("{:.2}", f.score),
        };
        if !state.live || (selected && enrolling) {
            // Dark text on the box's colour: readable on any photo.
            let galley =
                painter.layout_no_wrap(tag, egui::FontId::proportional(14.0), Color32::BLACK);
            let at = rect.left_top() - Vec2::new(0.0, galley.size().y + 4.0);
            let bg = Rect::from_min_size(at, galley.size() + Vec2::new(8.0, 4.0));
            painter.rect_filled(bg, 3.0, color);
            painter.galley(at + Vec2::new(4.0, 2.0), galley, Color32::BLACK);
        }
    }
    if state.live && same_picture {
        live_labels(ui, state, scale, shown);
    }
    if response.clicked() {
        if let Some(p) = response.interact_pointer_pos() {
            let (ix, iy) = ((p.x - origin.x) / scale, (p.y - origin.y) / scale);
            if let Some(i) = faces.iter().position(|f| {
                let [x, y, bw, bh] = f.bbox;
                ix >= x && ix <= x + bw && iy >= y && iy <= y + bh
            }) {
                actions.push(Action::SelectFace(i));
            }
        }
    }
    if same_picture && faces.is_empty() && !state.busy_frame {
        painter.text(
            shown.center_top() + Vec2::new(0.0, 20.0),
            egui::Align2::CENTER_TOP,
            "No face found in this frame",
            egui::FontId::proportional(18.0),
            Color32::from_rgb(255, 120, 80),
        );
    }
}
