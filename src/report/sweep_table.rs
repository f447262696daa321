//! One sweep's section of the page: its data link, the table of winners (the same rows
//! every chart marks), which parameters matter, and its charts.

use super::escape::escape;
use super::export::{params_text, peer_time_us, peers_per_shape, status_counts, winners_per_shape, ShapeKey};
use super::figure::Figure;
use super::links::file_link;
use super::plot_roofline::pct_of_bound;
use super::style::{fmt_num, slug};
use super::sweep_params::{param_axes, ranked_rows};
use crate::roofline::Ceilings;
use crate::tune::record::CandidateRecord;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A sweep CSV as the page shows it.
pub struct Sweep {
    pub csv: PathBuf,
    pub stem: String,
    pub records: Vec<CandidateRecord>,
    /// When the sweep measured (the CSV's last write).
    pub date: String,
    pub charts: Vec<Figure>,
}

fn opt_num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map(fmt_num).unwrap_or_else(|| "–".into())
}

const WINNERS_HEAD: &str = "<tr><th class=\"l\">family</th><th class=\"l\">dtype</th><th class=\"l\">shape</th>\
    <th class=\"l\">variant</th><th class=\"l\">config</th><th>time µs (median ± spread)</th><th>TFLOP/s</th>\
    <th>GB/s</th><th>% of bound</th><th class=\"l\">bound</th><th>peer µs</th><th>peer time / ours</th></tr>";

/// The winners table: one row per (family, dtype, shape), the row the charts ring in red.
fn winners_table(s: &Sweep, winners: &[&CandidateRecord], ceil: Option<&Ceilings>) -> String {
    let mut h = String::new();
    let peers = peers_per_shape(&s.records);
    let _ = writeln!(h, "<table class=\"winners\" id=\"table-{}\">{WINNERS_HEAD}", escape(&slug(&s.stem)));
    for w in winners {
        let t = w.timing.unwrap_or_default();
        let peer = peer_time_us(w, &peers);
        let bound = match (ceil, w.intensity) {
            (Some(c), Some(i)) if i.is_finite() && i > 0.0 => c.roof_for_dtype(&w.dtype).limiting_bound(i).as_str(),
            _ => "–",
        };
        let ratio = peer.map(|p| format!("{:.2}×", p / t.median_us)).unwrap_or_else(|| "–".into());
        let cells = [
            (true, w.family.clone()),
            (true, w.dtype.clone()),
            (true, w.shape.clone()),
            (true, w.variant.clone()),
            (true, params_text(w)),
            (false, format!("{} ± {}", fmt_num(t.median_us), fmt_num(t.spread_us()))),
            (false, opt_num(w.tflops)),
            (false, opt_num(w.gbps)),
            (false, opt_num(pct_of_bound(w, ceil))),
            (true, bound.to_string()),
            (false, opt_num(peer)),
            (false, ratio),
        ];
        let _ = write!(h, "<tr>");
        for (i, (left, text)) in cells.iter().enumerate() {
            let class = if *left { " class=\"l\"" } else { "" };
            let body = if i == 4 { format!("<code>{}</code>", escape(text)) } else { escape(text) };
            let _ = write!(h, "<td{class}>{body}</td>");
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(h, "</table>");
    h
}

/// Which parameters matter, per shape, in words as well as in the charts.
fn influence_list(s: &Sweep, winners: &[&CandidateRecord]) -> String {
    let mut h = String::from("<details><summary>Parameter influence per shape</summary><ul>\n");
    for key in winners.iter().map(|w| ShapeKey::of(w)) {
        let axes = param_axes(&ranked_rows(&s.records, &key));
        let parts: Vec<String> = axes.iter().map(|a| format!("{} {:.2}×", a.name, a.effect)).collect();
        let text = if parts.is_empty() { "no parameter varied".to_string() } else { parts.join(", ") };
        let _ = writeln!(h, "<li>{}: {}</li>", escape(&key.label()), escape(&text));
    }
    h.push_str(
        "</ul><p class=\"muted\">Each number is the best time at a parameter's worst value over the best time at \
         its best value, other parameters free.</p></details>\n",
    );
    h
}

pub fn sweep_section(s: &Sweep, ceil: Option<&Ceilings>, html_dir: &Path) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<h2 id=\"sweep-{}\">Sweep {}</h2>", escape(&slug(&s.stem)), escape(&s.stem));
    let counts: Vec<String> = status_counts(&s.records).iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(
        h,
        "<p>Data: {} · measured {} · {} rows ({})</p>",
        file_link(&s.csv, html_dir),
        escape(&s.date),
        s.records.len(),
        escape(&counts.join(", "))
    );
    let winners = winners_per_shape(&s.records);
    if winners.is_empty() {
        let _ = writeln!(h, "<p>No verified, timed candidate in this file yet.</p>");
        return h;
    }
    h.push_str(&winners_table(s, &winners, ceil));
    let _ = writeln!(
        h,
        "<p class=\"muted\">Each row is the winner of its shape (the fastest verified candidate; times within \
         the spread tie and go to the smaller configuration key): the point ringed in red in the charts below. \
         Spread is half the 20–80 percentile band; a peer time / ours above 1 means the kernlab winner is faster. \
         % of bound: see the roofline's caption.</p>"
    );
    h.push_str(&influence_list(s, &winners));
    for c in &s.charts {
        h.push_str(&c.tag(html_dir));
    }
    h
}
