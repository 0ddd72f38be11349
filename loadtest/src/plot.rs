//! SVG plots of a run, from its report: latency percentiles over time (log scale),
//! throughput over time, and the cores each process group used. SVG only: no fonts or
//! system libraries are needed to draw them.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::Error;
use crate::report::Report;

/// One line: its legend and its points (seconds, value).
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Draws every plot into `dir`; the files written.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let title = |what: &str| format!("{} {what}", report.scenario);
    let mut written = Vec::new();
    let latency = latency_lines(report);
    if !latency.is_empty() {
        let path = dir.join("latency.svg");
        draw(&path, &title("latency (ms, log scale)"), &latency, true)?;
        written.push(path);
    }
    let throughput = throughput_lines(report);
    if !throughput.is_empty() {
        let path = dir.join("throughput.svg");
        draw(&path, &title("executions per second"), &throughput, false)?;
        written.push(path);
    }
    let cpu: Vec<Line> = report
        .resources
        .iter()
        .filter(|p| !p.cores_over_time.is_empty())
        .map(|p| Line {
            name: p.name.clone(),
            points: p.cores_over_time.clone(),
        })
        .collect();
    if !cpu.is_empty() {
        let path = dir.join("cpu.svg");
        draw(&path, &title("CPU cores in use"), &cpu, false)?;
        written.push(path);
    }
    Ok(written)
}

fn latency_lines(report: &Report) -> Vec<Line> {
    type Pick = fn(&crate::report::Second) -> Option<f64>;
    let picks: [(&str, Pick); 6] = [
        ("enqueue p50", |s| s.enqueue_p50),
        ("enqueue p99", |s| s.enqueue_p99),
        ("dispatch p50", |s| s.dispatch_p50),
        ("dispatch p99", |s| s.dispatch_p99),
        ("end to end p50", |s| s.end_to_end_p50),
        ("end to end p99", |s| s.end_to_end_p99),
    ];
    picks
        .iter()
        .map(|(name, pick)| Line {
            name: (*name).to_owned(),
            points: report
                .timeline
                .iter()
                .filter_map(|s| pick(s).map(|v| (s.t as f64, v)))
                .collect(),
        })
        .filter(|l| !l.points.is_empty())
        .collect()
}

fn throughput_lines(report: &Report) -> Vec<Line> {
    let line = |name: &str, pick: fn(&crate::report::Second) -> u64| Line {
        name: name.to_owned(),
        points: report
            .timeline
            .iter()
            .map(|s| (s.t as f64, pick(s) as f64))
            .collect(),
    };
    let lines = [
        line("enqueued", |s| s.enqueued),
        line("finished", |s| s.finished),
    ];
    lines
        .into_iter()
        .filter(|l| l.points.iter().any(|p| p.1 > 0.0))
        .collect()
}

/// Draws `lines` into an SVG file, the y axis on a log scale when `log` is set.
fn draw(path: &Path, title: &str, lines: &[Line], log: bool) -> Result<(), Error> {
    let err = |e: String| Error::Plot {
        path: path.to_owned(),
        reason: e,
    };
    let points = || lines.iter().flat_map(|l| l.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max) + 1.0;
    let y_max = points().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.2;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    macro_rules! finish_chart {
        ($y:expr) => {{
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, $y)
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("seconds since the start")
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (i, line) in lines.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let points = || {
                    line.points
                        .iter()
                        .map(|&(x, y)| (x, if log { y.max(0.01) } else { y }))
                };
                chart
                    .draw_series(LineSeries::new(points(), color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(line.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                // Markers, so that a run of a second or two still shows its points.
                chart
                    .draw_series(points().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }};
    }
    if log {
        finish_chart!((0.01f64..y_max).log_scale());
    } else {
        finish_chart!(0f64..y_max);
    }
    root.present().map_err(|e| err(e.to_string()))
}
