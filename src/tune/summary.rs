//! The sweep's final table: per shape the winner, the peer, and what the search did
//! (strategy, evaluations against the space's size, why it stopped, clear win or tie).

use super::record::{CandidateRecord, Timing};
use crate::gpu::device::DeviceProps;
use std::path::PathBuf;

/// One row of the final table.
#[derive(Debug, Clone, Default)]
pub struct ShapeResult {
    pub dtype: String,
    pub shape: String,
    pub winner: Option<CandidateRecord>,
    pub peer_us: Option<f64>,
    /// A second peer measured outside kernlab in the same session (name, median µs), e.g.
    /// PyTorch's tinygemm beside cuBLAS for gemm_int4 (scripts/torch_peers.py).
    pub beside: Option<(String, f64)>,
    /// Candidate rows of the shape in the CSV (resumed ones included): the evaluations.
    pub measured: usize,
    pub failed: usize,
    pub strategy: String,
    /// Points of the space, and its valid candidates when they were counted.
    pub points: u128,
    pub valid: Option<u128>,
    /// Why the search stopped (`None`: the shape was skipped or not reached).
    pub stop: Option<String>,
    /// Candidates the winner ties with after re-measurement.
    pub tied: Vec<CandidateRecord>,
    pub remeasured: usize,
    /// False when the re-measurement that decides a tie did not finish.
    pub confirmed: bool,
    /// Seconds spent on the evaluations: NVRTC (on the CPU pool, overlapping the GPU work),
    /// verification and timing (in the worker).
    pub cost: Cost,
}

/// Where the evaluations of a shape spent their time, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub compile_s: f64,
    pub verify_s: f64,
    pub timing_s: f64,
}

impl Cost {
    /// The sum over rows (rows from files without the columns add nothing).
    pub fn of(rows: &[&CandidateRecord]) -> Cost {
        let sum = |f: fn(&CandidateRecord) -> Option<f64>| rows.iter().filter_map(|r| f(r)).sum::<f64>() / 1e3;
        Cost { compile_s: sum(|r| r.compile_ms), verify_s: sum(|r| r.verify_ms), timing_s: sum(|r| r.time_ms) }
    }
}

pub struct SweepSummary {
    pub gpu: DeviceProps,
    pub rows: Vec<ShapeResult>,
    pub csv: PathBuf,
    pub interrupted: bool,
}

fn config(r: &CandidateRecord) -> String {
    let cfg: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    cfg.join(",")
}

/// The final table, one line per shape, then one line per shape on the search.
pub fn format_table(s: &SweepSummary, peer: &str) -> String {
    let mut out = String::new();
    // A second peer (e.g. tinygemm beside cuBLAS) gets two more columns where any row has it.
    let beside_name = s.rows.iter().find_map(|r| r.beside.as_ref().map(|b| b.0.clone()));
    let beside_cells = |r: &ShapeResult, ours_us: Option<f64>| -> String {
        match (&beside_name, &r.beside, ours_us) {
            (None, ..) => String::new(),
            (Some(_), Some((_, b)), Some(t)) => format!(" {:>10.2} {:>7}", b, format!("{:.2}x", b / t)),
            (Some(_), ..) => format!(" {:>10} {:>7}", "-", "-"),
        }
    };
    out.push_str(&format!(
        "{:<5} {:<16} {:<15} {:<44} {:>16} {:>8} {:>8} {:>7} {:>10} {:>7}",
        "dtype",
        "shape",
        "variant",
        "config",
        "time us (±)",
        "TFLOP/s",
        "GB/s",
        "%bound",
        &format!("{peer} us"),
        "ratio"
    ));
    match &beside_name {
        Some(b) => out.push_str(&format!(" {:>10} {:>7}\n", format!("{b} us"), "ratio")),
        None => out.push('\n'),
    }
    for r in &s.rows {
        match &r.winner {
            Some(w) => {
                let t: Timing = w.timing.unwrap_or_default();
                out.push_str(&format!(
                    "{:<5} {:<16} {:<15} {:<44} {:>9.2} ±{:<6.2} {:>8.1} {:>8.0} {:>7} {:>10} {:>7}{}\n",
                    r.dtype,
                    r.shape,
                    w.variant,
                    config(w),
                    t.median_us,
                    t.spread_us(),
                    w.tflops.unwrap_or(0.0),
                    w.gbps.unwrap_or(0.0),
                    w.pct_of_bound.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into()),
                    r.peer_us.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
                    r.peer_us.map(|p| format!("{:.2}x", p / t.median_us)).unwrap_or_else(|| "-".into()),
                    beside_cells(r, Some(t.median_us)),
                ));
            }
            None => out.push_str(&format!(
                "{:<5} {:<16} no verified candidate ({} measured, {} failed)\n",
                r.dtype, r.shape, r.measured, r.failed
            )),
        }
    }
    out.push_str(
        "\nsearch: strategy · evaluations of the space · time they took (compile runs on the CPU beside the GPU) \
         · why it stopped · the winner\n",
    );
    for r in &s.rows {
        out.push_str(&format!("{:<5} {:<16} {}\n", r.dtype, r.shape, search_line(r)));
    }
    out
}

