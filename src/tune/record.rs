//! One measured (or failed) candidate of a sweep, and the CSV file that holds them.
//!
//! The CSV is written one row at a time and synced after each row, so a sweep that is
//! interrupted loses nothing; `--resume` reads it back (see [`csv_file`] for how torn and
//! unverifiable rows are told apart). Columns are fixed, then one `param_<name>` column per
//! tunable of the sweep (sorted by name), then `row_check`, so pandas and spreadsheets read
//! the file as it is: units in column names, empty cells for values that do not apply,
//! never mixed types in a column.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod csv_file;
#[cfg(test)]
mod csv_tests;
mod writer;
pub use csv_file::{
    parse_sweep_csv, read_records, read_records_from, read_sweep_csv, row_check, to_csv_bytes, SweepCsv,
};
pub use writer::RecordWriter;

/// What happened to a candidate. Only `Ok` candidates can win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Verified against the reference and timed.
    Ok,
    /// Ran, but its output differed from the reference beyond tolerance (or was NaN).
    Wrong,
    /// NVRTC rejected it; the log is in `error`.
    CompileError,
    /// The driver refused the launch (too many resources, bad geometry).
    LaunchError,
    /// The kernel trapped or faulted; the worker process was restarted.
    Fault,
    /// The kernel did not finish before the watchdog fired; the worker was restarted.
    Timeout,
    /// The peer library (cuBLAS, ...) measured on the same shape, for comparison.
    Peer,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Wrong => "wrong",
            Status::CompileError => "compile_error",
            Status::LaunchError => "launch_error",
            Status::Fault => "fault",
            Status::Timeout => "timeout",
            Status::Peer => "peer",
        }
    }
    pub fn parse(s: &str) -> Result<Status> {
        Ok(match s {
            "ok" => Status::Ok,
            "wrong" => Status::Wrong,
            "compile_error" => Status::CompileError,
            "launch_error" => Status::LaunchError,
            "fault" => Status::Fault,
            "timeout" => Status::Timeout,
            "peer" => Status::Peer,
            other => bail!("unknown status {other:?}"),
        })
    }
    /// A failure that is a property of the candidate (re-running it gives the same answer),
    /// so `--resume` need not try it again.
    pub fn is_final(self) -> bool {
        true
    }
}

pub use crate::core::Timing;

/// One row of a sweep CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CandidateRecord {
    /// Kernel family (`gemm`, `gemm_int4`, ...).
    pub family: String,
    /// Variant (template file stem) or the peer's name (`cublas`).
    pub variant: String,
    pub dtype: String,
    /// Shape in the family's notation, e.g. `16x4096x14336` for GEMM (MxNxK).
    pub shape: String,
    /// Tunable parameters, by name.
    pub params: BTreeMap<String, i64>,
    pub status: Option<Status>,
    /// Error message (NVRTC log excerpt, verification failure, fault); empty when ok.
    pub error: String,
    /// max |out - ref| / max |ref| of the verification run.
    pub max_rel_err: Option<f64>,
    pub timing: Option<Timing>,
    pub tflops: Option<f64>,
    pub gbps: Option<f64>,
    /// FLOPs per byte of minimum DRAM traffic.
    pub intensity: Option<f64>,
    /// Achieved rate as a percentage of the roofline bound at this intensity.
    pub pct_of_bound: Option<f64>,
    /// Peer median time on the same shape in the same run, and our speedup over it.
    pub peer_us: Option<f64>,
    pub speedup_vs_peer: Option<f64>,
    pub registers: Option<u32>,
    pub smem_bytes: Option<u32>,
    pub local_bytes: Option<u32>,
    pub compile_ms: Option<f64>,
    /// Name of the GPU the row was measured on.
    pub gpu: String,
    /// Wall time the worker spent verifying the candidate (all checks) and timing it.
    pub verify_ms: Option<f64>,
    pub time_ms: Option<f64>,
    /// The family's names for the shape's dimensions (`M`, `N`, `K`): written as `dim_*`
    /// columns, not read back (the shape string stays the key).
    #[serde(default)]
    pub dim_names: Vec<String>,
    /// When, on what and with what the row was measured.
    pub env: RowEnv,
}

/// Where and with what a row was measured: the time and versions come from the sweep, the
/// clocks, power and temperature from NVML while the candidate's timed runs were queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RowEnv {
    /// UTC time the row was measured (RFC 3339, seconds).
    pub utc: String,
    pub sm_mhz: Option<u32>,
    pub mem_mhz: Option<u32>,
    pub power_w: Option<f64>,
    pub temp_c: Option<u32>,
    /// NVIDIA driver (e.g. 580.65.06), NVRTC (13.0) and kernlab versions.
    pub driver: String,
    pub nvrtc: String,
    pub kernlab: String,
    /// SHA-256 prefix of the variant's template source (as the tuned database keys it).
    pub source_hash: String,
    /// The CUDA ordinal of the GPU that measured the row (`--gpus` spreads a sweep over
    /// several) and its UUID (`GPU-…`, as nvidia-smi prints it), which stays the same when
    /// CUDA_VISIBLE_DEVICES renumbers the GPUs.
    pub gpu_ordinal: Option<u32>,
    pub gpu_uuid: String,
}

