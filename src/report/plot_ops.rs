//! Where a decode step goes: the per-op profile of one or more `kernlab e2e --profile` runs
//! as grouped horizontal bars (µs of each op per decode step at batch 1, one colour per
//! run), so a run before and after a change, or bf16 beside int4, read off one chart.

use super::chart::{category_label, draw_legend, house_mesh, MeshText};
use super::style::*;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// Most runs one chart compares (more would not read as groups).
pub const MAX_RUNS: usize = 4;

/// One profiled run: its label and its (op, calls, total ms) rows.
pub struct OpsRun<'a> {
    pub label: String,
    pub profile: &'a [(String, u64, f64)],
}

/// µs per decode step of each op of `prefix` (`b1 `), in the run's order, without the
/// prefix. The steps are the embedding's calls (once a step; else the lm_head's, else the
/// rarest op's); ops that ran only in the prefill (a fused run's plain gate+up) are spread
/// over the steps like the rest, and the prefill's attention (`attention (prefill)`) is
/// left out.
pub fn per_step_us(profile: &[(String, u64, f64)], prefix: &str) -> Vec<(String, f64)> {
    let rows: Vec<&(String, u64, f64)> = profile
        .iter()
        .filter(|(op, calls, ms)| op.starts_with(prefix) && !op.contains("(prefill)") && *calls > 0 && ms.is_finite())
        .collect();
    let once = |name: &str| rows.iter().find(|r| r.0[prefix.len()..].ends_with(name)).map(|r| r.1);
    let Some(steps) = once("embedding").or_else(|| once("lm_head")).or_else(|| rows.iter().map(|r| r.1).min()) else {
        return vec![];
    };
    rows.into_iter().map(|(op, _, ms)| (op[prefix.len()..].to_string(), 1000.0 * ms / steps as f64)).collect()
}

/// Draws the batch-1 ops of up to [`MAX_RUNS`] runs into `out` (PNG).
pub fn plot_decode_ops(runs: &[OpsRun], title: &str, out: &Path) -> Result<()> {
    ensure_font()?;
    let series: Vec<(String, Vec<(String, f64)>)> = runs
        .iter()
        .take(MAX_RUNS)
        .map(|r| (r.label.clone(), per_step_us(r.profile, "b1 ")))
        .filter(|(_, ops)| !ops.is_empty())
        .collect();
    if series.is_empty() {
        bail!("no run has a batch-1 per-op profile (kernlab e2e --profile)");
    }
    // Ops in the first run's order, then any the others add.
    let mut ops: Vec<String> = Vec::new();
    for (_, s) in &series {
        for (op, _) in s {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
    }
    let xmax = series.iter().flat_map(|(_, s)| s.iter().map(|(_, v)| *v)).fold(0.0, f64::max).max(1e-9);
    let (n, k) = (ops.len(), series.len());
    let size = (1300, (n as u32 * (18 * k as u32 + 14) + 220).max(500));
    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    // Category i is drawn at y = n-1-i, so the first op is on top.
    let labels: Vec<String> = ops.iter().rev().cloned().collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, text(TITLE_SIZE - 4.0))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..xmax * 1.15, -0.5..(n as f64 - 0.5))
        .map_err(draw_err)?;
    house_mesh(
        &mut chart.configure_mesh(),
        "µs per decode step (batch 1)",
        "",
        MeshText { desc: AXIS_DESC_SIZE, tick: TICK_SIZE },
    )
    .disable_y_mesh()
    .y_labels(n)
    .y_label_formatter(&|v| category_label(&labels, *v))
    .x_label_formatter(&|v| fmt_num(*v))
    .draw()
    .map_err(draw_err)?;
    let band = 0.8 / k as f64;
    for (j, (label, s)) in series.iter().enumerate() {
        let color = series_color(j);
        let bars = s.iter().filter_map(|(op, v)| {
            let i = ops.iter().position(|o| o == op)?;
            let y = (n - 1 - i) as f64 + 0.4 - band * (j as f64 + 1.0);
            Some(Rectangle::new([(0.0, y + 0.02), (*v, y + band - 0.02)], color.filled()))
        });
        chart
            .draw_series(bars)
            .map_err(draw_err)?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 18, y + 7)], color.filled()));
    }
    draw_legend(&mut chart, plotters::chart::SeriesLabelPosition::LowerRight, LABEL_SIZE, 12)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Vec<(String, u64, f64)> {
        vec![
            ("b1 embedding".into(), 128, 0.2),
            ("b1 gemm qkv".into(), 4096, 40.96),
            ("b1 attention (prefill)".into(), 32, 0.32),
            ("b1 rmsnorm".into(), 8192, 41.0),
            ("b8 gemm qkv".into(), 4096, 80.0),
        ]
    }

    #[test]
    fn per_step_times_of_one_batch_without_prefill_ops() {
        let v = per_step_us(&profile(), "b1 ");
        let names: Vec<&str> = v.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["embedding", "gemm qkv", "rmsnorm"]);
        // 128 steps: 4096 qkv calls of 10 µs are 320 µs a step.
        assert!((v[1].1 - 320.0).abs() < 1e-9 && (v[2].1 - 41000.0 / 128.0).abs() < 1e-9);
        assert!(per_step_us(&profile(), "b4 ").is_empty());
        // A prefill-only op (32 calls) does not set the step count; the embedding does.
        let mut p = profile();
        p.push(("b1 gemm gate_up".into(), 32, 3.2));
        assert!((per_step_us(&p, "b1 ")[1].1 - 320.0).abs() < 1e-9);
    }

    #[test]
    fn draws_runs_side_by_side_and_refuses_none() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ops.png");
        let (p, q) = (profile(), profile());
        let runs = [OpsRun { label: "before".into(), profile: &p }, OpsRun { label: "after".into(), profile: &q }];
        plot_decode_ops(&runs, "decode step", &out).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 1000);
        let empty: Vec<(String, u64, f64)> = vec![];
        let e = plot_decode_ops(&[OpsRun { label: "x".into(), profile: &empty }], "t", &out).unwrap_err();
        assert!(e.to_string().contains("--profile"), "{e}");
    }
}
