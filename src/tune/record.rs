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

    fn to_row(&self, param_names: &[String]) -> Vec<String> {
        let t = self.timing;
        let mut row = vec![
            self.family.clone(),
            self.variant.clone(),
            self.dtype.clone(),
            self.shape.clone(),
            self.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            // One line per cell keeps the file friendly to line-based tools.
            self.error.replace(['\n', '\r'], " | "),
            self.max_rel_err.map(|x| format!("{x:.3e}")).unwrap_or_default(),
            t.map(|t| format!("{:.3}", t.median_us)).unwrap_or_default(),
            t.map(|t| format!("{:.3}", t.p20_us)).unwrap_or_default(),
            t.map(|t| format!("{:.3}", t.p80_us)).unwrap_or_default(),
            t.map(|t| format!("{:.3}", t.min_us)).unwrap_or_default(),
            t.map(|t| t.reps.to_string()).unwrap_or_default(),
            fopt(&self.tflops),
            fopt(&self.gbps),
            fopt(&self.intensity),
            fopt(&self.pct_of_bound),
            fopt(&self.peer_us),
            fopt(&self.speedup_vs_peer),
            opt(&self.registers),
            opt(&self.smem_bytes),
            opt(&self.local_bytes),
            fopt(&self.compile_ms),
            self.gpu.clone(),
        ];
        for p in param_names {
            row.push(self.params.get(p).map(|v| v.to_string()).unwrap_or_default());
        }
        row
    }
}

/// The last column: CRC32 of the row's other fields (see [`csv_file::row_check`]).
pub const ROW_CHECK: &str = "row_check";

/// Header of a sweep CSV with the given tunables (sorted, deduplicated).
pub fn header(param_names: &[String]) -> Vec<String> {
    let mut h = legacy_header(param_names);
    h.push(ROW_CHECK.to_string());
    h
}

/// Header of the files written before rows carried a `row_check`.
fn legacy_header(param_names: &[String]) -> Vec<String> {
    let mut h: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(param_names.iter().map(|p| format!("param_{p}")));
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
        let h = header(&["BM".to_string()]);
        assert!(h.contains(&"time_us_median".to_string()));
        assert_eq!(h[h.len() - 2], "param_BM");
        assert_eq!(h.last().unwrap(), ROW_CHECK);
    }
}
