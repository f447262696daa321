//! One measured (or failed) candidate of a sweep, and the CSV file that holds them.
//!
//! The CSV is written one row at a time and flushed after each row, so a sweep that is
//! interrupted loses nothing; `--resume` reads it back with [`read_records`]. Columns are
//! fixed, then one `param_<name>` column per tunable of the sweep (sorted by name), so
//! pandas and spreadsheets read the file as it is: units in column names, empty cells for
//! values that do not apply, never mixed types in a column.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Header of a sweep CSV with the given tunables.
pub fn header(param_names: &[String]) -> Vec<String> {
    let mut h: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    h.extend(param_names.iter().map(|p| format!("param_{p}")));
    h
}

/// Appends records to a sweep CSV, flushing after every row.
pub struct RecordWriter {
    path: PathBuf,
    file: File,
    param_names: Vec<String>,
}

impl RecordWriter {
    /// Opens `path` for appending. A new (or empty) file gets the header; an existing file
    /// must have the same header, so rows of different sweeps are never mixed in one file.
    pub fn open(path: &Path, param_names: &[String]) -> Result<RecordWriter> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let mut names = param_names.to_vec();
        names.sort();
        names.dedup();
        let expected = header(&names);
        let exists = path.exists() && std::fs::metadata(path)?.len() > 0;
        if exists {
            let mut rdr = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
            let found: Vec<String> = rdr.headers()?.iter().map(|s| s.to_string()).collect();
            if found != expected {
                bail!(
                    "{} was written by a different sweep (its columns differ); \
                     pass another --out file or delete it to start afresh",
                    path.display()
                );
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for appending", path.display()))?;
        if !exists {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&expected)?;
            file.write_all(&w.into_inner()?)?;
            file.sync_data().ok();
        }
        Ok(RecordWriter { path: path.to_path_buf(), file, param_names: names })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one row and flushes it to disk before returning.
    pub fn append(&mut self, rec: &CandidateRecord) -> Result<()> {
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
        w.write_record(rec.to_row(&self.param_names))?;
        let bytes = w.into_inner()?;
        self.file.write_all(&bytes).with_context(|| format!("writing {}", self.path.display()))?;
        self.file.flush()?;
        Ok(())
    }
}

/// Serialises records to CSV bytes (used by exporters and tests).
pub fn to_csv_bytes(records: &[CandidateRecord]) -> Result<Vec<u8>> {
    let mut names: Vec<String> = records.iter().flat_map(|r| r.params.keys().cloned()).collect();
    names.sort();
    names.dedup();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header(&names))?;
    for r in records {
        w.write_record(r.to_row(&names))?;
    }
    Ok(w.into_inner()?)
}

fn parse_opt<T: std::str::FromStr>(s: &str, col: &str, line: usize) -> Result<Option<T>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<T>().map(Some).map_err(|_| anyhow::anyhow!("line {line}: column {col}: cannot parse {s:?}"))
}

/// Reads a sweep CSV back. A last line cut short by a kill is skipped, not an error.
pub fn read_records(path: &Path) -> Result<Vec<CandidateRecord>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_records_from(&data).with_context(|| format!("parsing {}", path.display()))
}

