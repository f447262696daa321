//! `kernlab roofline` and `kernlab report` (the saved-ceilings lookup is `tune::bound`).
//!
//! Ceilings live beside the tuned database, one file per GPU:
//! `reports/ceilings-<gpu slug>-sm<cc>.json` ([`ceilings_path_for`]). `kernlab roofline`
//! measures them when the file is missing (or with `--remeasure`), prints them with their
//! ridge points and the peers measured in the same run, and draws the roofline with the
//! winners of every sweep CSV in reports/.

use crate::gpu::device::Gpu;
use crate::measure::torch::{self, TorchPeers};
use crate::measure::{self, keys};
use crate::report::{self, plot_roofline, roofline_png_name, winners_per_shape, RooflineOptions};
use crate::roofline::{ridge_point, Ceilings, ComputeCeiling};
use crate::tune::record::{read_records, CandidateRecord};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use crate::tune::bound::{
    ceilings_path_for, fill_pct_of_bound, load_ceilings_for, try_load_ceilings_for, try_load_ceilings_from,
};

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The ceilings as a table with ridge points (FLOP/byte where the DRAM and L2 slopes meet
/// each compute roof) and where each tensor ceiling came from.
pub fn format_ceilings(c: &Ceilings) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} (cc {}) — ceilings measured {}", c.gpu, c.compute_capability, c.measured_at);
    let _ = writeln!(s, "  {:<26} {:>16}  {:>13}  {:>11}  source", "ceiling", "measured", "ridge (DRAM)", "ridge (L2)");
    for (name, v, unit) in [
        ("DRAM copy (read + write)", c.dram_copy_gbps, "GB/s"),
        ("DRAM read", c.dram_read_gbps, "GB/s"),
        ("L2 read", c.l2_gbps, "GB/s"),
    ] {
        let _ = writeln!(s, "  {name:<26} {:>8} {unit:<7}", num(v));
    }
    for (name, which, src_key) in [
        ("bf16 tensor", ComputeCeiling::TensorBf16, "source tensor_bf16_tflops"),
        ("fp16 tensor", ComputeCeiling::TensorFp16, "source tensor_fp16_tflops"),
        ("fp32 FMA", ComputeCeiling::Fp32Fma, ""),
    ] {
        let v = c.compute_tflops(which);
        let ridge = |bw: f64| ridge_point(v, bw).map(|r| format!("{} FLOP/B", num(r))).unwrap_or_else(|| "-".into());
        let src =
            c.environment.get(src_key).map(String::as_str).unwrap_or(if src_key.is_empty() { "fma_f32" } else { "" });
        let _ = writeln!(
            s,
            "  {name:<26} {:>8} {:<7}  {:>13}  {:>11}  {src}",
            num(v),
            "TFLOP/s",
            ridge(c.dram_gbps()),
            ridge(c.l2_gbps)
        );
    }
    s
}

/// Every figure measured (peers included) with its spread, then the closing checks.
pub fn format_comparisons(c: &Ceilings) -> String {
    let mut s = String::from("figures measured in this run (median; ± half the 20–80 % band)\n");
    for (k, v) in &c.peers {
        let timing = c.environment.get(&format!("timing {k}"));
        let spread = timing
            .and_then(|t| t.split_once('±'))
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(p, _)| format!("±{p}"))
            .unwrap_or_default();
        let _ = writeln!(s, "  {k:<30} {:>8}  {spread}", num(*v));
    }
    if let (Some(cb), Some(ours)) = (c.peers.get(keys::CUBLAS_BF16), c.peers.get(keys::GEMM_MMA_BF16)) {
        let _ = writeln!(s, "  kernlab gemm_mma bf16 8192³ is {:.1} % of cuBLAS", 100.0 * ours / cb);
    }
    for ch in torch::checks(c) {
        let _ = writeln!(s, "{}", ch.line());
    }
    s
}

/// Every kernlab sweep CSV in `dir` (sorted), and a warning for each file that is not one.
pub fn sweep_records(dir: &Path) -> (Vec<(PathBuf, Vec<CandidateRecord>)>, Vec<String>) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "csv") && !crate::paths::is_auxiliary_csv(p))
            .collect(),
        Err(_) => return (Vec::new(), Vec::new()),
    };
    files.sort();
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for f in files {
        match read_records(&f) {
            Ok(r) => out.push((f, r)),
            Err(e) => warnings.push(format!("skipped {} (not a kernlab sweep CSV?): {e:#}", f.display())),
        }
    }
    (out, warnings)
}

