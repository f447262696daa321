//! Measuring a GPU's roofline ceilings on the device (`kernlab roofline`).
//!
//! Every ceiling comes from a timed run on this GPU, never from a datasheet:
//!
//! | ceiling | how |
//! |---|---|
//! | DRAM copy | `copy_v16_u*` over two buffers far larger than L2, read + write bytes |
//! | DRAM read | `read_v16_u*` over one such buffer |
//! | L2 | `l2_read_v16`: hundreds of passes over a third of L2 |
//! | fp32 FMA | `fma_f32`: independent FMA chains in registers |
//! | bf16 / fp16 tensor | the best of cuBLAS at 8192³, our `gemm_mma` at 8192³ (tuned config when the database has one) and `mma_peak_*` (mma.sync in registers) |
//!
//! Each memory kernel is tried at a few grid sizes and loads in flight, and the fastest
//! counts. Every figure
//! (ceiling or comparison) is kept in [`Ceilings::peers`] under a name with its unit, and
//! its timing (median, 20–80 band, repetitions, launch geometry) in
//! [`Ceilings::environment`] under `timing <name>`, so the saved JSON says how each
//! number was obtained.

pub mod gemm;
pub mod micro;
pub mod torch;

use crate::core::Timing;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::Gpu;
use crate::gpu::timer::Timer;
use crate::roofline::Ceilings;
use anyhow::{Context, Result};

/// The micro-benchmark template, embedded so the binary measures without the source tree.
pub const CEILINGS_SOURCE: &str = include_str!("../../kernels/roofline/ceilings.cu");
pub const CEILINGS_FILE: &str = "kernels/roofline/ceilings.cu";

/// Names of the figures in [`Ceilings::peers`].
pub mod keys {
    pub const COPY: &str = "copy_v16_gbps";
    pub const READ: &str = "read_v16_gbps";
    pub const L2: &str = "l2_read_v16_gbps";
    pub const FMA: &str = "fma_f32_tflops";
    pub const MMA_PEAK_BF16: &str = "mma_sync_peak_bf16_tflops";
    pub const MMA_PEAK_F16: &str = "mma_sync_peak_fp16_tflops";
    pub const CUBLAS_BF16: &str = "cublas_bf16_8192_tflops";
    pub const CUBLAS_F16: &str = "cublas_fp16_8192_tflops";
    pub const GEMM_MMA_BF16: &str = "gemm_mma_bf16_8192_tflops";
    pub const GEMM_MMA_F16: &str = "gemm_mma_fp16_8192_tflops";
    pub const TORCH_COPY: &str = "torch_copy_gbps";
    pub const TORCH_BF16: &str = "torch_bf16_8192_tflops";
}

/// One measured rate and the timing behind it.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Key in [`Ceilings::peers`] (unit in the name).
    pub key: &'static str,
    /// GB/s or TFLOP/s, from the median time.
    pub value: f64,
    pub timing: Timing,
    /// Launch geometry and sizes, for the record.
    pub detail: String,
}

impl Figure {
    /// `work` is bytes (for GB/s, `scale` 1e9) or FLOPs (for TFLOP/s, `scale` 1e12) per run.
    pub fn new(key: &'static str, work: f64, scale: f64, timing: Timing, detail: String) -> Figure {
        let value = work / (timing.median_us * 1e-6) / scale;
        Figure { key, value, timing, detail }
    }

    /// Half the 20–80 band, in % of the median.
    pub fn spread_pct(&self) -> f64 {
        100.0 * self.timing.spread_us() / self.timing.median_us
    }

    /// The line kept in [`Ceilings::environment`].
    pub fn timing_text(&self) -> String {
        let t = &self.timing;
        format!(
            "median {:.1} µs (p20 {:.1}, p80 {:.1}, ±{:.2} %), {} reps; {}",
            t.median_us,
            t.p20_us,
            t.p80_us,
            self.spread_pct(),
            t.reps,
            self.detail
        )
    }
}

/// A figure that is a faster version of another counts; ties keep the first.
pub fn best(figures: Vec<Figure>) -> Option<Figure> {
    figures.into_iter().reduce(|a, b| if b.value > a.value { b } else { a })
}

