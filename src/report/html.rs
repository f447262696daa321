//! `kernlab report`: one HTML page over a reports directory.
//!
//! Charts are PNG files written beside the page and linked by relative paths, so the page
//! stays small and opens at once, and the page with its folder can be moved or served as
//! is. Charts are regenerated from the data each time, so the page always matches it.
//! Dates on the page are when the data was measured, never when the page was built.

pub use super::escape::escape;

use super::e2e_section::{e2e_table, is_e2e_json, read_e2e, E2eFile, E2E_BOUND_NOTE};
use super::export::winners_per_shape;
use super::figure::Figure;
use super::plot_heatmap::{heatmap_axes, heatmap_skipped, plot_param_heatmap};
use super::plot_ops::{plot_decode_ops, OpsRun, MAX_RUNS};
use super::plot_roofline::{pct_note, plot_roofline, roofline_png_name, RooflineOptions};
use super::sections::SectionSource;
use super::style::slug;
use super::sweep_params::ranked_shapes;
use super::sweep_table::{sweep_section, Sweep};
use super::{file_date, plot_param_strips, plot_winner_vs_peer, Caption};
use crate::roofline::Ceilings;
use crate::tune::record::{read_records, CandidateRecord};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where to look and what to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub reports_dir: PathBuf,
    /// The page; its charts are written into the same folder.
    pub out_html: PathBuf,
    /// Ceilings JSON files kept outside the reports dir (the tuned database's directory).
    /// `ceilings*.json` files inside the reports dir are always read too.
    pub extra_ceilings: Vec<PathBuf>,
    /// Draw every verified candidate on the roofline, not only the winners.
    pub roofline_all_candidates: bool,
    /// Other modules' files to show (the quality table), checked before sweep CSVs.
    pub sections: Vec<SectionSource>,
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
    /// e2e result files shown.
    pub e2e: Vec<PathBuf>,
    /// Files shown by a [`SectionSource`].
    pub sections: Vec<PathBuf>,
    /// Every PNG written, roofline included.
    pub charts: Vec<PathBuf>,
    /// Things skipped on the way (unreadable files, charts that could not be drawn): the
    /// caller prints them to stderr; the page lists them under "Notes" at its end.
    pub warnings: Vec<String>,
}

/// Builds the report of everything in `reports_dir` into `out_html`, charts beside it.
/// See [`build_report_with`].
pub fn build_report(reports_dir: &Path, out_html: &Path) -> Result<ReportSummary> {
    build_report_with(&ReportOptions {
        reports_dir: reports_dir.to_path_buf(),
        out_html: out_html.to_path_buf(),
        extra_ceilings: Vec::new(),
        roofline_all_candidates: true,
        sections: Vec::new(),
    })
}

