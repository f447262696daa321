//! The device section's tables: the measured ceilings, the reference kernels measured
//! with them, and the environment, each row under a name a reader knows rather than the
//! key the JSON file stores.

use super::escape::escape;
use super::links::file_link;
use super::style::fmt_num;
use crate::roofline::Ceilings;
use std::fmt::Write as _;
use std::path::Path;

/// Environment keys that describe one measurement (`timing <peer key>`, `config <peer
/// key>`, `source <field>`); they go beside the row they describe, not in the list.
const PER_ROW_PREFIXES: [&str; 3] = ["timing ", "config ", "source "];

/// Unit of a stored rate, from its key's suffix.
fn unit_of(key: &str) -> &'static str {
    if key.ends_with("_tflops") {
        "TFLOP/s"
    } else if key.ends_with("_gbps") {
        "GB/s"
    } else {
        ""
    }
}

/// A reader's name for a reference kernel key: what its timing note says it ran
/// (`cublasGemmEx bf16 8192³, fp32 compute`), else the key in words
/// (`cuBLAS bf16 8192³`).
pub fn peer_name(key: &str, c: &Ceilings) -> String {
    if let Some(what) = c.environment.get(&format!("timing {key}")).and_then(|t| t.split_once("; ")).map(|(_, w)| w) {
        return what.trim().to_string();
    }
    let stem = key.trim_end_matches("_tflops").trim_end_matches("_gbps");
    let words: Vec<String> = stem
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "cublas" => "cuBLAS".to_string(),
            "fma" => "FMA".to_string(),
            "mma" => "MMA".to_string(),
            "l2" => "L2".to_string(),
            "f32" => "fp32".to_string(),
            n if n.len() >= 3 && n.chars().all(|c| c.is_ascii_digit()) => format!("{n}³"),
            w => w.to_string(),
        })
        .collect();
    words.join(" ")
}

fn row(h: &mut String, cells: &[&str]) {
    let _ = write!(h, "<tr>");
    for (i, c) in cells.iter().enumerate() {
        let class = if i == 1 { "" } else { " class=\"l\"" };
        let _ = write!(h, "<td{class}>{}</td>", escape(c));
    }
    let _ = writeln!(h, "</tr>");
}

/// The three tables of one GPU's ceilings file, with a link to the file.
pub fn ceilings_tables(c: &Ceilings, path: &Path, html_dir: &Path) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h3>{} <span class=\"muted\">(compute capability {}, ceilings measured {})</span></h3>",
        escape(&c.gpu),
        escape(&c.compute_capability),
        escape(&c.measured_at)
    );
    let _ = writeln!(
        h,
        "<table class=\"ceilings\"><tr><th class=\"l\">ceiling</th><th>measured</th><th class=\"l\">how</th></tr>"
    );
    let ceilings = [
        ("DRAM copy (read + write)", "dram_copy_gbps", c.dram_copy_gbps, "GB/s"),
        ("DRAM read", "dram_read_gbps", c.dram_read_gbps, "GB/s"),
        ("L2", "l2_gbps", c.l2_gbps, "GB/s"),
        ("bf16 tensor core", "tensor_bf16_tflops", c.tensor_bf16_tflops, "TFLOP/s"),
        ("fp16 tensor core", "tensor_fp16_tflops", c.tensor_fp16_tflops, "TFLOP/s"),
        ("fp32 FMA", "fp32_fma_tflops", c.fp32_fma_tflops, "TFLOP/s"),
    ];
    for (name, field, v, unit) in ceilings {
        let how = c.environment.get(&format!("source {field}")).map(String::as_str).unwrap_or("");
        row(&mut h, &[name, &format!("{} {unit}", fmt_num(v)), how]);
    }
    let _ = writeln!(h, "</table>");
    if !c.peers.is_empty() {
        let _ = writeln!(
            h,
            "<table class=\"peers\"><tr><th class=\"l\">reference kernel</th><th>rate</th><th class=\"l\">timing</th>\
             <th class=\"l\">configuration</th></tr>"
        );
        for (k, v) in &c.peers {
            let timing =
                c.environment.get(&format!("timing {k}")).map(|t| t.split("; ").next().unwrap_or("").to_string());
            let config = c.environment.get(&format!("config {k}")).cloned().unwrap_or_default();
            let rate = format!("{} {}", fmt_num(*v), unit_of(k));
            row(&mut h, &[&peer_name(k, c), rate.trim(), &timing.unwrap_or_default(), &config]);
        }
        let _ = writeln!(h, "</table>");
    }
    let env: Vec<(&String, &String)> =
        c.environment.iter().filter(|(k, _)| !PER_ROW_PREFIXES.iter().any(|p| k.starts_with(p))).collect();
    if !env.is_empty() {
        let _ = writeln!(h, "<table class=\"environment\"><tr><th class=\"l\">environment</th><th>value</th></tr>");
        for (k, v) in env {
            row(&mut h, &[k, v]);
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "<p class=\"muted\">From {}.</p>", file_link(path, html_dir));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_keys_read_as_names() {
        let mut c = Ceilings::default();
        assert_eq!(peer_name("cublas_bf16_8192_tflops", &c), "cuBLAS bf16 8192³");
        assert_eq!(peer_name("fma_f32_tflops", &c), "FMA fp32");
        c.environment.insert(
            "timing cublas_bf16_8192_tflops".into(),
            "median 1392.4 µs (p20 1389.3), 68 reps; cublasGemmEx bf16 8192³, fp32 compute".into(),
        );
        assert_eq!(peer_name("cublas_bf16_8192_tflops", &c), "cublasGemmEx bf16 8192³, fp32 compute");
        c.peers.insert("cublas_bf16_8192_tflops".into(), 789.6);
        let html = ceilings_tables(&c, Path::new("ceilings.json"), Path::new("."));
        assert!(!html.contains("cublas_bf16_8192_tflops"), "{html}");
        assert!(html.contains("790 TFLOP/s") && html.contains("median 1392.4 µs"));
    }
}
