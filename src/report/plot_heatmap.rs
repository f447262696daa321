//! Heat map of one sweep shape over two parameters: each cell is the fastest verified
//! candidate with those two values (the other parameters at their best), annotated in µs.

use super::chart::category_label;
use super::export::{peer_time_us, peers_per_shape, winner_of, ShapeKey};
use super::style::*;
use super::sweep_params::{level_of, param_axes, ranked_rows, ParamAxis};
use super::Caption;
use crate::tune::record::CandidateRecord;
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Most levels a heat map axis shows: a cell per pair of levels, so thousands of values
/// would mean a canvas of gigapixels (and unreadable cells). The strip chart shows them all.
pub const MAX_HEATMAP_LEVELS: usize = 40;
/// Longest axis label drawn, in characters; longer ones are cut with "…".
const MAX_LABEL_CHARS: usize = 32;

/// The two parameters that matter most for `key` among those with at most
/// `MAX_HEATMAP_LEVELS` values, if at least two such varied.
pub fn heatmap_axes(records: &[CandidateRecord], key: &ShapeKey) -> Option<(String, String)> {
    let axes = param_axes(&ranked_rows(records, key));
    let fitting: Vec<&ParamAxis> = axes.iter().filter(|a| a.levels.len() <= MAX_HEATMAP_LEVELS).collect();
    match fitting.as_slice() {
        [a, b, ..] => Some((a.name.clone(), b.name.clone())),
        _ => None,
    }
}

/// Parameters of `key` left out of its heat map for having too many values, as a note
/// for the report ("BM (3000 values)"), or None when none was.
pub fn heatmap_skipped(records: &[CandidateRecord], key: &ShapeKey) -> Option<String> {
    let axes = param_axes(&ranked_rows(records, key));
    let wide: Vec<String> = axes
        .iter()
        .filter(|a| a.levels.len() > MAX_HEATMAP_LEVELS)
        .map(|a| format!("{} ({} values)", a.name, a.levels.len()))
        .collect();
    (!wide.is_empty()).then(|| {
        format!(
            "{}: no heat map axis for {}: a heat map shows at most {MAX_HEATMAP_LEVELS} values per axis \
             (the strip chart shows them all)",
            key.label(),
            wide.join(", ")
        )
    })
}

fn short_label(l: &str) -> String {
    if l.chars().count() <= MAX_LABEL_CHARS {
        l.to_string()
    } else {
        l.chars().take(MAX_LABEL_CHARS - 1).chain(std::iter::once('…')).collect()
    }
}