/// The winners of `records` with their place on the roofline of `c`.
pub fn format_winners(c: &Ceilings, records: &[CandidateRecord]) -> String {
    let winners = winners_per_shape(records);
    if winners.is_empty() {
        return "no sweep winners in reports/ yet: run `kernlab sweep gemm` to put kernels on the roofline\n".into();
    }
    let mut s = format!(
        "  {:<10} {:<6} {:<16} {:<16} {:>10} {:>9} {:>8} {:>9} {:<8} {:>7}\n",
        "family", "dtype", "shape", "variant", "time µs", "TFLOP/s", "GB/s", "FLOP/B", "bound", "% bound"
    );
    for w in winners {
        let mut r = w.clone();
        fill_pct_of_bound(&mut r, c);
        let bound = r.intensity.map(|i| c.roof_for_dtype(&r.dtype).limiting_bound(i).as_str()).unwrap_or("-");
        let f = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "  {:<10} {:<6} {:<16} {:<16} {:>10} {:>9} {:>8} {:>9} {:<8} {:>7}",
            r.family,
            r.dtype,
            r.shape,
            r.variant,
            f(r.median_us()),
            f(r.tflops),
            f(r.gbps),
            f(r.intensity),
            bound,
            r.pct_of_bound.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into())
        );
    }
    s
}

/// `kernlab roofline` without torch peers, on this GPU.
pub fn roofline_command(gpu: usize, remeasure: bool, all_candidates: bool) -> Result<ExitCode> {
    roofline_command_with(gpu, remeasure, all_candidates, None, None)
}

/// Where `kernlab roofline` takes its ceilings from.
enum CeilingSource {
    /// A saved file, drawn without a GPU; not written back.
    Saved(PathBuf),
    /// This GPU's file in reports/, measured when missing (or with --remeasure), and saved.
    Gpu { path: PathBuf, measured: bool },
}