const FIXED_COLUMNS: &[&str] = &[
    "family",
    "variant",
    "dtype",
    "shape",
    "status",
    "error",
    "max_rel_err",
    "time_us_median",
    "time_us_p20",
    "time_us_p80",
    "time_us_min",
    "reps",
    "tflops",
    "gbps",
    "intensity_flop_per_byte",
    "pct_of_bound",
    "peer_time_us",
    "speedup_vs_peer",
    "registers",
    "smem_bytes",
    "local_bytes",
    "compile_ms",
    "gpu",
];

/// Columns added after the first files were written: absent from older files, which are
/// still read (these fields come back empty) and continued in their own layout.
const ENV_COLUMNS: &[&str] = &[
    "verify_ms",
    "time_ms",
    "utc",
    "sm_mhz",
    "mem_mhz",
    "power_w",
    "temp_c",
    "driver",
    "nvrtc",
    "kernlab",
    "source_hash",
];

/// Columns added with `--gpus`: which of several GPUs measured the row. Files from before
/// lack them; they are read (empty values) and continued in their own layout.
const GPU_COLUMNS: &[&str] = &["gpu_ordinal", "gpu_uuid"];

fn ms(v: &Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_default()
}
fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}
fn fopt(v: &Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

impl CandidateRecord {
    /// Identity used by `--resume` and by the tuned database: same variant, dtype, shape
    /// and parameters means the same candidate.
    pub fn key(&self) -> String {
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}|{}|{}|{}|{}", self.family, self.variant, self.dtype, self.shape, params.join(","))
    }

    pub fn median_us(&self) -> Option<f64> {
        self.timing.map(|t| t.median_us)
    }

    /// The row's value for one column of a sweep CSV (empty when the record has none).
    fn cell(&self, column: &str) -> String {
        let t = self.timing;
        let e = &self.env;
        let tf = |f: fn(&Timing) -> f64| t.map(|t| format!("{:.3}", f(&t))).unwrap_or_default();
        match column {
            "family" => self.family.clone(),
            "variant" => self.variant.clone(),
            "dtype" => self.dtype.clone(),
            "shape" => self.shape.clone(),
            "status" => self.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            // One line per cell keeps the file friendly to line-based tools.
            "error" => self.error.replace(['\n', '\r'], " | "),
            "max_rel_err" => self.max_rel_err.map(|x| format!("{x:.3e}")).unwrap_or_default(),
            "time_us_median" => tf(|t| t.median_us),
            "time_us_p20" => tf(|t| t.p20_us),
            "time_us_p80" => tf(|t| t.p80_us),
            "time_us_min" => tf(|t| t.min_us),
            "reps" => t.map(|t| t.reps.to_string()).unwrap_or_default(),
            "tflops" => fopt(&self.tflops),
            "gbps" => fopt(&self.gbps),
            "intensity_flop_per_byte" => fopt(&self.intensity),
            "pct_of_bound" => fopt(&self.pct_of_bound),
            "peer_time_us" => fopt(&self.peer_us),
            "speedup_vs_peer" => fopt(&self.speedup_vs_peer),
            "registers" => opt(&self.registers),
            "smem_bytes" => opt(&self.smem_bytes),
            "local_bytes" => opt(&self.local_bytes),
            "compile_ms" => fopt(&self.compile_ms),
            "gpu" => self.gpu.clone(),
            "verify_ms" => ms(&self.verify_ms),
            "time_ms" => ms(&self.time_ms),
            "utc" => e.utc.clone(),
            "sm_mhz" => opt(&e.sm_mhz),
            "mem_mhz" => opt(&e.mem_mhz),
            "power_w" => e.power_w.map(|w| format!("{w:.1}")).unwrap_or_default(),
            "temp_c" => opt(&e.temp_c),
            "driver" => e.driver.clone(),
            "nvrtc" => e.nvrtc.clone(),
            "kernlab" => e.kernlab.clone(),
            "source_hash" => e.source_hash.clone(),
            "gpu_ordinal" => opt(&e.gpu_ordinal),
            "gpu_uuid" => e.gpu_uuid.clone(),
            other => {
                if let Some(p) = other.strip_prefix("param_") {
                    self.params.get(p).map(|v| v.to_string()).unwrap_or_default()
                } else if let Some(d) = other.strip_prefix("dim_") {
                    self.dim(d).map(|v| v.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }

    /// One dimension of the shape, by the family's name for it (`M` of `16x4096x14336`
    /// under dims M, N, K); the record keeps the names in `dim_names` order.
    fn dim(&self, name: &str) -> Option<i64> {
        let at = self.dim_names.iter().position(|d| d == name)?;
        self.shape.split(['x', 'X']).nth(at)?.trim().parse().ok()
    }

    /// The row's fields for these columns (without `row_check`).
    fn to_row(&self, columns: &[String]) -> Vec<String> {
        columns.iter().map(|c| self.cell(c)).collect()
    }
}

/// The last column: CRC32 of the row's other fields (see [`csv_file::row_check`]).
pub const ROW_CHECK: &str = "row_check";

/// Header of a sweep CSV for a family with these shape dimensions and tunables: the fixed
/// columns, the environment, one `dim_<name>` per dimension, one `param_<name>` per tunable
/// (sorted, deduplicated), `row_check`.
pub fn header(dim_names: &[String], param_names: &[String]) -> Vec<String> {
    let mut h: Vec<String> =
        FIXED_COLUMNS.iter().chain(ENV_COLUMNS).chain(GPU_COLUMNS).map(|s| s.to_string()).collect();
    h.extend(dim_names.iter().map(|d| format!("dim_{d}")));
    h.extend(param_names.iter().map(|p| format!("param_{p}")));
    h.push(ROW_CHECK.to_string());
    h
}

/// Header of the files written before rows named the GPU's ordinal and UUID.
fn pre_gpu_header(dim_names: &[String], param_names: &[String]) -> Vec<String> {
    header(dim_names, param_names).into_iter().filter(|c| !GPU_COLUMNS.contains(&c.as_str())).collect()
}

/// Header of the files written before rows carried the environment (`checked`: with a
/// `row_check`, as from kernlab 0.1 on; without, as the first files).
fn legacy_header(param_names: &[String], checked: bool) -> Vec<String> {
    let mut h: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(param_names.iter().map(|p| format!("param_{p}")));
    if checked {
        h.push(ROW_CHECK.to_string());
    }
    h
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fully filled record, shared with the CSV file's tests.
    pub(crate) fn sample() -> CandidateRecord {
        let mut params = BTreeMap::new();
        params.insert("BM".into(), 128);
        params.insert("STAGES".into(), 3);
        CandidateRecord {
            family: "gemm".into(),
            variant: "mma_multistage".into(),
            dtype: "bf16".into(),
            shape: "16x4096x14336".into(),
            params,
            status: Some(Status::Ok),
            error: String::new(),
            max_rel_err: Some(1.5e-3),
            timing: Timing::from_samples(&[10.0, 11.0, 12.0, 13.0, 14.0]),
            tflops: Some(1.25),
            gbps: Some(2500.5),
            intensity: Some(15.8),
            pct_of_bound: Some(71.2),
            peer_us: Some(13.0),
            speedup_vs_peer: Some(1.083333),
            registers: Some(128),
            smem_bytes: Some(49152),
            local_bytes: Some(0),
            compile_ms: Some(120.0),
            gpu: "NVIDIA H100".into(),
            verify_ms: Some(3.25),
            time_ms: Some(101.5),
            dim_names: vec!["M".into(), "N".into(), "K".into()],
            env: RowEnv {
                utc: "2026-12-02T19:00:00Z".into(),
                sm_mhz: Some(1980),
                mem_mhz: Some(3201),
                power_w: Some(412.5),
                temp_c: Some(51),
                driver: "580.65.06".into(),
                nvrtc: "13.0".into(),
                kernlab: "0.1.0".into(),
                source_hash: "3f2a9c01".into(),
                gpu_ordinal: Some(1),
                gpu_uuid: "GPU-5c3a0e1f-0000-4000-8000-00000000beef".into(),
            },
        }
    }

    #[test]
    fn timing_percentiles() {
        let t = Timing::from_samples(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(t.median_us, 3.0);
        assert_eq!(t.min_us, 1.0);
        assert!((t.p20_us - 1.8).abs() < 1e-12);
        assert!((t.p80_us - 4.2).abs() < 1e-12);
        assert!(Timing::from_samples(&[]).is_none());
    }

    #[test]
    fn header_has_units_and_params() {
        let h = header(&["M".to_string()], &["BM".to_string()]);
        assert!(h.contains(&"time_us_median".to_string()));
        assert!(h.contains(&"utc".to_string()) && h.contains(&"dim_M".to_string()));
        assert_eq!(h[h.len() - 2], "param_BM");
        assert_eq!(h.last().unwrap(), ROW_CHECK);
    }
}
