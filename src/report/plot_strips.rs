//! Strip charts of one sweep shape: one panel per parameter, every verified candidate's
//! time against that parameter's value, the winner highlighted and the peer as a dashed
//! reference line. Panels are ordered by how much the parameter matters.

use super::chart::{category_label, draw_winners, house_mesh, MeshText};
use super::export::{peer_time_us, peers_per_shape, winner_of, ShapeKey};
use super::style::*;
use super::sweep_params::{level_of, param_axes, ranked_rows, ParamAxis};
use super::Caption;
use crate::tune::record::CandidateRecord;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

const PANEL_COLS: usize = 3;
const PANEL_W: u32 = 520;
const PANEL_H: u32 = 400;
/// Most panels one chart shows (the most influential parameters first): a panel per
/// parameter, so a CSV with thousands of parameter columns would mean a canvas of gigabytes.
pub const MAX_PANELS: usize = 12;

/// Horizontal offset in [-0.3, 0.3] that is the same for a candidate on every run, so
/// points with equal values do not hide each other and charts are reproducible.
fn jitter(r: &CandidateRecord) -> f64 {
    let mut h = DefaultHasher::new();
    r.key().hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0 * 0.6 - 0.3
}

/// Writes the strip chart of `key`'s candidates in `records` to `out`.
/// Fails with a clear message when the shape has no verified, timed candidate.
pub fn plot_param_strips(records: &[CandidateRecord], key: &ShapeKey, caption: &Caption, out: &Path) -> Result<()> {
    ensure_font()?;
    let rows = ranked_rows(records, key);
    if rows.is_empty() {
        bail!("no verified, timed candidates for {}; nothing to chart", key.label());
    }
    let mut axes = param_axes(&rows);
    let n_axes = axes.len();
    axes.truncate(MAX_PANELS);
    let winner = winner_of(records, key);
    let peer = winner.and_then(|w| peer_time_us(w, &peers_per_shape(records)));
    let peer_name = peers_per_shape(records).get(key).map(|p| p.variant.clone()).unwrap_or_else(|| "peer".into());

    let n_panels = axes.len().max(1);
    let cols = n_panels.min(PANEL_COLS);
    let panel_rows = n_panels.div_ceil(cols);
    let size = (PANEL_W * cols as u32, PANEL_H * panel_rows as u32 + 90);
    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let title =
        format!("{} — time per candidate by parameter — {} — measured {}", key.label(), caption.gpu, caption.date);
    let body = root.margin(8, 0, 0, 0).titled(&title, text(TITLE_SIZE - 2.0)).map_err(draw_err)?;
    let (legend_area, body) = body.split_vertically(34);
    let mut legend = format!("{} verified candidates · red ring = winner", rows.len());
    if n_axes > axes.len() {
        legend.push_str(&format!(" · the {} most influential of {n_axes} parameters", axes.len()));
    }
    if let Some(p) = peer {
        legend.push_str(&format!(" · dashed = {peer_name} {} µs", fmt_num(p)));
    }
    legend_area.draw(&Text::new(legend, (10, 6), text(LABEL_SIZE).color(&RGBColor(60, 60, 60)))).map_err(draw_err)?;

    // One y range for all panels so they compare at a glance.
    let times = rows.iter().filter_map(|r| r.median_us()).chain(peer);
    let (tmin, tmax) = times.fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
    let (y0, y1) = tight_log_range(tmin, tmax, 1.15);

    let panels = body.split_evenly((panel_rows, cols));
    let marks = Marks { winner, peer, color: family_color(&key.family) };
    if axes.is_empty() {
        // Nothing varied: one panel with every candidate in a single column.
        let axis = ParamAxis { name: "(no parameter varied)".into(), levels: vec![String::new()], effect: 1.0 };
        draw_panel(&panels[0], &axis, &rows, &marks, (y0, y1))?;
    }
    for (axis, area) in axes.iter().zip(panels.iter()) {
        draw_panel(area, axis, &rows, &marks, (y0, y1))?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// What every panel marks besides the candidates: the winner, the peer's time, and the
/// family's colour for the points.
struct Marks<'a> {
    winner: Option<&'a CandidateRecord>,
    peer: Option<f64>,
    color: RGBColor,
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    axis: &ParamAxis,
    rows: &[&CandidateRecord],
    marks: &Marks,
    (y0, y1): (f64, f64),
) -> Result<()> {
    let Marks { winner, peer, color } = *marks;
    let n = axis.levels.len();
    let caption = if axis.effect > 1.0 {
        format!("{}  (best-per-value spread {:.2}×)", axis.name, axis.effect)
    } else {
        axis.name.clone()
    };
    let levels = axis.levels.clone();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, text(LABEL_SIZE + 2.0))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), log_axis(y0, y1))
        .map_err(draw_err)?;
    house_mesh(
        &mut chart.configure_mesh(),
        "",
        "median time (µs)",
        MeshText { desc: TICK_SIZE, tick: TICK_SIZE - 1.0 },
    )
    .disable_x_mesh()
    .x_labels(n.min(16))
    .x_label_formatter(&|v| category_label(&levels, *v))
    .y_labels(40)
    .y_label_formatter(&|v| fmt_num(*v))
    .draw()
    .map_err(draw_err)?;

    let x_of = |r: &CandidateRecord| -> Option<f64> {
        if n == 1 && axis.levels[0].is_empty() {
            return Some(jitter(r));
        }
        let i = axis.index_of(&level_of(r, &axis.name)?)?;
        Some(i as f64 + jitter(r))
    };
    let pts: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((x_of(r)?, r.median_us()?))).collect();
    chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.mix(0.55).filled()))).map_err(draw_err)?;
    if let Some(p) = peer {
        let style = ShapeStyle { color: PEER_COLOR.to_rgba(), filled: false, stroke_width: 2 };
        chart
            .draw_series(DashedLineSeries::new(vec![(-0.5, p), (n as f64 - 0.5, p)], 8, 6, style))
            .map_err(draw_err)?;
    }
    if let Some(w) = winner {
        if let (Some(x), Some(t)) = (x_of(w), w.median_us()) {
            draw_winners(&mut chart, [(x, t)], color, 7)?;
        }
    }
    Ok(())
}
