//! Roofline math: measured ceilings of one GPU and the performance they allow.
//!
//! Pure functions, no GPU: `kernlab roofline` measures a [`Ceilings`] on the device and
//! saves it as JSON; sweeps and reports load it to place each candidate against its bound.
//!
//! Units, everywhere in this module: rates in TFLOP/s (1e12 FLOP/s), bandwidths in GB/s
//! (1e9 byte/s), arithmetic intensity in FLOP per byte, times in seconds unless a name says
//! otherwise. GB/s × FLOP/byte is GFLOP/s, hence the factor 1000 between the two.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Ceilings of one GPU, measured with our own kernels and the vendor libraries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Ceilings {
    /// Device name as the driver reports it (`NVIDIA H100 80GB HBM3`).
    pub gpu: String,
    /// Compute capability, `9.0` style.
    pub compute_capability: String,
    /// DRAM bandwidth of a large device-to-device copy, counting read + write bytes.
    pub dram_copy_gbps: f64,
    /// DRAM bandwidth of a large read-only reduction.
    pub dram_read_gbps: f64,
    /// L2 bandwidth (working set well inside L2).
    pub l2_gbps: f64,
    /// Dense tensor-core rates (the best of cuBLAS and our own mma kernel).
    pub tensor_bf16_tflops: f64,
    pub tensor_fp16_tflops: f64,
    /// FP32 FMA rate on the CUDA cores (2 FLOP per FMA).
    pub fp32_fma_tflops: f64,
    /// RFC 3339 time of the measurement.
    pub measured_at: String,
    /// Driver and NVRTC versions and the like, free form; shown in the report.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Peer measurements taken in the same run to check the ceilings against
    /// (`cublas_bf16_8192_tflops`, `torch_copy_gbps`, ...).
    #[serde(default)]
    pub peers: BTreeMap<String, f64>,
}

/// Which ceiling limits a kernel at its arithmetic intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Memory,
    Compute,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
        }
    }
}

/// The two numbers that make a roofline: one compute roof and one bandwidth slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roof {
    pub peak_tflops: f64,
    pub bandwidth_gbps: f64,
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// FLOPs per byte. `None` when bytes is not positive (no intensity can be defined).
pub fn arithmetic_intensity(flops: f64, bytes: f64) -> Option<f64> {
    if positive(bytes) && flops.is_finite() && flops >= 0.0 {
        Some(flops / bytes)
    } else {
        None
    }
}

/// Attainable TFLOP/s at `intensity`: min(peak, bandwidth × intensity).
pub fn attainable_tflops(peak_tflops: f64, bandwidth_gbps: f64, intensity: f64) -> f64 {
    peak_tflops.min(bandwidth_gbps * intensity / 1000.0)
}

/// Intensity (FLOP/byte) where the bandwidth slope meets the compute roof.
pub fn ridge_point(peak_tflops: f64, bandwidth_gbps: f64) -> Option<f64> {
    if positive(peak_tflops) && positive(bandwidth_gbps) {
        Some(peak_tflops * 1000.0 / bandwidth_gbps)
    } else {
        None
    }
}

/// Memory-bound left of the ridge, compute-bound at or right of it.
pub fn limiting_bound(peak_tflops: f64, bandwidth_gbps: f64, intensity: f64) -> Bound {
    match ridge_point(peak_tflops, bandwidth_gbps) {
        Some(r) if intensity < r => Bound::Memory,
        _ => Bound::Compute,
    }
}

/// Shortest time (seconds) the ceilings allow for `flops` and `bytes`.
///
/// Written as max(flops/peak, bytes/bandwidth) rather than flops / attainable rate, so a
/// kernel with no FLOPs at all (a copy) still gets a bound from its bytes.
pub fn min_time_s(flops: f64, bytes: f64, peak_tflops: f64, bandwidth_gbps: f64) -> Option<f64> {
    if !(positive(peak_tflops) && positive(bandwidth_gbps)) {
        return None;
    }
    if !(flops.is_finite() && bytes.is_finite()) || flops < 0.0 || bytes < 0.0 {
        return None;
    }
    let t = (flops / (peak_tflops * 1e12)).max(bytes / (bandwidth_gbps * 1e9));
    if t > 0.0 {
        Some(t)
    } else {
        None
    }
}

/// Measured performance as a percentage of what the roofline allows (100 = on the roof).
pub fn pct_of_bound(flops: f64, bytes: f64, seconds: f64, peak_tflops: f64, bandwidth_gbps: f64) -> Option<f64> {
    if !positive(seconds) {
        return None;
    }
    min_time_s(flops, bytes, peak_tflops, bandwidth_gbps).map(|t| 100.0 * t / seconds)
}

