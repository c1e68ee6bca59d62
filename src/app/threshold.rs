//! The threshold: a slider in float L2 units whose verdicts are recomputed at once from the
//! already decrypted distances (no new matcher call), and charts of the distances against
//! the threshold line, match in green and no match in red, with a history of recent bests.
//!
//! What the value means comes from the shipped calibration: in Verify, the 1:1 rates (how
//! often a stranger is accepted as the chosen person); in Identify and Live, where a face is
//! compared with everyone, the share of strangers who get a name with the number of people
//! enrolled now (FPIR, [`crate::calibration::fpir`]).

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, HLine, Legend, Line, Plot, PlotPoints, Points};

use super::action::Action;
use super::match_panel;
use super::protocol::MatchMode;
use super::state::{AppState, PersonDistance, TrackLabel, THRESHOLD_RANGE};
use crate::calibration::{far_for_fpir, Calibration, CalibrationError, OperatingPoint};

const GREEN: Color32 = Color32::from_rgb(40, 170, 70);
const RED: Color32 = Color32::from_rgb(210, 60, 50);

/// The FPIR the identification preset aims at.
pub const FPIR_PRESET: f64 = 0.01;

/// The identification preset's button.
pub const FPIR_PRESET_LABEL: &str = "FPIR 1% for this gallery";

/// Hover text of the gallery sentence: what FPIR is, for an audience.
const FPIR_EXPLAINED: &str = "Identify and Live compare a face with everyone enrolled and \
    name the closest person within the threshold. A stranger (someone not enrolled) gets a \
    name if any one of those comparisons accepts them, so the more people enrolled, the more \
    chances. This share of strangers is the FPIR (false positive identification rate): \
    1 - (1 - FAR)^people, where FAR (false accept rate) is how often one comparison with one \
    person accepts a stranger, measured on the 5.9 million stranger pairs among LFW View 1's \
    DevTrain photos (news photos of public figures). An estimate (a stranger's comparisons \
    are not independent, so it errs on the strict side): your camera and lighting are \
    another population.";

/// Hover text of the 1:1 sentence.
const FAR_EXPLAINED: &str = "One comparison of a face with one person, as Verify does. FAR \
    (false accept rate): how often a stranger is accepted as that person, measured on the 5.9 \
    million stranger pairs among LFW View 1's DevTrain photos. The second figure: how often \
    the real person is accepted, on its 1,100 listed genuine pairs (news photos of public \
    figures); your camera and lighting are another population.";

/// Whether the threshold decides identification (a face compared with everyone): Live, or
/// the match panel set to everyone.
pub fn identifying(state: &AppState) -> bool {
    state.live || match_panel::current_mode(state) == MatchMode::Identify
}

/// The label of a face's bar in the live chart: the name when it is a match, "? NAME" (its
/// closest person) when nobody is within the threshold, so bars stay distinguishable.
pub fn bar_label(label: &TrackLabel) -> String {
    match label {
        TrackLabel::Match { name, .. } => name.clone(),
        TrackLabel::NoMatch { closest, .. } => format!("? {closest}"),
        other => other.text(),
    }
}

/// The 1:1 meaning of a preset or a threshold in one hover line.
fn pair_hover(p: &OperatingPoint) -> String {
    format!("L2 {:.3}, one comparison: {}.", p.threshold, p.describe())
}

/// The gallery meaning of a threshold, for hover text.
fn gallery_hover(cal: &Calibration, threshold: f32, people: u64) -> String {
    format!("{}.", cal.identification_at(threshold, people).describe())
}

/// Why the FPIR preset cannot be offered, in words for people.
fn fpir_unavailable(cal: &Calibration, error: &CalibrationError, people: u64) -> String {
    match error {
        CalibrationError::NobodyEnrolled => "Enrol someone first: with nobody enrolled no \
             stranger can get a name, at any threshold."
            .into(),
        CalibrationError::FpirBelowResolution {
            impostor,
            max_people,
            ..
        } => {
            let needed = far_for_fpir(FPIR_PRESET, people);
            let none_accepted = cal
                .points()
                .iter()
                .take_while(|p| p.impostor_accepted == 0)
                .last()
                .map(|p| {
                    format!(
                        " At L2 {:.3} and below it accepted none of them.",
                        p.threshold
                    )
                })
                .unwrap_or_default();
            format!(
                "With {people} people enrolled, 1 stranger in 100 would need each comparison \
                 to accept fewer than 1 stranger in {:.0}. The LFW calibration has {impostor} \
                 stranger pairs: enough to tell this for up to {max_people} people, not \
                 more.{none_accepted}",
                1.0 / needed
            )
        }
        e => e.to_string(),
    }
}

