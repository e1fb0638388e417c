//! The endpoint page's charts, drawn on the server as SVG with plotters from the in-memory
//! history ([`crate::telemetry::History`]): requests per second, p50 and p99 latency, errors
//! and ready replicas over the last hour.

use plotters::prelude::*;

use crate::telemetry::history::Point;

/// One chart: its title and the SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: &'static str,
    /// A sentence for screen readers: what the chart shows now.
    pub summary: String,
    pub svg: String,
}

const WIDTH: u32 = 460;
const HEIGHT: u32 = 200;
const BLUE: RGBColor = RGBColor(26, 95, 180);
const ORANGE: RGBColor = RGBColor(181, 71, 8);
const RED: RGBColor = RGBColor(180, 35, 24);
const GREEN: RGBColor = RGBColor(22, 110, 60);
const GRID: RGBColor = RGBColor(225, 228, 232);
const TEXT: RGBColor = RGBColor(60, 64, 67);

/// A series to draw: its colour and values (None: no data in that bucket).
struct Series {
    color: RGBColor,
    values: Vec<Option<f64>>,
}

/// Minutes before now of each point (the x axis runs from -60 to 0).
fn minutes_ago(points: &[Point]) -> Vec<f64> {
    let last = points.last().map_or(0, |p| p.at);
    points.iter().map(|p| -((last - p.at) as f64) / 60.0).collect()
}

fn draw(title: &str, unit: &str, points: &[Point], series: &[Series]) -> Result<String, String> {
    let xs = minutes_ago(points);
    let max = series.iter().flat_map(|s| s.values.iter().flatten().copied()).fold(0.0_f64, f64::max);
    let top = if max <= 0.0 { 1.0 } else { max * 1.15 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(44)
            .build_cartesian_2d(-60.0..0.0, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .axis_style(TEXT)
            .label_style(("sans-serif", 11).into_font().color(&TEXT))
            .x_labels(7)
            .y_labels(5)
            .x_label_formatter(&|m| if *m == 0.0 { "now".into() } else { format!("{m:.0} min") })
            .y_label_formatter(&|v| format_value(*v, unit))
            .draw()
            .map_err(|e| e.to_string())?;
        for s in series {
            // Gaps (no data) break the line instead of drawing it down to zero.
            let mut run: Vec<(f64, f64)> = Vec::new();
            let mut runs = Vec::new();
            for (x, v) in xs.iter().zip(&s.values) {
                match v {
                    Some(v) => run.push((*x, *v)),
                    None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                    None => {}
                }
            }
            if !run.is_empty() {
                runs.push(run);
            }
            for run in runs {
                chart
                    .draw_series(LineSeries::new(run, s.color.stroke_width(2)))
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let _ = title;
    Ok(svg)
}

fn format_value(v: f64, unit: &str) -> String {
    let number = if v >= 100.0 || v == v.trunc() { format!("{v:.0}") } else { format!("{v:.1}") };
    if unit.is_empty() { number } else { format!("{number} {unit}") }
}

fn last_value(values: &[Option<f64>]) -> Option<f64> {
    values.iter().rev().flatten().next().copied()
}

/// The four charts of an endpoint from its history.
pub fn endpoint_charts(points: &[Point]) -> Vec<Chart> {
    let rps: Vec<Option<f64>> = points.iter().map(|p| Some(p.requests_per_second)).collect();
    let p50: Vec<Option<f64>> = points.iter().map(|p| p.p50_ms).collect();
    let p99: Vec<Option<f64>> = points.iter().map(|p| p.p99_ms).collect();
    let errors: Vec<Option<f64>> = points.iter().map(|p| Some(p.errors as f64)).collect();
    let replicas: Vec<Option<f64>> = points.iter().map(|p| p.replicas.map(f64::from)).collect();
    let total_requests: f64 = points.iter().map(|p| p.requests_per_second * 10.0).sum();
    let total_errors: u64 = points.iter().map(|p| p.errors).sum();
    let describe = |what: &str, v: Option<f64>, unit: &str| match v {
        Some(v) => format!("{what}: latest {}", format_value(v, unit)),
        None => format!("{what}: no data in the last hour"),
    };
    let charts = [
        (
            "Requests per second",
            format!("{} requests in the last hour", total_requests.round()),
            draw("Requests per second", "", points, &[Series { color: BLUE, values: rps }]),
        ),
        (
            "Latency (p50, p99)",
            format!(
                "{}; {}",
                describe("p50", last_value(&p50), "ms"),
                describe("p99", last_value(&p99), "ms")
            ),
            draw(
                "Latency",
                "ms",
                points,
                &[Series { color: BLUE, values: p50.clone() }, Series { color: ORANGE, values: p99.clone() }],
            ),
        ),
        (
            "Errors (per 10 s)",
            format!("{total_errors} errors in the last hour"),
            draw("Errors", "", points, &[Series { color: RED, values: errors }]),
        ),
        (
            "Ready replicas",
            describe("ready replicas", last_value(&replicas), ""),
            draw("Replicas", "", points, &[Series { color: GREEN, values: replicas.clone() }]),
        ),
    ];
    charts
        .into_iter()
        .map(|(title, summary, svg)| Chart {
            title,
            summary,
            svg: svg.unwrap_or_else(|e| format!("<p>The chart cannot be drawn: {e}</p>")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: u64, rps: f64, p50: Option<f64>, replicas: Option<u32>) -> Point {
        Point { at, requests_per_second: rps, errors: 0, p50_ms: p50, p99_ms: p50.map(|v| v * 3.0), replicas }
    }

    #[test]
    fn charts_are_svg_with_a_summary() {
        let points: Vec<Point> = (0..360)
            .map(|i| {
                point(
                    1_700_000_000 + i * 10,
                    if i > 300 { 2.5 } else { 0.0 },
                    (i > 300).then_some(4.0),
                    Some(1),
                )
            })
            .collect();
        let charts = endpoint_charts(&points);
        assert_eq!(charts.len(), 4);
        for c in &charts {
            assert!(
                c.svg.starts_with("<svg") && c.svg.contains("<polyline") || c.svg.contains("<path"),
                "{}",
                c.title
            );
        }
        assert_eq!(charts[0].summary, "1475 requests in the last hour");
        assert!(
            charts[1].summary.contains("p50: latest 4 ms") && charts[1].summary.contains("p99: latest 12 ms"),
            "{}",
            charts[1].summary
        );
        assert_eq!(charts[3].summary, "ready replicas: latest 1");
        assert!(charts[0].svg.contains("now"), "the x axis ends at now");
    }

    #[test]
    fn an_idle_endpoint_has_empty_charts() {
        let points: Vec<Point> = (0..360).map(|i| point(i * 10, 0.0, None, None)).collect();
        let charts = endpoint_charts(&points);
        assert!(charts[1].summary.contains("no data"), "{}", charts[1].summary);
        assert!(charts.iter().all(|c| c.svg.starts_with("<svg")));
    }
}
