//! The roofline chart: measured ceilings as lines, each family's winners as labelled
//! points, and optionally every verified candidate as faint points behind them.

use super::export::{winners_per_shape, ShapeKey};
use super::labels::{Anchor, LabelPlacer};
use super::style::*;
use crate::roofline::{ridge_point, Ceilings};
use crate::tune::record::{CandidateRecord, Status};
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct RooflineOptions {
    /// Draw every verified candidate as a faint point, not only the winners.
    pub show_all_candidates: bool,
    /// Pixel size of the PNG.
    pub size: (u32, u32),
    /// Date in the title; defaults to the date part of `measured_at`.
    pub date: Option<String>,
}

impl Default for RooflineOptions {
    fn default() -> Self {
        RooflineOptions { show_all_candidates: true, size: (1400, 900), date: None }
    }
}

/// A record's position on the chart: (FLOP/byte, TFLOP/s), both positive.
pub fn roofline_point(r: &CandidateRecord) -> Option<(f64, f64)> {
    let i = r.intensity.filter(|i| i.is_finite() && *i > 0.0)?;
    // Older rows may carry only GB/s; the rate follows from bytes × intensity.
    let t = r.tflops.or(r.gbps.map(|g| g * i / 1000.0))?;
    (t.is_finite() && t > 0.0).then_some((i, t))
}

struct Line {
    label: String,
    /// Compute roof (TFLOP/s) or bandwidth slope (GB/s).
    value: f64,
}

/// Compute roofs to draw; bf16 and fp16 merge into one line when within 2 %, which they
/// are on most GPUs, so two labels do not sit on top of each other.
fn compute_roofs(c: &Ceilings) -> Vec<Line> {
    let mut v = Vec::new();
    let (b, h) = (c.tensor_bf16_tflops, c.tensor_fp16_tflops);
    if b > 0.0 && h > 0.0 && (b - h).abs() <= 0.02 * b.max(h) {
        v.push(Line { label: "bf16/fp16 tensor".into(), value: b.max(h) });
    } else {
        if b > 0.0 {
            v.push(Line { label: "bf16 tensor".into(), value: b });
        }
        if h > 0.0 {
            v.push(Line { label: "fp16 tensor".into(), value: h });
        }
    }
    if c.fp32_fma_tflops > 0.0 {
        v.push(Line { label: "fp32 FMA".into(), value: c.fp32_fma_tflops });
    }
    v.retain(|l| l.value.is_finite());
    v
}

fn bandwidths(c: &Ceilings) -> Vec<Line> {
    let mut v = Vec::new();
    if c.l2_gbps > 0.0 {
        v.push(Line { label: "L2".into(), value: c.l2_gbps });
    }
    if c.dram_gbps() > 0.0 {
        v.push(Line { label: "DRAM".into(), value: c.dram_gbps() });
    }
    v.retain(|l| l.value.is_finite());
    v
}

fn title_date(c: &Ceilings, opts: &RooflineOptions) -> String {
    opts.date.clone().unwrap_or_else(|| c.measured_at.chars().take(10).collect())
}