/// Everything the page shows, read from the reports dir.
#[derive(Default)]
struct Inputs {
    ceilings: Vec<(PathBuf, Ceilings)>,
    sweeps: Vec<Sweep>,
    e2e: Vec<(PathBuf, E2eFile, String)>,
    sections: Vec<(PathBuf, String)>,
    /// Roofline charts, by index into `ceilings`.
    rooflines: Vec<(usize, Figure)>,
    /// The per-op decode breakdown of the profiled e2e runs, side by side.
    e2e_ops: Option<Figure>,
    notes: Vec<String>,
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// Finds ceilings, sweep CSVs, e2e results and contributed sections, draws every chart,
/// writes one HTML page.
///
/// A file that cannot be read, or a chart that cannot be drawn, becomes a note rather than
/// an error: one bad file should not cost the user the rest of the report. A missing or
/// unreadable directory is an error.
pub fn build_report_with(opts: &ReportOptions) -> Result<ReportSummary> {
    let dir = &opts.reports_dir;
    if !dir.is_dir() {
        bail!("{} is not a directory; run a sweep first (`kernlab sweep <family>`) or pass --dir", dir.display());
    }
    let out_dir = match opts.out_html.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();

    let mut inputs = read_inputs(&entries, opts, &out_dir);
    draw_rooflines(&mut inputs, &out_dir, opts.roofline_all_candidates);
    for s in &mut inputs.sweeps {
        draw_sweep_charts(&out_dir, s, &mut inputs.notes);
    }
    draw_e2e_ops(&mut inputs, &out_dir);
    let page = render_page(&inputs, &out_dir);
    std::fs::write(&opts.out_html, page).with_context(|| format!("writing {}", opts.out_html.display()))?;

    let mut summary = ReportSummary { html: opts.out_html.clone(), ..Default::default() };
    summary.ceilings = inputs.ceilings.iter().map(|(p, _)| p.clone()).collect();
    summary.e2e = inputs.e2e.iter().map(|(p, _, _)| p.clone()).collect();
    summary.sections = inputs.sections.iter().map(|(p, _)| p.clone()).collect();
    summary.charts.extend(inputs.rooflines.iter().map(|(_, c)| c.path.clone()));
    summary.charts.extend(inputs.e2e_ops.iter().map(|c| c.path.clone()));
    for s in &inputs.sweeps {
        summary.charts.extend(s.charts.iter().map(|c| c.path.clone()));
        summary.sweeps.push(SweepSummary {
            csv: s.csv.clone(),
            rows: s.records.len(),
            winners: winners_per_shape(&s.records).len(),
            charts: s.charts.iter().map(|c| c.path.clone()).collect(),
        });
    }
    summary.warnings = inputs.notes;
    Ok(summary)
}

/// Reads every file the page can show; what cannot be read becomes a note.
fn read_inputs(entries: &[PathBuf], opts: &ReportOptions, out_dir: &Path) -> Inputs {
    let mut inputs = Inputs::default();
    // Ceilings: those in the dir, then the extra ones; one per GPU, the first wins.
    let named = |p: &PathBuf| {
        let n = name_of(p);
        n.starts_with("ceilings") && n.ends_with(".json")
    };
    for p in entries.iter().filter(|p| named(p)).chain(opts.extra_ceilings.iter()) {
        match Ceilings::load(p).and_then(|c| c.validate().map(|_| c)) {
            Ok(c)
                if !inputs
                    .ceilings
                    .iter()
                    .any(|(_, o)| o.gpu == c.gpu && o.compute_capability == c.compute_capability) =>
            {
                inputs.ceilings.push((p.clone(), c))
            }
            Ok(_) => {}
            Err(e) => inputs.notes.push(format!("skipped {}: {e:#}", name_of(p))),
        }
    }
    for p in entries {
        if let Some(src) = opts.sections.iter().find(|s| (s.claims)(p)) {
            match (src.render)(p, out_dir) {
                Ok(html) => inputs.sections.push((p.clone(), html)),
                Err(e) => inputs.notes.push(format!("skipped {} ({}): {e:#}", name_of(p), src.name)),
            }
        } else if is_e2e_json(p) {
            match read_e2e(p) {
                Ok(f) => inputs.e2e.push((p.clone(), f, file_date(p).unwrap_or_else(|| "date unknown".into()))),
                Err(e) => inputs.notes.push(format!("skipped {}: {e:#}", name_of(p))),
            }
        } else if p.extension().is_some_and(|e| e == "csv") && !crate::paths::is_auxiliary_csv(p) {
            match read_records(p) {
                Ok(records) => {
                    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("sweep").to_string();
                    let date = Caption::for_sweep(&records, p).date;
                    inputs.sweeps.push(Sweep { csv: p.clone(), stem, records, date, charts: Vec::new() });
                }
                Err(e) => inputs.notes.push(format!("skipped {} (not a kernlab sweep CSV?): {e:#}", name_of(p))),
            }
        }
    }
    inputs
}

/// One roofline per GPU with ceilings, showing the rows measured on it (and rows that
/// name no GPU).
fn draw_rooflines(inputs: &mut Inputs, out_dir: &Path, all_candidates: bool) {
    let single = inputs.ceilings.len() == 1;
    for (i, (_, c)) in inputs.ceilings.iter().enumerate() {
        let rows: Vec<CandidateRecord> = inputs
            .sweeps
            .iter()
            .flat_map(|s| s.records.iter())
            .filter(|r| r.gpu.is_empty() || r.gpu == c.gpu || single)
            .cloned()
            .collect();
        let path = out_dir.join(roofline_png_name(c));
        let ropts = RooflineOptions { show_all_candidates: all_candidates, ..Default::default() };
        match plot_roofline(c, &rows, &ropts, &path) {
            Ok(()) => {
                let mut fig = Figure::new(path, format!("Roofline of {}", c.gpu));
                fig.note = Some(pct_note(c));
                inputs.rooflines.push((i, fig));
            }
            Err(e) => inputs.notes.push(format!("roofline of {}: {e:#}", c.gpu)),
        }
    }
}

/// The batch-1 per-op profile of the profiled e2e runs (the first few) as one chart.
fn draw_e2e_ops(inputs: &mut Inputs, out_dir: &Path) {
    let runs: Vec<OpsRun> = inputs
        .e2e
        .iter()
        .filter(|(_, f, _)| !f.profile.is_empty())
        .map(|(p, f, _)| OpsRun {
            label: p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            profile: &f.profile,
        })
        .collect();
    if runs.is_empty() {
        return;
    }
    let shown = runs.len().min(MAX_RUNS);
    let path = out_dir.join("e2e-decode-ops.png");
    let title = format!("Where a decode step goes, batch 1 ({shown} of {} profiled runs)", runs.len());
    match plot_decode_ops(&runs, &title, &path) {
        Ok(()) => inputs.e2e_ops = Some(Figure::new(path, "Per-op decode breakdown of the profiled e2e runs".into())),
        Err(e) => inputs.notes.push(format!("e2e per-op chart: {e:#}")),
    }
}

/// Bars over all shapes, then a strip chart (and heat map if two parameters varied) per shape.
fn draw_sweep_charts(out_dir: &Path, s: &mut Sweep, notes: &mut Vec<String>) {
    let caption = Caption::for_sweep(&s.records, &s.csv);
    let mut push = |res: Result<()>, path: PathBuf, alt: String, charts: &mut Vec<Figure>| match res {
        Ok(()) => charts.push(Figure::new(path, alt)),
        Err(e) => notes.push(format!("{}: {e:#}", name_of(&path))),
    };
    if winners_per_shape(&s.records).is_empty() {
        return;
    }
    let path = out_dir.join(format!("{}.vs-peer.png", s.stem));
    let alt = format!("{}: winner vs peer per shape", s.stem);
    push(plot_winner_vs_peer(&s.records, &caption, &path), path, alt, &mut s.charts);
    let mut skipped = Vec::new();
    for key in ranked_shapes(&s.records) {
        let tag = slug(&format!("{}_{}_{}", key.family, key.dtype, key.shape));
        let path = out_dir.join(format!("{}.params.{tag}.png", s.stem));
        let alt = format!("{}: time by parameter", key.label());
        push(plot_param_strips(&s.records, &key, &caption, &path), path, alt, &mut s.charts);
        skipped.extend(heatmap_skipped(&s.records, &key));
        if let Some((x, y)) = heatmap_axes(&s.records, &key) {
            let path = out_dir.join(format!("{}.heatmap.{tag}.png", s.stem));
            let alt = format!("{}: heat map over {x} × {y}", key.label());
            push(plot_param_heatmap(&s.records, &key, &x, &y, &caption, &path), path, alt, &mut s.charts);
        }
    }
    notes.extend(skipped);
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222;line-height:1.4}\
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.8em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}tr:nth-child(even){background:#fafafa}\
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}\
nav a{margin-right:1em}.muted{color:#666}code{background:#f3f3f3;padding:0 3px}\
#notes{font-size:13px;color:#555}#notes h2{font-size:16px}";

/// First and last measurement date over everything shown (`2026-11-27 – 2026-12-01`).
fn measured_span(inputs: &Inputs) -> Option<String> {
    let mut dates: Vec<String> = inputs.sweeps.iter().map(|s| s.date.clone()).collect();
    dates.extend(inputs.ceilings.iter().map(|(_, c)| c.measured_at.chars().take(10).collect()));
    dates.extend(inputs.e2e.iter().map(|(_, _, d)| d.clone()));
    dates.retain(|d| d.len() == 10 && d.starts_with(|c: char| c.is_ascii_digit()));
    dates.sort();
    match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a == b => Some(a.clone()),
        (Some(a), Some(b)) => Some(format!("{a} – {b}")),
        _ => None,
    }
}

