//! Winner vs peer per shape: two bars per shape (TFLOP/s when every winner has a FLOP
//! count, else time) with the speedup over the peer written above each pair.

use super::chart::{category_label, draw_legend, house_mesh, MeshText};
use super::export::{peer_time_us, peers_per_shape, winners_per_shape, ShapeKey};
use super::style::*;
use super::Caption;
use crate::tune::record::CandidateRecord;
use anyhow::{bail, Result};
use plotters::chart::ChartContext;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeSet;
use std::path::Path;

/// Most shapes one chart shows: each takes a slot of up to 320 px, so thousands of shapes
/// would mean a canvas of gigabytes. The rest are named in the title; the HTML tables
/// list every shape.
pub const MAX_BARS: usize = 40;
/// Longest shape label drawn, in characters.
const MAX_LABEL_CHARS: usize = 32;

struct Pair {
    label: String,
    family: String,
    ours: f64,
    peer: Option<f64>,
    /// Peer time / our time: > 1 means we are faster.
    speedup: Option<f64>,
}

/// What the bars measure.
#[derive(Clone, Copy, PartialEq)]
enum Metric {
    /// % of the roofline bound: comparable across shapes of any size and across memory-
    /// and compute-bound kernels, so it is preferred whenever every winner has it.
    PctOfBound,
    Tflops,
    TimeUs,
}

impl Metric {
    fn choose(winners: &[&CandidateRecord]) -> Metric {
        let all = |f: fn(&CandidateRecord) -> Option<f64>| {
            winners.iter().all(|w| f(w).is_some_and(|v| v.is_finite() && v > 0.0))
        };
        if all(|w| w.pct_of_bound) {
            Metric::PctOfBound
        } else if all(|w| w.tflops) {
            Metric::Tflops
        } else {
            Metric::TimeUs
        }
    }
    fn axis(self) -> &'static str {
        match self {
            Metric::PctOfBound => "% of roofline bound (higher is better)",
            Metric::Tflops => "TFLOP/s (higher is better)",
            Metric::TimeUs => "median time, µs (lower is better)",
        }
    }
    fn value_text(self, v: f64) -> String {
        match self {
            Metric::PctOfBound => format!("{v:.0}%"),
            _ => fmt_num(v),
        }
    }
}

/// The bars of each winner against its peer, at most [`MAX_BARS`] of them, and how many
/// winners had a value to chart at all.
fn pairs_of(
    winners: &[&CandidateRecord],
    records: &[CandidateRecord],
    metric: Metric,
    several_kinds: bool,
) -> (Vec<Pair>, usize) {
    let peers = peers_per_shape(records);
    let pairs: Vec<Pair> = winners
        .iter()
        .filter_map(|w| {
            let ours_t = w.median_us()?;
            let peer_t = peer_time_us(w, &peers);
            let key = ShapeKey::of(w);
            let label = if several_kinds { format!("{} {} {}", key.family, key.dtype, key.shape) } else { key.shape };
            let (ours, peer) = match metric {
                // Same work for both, so the peer's rate is ours scaled by the time ratio.
                Metric::PctOfBound => (w.pct_of_bound?, peer_t.map(|p| w.pct_of_bound.unwrap_or(0.0) * ours_t / p)),
                Metric::Tflops => (w.tflops?, peer_t.map(|p| w.tflops.unwrap_or(0.0) * ours_t / p)),
                Metric::TimeUs => (ours_t, peer_t),
            };
            let label = if label.chars().count() > MAX_LABEL_CHARS {
                label.chars().take(MAX_LABEL_CHARS - 1).chain(std::iter::once('…')).collect()
            } else {
                label
            };
            // A hand-edited CSV can hold inf or NaN; such a bar has no height to draw.
            let peer = peer.filter(|v| v.is_finite() && *v >= 0.0);
            let speedup = peer_t.map(|p| p / ours_t);
            (ours.is_finite() && ours >= 0.0).then(|| Pair { label, family: w.family.clone(), ours, peer, speedup })
        })
        .collect();
    let total = pairs.len();
    (pairs.into_iter().take(MAX_BARS).collect(), total)
}