/// The only ceilings file in `dir`, for `roofline` on a machine without a GPU; an error
/// naming `--ceilings` when there are none or several.
pub fn only_saved_ceilings(dir: &Path, why_no_gpu: &anyhow::Error) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                    n.starts_with("ceilings-") && n.ends_with(".json")
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "{why_no_gpu:#}\nno saved ceilings in {} to draw instead: pass a saved file, e.g. \
             `kernlab roofline --ceilings docs/results/ceilings-h200.json`",
            dir.display()
        ),
        _ => bail!(
            "{why_no_gpu:#}\nseveral saved ceilings in {}; pick one with --ceilings: {}",
            dir.display(),
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `kernlab roofline`: the ceilings (from `saved`, without a GPU; else this GPU's, loaded
/// or measured), printed with the peers (cuBLAS, and PyTorch when `torch_peers` names the
/// JSON of scripts/torch_copy_peer.py), and the roofline with every sweep's winners. With
/// no GPU and no `saved`, the one ceilings file in reports/ is drawn.
pub fn roofline_command_with(
    gpu: usize,
    remeasure: bool,
    all_candidates: bool,
    torch_peers: Option<PathBuf>,
    saved: Option<PathBuf>,
) -> Result<ExitCode> {
    // Read the peers first: a bad path should not cost a measurement.
    let torch = torch_peers.as_deref().map(TorchPeers::load).transpose()?;
    let saved = match saved {
        Some(p) => Some(p),
        // No GPU here: draw the saved ceilings rather than fail, unless asked to measure.
        None if !remeasure => match Gpu::open(gpu) {
            Ok(dev) => {
                drop(dev);
                None
            }
            Err(e) => {
                let p = only_saved_ceilings(&crate::paths::reports_dir(), &e)?;
                eprintln!("note: no GPU ({}); drawing the saved ceilings {}", first_line(&e), p.display());
                Some(p)
            }
        },
        None => None,
    };
    let (mut c, source) = match saved {
        Some(p) => {
            let c = Ceilings::load(&p)?;
            c.validate().with_context(|| format!("{}", p.display()))?;
            println!("ceilings of {} from {} (no GPU needed)", c.gpu, p.display());
            (c, CeilingSource::Saved(p))
        }
        None => measured_or_loaded(gpu, remeasure)?,
    };
    let measured = matches!(source, CeilingSource::Gpu { measured: true, .. });
    if let Some(t) = &torch {
        if !t.gpu.is_empty() && t.gpu != c.gpu {
            eprintln!("warning: the torch peers were measured on {:?}, these ceilings are of {:?}", t.gpu, c.gpu);
        }
        if !measured {
            eprintln!(
                "note: comparing saved ceilings ({}) with torch peers measured now; use --remeasure for a same-run comparison",
                c.measured_at
            );
        }
        t.record(&mut c);
    }
    match &source {
        CeilingSource::Gpu { path, .. } if measured || torch.is_some() => {
            c.save(path)?;
            println!("ceilings saved to {}", path.display());
        }
        CeilingSource::Saved(p) if torch.is_some() => {
            println!("(the torch peers are shown, not written into {})", p.display())
        }
        _ => {}
    }
    println!();
    print!("{}", format_ceilings(&c));
    println!();
    print!("{}", format_comparisons(&c));

    let dir = crate::paths::reports_dir();
    let (sweeps, warnings) = sweep_records(&dir);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut rows: Vec<CandidateRecord> =
        sweeps.into_iter().flat_map(|(_, r)| r).filter(|r| r.gpu.is_empty() || r.gpu == c.gpu).collect();
    // Labels and the table use the ceilings drawn, not those a CSV was written against.
    for r in &mut rows {
        fill_pct_of_bound(r, &c);
    }
    println!("\nwinners on this roofline ({} rows from the sweep CSVs in {})", rows.len(), dir.display());
    print!("{}", format_winners(&c, &rows));
    let png = dir.join(roofline_png_name(&c));
    let opts = RooflineOptions { show_all_candidates: all_candidates, ..Default::default() };
    plot_roofline(&c, &rows, &opts, &png).with_context(|| format!("drawing {}", png.display()))?;
    println!("\nroofline: {}", png.display());
    Ok(ExitCode::SUCCESS)
}

/// This GPU's ceilings: loaded from reports/, or measured (missing, unreadable, or
/// `remeasure`).
fn measured_or_loaded(gpu: usize, remeasure: bool) -> Result<(Ceilings, CeilingSource)> {
    let dev = Gpu::open(gpu)?;
    let props = dev.props.clone();
    let path = ceilings_path_for(&props);
    let loaded = if remeasure {
        None
    } else {
        match try_load_ceilings_for(&props) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: {e:#}; measuring again");
                None
            }
        }
    };
    let measured = loaded.is_none();
    let c = match loaded {
        Some(c) => {
            println!("ceilings of {} from {} (measure again with --remeasure)", props.name, path.display());
            c
        }
        None => {
            eprintln!("measuring the ceilings of {} (GPU {gpu}) …", props.name);
            let cache = crate::gpu::cache::ModuleCache::open(&crate::gpu::cache::default_dir())?;
            measure::measure_ceilings(&dev, &cache)?
        }
    };
    Ok((c, CeilingSource::Gpu { path, measured }))
}

fn first_line(e: &anyhow::Error) -> String {
    let s = format!("{e}");
    let line = s.lines().next().unwrap_or("").to_string();
    line.split(". ").next().unwrap_or(&line).to_string()
}

/// `kernlab report`: one HTML page over reports/ (default reports/index.html).
pub fn report_command(out: Option<PathBuf>) -> Result<ExitCode> {
    let dir = crate::paths::reports_dir();
    if !dir.is_dir() {
        bail!(
            "no reports directory at {}: run `kernlab sweep <family>` or `kernlab roofline` first \
             (or point KERNLAB_REPORTS at a folder of results)",
            dir.display()
        );
    }
    let out = out.unwrap_or_else(|| dir.join("index.html"));
    let summary = report::build_report_with(&report::ReportOptions {
        reports_dir: dir.clone(),
        out_html: out,
        extra_ceilings: Vec::new(),
        roofline_all_candidates: true,
        sections: vec![crate::quality::table::report_section()],
    })?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if summary.ceilings.is_empty() {
        eprintln!(
            "note: no ceilings in {}; run `kernlab roofline` on the GPU for the roofline and % of bound",
            dir.display()
        );
    }
    if summary.sweeps.is_empty() {
        eprintln!("note: no sweep CSVs in {}; run `kernlab sweep <family>` to fill the report", dir.display());
    }
    println!(
        "{} sweep(s), {} chart(s), {} ceilings file(s)",
        summary.sweeps.len(),
        summary.charts.len(),
        summary.ceilings.len()
    );
    println!("report: {}", summary.html.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::device::DeviceProps;
    use crate::tune::record::{Status, Timing};

    fn ceilings() -> Ceilings {
        let mut c = Ceilings {
            gpu: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: "9.0".into(),
            dram_copy_gbps: 3000.0,
            dram_read_gbps: 3200.0,
            l2_gbps: 10000.0,
            tensor_bf16_tflops: 640.0,
            tensor_fp16_tflops: 650.0,
            fp32_fma_tflops: 64.0,
            measured_at: "2025-06-01T12:00:00Z".into(),
            ..Default::default()
        };
        c.peers.insert(keys::CUBLAS_BF16.into(), 640.0);
        c.peers.insert(keys::GEMM_MMA_BF16.into(), 480.0);
        c.environment.insert(
            format!("timing {}", keys::CUBLAS_BF16),
            "median 1700.0 µs (p20 1690.0, p80 1710.0, ±0.59 %), 80 reps; x".into(),
        );
        c.environment.insert("source tensor_bf16_tflops".into(), "cuBLAS 8192³".into());
        c
    }

    fn props(name: &str, major: i32) -> DeviceProps {
        DeviceProps {
            name: name.into(),
            cc_major: major,
            cc_minor: 0,
            sm_count: 132,
            total_mem_bytes: 80 << 30,
            l2_bytes: 50 << 20,
            max_smem_optin: 227 << 10,
            max_threads_per_block: 1024,
            regs_per_block: 65536,
            sm_clock_mhz: 1980,
            mem_clock_mhz: 2619,
            bus_width_bits: 5120,
            driver_version: "13.0".into(),
        }
    }

    #[test]
    fn ceilings_are_found_by_gpu_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let h100 = props("NVIDIA H100 80GB HBM3", 9);
        assert!(try_load_ceilings_from(dir.path(), &h100).unwrap().is_none());
        let c = ceilings();
        let path = dir.path().join("ceilings-nvidia-h100-80gb-hbm3-sm90.json");
        c.save(&path).unwrap();
        assert_eq!(try_load_ceilings_from(dir.path(), &h100).unwrap(), Some(c.clone()));
        // Another GPU's name never picks up this file.
        assert!(try_load_ceilings_from(dir.path(), &props("NVIDIA H200", 9)).unwrap().is_none());
        // A file under this GPU's name holding another GPU's numbers is an error, not a match.
        let other = Ceilings { gpu: "NVIDIA A100".into(), ..c.clone() };
        other.save(&path).unwrap();
        let e = try_load_ceilings_from(dir.path(), &h100).unwrap_err();
        assert!(format!("{e:#}").contains("NVIDIA A100"), "{e:#}");
        // Zero ceilings fail validation and say how to fix it.
        Ceilings { l2_gbps: 0.0, ..c }.save(&path).unwrap();
        assert!(format!("{:#}", try_load_ceilings_from(dir.path(), &h100).unwrap_err()).contains("--remeasure"));
        std::fs::write(&path, "{").unwrap();
        assert!(try_load_ceilings_from(dir.path(), &h100).is_err());
    }

    #[test]
    fn table_has_ridges_and_sources() {
        let s = format_ceilings(&ceilings());
        // 640 TFLOP/s over 3200 GB/s: ridge at 200 FLOP/byte; over L2: 64.
        assert!(s.contains("200 FLOP/B"), "{s}");
        assert!(s.contains("64.0 FLOP/B"), "{s}");
        assert!(s.contains("cuBLAS 8192³"));
        let cmp = format_comparisons(&ceilings());
        assert!(cmp.contains("±0.59 %"), "{cmp}");
        assert!(cmp.contains("75.0 % of cuBLAS"), "{cmp}");
        assert!(cmp.contains("check bf16_vs_cublas_8192") && cmp.contains(": ok"), "{cmp}");
    }

    #[test]
    fn pct_of_bound_from_rate_and_intensity() {
        let c = ceilings();
        // Memory-bound row at 1 FLOP/byte reaching 1.6 TFLOP/s = 1600 GB/s of 3200: 50 %.
        let mut r = CandidateRecord {
            dtype: "bf16".into(),
            status: Some(Status::Ok),
            timing: Some(Timing { median_us: 10.0, p20_us: 10.0, p80_us: 10.0, min_us: 10.0, reps: 10 }),
            tflops: Some(1.6),
            gbps: Some(1600.0),
            intensity: Some(1.0),
            ..Default::default()
        };
        fill_pct_of_bound(&mut r, &c);
        assert!((r.pct_of_bound.unwrap() - 50.0).abs() < 1e-9);
        let s = format_winners(
            &c,
            &[CandidateRecord { family: "gemm".into(), shape: "1x1x1".into(), variant: "v".into(), ..r }],
        );
        assert!(s.contains("memory") && s.contains("50.0"), "{s}");
        assert!(format_winners(&c, &[]).contains("kernlab sweep"));
    }
}