fn render_page(inputs: &Inputs, html_dir: &Path) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>kernlab report</title><style>{STYLE}</style></head><body>");
    let span = measured_span(inputs).map(|s| format!(", measured {s}")).unwrap_or_default();
    let _ = writeln!(
        h,
        "<h1>kernlab report</h1><p class=\"muted\">{} sweep file(s), {} end-to-end result(s){}.</p>",
        inputs.sweeps.len(),
        inputs.e2e.len(),
        escape(&span)
    );
    h.push_str(&contents(inputs));
    h.push_str(&device_section(inputs, html_dir));
    for s in &inputs.sweeps {
        h.push_str(&sweep_section(s, ceilings_for(&inputs.ceilings, &s.records), html_dir));
    }
    if !inputs.e2e.is_empty() {
        let _ = writeln!(h, "<h2 id=\"e2e\">End-to-end decode</h2><p class=\"muted\">{}</p>", escape(E2E_BOUND_NOTE));
        if let Some(fig) = &inputs.e2e_ops {
            h.push_str(&fig.tag(html_dir));
        }
        for (p, f, date) in &inputs.e2e {
            h.push_str(&e2e_table(f, p, date, html_dir));
        }
    }
    for (_, section) in &inputs.sections {
        h.push_str(section);
    }
    if !inputs.notes.is_empty() {
        h.push_str("<section id=\"notes\"><h2>Notes</h2><ul>\n");
        for n in &inputs.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul></section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// Links to every section, in page order.
fn contents(inputs: &Inputs) -> String {
    let mut links = vec![("device".to_string(), "Device and ceilings".to_string())];
    links.extend(inputs.sweeps.iter().map(|s| (format!("sweep-{}", slug(&s.stem)), s.stem.clone())));
    if !inputs.e2e.is_empty() {
        links.push(("e2e".into(), "End-to-end".into()));
    }
    if !inputs.sections.is_empty() {
        links.push(("quality".into(), "Quality".into()));
    }
    if !inputs.notes.is_empty() {
        links.push(("notes".into(), "Notes".into()));
    }
    let items: Vec<String> =
        links.iter().map(|(id, name)| format!("<a href=\"#{}\">{}</a>", escape(id), escape(name))).collect();
    format!("<nav>{}</nav>\n", items.join(" "))
}

fn device_section(inputs: &Inputs, html_dir: &Path) -> String {
    let mut h = String::from("<h2 id=\"device\">Device and ceilings</h2>\n");
    if inputs.ceilings.is_empty() {
        h.push_str(
            "<p>No ceilings found. Run <code>kernlab roofline</code> on the GPU to measure them; \
             the roofline chart and the bound columns need them.</p>\n",
        );
    }
    for (i, (path, c)) in inputs.ceilings.iter().enumerate() {
        h.push_str(&super::ceilings_table::ceilings_tables(c, path, html_dir));
        for (_, fig) in inputs.rooflines.iter().filter(|(j, _)| *j == i) {
            h.push_str(&fig.tag(html_dir));
        }
    }
    h
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_is_a_clear_error() {
        let err = build_report(Path::new("/nonexistent/kernlab"), Path::new("/tmp/x.html")).unwrap_err();
        assert!(format!("{err:#}").contains("not a directory"));
    }
}