/// Writes the bar chart of every shape's winner against its peer in `records` to `out`.
pub fn plot_winner_vs_peer(records: &[CandidateRecord], caption: &Caption, out: &Path) -> Result<()> {
    ensure_font()?;
    let winners = winners_per_shape(records);
    if winners.is_empty() {
        bail!("no verified, timed candidates; no winner to compare with a peer");
    }
    let metric = Metric::choose(&winners);
    let several_kinds = {
        let mut k: Vec<(&str, &str)> = winners.iter().map(|w| (w.family.as_str(), w.dtype.as_str())).collect();
        k.dedup();
        k.len() > 1
    };
    let (pairs, total) = pairs_of(&winners, records, metric, several_kinds);
    if total == 0 {
        bail!("no winner has a finite {} to chart", metric.axis());
    }
    let n = pairs.len();
    let ymax = pairs.iter().flat_map(|p| [Some(p.ours), p.peer]).flatten().fold(0.0, f64::max).max(1e-9);
    let longest = pairs.iter().map(|p| p.label.len()).max().unwrap_or(0) as u32;
    let slot = (longest * 9 + 30).clamp(150, 320);
    let size = ((slot * n as u32 + 200).max(800), 650);
    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let what = if several_kinds {
        "winners vs peer".to_string()
    } else {
        format!("{} {} winner vs peer", winners[0].family, winners[0].dtype)
    };
    let mut title = format!("{what} — {} — measured {}", caption.gpu, caption.date);
    if total > n {
        title.push_str(&format!(" — first {n} of {total} shapes"));
    }
    let labels: Vec<String> = pairs.iter().map(|p| p.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, text(TITLE_SIZE - 2.0))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..ymax * 1.22)
        .map_err(draw_err)?;
    house_mesh(&mut chart.configure_mesh(), "shape", metric.axis(), MeshText { desc: AXIS_DESC_SIZE, tick: TICK_SIZE })
        .disable_x_mesh()
        .x_labels(n.min(40))
        .x_label_formatter(&|v| category_label(&labels, *v))
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()
        .map_err(draw_err)?;
    draw_bars(&mut chart, &pairs)?;
    annotate_bars(&chart, &root, &pairs, metric)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, LABEL_SIZE, 12)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Half the width of a pair of bars, in slots.
const BAR_W: f64 = 0.36;

/// Our bar (the family's colour, ringed in the winner red) left, the peer's right.
fn draw_bars<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, pairs: &[Pair]) -> Result<()> {
    let families: BTreeSet<&str> = pairs.iter().map(|p| p.family.as_str()).collect();
    for family in families {
        let color = family_color(family);
        let bars = pairs.iter().enumerate().filter(|(_, p)| p.family == family).flat_map(|(i, p)| {
            let corners = [(i as f64 - BAR_W, 0.0), (i as f64 - 0.01, p.ours)];
            [Rectangle::new(corners, color.filled()), Rectangle::new(corners, WINNER_COLOR.stroke_width(2))]
        });
        chart
            .draw_series(bars)
            .map_err(draw_err)?
            .label(format!("kernlab winner ({family})"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], color.filled()));
    }
    let peer_color = RGBColor(170, 170, 170);
    chart
        .draw_series(pairs.iter().enumerate().filter_map(|(i, p)| {
            let x = i as f64;
            p.peer.map(|v| Rectangle::new([(x + 0.01, 0.0), (x + BAR_W, v)], peer_color.filled()))
        }))
        .map_err(draw_err)?
        .label("peer (cuBLAS / PyTorch, same run)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], peer_color.filled()));
    Ok(())
}

/// The speedup above each pair and our value inside our bar, so the chart reads without
/// the axis.
fn annotate_bars(
    chart: &Chart,
    root: &DrawingArea<BitMapBackend, Shift>,
    pairs: &[Pair],
    metric: Metric,
) -> Result<()> {
    for (i, p) in pairs.iter().enumerate() {
        let top = p.peer.map_or(p.ours, |v| v.max(p.ours));
        let (px, py) = chart.backend_coord(&(i as f64, top));
        let label = match p.speedup {
            Some(s) => format!("{s:.2}× vs peer"),
            None => "no peer".to_string(),
        };
        let ink = match p.speedup {
            Some(s) if s >= 1.0 => RGBColor(20, 120, 40),
            Some(_) => RGBColor(180, 30, 30),
            None => RGBColor(100, 100, 100),
        };
        let above = text(LABEL_SIZE).color(&ink).pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw(&Text::new(label, (px, py - 8), above)).map_err(draw_err)?;
        let (bx, by) = chart.backend_coord(&(i as f64 - BAR_W / 2.0, p.ours));
        let (_, base) = chart.backend_coord(&(0.0, 0.0));
        if base - by < 28 {
            continue; // Too short to hold the text; the axis tells.
        }
        let inside = text(SMALL_SIZE).color(&WHITE).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(metric.value_text(p.ours), (bx, by + 6), inside)).map_err(draw_err)?;
    }
    Ok(())
}
