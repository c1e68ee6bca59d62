//! The `eval --report DIR` files: per-pair distances as CSV, the ROC curve and the
//! genuine/impostor distance histograms with the threshold line as PNG (plotters).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::Serialize;

use blindface::eval::Sweep;

const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Distances of one labelled pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairDistances {
    pub line: usize,
    pub file_x: String,
    pub file_y: String,
    pub same: bool,
    pub l2_float: f64,
    pub l2_quantised: f64,
    pub l2_encrypted: f64,
    pub distance_sq_quantised: i64,
    pub distance_sq_encrypted: i64,
}

pub fn write(dir: &Path, rows: &[PairDistances], sweep: &Sweep, threshold: f64) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating report folder {}", dir.display()))?;
    // Registering twice is harmless; plotters keeps the first.
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let mut csv = csv::Writer::from_path(dir.join("pairs.csv"))?;
    for r in rows {
        csv.serialize(r)?;
    }
    csv.flush()?;
    roc(&dir.join("roc.png"), sweep).context("drawing roc.png")?;
    histogram(&dir.join("histogram.png"), rows, threshold).context("drawing histogram.png")?;
    Ok(())
}

/// Size of each chart, in pixels.
const CHART: (u32, u32) = (640, 480);

/// Draws a chart into memory with `draw` and writes it as a PNG with `image` (plotters'
/// own encoder would build a second, older `image` crate).
fn png(path: &Path, draw: impl FnOnce(Root<'_>) -> Result<()>) -> Result<()> {
    let mut rgb = vec![0u8; (CHART.0 * CHART.1 * 3) as usize];
    draw(BitMapBackend::with_buffer(&mut rgb, CHART).into_drawing_area())?;
    let img = image::RgbImage::from_raw(CHART.0, CHART.1, rgb).expect("buffer is the chart's size");
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// A chart's drawing area, in memory.
type Root<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn roc(path: &Path, sweep: &Sweep) -> Result<()> {
    png(path, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("ROC (float L2)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc("false accept rate")
            .y_desc("true accept rate")
            .draw()?;
        let mut points = vec![(0.0, 0.0)];
        points.extend(sweep.roc.iter().copied());
        points.push((1.0, 1.0));
        chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
        root.present()?;
        Ok(())
    })
}

fn histogram(path: &Path, rows: &[PairDistances], threshold: f64) -> Result<()> {
    let bins = 30;
    let max = rows.iter().map(|r| r.l2_float).fold(threshold, f64::max) * 1.05;
    let width = max / bins as f64;
    let count = |genuine: bool| {
        let mut h = vec![0u32; bins];
        for r in rows.iter().filter(|r| r.same == genuine) {
            h[((r.l2_float / width) as usize).min(bins - 1)] += 1;
        }
        h
    };
    let (g, i) = (count(true), count(false));
    let top = g.iter().chain(&i).copied().max().unwrap_or(1) as f64 * 1.15;
    png(path, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Distances: genuine vs impostor", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("L2 distance (normalised embeddings)")
            .y_desc("pairs")
            .draw()?;
        for (hist, color, name) in [(&g, GREEN, "genuine"), (&i, RED, "impostor")] {
            chart
                .draw_series(
                    hist.iter()
                        .enumerate()
                        .filter(|(_, &c)| c > 0)
                        .map(|(b, &c)| {
                            let x0 = b as f64 * width;
                            Rectangle::new(
                                [(x0, 0.0), (x0 + width, c as f64)],
                                color.mix(0.5).filled(),
                            )
                        }),
                )?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.mix(0.5).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                [(threshold, 0.0), (threshold, top)],
                BLACK.stroke_width(2),
            ))?
            .label(format!("threshold {threshold:.3}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}
