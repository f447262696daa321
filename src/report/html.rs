//! `kernlab report`: one self-contained HTML page over a reports directory.
//!
//! The page embeds every chart as a base64 data URI (it opens from disk, mailed or
//! copied, with no server) and also links the PNG and CSV files beside it. Charts are
//! regenerated from the CSVs each time, so the page always matches the data.

use super::export::{params_text, peer_time_us, peers_per_shape, status_counts, winners_per_shape, ShapeKey};
use super::plot_heatmap::{heatmap_axes, heatmap_skipped, plot_param_heatmap};
use super::plot_roofline::{plot_roofline, roofline_png_name, roofline_point, RooflineOptions};
use super::style::{fmt_num, slug};
use super::sweep_params::{param_axes, ranked_rows, ranked_shapes};
use super::{plot_param_strips, plot_winner_vs_peer, Caption};
use crate::roofline::Ceilings;
use crate::tune::record::{read_records, CandidateRecord};
use anyhow::{bail, Context, Result};
use base64::Engine;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where to look and what to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub reports_dir: PathBuf,
    pub out_html: PathBuf,
    /// Ceilings JSON files kept outside the reports dir (the tuned database's directory).
    /// `ceilings*.json` files inside the reports dir are always read too.
    pub extra_ceilings: Vec<PathBuf>,
    /// Draw every verified candidate on the roofline, not only the winners.
    pub roofline_all_candidates: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SweepSummary {
    pub csv: PathBuf,
    pub rows: usize,
    pub winners: usize,
    pub charts: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    pub html: PathBuf,
    pub sweeps: Vec<SweepSummary>,
    pub ceilings: Vec<PathBuf>,
    /// Every PNG written, roofline included.
    pub charts: Vec<PathBuf>,
    /// Things skipped on the way (unreadable CSVs, charts that could not be drawn).
    pub warnings: Vec<String>,
}

/// Builds the report of everything in `reports_dir` into `out_html` (PNGs go into
/// `reports_dir`). See [`build_report_with`].
pub fn build_report(reports_dir: &Path, out_html: &Path) -> Result<ReportSummary> {
    build_report_with(&ReportOptions {
        reports_dir: reports_dir.to_path_buf(),
        out_html: out_html.to_path_buf(),
        extra_ceilings: Vec::new(),
        roofline_all_candidates: true,
    })
}

struct Sweep {
    csv: PathBuf,
    stem: String,
    records: Vec<CandidateRecord>,
    charts: Vec<Chart>,
}

struct Chart {
    path: PathBuf,
    alt: String,
}

/// Finds sweep CSVs and ceilings, draws every chart, writes one HTML page.
///
/// A CSV that is not a kernlab sweep, or a chart that cannot be drawn, becomes a warning
/// in the summary and on the page rather than an error: one bad file should not cost the
/// user the rest of the report. A missing or unreadable directory is an error.
pub fn build_report_with(opts: &ReportOptions) -> Result<ReportSummary> {
    let dir = &opts.reports_dir;
    if !dir.is_dir() {
        bail!("{} is not a directory; run a sweep first (`kernlab sweep <family>`) or pass --dir", dir.display());
    }
    let mut summary = ReportSummary { html: opts.out_html.clone(), ..Default::default() };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();

    // Ceilings: those in the dir, then the extra ones; one per GPU, the first wins.
    let mut ceilings: Vec<(PathBuf, Ceilings)> = Vec::new();
    let named = |p: &PathBuf| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        n.starts_with("ceilings") && n.ends_with(".json")
    };
    for p in entries.iter().filter(|p| named(p)).chain(opts.extra_ceilings.iter()) {
        match Ceilings::load(p).and_then(|c| c.validate().map(|_| c)) {
            Ok(c) if !ceilings.iter().any(|(_, o)| o.gpu == c.gpu && o.compute_capability == c.compute_capability) => {
                summary.ceilings.push(p.clone());
                ceilings.push((p.clone(), c));
            }
            Ok(_) => {}
            Err(e) => summary.warnings.push(format!("skipped {}: {e:#}", p.display())),
        }
    }

    let mut sweeps: Vec<Sweep> = Vec::new();
    for p in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "csv") && !crate::paths::is_auxiliary_csv(p))
    {
        match read_records(p) {
            Ok(records) => {
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("sweep").to_string();
                sweeps.push(Sweep { csv: p.clone(), stem, records, charts: Vec::new() });
            }
            Err(e) => summary.warnings.push(format!("skipped {} (not a kernlab sweep CSV?): {e:#}", p.display())),
        }
    }

    // Charts.
    let mut rooflines: Vec<(usize, Chart)> = Vec::new();
    for (i, (_, c)) in ceilings.iter().enumerate() {
        // A GPU's roofline shows the rows measured on it (and rows that name no GPU).
        let rows: Vec<CandidateRecord> = sweeps
            .iter()
            .flat_map(|s| s.records.iter())
            .filter(|r| r.gpu.is_empty() || r.gpu == c.gpu || ceilings.len() == 1)
            .cloned()
            .collect();
        let path = dir.join(roofline_png_name(c));
        let ropts = RooflineOptions { show_all_candidates: opts.roofline_all_candidates, ..Default::default() };
        match plot_roofline(c, &rows, &ropts, &path) {
            Ok(()) => rooflines.push((i, Chart { path, alt: format!("Roofline of {}", c.gpu) })),
            Err(e) => summary.warnings.push(format!("roofline of {}: {e:#}", c.gpu)),
        }
    }
    for s in &mut sweeps {
        draw_sweep_charts(dir, s, &mut summary.warnings);
    }

    // Page.
    let html_dir = opts.out_html.parent().map(Path::to_path_buf).unwrap_or_default();
    let page = render_page(&ceilings, &rooflines, &sweeps, &summary.warnings, &html_dir)?;
    if let Some(parent) = opts.out_html.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    std::fs::write(&opts.out_html, page).with_context(|| format!("writing {}", opts.out_html.display()))?;

    summary.charts.extend(rooflines.iter().map(|(_, c)| c.path.clone()));
    for s in &sweeps {
        summary.charts.extend(s.charts.iter().map(|c| c.path.clone()));
        summary.sweeps.push(SweepSummary {
            csv: s.csv.clone(),
            rows: s.records.len(),
            winners: winners_per_shape(&s.records).len(),
            charts: s.charts.iter().map(|c| c.path.clone()).collect(),
        });
    }
    Ok(summary)
}

