//! Grouped bar charts as SVG: one group of bars per category (a workload), one bar per series
//! (an engine, or an engine at a thread count). Used by `snapkv bench` and `snapkv report`.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A chart: `values[s][g]` is series `s` in group `g` (`None`: no bar).
pub struct Bars<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub groups: Vec<String>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// Renders `bars` to an SVG file at `path`.
pub fn render(bars: &Bars<'_>, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let max = bars
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(f64::MIN_POSITIVE);
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = bars.groups.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(bars.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc(bars.y_label)
        .draw()?;

    let width = 0.8 / bars.series.len().max(1) as f64;
    for (s, (name, values)) in bars.series.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            let x0 = g as f64 + 0.1 + width * s as f64;
            v.map(|v| Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], color.filled()))
        });
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    // Group labels centred under each group (an f64 axis puts its own labels at round values).
    let style = ("sans-serif", 14)
        .into_text_style(&root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (g, label) in bars.groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(label.clone(), (x, y + 8), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
