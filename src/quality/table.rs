//! The quality table: rows, a text table, a CSV, a chart and an HTML section.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::report::labels::{Anchor, IfTaken, LabelPlacer};
use crate::report::style::{
    draw_err, ensure_font, series_color, text, AXIS_DESC_SIZE, LABEL_SIZE, SMALL_SIZE, TICK_SIZE, TITLE_SIZE,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityRow {
    pub method: String,
    pub perplexity: f64,
    pub kl: f64,
    pub top1: f64,
    /// Stored bytes of the layer linears in the method's format.
    pub linear_mb: f64,
    /// linear_mb plus embeddings and norms at 2 bytes per value.
    pub model_mb: f64,
    /// Bits per linear weight (codes, scales and zeros).
    pub bits_per_weight: f64,
    /// Batch-1 decode tokens/s on a GPU, when measured.
    pub decode_tok_s: Option<f64>,
}

/// The table as text; `reference` says what the reference is (printed above the rows).
pub fn format_table(rows: &[QualityRow], reference: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "reference: {reference}");
    let _ = writeln!(
        s,
        "{:<22} {:>10} {:>11} {:>7} {:>6} {:>10} {:>9} {:>10}",
        "method", "perplexity", "KL (nats)", "top-1", "bits", "linear MB", "model MB", "decode t/s"
    );
    for r in rows {
        let tps = r.decode_tok_s.map_or("–".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            s,
            "{:<22} {:>10.3} {:>11.5} {:>6.1}% {:>6.2} {:>10.1} {:>9.1} {:>10}",
            r.method,
            r.perplexity,
            r.kl,
            100.0 * r.top1,
            r.bits_per_weight,
            r.linear_mb,
            r.model_mb,
            tps
        );
    }
    s
}

pub fn write_csv(rows: &[QualityRow], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

pub fn read_csv(path: &Path) -> Result<Vec<QualityRow>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    r.deserialize().map(|row| row.with_context(|| format!("{}: a malformed row", path.display()))).collect()
}

/// KL (log scale) against stored bits per weight: the accuracy each bit buys.
pub fn plot(rows: &[QualityRow], title: &str, out: &Path) -> Result<()> {
    ensure_font()?;
    let pts: Vec<&QualityRow> = rows.iter().filter(|r| r.kl > 0.0 && r.kl.is_finite()).collect();
    if pts.is_empty() {
        anyhow::bail!("no method with a positive KL to plot");
    }
    let (xmin, xmax) =
        pts.iter().fold((f64::INFINITY, 0f64), |(a, b), r| (a.min(r.bits_per_weight), b.max(r.bits_per_weight)));
    let (ymin, ymax) = pts.iter().fold((f64::INFINITY, 0f64), |(a, b), r| (a.min(r.kl), b.max(r.kl)));
    let root = BitMapBackend::new(out, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, text(TITLE_SIZE - 4.0))
        .margin(25)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d((xmin - 0.5)..(xmax + 1.5), (ymin / 2.0..ymax * 2.0).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("stored bits per linear weight")
        .y_desc("KL to reference (nats, log)")
        .axis_desc_style(text(AXIS_DESC_SIZE))
        .label_style(text(TICK_SIZE))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(draw_err)?;
    // Markers first, reserved, so no label covers a point; then each label at the first
    // free spot around its point. Methods at the same bits and KL share a marker; a label
    // with no free spot is left out rather than drawn over another.
    let mut placer = LabelPlacer::new();
    let coords: Vec<(i32, i32)> = pts.iter().map(|r| chart.backend_coord(&(r.bits_per_weight, r.kl))).collect();
    for (i, (r, &c)) in pts.iter().zip(&coords).enumerate() {
        chart.draw_series([Circle::new((r.bits_per_weight, r.kl), 6, series_color(i).filled())]).map_err(draw_err)?;
        placer.reserve(c, 7);
    }
    let mut left_out = vec![];
    for (i, (r, &(px, py))) in pts.iter().zip(&coords).enumerate() {
        let anchors: Vec<Anchor> =
            [(9, 0), (9, -14), (9, 14), (-9, 0), (-9, -14), (-9, 14), (9, -28), (9, 28), (-9, -28), (-9, 28)]
                .into_iter()
                .map(|(dx, dy)| {
                    let h = if dx > 0 { HPos::Left } else { HPos::Right };
                    (px + dx, py + dy, h, VPos::Center)
                })
                .collect();
        if !placer.place(&root, &r.method, text(LABEL_SIZE).color(&series_color(i)), &anchors, IfTaken::Skip)? {
            left_out.push(r.method.as_str());
        }
    }
    if !left_out.is_empty() {
        let note = format!("unlabelled (crowded): {}", left_out.join(", "));
        let (w, h) = root.dim_in_pixel();
        root.draw(&Text::new(
            note,
            (w as i32 - 30, h as i32 - 90),
            text(SMALL_SIZE).pos(Pos::new(HPos::Right, VPos::Bottom)),
        ))
        .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// An HTML section with the table, for the report (`report::html` may embed it).
pub fn html_section(rows: &[QualityRow], reference: &str, chart_src: Option<&str>) -> String {
    let esc = crate::report::html::escape;
    let mut s = String::from("<section id=\"quality\"><h2>Quantization quality</h2>\n");
    let _ = writeln!(s, "<p>Reference: {}</p>", esc(reference));
    if let Some(src) = chart_src {
        let _ = writeln!(s, "<img src=\"{}\" alt=\"KL against bits per weight\">", esc(src));
    }
    s.push_str("<table><tr><th>method</th><th>perplexity</th><th>KL (nats)</th><th>top-1</th><th>bits/weight</th><th>model MB</th><th>decode tok/s</th></tr>\n");
    for r in rows {
        let tps = r.decode_tok_s.map_or("–".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.5}</td><td>{:.1}%</td><td>{:.2}</td><td>{:.1}</td><td>{}</td></tr>",
            esc(&r.method),
            r.perplexity,
            r.kl,
            100.0 * r.top1,
            r.bits_per_weight,
            r.model_mb,
            tps
        );
    }
    s.push_str("</table></section>\n");
    s
}

/// The quality table as a section of `kernlab report`, for every `quality*.csv` in the
/// reports dir.
pub fn report_section() -> crate::report::SectionSource {
    fn claims(p: &Path) -> bool {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("quality") && name.ends_with(".csv")
    }
    fn render(p: &Path, page_dir: &Path) -> Result<String> {
        let rows = read_csv(p)?;
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // `kernlab quality` draws its chart beside the CSV (same stem, .png).
        let chart = p.with_extension("png");
        let chart_src = chart.is_file().then(|| crate::report::links::href(&chart, page_dir));
        let reference = format!("the unquantized model (the \"reference\" row) · {name}");
        Ok(html_section(&rows, &reference, chart_src.as_deref()))
    }
    crate::report::SectionSource { name: "quality table", claims, render }
}
