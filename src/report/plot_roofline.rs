//! The roofline chart: measured ceilings as lines, each family's winners as labelled
//! points, and optionally every verified candidate as faint points behind them.

use super::chart::{draw_legend, draw_winners, house_mesh, MeshText};
use super::export::{winners_per_shape, ShapeKey};
use super::labels::{Anchor, IfTaken, LabelPlacer};
use super::style::*;
use crate::roofline::{ridge_point, Ceilings};
use crate::tune::record::{CandidateRecord, Status};
use anyhow::{bail, Result};
use plotters::chart::ChartContext;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeSet;
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

/// What "(xx %)" after a point's label means, naming the ceilings of this GPU: the chart
/// prints it under its title and the HTML page beside the chart.
pub fn pct_note(c: &Ceilings) -> String {
    let dram = if c.dram_read_gbps >= c.dram_copy_gbps { "DRAM read" } else { "DRAM copy" };
    format!(
        "(xx %) = % of the roofline bound at the point's intensity: the shortest time that the {dram} ceiling \
         ({} GB/s) and the compute roof of the kernel's dtype (bf16/fp16 tensor, else fp32 FMA) allow, \
         over the measured time",
        fmt_num(c.dram_gbps())
    )
}

type LogAxis = WithKeyPoints<LogCoord<f64>>;
type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<LogAxis, LogAxis>>;
type Root<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
/// A record with its (FLOP/byte, TFLOP/s) position.
type Point<'r> = (&'r CandidateRecord, (f64, f64));

/// The visible ranges and the lines that set them.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
    /// Highest compute roof, TFLOP/s.
    top: f64,
    dram: f64,
    /// Ridge intensities of each compute roof with DRAM.
    ridges: Vec<f64>,
}

