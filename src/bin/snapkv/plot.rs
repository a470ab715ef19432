//! The SVG throughput chart of `snapkv bench`: one group of bars per workload, one bar per
//! engine and thread count.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use snapkv::workload::{Mix, Report};

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Renders throughput (million operations per second) per workload to an SVG file.
pub fn throughput_chart(reports: &[Report], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut mixes: Vec<Mix> = reports.iter().map(|r| r.mix).collect();
    mixes.sort();
    mixes.dedup();
    let mut series: Vec<(String, usize)> = reports
        .iter()
        .map(|r| (r.engine.clone(), r.threads))
        .collect();
    series.sort();
    series.dedup();
    let max = reports
        .iter()
        .map(|r| r.throughput() / 1e6)
        .fold(0.0f64, f64::max)
        .max(0.001);

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = mixes.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "snapkv bench: YCSB throughput (higher is better)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("million ops/s")
        .draw()?;

    let width = 0.8 / series.len().max(1) as f64;
    for (s, (engine, threads)) in series.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        let bars = reports
            .iter()
            .filter(|r| &r.engine == engine && r.threads == *threads)
            .filter_map(|r| {
                let g = mixes.iter().position(|&m| m == r.mix)? as f64;
                let x0 = g + 0.1 + width * s as f64;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, r.throughput() / 1e6)],
                    color.filled(),
                ))
            });
        chart
            .draw_series(bars)?
            .label(format!(
                "{engine}, {threads} thread{}",
                if *threads == 1 { "" } else { "s" }
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    // Group labels centred under each group (an f64 axis puts its own labels at round values).
    let style = ("sans-serif", 14)
        .into_text_style(&root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (g, mix) in mixes.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            format!("workload {mix}"),
            (x, y + 8),
            style.clone(),
        ))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
