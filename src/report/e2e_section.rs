//! The end-to-end section: one table per JSON file that `kernlab e2e` wrote (see
//! `llama::e2e`, whose `Report` and `BenchRow` this reads), with the run's own notes and
//! its per-op profile when it took one.

use super::escape::escape;
use super::links::file_link;
use super::style::fmt_num;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::Path;

/// The fields of an e2e JSON file the page shows; the rest (generated text, validation)
/// stays in the file, which the section links.
#[derive(Debug, Clone, Deserialize)]
pub struct E2eFile {
    pub model: String,
    #[serde(default)]
    pub gpu: String,
    /// The kernel path the run took ("tuned int4 (kernlab families: …)").
    #[serde(default)]
    pub path: String,
    /// The DRAM copy rate the run measured before timing; its "% of bound" divides by it.
    #[serde(default)]
    pub copy_bw_gb_s: Option<f64>,
    pub rows: Vec<E2eRow>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// (op, calls, total ms) per op, when the run was profiled.
    #[serde(default)]
    pub profile: Vec<(String, u64, f64)>,
}

/// One measured path at one batch size (kernlab or a peer such as HF eager).
#[derive(Debug, Clone, Deserialize)]
pub struct E2eRow {
    pub label: String,
    pub batch: usize,
    pub throughput_tok_s: f64,
    #[serde(default)]
    pub decode_step_ms: Option<f64>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    #[serde(default)]
    pub achieved_gb_s: Option<f64>,
    #[serde(default)]
    pub bw_bound_pct: Option<f64>,
}

/// Whether a file of the reports dir is an e2e result (`e2e-….json`).
pub fn is_e2e_json(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("e2e") && name.ends_with(".json")
}

pub fn read_e2e(p: &Path) -> Result<E2eFile> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not an e2e result (`kernlab e2e` JSON)", p.display()))
}

impl E2eFile {
    /// The weights' dtype: the int4 path says so in its name, every other path runs bf16.
    pub fn dtype(&self) -> &'static str {
        if self.path.contains("int4") {
            "int4"
        } else {
            "bf16"
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map(fmt_num).unwrap_or_else(|| "–".into())
}

/// One file's heading, table, notes and profile. `date` is when it was measured.
pub fn e2e_table(f: &E2eFile, file: &Path, date: &str, html_dir: &Path) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h3>{} on {} <span class=\"muted\">({}, measured {}, {})</span></h3>",
        escape(&f.model),
        escape(if f.gpu.is_empty() { "unknown GPU" } else { &f.gpu }),
        escape(&f.path),
        escape(date),
        file_link(file, html_dir)
    );
    let _ = writeln!(
        h,
        "<table class=\"e2e\"><tr><th class=\"l\">path</th><th class=\"l\">model</th><th class=\"l\">dtype</th>\
         <th>batch</th><th>decode step ms</th><th>tok/s</th><th>TTFT ms</th><th>GB/s</th><th>% of bound</th>\
         <th class=\"l\">bound</th></tr>"
    );
    let bound = f.copy_bw_gb_s.filter(|b| b.is_finite() && *b > 0.0).map(|b| format!("DRAM copy {} GB/s", fmt_num(b)));
    for r in &f.rows {
        let pct = r.bw_bound_pct.filter(|p| p.is_finite());
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            escape(&r.label),
            escape(&f.model),
            f.dtype(),
            r.batch,
            escape(&opt(r.decode_step_ms)),
            escape(&fmt_num(r.throughput_tok_s)),
            escape(&opt(r.ttft_ms)),
            escape(&opt(r.achieved_gb_s)),
            escape(&pct.map(|p| format!("{p:.0} %")).unwrap_or_else(|| "–".into())),
            escape(if pct.is_some() { bound.as_deref().unwrap_or("–") } else { "–" }),
        );
    }
    let _ = writeln!(h, "</table>");
    if !f.notes.is_empty() {
        let _ = writeln!(h, "<details><summary>What the run used ({} notes)</summary><ul>", f.notes.len());
        for n in &f.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        let _ = writeln!(h, "</ul></details>");
    }
    if !f.profile.is_empty() {
        let _ = writeln!(
            h,
            "<details><summary>Per-op breakdown</summary><table class=\"profile\"><tr><th class=\"l\">op</th>\
             <th>calls</th><th>total ms</th><th>share</th></tr>"
        );
        let total: f64 = f.profile.iter().map(|p| p.2).filter(|t| t.is_finite()).sum();
        for (op, calls, ms) in &f.profile {
            let share = if total > 0.0 { format!("{:.1} %", 100.0 * ms / total) } else { "–".into() };
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{calls}</td><td>{}</td><td>{share}</td></tr>",
                escape(op),
                escape(&fmt_num(*ms))
            );
        }
        let _ = writeln!(h, "</table></details>");
    }
    h
}

/// What the e2e "% of bound" means: it differs from the roofline's, so the page says so.
pub const E2E_BOUND_NOTE: &str = "% of bound: the bytes a decode step must read (weights and KV cache) per \
    step time, over the DRAM copy rate this run measured before timing (not the roofline's read ceiling). \
    Peers without a byte count show –.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_e2e_file_and_names_its_bound() {
        let json = r#"{"model":"llama3-8b","gpu":"NVIDIA H200","path":"tuned int4 (kernlab)","copy_bw_gb_s":4265.2,
            "rows":[{"label":"kernlab int4","batch":1,"throughput_tok_s":400.5,"mean_latency_s":1.0,"total_tokens":512,
            "tokens_per_run":256.0,"ttft_ms":6.1,"decode_step_ms":2.5,"peak_mem_gib":5.0,"achieved_gb_s":2000.0,
            "bw_bound_pct":46.9}],"gemm_plans":[],"notes":["rmsnorm: defaults"],"validation":[],"hf":null,
            "profile":[["b1 gemm",10,3.0],["b1 rmsnorm",10,1.0]]}"#;
        let f: E2eFile = serde_json::from_str(json).unwrap();
        assert_eq!(f.dtype(), "int4");
        let h = e2e_table(&f, Path::new("e2e-x.json"), "2026-12-01", Path::new("."));
        assert!(h.contains("<td>2.5</td>") && h.contains("DRAM copy 4265 GB/s") && h.contains("47 %"), "{h}");
        assert!(h.contains("75.0 %"), "profile share: {h}");
    }
}
