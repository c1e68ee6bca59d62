//! The live preview: the frame with face boxes, the 5 landmarks and scores; click a face to
//! select it (the largest is selected by default); measured frames per second.

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use super::state::AppState;
use super::{Action, Textures};

pub fn ui(ui: &mut egui::Ui, state: &AppState, textures: &mut Textures, actions: &mut Vec<Action>) {
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
        ui.label(format!("{:.1} fps", state.fps()));
    });
    let Some(frame) = state.frame.clone() else {
        ui.centered_and_justified(|ui| {
            ui.label("No frame yet: open an image or a folder (top bar), or start the camera.");
        });
        return;
    };
    let serial = state.frame_serial;
    if textures.preview.as_ref().is_none_or(|(s, _)| *s != serial) {
        let img = egui::ColorImage::from_rgb(
            [frame.width() as usize, frame.height() as usize],
            frame.as_raw(),
        );
        let tex = ui
            .ctx()
            .load_texture("preview", img, egui::TextureOptions::LINEAR);
        textures.preview = Some((serial, tex));
    }
    let tex = &textures.preview.as_ref().expect("just set").1;
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let avail = ui.available_size();
    let scale = (avail.x / w).min(avail.y / h).max(0.01);
    let (response, painter) = ui.allocate_painter(Vec2::new(w * scale, h * scale), Sense::click());
    let origin = response.rect.min;
    let to_screen = |x: f32, y: f32| Pos2::new(origin.x + x * scale, origin.y + y * scale);
    painter.image(
        tex.id(),
        response.rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    for (i, f) in state.faces.iter().enumerate() {
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
        painter.text(
            rect.left_top() - Vec2::new(0.0, 2.0),
            egui::Align2::LEFT_BOTTOM,
            format!("{}{:.2}", if selected { "selected " } else { "" }, f.score),
            egui::FontId::proportional(14.0),
            color,
        );
    }
    if response.clicked() {
        if let Some(p) = response.interact_pointer_pos() {
            let (ix, iy) = ((p.x - origin.x) / scale, (p.y - origin.y) / scale);
            if let Some(i) = state.faces.iter().position(|f| {
                let [x, y, bw, bh] = f.bbox;
                ix >= x && ix <= x + bw && iy >= y && iy <= y + bh
            }) {
                actions.push(Action::SelectFace(i));
            }
        }
    }
    if state.faces.is_empty() && !state.busy_frame {
        painter.text(
            response.rect.center_top() + Vec2::new(0.0, 20.0),
            egui::Align2::CENTER_TOP,
            "No face found in this frame",
            egui::FontId::proportional(18.0),
            Color32::from_rgb(255, 120, 80),
        );
    }
}
