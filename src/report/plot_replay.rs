//! The replay chart: fraction of the optimum reached against evaluations (as % of the
//! space), one panel per recorded sweep, one line (mean) and band (p10–p90) per strategy.

use super::chart::{draw_legend, house_mesh, MeshText};
use super::style::*;
use crate::tune::replay::Curve;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

pub fn plot_replay(curves: &[Curve], seeds: usize, within_pct: f64, out: &Path) -> Result<()> {
    ensure_font()?;
    let mut sources: Vec<&str> = Vec::new();
    for c in curves {
        if !sources.contains(&c.source.as_str()) {
            sources.push(&c.source);
        }
    }
    if sources.is_empty() {
        bail!("no replay curves to draw");
    }
    let cols = if sources.len() > 1 { 2 } else { 1 };
    let rows = sources.len().div_ceil(cols);
    let (pw, ph) = (760u32, 440u32);
    let root = BitMapBackend::new(out, (pw * cols as u32, ph * rows as u32 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (title, body) = root.split_vertically(60);
    title
        .titled(
            &format!("search strategies replayed on recorded full grids — {seeds} seeds, mean and p10–p90"),
            text(TITLE_SIZE - 4.0),
        )
        .map_err(draw_err)?;
    let panels = body.split_evenly((rows, cols));
    let (x_lo, x_hi) = (0.3, 100.0);
    let threshold = 1.0 / (1.0 + within_pct / 100.0);
    let mut strategies: Vec<&str> = Vec::new();
    for c in curves {
        if !strategies.contains(&c.strategy.name()) {
            strategies.push(c.strategy.name());
        }
    }
    for (panel, src) in panels.iter().zip(&sources) {
        let mut chart = ChartBuilder::on(panel)
            .caption(*src, text(LABEL_SIZE + 2.0))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(log_axis(x_lo, x_hi), 0.0..1.02)
            .map_err(draw_err)?;
        let sizes = MeshText { desc: LABEL_SIZE, tick: SMALL_SIZE };
        house_mesh(&mut chart.configure_mesh(), "evaluations, % of the space", "optimum / best found", sizes)
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(DashedLineSeries::new([(x_lo, threshold), (x_hi, threshold)], 6, 4, PEER_COLOR.into()))
            .map_err(draw_err)?
            .label(format!("within {within_pct} %"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], PEER_COLOR));
        for c in curves.iter().filter(|c| c.source == *src) {
            let i = strategies.iter().position(|s| *s == c.strategy.name()).unwrap_or(0);
            let color = series_color(i);
            let pts: Vec<&(f64, f64, f64, f64)> = c.points.iter().filter(|p| p.0 >= x_lo && p.0 <= x_hi).collect();
            let band: Vec<(f64, f64)> =
                pts.iter().map(|p| (p.0, p.3)).chain(pts.iter().rev().map(|p| (p.0, p.2))).collect();
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).map_err(draw_err)?;
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(3)))
                .map_err(draw_err)?
                .label(c.strategy.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight, SMALL_SIZE, 10)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}