/// Records a figure in the ceilings' peers and environment.
pub fn record(c: &mut Ceilings, f: &Figure) {
    c.peers.insert(f.key.to_string(), f.value);
    c.environment.insert(format!("timing {}", f.key), f.timing_text());
}

/// The ceilings from the figures measured: memory from our kernels; each tensor rate the
/// best of cuBLAS, our GEMM and our mma.sync peak (a ceiling is what this GPU was seen to
/// reach, and a bound must not be beatable). Notes which source set each tensor ceiling.
pub fn choose_ceilings(c: &mut Ceilings) {
    let get = |k: &str| c.peers.get(k).copied().unwrap_or(0.0);
    c.dram_copy_gbps = get(keys::COPY);
    c.dram_read_gbps = get(keys::READ);
    c.l2_gbps = get(keys::L2);
    c.fp32_fma_tflops = get(keys::FMA);
    let pick = |cands: &[(&str, &str)]| -> (f64, String) {
        let mut best = (0.0, String::from("none"));
        for (key, label) in cands {
            let v = get(key);
            if v.is_finite() && v > best.0 {
                best = (v, label.to_string());
            }
        }
        best
    };
    let (bf16, bf16_src) = pick(&[
        (keys::CUBLAS_BF16, "cuBLAS 8192³"),
        (keys::GEMM_MMA_BF16, "kernlab gemm_mma 8192³"),
        (keys::MMA_PEAK_BF16, "kernlab mma.sync peak (registers only)"),
    ]);
    let (f16, f16_src) = pick(&[
        (keys::CUBLAS_F16, "cuBLAS 8192³"),
        (keys::GEMM_MMA_F16, "kernlab gemm_mma 8192³"),
        (keys::MMA_PEAK_F16, "kernlab mma.sync peak (registers only)"),
    ]);
    c.tensor_bf16_tflops = bf16;
    c.tensor_fp16_tflops = f16;
    c.environment.insert("source tensor_bf16_tflops".into(), bf16_src);
    c.environment.insert("source tensor_fp16_tflops".into(), f16_src);
}

/// Measures every ceiling of `gpu` (about 10–30 s on an H100) and returns them validated.
/// Progress lines go to `progress` as each figure is measured.
pub fn measure_ceilings_with(gpu: &Gpu, cache: &ModuleCache, progress: &mut dyn FnMut(&str)) -> Result<Ceilings> {
    let p = &gpu.props;
    let mut c = Ceilings {
        gpu: p.name.clone(),
        compute_capability: p.cc(),
        measured_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ..Default::default()
    };
    environment(gpu, cache, &mut c);
    let timer = Timer::new(gpu)?;
    let add = |c: &mut Ceilings, f: Figure, progress: &mut dyn FnMut(&str)| {
        progress(&format!("  {:<28} {:>9.1}  ±{:.2} %  ({})", f.key, f.value, f.spread_pct(), f.detail));
        record(c, &f);
    };
    // Tensor rates first, while the GPU is cool: a GPU that has just run at full power for
    // seconds may hold lower clocks, and the PyTorch peer is usually measured cool too.
    for f in gemm::cublas_8192(gpu, &timer, cache)? {
        add(&mut c, f, progress);
    }
    for dt in [crate::kernels::DType::BF16, crate::kernels::DType::F16] {
        match gemm::ours_8192(gpu, &timer, cache, dt) {
            Ok((f, note)) => {
                c.environment.insert(format!("config {}", f.key), note);
                add(&mut c, f, progress);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  gemm_mma {} 8192³ not measured: {msg}", dt.name()));
                c.environment.insert(format!("gemm_mma {} 8192³", dt.name()), format!("not measured: {msg}"));
            }
        }
    }
    let mk = micro::MicroKernels::load(gpu, cache)?;
    for f in micro::memory(gpu, &timer, &mk)? {
        add(&mut c, f, progress);
    }
    let (fma, clock) = micro::fma(gpu, &timer, &mk)?;
    add(&mut c, fma, progress);
    if let Some(mhz) = clock {
        c.environment.insert("sm clock under FMA load (MHz)".into(), format!("{mhz:.0}"));
    }
    for f in micro::mma_peak(gpu, &timer, &mk)? {
        add(&mut c, f, progress);
    }
    choose_ceilings(&mut c);
    c.validate().context("measured ceilings are not usable")?;
    Ok(c)
}