/// Axes: every point and every ridge in view, whole decades, a decade past the ridges.
fn frame(c: &Ceilings, roofs: &[Line], points: &[Point]) -> Frame {
    let top = roofs.iter().map(|r| r.value).fold(0.0, f64::max);
    let dram = c.dram_gbps();
    let ridges: Vec<f64> = roofs.iter().filter_map(|r| ridge_point(r.value, dram)).collect();
    let xs = points.iter().map(|(_, p)| p.0).chain(ridges.iter().copied());
    let (xmin, xmax) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let (x0, x1) = log_range(xmin.min(1.0), xmax * 4.0, 1.5);
    let ymin =
        points.iter().map(|(_, p)| p.1).fold(f64::INFINITY, f64::min).min(dram * x0 / 1000.0 * 2.0).min(top / 100.0);
    let (y0, _) = log_range(ymin, top, 1.2);
    // Headroom above the highest roof for its label, without a mostly empty decade.
    Frame { x: (x0, x1), y: (y0, top * 2.5), top, dram, ridges }
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
    let winners: Vec<Point> =
        winners_per_shape(records).into_iter().filter_map(|r| roofline_point(r).map(|p| (r, p))).collect();
    let faint: Vec<Point> = if opts.show_all_candidates {
        records
            .iter()
            .filter(|r| r.status == Some(Status::Ok))
            .filter_map(|r| roofline_point(r).map(|p| (r, p)))
            .collect()
    } else {
        Vec::new()
    };
    let all: Vec<Point> = winners.iter().chain(faint.iter()).copied().collect();
    let f = frame(ceilings, &roofs, &all);

    let root = BitMapBackend::new(out, opts.size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let title = format!(
        "Roofline — {} (sm {}) — ceilings measured {}",
        if ceilings.gpu.is_empty() { "unknown GPU" } else { &ceilings.gpu },
        ceilings.compute_capability,
        title_date(ceilings, opts)
    );
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(title, (20, 10), text(TITLE_SIZE))).map_err(draw_err)?;
    if !winners.is_empty() {
        let note = pct_note(ceilings);
        head.draw(&Text::new(note, (20, 46), text(SMALL_SIZE).color(&RGBColor(60, 60, 60)))).map_err(draw_err)?;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .margin_top(4)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(log_axis(f.x.0, f.x.1), log_axis(f.y.0, f.y.1))
        .map_err(draw_err)?;
    house_mesh(
        &mut chart.configure_mesh(),
        "Arithmetic intensity (FLOP / byte of DRAM traffic)",
        "Performance (TFLOP/s)",
        MeshText { desc: AXIS_DESC_SIZE, tick: TICK_SIZE },
    )
    .x_labels(40)
    .y_labels(40)
    .x_label_formatter(&|v| fmt_num(*v))
    .y_label_formatter(&|v| fmt_num(*v))
    .draw()
    .map_err(draw_err)?;

    let mut placer = LabelPlacer::new();
    // Ceiling labels must not cover the winners, which are drawn later.
    for (_, p) in &winners {
        placer.reserve(chart.backend_coord(p), 10);
    }
    draw_ceilings(&mut chart, &root, &mut placer, &f, &roofs, &slopes)?;
    let drew_any = draw_points(&mut chart, &faint, &winners)?;
    let left_out = place_winner_labels(&chart, &root, &mut placer, &winners, ceilings)?;
    if left_out > 0 {
        let (w, h) = root.dim_in_pixel();
        let note = format!("{left_out} label(s) left out where points crowd; the report's tables list every shape");
        let pos = Pos::new(HPos::Right, VPos::Bottom);
        root.draw(&Text::new(note, (w as i32 - 24, h as i32 - 8), text(SMALL_SIZE).pos(pos))).map_err(draw_err)?;
    }
    if drew_any {
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight, LABEL_SIZE, 16)?;
    } else {
        let (x0, x1, y0, y1) = (f.x.0, f.x.1, f.y.0, f.y.1);
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

/// Every few pixels along a line, reserved so that no label sits on it.
fn reserve_line(placer: &mut LabelPlacer, from: (i32, i32), to: (i32, i32)) {
    let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()) / 6).max(1);
    for i in 0..=steps {
        let t = f64::from(i) / f64::from(steps);
        let at = |a: i32, b: i32| a + (f64::from(b - a) * t).round() as i32;
        placer.reserve((at(from.0, to.0), at(from.1, to.1)), 1);
    }
}

/// Bandwidth slopes and compute roofs with their labels, and the main ridge.
fn draw_ceilings(
    chart: &mut Chart,
    root: &Root,
    placer: &mut LabelPlacer,
    f: &Frame,
    roofs: &[Line],
    slopes: &[Line],
) -> Result<()> {
    let ((x0, x1), y0) = (f.x, f.y.0);
    let line_style = ShapeStyle { color: CEILING_COLOR.to_rgba(), filled: false, stroke_width: 2 };
    let mut labels: Vec<(String, f64, Vec<Anchor>)> = Vec::new();
    // Bandwidth slopes: from the left edge up to where they meet the highest roof.
    for s in slopes {
        let xr = (f.top * 1000.0 / s.value).min(x1);
        let ends = [(x0, s.value * x0 / 1000.0), (xr, (s.value * xr / 1000.0).min(f.top))];
        chart.draw_series(LineSeries::new(ends, line_style)).map_err(draw_err)?;
        reserve_line(placer, chart.backend_coord(&ends[0]), chart.backend_coord(&ends[1]));
        // Above-left of the slope (the side with no data), at the first free spot along it.
        let anchors = [0.3, 0.45, 0.15, 0.6, 0.75]
            .iter()
            .map(|fr| {
                let (px, py) = chart.backend_coord(&along_slope(x0, xr, y0, s.value, *fr));
                (px - 6, py - 6, HPos::Right, VPos::Bottom)
            })
            .collect();
        labels.push((format!("{} {} GB/s", s.label, fmt_num(s.value)), LABEL_SIZE, anchors));
    }
    // Compute roofs: from their ridge with DRAM to the right edge.
    for (i, r) in roofs.iter().enumerate() {
        let xr = (r.value * 1000.0 / f.dram).max(x0);
        let style = if i == 0 { line_style } else { ShapeStyle { stroke_width: 2, ..CEILING_COLOR.mix(0.6).into() } };
        chart.draw_series(LineSeries::new([(xr, r.value), (x1, r.value)], style)).map_err(draw_err)?;
        reserve_line(placer, chart.backend_coord(&(xr, r.value)), chart.backend_coord(&(x1, r.value)));
        let (px, py) = chart.backend_coord(&(x1, r.value));
        let anchors = vec![(px - 8, py - 6, HPos::Right, VPos::Bottom), (px - 8, py + 6, HPos::Right, VPos::Top)];
        labels.push((format!("{} {} TFLOP/s", r.label, fmt_num(r.value)), LABEL_SIZE, anchors));
    }
    // The ridge of the main roof: where a kernel stops being memory-bound.
    if let Some(r) = f.ridges.first() {
        let dash = ShapeStyle { color: CEILING_COLOR.mix(0.35), filled: false, stroke_width: 1 };
        chart.draw_series(DashedLineSeries::new([(*r, y0), (*r, f.top)], 6, 6, dash)).map_err(draw_err)?;
        let (px, py) = chart.backend_coord(&(*r, y0));
        labels.push((
            format!("ridge {} FLOP/B", fmt_num(*r)),
            SMALL_SIZE,
            vec![(px + 6, py - 8, HPos::Left, VPos::Bottom)],
        ));
    }
    // Labels after every line is reserved, so none is written across another line.
    for (label, size, anchors) in labels {
        placer.place(root, &label, text(size), &anchors, IfTaken::UseFirst)?;
    }
    Ok(())
}