impl Roof {
    pub fn attainable_tflops(&self, intensity: f64) -> f64 {
        attainable_tflops(self.peak_tflops, self.bandwidth_gbps, intensity)
    }
    pub fn ridge_point(&self) -> Option<f64> {
        ridge_point(self.peak_tflops, self.bandwidth_gbps)
    }
    pub fn limiting_bound(&self, intensity: f64) -> Bound {
        limiting_bound(self.peak_tflops, self.bandwidth_gbps, intensity)
    }
    pub fn pct_of_bound(&self, flops: f64, bytes: f64, seconds: f64) -> Option<f64> {
        pct_of_bound(flops, bytes, seconds, self.peak_tflops, self.bandwidth_gbps)
    }
}

/// Compute ceiling kinds, chosen from a record's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeCeiling {
    TensorBf16,
    TensorFp16,
    Fp32Fma,
}

impl ComputeCeiling {
    /// Which roof a kernel of `dtype` runs under. Weight-only quantized kernels (`int4`,
    /// `w4a16`, `int8` weights) dequantize into 16-bit tensor-core math, so they sit under
    /// the bf16 roof unless their dtype names fp16; unknown names fall back to bf16, the
    /// common case for LLM kernels, rather than failing a whole report.
    pub fn for_dtype(dtype: &str) -> ComputeCeiling {
        let d = dtype.to_ascii_lowercase();
        if d.contains("bf16") || d.contains("bfloat16") {
            ComputeCeiling::TensorBf16
        } else if d.contains("fp16") || d.contains("f16") || d.contains("half") || d.contains("float16") {
            ComputeCeiling::TensorFp16
        } else if d.contains("32") || d == "float" {
            ComputeCeiling::Fp32Fma
        } else {
            ComputeCeiling::TensorBf16
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            ComputeCeiling::TensorBf16 => "bf16 tensor",
            ComputeCeiling::TensorFp16 => "fp16 tensor",
            ComputeCeiling::Fp32Fma => "fp32 FMA",
        }
    }
}

impl Ceilings {
    /// The DRAM slope used for bounds: the higher of copy and read-only bandwidth, because
    /// both were reached on this device, and a bound must not be beatable.
    pub fn dram_gbps(&self) -> f64 {
        self.dram_copy_gbps.max(self.dram_read_gbps)
    }

    pub fn compute_tflops(&self, which: ComputeCeiling) -> f64 {
        match which {
            ComputeCeiling::TensorBf16 => self.tensor_bf16_tflops,
            ComputeCeiling::TensorFp16 => self.tensor_fp16_tflops,
            ComputeCeiling::Fp32Fma => self.fp32_fma_tflops,
        }
    }

    /// The DRAM roofline of a kernel computing in `dtype`.
    pub fn roof_for_dtype(&self, dtype: &str) -> Roof {
        Roof { peak_tflops: self.compute_tflops(ComputeCeiling::for_dtype(dtype)), bandwidth_gbps: self.dram_gbps() }
    }

    /// Rejects ceilings that would make every bound meaningless (zero, negative, NaN).
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("dram_copy_gbps", self.dram_copy_gbps),
            ("dram_read_gbps", self.dram_read_gbps),
            ("l2_gbps", self.l2_gbps),
            ("tensor_bf16_tflops", self.tensor_bf16_tflops),
            ("tensor_fp16_tflops", self.tensor_fp16_tflops),
            ("fp32_fma_tflops", self.fp32_fma_tflops),
        ];
        for (name, v) in fields {
            if !positive(v) {
                bail!("ceiling {name} is {v}; it must be a positive number (re-measure with `kernlab roofline --remeasure`)");
            }
        }
        Ok(())
    }

    /// Writes the ceilings as pretty JSON, creating the parent directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, &json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Ceilings> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let c: Ceilings = serde_json::from_slice(&data)
            .with_context(|| format!("parsing {} as kernlab ceilings JSON", path.display()))?;
        Ok(c)
    }
}