/// A few stops of viridis, interpolated: perceptually even and readable in grey scale.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Writes the heat map of `key` over parameters `x_param` × `y_param` to `out`.
pub fn plot_param_heatmap(
    records: &[CandidateRecord],
    key: &ShapeKey,
    x_param: &str,
    y_param: &str,
    caption: &Caption,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let rows = ranked_rows(records, key);
    let axes = param_axes(&rows);
    let find = |n: &str| axes.iter().find(|a| a.name == n).cloned();
    let (Some(ax), Some(ay)) = (find(x_param), find(y_param)) else {
        bail!(
            "{}: parameters {x_param:?} and {y_param:?} must both take two or more values among verified candidates",
            key.label()
        );
    };
    for a in [&ax, &ay] {
        if a.levels.len() > MAX_HEATMAP_LEVELS {
            bail!(
                "{}: parameter {} takes {} values; a heat map shows at most {MAX_HEATMAP_LEVELS} per axis \
                 (the strip chart shows them all)",
                key.label(),
                a.name,
                a.levels.len()
            );
        }
    }
    let grid = best_grid(&rows, &ax, &ay);
    let finite = grid.iter().flatten().flatten().copied();
    let (tmin, tmax) = finite.fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
    if !tmin.is_finite() {
        bail!("{}: no candidate sets both {x_param} and {y_param}", key.label());
    }
    let winner = winner_of(records, key);
    let peer = winner.and_then(|w| peer_time_us(w, &peers_per_shape(records)));
    let winner_at = winner.and_then(|w| winner_cell(w, &ax, &ay));

    let (nx, ny) = (ax.levels.len(), ay.levels.len());
    let cell = (900 / nx.max(ny) as u32).clamp(50, 110);
    let (lx, ly): (Vec<String>, Vec<String>) =
        (ax.levels.iter().map(|l| short_label(l)).collect(), ay.levels.iter().map(|l| short_label(l)).collect());
    // Wide enough for the longest y label (variant names can be long).
    let y_label_w = ly.iter().map(|l| l.chars().count() as u32).max().unwrap_or(4) * 10 + 50;
    let size = ((cell * nx as u32 + 180 + y_label_w).max(760), cell * ny as u32 + 250);
    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let title = format!("{} — fastest time over {} × {}", key.label(), ax.name, ay.name);
    let body = root.margin(8, 0, 0, 0).titled(&title, text(TITLE_SIZE - 4.0)).map_err(draw_err)?;
    let mut note = format!(
        "{} · measured {} · µs, lighter = faster · red outline = winner · grey = no verified candidate",
        caption.gpu, caption.date
    );
    if let Some(p) = peer {
        note.push_str(&format!(" · peer {} µs", fmt_num(p)));
    }
    let (note_area, body) = body.split_vertically(30);
    note_area.draw(&Text::new(note, (10, 4), text(SMALL_SIZE).color(&RGBColor(60, 60, 60)))).map_err(draw_err)?;

    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(y_label_w)
        .build_cartesian_2d(-0.5..(nx as f64 - 0.5), -0.5..(ny as f64 - 0.5))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nx.min(24))
        .y_labels(ny.min(24))
        .x_label_formatter(&|v| category_label(&lx, *v))
        .y_label_formatter(&|v| category_label(&ly, *v))
        .x_desc(ax.name.clone())
        .y_desc(ay.name.clone())
        .axis_desc_style(text(AXIS_DESC_SIZE))
        .label_style(text(TICK_SIZE))
        .draw()
        .map_err(draw_err)?;

    let span = (tmax / tmin).ln();
    for (j, row) in grid.iter().enumerate() {
        for (i, t) in row.iter().enumerate() {
            let (x, y) = (i as f64, j as f64);
            let corners = [(x - 0.48, y - 0.48), (x + 0.48, y + 0.48)];
            let (fill, ink) = match t {
                Some(t) => {
                    // Fastest → 1 (bright yellow), slowest → 0 (dark purple).
                    let u = if span > 0.0 { 1.0 - (t / tmin).ln() / span } else { 1.0 };
                    (viridis(u), if u > 0.55 { BLACK } else { WHITE })
                }
                None => (RGBColor(225, 225, 225), RGBColor(120, 120, 120)),
            };
            chart.draw_series(std::iter::once(Rectangle::new(corners, fill.filled()))).map_err(draw_err)?;
            if winner_at == Some((i, j)) {
                chart
                    .draw_series(std::iter::once(Rectangle::new(corners, WINNER_COLOR.stroke_width(4))))
                    .map_err(draw_err)?;
            }
            let label = t.map(fmt_num).unwrap_or_else(|| "–".into());
            let (px, py) = chart.backend_coord(&(x, y));
            let size = if cell >= 70 { LABEL_SIZE } else { SMALL_SIZE - 1.0 };
            root.draw(&Text::new(label, (px, py), text(size).color(&ink).pos(Pos::new(HPos::Center, VPos::Center))))
                .map_err(draw_err)?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The (x, y) cell of the winner, the row the table names; not simply the fastest cell,
/// which under the tie rule (times within the spread) can be another candidate.
pub fn winner_cell(winner: &CandidateRecord, ax: &ParamAxis, ay: &ParamAxis) -> Option<(usize, usize)> {
    Some((ax.index_of(&level_of(winner, &ax.name)?)?, ay.index_of(&level_of(winner, &ay.name)?)?))
}

/// grid[y][x] = fastest median among rows with those two levels.
fn best_grid(rows: &[&CandidateRecord], ax: &ParamAxis, ay: &ParamAxis) -> Vec<Vec<Option<f64>>> {
    let mut grid = vec![vec![None::<f64>; ax.levels.len()]; ay.levels.len()];
    for r in rows {
        let (Some(lx), Some(ly), Some(t)) = (level_of(r, &ax.name), level_of(r, &ay.name), r.median_us()) else {
            continue;
        };
        let (Some(i), Some(j)) = (ax.index_of(&lx), ay.index_of(&ly)) else { continue };
        let c = &mut grid[j][i];
        *c = Some(c.map_or(t, |v: f64| v.min(t)));
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::export::winners_per_shape;
    use crate::tune::record::{Status, Timing};

    fn rec(bm: i64, bn: i64, t: f64, spread: f64) -> CandidateRecord {
        CandidateRecord {
            family: "gemm".into(),
            variant: "v".into(),
            dtype: "bf16".into(),
            shape: "s".into(),
            params: [("BM".to_string(), bm), ("BN".to_string(), bn)].into_iter().collect(),
            status: Some(Status::Ok),
            timing: Some(Timing { median_us: t, p20_us: t - spread, p80_us: t + spread, min_us: t, reps: 3 }),
            ..Default::default()
        }
    }

    #[test]
    fn outlined_cell_is_the_table_winner_not_the_fastest_cell() {
        // 10.0 and 10.2 tie within the spread; the tie goes to the smaller key (BM=128 as
        // text sorts before BM=64), which is not the fastest cell.
        let rs =
            vec![rec(64, 64, 10.0, 0.5), rec(128, 128, 10.2, 0.5), rec(64, 128, 30.0, 0.1), rec(128, 64, 40.0, 0.1)];
        let key = ShapeKey::of(&rs[0]);
        let table_winner = winners_per_shape(&rs)[0];
        assert_eq!(table_winner.params["BM"], 128);
        let rows = ranked_rows(&rs, &key);
        let axes = param_axes(&rows);
        let (ax, ay) = (axes.iter().find(|a| a.name == "BM").unwrap(), axes.iter().find(|a| a.name == "BN").unwrap());
        let w = winner_of(&rs, &key).unwrap();
        assert_eq!(w.key(), table_winner.key());
        // BM levels are [64, 128], so the winner (128, 128) is cell (1, 1); the fastest is (0, 0).
        assert_eq!(winner_cell(w, ax, ay), Some((1, 1)));
    }
}