/// Bars over all shapes, then a strip chart (and heat map if two parameters varied) per shape.
fn draw_sweep_charts(dir: &Path, s: &mut Sweep, warnings: &mut Vec<String>) {
    let mut caption = Caption::for_records(&s.records);
    // Rows carry no timestamp; the CSV's last write is when the sweep last measured.
    if let Ok(modified) = std::fs::metadata(&s.csv).and_then(|m| m.modified()) {
        caption.date = chrono::DateTime::<chrono::Local>::from(modified).format("%Y-%m-%d").to_string();
    }
    let mut push = |res: Result<()>, path: PathBuf, alt: String, charts: &mut Vec<Chart>| match res {
        Ok(()) => charts.push(Chart { path, alt }),
        Err(e) => warnings.push(format!("{}: {e:#}", path.display())),
    };
    if winners_per_shape(&s.records).is_empty() {
        return;
    }
    let path = dir.join(format!("{}.vs-peer.png", s.stem));
    push(
        plot_winner_vs_peer(&s.records, &caption, &path),
        path,
        format!("{}: winner vs peer per shape", s.stem),
        &mut s.charts,
    );
    let mut skipped = Vec::new();
    for key in ranked_shapes(&s.records) {
        let tag = slug(&format!("{}_{}_{}", key.family, key.dtype, key.shape));
        let path = dir.join(format!("{}.params.{tag}.png", s.stem));
        push(
            plot_param_strips(&s.records, &key, &caption, &path),
            path,
            format!("{}: time by parameter", key.label()),
            &mut s.charts,
        );
        skipped.extend(heatmap_skipped(&s.records, &key));
        if let Some((x, y)) = heatmap_axes(&s.records, &key) {
            let path = dir.join(format!("{}.heatmap.{tag}.png", s.stem));
            push(
                plot_param_heatmap(&s.records, &key, &x, &y, &caption, &path),
                path,
                format!("{}: heat map over {x} × {y}", key.label()),
                &mut s.charts,
            );
        }
    }
    warnings.extend(skipped);
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// A link target for `path` as seen from the HTML file's directory: the bare file name
/// when they share a directory, else the path as given. Percent-encodes what URLs need.
fn href(path: &Path, html_dir: &Path) -> String {
    let rel = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) if same_dir(p, html_dir) => PathBuf::from(n),
        _ => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    let mut out = String::new();
    for b in rel.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok();
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

fn img_tag(chart: &Chart, html_dir: &Path) -> Result<String> {
    let bytes = std::fs::read(&chart.path).with_context(|| format!("reading {}", chart.path.display()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let name = chart.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    Ok(format!(
        "<figure><img src=\"data:image/png;base64,{b64}\" alt=\"{alt}\" data-file=\"{file}\">\
         <figcaption>{alt} · <a href=\"{href}\">{file}</a></figcaption></figure>\n",
        alt = escape(&chart.alt),
        file = escape(&name),
        href = escape(&href(&chart.path, html_dir)),
    ))
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222}\
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.8em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}tr:nth-child(even){background:#fafafa}\
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}\
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.5em 1em}.muted{color:#666}code{background:#f3f3f3;padding:0 3px}";

fn render_page(
    ceilings: &[(PathBuf, Ceilings)],
    rooflines: &[(usize, Chart)],
    sweeps: &[Sweep],
    warnings: &[String],
    html_dir: &Path,
) -> Result<String> {
    let mut h = String::new();
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M").to_string();
    writeln!(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")?;
    writeln!(h, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")?;
    writeln!(h, "<title>kernlab report</title><style>{STYLE}</style></head><body>")?;
    writeln!(
        h,
        "<h1>kernlab report</h1><p class=\"muted\">Generated {} from {} sweep file(s).</p>",
        escape(&now),
        sweeps.len()
    )?;
    if !warnings.is_empty() {
        writeln!(h, "<div class=\"warn\"><b>Skipped</b><ul>")?;
        for w in warnings {
            writeln!(h, "<li>{}</li>", escape(w))?;
        }
        writeln!(h, "</ul></div>")?;
    }

    writeln!(h, "<h2 id=\"device\">Device and ceilings</h2>")?;
    if ceilings.is_empty() {
        writeln!(
            h,
            "<p>No ceilings found. Run <code>kernlab roofline</code> on the GPU to measure them; \
             the roofline chart and the bound columns need them.</p>"
        )?;
    }
    for (i, (path, c)) in ceilings.iter().enumerate() {
        h.push_str(&ceilings_table(c, path, html_dir));
        for (_, chart) in rooflines.iter().filter(|(j, _)| *j == i) {
            h.push_str(&img_tag(chart, html_dir)?);
        }
    }

    if !sweeps.is_empty() {
        writeln!(h, "<h2>Sweeps</h2><ul>")?;
        for s in sweeps {
            writeln!(
                h,
                "<li><a href=\"#sweep-{id}\">{name}</a></li>",
                id = escape(&slug(&s.stem)),
                name = escape(&s.stem)
            )?;
        }
        writeln!(h, "</ul>")?;
    }
    for s in sweeps {
        let ceil = ceilings_for(ceilings, &s.records);
        h.push_str(&sweep_section(s, ceil, html_dir)?);
    }
    writeln!(h, "</body></html>")?;
    Ok(h)
}

/// The ceilings that apply to a sweep: those of its GPU, or the only ones there are.
fn ceilings_for<'a>(ceilings: &'a [(PathBuf, Ceilings)], records: &[CandidateRecord]) -> Option<&'a Ceilings> {
    let gpu = records.iter().map(|r| r.gpu.as_str()).find(|g| !g.is_empty());
    ceilings.iter().map(|(_, c)| c).find(|c| Some(c.gpu.as_str()) == gpu).or(if ceilings.len() == 1 {
        Some(&ceilings[0].1)
    } else {
        None
    })
}

fn ceilings_table(c: &Ceilings, path: &Path, html_dir: &Path) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h3>{} <span class=\"muted\">(compute capability {}, measured {})</span></h3>",
        escape(&c.gpu),
        escape(&c.compute_capability),
        escape(&c.measured_at)
    );
    let _ = writeln!(h, "<table class=\"ceilings\"><tr><th class=\"l\">ceiling</th><th>measured</th></tr>");
    let rows = [
        ("DRAM copy (read + write)", c.dram_copy_gbps, "GB/s"),
        ("DRAM read", c.dram_read_gbps, "GB/s"),
        ("L2", c.l2_gbps, "GB/s"),
        ("bf16 tensor core", c.tensor_bf16_tflops, "TFLOP/s"),
        ("fp16 tensor core", c.tensor_fp16_tflops, "TFLOP/s"),
        ("fp32 FMA", c.fp32_fma_tflops, "TFLOP/s"),
    ];
    for (name, v, unit) in rows {
        let _ = writeln!(h, "<tr><td class=\"l\">{name}</td><td>{} {unit}</td></tr>", escape(&fmt_num(v)));
    }
    for (k, v) in &c.peers {
        let _ = writeln!(h, "<tr><td class=\"l\">peer: {}</td><td>{}</td></tr>", escape(k), escape(&fmt_num(*v)));
    }
    for (k, v) in &c.environment {
        let _ = writeln!(h, "<tr><td class=\"l\">{}</td><td>{}</td></tr>", escape(k), escape(v));
    }
    let _ = writeln!(h, "</table>");
    let _ = writeln!(
        h,
        "<p class=\"muted\">From <a href=\"{}\">{}</a>.</p>",
        escape(&href(path, html_dir)),
        escape(&path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
    );
    h
}

/// % of bound: the sweep's own column, else recomputed from the ceilings.
fn pct_of_bound(r: &CandidateRecord, c: Option<&Ceilings>) -> Option<f64> {
    r.pct_of_bound.filter(|p| p.is_finite()).or_else(|| {
        let c = c?;
        let (intensity, tflops) = roofline_point(r)?;
        let s = r.median_us()? * 1e-6;
        let flops = tflops * 1e12 * s;
        c.roof_for_dtype(&r.dtype).pct_of_bound(flops, flops / intensity, s)
    })
}

fn opt_num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map(fmt_num).unwrap_or_else(|| "–".into())
}