/// File name of the ceilings of one GPU: `ceilings-<gpu slug>-sm<cc>.json`, e.g.
/// `ceilings-nvidia-h100-80gb-hbm3-sm90.json`. Only `[a-z0-9-]` appear, so the name is safe
/// on every file system and in URLs.
pub fn ceilings_file_name(gpu: &str, compute_capability: &str) -> String {
    let mut slug = String::new();
    for c in gpu.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "unknown-gpu" } else { slug };
    let cc: String = compute_capability.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let cc = if cc.is_empty() { "unknown".to_string() } else { cc.to_ascii_lowercase() };
    format!("ceilings-{slug}-sm{cc}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn intensity_of_a_square_gemm() {
        // 4096³ bf16 GEMM: 2·4096³ FLOP over 3·4096²·2 bytes = 4096/3 FLOP/byte.
        let n = 4096.0f64;
        let i = arithmetic_intensity(2.0 * n * n * n, 3.0 * n * n * 2.0).unwrap();
        assert!(close(i, 4096.0 / 3.0));
        assert!(arithmetic_intensity(1.0, 0.0).is_none());
        assert!(arithmetic_intensity(1.0, f64::NAN).is_none());
        assert_eq!(arithmetic_intensity(0.0, 8.0), Some(0.0));
    }

    #[test]
    fn attainable_and_ridge() {
        // 1000 TFLOP/s and 3000 GB/s: ridge at 1000e12 / 3000e9 = 333.33 FLOP/byte.
        let r = Roof { peak_tflops: 1000.0, bandwidth_gbps: 3000.0 };
        assert!(close(r.ridge_point().unwrap(), 1000.0 / 3.0));
        // At 10 FLOP/byte: 3000 GB/s × 10 = 30 TFLOP/s.
        assert!(close(r.attainable_tflops(10.0), 30.0));
        // Far right of the ridge: the roof.
        assert!(close(r.attainable_tflops(1e6), 1000.0));
        assert_eq!(r.limiting_bound(10.0), Bound::Memory);
        assert_eq!(r.limiting_bound(400.0), Bound::Compute);
        assert!(ridge_point(0.0, 3000.0).is_none());
    }

    #[test]
    fn pct_of_bound_memory_and_compute() {
        let r = Roof { peak_tflops: 1000.0, bandwidth_gbps: 2000.0 };
        // Copy of 1 GB: no FLOPs, bound 1e9 / 2e12 = 0.5 ms; measured 1 ms → 50 %.
        assert!(close(r.pct_of_bound(0.0, 1e9, 1e-3).unwrap(), 50.0));
        // 1e15 FLOP over 1e9 bytes: compute bound 1 s; measured 1.25 s → 80 %.
        assert!(close(r.pct_of_bound(1e15, 1e9, 1.25).unwrap(), 80.0));
        // Same as achieved / attainable: 1e15/1.25 = 800 TFLOP/s of 1000.
        assert!(r.pct_of_bound(1.0, 1.0, 0.0).is_none());
        assert!(r.pct_of_bound(0.0, 0.0, 1.0).is_none());
        assert!(pct_of_bound(1.0, 1.0, 1.0, f64::NAN, 1.0).is_none());
    }

    #[test]
    fn compute_ceiling_by_dtype() {
        assert_eq!(ComputeCeiling::for_dtype("bf16"), ComputeCeiling::TensorBf16);
        assert_eq!(ComputeCeiling::for_dtype("FP16"), ComputeCeiling::TensorFp16);
        assert_eq!(ComputeCeiling::for_dtype("f16"), ComputeCeiling::TensorFp16);
        assert_eq!(ComputeCeiling::for_dtype("f32"), ComputeCeiling::Fp32Fma);
        assert_eq!(ComputeCeiling::for_dtype("int4_bf16"), ComputeCeiling::TensorBf16);
        assert_eq!(ComputeCeiling::for_dtype("w4a16"), ComputeCeiling::TensorBf16);
        let c = Ceilings {
            dram_copy_gbps: 3000.0,
            dram_read_gbps: 3200.0,
            tensor_bf16_tflops: 700.0,
            tensor_fp16_tflops: 710.0,
            fp32_fma_tflops: 50.0,
            ..Default::default()
        };
        let r = c.roof_for_dtype("fp32");
        assert_eq!(r, Roof { peak_tflops: 50.0, bandwidth_gbps: 3200.0 });
    }

    #[test]
    fn file_name_is_a_slug() {
        assert_eq!(ceilings_file_name("NVIDIA H100 80GB HBM3", "9.0"), "ceilings-nvidia-h100-80gb-hbm3-sm90.json");
        assert_eq!(ceilings_file_name("  ", ""), "ceilings-unknown-gpu-smunknown.json");
        assert_eq!(ceilings_file_name("../../etc", "8.9"), "ceilings-etc-sm89.json");
    }

    #[test]
    fn save_load_round_trip_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(ceilings_file_name("NVIDIA H100", "9.0"));
        let mut c = Ceilings {
            gpu: "NVIDIA H100".into(),
            compute_capability: "9.0".into(),
            dram_copy_gbps: 3000.0,
            dram_read_gbps: 3100.0,
            l2_gbps: 9000.0,
            tensor_bf16_tflops: 700.0,
            tensor_fp16_tflops: 700.0,
            fp32_fma_tflops: 50.0,
            measured_at: "2025-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        c.peers.insert("torch_copy_gbps".into(), 2950.0);
        c.save(&path).unwrap();
        assert_eq!(Ceilings::load(&path).unwrap(), c);
        c.validate().unwrap();
        c.l2_gbps = 0.0;
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("l2_gbps"));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Ceilings::load(&path).is_err());
    }
}
