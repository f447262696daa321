//! What a sweep is asked to do (its options, the shapes and dtypes it covers, the family its
//! file names) and how its rows are keyed and filled: shared by the runner, the per-shape
//! run, the worker session and the pre-sweep checks, below all of them.

use super::record::{CandidateRecord, Status};
use super::search::SearchStrategy;
use super::space::Sweep;
use crate::kernels::{DType, Family, Shape};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub sweep_path: PathBuf,
    /// Shapes to tune; empty = the sweep file's defaults.
    pub shapes: Vec<String>,
    /// Dtypes; empty = the sweep file's.
    pub dtypes: Vec<String>,
    /// Only these of the file's variants; empty = all. A partial sweep replaces a tuned
    /// database entry only with a faster winner (the entry may be another variant's).
    pub variants: Vec<String>,
    /// None = the sweep file's, else the default rule (see [`super::sweep_plan`]).
    pub strategy: Option<SearchStrategy>,
    /// Evaluations per shape; None = the sweep file's (0 = all).
    pub budget: Option<usize>,
    /// Time per shape's search; the sweep goes on to the next shape after it.
    pub time_budget: Option<Duration>,
    /// Stop a shape's search once its best is within this many percent of its roofline
    /// bound (needs the measured ceilings of `kernlab roofline`).
    pub stop_within_pct: Option<f64>,
    /// The whole sweep stops starting candidates after this long (continue with resume).
    pub time_limit: Option<Duration>,
    pub seed: u64,
    pub out_csv: PathBuf,
    pub resume: bool,
    pub db_path: PathBuf,
    /// Watchdog per candidate.
    pub timeout: Duration,
    pub gpu: usize,
    /// Verification rounds per candidate, each on fresh random inputs.
    pub checks: u32,
    /// Time spent timing one candidate; repetitions = this / its run time, 10 to 300.
    pub timing: Duration,
    pub progress: bool,
}

/// Shapes and dtypes of a sweep after command-line overrides, validated before any GPU work.
pub fn plan_shapes(
    fam: &dyn Family,
    sweep: &Sweep,
    shapes: &[String],
    dtypes: &[String],
) -> Result<Vec<(DType, Shape)>> {
    let shape_texts = if shapes.is_empty() { sweep.shapes.clone() } else { shapes.to_vec() };
    if shape_texts.is_empty() {
        bail!("{} lists no default shapes; give one with --shape {}", sweep.path.display(), fam.shape_dims().join("x"));
    }
    let dtype_texts = if dtypes.is_empty() { sweep.dtypes.clone() } else { dtypes.to_vec() };
    let mut out = Vec::new();
    for dt in &dtype_texts {
        let dt = DType::parse(dt)?;
        for s in &shape_texts {
            let shape = Shape::parse(s, fam.shape_dims())?;
            fam.validate(&shape, dt)?;
            out.push((dt, shape));
        }
    }
    Ok(out)
}

pub(crate) fn peer_key(fam: &dyn Family, dt: DType, shape: &Shape) -> String {
    CandidateRecord {
        family: fam.name().into(),
        variant: fam.peer().into(),
        dtype: dt.name().into(),
        shape: shape.label(),
        ..Default::default()
    }
    .key()
}

/// Fills the derived columns of a measured row.
pub fn fill_metrics(
    rec: &mut CandidateRecord,
    fam: &dyn Family,
    shape: &Shape,
    dt: DType,
    peer_us: Option<f64>,
    ceilings: Option<&crate::roofline::Ceilings>,
) {
    let Some(t) = rec.timing else { return };
    let secs = t.median_us * 1e-6;
    let flops = fam.flops(shape);
    let bytes = fam.min_bytes(shape, dt);
    rec.tflops = Some(flops / secs / 1e12);
    rec.gbps = Some(bytes / secs / 1e9);
    rec.intensity = Some(flops / bytes);
    rec.peer_us = peer_us;
    rec.speedup_vs_peer = peer_us.map(|p| p / t.median_us);
    if let Some(c) = ceilings {
        super::bound::fill_pct_of_bound(rec, c);
    }
}

/// Whether `r` is a candidate row (not the peer) of this family, dtype and shape.
pub(crate) fn is_candidate_of(r: &CandidateRecord, fam: &dyn Family, dt: DType, shape: &Shape) -> bool {
    r.family == fam.name() && r.dtype == dt.name() && r.shape == shape.label() && r.status != Some(Status::Peer)
}

/// The family a sweep file names. Read before the full parse, which needs the family's
/// shape dimensions.
pub(crate) fn family_of_sweep(path: &std::path::Path) -> Result<&'static dyn Family> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let name = v.get("family").and_then(|f| f.as_str()).with_context(|| format!("{}: no `family`", path.display()))?;
    crate::tune::family(name)
}