/// Faint candidates, then each family's winners in its fixed colour; false when there
/// was nothing to draw.
fn draw_points<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, faint: &[Point], winners: &[Point]) -> Result<bool> {
    for (r, p) in faint {
        let c = family_color(&r.family);
        chart.draw_series(std::iter::once(Circle::new(*p, 3, c.mix(0.25).filled()))).map_err(draw_err)?;
    }
    let families: BTreeSet<&str> = winners.iter().map(|(r, _)| r.family.as_str()).collect();
    for family in &families {
        let c = family_color(family);
        let pts = winners.iter().filter(|(r, _)| r.family == *family).map(|(_, p)| *p);
        draw_winners(chart, pts, c, 8)?
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
    Ok(!families.is_empty() || !faint.is_empty())
}

/// Winner labels last, so they avoid the ceilings, their labels and every winner marker;
/// returns how many found no free spot and were left out.
fn place_winner_labels(
    chart: &Chart,
    root: &Root,
    placer: &mut LabelPlacer,
    winners: &[Point],
    c: &Ceilings,
) -> Result<usize> {
    let mut left_out = 0;
    for (r, p) in winners {
        let (px, py) = chart.backend_coord(p);
        let label = format!("{} {}", ShapeKey::of(r).shape, pct_suffix(r, c));
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
        if !placer.place(root, label.trim_end(), text(SMALL_SIZE), &offsets, IfTaken::Skip)? {
            left_out += 1;
        }
    }
    Ok(left_out)
}

/// % of bound of a row: the sweep's own column, else recomputed from `c` the same way
/// (the chart's labels and the page's tables both come from here).
pub fn pct_of_bound(r: &CandidateRecord, c: Option<&Ceilings>) -> Option<f64> {
    r.pct_of_bound.filter(|p| p.is_finite()).or_else(|| {
        let c = c?;
        let (intensity, tflops) = roofline_point(r)?;
        let s = r.median_us()? * 1e-6;
        let flops = tflops * 1e12 * s;
        c.roof_for_dtype(&r.dtype).pct_of_bound(flops, flops / intensity, s)
    })
}

fn pct_suffix(r: &CandidateRecord, c: &Ceilings) -> String {
    match pct_of_bound(r, Some(c)) {
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
