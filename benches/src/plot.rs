//! The scale results as an SVG picture: one panel per step, wall time above
//! and peak RSS below, one line per tool over the repository's blob count.

use std::path::Path;

use plotters::prelude::*;

use crate::scale::{ScaleCell, Step};
use crate::tools::Tool;

/// Line colours per tool (restic, rustic, restix, then variants).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The points `(million blobs, value)` of one tool in one step.
fn points(cells: &[ScaleCell], tool: &str, step: Step, rss: bool) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = cells
        .iter()
        .filter(|c| c.tool == tool && c.step == step)
        .filter_map(|c| {
            let m = c.outcome.as_ref().ok()?;
            let y = if rss {
                m.max_rss_kib as f64 / 1024.0
            } else {
                m.wall.as_secs_f64()
            };
            Some((c.blobs as f64 / 1e6, y))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

/// Draws the picture into `path`.
pub fn scale_svg(path: &Path, tools: &[Tool], cells: &[ScaleCell]) -> Result<(), String> {
    let root = SVGBackend::new(path, (1600, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = root.split_vertically(36);
    title
        .titled(
            "Cost as the repository grows: wall time (top) and peak RSS (bottom) per tool",
            ("sans-serif", 20),
        )
        .map_err(|e| e.to_string())?;
    let panels = body.split_evenly((2, Step::ALL.len()));
    let xmax = cells
        .iter()
        .map(|c| c.blobs as f64 / 1e6)
        .fold(1.0f64, f64::max)
        * 1.05;
    for (i, panel) in panels.iter().enumerate() {
        let step = Step::ALL[i % Step::ALL.len()];
        let rss = i >= Step::ALL.len();
        let ymax = tools
            .iter()
            .flat_map(|t| points(cells, &t.label, step, rss))
            .map(|p| p.1)
            .fold(0.0f64, f64::max)
            .max(if rss { 16.0 } else { 0.1 })
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(step.title(), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("million blobs in the index")
            .y_desc(if rss { "peak RSS, MiB" } else { "wall, s" })
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
        for (ti, tool) in tools.iter().enumerate() {
            let colour = COLOURS[ti % COLOURS.len()];
            let pts = points(cells, &tool.label, step, rss);
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(tool.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The distance results as an SVG picture: one panel per transport and step
/// (backup, restore), wall time over the round trip, one line per variant.
#[cfg(all(feature = "sftp", feature = "s3"))]
pub fn distance_svg(
    path: &Path,
    labels: &[String],
    cells: &[crate::distance_cells::DistanceCell],
) -> Result<(), String> {
    use crate::distance_cells::{Step as DStep, Transport};
    let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = root.split_vertically(36);
    title
        .titled(
            "Cost as the link gets longer: wall time over the round trip, per tool",
            ("sans-serif", 20),
        )
        .map_err(|e| e.to_string())?;
    let panels = body.split_evenly((Transport::ALL.len(), DStep::ALL.len()));
    let xmax = cells
        .iter()
        .map(|c| c.rtt_ms as f64)
        .fold(10.0f64, f64::max)
        * 1.05;
    for (i, panel) in panels.iter().enumerate() {
        let transport = Transport::ALL[i / DStep::ALL.len()];
        let step = DStep::ALL[i % DStep::ALL.len()];
        let series = |label: &str| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> = cells
                .iter()
                .filter(|c| c.transport == transport && c.step == step && c.variant == label)
                .filter_map(|c| {
                    let m = c.outcome.as_ref().ok()?;
                    Some((c.rtt_ms as f64, m.wall.as_secs_f64()))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        };
        let ymax = labels
            .iter()
            .flat_map(|l| series(l))
            .map(|p| p.1)
            .fold(0.1f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} {}", transport.title(), step.title()),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("round trip, ms")
            .y_desc("wall, s")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
        for (li, label) in labels.iter().enumerate() {
            let colour = COLOURS[li % COLOURS.len()];
            let pts = series(label);
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