fn sweep_section(s: &Sweep, ceil: Option<&Ceilings>, html_dir: &Path) -> Result<String> {
    let mut h = String::new();
    let id = slug(&s.stem);
    let csv_name = s.csv.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    writeln!(h, "<h2 id=\"sweep-{}\">Sweep {}</h2>", escape(&id), escape(&s.stem))?;
    let counts: Vec<String> = status_counts(&s.records).iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(
        h,
        "<p>Data: <a href=\"{}\">{}</a> · {} rows ({})</p>",
        escape(&href(&s.csv, html_dir)),
        escape(&csv_name),
        s.records.len(),
        escape(&counts.join(", "))
    )?;
    let winners = winners_per_shape(&s.records);
    if winners.is_empty() {
        writeln!(h, "<p>No verified, timed candidate in this file yet.</p>")?;
        return Ok(h);
    }
    let peers = peers_per_shape(&s.records);
    writeln!(
        h,
        "<table class=\"winners\" id=\"table-{}\"><tr><th class=\"l\">family</th><th class=\"l\">dtype</th>\
         <th class=\"l\">shape</th><th class=\"l\">variant</th><th class=\"l\">config</th><th>time µs (median ± spread)</th>\
         <th>TFLOP/s</th><th>GB/s</th><th>% of bound</th><th class=\"l\">bound</th><th>peer µs</th><th>peer time / ours</th></tr>",
        escape(&id)
    )?;
    for w in &winners {
        let t = w.timing.unwrap_or_default();
        let peer = peer_time_us(w, &peers);
        let bound = match (ceil, w.intensity) {
            (Some(c), Some(i)) if i.is_finite() && i > 0.0 => c.roof_for_dtype(&w.dtype).limiting_bound(i).as_str(),
            _ => "–",
        };
        let ratio = peer.map(|p| p / t.median_us);
        writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td class=\"l\"><code>{}</code></td><td>{} ± {}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&w.family),
            escape(&w.dtype),
            escape(&w.shape),
            escape(&w.variant),
            escape(&params_text(w)),
            escape(&fmt_num(t.median_us)),
            escape(&fmt_num(t.spread_us())),
            escape(&opt_num(w.tflops)),
            escape(&opt_num(w.gbps)),
            escape(&opt_num(pct_of_bound(w, ceil))),
            bound,
            escape(&opt_num(peer)),
            escape(&ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())),
        )?;
    }
    writeln!(h, "</table>")?;
    writeln!(
        h,
        "<p class=\"muted\">Spread is half the 20–80 percentile band; a peer time / ours above 1 means the \
         kernlab winner is faster.</p>"
    )?;

    // Which parameters matter, per shape, in words as well as in the charts.
    writeln!(h, "<details><summary>Parameter influence per shape</summary><ul>")?;
    for key in winners.iter().map(|w| ShapeKey::of(w)) {
        let axes = param_axes(&ranked_rows(&s.records, &key));
        let parts: Vec<String> = axes.iter().map(|a| format!("{} {:.2}×", a.name, a.effect)).collect();
        writeln!(
            h,
            "<li>{}: {}</li>",
            escape(&key.label()),
            escape(if parts.is_empty() { "no parameter varied" } else { "" }) + &escape(&parts.join(", "))
        )?;
    }
    writeln!(
        h,
        "</ul><p class=\"muted\">Each number is the best time at a parameter's worst value over the best time at \
         its best value, other parameters free.</p></details>"
    )?;
    for c in &s.charts {
        h.push_str(&img_tag(c, html_dir)?);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn missing_dir_is_a_clear_error() {
        let err = build_report(Path::new("/nonexistent/kernlab"), Path::new("/tmp/x.html")).unwrap_err();
        assert!(format!("{err:#}").contains("not a directory"));
    }
}
