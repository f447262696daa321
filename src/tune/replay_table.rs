//! The replay's outputs as text: the table printed to the terminal and the two CSVs.

use super::search::SearchStrategy;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// Per-space summary of a strategy's seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceSummary {
    pub label: String,
    pub source: String,
    pub size: usize,
    pub strategy: SearchStrategy,
    pub seeds: usize,
    pub median_evals: f64,
    pub worst_evals: usize,
    pub median_pct: f64,
    pub worst_pct: f64,
}

/// Linear-interpolated percentile of sorted values (`q` in 0..=1); NaN for none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
}

/// Mean and p10–p90 of the fraction of the optimum reached, against evaluations as a
/// percentage of each space, over every run of one strategy on one CSV's spaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub source: String,
    pub strategy: SearchStrategy,
    /// (% of the space evaluated, mean, p10, p90).
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Per CSV and strategy: the median over its spaces of the per-space median % and the
/// worst space's median % (the targets' "median" and "worst shape").
pub fn per_source(spaces: &[SpaceSummary]) -> Vec<(String, SearchStrategy, f64, f64, f64)> {
    let mut sources: Vec<String> = Vec::new();
    for s in spaces {
        if !sources.contains(&s.source) {
            sources.push(s.source.clone());
        }
    }
    let strategies: BTreeSet<SearchStrategy> = spaces.iter().map(|s| s.strategy).collect();
    let mut out = Vec::new();
    for src in &sources {
        for &st in &strategies {
            let rows: Vec<&SpaceSummary> = spaces.iter().filter(|s| &s.source == src && s.strategy == st).collect();
            if rows.is_empty() {
                continue;
            }
            let mut med: Vec<f64> = rows.iter().map(|r| r.median_pct).collect();
            med.sort_by(f64::total_cmp);
            let worst_shape = med.last().copied().unwrap_or(f64::NAN);
            let worst_seed = rows.iter().map(|r| r.worst_pct).fold(f64::NAN, f64::max);
            out.push((src.clone(), st, percentile(&med, 0.5), worst_shape, worst_seed));
        }
    }
    out
}

fn strategies_in(spaces: &[SpaceSummary]) -> Vec<SearchStrategy> {
    let mut out: Vec<SearchStrategy> = Vec::new();
    for s in spaces {
        if !out.contains(&s.strategy) {
            out.push(s.strategy);
        }
    }
    out
}

/// The terminal table: one line per space, one column per strategy with the median and the
/// worst seed's evaluations as % of the space; then per CSV the median over its spaces and
/// the worst space.
pub fn format_table(spaces: &[SpaceSummary], within_pct: f64) -> String {
    let strategies = strategies_in(spaces);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "evaluations to come within {within_pct} % of the optimum, as % of the space: median over seeds / worst seed"
    );
    let _ = write!(s, "{:<52} {:>6}", "space", "size");
    for st in &strategies {
        let _ = write!(s, " {:>15}", st.name());
    }
    s.push('\n');
    let mut labels: Vec<(&str, usize)> = Vec::new();
    for sp in spaces {
        if !labels.iter().any(|(l, _)| *l == sp.label) {
            labels.push((&sp.label, sp.size));
        }
    }
    for (label, size) in &labels {
        let _ = write!(s, "{label:<52} {size:>6}");
        for st in &strategies {
            match spaces.iter().find(|x| x.label == *label && x.strategy == *st) {
                Some(x) => {
                    let _ = write!(s, " {:>15}", format!("{:.1} / {:.1}", x.median_pct, x.worst_pct));
                }
                None => {
                    let _ = write!(s, " {:>15}", "–");
                }
            }
        }
        s.push('\n');
    }
    let agg = per_source(spaces);
    let _ = writeln!(s, "\nper CSV: median over its spaces of the median % · worst space's median % · worst seed %");
    let mut sources: Vec<&str> = Vec::new();
    for (src, ..) in &agg {
        if !sources.contains(&src.as_str()) {
            sources.push(src);
        }
    }
    for src in sources {
        let _ = write!(s, "{src:<59}");
        for st in &strategies {
            match agg.iter().find(|a| a.0 == src && a.1 == *st) {
                Some(a) => {
                    let _ = write!(s, " {:>15}", format!("{:.1}·{:.1}·{:.0}", a.2, a.3, a.4));
                }
                None => {
                    let _ = write!(s, " {:>15}", "–");
                }
            }
        }
        s.push('\n');
    }
    s
}

pub fn write_csv(path: &Path, spaces: &[SpaceSummary]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record([
        "source",
        "space",
        "size",
        "strategy",
        "seeds",
        "median_evals",
        "worst_evals",
        "median_pct_of_space",
        "worst_pct_of_space",
    ])?;
    for s in spaces {
        w.write_record([
            s.source.clone(),
            s.label.clone(),
            s.size.to_string(),
            s.strategy.name().to_string(),
            s.seeds.to_string(),
            format!("{:.1}", s.median_evals),
            s.worst_evals.to_string(),
            format!("{:.2}", s.median_pct),
            format!("{:.2}", s.worst_pct),
        ])?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn write_curves_csv(path: &Path, curves: &[Curve]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record(["source", "strategy", "pct_of_space_evaluated", "mean_fraction", "p10_fraction", "p90_fraction"])?;
    for c in curves {
        for (x, m, lo, hi) in &c.points {
            w.write_record([
                c.source.clone(),
                c.strategy.name().to_string(),
                format!("{x:.3}"),
                format!("{m:.4}"),
                format!("{lo:.4}"),
                format!("{hi:.4}"),
            ])?;
        }
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
