//! The threshold: a slider in float L2 units whose verdicts are recomputed at once from the
//! already decrypted distances (no new matcher call), and charts of the distances against
//! the threshold line, match in green and no match in red, with a history of recent bests.

use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, HLine, Legend, Line, Plot, PlotPoints, Points};

use super::state::{is_match, AppState, TrackLabel, THRESHOLD_RANGE};
use super::Action;
use crate::calibration::Calibration;
use crate::vision::SFACE_L2_THRESHOLD;

const GREEN: Color32 = Color32::from_rgb(40, 170, 70);
const RED: Color32 = Color32::from_rgb(210, 60, 50);

/// What the slider's value means in error rates (the shipped LFW View 1 DevTrain
/// calibration), and presets that move the slider to calibrated operating points.
fn calibration_ui(ui: &mut egui::Ui, state: &mut AppState) {
    let Ok(cal) = Calibration::lfw_devtrain() else {
        return;
    };
    let here = cal.at_threshold(state.settings.threshold);
    ui.add(
        egui::Label::new(format!(
            "At {:.3}: {} (LFW View 1).",
            state.settings.threshold,
            here.describe()
        ))
        .wrap(),
    );
    ui.horizontal_wrapped(|ui| {
        ui.label("Presets:");
        let presets = [
            ("Equal error rate", Some(cal.eer())),
            ("FAR 1%", cal.threshold_for_far(0.01).ok()),
            ("FAR 0.1%", cal.threshold_for_far(0.001).ok()),
        ];
        for (name, point) in presets {
            if let Some(p) = point {
                if ui
                    .small_button(name)
                    .on_hover_text(format!("L2 {:.3}: {}", p.threshold, p.describe()))
                    .clicked()
                {
                    state.settings.threshold = p.threshold;
                }
            }
        }
    });
}

/// One arrow-key or drag step of the threshold.
pub const THRESHOLD_STEP: f64 = 0.005;

pub fn ui(ui: &mut egui::Ui, state: &mut AppState, actions: &mut Vec<Action>) {
    ui.heading("Threshold");
    let before = (state.settings.threshold, state.settings.show_history);
    // The slider covers the useful range only (fine control: ~0.005 per pixel, arrow
    // keys step 0.005); the drag value beside it takes any value, for precise entry.
    ui.horizontal(|ui| {
        ui.spacing_mut().slider_width = 220.0;
        ui.add(
            egui::Slider::new(&mut state.settings.threshold, THRESHOLD_RANGE)
                .text("Threshold (L2)")
                .step_by(THRESHOLD_STEP)
                .fixed_decimals(3)
                .clamping(egui::SliderClamping::Never)
                .show_value(false),
        );
        ui.add(
            egui::DragValue::new(&mut state.settings.threshold)
                .speed(0.001)
                .range(0.0..=2.0)
                .fixed_decimals(3),
        )
        .on_hover_text("Drag or type an exact threshold");
    });
    ui.horizontal(|ui| {
        if ui
            .button(format!("Reset to {SFACE_L2_THRESHOLD}"))
            .clicked()
        {
            state.settings.threshold = SFACE_L2_THRESHOLD;
        }
        ui.checkbox(&mut state.settings.show_history, "History");
    });
    calibration_ui(ui, state);
    if (state.settings.threshold, state.settings.show_history) != before {
        actions.push(Action::SettingsChanged);
    }
    let threshold = state.settings.threshold as f64;
    ui.label("Same person when the distance is at or below the line.");

    // Live mode charts each face in view (its best match); otherwise the last match.
    let rows: Vec<(String, i64, f32)> = if state.live {
        state
            .tracker
            .visible()
            .filter_map(|t| {
                let shown = match TrackLabel::of(t, threshold as f32) {
                    TrackLabel::Match { name, .. } => name,
                    _ => "unknown".into(),
                };
                t.best().map(|b| (shown, b.distance_sq, b.l2))
            })
            .collect()
    } else {
        state
            .last_match
            .as_ref()
            .map(|o| {
                o.distances
                    .iter()
                    .map(|d| (d.name.clone(), d.distance_sq, d.l2))
                    .collect()
            })
            .unwrap_or_default()
    };
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, distance_sq, l2))| {
            let m = is_match(*distance_sq, threshold as f32);
            Bar::new(i as f64, *l2 as f64)
                .name(name)
                .fill(if m { GREEN } else { RED })
                .width(0.6)
        })
        .collect();
    let names: Vec<String> = rows.into_iter().map(|r| r.0).collect();
    Plot::new("distances-plot")
        .height(200.0)
        .y_axis_label("decrypted L2")
        .include_y(0.0)
        .include_y(2.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .legend(Legend::default())
        .x_axis_formatter(move |mark, _range| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("decrypted L2", bars));
            plot.hline(
                HLine::new("threshold", threshold)
                    .color(Color32::from_rgb(90, 140, 255))
                    .width(2.0),
            );
        });

    if state.settings.show_history && !state.history.is_empty() {
        ui.label("Recent best distances");
        let pts: Vec<[f64; 2]> = state
            .history
            .iter()
            .map(|(t, l2, _)| [*t, *l2 as f64])
            .collect();
        let (hit, miss): (Vec<[f64; 2]>, Vec<[f64; 2]>) =
            pts.iter().partition(|p| p[1] <= threshold);
        Plot::new("history-plot")
            .height(150.0)
            .x_axis_label("seconds since start")
            .y_axis_label("best L2")
            .include_y(0.0)
            .include_y(2.0)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .show(ui, |plot| {
                plot.line(Line::new("best L2", PlotPoints::from(pts.clone())).color(Color32::GRAY));
                plot.points(
                    Points::new("match", PlotPoints::from(hit))
                        .color(GREEN)
                        .radius(4.0),
                );
                plot.points(
                    Points::new("no match", PlotPoints::from(miss))
                        .color(RED)
                        .radius(4.0),
                );
                plot.hline(
                    HLine::new("threshold", threshold).color(Color32::from_rgb(90, 140, 255)),
                );
            });
    }
}