/// [`measure_ceilings_with`] printing progress to stderr.
pub fn measure_ceilings(gpu: &Gpu, cache: &ModuleCache) -> Result<Ceilings> {
    measure_ceilings_with(gpu, cache, &mut |line| eprintln!("{line}"))
}

fn environment(gpu: &Gpu, cache: &ModuleCache, c: &mut Ceilings) {
    let p = &gpu.props;
    let e = &mut c.environment;
    e.insert("driver (CUDA)".into(), p.driver_version.clone());
    e.insert("NVRTC".into(), cache.nvrtc_version().to_string());
    if let Ok(f) = crate::gpu::libs::cublas() {
        e.insert("cuBLAS library".into(), f.lib.display().to_string());
    }
    e.insert("SMs".into(), p.sm_count.to_string());
    e.insert("L2 (MiB)".into(), format!("{:.1}", p.l2_bytes as f64 / (1u64 << 20) as f64));
    e.insert("memory (GiB)".into(), format!("{:.1}", p.total_mem_bytes as f64 / (1u64 << 30) as f64));
    e.insert("sm clock max (MHz)".into(), p.sm_clock_mhz.to_string());
    e.insert("memory clock (MHz), bus (bits)".into(), format!("{}, {}", p.mem_clock_mhz, p.bus_width_bits));
    // Double data rate × bus width: the number a datasheet would quote, for comparison only.
    let theoretical = 2.0 * p.mem_clock_mhz as f64 * 1e6 * p.bus_width_bits as f64 / 8.0 / 1e9;
    if theoretical > 0.0 {
        e.insert("DRAM theoretical (GB/s, from clocks)".into(), format!("{theoretical:.0}"));
    }
    e.insert("kernlab".into(), env!("CARGO_PKG_VERSION").to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(median: f64) -> Timing {
        Timing { median_us: median, p20_us: median * 0.99, p80_us: median * 1.01, min_us: median * 0.98, reps: 20 }
    }

    #[test]
    fn figure_rates_from_work_and_time() {
        // 2 GB moved in 1 ms = 2000 GB/s; 1e12 FLOP in 2 ms = 500 TFLOP/s.
        let f = Figure::new(keys::COPY, 2e9, 1e9, t(1000.0), "grid 1".into());
        assert!((f.value - 2000.0).abs() < 1e-9);
        assert!((f.spread_pct() - 1.0).abs() < 1e-9);
        assert!(f.timing_text().contains("20 reps"));
        let g = Figure::new(keys::CUBLAS_BF16, 1e12, 1e12, t(2000.0), String::new());
        assert!((g.value - 500.0).abs() < 1e-9);
        let b = best(vec![
            f.clone(),
            Figure { value: 2500.0, ..f.clone() },
            Figure { value: 2500.0, detail: "x".into(), ..f },
        ]);
        assert_eq!(b.unwrap().detail, "grid 1");
    }

    #[test]
    fn tensor_ceiling_is_the_best_source() {
        let mut c = Ceilings::default();
        for (k, v) in [
            (keys::COPY, 3000.0),
            (keys::READ, 3100.0),
            (keys::L2, 9000.0),
            (keys::FMA, 60.0),
            (keys::CUBLAS_BF16, 740.0),
            (keys::GEMM_MMA_BF16, 500.0),
            (keys::MMA_PEAK_BF16, 650.0),
            (keys::CUBLAS_F16, 700.0),
            (keys::MMA_PEAK_F16, 720.0),
        ] {
            c.peers.insert(k.into(), v);
        }
        choose_ceilings(&mut c);
        assert_eq!(c.tensor_bf16_tflops, 740.0);
        assert_eq!(c.environment["source tensor_bf16_tflops"], "cuBLAS 8192³");
        assert_eq!(c.tensor_fp16_tflops, 720.0);
        assert!(c.environment["source tensor_fp16_tflops"].contains("mma.sync"));
        assert_eq!(c.dram_gbps(), 3100.0);
        c.validate().unwrap();
    }
}