pub fn read_records_from(data: &[u8]) -> Result<Vec<CandidateRecord>> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let headers: Vec<String> = rdr.headers()?.iter().map(|s| s.to_string()).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    for c in FIXED_COLUMNS {
        if col(c).is_none() {
            bail!("missing column {c:?}; is this a kernlab sweep CSV?");
        }
    }
    let mut out = Vec::new();
    for (i, row) in rdr.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(r) => r,
            Err(_) => continue,
        };
        if row.len() != headers.len() {
            // A row cut short by an interrupted write: it will be measured again.
            continue;
        }
        let get = |name: &str| row.get(col(name).unwrap()).unwrap_or("");
        let mut params = BTreeMap::new();
        for (j, h) in headers.iter().enumerate() {
            if let Some(p) = h.strip_prefix("param_") {
                let v = row.get(j).unwrap_or("");
                if !v.is_empty() {
                    let v: i64 = v.parse().map_err(|_| anyhow::anyhow!("line {line}: {h}: not an integer: {v:?}"))?;
                    params.insert(p.to_string(), v);
                }
            }
        }
        let median: Option<f64> = parse_opt(get("time_us_median"), "time_us_median", line)?;
        let timing = match median {
            Some(m) => Some(Timing {
                median_us: m,
                p20_us: parse_opt(get("time_us_p20"), "time_us_p20", line)?.unwrap_or(m),
                p80_us: parse_opt(get("time_us_p80"), "time_us_p80", line)?.unwrap_or(m),
                min_us: parse_opt(get("time_us_min"), "time_us_min", line)?.unwrap_or(m),
                reps: parse_opt(get("reps"), "reps", line)?.unwrap_or(0),
            }),
            None => None,
        };
        let status = match get("status") {
            "" => None,
            s => Some(Status::parse(s).with_context(|| format!("line {line}"))?),
        };
        out.push(CandidateRecord {
            family: get("family").to_string(),
            variant: get("variant").to_string(),
            dtype: get("dtype").to_string(),
            shape: get("shape").to_string(),
            params,
            status,
            error: get("error").to_string(),
            max_rel_err: parse_opt(get("max_rel_err"), "max_rel_err", line)?,
            timing,
            tflops: parse_opt(get("tflops"), "tflops", line)?,
            gbps: parse_opt(get("gbps"), "gbps", line)?,
            intensity: parse_opt(get("intensity_flop_per_byte"), "intensity_flop_per_byte", line)?,
            pct_of_bound: parse_opt(get("pct_of_bound"), "pct_of_bound", line)?,
            peer_us: parse_opt(get("peer_time_us"), "peer_time_us", line)?,
            speedup_vs_peer: parse_opt(get("speedup_vs_peer"), "speedup_vs_peer", line)?,
            registers: parse_opt(get("registers"), "registers", line)?,
            smem_bytes: parse_opt(get("smem_bytes"), "smem_bytes", line)?,
            local_bytes: parse_opt(get("local_bytes"), "local_bytes", line)?,
            compile_ms: parse_opt(get("compile_ms"), "compile_ms", line)?,
            gpu: get("gpu").to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CandidateRecord {
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
    fn csv_round_trip_through_file_with_append_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        let names = vec!["STAGES".to_string(), "BM".to_string()];
        let mut w = RecordWriter::open(&path, &names).unwrap();
        let a = sample();
        let mut b = sample();
        b.status = Some(Status::CompileError);
        b.error = "line1\nline2, with comma \"quoted\"".into();
        b.timing = None;
        b.tflops = None;
        w.append(&a).unwrap();
        drop(w);
        // Reopening appends without a second header.
        let mut w = RecordWriter::open(&path, &names).unwrap();
        w.append(&b).unwrap();
        drop(w);
        // A torn last row, as a kill mid-write leaves it.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"gemm,mma,bf16").unwrap();
        let back = read_records(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].key(), a.key());
        assert_eq!(back[0].timing.unwrap().median_us, 12.0);
        assert_eq!(back[0].registers, Some(128));
        assert_eq!(back[1].status, Some(Status::CompileError));
        assert_eq!(back[1].error, "line1 | line2, with comma \"quoted\"");
        assert!(back[1].timing.is_none());
    }

    #[test]
    fn refuses_to_mix_sweeps_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        RecordWriter::open(&path, &["BM".to_string()]).unwrap().append(&sample()).unwrap();
        let err = RecordWriter::open(&path, &["ROWS".to_string()]).err().unwrap();
        assert!(format!("{err:#}").contains("different sweep"));
    }

    #[test]
    fn header_has_units_and_params() {
        let h = header(&["BM".to_string()]);
        assert!(h.contains(&"time_us_median".to_string()));
        assert_eq!(h.last().unwrap(), "param_BM");
    }
}