/// What the slider's value means in error rates (the shipped LFW View 1 DevTrain
/// calibration), and presets that move the slider to calibrated operating points.
fn calibration_ui(ui: &mut egui::Ui, state: &mut AppState) {
    let Ok(cal) = Calibration::lfw_devtrain(&state.key_params) else {
        return;
    };
    let identifying = identifying(state);
    let people = state.names().len() as u64;
    let gallery_line = |t: f32| {
        if identifying {
            format!("\n{}", gallery_hover(cal, t, people))
        } else {
            String::new()
        }
    };
    // Fixed rows (no wrapping): a button never moves between the press and the release.
    ui.horizontal(|ui| {
        ui.label("Presets:");
        let eer = cal.eer();
        if ui
            .small_button("Equal error rate")
            .on_hover_text(format!(
                "Strangers are wrongly accepted as often as the right person is wrongly \
                 rejected, in one comparison. {}{}",
                pair_hover(&eer),
                gallery_line(eer.threshold)
            ))
            .clicked()
        {
            state.settings.threshold = eer.threshold;
        }
        if let Ok(p) = cal.threshold_for_far(0.001) {
            if ui
                .small_button("FAR 0.1%")
                .on_hover_text(format!(
                    "The loosest threshold at which one comparison accepts at most 1 stranger \
                     in 1,000: stricter than the equal error rate. {}{}",
                    pair_hover(&p),
                    gallery_line(p.threshold)
                ))
                .clicked()
            {
                state.settings.threshold = p.threshold;
            }
        }
    });
    ui.horizontal(|ui| {
        let fpir = cal.threshold_for_fpir(FPIR_PRESET, people);
        let button = egui::Button::new(FPIR_PRESET_LABEL).small();
        let response = ui.add_enabled(identifying && fpir.is_ok(), button);
        let response = match (&fpir, identifying) {
            (_, false) => response.on_disabled_hover_text(
                "For Identify and Live, which compare a face with everyone enrolled. Verify \
                 compares with one person: use the presets beside it.",
            ),
            (Ok(p), true) => response.on_hover_text(format!(
                "The loosest threshold at which at most 1 stranger in 100 gets a name with the \
                 {} enrolled now. {}\n{}. Enrolling more people raises this share: click again \
                 after.",
                if people == 1 {
                    "1 person".to_string()
                } else {
                    format!("{people} people")
                },
                pair_hover(&p.pair),
                p.describe(),
            )),
            (Err(e), true) => response.on_disabled_hover_text(fpir_unavailable(cal, e, people)),
        };
        if response.clicked() {
            if let Ok(p) = fpir {
                state.settings.threshold = p.threshold();
            }
        }
    });
    // What the value means, below the buttons: its length varies, nothing under it moves
    // with it that a pointer could be on.
    let threshold = state.settings.threshold;
    let here = cal.at_threshold(threshold);
    if identifying {
        let id = cal.identification_at(threshold, people);
        ui.add(egui::Label::new(RichText::new(format!("{}.", id.describe())).strong()).wrap())
            .on_hover_text(FPIR_EXPLAINED);
        ui.add(
            egui::Label::new(format!(
                "One comparison at {threshold:.3}: {} (LFW View 1).",
                here.describe()
            ))
            .wrap(),
        )
        .on_hover_text(FAR_EXPLAINED);
    } else {
        ui.add(
            egui::Label::new(format!(
                "At {threshold:.3}: {} (LFW View 1).",
                here.describe()
            ))
            .wrap(),
        )
        .on_hover_text(FAR_EXPLAINED);
    }
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
        let default = state.default_threshold();
        if ui
            .button(format!("Reset to {default}"))
            .on_hover_text(format!(
                "The default for templates of parameters v{}: the best accuracy on LFW \
                 View 1 DevTrain",
                state.key_params.version
            ))
            .clicked()
        {
            state.settings.threshold = default;
        }
        ui.checkbox(&mut state.settings.show_history, "History");
    });
    calibration_ui(ui, state);
    if (state.settings.threshold, state.settings.show_history) != before {
        actions.push(Action::SettingsChanged);
    }
    let threshold = state.threshold();
    let line = threshold.l2() as f64;
    ui.label("Same person when the distance is at or below the line.");
    if state.live {
        ui.label("One bar per face in view. \"? Name\": nobody is within the line; Name is the closest person.");
    }

    // Live mode charts each face in view (its best match); otherwise the last match.
    let rows: Vec<(String, i64, f32)> = if state.live {
        state
            .tracker
            .visible()
            .filter_map(|t| {
                let shown = bar_label(&TrackLabel::of(t, &threshold));
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
            let m = threshold.accepts(*distance_sq);
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
                HLine::new("threshold", line)
                    .color(Color32::from_rgb(90, 140, 255))
                    .width(2.0),
            );
        });

    if state.settings.show_history && !state.history.is_empty() {
        ui.label("Recent best distances");
        let point = |(t, d): &(f64, PersonDistance)| [*t, d.l2 as f64];
        let pts: Vec<[f64; 2]> = state.history.iter().map(point).collect();
        let (hit, miss): (Vec<_>, Vec<_>) = state
            .history
            .iter()
            .partition(|(_, d)| threshold.accepts(d.distance_sq));
        let hit: Vec<[f64; 2]> = hit.into_iter().map(point).collect();
        let miss: Vec<[f64; 2]> = miss.into_iter().map(point).collect();
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
                plot.hline(HLine::new("threshold", line).color(Color32::from_rgb(90, 140, 255)));
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bars_say_whose_closest() {
        let m = TrackLabel::Match {
            name: "Obama".into(),
            l2: 0.4,
        };
        let n = TrackLabel::NoMatch {
            closest: "Biden".into(),
            l2: 1.3,
        };
        assert_eq!(bar_label(&m), "Obama");
        assert_eq!(bar_label(&n), "? Biden");
        assert_eq!(bar_label(&TrackLabel::Pending), TrackLabel::Pending.text());
    }
}