/// Draws the roofline of `ceilings` with the winners (and, if asked, all verified
/// candidates) of `records` to a PNG at `out`. Records without an intensity or a rate
/// (failures, rows of kernels that declare no FLOPs) are skipped.
pub fn plot_roofline(
    ceilings: &Ceilings,
    records: &[CandidateRecord],
    opts: &RooflineOptions,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let roofs = compute_roofs(ceilings);
    let slopes = bandwidths(ceilings);
    if roofs.is_empty() || slopes.is_empty() {
        bail!("the ceilings of {} have no positive compute roof or bandwidth; re-measure them", ceilings.gpu);
    }
    let top = roofs.iter().map(|r| r.value).fold(0.0, f64::max);
    let dram = ceilings.dram_gbps();

    let winners: Vec<(&CandidateRecord, (f64, f64))> =
        winners_per_shape(records).into_iter().filter_map(|r| roofline_point(r).map(|p| (r, p))).collect();
    let faint: Vec<(&CandidateRecord, (f64, f64))> = if opts.show_all_candidates {
        records
            .iter()
            .filter(|r| r.status == Some(Status::Ok))
            .filter_map(|r| roofline_point(r).map(|p| (r, p)))
            .collect()
    } else {
        Vec::new()
    };

    // Axes: every point and every ridge in view, whole decades, a decade past the ridges.
    let ridges: Vec<f64> = roofs.iter().filter_map(|r| ridge_point(r.value, dram)).collect();
    let xs = winners.iter().chain(faint.iter()).map(|(_, p)| p.0).chain(ridges.iter().copied());
    let (xmin, xmax) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let (x0, x1) = log_range(xmin.min(1.0), xmax * 4.0, 1.5);
    let ys = winners.iter().chain(faint.iter()).map(|(_, p)| p.1);
    let ymin = ys.fold(f64::INFINITY, f64::min).min(dram * x0 / 1000.0 * 2.0).min(top / 100.0);
    let (y0, _) = log_range(ymin, top, 1.2);
    // Headroom above the highest roof for its label, without a mostly empty decade.
    let y1 = top * 2.5;

    let root = BitMapBackend::new(out, opts.size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let title = format!(
        "Roofline — {} (sm {}) — {}",
        if ceilings.gpu.is_empty() { "unknown GPU" } else { &ceilings.gpu },
        ceilings.compute_capability,
        title_date(ceilings, opts)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, text(TITLE_SIZE))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("Arithmetic intensity (FLOP / byte of DRAM traffic)")
        .y_desc("Performance (TFLOP/s)")
        .axis_desc_style(text(AXIS_DESC_SIZE))
        .label_style(text(TICK_SIZE))
        .x_labels(40)
        .y_labels(40)
        .x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .draw()
        .map_err(draw_err)?;

    let mut placer = LabelPlacer::new();
    // Ceiling labels must not cover the winners, which are drawn later.
    for (_, p) in &winners {
        placer.reserve(chart.backend_coord(p), 9);
    }
    let line_style = ShapeStyle { color: CEILING_COLOR.to_rgba(), filled: false, stroke_width: 2 };

    // Bandwidth slopes: from the left edge up to where they meet the highest roof.
    for s in &slopes {
        let xr = top * 1000.0 / s.value;
        let pts = vec![(x0, s.value * x0 / 1000.0), (xr.min(x1), (s.value * xr.min(x1) / 1000.0).min(top))];
        chart.draw_series(LineSeries::new(pts, line_style)).map_err(draw_err)?;
        // Above-left of the slope (the side with no data), at the first free spot along it.
        let label = format!("{} {} GB/s", s.label, fmt_num(s.value));
        let anchors: Vec<Anchor> = [0.3, 0.45, 0.15, 0.6, 0.75]
            .iter()
            .map(|f| {
                let (px, py) = chart.backend_coord(&along_slope(x0, xr.min(x1), y0, s.value, *f));
                (px - 6, py - 6, HPos::Right, VPos::Bottom)
            })
            .collect();
        placer.place_first(&root, &label, text(LABEL_SIZE), &anchors)?;
    }
    // Compute roofs: from their ridge with DRAM to the right edge.
    for (i, r) in roofs.iter().enumerate() {
        let xr = (r.value * 1000.0 / dram).max(x0);
        let style = if i == 0 { line_style } else { ShapeStyle { stroke_width: 2, ..CEILING_COLOR.mix(0.6).into() } };
        chart.draw_series(LineSeries::new(vec![(xr, r.value), (x1, r.value)], style)).map_err(draw_err)?;
        let (px, py) = chart.backend_coord(&(x1, r.value));
        let label = format!("{} {} TFLOP/s", r.label, fmt_num(r.value));
        placer.place_first(
            &root,
            &label,
            text(LABEL_SIZE),
            &[(px - 8, py - 6, HPos::Right, VPos::Bottom), (px - 8, py + 6, HPos::Right, VPos::Top)],
        )?;
    }
    // The ridge of the main roof: where a kernel stops being memory-bound.
    if let Some(r) = ridges.first() {
        let dash = ShapeStyle { color: CEILING_COLOR.mix(0.35), filled: false, stroke_width: 1 };
        chart.draw_series(DashedLineSeries::new(vec![(*r, y0), (*r, top)], 6, 6, dash)).map_err(draw_err)?;
        let (px, py) = chart.backend_coord(&(*r, y0));
        let label = format!("ridge {} FLOP/B", fmt_num(*r));
        placer.place_first(&root, &label, text(SMALL_SIZE), &[(px + 6, py - 8, HPos::Left, VPos::Bottom)])?;
    }

    // One colour per family, in name order, shared by faint points and winners.
    let families: BTreeMap<&str, usize> = {
        let mut names: Vec<&str> = winners.iter().chain(faint.iter()).map(|(r, _)| r.family.as_str()).collect();
        names.sort();
        names.dedup();
        names.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
    };
    for (r, p) in &faint {
        let c = series_color(families[r.family.as_str()]);
        chart.draw_series(std::iter::once(Circle::new(*p, 3, c.mix(0.25).filled()))).map_err(draw_err)?;
    }
    for (family, ci) in &families {
        let c = series_color(*ci);
        let pts: Vec<(f64, f64)> = winners.iter().filter(|(r, _)| r.family == *family).map(|(_, p)| *p).collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(pts.iter().map(|p| {
                EmptyElement::at(*p)
                    + Circle::new((0, 0), 8, c.filled())
                    + Circle::new((0, 0), 8, BLACK.stroke_width(1))
            }))
            .map_err(draw_err)?
            .label(format!("{family} (winners)"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 7, c.filled()));
    }
    if !faint.is_empty() {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(draw_err)?
            .label("all verified candidates")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, RGBColor(120, 120, 120).mix(0.4).filled()));
    }
    // Winner labels last, so they avoid the ceiling labels and every winner marker.
    for (r, p) in &winners {
        let (px, py) = chart.backend_coord(p);
        let label = format!("{} {}", ShapeKey::of(r).shape, pct_suffix(r));
        let offsets = [
            (px + 12, py, HPos::Left, VPos::Center),
            (px - 12, py, HPos::Right, VPos::Center),
            (px, py - 14, HPos::Center, VPos::Bottom),
            (px, py + 14, HPos::Center, VPos::Top),
            (px + 12, py - 22, HPos::Left, VPos::Center),
            (px + 12, py + 22, HPos::Left, VPos::Center),
            (px - 12, py - 22, HPos::Right, VPos::Center),
            (px - 12, py + 22, HPos::Right, VPos::Center),
        ];
        placer.place_if_free(&root, &label, text(SMALL_SIZE), &offsets)?;
    }
    if !families.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(16)
            .label_font(text(LABEL_SIZE))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(draw_err)?;
    } else {
        let (px, py) = chart.backend_coord(&((x0 * x1).sqrt(), (y0 * y1).sqrt()));
        root.draw(&Text::new(
            "no measured kernels yet: run `kernlab sweep <family>`",
            (px, py),
            text(LABEL_SIZE).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn pct_suffix(r: &CandidateRecord) -> String {
    match r.pct_of_bound {
        Some(p) if p.is_finite() => format!("({p:.0}%)"),
        _ => String::new(),
    }
}

/// A point on the slope `bw`, `frac` of the way (in log x) across its visible part.
fn along_slope(x_left: f64, x_right: f64, y_floor: f64, bw: f64, frac: f64) -> (f64, f64) {
    // Start where the slope enters the plot (it may enter from the bottom edge).
    let x_enter = x_left.max(y_floor * 1000.0 / bw);
    let lx = 10f64.powf(x_enter.log10() + (x_right.log10() - x_enter.log10()) * frac);
    (lx, bw * lx / 1000.0)
}

/// File name of the roofline chart of a GPU, matching its ceilings file:
/// `roofline-nvidia-h100-80gb-hbm3-sm90.png`.
pub fn roofline_png_name(ceilings: &Ceilings) -> String {
    let json = crate::roofline::ceilings_file_name(&ceilings.gpu, &ceilings.compute_capability);
    let stem = json.trim_start_matches("ceilings-").trim_end_matches(".json");
    format!("roofline-{stem}.png")
}
