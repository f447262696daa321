//! The e2e benchmark table: one column per measured path (kernlab, then its peers), as
//! text and as CSV.

use crate::llama::gpu::hf_ref::HfTiming;
use anyhow::Result;
use serde::Serialize;

/// One column of the benchmark table (kernlab or a peer at one batch size).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchRow {
    pub label: String,
    pub batch: usize,
    pub throughput_tok_s: f64,
    pub mean_latency_s: f64,
    pub total_tokens: usize,
    pub tokens_per_run: f64,
    pub ttft_ms: Option<f64>,
    pub decode_step_ms: Option<f64>,
    pub peak_mem_gib: Option<f64>,
    pub achieved_gb_s: Option<f64>,
    /// Achieved decode-step bandwidth as a percentage of the roofline's DRAM ceiling
    /// (max of copy and read bandwidth), the same bound `kernlab roofline` uses.
    pub bw_bound_pct: Option<f64>,
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "—".into())
}

/// The table, one column per row of `rows` (kernlab first, then its peers).
pub fn format_table(rows: &[BenchRow]) -> String {
    type Field = (&'static str, Box<dyn Fn(&BenchRow) -> String>);
    let fields: Vec<Field> = vec![
        ("Batch Size", Box::new(|r| r.batch.to_string())),
        ("Throughput (tokens/s)", Box::new(|r| format!("{:.1}", r.throughput_tok_s))),
        ("Mean Latency (s)", Box::new(|r| format!("{:.3}", r.mean_latency_s))),
        ("Total Tokens", Box::new(|r| r.total_tokens.to_string())),
        ("Tokens/Run", Box::new(|r| format!("{:.0}", r.tokens_per_run))),
        ("Time to first token (ms)", Box::new(|r| opt(r.ttft_ms, 2))),
        ("Decode step (ms)", Box::new(|r| opt(r.decode_step_ms, 3))),
        ("Peak GPU memory (GiB)", Box::new(|r| opt(r.peak_mem_gib, 2))),
        ("Achieved bandwidth (GB/s)", Box::new(|r| opt(r.achieved_gb_s, 0))),
        // Decode-step bytes at the roofline's DRAM ceiling, max(copy, read): see bound.rs.
        ("% of DRAM bound (roofline)", Box::new(|r| opt(r.bw_bound_pct, 1))),
    ];
    let w0 = fields.iter().map(|f| f.0.len()).max().unwrap_or(0) + 2;
    let cols: Vec<Vec<String>> = rows.iter().map(|r| fields.iter().map(|f| f.1(r)).collect()).collect();
    let widths: Vec<usize> = rows
        .iter()
        .zip(&cols)
        .map(|(r, c)| c.iter().map(|s| s.chars().count()).chain([r.label.chars().count()]).max().unwrap_or(0) + 2)
        .collect();
    let mut s = format!("{:<w0$}", "");
    for (r, w) in rows.iter().zip(&widths) {
        s += &format!("{:>w$}", r.label, w = w);
    }
    s += "\n";
    let total = w0 + widths.iter().sum::<usize>();
    s += &format!("{}\n", "-".repeat(total));
    for (i, f) in fields.iter().enumerate() {
        s += &format!("{:<w0$}", f.0);
        for (c, w) in cols.iter().zip(&widths) {
            s += &format!("{:>w$}", c[i], w = w);
        }
        s += "\n";
    }
    s
}

/// CSV of the rows (one line each).
pub fn to_csv(rows: &[BenchRow], model: &str, gpu: &str, path: &str) -> Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record([
        "label",
        "model",
        "gpu",
        "path",
        "batch",
        "throughput_tok_s",
        "mean_latency_s",
        "total_tokens",
        "tokens_per_run",
        "ttft_ms",
        "decode_step_ms",
        "peak_mem_gib",
        "achieved_gb_s",
        "bw_bound_pct",
    ])?;
    let o = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for r in rows {
        w.write_record([
            r.label.clone(),
            model.into(),
            gpu.into(),
            path.into(),
            r.batch.to_string(),
            format!("{}", r.throughput_tok_s),
            format!("{}", r.mean_latency_s),
            r.total_tokens.to_string(),
            format!("{}", r.tokens_per_run),
            o(r.ttft_ms),
            o(r.decode_step_ms),
            o(r.peak_mem_gib),
            o(r.achieved_gb_s),
            o(r.bw_bound_pct),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// HF's timings as table columns for one batch size.
pub fn hf_rows(timings: &[HfTiming], batch: usize) -> Vec<BenchRow> {
    timings
        .iter()
        .filter(|t| t.batch == batch && t.error.is_none() && t.seconds > 0.0)
        .map(|t| BenchRow {
            label: format!("HF {}", t.mode),
            batch,
            throughput_tok_s: t.tokens_per_s,
            mean_latency_s: t.seconds,
            total_tokens: t.batch * t.new_tokens,
            tokens_per_run: (t.batch * t.new_tokens) as f64,
            ttft_ms: None,
            decode_step_ms: Some(t.seconds * 1e3 / t.new_tokens as f64),
            peak_mem_gib: None,
            achieved_gb_s: None,
            bw_bound_pct: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::gpu::hf_ref::HfTiming;

    #[test]
    fn table_on_synthetic_numbers() {
        let ours = BenchRow {
            label: "kernlab tuned".into(),
            batch: 8,
            throughput_tok_s: 1234.56,
            mean_latency_s: 1.659,
            total_tokens: 6144,
            tokens_per_run: 2048.0,
            ttft_ms: Some(42.0),
            decode_step_ms: Some(6.25),
            peak_mem_gib: Some(17.5),
            achieved_gb_s: Some(2600.0),
            bw_bound_pct: Some(81.25),
        };
        let hf = hf_rows(
            &[
                HfTiming {
                    mode: "eager".into(),
                    batch: 8,
                    prompt_len: 128,
                    new_tokens: 256,
                    seconds: 20.0,
                    tokens_per_s: 102.4,
                    error: None,
                },
                HfTiming {
                    mode: "eager".into(),
                    batch: 1,
                    prompt_len: 128,
                    new_tokens: 256,
                    seconds: 18.0,
                    tokens_per_s: 14.2,
                    error: None,
                },
            ],
            8,
        );
        assert_eq!(hf.len(), 1);
        let t = format_table(&[ours.clone(), hf[0].clone()]);
        for s in [
            "Throughput (tokens/s)",
            "1234.6",
            "Mean Latency (s)",
            "1.659",
            "Total Tokens",
            "6144",
            "Tokens/Run",
            "2048",
            "Batch Size",
            "% of DRAM bound (roofline)",
            "HF eager",
            "102.4",
            "81.2",
            "78.125",
            "—",
        ] {
            assert!(t.contains(s), "missing {s}:\n{t}");
        }
        // Every line is as wide as the header line.
        let widths: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
        let csv = to_csv(&[ours], "llama3-8b", "H100", "tuned").unwrap();
        assert!(csv.lines().nth(1).unwrap().starts_with("kernlab tuned,llama3-8b,H100,tuned,8,1234.56"), "{csv}");
    }
}