/// What the search did on one shape.
pub fn search_line(r: &ShapeResult) -> String {
    let seen = match r.valid {
        Some(v) if v > 0 => format!(
            "{} evaluations of {v} valid candidates ({:.1} %)",
            r.measured,
            100.0 * r.measured as f64 / v as f64
        ),
        Some(_) => format!("{} evaluations, no valid candidate", r.measured),
        None => format!("{} evaluations of a space of {} points", r.measured, r.points),
    };
    let stop = r.stop.as_deref().unwrap_or("not searched");
    let c = r.cost;
    let cost = format!("compile {:.1} s, verify {:.1} s, timing {:.1} s", c.compile_s, c.verify_s, c.timing_s);
    format!("{:<7} {seen} · {cost} · {stop} · {}", r.strategy, verdict(r))
}

fn verdict(r: &ShapeResult) -> String {
    let Some(w) = &r.winner else { return "no winner".into() };
    let best = format!("best {} {} {:.2} us", w.variant, config(w), w.median_us().unwrap_or(f64::NAN));
    // At most three tied configs by name: a dozen on one line reads as noise; the CSV and
    // the database keep them all.
    let others = || {
        let mut names: Vec<String> = r.tied.iter().take(3).map(|t| format!("{} {}", t.variant, config(t))).collect();
        if r.tied.len() > 3 {
            names.push(format!("and {} more", r.tied.len() - 3));
        }
        names.join("; ")
    };
    if !r.confirmed {
        return format!("{best}, not confirmed (re-measurement interrupted; within spread: {})", others());
    }
    match (r.tied.is_empty(), r.remeasured) {
        (true, 0) => format!("{best}, a clear win"),
        (true, n) => format!("{best}, a clear win after re-measuring {n}"),
        (false, n) => format!("{best}, a statistical tie after re-measuring {n}, with {}", others()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::record::Timing;

    fn rec(variant: &str) -> CandidateRecord {
        CandidateRecord {
            variant: variant.into(),
            timing: Some(Timing { median_us: 10.0, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_long_tie_names_three_and_counts_the_rest() {
        let r = ShapeResult {
            dtype: "bf16".into(),
            shape: "1x2x3".into(),
            winner: Some(rec("w")),
            peer_us: None,
            beside: None,
            measured: 10,
            failed: 0,
            strategy: "grid".into(),
            points: 10,
            valid: Some(10),
            stop: Some("every candidate evaluated".into()),
            tied: ["a", "b", "c", "d", "e"].iter().map(|v| rec(v)).collect(),
            remeasured: 5,
            confirmed: true,
            cost: Cost { compile_s: 12.5, verify_s: 0.5, timing_s: 3.0 },
        };
        let v = verdict(&r);
        assert!(v.contains("statistical tie after re-measuring 5, with a") && v.contains("and 2 more"), "{v}");
        assert!(!v.contains(" d") && !v.contains(" e"), "{v}");
        let line = search_line(&r);
        assert!(line.contains("10 evaluations of 10 valid candidates (100.0 %)"), "{line}");
        assert!(line.contains("compile 12.5 s, verify 0.5 s, timing 3.0 s"), "{line}");
    }
}
